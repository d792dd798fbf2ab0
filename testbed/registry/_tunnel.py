"""Tunnel types of IPVS's TUN method: how the director encapsulates, how a real server decapsulates.

A tunnel type is an attribute of a real server under TUN, not a mode: one
service may reach different real servers through different tunnels
(IPVS_DEST_ATTR_TUN_TYPE, include/uapi/linux/ip_vs.h; ipvsadm(8)
--tun-type). Sources: ip-sysctl.rst (rp_filter), ip-link(8) (ipip).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scapy.layers.inet import IP
from scapy.packet import Packet

from ._host import RealServerHost
from ._registry import Registry


@dataclass(frozen=True, kw_only=True)
class Tunnel:
    """One encapsulation, declared once."""

    name: str  # "ipip": topologies, test ids
    ipvs_type: int  # IP_VS_CONN_F_TUNNEL_TYPE_* (netlink IPVS_DEST_ATTR_TUN_TYPE)
    modules: tuple[str, ...]  # what the real server needs to decapsulate
    device: str  # the decapsulating device, which holds the VIP
    setup: Callable[[RealServerHost], list[str]]  # decapsulation on the real server
    teardown: Callable[[RealServerHost], list[str]]  # undone in the neutral baseline
    # the expected-packet oracle: the encapsulation from director to real server,
    # and the datagram it carries
    outer: Callable[[str, str], Packet]
    inner: Callable[[Packet], Packet]


TUNNELS: Registry[Tunnel] = Registry("tunnel type")


def _rp_filter_off(*devices: str) -> str:
    # decapsulated packets arrive on the tunnel from a source routed via eth0:
    # strict reverse-path filtering would drop them (max of all and iface)
    return "sysctl -qw " + " ".join(f"net.ipv4.conf.{d}.rp_filter=0" for d in devices)


IPIP = TUNNELS.register(
    Tunnel(
        name="ipip",
        ipvs_type=0,
        modules=("ipip",),
        device="tunl0",
        setup=lambda rs: [
            "ip link set tunl0 up",
            f"ip addr add {rs.vip_prefix} dev tunl0",
            _rp_filter_off("all", "tunl0", rs.interface),
        ],
        teardown=lambda rs: [
            f"ip addr del {rs.vip_prefix} dev tunl0 2>/dev/null; ip link set tunl0 down "
            "2>/dev/null; true"
        ],
        outer=lambda src, dst: IP(src=src, dst=dst, proto=4),
        inner=lambda outer: outer.payload,
    )
)
