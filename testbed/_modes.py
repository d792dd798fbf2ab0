"""Forwarding modes: what each one needs on the real servers, as data.

Each mode declares the shell commands that prepare a real server for it,
after a neutral baseline that undoes every other mode. Sources: ipvsadm(8)
(-m/-g/-i), the LVS HOWTO ("the ARP problem"), Documentation/networking/
ip-sysctl.rst (arp_ignore, arp_announce, rp_filter).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._spec import ClusterSpec, RealServer

RS_IF = "eth0"  # a real server's only interface is <name>-eth0


def _sysctls(values: dict[str, int | str]) -> str:
    return "sysctl -qw " + " ".join(f"{k}={v}" for k, v in values.items())


@dataclass(frozen=True, kw_only=True)
class ForwardingMode:
    name: str
    ipvsadm_flag: str
    summary: str
    reply_via_director: bool
    needs_modules: tuple[str, ...] = ()

    def baseline(self, spec: ClusterSpec, rs: RealServer) -> list[str]:
        """Undo every mode: no VIP, default ARP/rp_filter, route via the router."""
        dev = f"{rs.name}-{RS_IF}"
        vip = spec.service.vip
        return [
            f"ip addr del {vip}/32 dev lo 2>/dev/null; ip addr del {vip}/32 dev tunl0 "
            "2>/dev/null; ip link set tunl0 down 2>/dev/null; true",
            _sysctls(
                {
                    f"net.ipv4.conf.{k}.{s}": 0
                    for k in ("all", dev)
                    for s in ("arp_ignore", "arp_announce")
                }
            ),
            f"ip route replace default via {spec.router.inside}",
        ]

    def setup(self, spec: ClusterSpec, rs: RealServer) -> list[str]:
        raise NotImplementedError


class _Nat(ForwardingMode):
    def setup(self, spec: ClusterSpec, rs: RealServer) -> list[str]:
        # replies must pass the director so it can rewrite src back to the VIP
        return [f"ip route replace default via {spec.service.dip}"]


def _arp_problem(rs: RealServer) -> list[str]:
    # arp_ignore=1: answer only for addresses on the receiving interface;
    # arp_announce=2: never use the VIP as ARP source. The kernel applies the
    # maximum of "all" and the interface value.
    dev = f"{rs.name}-{RS_IF}"
    return [
        _sysctls(
            {
                f"net.ipv4.conf.{k}.{s}": v
                for k in ("all", dev)
                for s, v in (("arp_ignore", 1), ("arp_announce", 2))
            }
        )
    ]


class _Dr(ForwardingMode):
    def setup(self, spec: ClusterSpec, rs: RealServer) -> list[str]:
        return [*_arp_problem(rs), f"ip addr add {spec.service.vip}/32 dev lo"]


class _Tun(ForwardingMode):
    def setup(self, spec: ClusterSpec, rs: RealServer) -> list[str]:
        dev = f"{rs.name}-{RS_IF}"
        # decapsulated packets arrive on tunl0 from a source routed via eth0:
        # strict reverse-path filtering would drop them (max of all and iface)
        return [
            *_arp_problem(rs),
            "ip link set tunl0 up",
            f"ip addr add {spec.service.vip}/32 dev tunl0",
            _sysctls({f"net.ipv4.conf.{k}.rp_filter": 0 for k in ("all", "tunl0", dev)}),
        ]


MODES: dict[str, ForwardingMode] = {
    "nat": _Nat(
        name="nat",
        ipvsadm_flag="-m",
        summary="director rewrites dst to the real server; replies return through it",
        reply_via_director=True,
    ),
    "dr": _Dr(
        name="dr",
        ipvsadm_flag="-g",
        summary="director rewrites only the dst MAC; real servers answer clients directly",
        reply_via_director=False,
    ),
    "tun": _Tun(
        name="tun",
        ipvsadm_flag="-i",
        summary="director wraps the packet in IP-in-IP; real servers answer directly",
        reply_via_director=False,
        needs_modules=("ipip",),
    ),
}
