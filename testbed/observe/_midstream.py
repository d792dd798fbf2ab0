"""Packets the director never saw begin: a mid-stream TCP segment or SCTP chunk
(sloppy_tcp, sloppy_sctp), and a director whose sync daemon is a backup
(backup_only).

A director schedules only a connection's opening packet (a TCP SYN, an SCTP
INIT) unless the protocol's sloppy sysctl is set; then a packet of a connection
under way (as after a failover without the sync daemon) is scheduled afresh. A
director whose sync daemon runs in backup mode forwards nothing while
backup_only is set: its packets go to its own stack.
Sources: ipvs-sysctl.rst sloppy_tcp, sloppy_sctp, backup_only;
ip_vs_proto_tcp.c tcp_conn_schedule; ip_vs_proto_sctp.c sctp_conn_schedule;
ip_vs_core.c ip_vs_in_hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..cluster import Cluster
from ..ipvs import read_connections
from ..registry import MODES, Protocol
from ._icmp import inject
from ._ports import fresh_client_port
from ._records import record, record_kind
from ._reuse import sysctls

NAT = next(m for m in MODES.values() if m.rewrites_destination)
SYNC_ID = 77  # the backup daemon's sync id (no master sends it anything)


@record_kind("midstream")
@dataclass(frozen=True, kw_only=True)
class MidstreamRecord:
    """A packet of a connection the director never saw begin."""

    key: str  # "<protocol>-<sysctl>=<value>"
    sysctl: str
    value: int
    entry: str  # the director's entry for the flow afterwards: its state, or "(none)"
    reached: list[str] = field(default_factory=list)  # real servers it was forwarded to
    back: list[str] = field(default_factory=list)  # what came back to the client


def midstream_packet(cluster: Cluster, protocol: Protocol, value: int) -> MidstreamRecord:
    """One mid-stream packet from a fresh client port to a NAT service of ``protocol``,
    with the protocol's sloppy sysctl set to ``value``."""
    if protocol.midstream is None:
        raise ValueError(f"{protocol.title} has no mid-stream packet")
    spec = cluster.base_spec.with_service(mode=NAT.name, protocol=protocol.name, scheduler="rr")
    cluster.configure(spec)
    s, client, director = spec.service, spec.clients[0], spec.active.name
    port = fresh_client_port(cluster)
    net = s.family.layer(src=str(client.ip), dst=str(s.vip))
    key = f"{protocol.name}-{protocol.sloppy_sysctl.rsplit('.', 1)[1]}={value}"
    with sysctls(cluster, director, {protocol.sloppy_sysctl: value}):
        shot = inject(cluster, [net / protocol.midstream(port, s.port)], key=key)
        entries = read_connections(cluster.pid(director), client=(str(client.ip), port))

    def carried(point: str) -> list[str]:
        return [f.packet.summary() for f in shot.at(point, "in") if protocol.layer in f.packet]

    reached = [r.name for r in spec.real_servers if carried(f"{r.name}-eth0")]
    back = carried(f"{client.name}-eth0")
    return record(MidstreamRecord(key=key, sysctl=protocol.sloppy_sysctl, value=value,
                                  entry=entries[0].state if entries else "(none)",
                                  reached=reached, back=back))  # fmt: skip


@record_kind("backup-only")
@dataclass(frozen=True, kw_only=True)
class BackupOnlyRecord:
    """A request through the VIP while the active director's sync daemon is a backup."""

    key: str  # "backup_only=<value>"
    value: int
    answered_by: str  # the real server that answered, or "" for none
    client_saw: str  # the client command's output when nobody answered


def request_beside_a_backup_daemon(cluster: Cluster, value: int) -> BackupOnlyRecord:
    """A backup sync daemon started on the active director, backup_only = ``value``,
    then one TCP request through the VIP."""
    spec = cluster.base_spec.with_service(mode=NAT.name, protocol="tcp", scheduler="rr")
    cluster.configure(spec)
    d, client = spec.active.name, spec.clients[0].name
    start = f"ipvsadm --start-daemon backup --mcast-interface {d}-eth1 --syncid {SYNC_ID}"
    with sysctls(cluster, d, {"net.ipv4.vs.backup_only": value}):
        cluster.run(d, start)
        try:
            out = cluster.run(client, spec.service.transport.client(spec.service.endpoint, 1),
                              check=False)  # fmt: skip
        finally:
            cluster.run(d, "ipvsadm --stop-daemon backup", check=False)
    names = {r.name for r in spec.real_servers}
    answered = next((w for w in out.split() if w in names), "")
    return record(BackupOnlyRecord(key=f"backup_only={value}", value=value,
                                   answered_by=answered, client_saw=out.strip()[:200]))  # fmt: skip
