"""The path every forwarding mode promises, hop by hop, as scapy templates.

Sources: ipvsadm(8) (-m masquerading, -g gatewaying/direct routing,
-i ipip encapsulation), the LVS documents "LVS-NAT", "LVS-DR", "LVS-Tun"
(seed-linux-virtual-server.txt) and net/netfilter/ipvs/ip_vs_xmit.c.

For one client connection (the SYN and the SYN-ACK) each function returns
the hops that must be seen, or must not be seen, at named interfaces.
"""

from __future__ import annotations

from dataclasses import dataclass

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from testbed import Hop


@dataclass(frozen=True, kw_only=True)
class Flow:
    """One client connection as the test sees it."""

    client: str  # client host name
    client_ip: str
    sport: int  # client source port
    rs: str  # real server host name that got it
    rs_ip: str


@dataclass(frozen=True, kw_only=True)
class Site:
    """Addresses of the cluster the paths refer to (from the spec and the kernel)."""

    vip: str
    port: int
    real_port: int
    director: str
    director_inside_ip: str
    router: str
    macs: dict[str, str]  # interface -> MAC


def _syn(src: str, dst: str, sport: int, dport: int) -> IP:
    return IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S")


def _synack(src: str, dst: str, sport: int, dport: int) -> IP:
    return IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="SA")


def request_hops(mode: str, s: Site, f: Flow) -> list[Hop]:
    """Client SYN: client -> director (to VIP) -> real server (rewritten per mode)."""
    d_out, d_in, rs_if = f"{s.director}-eth0", f"{s.director}-eth1", f"{f.rs}-eth0"
    to_vip = _syn(f.client_ip, s.vip, f.sport, s.port)
    forwarded = {
        # NAT: destination address and port become the real server's
        "nat": Ether(dst=s.macs[rs_if]) / _syn(f.client_ip, f.rs_ip, f.sport, s.real_port),
        # DR: same IP packet, only the frame is readdressed to the real server
        "dr": Ether(src=s.macs[d_in], dst=s.macs[rs_if]) / to_vip,
        # TUN: IP-in-IP, outer director -> real server, inner untouched
        "tun": IP(src=s.director_inside_ip, dst=f.rs_ip, proto=4) / to_vip,
    }[mode]
    return [
        Hop(name="client sends SYN to the VIP", point=f"{f.client}-eth0", direction="out",
            expect=to_vip),
        Hop(name="director receives SYN for the VIP", point=d_out, direction="in",
            expect=Ether(dst=s.macs[d_out]) / to_vip),
        Hop(name=f"director forwards SYN ({mode})", point=d_in, direction="out",
            expect=forwarded),
        Hop(name="real server receives the forwarded SYN", point=rs_if, direction="in",
            expect=forwarded),
    ]  # fmt: skip


def reply_hops(mode: str, s: Site, f: Flow) -> list[Hop]:
    """SYN-ACK: back through the director (NAT) or straight via the router (DR, TUN)."""
    d_out, d_in, rs_if = f"{s.director}-eth0", f"{s.director}-eth1", f"{f.rs}-eth0"
    gw_out, gw_in, c_if = f"{s.router}-eth0", f"{s.router}-eth1", f"{f.client}-eth0"
    from_vip = _synack(s.vip, f.client_ip, s.port, f.sport)
    if mode == "nat":
        from_rs = _synack(f.rs_ip, f.client_ip, s.real_port, f.sport)
        return [
            Hop(name="real server replies to its gateway, the director", point=rs_if,
                direction="out", expect=Ether(dst=s.macs[d_in]) / from_rs),
            Hop(name="director receives the reply", point=d_in, direction="in",
                expect=from_rs),
            Hop(name="director sends it on with source rewritten to the VIP", point=d_out,
                direction="out", expect=from_vip),
            Hop(name="client receives the reply from the VIP via the director", point=c_if,
                direction="in", expect=Ether(src=s.macs[d_out]) / from_vip),
        ]  # fmt: skip
    return [
        Hop(name="real server replies from the VIP to the router", point=rs_if,
            direction="out", expect=Ether(dst=s.macs[gw_in]) / from_vip),
        Hop(name="router forwards the reply", point=gw_out, direction="out", expect=from_vip),
        Hop(name="client receives the reply from the VIP via the router", point=c_if,
            direction="in", expect=Ether(src=s.macs[gw_out]) / from_vip),
    ]  # fmt: skip


def forbidden_hops(mode: str, s: Site, f: Flow) -> list[Hop]:
    """Hops that would mean the reply went the wrong way."""
    back = IP(dst=f.client_ip) / TCP(dport=f.sport)
    if mode == "nat":
        # the real server must not bypass the director (no un-NATed reply)
        return [
            Hop(name="real server reply bypasses the director", point=f"{s.router}-eth1",
                direction="in", expect=back),
        ]  # fmt: skip
    return [
        Hop(name="director receives a reply", point=f"{s.director}-eth1", direction="in",
            expect=back),
        Hop(name="director sends a reply", point=f"{s.director}-eth0", direction="out",
            expect=back),
    ]  # fmt: skip
