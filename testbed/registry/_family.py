"""Address families as the testbed uses them: parsing, host prefixes, sysctls, scapy layers.

A family entry says everything that differs between IPv4 and IPv6 for the
hosts of a cluster (ip-sysctl.rst, ip(8)), so no other code branches on it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.inet import IP
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
    sysctl: str  # the sysctl tree of the family
    layer: type[Packet]  # scapy network layer
    hop_limit: str  # the field a forwarding hop decrements
    header_checksum: str | None  # recomputed by every hop that changes the header
    length: Callable[[Packet], int]  # a datagram's length as IPVS counts bytes (whole packet)
    neighbour_protocol: str  # how a host claims an address on a segment
    # commands that keep a real server holding the VIP from claiming it on its
    # segment (the "ARP problem"), and the commands that undo them
    hide_vip: Callable[[str], list[str]]
    claim_defaults: Callable[[str], list[str]]
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
        sysctl="net.ipv4",
        layer=IP,
        hop_limit="ttl",
        header_checksum="chksum",
        length=lambda pkt: int(pkt[IP].len),
        neighbour_protocol="ARP",
        hide_vip=lambda dev: _arp(dev, 1, 2),
        claim_defaults=lambda dev: _arp(dev, 0, 0),
        local_addresses=_fib_locals,
    )
)
