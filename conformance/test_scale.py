"""Scale: 20,000 simultaneous connections through the VIP, held, counted, closed.

The CI-sized version of the bench's 100,000-connection check (``lvs-testbed
bench``): ``loadgen.holder`` processes on every client open the connections
from several source addresses each, hold them idle, and report every
failure and reset; the director's ActiveConn must equal the client's count.
It runs once per kind of connection table the director keeps (one mode that
sees both directions, NAT; one that sees the input only, DR).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed import Cluster
from testbed.ipvs import SYSCTL_DIR
from testbed.kernel import missing_sysctl
from testbed.load import connect_rate, prepare_for_scale
from testbed.observe import hold_through_vip
from testbed.registry import Mode, Profile
from testbed.util import wait_until

HOLD_S = 5.0


@pytest.fixture(scope="module")
def scale_cluster(cluster: Cluster) -> Iterator[Cluster]:
    prepare_for_scale(cluster)
    yield cluster
    cluster.configure(cluster.base_spec)


def test_scale_holds_connections(
    scale_cluster: Cluster, state_table_mode: Mode, profile: Profile
) -> None:
    """Idle connections through the VIP (20,000 in the full profile) all open, stay open
    and are counted exactly.

    IPVS creates one connection entry per new client connection and counts it
    in the chosen real server's ActiveConn while it is ESTABLISHED
    (``ip_vs_proto_tcp.c`` set_tcp_state; ipvsadm(8), "ActiveConn"); an idle
    connection is kept for the established timeout (900 s, ipvsadm(8)
    ``--set``), so none may be reset during the hold. rr hands out new
    connections in turn, so the real servers' counts differ by at most one
    (``ip_vs_rr.c``).
    """
    cluster = scale_cluster
    # a virtual port the other suites do not use (the real servers' NAT port, which they
    # serve): re-adding a real server to a VIP:port revives it from the kernel's trash with
    # the counters of connections left from before (ip_vs_ctl.c ip_vs_trash_get_dest),
    # which ActiveConn would then include
    base = cluster.base_spec.service
    spec = cluster.base_spec.with_service(
        mode=state_table_mode.name, scheduler="rr", port=base.nat_port or base.port
    )
    cluster.configure(spec)
    connections = profile.scale_connections
    run = hold_through_vip(cluster, connections=connections, hold=HOLD_S)
    ramped, result, active = run.ramped, run.result, run.ipvs_active
    assert ramped["failed"] == 0, f"connects failed: {ramped['failures']}"
    assert ramped["held"] == connections
    assert result["resets"] == 0, f"{result['resets']} connections reset while held"
    assert result["closed_by_peer"] == 0, f"{result['closed_by_peer']} closed by the server"
    assert result["established_at_end"] == connections
    assert sum(active) == connections, f"director ActiveConn {active} vs client {connections}"
    assert max(active) - min(active) <= 1, f"rr spread uneven: {active}"


def test_conn_max_caps_the_connection_entries(scale_cluster: Cluster) -> None:
    """With net.ipv4.vs.conn_max at N, the director's namespace holds at most N
    connection entries: the first N new connections are scheduled, a SYN beyond them
    gets no entry and is dropped (so that connect times out), until entries expire
    (ipvs-sysctl.rst conn_max; ip_vs_conn.c ip_vs_conn_new returns NULL at the limit,
    ip_vs_schedule then drops the packet).

    The connections close with RST at once; their entries stay (CLOSE, 10 s), so the
    cap holds for the whole burst. Entries already there count too: the cap is set
    N above them."""
    if reason := missing_sysctl("conn_max", needed_by="the cap on connection entries"):
        pytest.skip(reason)
    cluster, new, extra = scale_cluster, 20, 5
    base = cluster.base_spec.service
    cluster.configure(cluster.base_spec.with_service(mode="nat", scheduler="rr",
                                                     port=base.nat_port or base.port))  # fmt: skip
    service = cluster.spec.service
    director, knob = cluster.spec.active.name, f"{SYSCTL_DIR}/conn_max"

    def entries() -> list[str]:
        return cluster.run(director, "ipvsadm -Lnc", changes_setup=False).splitlines()[2:]

    # the cap counts every entry in the namespace, the earlier tests' too (a failover
    # leaves ESTABLISHED ones for 15 min): once none will expire during the burst, the
    # cap is set that many above them
    settled = wait_until(lambda: all(_expires_in(e) > 30 for e in entries()), timeout=150,
                         interval=2)  # fmt: skip
    assert settled, "entries keep expiring:\n" + "\n".join(entries()[:20])
    before_burst = entries()
    cap = len(before_burst) + new
    (before,) = cluster.sysctls(director, knob).values()
    cluster.write_sysctls(director, {knob: str(cap)})
    try:
        burst = connect_rate(cluster, client=cluster.spec.clients[0].name,
                             targets=[f"{service.vip}:{service.port}"], count=new + extra,
                             concurrency=new + extra, tool="native", connect_timeout=5)  # fmt: skip
        table = entries()
    finally:
        cluster.write_sysctls(director, {knob: before})
    assert (burst["connected"], burst["failed"]) == (new, extra), (
        f"conn_max {cap} with {len(before_burst)} entries already: {burst['connected']} "
        f"connected, {burst['failed']} failed ({burst['failures']}); expected {new} and "
        f"{extra}")  # fmt: skip
    assert len(table) == cap, f"{len(table)} entries with conn_max {cap}:\n" + "\n".join(table)


def _expires_in(entry: str) -> int:
    """Seconds left of an ``ipvsadm -Lnc`` line's entry (its expire column, MM:SS)."""
    minutes, seconds = entry.split()[1].split(":")
    return int(minutes) * 60 + int(seconds)
