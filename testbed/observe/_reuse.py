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
from ..net import Connector
from ..registry import Mode
from ._ports import fresh_client_port
from ._records import record, record_kind
from ._tcp_states import STATE_PORT, dest_of, listening, rr_choices

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

    key: str  # "<mode>-<closing>-reuse<mode>[-conntrack][-quiesced-nodest<0|1>]"
    no_output: bool  # the entry never sees the replies (not NAT)
    conn_reuse_mode: int
    conntrack: int
    expire_nodest_conn: int
    first_weight: int  # the first real server's weight when the port connected again
    first: str  # the real server of the first connection
    state_before: str  # the old entry's state when the port connected again
    second: str  # the real server of the second connection
    rr_next: str  # rr's choice for a connection scheduled afresh
    connect_s: float  # the second connect() call, start to established


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


@dataclass
class _Opened:
    """A connection through the VIP with both ends held here."""

    connector: Connector
    client: socket.socket
    server: socket.socket
    first: str  # its real server
    source: tuple[str, int]  # the client's address and port
    vip: tuple[str, int]
    rr: list[str]  # rr's first two choices, read before the connection


@contextlib.contextmanager
def _opened(cluster: Cluster, mode: Mode, knobs: Mapping[str, int]) -> Iterator[_Opened]:
    """A ``mode`` rr service over every real server, the director's sysctls ``knobs``
    set, a listener on each real server, and one connection from a fresh client port."""
    spec = cluster.base_spec.with_service(mode=mode.name, protocol="tcp", scheduler="rr",
                                          port=STATE_PORT, nat_port=None)  # fmt: skip
    cluster.configure(spec)
    rr = rr_choices(cluster, 2)
    client_ip, vip = str(spec.clients[0].ip), (str(spec.service.vip), STATE_PORT)
    servers = [r.name for r in spec.real_servers]
    with (
        sysctls(cluster, spec.active.name, knobs),
        listening(cluster, servers, spec.service.family, STATE_PORT) as listeners,
        Connector(cluster.pid(spec.clients[0].name)) as conn,
    ):
        sport = fresh_client_port(cluster)
        client = conn.open(client_ip, sport, vip)
        first, _ = dest_of(cluster, (client_ip, sport))
        if first not in listeners:
            raise AssertionError(f"the connection's entry names no real server: {first}")
        server, _peer = listeners[first].accept()
        try:
            yield _Opened(connector=conn, client=client, server=server, first=first,
                          source=(client_ip, sport), vip=vip, rr=rr)  # fmt: skip
        finally:
            server.close()


def port_reuse(cluster: Cluster, mode: Mode, closing: str, *, conn_reuse_mode: int,
               conntrack: int = 0, expire_nodest_conn: int = 0,
               quiesce: bool = False) -> ReuseRecord:  # fmt: skip
    """One connection, closed as ``closing`` says, then the same client port again;
    with ``quiesce``, its real server set to weight 0 between the two."""
    knobs = {"net.ipv4.vs.conn_reuse_mode": conn_reuse_mode, "net.ipv4.vs.conntrack": conntrack,
             "net.ipv4.vs.expire_nodest_conn": expire_nodest_conn}  # fmt: skip
    with _opened(cluster, mode, knobs) as c:
        _close(closing, c.client, c.server)
        if quiesce:
            service = cluster.spec.service
            cluster.ipvs.set_weight(service, cluster.spec.real_server(c.first), 0)
        time.sleep(SETTLE_S)
        _, state_before = dest_of(cluster, c.source)
        started = time.monotonic()
        try:
            c.connector.open(*c.source, c.vip)
            second, _ = dest_of(cluster, c.source)
        except OSError as exc:
            second = f"(no connection: {type(exc).__name__})"
        connect_s = time.monotonic() - started
    suffix = (f"-conntrack{conntrack}" if conntrack else "") + (
        f"-quiesced-nodest{expire_nodest_conn}" if quiesce else "")  # fmt: skip
    return record(
        ReuseRecord(
            key=f"{mode.name}-{closing}-reuse{conn_reuse_mode}{suffix}",
            no_output=not mode.reply_via_director,
            conn_reuse_mode=conn_reuse_mode,
            conntrack=conntrack,
            expire_nodest_conn=expire_nodest_conn,
            first_weight=0 if quiesce else 1,
            first=c.first,
            state_before=state_before,
            second=second,
            rr_next=c.rr[1] if c.rr[0] == c.first else "?",
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
    knobs = {"net.ipv4.vs.expire_nodest_conn": expire_nodest_conn}
    with _opened(cluster, mode, knobs) as c:
        cluster.ipvs.remove_real_server(cluster.spec.service, cluster.spec.real_server(c.first))
        c.client.send(b"after the deletion\n")
        c.client.settimeout(3)
        try:
            client_saw = "data" if c.client.recv(64) else "end of stream"
        except OSError as exc:
            client_saw = type(exc).__name__
        c.server.settimeout(0.5)
        try:
            delivered = c.server.recv(64).decode(errors="replace")
        except OSError:
            delivered = ""
        _, entry_after = dest_of(cluster, c.source)
    return record(
        DeletedUnderFlowRecord(
            key=f"{mode.name}-expire_nodest_conn={expire_nodest_conn}",
            expire_nodest_conn=expire_nodest_conn,
            first=c.first,
            entry_after=entry_after,
            delivered=delivered,
            client_saw=client_saw,
        )
    )
