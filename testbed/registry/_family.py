"""Address families as the testbed uses them: parsing, host prefixes, sysctls, scapy layers.

A family entry says everything that differs between IPv4 and IPv6 for the
hosts of a cluster (ip-sysctl.rst, ip(8)), so no other code branches on it.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.inet import IP
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    in6_getnsma,
    in6_getnsmac,
)
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet

from ..util import TestbedError
from ._registry import Registry

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, kw_only=True)
class Family:
    """One address family, declared once."""

    name: str  # "ipv4": test ids, options
    title: str  # "IPv4": messages
    version: int  # ipaddress's .version
    af: int  # socket.AF_INET: sockets and netlink
    host_prefix: int  # a single address as a prefix: the VIP on a device
    ip_option: str  # `ip -4 ...`
    nft_family: str  # nft(8)'s address family: `table ip ...`, `ip daddr ...`
    # address blocks the testbed may give its own uses (documentation ranges only)
    spare_blocks: tuple[str, ...]
    sysctl: str  # the sysctl tree of the family
    forwarding: str  # the sysctl that makes a host a router for this family
    icmp_ratelimit: str  # the sysctl that paces the host's ICMP errors
    address_flags: str  # `ip addr add ... <flags>` on an Ethernet interface
    prefix_route_metric: int  # the metric of the route the kernel adds for an address
    # IPVS_SVC_ATTR_NETMASK of a client block of this prefix length, as pyroute2 packs
    # it (four bytes): ip_vs_ctl.c reads a mask for IPv4, a host-order prefix length for IPv6
    ipvs_netmask: Callable[[int], str]
    layer: type[Packet]  # scapy network layer
    protocol_field: str  # the header field naming the next protocol
    encapsulated_as: int  # that field's value when this family is carried inside IP
    header_length: int  # the fixed header's length in bytes (no options or extensions)
    hop_limit: str  # the field a forwarding hop decrements
    header_checksum: str | None  # recomputed by every hop that changes the header
    length: Callable[[Packet], int]  # a datagram's length as IPVS counts bytes (whole packet)
    neighbour_protocol: str  # how a host claims an address on a segment
    # (our MAC, our address, the address asked for) -> the frame that asks who has it
    solicitation: Callable[[str, str, str], Packet]
    claims: Callable[[Packet, str], bool]  # is this frame a claim of that address?
    # does a host answer for an address it holds on another interface? (the "weak
    # host" of ARP with arp_ignore=0)
    claims_for_other_interfaces: bool
    # is this frame an unasked announcement of that address (a new holder telling the
    # segment: gratuitous ARP, unsolicited NA)?
    announces: Callable[[Packet, str], bool]
    announcement: str  # its name, for messages
    # commands that keep a real server holding the VIP from claiming it on its
    # segment (the "ARP problem"), and the commands that undo them
    hide_vip: Callable[[str], list[str]]
    claim_defaults: Callable[[str], list[str]]
    # commands that make a real server holding the VIP claim it on its segment:
    # the control that shows the hiding above is what keeps the VIP to the director
    expose_vip: Callable[[str, str], list[str]]  # (interface, VIP/prefix)
    # commands that make these devices accept datagrams from a source routed via
    # another device, as decapsulated ones are (the reverse-path filter)
    accept_any_source: Callable[[tuple[str, ...]], list[str]]
    # the addresses a namespace holds, read from /proc/<pid>/net without a process
    # (polling with `ip addr` forks dozens of processes a second under emulation)
    local_addresses: Callable[[int], set[str]]

    def address(self, value: object, what: str) -> Address:
        try:
            addr = ipaddress.ip_address(str(value))
        except ValueError:
            addr = None
        if addr is None or addr.version != self.version:
            raise TestbedError(f"{what}: {value!r} is not an {self.title} address")
        return addr

    def endpoint(self, addr: object, port: int) -> str:
        """``addr:port`` as URLs and ipvsadm write it (IPv6 in brackets)."""
        return f"[{addr}]:{port}" if self.version == 6 else f"{addr}:{port}"


FAMILIES: Registry[Family] = Registry("address family")


def family_of(addr: object) -> Family:
    """The registered family of an address (an ipaddress object or its text)."""
    version = ipaddress.ip_address(str(addr)).version
    for family in FAMILIES.values():
        if family.version == version:
            return family
    raise TestbedError(f"{addr}: no registered address family for IPv{version}")


def parse_address(value: object, what: str) -> Address:
    """An address of any registered family, or one line naming ``what``."""
    try:
        addr = ipaddress.ip_address(str(value))
    except ValueError:
        raise TestbedError(f"{what}: {value!r} is not an IP address") from None
    family_of(addr)
    return addr


def parse_network(value: object, what: str) -> Network:
    try:
        net = ipaddress.ip_network(str(value))
    except ValueError:
        raise TestbedError(f"{what}: {value!r} is not an IP network (address/length)") from None
    family_of(net.network_address)
    return net


def _fib_locals(pid: int) -> set[str]:
    """Local IPv4 addresses: the /32 host LOCAL leaves of /proc/<pid>/net/fib_trie."""
    found, leaf = set(), None
    for line in Path(f"/proc/{pid}/net/fib_trie").read_text().splitlines():
        text = line.strip()
        if text.startswith("|-- "):
            leaf = text[4:]
        elif leaf and text.startswith("/32 host LOCAL"):
            found.add(leaf)
    return found


def _inet6_locals(pid: int) -> set[str]:
    """Local IPv6 addresses: /proc/<pid>/net/if_inet6 (address as 32 hex digits first)."""
    path = Path(f"/proc/{pid}/net/if_inet6")
    if not path.exists():  # IPv6 disabled in that namespace
        return set()
    lines = path.read_text().splitlines()
    return {str(ipaddress.IPv6Address(bytes.fromhex(line.split()[0]))) for line in lines}


def _arp_request(mac: str, src: str, target: str) -> Packet:
    return Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op="who-has", hwsrc=mac, psrc=src, pdst=target
    )


def _neighbour_solicitation(mac: str, src: str, target: str) -> Packet:
    # RFC 4861 7.2.2: to the target's solicited-node multicast address
    group = socket.inet_ntop(
        socket.AF_INET6, in6_getnsma(socket.inet_pton(socket.AF_INET6, target))
    )
    return (
        Ether(src=mac, dst=in6_getnsmac(socket.inet_pton(socket.AF_INET6, group)))
        / IPv6(src=src, dst=group, hlim=255)
        / ICMPv6ND_NS(tgt=target)
        / ICMPv6NDOptSrcLLAddr(lladdr=mac)
    )


def _sysctls(values: dict[str, int]) -> str:
    return "sysctl -qw " + " ".join(f"{k}={v}" for k, v in values.items())


def _arp(dev: str, ignore: int, announce: int) -> list[str]:
    # arp_ignore=1: answer only for addresses on the receiving interface;
    # arp_announce=2: never use the VIP as ARP source. The kernel applies the
    # maximum of "all" and the interface value (ip-sysctl.rst).
    return [
        _sysctls(
            {
                f"net.ipv4.conf.{k}.{s}": v
                for k in ("all", dev)
                for s, v in (("arp_ignore", ignore), ("arp_announce", announce))
            }
        )
    ]


IPV4 = FAMILIES.register(
    Family(
        name="ipv4",
        title="IPv4",
        version=4,
        af=socket.AF_INET,
        host_prefix=32,
        ip_option="-4",
        nft_family="ip",
        spare_blocks=tuple(
            f"{net}.{n}/26" for net in ("192.0.2", "198.51.100", "203.0.113") for n in (0, 64)
        ),
        sysctl="net.ipv4",
        forwarding="net.ipv4.ip_forward",
        icmp_ratelimit="net.ipv4.icmp_ratelimit",
        address_flags="",
        prefix_route_metric=0,
        ipvs_netmask=lambda prefix: str(ipaddress.IPv4Network((0, prefix)).netmask),
        layer=IP,
        protocol_field="proto",
        encapsulated_as=socket.IPPROTO_IPIP,  # 4
        header_length=20,
        hop_limit="ttl",
        header_checksum="chksum",
        length=lambda pkt: int(pkt[IP].len),
        neighbour_protocol="ARP",
        solicitation=_arp_request,
        claims=lambda pkt, addr: ARP in pkt and pkt[ARP].op == 2 and pkt[ARP].psrc == addr,
        # arp_ignore=0 (the default): "reply for any local target IP address,
        # configured on any interface" (ip-sysctl.rst)
        claims_for_other_interfaces=True,
        # RFC 5227 / RFC 5798 8.1.2: sender and target both the address
        announces=lambda pkt, addr: ARP in pkt and pkt[ARP].psrc == addr == pkt[ARP].pdst,
        announcement="gratuitous ARP",
        hide_vip=lambda dev: _arp(dev, 1, 2),
        claim_defaults=lambda dev: _arp(dev, 0, 0),
        # arp_ignore=0: answer for any local address, the VIP on lo included
        expose_vip=lambda dev, _vip: _arp(dev, 0, 0),
        # strict rp_filter drops them; the kernel applies the maximum of "all" and
        # the device's value (ip-sysctl.rst), so both are cleared
        accept_any_source=lambda devices: [
            _sysctls({f"net.ipv4.conf.{d}.rp_filter": 0 for d in ("all", *devices)})
        ],
        local_addresses=_fib_locals,
    )
)

IPV6 = FAMILIES.register(
    Family(
        name="ipv6",
        title="IPv6",
        version=6,
        af=socket.AF_INET6,
        host_prefix=128,
        ip_option="-6",
        nft_family="ip6",
        spare_blocks=tuple(f"2001:db8:f{n:03x}::/120" for n in range(8)),
        sysctl="net.ipv6",
        forwarding="net.ipv6.conf.all.forwarding",
        icmp_ratelimit="net.ipv6.icmp.ratelimit",
        # no duplicate address detection: an address is usable at once, not after
        # a second or more of "tentative" (the testbed's addresses are unique)
        address_flags="nodad",
        prefix_route_metric=256,  # IP6_RT_PRIO_ADDRCONF
        # ip_vs_ctl.c ip_vs_add_service: an IPv6 service's netmask is a prefix
        # length 1..128 (ipvsadm sends 128); 0xFFFFFFFF is refused with EINVAL
        ipvs_netmask=lambda prefix: socket.inet_ntoa(struct.pack("=I", prefix)),
        layer=IPv6,
        protocol_field="nh",
        encapsulated_as=socket.IPPROTO_IPV6,  # 41
        header_length=40,
        hop_limit="hlim",
        header_checksum=None,  # IPv6 has none
        # IPVS counts skb->len: the 40-byte fixed header plus the payload
        length=lambda pkt: 40 + int(pkt[IPv6].plen),  # header_length + payload
        neighbour_protocol="ND",
        solicitation=_neighbour_solicitation,
        claims=lambda pkt, addr: ICMPv6ND_NA in pkt and pkt[ICMPv6ND_NA].tgt == addr,
        claims_for_other_interfaces=False,
        # RFC 4861 7.2.6 / RFC 5798 8.2.2: an advertisement nobody solicited
        announces=lambda pkt, addr: (
            ICMPv6ND_NA in pkt and pkt[ICMPv6ND_NA].tgt == addr and not pkt[ICMPv6ND_NA].S
        ),
        announcement="unsolicited NA",
        # Linux answers a neighbour solicitation only for an address on the
        # interface it arrived on (ndisc.c ndisc_recv_ns, ipv6_get_ifaddr with
        # the receiving device): a VIP on lo is never claimed on the segment,
        # there is nothing to hide and nothing to undo
        hide_vip=lambda _dev: [],
        claim_defaults=lambda _dev: [],
        # so the control puts the VIP on the segment's interface itself
        expose_vip=lambda dev, vip: [f"ip addr replace {vip} dev {dev} nodad"],
        accept_any_source=lambda _devices: [],  # IPv6 has no reverse-path filter sysctl
        local_addresses=_inet6_locals,
    )
)
