"""Every teaching lab's checker, proved on the live cluster: it rejects the lab's
starting state and each plausible wrong solution the lab declares, and accepts
the reference solution, applied as a student would type it.

A lab is a file in labs/ (testbed.labs reads it); this module is what makes a
lab trustworthy for a class: a checker that passes a broken cluster, or fails
a correct one, is caught here. The labs' own sources (ipvsadm(8),
ip-sysctl.rst, the LVS HOWTO) are in each lab's story and hints. The labs run
last in a session (conftest), because they change the cluster the way
students do: by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from testbed import Cluster
from testbed.labs import LABS, Lab, LabSession, Outcome


def _until(outcomes: Iterator[Outcome], last: Callable[[Outcome], bool]) -> list[Outcome]:
    """The outcomes up to the first for which ``last`` holds: the tasks after it cannot
    change the verdict (and checks with a ``within`` would spend their time failing)."""
    taken = []
    for outcome in outcomes:
        taken.append(outcome)
        if last(outcome):
            break
    return taken


def _shown(title: str, session: LabSession, outcomes: list[Outcome]) -> str:
    return f"--- {title}\n{session.report(outcomes)}"


@pytest.mark.parametrize("lab", LABS.values(), ids=LABS.names())
def test_the_checker_rejects_the_start_and_the_wrong_solutions_and_accepts_the_reference(
    cluster: Cluster, lab: Lab
) -> None:
    """Start: at least one task fails. Each wrong solution: every task it names fails
    (the tasks before them checked too, as the state a student's check reaches).
    Reference solution: every task passes."""
    if reason := lab.unfit(cluster.base_spec):
        pytest.skip(reason)
    problems, seen = [], []
    with LabSession(cluster, lab) as session:
        start = _until(session.outcomes(), lambda o: not o.verdict.ok)
        seen.append(_shown("starting state", session, start))
        if all(o.verdict.ok for o in start):
            problems.append("the starting state passes every task")
        for i, wrong in enumerate(lab.wrong, 1):
            session.restart()
            session.apply(wrong.steps)
            last = [t.name for t in lab.tasks if t.name in wrong.fails][-1]
            outcomes = _until(session.outcomes(), lambda o, last=last: o.task.name == last)
            seen.append(_shown(f"wrong solution {i}: {wrong.title}", session, outcomes))
            passed = [o.task.name for o in outcomes if o.task.name in wrong.fails and o.verdict.ok]
            if passed:
                problems.append(f"wrong solution {i} ({wrong.title}) passes {', '.join(passed)}")
        session.restart()
        session.apply(lab.solution)
        final = session.check()
        seen.append(_shown("reference solution", session, final))
        failed = [o.task.name for o in final if not o.verdict.ok]
        if failed:
            problems.append(f"the reference solution fails {', '.join(failed)}")
    assert not problems, "; ".join(problems) + "\n" + "\n".join(seen)
