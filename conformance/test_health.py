"""Health checks and load feedback drive the kernel's real-server table.

Two checkers are held to the same promises through one interface
(testbed.checks.Checker): keepalived's virtual_server and ldirectord (the
classic LVS stack). A real server fails by stopping its program (connections
are refused) and recovers by starting it again. Every test asserts on the
director's IPVS table (netlink) and on where client requests actually go.
Sources: keepalived.conf(5) (delay_loop, TCP_CHECK, HTTP_GET, MISC_CHECK
misc_dynamic, retry, delay_before_retry, inhibit_on_failure, sorry_server),
ldirectord(8) (checkinterval, checktimeout, checktype connect/negotiate,
quiescent, fallback).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from conformance.conftest import skip_unless_topology
from testbed import Cluster
from testbed.checks import Checker, KeepalivedChecks, Ldirectord
from testbed.ipvs import read_connections
from testbed.observe import SLACK, load_feedback, removal_and_return, served_by, time_until

FEEDBACK = Path(__file__).with_name("feedback.sh")
REQUESTS = 6


def _ids(checker: Checker) -> str:
    return checker.name


@pytest.mark.parametrize(
    "checker",
    [
        KeepalivedChecks(checker="TCP_CHECK", delay_loop=1, connect_timeout=1, retry=1),
        KeepalivedChecks(checker="HTTP_GET", delay_loop=1, connect_timeout=1, retry=1),
        Ldirectord(checktype="connect"),
        Ldirectord(checktype="negotiate"),
    ],
    ids=_ids,
)
def test_failed_real_server_leaves_and_returns(cluster: Cluster, checker: Checker) -> None:
    """A real server whose check fails is removed within the checker's bound (keepalived:
    delay_loop + (retry + 1) x connect_timeout + retry x delay_before_retry; ldirectord:
    checkinterval + checktimeout), gets no requests, and is added back after its first
    good check."""
    skip_unless_topology(cluster, real_servers=2)
    first = cluster.base_spec.real_servers[0].name
    run = removal_and_return(cluster, checker, requests=REQUESTS)
    assert first not in run.during and sum(run.during.values()) == REQUESTS, run.during
    assert first in run.after, run.after


@pytest.mark.parametrize(
    "checker",
    [KeepalivedChecks(checker="TCP_CHECK", inhibit_on_failure=True), Ldirectord(quiescent=True)],
    ids=_ids,
)
def test_failed_real_server_quiesced_to_weight_zero(cluster: Cluster, checker: Checker) -> None:
    """keepalived's inhibit_on_failure and ldirectord's quiescent=yes keep a failed real
    server in the table with weight 0 (no new connections) and restore its weight on
    recovery."""
    skip_unless_topology(cluster, real_servers=2)
    servers = cluster.base_spec.real_servers
    first, ip = servers[0].name, str(servers[0].ip)
    with checker.serve(cluster):
        time_until(cluster, lambda w: w.get(ip) == 1 and len(w) == len(servers), 30)
        cluster.stop_real_server(first)
        time_until(cluster, lambda w: w.get(ip) == 0, checker.removal_bound() + SLACK)
        during = served_by(cluster, REQUESTS)
        cluster.start_real_server(first)
        time_until(cluster, lambda w: w.get(ip) == 1, checker.recheck_bound() + SLACK)
    assert first not in during and sum(during.values()) == REQUESTS, during


def _sorry(cluster: Cluster, backend: str) -> Checker:
    sorry = cluster.base_spec.real_servers[-1]
    if backend == "ldirectord":
        return Ldirectord(checktype="connect", fallback=sorry)
    return KeepalivedChecks(checker="TCP_CHECK", sorry_server=sorry)


@pytest.mark.parametrize("backend", ["keepalived", "ldirectord"])
def test_sorry_server_takes_over_when_all_fail(cluster: Cluster, backend: str) -> None:
    """When every real server has failed, the sorry server (keepalived sorry_server,
    ldirectord fallback) is the only destination and answers the clients; it leaves
    again when a real server recovers."""
    skip_unless_topology(cluster, real_servers=3)
    *served, sorry = cluster.base_spec.real_servers
    checker = _sorry(cluster, backend)
    sorry_ip = str(sorry.ip)
    with checker.serve(cluster, real_servers=tuple(r.name for r in served)):
        time_until(cluster, lambda w: len(w) == len(served) and sorry_ip not in w, 30)
        for rs in served:
            cluster.stop_real_server(rs.name)
        bound = checker.removal_bound(failing=len(served)) + SLACK
        time_until(cluster, lambda w: list(w) == [sorry_ip], bound)
        during = served_by(cluster, REQUESTS)
        # a client port reused while an old entry to a removed real server lives
        # (DR FIN_WAIT, conn_reuse_mode 1) is dropped: name such entries if one failed
        stale = [
            c
            for c in read_connections(cluster.pid(cluster.spec.active.name))
            if c.dest[0] != sorry_ip
        ]
        back = served[-1].name
        cluster.start_real_server(back)
        time_until(cluster, lambda w: sorry_ip not in w and w, checker.recheck_bound() + SLACK)
        after = served_by(cluster, REQUESTS)
    assert during == Counter({sorry.name: REQUESTS}), (
        f"{during}; entries to other real servers right after: {stale}"
    )
    assert after == Counter({back: REQUESTS}), after


def test_load_feedback_lowers_weight_and_shifts_connections(cluster: Cluster) -> None:
    """MISC_CHECK with misc_dynamic sets the weight to exit status - 2: the feedback
    script turns a real server's held connections into weight 100 - 10 x load. Loading
    the first real server drops its kernel weight, and wlc sends new connections
    elsewhere."""
    skip_unless_topology(cluster, real_servers=2)
    checks = KeepalivedChecks(
        checker="MISC_CHECK", misc_path=str(FEEDBACK), misc_dynamic=True, misc_timeout=3
    )
    run = load_feedback(cluster, checks, load=8, connections=24)
    first = str(cluster.base_spec.real_servers[0].ip)
    others = [run.new_connections.get(str(r.ip), 0) for r in cluster.base_spec.real_servers[1:]]
    assert sum(run.new_connections.values()) == 24, run.new_connections
    assert all(run.new_connections.get(first, 0) < n for n in others), run.new_connections
