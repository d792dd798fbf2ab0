"""Health checks and load feedback drive the kernel's real-server table.

Two checkers are held to the same promises: keepalived's virtual_server and
ldirectord (the classic LVS stack). A real server fails by stopping its
program (connections are refused) and recovers by starting it again. Every
test asserts on the director's IPVS table (netlink) and on where client
requests actually go. Sources: keepalived.conf(5) (delay_loop, TCP_CHECK,
HTTP_GET, MISC_CHECK misc_dynamic, retry, delay_before_retry,
inhibit_on_failure, sorry_server), ldirectord(8) (checkinterval,
checktimeout, checktype connect/negotiate, quiescent, fallback).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from conformance.conftest import curl_sequence
from testbed import Cluster
from testbed._flows import Connector, read_connections, wait_until
from testbed._ha import AGENT_PORT, HOLD_PORT, checked_service
from testbed._heartbeat import Ldirectord, ldirectord_service
from testbed._keepalived import HealthChecks
from testbed._results import record_observation

SLACK = 2.0  # seconds of emulation and polling allowed past keepalived's own bound
FEEDBACK = Path(__file__).with_name("feedback.sh")


def _weights(cluster: Cluster) -> dict[str, int]:
    """Real-server address -> weight, as the kernel has it (empty without a service)."""
    services = cluster.ipvs.services()
    return {d.addr: d.weight for s in services for d in s.dests}


def _timed(cluster: Cluster, predicate, bound: float) -> float:  # type: ignore[no-untyped-def]
    """Seconds until ``predicate(weights)`` holds; fail after ``bound``."""
    start = time.time()
    if not wait_until(lambda: predicate(_weights(cluster)), timeout=bound, interval=0.1):
        raise AssertionError(f"not within {bound:.1f} s; kernel weights: {_weights(cluster)}")
    return time.time() - start


def _served_by(cluster: Cluster, count: int = 6) -> Counter[str]:
    return Counter(curl_sequence(cluster, cluster.spec.clients[0].name, count))


Checks = HealthChecks | Ldirectord


def _checked(cluster: Cluster, checks: Checks, **table: object):  # type: ignore[no-untyped-def]
    if isinstance(checks, Ldirectord):
        return ldirectord_service(cluster, checks, **table)
    return checked_service(cluster, checks, **table)


def _name(checks: Checks) -> str:
    if isinstance(checks, Ldirectord):
        return f"ldirectord-{checks.checktype}"
    return f"keepalived-{checks.checker}"


def _recheck(checks: Checks) -> float:
    """Longest wait for the next (good) check."""
    if isinstance(checks, Ldirectord):
        return checks.checkinterval + checks.checktimeout
    return checks.delay_loop + checks.connect_timeout


@pytest.mark.parametrize(
    "checks",
    [
        HealthChecks(checker="TCP_CHECK", delay_loop=1, connect_timeout=1, retry=1),
        HealthChecks(checker="HTTP_GET", delay_loop=1, connect_timeout=1, retry=1),
        Ldirectord(checktype="connect"),
        Ldirectord(checktype="negotiate"),
    ],
    ids=_name,
)
def test_failed_real_server_leaves_and_returns(cluster: Cluster, checks: Checks) -> None:
    """A real server whose check fails is removed within the checker's bound (keepalived:
    delay_loop + (retry + 1) x connect_timeout + retry x delay_before_retry; ldirectord:
    checkinterval + checktimeout), gets no requests, and is added back after its first
    good check."""
    r1 = str(cluster.spec.real_server("r1").ip)
    with _checked(cluster, checks):
        _timed(cluster, lambda w: len(w) == 3, 30)
        cluster.stop_real_server("r1")
        removed = _timed(cluster, lambda w: r1 not in w, checks.removal_bound() + SLACK)
        during = _served_by(cluster)
        cluster.start_real_server("r1")
        restored = _timed(cluster, lambda w: r1 in w, _recheck(checks) + SLACK)
        after = _served_by(cluster)
    record_observation(
        f"health.{_name(checks)}",
        {"removed_s": round(removed, 2), "bound_s": checks.removal_bound(),
         "restored_s": round(restored, 2), "during": dict(during), "after": dict(after)},
    )  # fmt: skip
    assert "r1" not in during and sum(during.values()) == 6, during
    assert "r1" in after, after


@pytest.mark.parametrize(
    "checks",
    [HealthChecks(checker="TCP_CHECK", inhibit_on_failure=True), Ldirectord(quiescent=True)],
    ids=_name,
)
def test_failed_real_server_quiesced_to_weight_zero(cluster: Cluster, checks: Checks) -> None:
    """keepalived's inhibit_on_failure and ldirectord's quiescent=yes keep a failed real
    server in the table with weight 0 (no new connections) and restore its weight on
    recovery."""
    r1 = str(cluster.spec.real_server("r1").ip)
    with _checked(cluster, checks):
        _timed(cluster, lambda w: w.get(r1) == 1 and len(w) == 3, 30)
        cluster.stop_real_server("r1")
        _timed(cluster, lambda w: w.get(r1) == 0, checks.removal_bound() + SLACK)
        during = _served_by(cluster)
        cluster.start_real_server("r1")
        _timed(cluster, lambda w: w.get(r1) == 1, _recheck(checks) + SLACK)
    assert "r1" not in during and sum(during.values()) == 6, during


def _sorry(cluster: Cluster, backend: str) -> Checks:
    r3 = cluster.spec.real_server("r3")
    if backend == "ldirectord":
        return Ldirectord(checktype="connect", fallback=r3)
    return HealthChecks(checker="TCP_CHECK", sorry_server=r3)


@pytest.mark.parametrize("backend", ["keepalived", "ldirectord"])
def test_sorry_server_takes_over_when_all_fail(cluster: Cluster, backend: str) -> None:
    """When every real server has failed, the sorry server (keepalived sorry_server,
    ldirectord fallback) is the only destination and answers the clients; it leaves
    again when a real server recovers."""
    r3 = cluster.spec.real_server("r3")
    checks = _sorry(cluster, backend)
    with _checked(cluster, checks, real_servers=("r1", "r2")):
        _timed(cluster, lambda w: len(w) == 2 and str(r3.ip) not in w, 30)
        for name in ("r1", "r2"):
            cluster.stop_real_server(name)
        bound = checks.removal_bound(failing=2) + SLACK
        _timed(cluster, lambda w: list(w) == [str(r3.ip)], bound)
        during = _served_by(cluster)
        cluster.start_real_server("r2")
        _timed(cluster, lambda w: str(r3.ip) not in w and w, _recheck(checks) + SLACK)
        after = _served_by(cluster)
    assert during == Counter({"r3": 6}), during
    assert after == Counter({"r2": 6}), after


def _new_connections(cluster: Cluster, *, count: int) -> list[str]:
    """Open and hold ``count`` connections to the VIP; the real server of each."""
    spec = cluster.spec
    vip, port = str(spec.service.vip), spec.service.port
    client = spec.clients[0]
    ours = {(str(client.ip), 42000 + i) for i in range(count)}
    with Connector(cluster.pid(client.name)) as conn:
        for addr, sport in sorted(ours):  # held: the HTTP server waits for a request
            conn.open(addr, sport, (vip, port))
        return [
            c.dest[0] for c in read_connections(cluster.pid(spec.active.name))
            if c.client in ours and c.virtual == (vip, port)
        ]  # fmt: skip


def test_load_feedback_lowers_weight_and_shifts_connections(cluster: Cluster) -> None:
    """MISC_CHECK with misc_dynamic sets the weight to exit status - 2: the feedback
    script turns a real server's held connections into weight 100 - 10 x load. Loading
    r1 drops its kernel weight, and wlc sends new connections elsewhere."""
    checks = HealthChecks(
        checker="MISC_CHECK", misc_path=str(FEEDBACK), misc_dynamic=True, misc_timeout=3
    )
    spec = cluster.base_spec
    r1 = spec.real_server("r1")
    load = 8
    loader = spec.clients[1]
    direct = f"{spec.inside} via {spec.router.outside}"  # client -> router -> r1
    with checked_service(cluster, checks, scheduler="wlc"):
        _timed(cluster, lambda w: len(w) == 3 and all(v > 0 for v in w.values()), 20)
        time.sleep(checks.delay_loop + checks.misc_timeout)  # one full round of checks
        # earlier tests may have left connections open on a server: start from its weight
        before = _weights(cluster)[str(r1.ip)]
        expect = max(1, before - 10 * load)
        cluster.run(loader.name, f"ip route replace {direct}")
        try:
            with Connector(cluster.pid(loader.name)) as held:
                for i in range(load):  # load r1 directly, bypassing the director
                    held.open(str(loader.ip), 41000 + i, (str(r1.ip), HOLD_PORT))
                lowered = _timed(cluster, lambda w: w[str(r1.ip)] == expect, 10)
                shares = Counter(_new_connections(cluster, count=24))
        finally:
            cluster.run(loader.name, f"ip route del {direct}", check=False)
        raised = _timed(cluster, lambda w: w[str(r1.ip)] == before, 10)
    record_observation(
        "health.feedback",
        {"load": load, "weight_before": before, "weight_loaded": expect,
         "lowered_s": round(lowered, 2), "raised_s": round(raised, 2),
         "new_connections": dict(shares), "agent_port": AGENT_PORT},
    )  # fmt: skip
    others = [shares[str(r.ip)] for r in spec.real_servers if r.name != "r1"]
    assert sum(shares.values()) == 24, shares
    assert all(shares[str(r1.ip)] < n for n in others), shares
