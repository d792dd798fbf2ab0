"""UDP through the director: the connection entry a datagram makes, its timeout, and
one-packet scheduling.

A UDP "connection" of IPVS is the entry the first datagram from a client
address and port creates; later datagrams (and, in NAT, the answers) follow
it and renew its timer, which is the udp timeout of ``ipvsadm --set``
(net/netfilter/ipvs/ip_vs_proto_udp.c udp_state_transition). With
one-packet scheduling (``ipvsadm -o``) no entry is kept: every datagram is
scheduled on its own (ip_vs_core.c ip_vs_schedule, ip_vs_conn.c).
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from loadgen.wire import MAX_ANSWER, REQUEST, name_in

from ..cluster import Cluster
from ..ipvs import TIMEOUTS_COMMAND, Timeouts, parse_timeouts, read_connections
from ..net import Connector
from ..registry import PROTOCOLS, Mode
from ..sched import Dest, Flow, as_built
from ..topology import ClusterSpec
from ..util import wait_until
from ._ports import fresh_client_port
from ._records import record, record_kind
from ._reuse import sysctls

UDP_TIMEOUT = 6  # s: the udp timeout the experiment sets (the kernel's default is 300)


def _udp_spec(cluster: Cluster, mode: Mode, **service: object) -> ClusterSpec:
    return cluster.base_spec.with_service(**{"mode": mode.name, "protocol": "udp",
                                             "scheduler": "rr", **service})  # fmt: skip


def _ask(cluster: Cluster, *options: str, count: int = 1) -> list[str]:
    """``count`` UDP requests from the first client (loadgen.ask with ``options``)."""
    spec = cluster.spec
    command = PROTOCOLS["udp"].client(spec.service.endpoint, count)
    out = cluster.run(spec.clients[0].name, f"{command} {' '.join(options)}", check=False)
    return [line.strip() for line in out.splitlines()][:count]


def _answer(sock: socket.socket) -> str:
    """The answering real server's name on a connected UDP socket ("" on time-out)."""
    try:
        return name_in(sock.recv(MAX_ANSWER))
    except OSError:
        return ""


def _question(sock: socket.socket) -> str:
    with contextlib.suppress(OSError):
        sock.send(REQUEST)
    return _answer(sock)


def _ring(cluster: Cluster) -> list[str]:
    """The real servers' names in the kernel's list order (rr walks it)."""
    names = {str(r.ip): r.name for r in cluster.spec.real_servers}
    return [names[d.addr] for d in cluster.service_state().dests]


@record_kind("udp-entry")
@dataclass(frozen=True, kw_only=True)
class UdpEntryRecord:
    """One client port's UDP entry followed from its first datagram to its expiry."""

    key: str  # the mode
    timeout_set: int
    timeout_read: int  # the udp timeout ipvsadm -L --timeout reported after the set
    ring: list[str]  # rr's order (the kernel's list)
    first: str  # the real server that answered the first datagram
    state: str  # the entry's state in /proc/net/ip_vs_conn
    spacing_s: float | None  # between the two datagrams at the director
    renewed: str  # who answered the second datagram, half a timeout later
    expires_renewed: int  # the entry's timer right after it, in s
    gone_after_s: float | None  # from the last datagram until the entry left the table
    after: str  # who answered the same port once the entry had gone


def _entry(cluster: Cluster, client: tuple[str, int]) -> tuple[str, int] | None:
    found = read_connections(cluster.pid(cluster.spec.active.name), client=client)
    return (found[0].state, found[0].expires) if found else None


def udp_entry_lifetime(
    cluster: Cluster, mode: Mode, *, timeout: int = UDP_TIMEOUT
) -> UdpEntryRecord:
    """Set the udp timeout, then follow one client port's entry: a datagram, a second
    one half a timeout later (from the same running client), the entry's expiry, and
    the port's next datagram. The timeouts are put back afterwards."""
    cluster.configure(_udp_spec(cluster, mode))
    director = cluster.spec.active.name
    port = fresh_client_port(cluster)
    client = (str(cluster.spec.clients[0].ip), port)
    saved = parse_timeouts(cluster.run(director, TIMEOUTS_COMMAND))
    try:
        cluster.run(director, Timeouts(tcp=0, tcpfin=0, udp=timeout).command())
        read = parse_timeouts(cluster.run(director, TIMEOUTS_COMMAND))
        source = ("--sport", str(port), "--timeout", "2")
        with cluster.capture(f"{cluster.spec.active.name}-eth0") as cap:
            # two datagrams from one socket, the second half a timeout after the first
            first, renewed = _ask(cluster, *source, "--one-socket", "--interval",
                                  str(timeout / 2), count=2)  # fmt: skip
        last = time.monotonic()
        entry = _entry(cluster, client)
        state, expires_renewed = entry or ("(none)", -1)
        sent = [f.time for f in cap.frames() if f.direction == "in" and
                PROTOCOLS["udp"].is_opening(f.packet)]  # fmt: skip
        gone_after = None
        while time.monotonic() - last < timeout + 15:
            if _entry(cluster, client) is None:
                gone_after = time.monotonic() - last
                break
            time.sleep(0.2)
        [after] = _ask(cluster, *source)
    finally:
        cluster.run(director, saved.command())
    return record(
        UdpEntryRecord(
            key=mode.name,
            timeout_set=timeout,
            timeout_read=read.udp,
            ring=_ring(cluster),
            first=first,
            state=state,
            spacing_s=round(sent[1] - sent[0], 2) if len(sent) == 2 else None,
            renewed=renewed,
            expires_renewed=expires_renewed,
            gone_after_s=None if gone_after is None else round(gone_after, 2),
            after=after,
        )
    )


@record_kind("one-packet")
@dataclass(frozen=True, kw_only=True)
class OnePacketRecord:
    """Datagrams from one client socket to a one-packet-scheduled service."""

    key: str  # "<mode>-<scheduler>"
    datagrams: int
    expected: list[str]  # the scheduler model's choice for each datagram, in order
    schedule: list[str]  # which real server received each datagram, in order
    answers: list[str]  # what the client's (connected) socket got per datagram
    answer_sources: list[str]  # "addr:port" of every answer that reached the client
    entries_seen: int  # entries of the client's port in the director's table
    conns_counted: int  # the service's connection counter
    vip: str = field(default="")
    answers_via_director: bool = False  # the mode's answers pass the director


def one_packet_schedule(
    cluster: Cluster,
    mode: Mode,
    *,
    scheduler: str = "rr",
    weights: Sequence[int] = (1,),
    datagrams: int = 6,
) -> OnePacketRecord:
    """``datagrams`` requests from one UDP socket to a service with ``-o`` (and the
    weights laid over the real servers), captured at the real servers and the client;
    the director's table read right after; the scheduler model's prediction for the
    same datagrams, one connection each."""
    base = _udp_spec(cluster, mode, one_packet=True, scheduler=scheduler)
    servers = [dataclasses.replace(r, weight=weights[i % len(weights)])
               for i, r in enumerate(base.real_servers)]  # fmt: skip
    cluster.configure(base.with_real_servers(*servers))
    spec = cluster.spec
    client = spec.clients[0]
    points = [f"{client.name}-eth0", *(f"{r.name}-eth0" for r in spec.real_servers)]
    udp = PROTOCOLS["udp"]
    port = fresh_client_port(cluster)
    kernel = cluster.service_state().dests  # the kernel's list order, before any datagram
    with cluster.capture(*points) as cap:
        answers = _ask(cluster, "--one-socket", "--sport", str(port), "--timeout", "1",
                       count=datagrams)  # fmt: skip
        entries = len(read_connections(cluster.pid(spec.active.name),
                                       client=(str(client.ip), port)))  # fmt: skip
        time.sleep(0.5)
    frames = cap.frames()
    by_point = {f"{r.name}-eth0": r.name for r in spec.real_servers}
    schedule = [
        by_point[f.point] for f in frames
        if f.point in by_point and f.direction == "in" and udp.is_opening(f.packet)
    ]  # fmt: skip
    back = [f for f in frames if f.point == f"{client.name}-eth0" and f.direction == "in"
            and udp.is_answer(f.packet)]  # fmt: skip
    net = spec.service.family.layer
    sources = [f"{f.packet[net].src}:{udp.ports(f.packet)[0]}" for f in back]
    # the exported counters are refreshed by the estimator, seconds late since 6.2
    wait_until(lambda: cluster.service_state().stats.conns >= datagrams, timeout=30,
               interval=0.5)  # fmt: skip
    names = {str(r.ip): r.name for r in spec.real_servers}
    model = as_built(scheduler, [Dest(name=names[d.addr], addr=d.addr, port=d.port,
                                      weight=d.weight) for d in kernel])  # fmt: skip
    s = spec.service
    flow = Flow(saddr=str(client.ip), sport=port, daddr=str(s.vip), dport=s.port)
    expected = [str(getattr(model.schedule(flow), "name", None)) for _ in range(datagrams)]
    return record(
        OnePacketRecord(
            key=f"{mode.name}-{scheduler}",
            datagrams=datagrams,
            expected=expected,
            schedule=schedule,
            answers=answers,
            answer_sources=sources,
            entries_seen=entries,
            conns_counted=cluster.service_state().stats.conns,
            vip=str(s.vip),
            answers_via_director=s.forwarding.reply_via_director,
        )
    )


@record_kind("udp-deleted-under-flow")
@dataclass(frozen=True, kw_only=True)
class UdpDeletedRecord:
    """A client port's UDP flow whose real server is deleted from the service."""

    key: str  # "<mode>-expire_nodest_conn=<v>"
    expire_nodest_conn: int
    timeout: int  # the udp timeout set
    first: str  # the real server deleted
    right_after: str  # who answered the port's next datagram ("" for nobody)
    entry_after: str  # the port's entry right after it: "<state> <real server>" or "(none)"
    question_gap_s: float  # from the first answer to the next question's answer or time-out
    answered_after_s: float | None  # from the deletion until a datagram of the port was answered
    then: str  # who answered it


def udp_deleted_under_flow(cluster: Cluster, mode: Mode, expire_nodest_conn: int, *,
                           timeout: int = UDP_TIMEOUT) -> UdpDeletedRecord:  # fmt: skip
    """A datagram from a fixed client port, its real server deleted, then datagrams
    from the same port (one a second) until one is answered. One socket held in the
    client's namespace sends them all: a process per datagram would take longer than
    the udp timeout under emulation, and the entry would expire before the question."""
    cluster.configure(_udp_spec(cluster, mode))
    director = cluster.spec.active.name
    port = fresh_client_port(cluster)
    client = (str(cluster.spec.clients[0].ip), port)
    vip = (str(cluster.spec.service.vip), cluster.spec.service.port)
    saved = parse_timeouts(cluster.run(director, TIMEOUTS_COMMAND))
    knobs = {"net.ipv4.vs.expire_nodest_conn": expire_nodest_conn}
    try:
        cluster.run(director, Timeouts(tcp=0, tcpfin=0, udp=timeout).command())
        with (
            sysctls(cluster, director, knobs),
            Connector(
                cluster.pid(cluster.spec.clients[0].name), timeout=1.0, protocol=PROTOCOLS["udp"]
            ) as conn,  # fmt: skip
        ):
            sock = conn.open(*client, vip)  # its first datagram makes the entry
            first = _answer(sock)
            asked = time.monotonic()
            cluster.ipvs.remove_real_server(cluster.spec.service, cluster.spec.real_server(first))
            deleted = time.monotonic()
            right_after = _question(sock)
            gap = round(time.monotonic() - asked, 2)
            found = read_connections(cluster.pid(director), client=client)
            names = {str(r.ip): r.name for r in cluster.spec.real_servers}
            entry_after = (f"{found[0].state} {names.get(found[0].dest[0], '?')}"
                           if found else "(none)")  # fmt: skip
            then, answered_after = right_after, None
            while not then and time.monotonic() - deleted < timeout + 15:
                then = _question(sock)
            if then:
                answered_after = round(time.monotonic() - deleted, 1)
    finally:
        cluster.run(director, saved.command())
    return record(UdpDeletedRecord(
        key=f"{mode.name}-expire_nodest_conn={expire_nodest_conn}",
        expire_nodest_conn=expire_nodest_conn, timeout=timeout, first=first,
        right_after=right_after, entry_after=entry_after, question_gap_s=gap,
        answered_after_s=answered_after, then=then))  # fmt: skip
