"""Forwarding modes: each IPVS forwarding method declared once, for every consumer.

An entry gives the kernel's forwarding flag, the names ipvsadm, keepalived
and ldirectord use for it, the modules it needs, what the director does to a
client's packet (the expected-packet oracle reads these flags), where replies
go, and the commands that prepare real servers and directors for it. Sources:
ipvsadm(8) (-m/-g/-i), include/uapi/linux/ip_vs.h (IP_VS_CONN_F_*),
keepalived.conf(5) (lb_kind), ldirectord(8) (gate/masq/ipip), the LVS
documents LVS-NAT, LVS-DR and LVS-Tun (the ARP problem),
net/netfilter/ipvs/ip_vs_xmit.c.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._host import DirectorHost, RealServerHost
from ._registry import Registry
from ._tunnel import TUNNELS


def _nothing(_host: object) -> list[str]:
    return []


@dataclass(frozen=True, kw_only=True)
class Mode:
    """One forwarding method, declared once."""

    name: str  # "nat": topologies, the CLI, test ids
    title: str  # "NAT": messages
    summary: str
    fwd_method: int  # IP_VS_CONN_F_MASQ etc. (netlink IPVS_DEST_ATTR_FWD_METHOD)
    ipvsadm_flag: str  # ipvsadm -a ... -m
    ipvsadm_column: str  # ipvsadm -Ln "Forward" column
    keepalived_kind: str  # keepalived.conf lb_kind
    ldirectord_kind: str  # ldirectord real=... gate|masq|ipip
    modules: tuple[str, ...] = ()  # beyond ip_vs (TUN adds each real server's tunnel's)
    # the oracle's parameters: what the director does to a client's packet
    rewrites_destination: bool  # destination address becomes the real server's
    maps_port: bool  # the virtual port may map to another real-server port
    encapsulates: bool  # carried inside the real server's tunnel type
    reply_via_director: bool  # replies pass the director (it rewrites their source)
    vip_on_real_servers: bool  # real servers hold the VIP: the ARP problem applies
    real_server_setup: Callable[[RealServerHost], list[str]]  # after the neutral baseline
    # exactly what undoes that setup (leaves the host at the neutral baseline)
    real_server_teardown: Callable[[RealServerHost], list[str]]
    director_setup: Callable[[DirectorHost], list[str]] = _nothing
    # the bench's goal for one TCP stream through the VIP against the direct path
    # (reported next to the figure, never enforced)
    throughput_goal: float | None = None

    @property
    def connection_table(self) -> str:
        """Which TCP state table the director keeps: it sees both directions only if
        replies pass it (ip_vs_proto_tcp.c: tcp_states vs the input-only table)."""
        return "both directions" if self.reply_via_director else "input only"


MODES: Registry[Mode] = Registry("forwarding mode")


def neutral_baseline(rs: RealServerHost) -> list[str]:
    """Undo every mode in the host's family: no VIP anywhere, the family's neighbour
    defaults, the default route via the router. (A dual-stack cluster runs it per family.)"""
    return [
        f"ip addr del {rs.vip_prefix} dev lo 2>/dev/null; true",
        f"ip addr del {rs.vip_prefix} dev {rs.interface} 2>/dev/null; true",
        *(cmd for t in TUNNELS.values() for cmd in t.teardown()),
        *rs.family.claim_defaults(rs.interface),
        f"ip {rs.family.ip_option} route replace default via {rs.router}",
    ]


NAT = MODES.register(
    Mode(
        name="nat",
        title="NAT",
        summary="director rewrites dst to the real server; replies return through it",
        fwd_method=0,  # IP_VS_CONN_F_MASQ
        ipvsadm_flag="-m",
        ipvsadm_column="Masq",
        keepalived_kind="NAT",
        ldirectord_kind="masq",
        rewrites_destination=True,
        maps_port=True,
        encapsulates=False,
        reply_via_director=True,
        vip_on_real_servers=False,
        # replies must pass the director so it can rewrite src back to the VIP
        real_server_setup=lambda rs: [
            f"ip {rs.family.ip_option} route replace default via {rs.dip}"
        ],
        real_server_teardown=lambda rs: [
            f"ip {rs.family.ip_option} route replace default via {rs.router}"
        ],
        # the real servers' replies are forwarded by the director
        director_setup=lambda d: [f"sysctl -qw {d.family.forwarding}=1"],
        throughput_goal=0.90,
    )
)

DR = MODES.register(
    Mode(
        name="dr",
        title="DR",
        summary="director rewrites only the dst MAC; real servers answer clients directly",
        fwd_method=3,  # IP_VS_CONN_F_DROUTE
        ipvsadm_flag="-g",
        ipvsadm_column="Route",
        keepalived_kind="DR",
        ldirectord_kind="gate",
        rewrites_destination=False,
        maps_port=False,
        encapsulates=False,
        reply_via_director=False,
        vip_on_real_servers=True,
        real_server_setup=lambda rs: [
            *rs.family.hide_vip(rs.interface),
            f"ip addr add {rs.vip_prefix} dev lo",
        ],
        real_server_teardown=lambda rs: [
            f"ip addr del {rs.vip_prefix} dev lo 2>/dev/null; true",
            *rs.family.claim_defaults(rs.interface),
        ],
        throughput_goal=0.95,
    )
)

TUN = MODES.register(
    Mode(
        name="tun",
        title="TUN",
        summary="director wraps the packet in a tunnel; real servers answer directly",
        fwd_method=2,  # IP_VS_CONN_F_TUNNEL
        ipvsadm_flag="-i",
        ipvsadm_column="Tunnel",
        keepalived_kind="TUN",
        ldirectord_kind="ipip",
        rewrites_destination=False,
        maps_port=False,
        encapsulates=True,
        reply_via_director=False,
        vip_on_real_servers=True,
        real_server_setup=lambda rs: [*rs.family.hide_vip(rs.interface), *rs.tunnel.setup(rs)],
        real_server_teardown=lambda rs: [
            *rs.tunnel.undo(rs),
            *rs.family.claim_defaults(rs.interface),
        ],
        throughput_goal=0.90,
    )
)
