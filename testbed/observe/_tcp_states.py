"""A TCP connection's entry in the director's table, followed through its close.

Both ends are real kernel sockets held by this process: the client's opened
from the client's namespace, the server's accepted from a listener in the
real server's namespace, so the test decides which side closes, and when.
After each step the director's entry (state, timer) is read from
/proc/net/ip_vs_conn, and the segments the director handled are taken from
its captures: those from the client arriving for the VIP ("in") and, where
the replies cross the director (NAT), those from the real server ("out").
The expectation is the state model fed with exactly those segments
(testbed.state). Sources: ip_vs_proto_tcp.c (set_tcp_state, tcp_states,
tcp_timeouts), ipvsadm(8) --set.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from scapy.layers.inet import TCP

from ..cluster import Cluster
from ..ipvs import TIMEOUTS_COMMAND, Timeouts, parse_timeouts, read_connections
from ..net import Connector, run_in_netns
from ..registry import FAMILIES, Family, Mode
from ..sched import Dest, Flow, as_built
from ..util import wait_until
from ._ports import fresh_client_port
from ._records import record, record_kind

STATE_PORT = 8600  # the walk's service port: no real-server program listens there
# distinct from every other state's timeout, so a timer names its state
TCP_TIMEOUT, TCPFIN_TIMEOUT = 700, 70
SETTLE_S = 1.0  # a step's segments cross every hop well within this


@dataclass
class _Ends:
    client: socket.socket
    server: socket.socket


def _shut(sock: Callable[[_Ends], socket.socket]) -> Callable[[_Ends], None]:
    return lambda ends: sock(ends).shutdown(socket.SHUT_WR)  # a FIN


def _client_resets(ends: _Ends) -> None:
    ends.client.close()  # SO_LINGER 0 (the Connector's): an RST


# how a connection ends: its steps after the handshake, each (name, action)
CLOSINGS: dict[str, list[tuple[str, Callable[[_Ends], None]]]] = {
    "client-first": [("client sends FIN", _shut(lambda e: e.client)),
                     ("server sends FIN", _shut(lambda e: e.server))],
    "server-first": [("server sends FIN", _shut(lambda e: e.server)),
                     ("client sends FIN", _shut(lambda e: e.client))],
    "client-rst": [("client sends RST", _client_resets)],
}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class WalkStep:
    """One step of a connection and the director's entry right after it."""

    name: str
    segments: list[tuple[str, str]]  # (TCP flags, "in" | "out") the director handled
    state: str  # "(none)" when the entry is gone
    expires: int  # its timer, in s (-1 when gone)


@record_kind("tcp-walk")
@dataclass(frozen=True, kw_only=True)
class TcpWalkRecord:
    """A connection from handshake to close, with its entry after every step."""

    key: str  # "<mode>-<closing>"
    masquerading: bool  # the director sees the replies (NAT)
    timeouts: dict[str, int]  # tcp, tcpfin as set
    steps: list[WalkStep] = field(default_factory=list)


def _listener(family: Family, port: int) -> socket.socket:
    sock = socket.socket(family.af, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::" if family.version == 6 else "0.0.0.0", port))
    sock.listen(64)
    sock.settimeout(10)
    return sock


@contextlib.contextmanager
def listening(cluster: Cluster, hosts: list[str], family: Family,
              port: int) -> Iterator[dict[str, socket.socket]]:  # fmt: skip
    """A TCP listener on ``port`` (any address of ``family``) in each host's namespace,
    held by this process: the kernel completes handshakes without an accept."""
    held: dict[str, socket.socket] = {}
    try:
        for host in hosts:
            held[host] = run_in_netns(cluster.pid(host), lambda: _listener(family, port))
        yield held
    finally:
        for sock in held.values():
            sock.close()


@contextlib.contextmanager
def _timeouts(cluster: Cluster, tcp: int, tcpfin: int) -> Iterator[None]:
    """``ipvsadm --set`` for the duration, then the values found before."""
    director = cluster.spec.active.name
    saved = parse_timeouts(cluster.run(director, TIMEOUTS_COMMAND))
    cluster.run(director, Timeouts(tcp=tcp, tcpfin=tcpfin, udp=0).command())
    try:
        yield
    finally:
        cluster.run(director, saved.command())


@contextlib.contextmanager
def connection(cluster: Cluster, mode: Mode, family: Family) -> Iterator[tuple[_Ends, int]]:
    """A TCP connection through the VIP to the one real server of a ``mode`` service,
    both ends held here; yields (the ends, the client's port)."""
    base = cluster.base_spec.in_family(family)
    spec = base.with_service(mode=mode.name, protocol="tcp", scheduler="rr", port=STATE_PORT,
                             nat_port=None).with_real_servers(base.real_servers[0])  # fmt: skip
    cluster.configure(spec)
    rs = spec.real_servers[0].name
    sport = fresh_client_port(cluster)
    with (
        listening(cluster, [rs], family, spec.service.real_port) as listeners,
        Connector(cluster.pid(spec.clients[0].name)) as conn,
    ):
        client = conn.open(str(spec.clients[0].ip), sport, (str(spec.service.vip), STATE_PORT))
        server, _peer = listeners[rs].accept()
        try:
            yield _Ends(client=client, server=server), sport
        finally:
            server.close()


def dest_of(cluster: Cluster, client: tuple[str, int]) -> tuple[str, str]:
    """(real server name, state) of the client's entry ("?" when there is none)."""
    names = {str(r.ip): r.name for r in cluster.spec.real_servers}
    found = read_connections(cluster.pid(cluster.spec.active.name), client=client)
    return (names.get(found[0].dest[0], "?"), found[0].state) if found else ("?", "(none)")


def rr_choices(cluster: Cluster, count: int) -> list[str]:
    """rr's first ``count`` choices for the service as the kernel built it."""
    names = {str(r.ip): r.name for r in cluster.spec.real_servers}
    dests = [Dest(name=names[d.addr], addr=d.addr, port=d.port, weight=d.weight)
             for d in cluster.service_state().dests]  # fmt: skip
    model = as_built("rr", dests)
    s = cluster.spec.service
    flow = Flow(saddr=str(cluster.spec.clients[0].ip), sport=1, daddr=str(s.vip), dport=s.port)
    return [str(getattr(model.schedule(flow), "name", None)) for _ in range(count)]


def _segments(cluster: Cluster, frames: list, sport: int) -> list[tuple[float, str, str]]:
    """(time, flags, direction) of each segment of the client's port the director got."""
    director = cluster.spec.active.name
    out = []
    for f in frames:
        if f.direction != "in" or TCP not in f.packet:
            continue
        tcp = f.packet[TCP]
        if f.point == f"{director}-eth0" and tcp.sport == sport:
            out.append((f.time, str(tcp.flags), "in"))
        elif f.point == f"{director}-eth1" and tcp.dport == sport:
            out.append((f.time, str(tcp.flags), "out"))
    return out


def _entry(cluster: Cluster, client: tuple[str, int]) -> tuple[str, int]:
    found = read_connections(cluster.pid(cluster.spec.active.name), client=client)
    return (found[0].state, found[0].expires) if found else ("(none)", -1)


def tcp_state_walk(cluster: Cluster, mode: Mode, closing: str, *,
                   family: Family = FAMILIES["ipv4"]) -> TcpWalkRecord:  # fmt: skip
    """Open a connection, end it as ``closing`` says, and read the director's entry
    after the handshake and after every step."""
    director = cluster.spec.active.name
    marks: list[tuple[str, float, tuple[str, int]]] = []
    with _timeouts(cluster, TCP_TIMEOUT, TCPFIN_TIMEOUT):
        points = (f"{director}-eth0", f"{director}-eth1")
        with cluster.capture(*points) as cap, connection(cluster, mode, family) as (ends, sport):
            client = (str(cluster.spec.clients[0].ip), sport)
            time.sleep(SETTLE_S)
            marks.append(("handshake", time.time(), _entry(cluster, client)))
            for name, act in CLOSINGS[closing]:
                act(ends)
                time.sleep(SETTLE_S)
                marks.append((name, time.time(), _entry(cluster, client)))
        segments = _segments(cluster, cap.frames(), sport)
    steps, since = [], 0.0
    for name, at, (state, expires) in marks:
        seen = [(flags, way) for t, flags, way in segments if since < t <= at]
        steps.append(WalkStep(name=name, segments=seen, state=state, expires=expires))
        since = at
    return record(
        TcpWalkRecord(
            key=f"{mode.name}-{closing}",
            masquerading=mode.reply_via_director,
            timeouts={"tcp": TCP_TIMEOUT, "tcpfin": TCPFIN_TIMEOUT},
            steps=steps,
        )
    )


@record_kind("tcp-idle")
@dataclass(frozen=True, kw_only=True)
class IdleRecord:
    """An established connection left idle past the tcp timeout, then used."""

    key: str  # the mode
    timeout: int  # the tcp timeout set, in s
    state_before: str
    gone_after_s: float | None  # from the last segment until the entry left the table
    delivered: str  # what the real server's socket received afterwards
    client_error: str  # what the client's socket reported ("" if nothing)
    forwarded: int  # segments of the port the director sent toward the real server after


def idle_past_timeout(cluster: Cluster, mode: Mode, *, timeout: int = 3,
                      family: Family = FAMILIES["ipv4"]) -> IdleRecord:  # fmt: skip
    """Set a short tcp timeout, open a connection, leave it idle until its entry is gone,
    then send data from the client."""
    director = cluster.spec.active.name
    with _timeouts(cluster, timeout, 0), connection(cluster, mode, family) as (ends, sport):
        client = (str(cluster.spec.clients[0].ip), sport)
        state_before, _ = _entry(cluster, client)
        last = time.monotonic()
        gone = wait_until(lambda: _entry(cluster, client)[0] == "(none)", timeout=timeout + 15,
                          interval=0.2)  # fmt: skip
        gone_after = time.monotonic() - last if gone else None
        with cluster.capture(f"{director}-eth1") as cap:
            error = ""
            try:
                ends.client.send(b"after the timeout\n")
                ends.client.settimeout(3)
                ends.client.recv(64)
            except OSError as exc:
                error = type(exc).__name__
            ends.server.settimeout(1)
            try:
                delivered = ends.server.recv(64)
            except OSError:
                delivered = b""
        forwarded = [
            f for f in cap.frames()
            if f.direction == "out" and TCP in f.packet
            and sport in (f.packet[TCP].sport, f.packet[TCP].dport)
        ]  # fmt: skip
    return record(
        IdleRecord(
            key=mode.name,
            timeout=timeout,
            state_before=state_before,
            gone_after_s=None if gone_after is None else round(gone_after, 2),
            delivered=delivered.decode(errors="replace"),
            client_error=error,
            forwarded=len(forwarded),
        )
    )
