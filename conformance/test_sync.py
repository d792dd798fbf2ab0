"""Connection-state sync: established connections survive a director failure.

For each forwarding mode and sync set-up, long-lived byte-counting streams and
handshake-only connections (the control group) go through the preferred director;
its cable is cut, the backup takes over, then the preferred one returns and preempts. Sources:
Documentation/networking/ipvs-sysctl.rst (sync_threshold "3 50": synced when
incoming packets % sync_period == sync_threshold, and on later state
changes), net/netfilter/ipvs/ip_vs_sync.c (ip_vs_sync_conn_needed; buffers
flushed at least every IPVS_SYNC_FLUSH_TIME = 2 s), ipvsadm(8)
(--start-daemon master|backup, both at once), keepalived.conf(5)
(lvs_sync_daemon follows the VRRP state).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conformance.conftest import skip_unless_topology
from testbed import MODES, Cluster
from testbed.ha import HaPair, Vrrp
from testbed.observe import SyncRun, record, run_sync

FAST = Vrrp(version=3, advert_int=0.3)
# (mode, sync): "ipvsadm" runs master and backup daemons on both directors. Every
# way of syncing in DR, where the director sees only the client's packets; with and
# without sync in NAT, where it sees both directions (and must rewrite the replies)
CASES = [
    ("dr", "off"),
    ("dr", "ipvsadm"),
    ("dr", "oneway"),
    ("dr", "keepalived"),
    ("nat", "off"),
    ("nat", "ipvsadm"),
]
SYNC_LAG_BOUND = 5.0  # 3rd packet within ~1 s, then at most one 2 s flush, plus emulation


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-sync-{c[1]}")
def sync_run(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[SyncRun]:
    mode, sync = request.param
    skip_unless_topology(cluster, directors=2)
    with HaPair(cluster, vrrp=FAST, mode=mode, sync=sync) as ha:
        yield record(run_sync(ha))


def _synced(run: SyncRun) -> bool:
    return run.sync != "off"


def test_backup_table_converges(sync_run: SyncRun) -> None:
    """With the sync daemon, every established stream appears in the backup's connection
    table, bound to the same real server, within the flush period (ip_vs_sync.c);
    without it, none does."""
    run = sync_run
    if not _synced(run):
        assert run.synced_streams == 0, run.summary()
        return
    assert run.synced_streams == run.streams, run.summary()
    first, second = run.dest_counts.values()
    assert first == second, run.dest_counts
    assert run.sync_lag_s is not None and run.sync_lag_s <= SYNC_LAG_BOUND, run.summary()


def test_handshake_only_connections_are_not_synced(sync_run: SyncRun) -> None:
    """A connection that only completed the handshake has 2 incoming packets, below
    sync_threshold 3, so the master never sends it (ipvs-sysctl.rst sync_threshold;
    ip_vs_sync_conn_needed): the control group is absent from the backup and is
    reset when it speaks after the failover. A hold whose SYN or ACK was sent twice
    (the client's segment count says so) had a third packet and is left out."""
    assert sync_run.handshake_holds, f"no hold sent only its handshake: {sync_run.summary()}"
    assert sync_run.synced_holds == 0, sync_run.summary()
    assert sync_run.survived_holds == 0, sync_run.summary()


def test_established_streams_survive_failover(sync_run: SyncRun) -> None:
    """With sync, every stream keeps receiving through the new master, byte-exact and
    without a reset. Without sync the backup has no entry and no stream survives (the
    original LVS behaviour): in DR the backup answers the client's next segment locally
    with a reset; in NAT the real server's data reaches the client unrewritten, is
    dropped, and the client is never told (the stream stalls)."""
    run = sync_run
    assert not run.byte_errors, run.byte_errors
    if _synced(run):
        assert run.survived_streams == run.streams, run.summary()
        assert run.reset_streams == 0, run.summary()
    else:
        assert run.survived_streams == 0, run.summary()
        if not MODES[run.mode].reply_via_director:  # the backup's own stack answers
            assert run.reset_streams == run.streams, run.summary()


def test_failback_keeps_connections_known_to_the_returning_master(sync_run: SyncRun) -> None:
    """When the preferred director returns and preempts, connections in its table continue:
    those from before the failure if it kept its table, those opened through the backup only
    if the backup synced them back
    (ipvsadm(8): a director may run master and backup daemons at once). One-way sync
    loses the connections opened during the failover."""
    run = sync_run
    if run.sync in ("ipvsadm", "keepalived"):
        assert run.late_survived_failback == run.late_streams, run.summary()
    elif run.sync == "oneway":
        assert run.late_survived_failback == 0, run.summary()
    if _synced(run):
        assert run.early_survived_failback == run.survived_streams, run.summary()
