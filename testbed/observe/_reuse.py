"""Source-port reuse: a client connects again from the port of a connection just closed.

The first connection is scheduled (rr over every real server), then closed
the way the case says: the server closes first and the client answers with
its own FIN (a normal close that leaves the client no TIME_WAIT, so the port
is free at once), or the client resets. The director's entry is read, then
the client connects again from the same port, timed: the real server it
reaches says whether the director rescheduled (rr's next choice) or followed
the old entry. Sysctls under test are set for the case and restored after.
Sources: ipvs-sysctl.rst (conn_reuse_mode, expire_nodest_conn, conntrack);
ip_vs_core.c ip_vs_in_hook, is_new_conn_expected.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ..cluster import Cluster
from ..ipvs import read_connections
from ..net import Connector
from ..registry import Mode
from ..sched import Dest, Flow, as_built
from ._ports import fresh_client_port
from ._records import record, record_kind
from ._tcp_states import STATE_PORT, listening

SETTLE_S = 1.0  # the close's segments have crossed every hop
REUSE_CLOSINGS = ("server-fin", "client-rst")


@contextlib.contextmanager
def sysctls(cluster: Cluster, host: str, values: Mapping[str, int]) -> Iterator[None]:
    """Set sysctls on a host for the duration, then put back the values found."""
    names = " ".join(values)
    before = cluster.run(host, f"sysctl -n {names}").split()
    cluster.run(host, "sysctl -qw " + " ".join(f"{k}={v}" for k, v in values.items()))
    try:
        yield
    finally:
        cluster.run(host, "sysctl -qw " + " ".join(
            f"{k}={v}" for k, v in zip(values, before, strict=True)))  # fmt: skip


@record_kind("port-reuse")
@dataclass(frozen=True, kw_only=True)
class ReuseRecord:
    """A client port connecting again right after its connection closed."""

    key: str  # "<mode>-<closing>-reuse<mode>[-conntrack]"
    no_output: bool  # the entry never sees the replies (not NAT)
    conn_reuse_mode: int
    conntrack: int
    first: str  # the real server of the first connection
    state_before: str  # the old entry's state when the port connected again
    second: str  # the real server of the second connection
    rr_next: str  # rr's choice for a connection scheduled afresh
    connect_s: float  # the second connect() call, start to established


def _dest_of(cluster: Cluster, client: tuple[str, int]) -> tuple[str, str]:
    """(real server name, state) of the client's entry ("?" when there is none)."""
    names = {str(r.ip): r.name for r in cluster.spec.real_servers}
    found = read_connections(cluster.pid(cluster.spec.active.name), client=client)
    return (names.get(found[0].dest[0], "?"), found[0].state) if found else ("?", "(none)")


def _rr_choices(cluster: Cluster, count: int) -> list[str]:
    """rr's first ``count`` choices for the service as the kernel built it."""
    names = {str(r.ip): r.name for r in cluster.spec.real_servers}
    dests = [Dest(name=names[d.addr], addr=d.addr, port=d.port, weight=d.weight)
             for d in cluster.service_state().dests]  # fmt: skip
    model = as_built("rr", dests)
    s = cluster.spec.service
    flow = Flow(saddr=str(cluster.spec.clients[0].ip), sport=1, daddr=str(s.vip), dport=s.port)
    return [str(getattr(model.schedule(flow), "name", None)) for _ in range(count)]


def _close(closing: str, client: socket.socket, server: socket.socket) -> None:
    if closing == "client-rst":
        client.close()  # SO_LINGER 0: an RST
        return
    server.shutdown(socket.SHUT_WR)  # the server's FIN
    client.settimeout(5)
    client.recv(16)  # b"": the FIN arrived; the client is in CLOSE_WAIT
    client.shutdown(socket.SHUT_WR)  # its FIN: LAST_ACK, then CLOSED at the ACK
    time.sleep(SETTLE_S)
    client.close()


def port_reuse(cluster: Cluster, mode: Mode, closing: str, *, conn_reuse_mode: int,
               conntrack: int = 0) -> ReuseRecord:  # fmt: skip
    """One connection, closed as ``closing`` says, then the same client port again."""
    base = cluster.base_spec
    spec = base.with_service(mode=mode.name, protocol="tcp", scheduler="rr", port=STATE_PORT,
                             nat_port=None)  # fmt: skip
    director = spec.active.name
    knobs = {"net.ipv4.vs.conn_reuse_mode": conn_reuse_mode, "net.ipv4.vs.conntrack": conntrack}
    cluster.configure(spec)
    rr = _rr_choices(cluster, 2)
    client_ip, vip = str(spec.clients[0].ip), (str(spec.service.vip), STATE_PORT)
    servers = [r.name for r in spec.real_servers]
    with (
        sysctls(cluster, director, knobs),
        listening(cluster, servers, spec.service.family, STATE_PORT) as listeners,
        Connector(cluster.pid(spec.clients[0].name)) as conn,
    ):
        sport = fresh_client_port(cluster)
        first_sock = conn.open(client_ip, sport, vip)
        first, _ = _dest_of(cluster, (client_ip, sport))
        server, _peer = listeners[first].accept() if first in listeners else (None, None)
        if server is None:
            raise AssertionError(f"the first connection's entry names no real server: {first}")
        _close(closing, first_sock, server)
        server.close()
        time.sleep(SETTLE_S)
        _, state_before = _dest_of(cluster, (client_ip, sport))
        started = time.monotonic()
        try:
            conn.open(client_ip, sport, vip)
            second, _ = _dest_of(cluster, (client_ip, sport))
        except OSError as exc:
            second = f"(no connection: {type(exc).__name__})"
        connect_s = time.monotonic() - started
    suffix = f"-conntrack{conntrack}" if conntrack else ""
    return record(
        ReuseRecord(
            key=f"{mode.name}-{closing}-reuse{conn_reuse_mode}{suffix}",
            no_output=not mode.reply_via_director,
            conn_reuse_mode=conn_reuse_mode,
            conntrack=conntrack,
            first=first,
            state_before=state_before,
            second=second,
            rr_next=rr[1] if rr[0] == first else "?",
            connect_s=round(connect_s, 3),
        )
    )


@record_kind("deleted-under-flow")
@dataclass(frozen=True, kw_only=True)
class DeletedUnderFlowRecord:
    """An established connection whose real server is deleted, then used."""

    key: str  # "<mode>-expire_nodest_conn=<v>"
    expire_nodest_conn: int
    first: str  # the real server deleted
    entry_after: str  # the entry's state after the client's next segment ("(none)": gone)
    delivered: str  # what the deleted real server's socket received
    client_saw: str  # the client's recv(): an exception name, or "data"/"nothing"


def deleted_under_flow(
    cluster: Cluster, mode: Mode, expire_nodest_conn: int
) -> DeletedUnderFlowRecord:
    """A connection, its real server deleted from the service, then data from the
    client: where it went, what the client saw, and the entry afterwards."""
    base = cluster.base_spec
    spec = base.with_service(mode=mode.name, protocol="tcp", scheduler="rr", port=STATE_PORT,
                             nat_port=None)  # fmt: skip
    director = spec.active.name
    cluster.configure(spec)
    client_ip, vip = str(spec.clients[0].ip), (str(spec.service.vip), STATE_PORT)
    servers = [r.name for r in spec.real_servers]
    knobs = {"net.ipv4.vs.expire_nodest_conn": expire_nodest_conn}
    with (
        sysctls(cluster, director, knobs),
        listening(cluster, servers, spec.service.family, STATE_PORT) as listeners,
        Connector(cluster.pid(spec.clients[0].name)) as conn,
    ):
        sport = fresh_client_port(cluster)
        client = conn.open(client_ip, sport, vip)
        first, _ = _dest_of(cluster, (client_ip, sport))
        server, _peer = listeners[first].accept()
        cluster.ipvs.remove_real_server(spec.service, spec.real_server(first))
        client.send(b"after the deletion\n")
        client.settimeout(3)
        try:
            client_saw = "data" if client.recv(64) else "end of stream"
        except OSError as exc:
            client_saw = type(exc).__name__
        server.settimeout(0.5)
        try:
            delivered = server.recv(64).decode(errors="replace")
        except OSError:
            delivered = ""
        _, entry_after = _dest_of(cluster, (client_ip, sport))
        server.close()
    return record(
        DeletedUnderFlowRecord(
            key=f"{mode.name}-expire_nodest_conn={expire_nodest_conn}",
            expire_nodest_conn=expire_nodest_conn,
            first=first,
            entry_after=entry_after,
            delivered=delivered,
            client_saw=client_saw,
        )
    )
