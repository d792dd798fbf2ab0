"""Tunnel types of IPVS's TUN method: how the director encapsulates, how a real server decapsulates.

A tunnel type is an attribute of a real server under TUN, not a mode: one
service may reach different real servers through different tunnels
(IPVS_DEST_ATTR_TUN_TYPE, _TUN_PORT, _TUN_FLAGS, include/uapi/linux/ip_vs.h;
ipvsadm(8) --tun-type ipip|gue|gre, --tun-port, --tun-nocsum, --tun-csum,
--tun-remcsum). What receives a tunnel on a real server depends on the
outer address family: IPv4 IP-in-IP arrives on tunl0 (module ipip), IPv6
on ip6tnl0 (module ip6_tunnel); GUE is first unwrapped by a fou port
(ip-fou(8)) and then arrives there too; GRE arrives on gre0 / ip6gre0,
which accept no checksummed GRE, so a real server that gets GRE checksums
has a GRE device of its own created with ``icsum`` (ip_tunnel.c
ip_tunnel_rcv drops a packet whose checksum flag differs from the device's).
A real server may be of the other family than the VIP (TUN only): IPv6
carried over IPv4 arrives on sit0 (module sit), IPv4 over IPv6 on an
ip6tnl device of mode ipip6 (ip6tnl0 takes IPv6 only: ip6_tunnel.c
ipxip6_rcv drops another protocol); GRE's devices take either.
Sources: ip-sysctl.rst (rp_filter), ip-link(8) (ipip, ip6tnl, sit, gre,
ip6gre), ip-fou(8), net/netfilter/ipvs/ip_vs_xmit.c (ip_vs_tunnel_xmit,
ip_vs_tunnel_xmit_v6, ipvs_gue_encap, ipvs_gre_encap).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from scapy.layers.inet import UDP
from scapy.layers.l2 import GRE
from scapy.packet import Packet, bind_layers

from ._gue import GUE, GUE_FLAG_PRIV, GUE_PFLAG_REMCSUM
from ._host import RealServerHost
from ._registry import Registry

if TYPE_CHECKING:
    from ._family import Family

# IP_VS_TUNNEL_ENCAP_FLAG_* (include/uapi/linux/ip_vs.h)
ENCAP_FLAG_CSUM = 0x1
ENCAP_FLAG_REMCSUM = 0x2
GUE_PORT = 6080  # the testbed's GUE port (any free UDP port would do)
bind_layers(UDP, GUE, dport=GUE_PORT)  # captures decode GUE on the testbed's port


def _nothing(_rs: RealServerHost) -> list[str]:
    return []


@dataclass(frozen=True, kw_only=True)
class TunnelChecksum:
    """One checksum option of an encapsulation (ipvsadm --tun-*csum)."""

    name: str  # "csum": topologies, test ids
    flags: int  # IPVS_DEST_ATTR_TUN_FLAGS
    ipvsadm_option: str
    summary: str


TUNNEL_CHECKSUMS: Registry[TunnelChecksum] = Registry("tunnel checksum option")
NOCSUM = TUNNEL_CHECKSUMS.register(TunnelChecksum(
    name="nocsum", flags=0, ipvsadm_option="--tun-nocsum",
    summary="no checksum in the encapsulation (GUE: outer UDP checksum 0)",
))  # fmt: skip
CSUM = TUNNEL_CHECKSUMS.register(TunnelChecksum(
    name="csum", flags=ENCAP_FLAG_CSUM, ipvsadm_option="--tun-csum",
    summary="the encapsulation carries its own checksum (GUE: outer UDP; GRE: GRE's)",
))  # fmt: skip
REMCSUM = TUNNEL_CHECKSUMS.register(TunnelChecksum(
    name="remcsum", flags=ENCAP_FLAG_REMCSUM, ipvsadm_option="--tun-remcsum",
    summary="remote checksum offload: a partial inner checksum is left to the receiver, "
    "whose GUE option says where it is (outer UDP checksum computed)",
))  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Encapsulation:
    """What the oracle knows of one encapsulation from director to real server."""

    outer: Family  # the outer header's family (the real server's address)
    inner: Family  # the carried datagram's (the VIP's)
    src: str
    dst: str
    port: int  # GUE's UDP destination port
    checksum: TunnelChecksum
    inner_partial: bool  # the carried transport checksum is partial (offload)
    inner_header_length: int  # the carried network header's length in bytes
    inner_checksum_offset: int  # its transport checksum field's offset in that header

    def ip(self, next_protocol: int) -> Packet:
        return self.outer.layer(src=self.src, dst=self.dst,
                                **{self.outer.protocol_field: next_protocol})  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Receiver:
    """What decapsulates one outer family of a tunnel type on a real server."""

    modules: tuple[str, ...]
    device: str  # holds the VIP while the real server is reached this way
    create: Callable[[RealServerHost], list[str]] = _nothing  # before the device is up
    remove: tuple[str, ...] = ()  # undoes create (shell commands, idempotent)


@dataclass(frozen=True, kw_only=True)
class Tunnel:
    """One encapsulation, declared once."""

    name: str  # "ipip": topologies, test ids
    ipvs_type: int  # IP_VS_CONN_F_TUNNEL_TYPE_* (netlink IPVS_DEST_ATTR_TUN_TYPE)
    checksums: tuple[str, ...]  # the TUNNEL_CHECKSUMS options it takes
    receivers: Mapping[int, Receiver] = field(repr=False)  # outer IP version -> receiver
    # where a checksummed encapsulation needs another receiver (outer IP version ->)
    checksummed_receivers: Mapping[int, Receiver] = field(default_factory=dict, repr=False)
    # where the other family inside needs another receiver (outer IP version ->)
    crossing_receivers: Mapping[int, Receiver] = field(default_factory=dict, repr=False)
    # the oracle: the encapsulation's headers (a template; checksums and the fields
    # the kernel derives per packet left out), and the datagram a captured one carries
    outer: Callable[[Encapsulation], Packet]
    inner: Callable[[Packet], Packet]
    port: int = 0  # its UDP port, for a tunnel type that has one (ipvsadm --tun-port)
    # the header whose checksum field --tun-csum fills (None: it has no checksum)
    checksum_layer: type[Packet] | None = None

    def receiver(self, outer: Family, inner: Family, checksum: TunnelChecksum) -> Receiver:
        """What receives this tunnel over ``outer`` carrying ``inner``."""
        special = self.checksummed_receivers.get(outer.version)
        if special is not None and checksum.flags & ENCAP_FLAG_CSUM:
            return special
        if outer is not inner and outer.version in self.crossing_receivers:
            return self.crossing_receivers[outer.version]
        return self.receivers[outer.version]

    def modules(
        self, outer: Family, inner: Family | None = None, checksum: TunnelChecksum = NOCSUM
    ) -> tuple[str, ...]:
        """What a real server needs to receive this tunnel over ``outer`` (carrying
        ``inner``, by default the same family)."""
        return self.receiver(outer, inner or outer, checksum).modules

    def _receiver_of(self, rs: RealServerHost) -> Receiver:
        return self.receiver(rs.address_family, rs.family, rs.tunnel_checksum or NOCSUM)

    def setup(self, rs: RealServerHost) -> list[str]:
        """Receive the tunnel and hold the VIP on its device."""
        r = self._receiver_of(rs)
        return [*r.create(rs), f"ip link set {r.device} up",
                f"ip addr add {rs.vip_prefix} dev {r.device}",
                *rs.family.accept_any_source((r.device, rs.interface))]  # fmt: skip

    def undo(self, rs: RealServerHost) -> list[str]:
        """Exactly what undoes setup(rs)."""
        r = self._receiver_of(rs)
        return [f"ip addr flush dev {r.device}", f"ip link set {r.device} down", *r.remove]

    def teardown(self) -> list[str]:
        """Undo setup for every family and option: the devices hold nothing but VIPs."""
        every = [*self.receivers.values(), *self.checksummed_receivers.values(),
                 *self.crossing_receivers.values()]  # fmt: skip
        devices = dict.fromkeys(r.device for r in every)
        return [
            *dict.fromkeys(cmd for r in every for cmd in r.remove),
            *(f"! {_present(d)} || {{ ip addr flush dev {d}; ip link set {d} down; }} "
              "2>/dev/null; true" for d in devices),
        ]  # fmt: skip


TUNNELS: Registry[Tunnel] = Registry("tunnel type")


def _own_device(kind: str, name: str, options: str = "") -> Callable[[RealServerHost], list[str]]:
    def create(rs: RealServerHost) -> list[str]:
        # its own local address: the lookup prefers it to the catch-all fallback device
        add = f"ip link add {name} type {kind} local {rs.address} {options}"
        return [*_deleting(name), add.rstrip()]

    return create


def _present(device: str) -> str:
    """A shell test: the device exists in this namespace. (/proc/sys/net is the reading
    process's namespace's own, /sys/class/net is not; and naming an absent device to
    ip makes the kernel try to load a module for it: dev_load, "netdev-<name>"
    aliases.) A builtin test: no process forked, which costs under emulation."""
    return f"[ -d /proc/sys/net/ipv4/conf/{device} ]"


def _deleting(name: str) -> tuple[str, ...]:
    return (f"! {_present(name)} || ip link del {name}",)


def _fou(option: str) -> Callable[[RealServerHost], list[str]]:
    def add(rs: RealServerHost) -> list[str]:
        return [f"ip fou add port {rs.tunnel_port} gue {option}".rstrip()]

    return add


def _both(*steps: Callable[[RealServerHost], list[str]]) -> Callable[[RealServerHost], list[str]]:
    return lambda rs: [cmd for step in steps for cmd in step(rs)]


# every fou port of the host, whatever family: "port 6080 gue [-6]" per line
_FOU_DEL = "ip fou show 2>/dev/null | while read -r _ p _ f; do ip fou del port $p $f; done"
# IPv4 carried over IPv6: ip6tnl0 takes IPv6 only, so a device of mode ipip6
_IP4IN6 = _own_device("ip6tnl", "lvs4in6", "mode ipip6")

IPIP = TUNNELS.register(
    Tunnel(
        name="ipip",
        ipvs_type=0,
        checksums=("nocsum",),
        receivers={
            4: Receiver(modules=("ipip",), device="tunl0"),
            6: Receiver(modules=("ip6_tunnel",), device="ip6tnl0"),
        },
        crossing_receivers={
            4: Receiver(modules=("sit",), device="sit0"),
            6: Receiver(
                modules=("ip6_tunnel",),
                device="lvs4in6",
                create=_IP4IN6,
                remove=_deleting("lvs4in6"),
            ),
        },
        outer=lambda e: e.ip(e.inner.encapsulated_as),
        inner=lambda outer: outer.payload,
    )
)


def _gue_outer(e: Encapsulation) -> Packet:
    remote = e.checksum.flags & ENCAP_FLAG_REMCSUM and e.inner_partial
    gue = GUE(version=0, control=0, proto=e.inner.encapsulated_as)
    if remote:  # ipvs_gue_encap: the inner checksum's place, after the GUE header
        gue = GUE(version=0, control=0, hlen=2, proto=e.inner.encapsulated_as,
                  flags=GUE_FLAG_PRIV, private_flags=GUE_PFLAG_REMCSUM,
                  csum_start=e.inner_header_length,
                  csum_offset=e.inner_header_length + e.inner_checksum_offset)  # fmt: skip
    else:
        gue = GUE(version=0, control=0, hlen=0, proto=e.inner.encapsulated_as, flags=0)
    udp = UDP(dport=e.port)
    if not e.checksum.flags:
        udp = UDP(dport=e.port, chksum=0)  # udp_set_csum(nocheck): no outer checksum
    return e.ip(17) / udp / gue


# fou hands the unwrapped datagram to the handler of its protocol, as if it had
# arrived in IP-in-IP: the same devices receive it
GUE_TUNNEL = TUNNELS.register(
    Tunnel(
        name="gue",
        ipvs_type=1,
        checksums=("nocsum", "csum", "remcsum"),
        port=GUE_PORT,
        receivers={
            4: Receiver(
                modules=("fou", "ipip"), device="tunl0", create=_fou(""), remove=(_FOU_DEL,)
            ),
            6: Receiver(
                modules=("fou", "ip6_tunnel"),
                device="ip6tnl0",
                create=_fou("-6"),
                remove=(_FOU_DEL,),
            ),
        },
        crossing_receivers={
            4: Receiver(modules=("fou", "sit"), device="sit0", create=_fou(""), remove=(_FOU_DEL,)),
            6: Receiver(
                modules=("fou", "ip6_tunnel"),
                device="lvs4in6",
                create=_both(_fou("-6"), _IP4IN6),
                remove=(_FOU_DEL, *_deleting("lvs4in6")),
            ),
        },
        outer=_gue_outer,
        inner=lambda outer: outer[GUE].payload,
        checksum_layer=UDP,
    )
)


def _gre_outer(e: Encapsulation) -> Packet:
    # ipvs_gre_encap: the carried family's EtherType, a checksum only with --tun-csum
    ethertype = {4: 0x0800, 6: 0x86DD}[e.inner.version]
    return e.ip(47) / GRE(proto=ethertype, chksum_present=int(bool(e.checksum.flags)))


GRE_TUNNEL = TUNNELS.register(
    Tunnel(
        name="gre",
        ipvs_type=2,
        checksums=("nocsum", "csum"),
        receivers={  # GRE's devices take either family inside (the EtherType says which)
            4: Receiver(modules=("ip_gre",), device="gre0"),
            6: Receiver(modules=("ip6_gre",), device="ip6gre0"),
        },
        checksummed_receivers={
            4: Receiver(
                modules=("ip_gre",),
                device="lvsgre",
                create=_own_device("gre", "lvsgre", "icsum"),
                remove=_deleting("lvsgre"),
            ),
            6: Receiver(
                modules=("ip6_gre",),
                device="lvsip6gre",
                create=_own_device("ip6gre", "lvsip6gre", "icsum"),
                remove=_deleting("lvsip6gre"),
            ),
        },
        outer=_gre_outer,
        inner=lambda outer: outer[GRE].payload,
        checksum_layer=GRE,
    )
)


@dataclass(frozen=True)
class TunnelOption:
    """A tunnel type with one of its checksum options: how TUN reaches a real server."""

    tunnel: Tunnel
    checksum: TunnelChecksum

    @property
    def id(self) -> str:
        """``gue-remcsum``; a tunnel type with one option is just its name."""
        if len(self.tunnel.checksums) == 1:
            return self.tunnel.name
        return f"{self.tunnel.name}-{self.checksum.name}"


def tunnel_options() -> list[TunnelOption]:
    """Every registered tunnel type with each checksum option it takes."""
    return [TunnelOption(t, TUNNEL_CHECKSUMS[c]) for t in TUNNELS.values() for c in t.checksums]
