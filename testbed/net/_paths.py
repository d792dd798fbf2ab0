"""The expected-packet oracle: the path a connection takes, hop by hop, as scapy templates.

Nothing here knows a mode, protocol or family by name: the templates are
built from the entries' declared parameters (testbed.registry), so a new
entry gets its expected packets for free. Sources: ipvsadm(8) (-m
masquerading, -g gatewaying, -i ipip encapsulation), the LVS documents
LVS-NAT, LVS-DR and LVS-Tun, net/netfilter/ipvs/ip_vs_xmit.c.

For one client connection (its opening packet and the server's answer)
each function returns the hops that must be seen, or must not be seen, at
named interfaces.
"""

from __future__ import annotations

from dataclasses import dataclass

from scapy.layers.l2 import Ether
from scapy.packet import Packet

from ..registry import Combination, Encapsulation, TunnelOption, family_of
from ._packets import Hop


@dataclass(frozen=True, kw_only=True)
class TracedFlow:
    """One client connection, traced from the client to the real server that got it."""

    client: str  # client host name
    client_ip: str
    sport: int  # client source port
    rs: str  # real server host name that got it ("?": none)
    rs_ip: str


@dataclass(frozen=True, kw_only=True)
class Site:
    """The cluster as the paths refer to it: the service's shape, addresses, MACs."""

    shape: Combination
    vip: str
    port: int
    real_port: int
    director: str
    outer_sources: dict[str, str]  # real server name -> the director's source toward it
    router: str
    tunnels: dict[str, TunnelOption]  # real server name -> how TUN reaches it
    tunnel_ports: dict[str, int]  # real server name -> its tunnel's UDP port (or 0)
    macs: dict[str, str]  # interface -> MAC

    def _ip(self, **fields: object) -> Packet:
        return self.shape.family.layer(**fields)

    def opening(self, src: str, dst: str, sport: int, dport: int) -> Packet:
        return self._ip(src=src, dst=dst) / self.shape.protocol.opening(sport, dport)

    def answer(self, src: str, dst: str, sport: int, dport: int) -> Packet:
        return self._ip(src=src, dst=dst) / self.shape.protocol.answer(sport, dport)

    def toward_client(self, f: TracedFlow) -> Packet:
        """Any packet of the flow on its way back to the client."""
        return self._ip(dst=f.client_ip) / self.shape.protocol.layer(dport=f.sport)

    def encapsulation(self, f: TracedFlow) -> Encapsulation:
        """The director's encapsulation toward the flow's real server (ip_vs_xmit.c):
        the carried datagram's checksum is partial where senders leave it to offload."""
        family, option = self.shape.family, self.tunnels[f.rs]
        return Encapsulation(
            outer=family_of(f.rs_ip),  # the VIP's, unless the real server is of the other
            inner=family,
            src=self.outer_sources[f.rs],
            dst=f.rs_ip,
            port=self.tunnel_ports[f.rs],
            checksum=option.checksum,
            inner_partial=self.shape.checksums.tx_offload,
            inner_header_length=family.header_length,
            inner_checksum_offset=self.shape.protocol.checksum_offset,
        )

    def at_real_server(self, f: TracedFlow) -> tuple[str, int]:
        """The (address, port) the client's packets carry when they reach the real server."""
        if self.shape.mode.rewrites_destination:
            return f.rs_ip, self.real_port
        return self.vip, self.port


def request_hops(s: Site, f: TracedFlow) -> list[Hop]:
    """Opening packet: client -> director (to the VIP) -> real server (as the mode forwards)."""
    mode = s.shape.mode
    d_out, d_in, rs_if = f"{s.director}-eth0", f"{s.director}-eth1", f"{f.rs}-eth0"
    to_vip = s.opening(f.client_ip, s.vip, f.sport, s.port)
    if mode.encapsulates:  # the datagram untouched inside the real server's tunnel
        payload = s.tunnels[f.rs].tunnel.outer(s.encapsulation(f)) / to_vip
    else:  # the same datagram, or with destination address and port rewritten
        dst, dport = s.at_real_server(f)
        payload = s.opening(f.client_ip, dst, f.sport, dport)
    forwarded = Ether(src=s.macs[d_in], dst=s.macs[rs_if]) / payload
    return [
        Hop(name="client sends the opening packet to the VIP", point=f"{f.client}-eth0",
            direction="out", expect=to_vip),
        Hop(name="director receives it for the VIP", point=d_out, direction="in",
            expect=Ether(dst=s.macs[d_out]) / to_vip),
        Hop(name=f"director forwards it ({mode.title})", point=d_in, direction="out",
            expect=forwarded),
        Hop(name="real server receives the forwarded packet", point=rs_if, direction="in",
            expect=forwarded),
    ]  # fmt: skip


def reply_hops(s: Site, f: TracedFlow) -> list[Hop]:
    """The answer: back through the director, or straight via the router, as the mode says."""
    d_out, d_in, rs_if = f"{s.director}-eth0", f"{s.director}-eth1", f"{f.rs}-eth0"
    gw_out, gw_in, c_if = f"{s.router}-eth0", f"{s.router}-eth1", f"{f.client}-eth0"
    from_vip = s.answer(s.vip, f.client_ip, s.port, f.sport)
    if s.shape.mode.reply_via_director:
        src, sport = s.at_real_server(f)
        from_rs = s.answer(src, f.client_ip, sport, f.sport)
        return [
            Hop(name="real server answers its gateway, the director", point=rs_if,
                direction="out", expect=Ether(dst=s.macs[d_in]) / from_rs),
            Hop(name="director receives the answer", point=d_in, direction="in",
                expect=from_rs),
            Hop(name="director sends it on from the VIP", point=d_out, direction="out",
                expect=from_vip),
            Hop(name="client receives the answer from the VIP via the director", point=c_if,
                direction="in", expect=Ether(src=s.macs[d_out]) / from_vip),
        ]  # fmt: skip
    return [
        Hop(name="real server answers from the VIP to the router", point=rs_if,
            direction="out", expect=Ether(dst=s.macs[gw_in]) / from_vip),
        Hop(name="router forwards the answer", point=gw_out, direction="out", expect=from_vip),
        Hop(name="client receives the answer from the VIP via the router", point=c_if,
            direction="in", expect=Ether(src=s.macs[gw_out]) / from_vip),
    ]  # fmt: skip


def forbidden_hops(s: Site, f: TracedFlow) -> list[Hop]:
    """Hops that would mean the answer went the wrong way."""
    back = s.toward_client(f)
    if s.shape.mode.reply_via_director:
        # the real server must not bypass the director (an answer it did not rewrite)
        return [
            Hop(name="real server answer bypasses the director", point=f"{s.router}-eth1",
                direction="in", expect=back),
        ]  # fmt: skip
    return [
        Hop(name="director receives an answer", point=f"{s.director}-eth1", direction="in",
            expect=back),
        Hop(name="director sends an answer", point=f"{s.director}-eth0", direction="out",
            expect=back),
    ]  # fmt: skip


def carried(s: Site, f: TracedFlow, sent: Packet) -> Packet:
    """The datagram a forwarded frame carries: unwrapped from the tunnel where the mode
    encapsulates (``sent`` is the network layer as the director sent it)."""
    return s.tunnels[f.rs].tunnel.inner(sent) if s.shape.mode.encapsulates else sent


def as_forwarded(s: Site, f: TracedFlow, received: Packet) -> Packet:
    """What the mode allows the director to change, applied to the datagram it received.

    A forwarding hop decrements the hop limit (ip_vs_xmit.c decrement_ttl) and
    recomputes the header checksum; a rewriting mode changes the destination
    address and port.
    """
    family, protocol = s.shape.family, s.shape.protocol
    pkt = family.layer(bytes(received))
    setattr(pkt, family.hop_limit, getattr(pkt, family.hop_limit) - 1)
    if s.shape.mode.rewrites_destination:
        pkt.dst, pkt[protocol.layer].dport = s.at_real_server(f)
    if family.header_checksum:
        delattr(pkt, family.header_checksum)
    return family.layer(bytes(pkt))


def comparable(s: Site, pkt: Packet) -> bytes:
    """The datagram's bytes with the transport checksum zeroed: senders on veth may
    leave it partial (checksum offload), so it is the one field not compared."""
    copy = s.shape.family.layer(bytes(pkt))
    setattr(copy[s.shape.protocol.layer], s.shape.protocol.checksum, 0)
    return bytes(copy)


def datagram_summary(s: Site, pkt: Packet) -> str:
    """One line for a failure message: the summary, hop limit and (IPv4) id."""
    family = s.shape.family
    ident = f" id={pkt.id}" if hasattr(pkt, "id") and family.header_checksum else ""
    return f"{pkt.summary()} {family.hop_limit}={getattr(pkt, family.hop_limit)}{ident}"
