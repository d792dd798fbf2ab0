"""Teaching labs: guided and start-broken exercises on a live cluster, with a checker.

A lab is one file in labs/ (see labs/README.md for how to write one): the
cluster it starts from, the tasks, the checks that see them done, hints,
the reference solution and the wrong solutions the checker must reject::

    >>> from testbed.labs import LABS
    >>> LABS["dr-by-hand"].kind
    'build'
    >>> with LabSession(cluster, LABS["dr-by-hand"]) as lab:    # doctest: +SKIP
    ...     print(lab.report(lab.check()))
"""

from ._checks import CHECKS, Check, Verdict, ask, claimants
from ._lab import KINDS, LABS_DIR, STARTS, Lab, Step, Task, WrongTry, load_labs, read_lab
from ._outside import MAILBOXES, Answer, Mailbox, clean_mailboxes
from ._session import LabSession, Outcome, lab_cli

LABS = load_labs()

__all__ = [
    "CHECKS",
    "KINDS",
    "LABS",
    "LABS_DIR",
    "MAILBOXES",
    "STARTS",
    "Answer",
    "Check",
    "Lab",
    "LabSession",
    "Mailbox",
    "Outcome",
    "Step",
    "Task",
    "Verdict",
    "WrongTry",
    "ask",
    "claimants",
    "clean_mailboxes",
    "lab_cli",
    "load_labs",
    "read_lab",
]
