"""The IPVS sync daemon carrying entries of every protocol and family to the backup.

The active director runs the sync master, the second director the backup
(``ipvsadm --start-daemon``, one sync id); both have the same service. A
client's flow goes through the active director, whose entry must then
appear in the backup's table with the same protocol, client, virtual and
real-server address and port. Which packets make a sync message depends
on the protocol (ip_vs_sync.c ip_vs_sync_conn_needed): TCP and SCTP on a
change of state, UDP on its sync_threshold-th datagram (3 by default).
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..cluster import Cluster
from ..ipvs import Conn, read_connections
from ..registry import Family, Mode, Protocol
from ..util import wait_until
from ._ports import fresh_client_port
from ._records import record, record_kind

SYNC_ID = 9
SYNC_WAIT_S = 15.0  # sync messages leave every second or so; emulation adds some


@record_kind("sync-entry")
@dataclass(frozen=True, kw_only=True)
class SyncEntryRecord:
    """One flow's entry on the master, and what the backup got of it."""

    key: str  # "<protocol>-<family>"
    answered_by: str  # the real server that answered the flow ("" if none did)
    master: str  # the entry in the master's table
    backup: str  # the entry that appeared in the backup's table ("" if none)
    seconds: float | None  # from the flow's end until the backup had it


def _describe(c: Conn | None) -> str:
    if c is None:
        return ""
    return (f"{c.protocol} {c.client[0]}:{c.client[1]} -> {c.virtual[0]}:{c.virtual[1]} -> "
            f"{c.dest[0]}:{c.dest[1]}")  # fmt: skip


@contextmanager
def sync_daemons(cluster: Cluster) -> Iterator[tuple[str, str]]:
    """Sync master on the active director, backup on the second; stopped afterwards."""
    master, backup = (d.name for d in cluster.base_spec.directors[:2])
    for d, role in ((master, "master"), (backup, "backup")):
        cluster.run(d, f"ipvsadm --start-daemon {role} --mcast-interface {d}-eth1 "
                       f"--syncid {SYNC_ID}")  # fmt: skip
    try:
        yield master, backup
    finally:
        for d, role in ((master, "master"), (backup, "backup")):
            cluster.run(d, f"ipvsadm --stop-daemon {role}", check=False)
        cluster.ipvs_of(backup).flush()


def synced_entry(
    cluster: Cluster, mode: Mode, protocol: Protocol, family: Family
) -> SyncEntryRecord:
    """One flow of ``protocol`` over ``family`` through the master; its entry on both
    directors. The sync daemons must be running (``sync_daemons``)."""
    master, backup = (d.name for d in cluster.base_spec.directors[:2])
    spec = cluster.base_spec.in_family(family).with_service(
        mode=mode.name, protocol=protocol.name, scheduler="rr"
    )
    cluster.configure(spec)
    cluster.ipvs_of(backup).apply(spec.service, spec.real_servers)
    client, sport = spec.clients[0], fresh_client_port(cluster)
    # UDP: three datagrams from one port (the sync threshold); TCP, SCTP: one whole flow
    count, more = (3, ["--one-socket"]) if protocol.datagrams else (1, [])
    command = shlex.join([sys.executable, "-m", "loadgen.ask", "--protocol", protocol.name,
                          "--count", str(count), "--sport", str(sport), *more,
                          spec.service.endpoint])  # fmt: skip
    out = cluster.run(client.name, command, check=False)
    answered = next((line.strip() for line in out.splitlines() if line.strip()), "")
    ended = time.monotonic()
    key = (str(client.ip), sport)

    def entry(director: str) -> Conn | None:
        found = read_connections(cluster.pid(director), client=key)
        return found[0] if found else None

    seen = wait_until(lambda: entry(backup) is not None, timeout=SYNC_WAIT_S, interval=0.2)
    return record(
        SyncEntryRecord(
            key=f"{protocol.name}-{family.name}",
            answered_by=answered,
            master=_describe(entry(master)),
            backup=_describe(entry(backup)),
            seconds=round(time.monotonic() - ended, 2) if seen else None,
        )
    )
