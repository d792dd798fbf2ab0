"""Tunnel types of IPVS's TUN method: how the director encapsulates, how a real server decapsulates.

A tunnel type is an attribute of a real server under TUN, not a mode: one
service may reach different real servers through different tunnels
(IPVS_DEST_ATTR_TUN_TYPE, include/uapi/linux/ip_vs.h; ipvsadm(8)
--tun-type). What receives the tunnel on a real server depends on the
outer address family: IPv4 "ipip" arrives on tunl0 (module ipip), IPv6 on
ip6tnl0 (module ip6_tunnel, whose fallback device takes IPv6-in-IPv6).
Sources: ip-sysctl.rst (rp_filter), ip-link(8) (ipip, ip6tnl),
net/netfilter/ipvs/ip_vs_xmit.c (ip_vs_tunnel_xmit, ip_vs_tunnel_xmit_v6).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from scapy.packet import Packet

from ._host import RealServerHost
from ._registry import Registry

if TYPE_CHECKING:
    from ._family import Family


def _nothing(_rs: RealServerHost) -> list[str]:
    return []


@dataclass(frozen=True, kw_only=True)
class Receiver:
    """What decapsulates one outer family of a tunnel type on a real server."""

    module: str
    device: str  # holds the VIP while the real server is reached this way
    extra: Callable[[RealServerHost], list[str]] = _nothing  # after the device is up


@dataclass(frozen=True, kw_only=True)
class Tunnel:
    """One encapsulation, declared once."""

    name: str  # "ipip": topologies, test ids
    ipvs_type: int  # IP_VS_CONN_F_TUNNEL_TYPE_* (netlink IPVS_DEST_ATTR_TUN_TYPE)
    receivers: Mapping[int, Receiver] = field(repr=False)  # outer IP version -> receiver
    # the expected-packet oracle: the encapsulation from director to real server
    # (outer family, inner family, outer source, outer destination), and the
    # datagram a captured encapsulation carries
    outer: Callable[[Family, Family, str, str], Packet]
    inner: Callable[[Packet], Packet]

    def receiver(self, family: Family) -> Receiver:
        return self.receivers[family.version]

    def modules(self, family: Family) -> tuple[str, ...]:
        """What a real server needs to receive this tunnel over ``family``."""
        return (self.receiver(family).module,)

    def setup(self, rs: RealServerHost) -> list[str]:
        """Receive the tunnel and hold the VIP on its device."""
        r = self.receiver(rs.family)
        return [f"ip link set {r.device} up", f"ip addr add {rs.vip_prefix} dev {r.device}",
                *r.extra(rs)]  # fmt: skip

    def teardown(self) -> list[str]:
        """Undo setup for every family: the devices hold nothing but VIPs."""
        return [
            f"ip addr flush dev {r.device} 2>/dev/null; ip link set {r.device} down "
            "2>/dev/null; true"
            for r in self.receivers.values()
        ]


TUNNELS: Registry[Tunnel] = Registry("tunnel type")


def _rp_filter_off(rs: RealServerHost) -> list[str]:
    # decapsulated packets arrive on the tunnel from a source routed via eth0:
    # strict reverse-path filtering would drop them (max of all and iface)
    devices = ("all", "tunl0", rs.interface)
    return ["sysctl -qw " + " ".join(f"net.ipv4.conf.{d}.rp_filter=0" for d in devices)]


def _ip_in_ip(outer: Family, inner: Family, src: str, dst: str) -> Packet:
    return outer.layer(src=src, dst=dst, **{outer.protocol_field: inner.encapsulated_as})


IPIP = TUNNELS.register(
    Tunnel(
        name="ipip",
        ipvs_type=0,
        receivers={
            4: Receiver(module="ipip", device="tunl0", extra=_rp_filter_off),
            6: Receiver(module="ip6_tunnel", device="ip6tnl0"),
        },
        outer=_ip_in_ip,
        inner=lambda outer: outer.payload,
    )
)
