"""One forwarding exchange: real requests through the VIP, captured at every interface.

A real client makes ``rounds`` x N requests to the VIP (one connection
each, N real servers) in the service shape asked for (mode, protocol,
family); every interface on the path is captured. The tests of
conformance/test_forwarding.py each check one promise against the same
exchange.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..cluster import Cluster
from ..ipvs import KERNEL_PROTOCOLS, ServiceState, read_connections
from ..net import Frame, Site, TracedFlow
from ..registry import TUNNEL_CHECKSUMS, Combination, Family, TunnelOption
from ..topology import ClusterSpec, RealServer
from ..util import wait_until
from ._records import ForwardingRecord, TraceHop, record

ROUNDS = 2  # requests per real server in an exchange


def unservable(spec: ClusterSpec, shape: Combination) -> str | None:
    """Why a topology cannot carry a service of this shape, or None."""
    return spec.lacks(shape.family)


def outer_sources(cluster: Cluster) -> dict[str, str]:
    """The source address the active director's routing gives packets to each real
    server (what an encapsulation carries as its outer source: ip_vs_xmit.c looks the
    route up with no source, like ``ip route get``). IPv6 chooses among the inside
    addresses by RFC 6724, not by the order they were added."""
    spec = cluster.spec
    out = cluster.run(spec.active.name, *(f"ip route get {r.ip}" for r in spec.real_servers))
    sources = [line.split(" src ", 1)[1].split()[0] for line in out.splitlines() if " src " in line]
    if len(sources) != len(spec.real_servers):
        raise AssertionError(f"{spec.active.name}: no source address in `ip route get`:\n{out}")
    return {r.name: src for r, src in zip(spec.real_servers, sources, strict=True)}


def request_sequence(cluster: Cluster, client: str, count: int) -> list[str]:
    """``count`` requests to the VIP from one client, one connection each, with the
    service's protocol client. Returns each answering real server's name ("" on failure)."""
    s = cluster.spec.service
    out = cluster.run(client, s.transport.client(s.endpoint, count), check=False)
    return [line.strip() for line in out.splitlines()][:count]


def site_of(cluster: Cluster, shape: Combination) -> Site:
    spec = cluster.spec
    d, gw = spec.active.name, spec.router.name
    intfs = [f"{d}-eth0", f"{d}-eth1", f"{gw}-eth0", f"{gw}-eth1"]
    intfs += [f"{c.name}-eth0" for c in spec.clients]
    intfs += [f"{r.name}-eth0" for r in spec.real_servers]
    return Site(
        shape=shape,
        vip=str(spec.service.vip),
        port=spec.service.port,
        real_port=spec.service.real_port,
        director=d,
        outer_sources=outer_sources(cluster),
        router=gw,
        tunnels={
            r.name: TunnelOption(spec.tunnel_of(r), TUNNEL_CHECKSUMS[r.tunnel_checksum])
            for r in spec.real_servers
        },
        tunnel_ports={r.name: spec.tunnel_port_of(r) for r in spec.real_servers},
        macs={i: cluster.mac(i) for i in intfs},
    )


def capture_points(spec: ClusterSpec) -> list[str]:
    """Every interface a client connection can cross."""
    d, gw = spec.active.name, spec.router.name
    return [
        f"{spec.clients[0].name}-eth0",
        f"{d}-eth0",
        f"{d}-eth1",
        f"{gw}-eth0",
        f"{gw}-eth1",
        *(f"{r.name}-eth0" for r in spec.real_servers),
    ]


@dataclass
class Exchange:
    """Traffic sent once in one service shape, and everything observed about it."""

    shape: Combination
    cluster: Cluster
    site: Site
    responses: list[str]
    frames: list[Frame]
    flows: list[TracedFlow]
    state: ServiceState
    ipvsadm: str
    seconds: float = 0.0
    record: ForwardingRecord | None = field(default=None, repr=False)
    # real server address -> connections its counters held before the exchange
    counted_before: dict[str, int] = field(default_factory=dict)

    def frames_at(self, point: str) -> list[Frame]:
        return [f for f in self.frames if f.point == point]

    def transport_frames(
        self, point: str, direction: str, outer: Family | None = None, **ip: str
    ) -> list[Frame]:
        """Frames of the service's protocol at a point, in a direction, whose (outer)
        network-layer fields match ``ip``: of family ``outer`` where a tunnel carries
        the service's family in the other one."""
        net, transport = (outer or self.shape.family).layer, self.shape.protocol.layer
        out = []
        for f in self.frames_at(point):
            if f.direction != direction:  # known without decoding the frame
                continue
            pkt = f.packet
            if net not in pkt or transport not in pkt:
                continue
            if all(str(getattr(pkt[net], k)) == v for k, v in ip.items()):
                out.append(f)
        return out


def _trace_flows(
    frames: list[Frame], shape: Combination, client: tuple[str, str], site: Site,
    servers: tuple[RealServer, ...],
) -> list[TracedFlow]:  # fmt: skip
    """Each connection: the client's opening packet, and the real server it reached."""
    name, ip = client
    net, proto = shape.family.layer, shape.protocol
    by_point = {f"{r.name}-eth0": r for r in servers}
    reached: dict[int, RealServer] = {}
    opened: list[int] = []
    client_if = f"{name}-eth0"
    for f in frames:
        # the client's frames out and the real servers' in, told by point and direction
        # first: decoding every frame of every point costs seconds under emulation
        wanted = "out" if f.point == client_if else "in" if f.point in by_point else None
        if f.direction != wanted:
            continue
        pkt = f.packet
        if not proto.is_opening(pkt):
            continue
        sport = proto.ports(pkt)[0]
        if f.point == client_if and pkt[net].dst == site.vip:
            opened.append(sport)
        elif f.point in by_point:
            reached.setdefault(sport, by_point[f.point])
    return [
        TracedFlow(
            client=name,
            client_ip=ip,
            sport=sport,
            rs=reached[sport].name if sport in reached else "?",
            rs_ip=str(reached[sport].ip) if sport in reached else "?",
        )
        for sport in opened
    ]


def _handshake_trace(frames: list[Frame], shape: Combination, sport: int) -> list[TraceHop]:
    """The opening packet and the answer of one connection at every interface."""
    proto = shape.protocol
    # a frame of the connection holds its port's two bytes: only those frames are decoded
    port = sport.to_bytes(2, "big")
    return [
        TraceHop(point=f.point, direction=f.direction, packet=f.packet.summary())
        for f in frames
        if port in f.data
        and (proto.is_opening(f.packet) or proto.is_answer(f.packet))
        and sport in proto.ports(f.packet)
    ]


# TCP states in which an endpoint sends again until answered (include/net/tcp_states.h;
# /proc/net/tcp's "st" column): SYN_SENT, SYN_RECV, FIN_WAIT1, LAST_ACK, CLOSING
_SENDS_AGAIN = frozenset({"02", "03", "04", "09", "0B"})
CLOSING_BOUND_S = 5.0


def still_closing(cluster: Cluster, spec: ClusterSpec) -> list[str]:
    """Hosts with a TCP socket of the service's that may still send (read from /proc,
    no process): the first client's towards its port, a real server's on its port."""
    s = spec.service
    ends = [(spec.clients[0].name, 2, s.port)]  # rem_address's port
    ends += [(r.name, 1, s.real_port) for r in spec.real_servers]  # local_address's port
    return [host for host, column, port in ends
            if _tcp_sockets_sending(cluster.pid(host), column, port)]  # fmt: skip


def _tcp_sockets_sending(pid: int, column: int, port: int) -> bool:
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(FileNotFoundError):
            if tcp_table_sends(Path(f"/proc/{pid}/net/{table}").read_text(), column, port):
                return True
    return False


def tcp_table_sends(text: str, column: int, port: int) -> bool:
    """A /proc/net/tcp{,6} text has a socket that may send again, with ``port`` in its
    local (``column`` 1) or remote (2) address."""
    suffix = f":{port:04X}"
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] in _SENDS_AGAIN and fields[column].endswith(suffix):
            return True
    return False


ESTIMATOR_PERIOD_S = 2.0  # the exported counters move when the estimator runs (ip_vs_est.c)


def recycled_counts(cluster: Cluster) -> dict[str, int]:
    """Connections each real server of the service just configured already counts.

    A new service's real server comes back from the kernel's trash, counters and all,
    while connections of an earlier service of the same protocol, address and port
    still hold it (ip_vs_ctl.c ip_vs_trash_get_dest). Where such connections exist, the
    counts are read once the estimator has caught up with them (two reads an
    estimator period apart agree); where none do, every count is 0."""
    s = cluster.spec.service
    virtual = (str(s.vip), s.port)
    held = read_connections(cluster.pid(cluster.spec.active.name), virtual=virtual)

    def now() -> dict[str, int]:
        return {d.addr: d.stats.conns for d in cluster.service_state().dests}

    counts = now()
    if not any(c.protocol == KERNEL_PROTOCOLS[s.transport.number] for c in held):
        return counts
    while True:
        time.sleep(ESTIMATOR_PERIOD_S + 0.5)
        again = now()
        if again == counts:
            return counts
        counts = again


def send_exchange(
    cluster: Cluster,
    shape: Combination,
    *,
    rounds: int = ROUNDS,
    tunnel: TunnelOption | None = None,
    over: Family | None = None,
    count_recycled: bool = True,
) -> Exchange:
    """Configure the shape (rr; every real server reached through ``tunnel`` if given,
    by its address in family ``over`` if given), send the requests, capture, and
    record what was seen. ``count_recycled``: read what real servers recycled from the
    kernel's trash already count (for a check of their counters; it may cost an
    estimator period)."""
    spec = cluster.base_spec.in_family(shape.family).with_service(
        mode=shape.mode.name, protocol=shape.protocol.name, scheduler="rr"
    )
    if tunnel is not None:
        carriers = cluster.base_spec.in_family(over or shape.family)
        spec = spec.with_real_servers(*(
            dataclasses.replace(carriers.real_server(r.name), tunnel=tunnel.tunnel.name,
                                tunnel_checksum=tunnel.checksum.name)
            for r in spec.real_servers
        ))  # fmt: skip
    # an earlier test's connection to this service may still be closing (a FIN sent
    # again on a busy guest): the new service would count its packets (the real
    # servers' entries come back from the kernel's trash), the capture would not
    wait_until(lambda: not still_closing(cluster, spec), timeout=CLOSING_BOUND_S, interval=0.1)
    cluster.configure(spec, checksums=shape.checksums)
    counted_before = recycled_counts(cluster) if count_recycled else {}
    site = site_of(cluster, shape)
    client = spec.clients[0]
    count = rounds * len(spec.real_servers)
    started = time.monotonic()
    with cluster.capture(*capture_points(spec)) as cap:
        responses = request_sequence(cluster, client.name, count)
        time.sleep(1.0)  # let the last ACKs and FINs cross every hop
        cap.wait_quiet(0.5)  # and on a busy machine, until they have
    seconds = time.monotonic() - started
    frames = cap.frames()
    flows = _trace_flows(frames, shape, (client.name, str(client.ip)), site, spec.real_servers)
    state = cluster.service_state()
    ipvsadm = cluster.run(spec.active.name, "ipvsadm -Ln")
    rec = record(
        ForwardingRecord(
            key=shape.id,
            mode=shape.mode.name,
            protocol=shape.protocol.name,
            family=shape.family.name,
            checksums=shape.checksums.name,
            requests=count,
            responses_per_server=dict(Counter(responses)),
            kernel_order=[d.addr for d in state.dests],
            service_counters=dataclasses.asdict(state.stats),
            frames_captured=len(frames),
            exchange_s=round(seconds, 2),
            handshake_trace=_handshake_trace(frames, shape, flows[0].sport) if flows else [],
        )
    )
    return Exchange(
        shape=shape,
        cluster=cluster,
        site=site,
        responses=responses,
        frames=frames,
        flows=flows,
        state=state,
        ipvsadm=ipvsadm,
        seconds=seconds,
        record=rec,
        counted_before=counted_before,
    )
