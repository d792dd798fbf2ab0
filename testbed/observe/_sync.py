"""Long-lived connections through a failing director: what survives, what is lost.

``run_sync`` opens byte-checked streams and handshake-only connections (the
sync daemon's control group) through the preferred director, fails it (cuts
its cable, or stops or kills its keepalived), watches the backup take over,
opens more streams through the backup, then brings the preferred director
back. Used by the conformance suite (test_sync.py) and by the bench (failover
under load).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from ..ha import HaPair
from ..ipvs import read_connections
from ..load import HOLD_PORT, STREAM_PORT
from ..net import StreamSet, Tracked
from ._records import record_kind

BUCKET = 0.25  # seconds per point of the aggregate stream-throughput timeline


def throughput_timeline(
    conns: list[Tracked], *, start: float, end: float
) -> list[tuple[float, float]]:
    """(seconds from ``start``, bytes/s) of all streams together, per BUCKET."""
    n = int((end - start) / BUCKET) + 1
    total = [0] * n
    for t in conns:
        prev = 0
        for when, received in t.arrivals:
            if start <= when < end:
                total[int((when - start) / BUCKET)] += received - prev
            prev = received
    return [(round(i * BUCKET, 3), total[i] / BUCKET) for i in range(n)]


def longest_silence(timeline: list[tuple[float, float]], *, after: float) -> float:
    """Longest run of empty buckets at or after ``after`` seconds: the throughput gap."""
    best = run = 0.0
    for t, rate in timeline:
        if t < after:
            continue
        run = run + BUCKET if rate == 0 else 0.0
        best = max(best, run)
    return best


@record_kind("sync")
@dataclass(kw_only=True)
class SyncRun:
    """Long-lived connections through a director that fails, then comes back."""

    key: str  # "<mode>-<sync>"
    mode: str
    sync: str
    streams: int
    holds: int
    synced_streams: int  # streams in the backup's table before the fault
    synced_holds: int  # handshake-only holds in the backup's table
    sync_lag_s: float | None  # slowest stream: opened -> seen in the backup's table
    dest_counts: dict[str, dict[str, int]]  # director -> real server -> stream connections
    survived_streams: int
    reset_streams: int
    stalled_streams: int  # neither reset nor receiving: the client is never told
    byte_errors: list[str]
    gap_s: float | None  # longest pause in stream data across the failover
    survived_holds: int  # of the handshake-only holds
    backup_conntrack: int  # netfilter conntrack entries for the streams on the new master
    late_streams: int  # opened through the backup while it was master
    late_survived_failback: int
    early_survived_failback: int
    takeover_s: float
    throughput_gap_s: float  # longest stretch with no stream data at all after the fault
    timeline: list[tuple[float, float]]  # (s from fault, bytes/s), all streams together
    # holds that had sent only SYN and ACK when the backup's table was read (results
    # written before this was counted: None, every hold)
    handshake_holds: int | None = None

    def summary(self) -> dict[str, object]:
        return {k: v for k, v in vars(self).items() if k not in ("key", "mode", "sync")}


def _dest_counts(ha: HaPair, director: str, keys: set[tuple[str, int]]) -> dict[str, int]:
    """Connections of ``keys`` per real server in a director's table."""
    table = ha.connections(director, STREAM_PORT)
    return dict(Counter(table[k].dest[0] for k in keys if k in table))


def _missing_streams(ha: HaPair, keys: set[tuple[str, int]], streams: list[Tracked]) -> str:
    """For each stream the active director has no entry of: the client's socket and
    every entry of that client port, any virtual port, on both directors."""
    d1 = ha.names[0]
    missing = sorted(keys - ha.connections(d1, STREAM_PORT).keys())
    lines = [f"streams missing from {d1}'s table: {[port for _, port in missing]}"]
    for addr, port in missing:
        socket_state = next((repr(t) for t in streams if t.sport == port), "?")
        lines.append(f"  client port {port}: {socket_state}")
        for d in ha.names:
            entries = [c for c in read_connections(ha.cluster.pid(d)) if c.client == (addr, port)]
            lines.append(f"    {d}: {entries or 'no entry'}")
    return "\n".join(lines)


def run_sync(
    ha: HaPair, *, streams: int = 18, holds: int = 9, late: int = 6, fault: str = "cut"
) -> SyncRun:
    """Streams and handshake-only holds through d1; fail d1 (default: cut its cable);
    bring it back."""
    c, (d1, d2) = ha.cluster, ha.names
    client = c.spec.clients[0].name
    vip = str(c.spec.service.vip)
    vrrp = ha.vrrp
    client_ip = str(c.spec.clients[0].ip)
    # entries outlive the cases before this one (ESTABLISHED 15 min): a new connection
    # from a port one of them has would be taken for it
    stale = {port for d in ha.names for addr, port in ha.connections(d) if addr == client_ip}
    with StreamSet(c.pid(client)) as conns:
        opened = time.time()
        stream_conns = conns.open("stream", streams, (vip, STREAM_PORT), avoid=stale)
        hold_conns = conns.open("hold", holds, (vip, HOLD_PORT), avoid=stale)
        keys = {(client_ip, t.sport) for t in stream_conns}
        seen: dict[tuple[str, int], float] = {}
        deadline = time.time() + (8 if ha.sync != "off" else 3)
        while time.time() < deadline and len(seen) < len(keys):
            now = time.time()
            for k in keys & ha.connections(d2, STREAM_PORT, HOLD_PORT).keys():
                seen.setdefault(k, now)
            time.sleep(0.1)
        time.sleep(1.0)  # a hold's third packet would be synced within a flush period too
        backup = ha.connections(d2, STREAM_PORT, HOLD_PORT)
        # a retransmitted SYN or ACK is a third incoming packet: such a hold is synced
        handshake_only = [t for t in hold_conns if t.segments_sent() == 2]
        hold_keys = {(client_ip, t.sport) for t in handshake_only}
        counts = {d: _dest_counts(ha, d, keys) for d in (d1, d2)}
        if sum(counts[d1].values()) != len(keys):  # a precondition, not the behaviour under test
            raise AssertionError(
                f"streams did not all go through {d1}: {counts}\n"
                f"{_missing_streams(ha, keys, stream_conns)}\n{ha.describe()}"
            )
        fault_at = ha.fail(fault)
        takeover_at = ha.keepalived[d2].wait_state("MASTER", timeout=15, after=fault_at)
        time.sleep(4.0)  # streams keep flowing, or are reset
        conns.ping_holds(timeout=3)
        # does the new master need netfilter conntrack state (conntrackd) at all?
        tracked = c.run(d2, "conntrack -L 2>&1", check=False)
        gaps = [
            t.first_arrival(fault_at) - (t.last_arrival(fault_at) or fault_at)  # type: ignore[operator]
            for t in stream_conns
            if t.alive and t.first_arrival(fault_at) is not None
        ]
        survived = [t for t in stream_conns if t.alive and t.first_arrival(takeover_at)]
        timeline = throughput_timeline(stream_conns, start=fault_at - 2, end=fault_at + 4)
        reset = [t for t in stream_conns if t.error == "reset"]
        errors = [t.error for t in stream_conns if t.error and t.error.startswith("mismatch")]
        survived_holds = sum(1 for t in handshake_only if t.alive)
        # failback: new streams through the backup, then the preferred director returns
        try:
            late_conns = conns.open("stream", late, (vip, STREAM_PORT))
        except OSError as exc:  # the new master did not carry new connections
            raise AssertionError(f"a new stream through {d2} after the takeover: {exc}\n"
                                 f"{ha.describe()}") from None  # fmt: skip
        time.sleep(3.0)
        recover_at = ha.recover(fault)
        ha.keepalived[d1].wait_state("MASTER", timeout=6 * vrrp.advert_int + 20, after=recover_at)
        back_at = time.time()
        time.sleep(4.0)
        early_back = sum(1 for t in survived if t.alive and t.first_arrival(back_at + 1))
        late_back = sum(1 for t in late_conns if t.alive and t.first_arrival(back_at + 1))
    run = SyncRun(
        key=f"{ha.mode}-{ha.sync}",
        mode=ha.mode,
        sync=ha.sync,
        streams=streams,
        holds=holds,
        synced_streams=len(keys & backup.keys()),
        handshake_holds=len(hold_keys),
        synced_holds=len(hold_keys & backup.keys()),
        sync_lag_s=max(seen.values()) - opened if len(seen) == len(keys) else None,
        dest_counts=counts,
        survived_streams=len(survived),
        reset_streams=len(reset),
        stalled_streams=streams - len(survived) - len(reset),
        backup_conntrack=sum(f"dport={STREAM_PORT} " in line for line in tracked.splitlines()),
        byte_errors=[e for e in errors if e],
        gap_s=max(gaps, default=None),
        survived_holds=survived_holds,
        late_streams=late,
        late_survived_failback=late_back,
        early_survived_failback=early_back,
        takeover_s=takeover_at - fault_at,
        throughput_gap_s=longest_silence(timeline, after=2.0),
        timeline=[(round(t - 2, 3), r) for t, r in timeline],
    )
    return run
