"""Declarative cluster specs: what to build, validated before anything is built.

A spec is plain data (frozen, keyword-only dataclasses). Every check that can
be made without a kernel happens here, so bad input fails with one line
before a single namespace exists. Names of modes, protocols, schedulers and
tunnel types are checked against testbed.registry, addresses against its
address families.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from ..registry import (
    MODES,
    PERSISTENCE_ENGINES,
    PROTOCOLS,
    SCHED_FLAGS,
    SCHEDULERS,
    TUNNEL_CHECKSUMS,
    TUNNELS,
    Address,
    Family,
    Mode,
    Network,
    Protocol,
    Tunnel,
    family_of,
    parse_address,
    parse_network,
)
from ..util import TestbedError

MAX_WEIGHT = 2**31 - 1  # ipvsadm(8): weight 0..2147483647
# Mininet names host interfaces "<host>-eth<N>"; Linux allows 15 characters.
_NAME = re.compile(r"^[a-z][a-z0-9]{0,8}$")


def _port(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise TestbedError(f"{what}: {value!r} is not a port (1..65535)")
    return value


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise TestbedError(
            f"{what}: {value!r} is not a host name (lowercase letter, then up to 8 "
            "letters or digits)"
        )
    return value


@dataclass(frozen=True, kw_only=True)
class Client:
    """A client host on the outside segment."""

    name: str
    ip: Address

    def __post_init__(self) -> None:
        _name(self.name, "client name")
        object.__setattr__(self, "ip", parse_address(self.ip, f"client {self.name} ip"))


@dataclass(frozen=True, kw_only=True)
class TwoLegged:
    """A host with one leg on each segment (a director or the router)."""

    name: str
    outside: Address
    inside: Address

    def __post_init__(self) -> None:
        _name(self.name, "host name")
        object.__setattr__(self, "outside", parse_address(self.outside, f"{self.name} outside"))
        object.__setattr__(self, "inside", parse_address(self.inside, f"{self.name} inside"))


@dataclass(frozen=True, kw_only=True)
class RealServer:
    """A real server on the inside segment with its IPVS weight and thresholds."""

    name: str
    ip: Address
    weight: int = 1
    upper_threshold: int = 0  # ipvsadm -x (0: none)
    lower_threshold: int = 0  # ipvsadm -y
    tunnel: str = "ipip"  # how TUN reaches it (ipvsadm --tun-type)
    tunnel_checksum: str = "nocsum"  # ipvsadm --tun-nocsum | --tun-csum | --tun-remcsum
    tunnel_port: int = 0  # ipvsadm --tun-port (0: the tunnel type's own port, if it has one)

    def __post_init__(self) -> None:
        _name(self.name, "real server name")
        object.__setattr__(self, "ip", parse_address(self.ip, f"real server {self.name} ip"))
        tunnel = TUNNELS[self.tunnel]  # an unknown tunnel type fails in one line
        TUNNEL_CHECKSUMS[self.tunnel_checksum]
        if self.tunnel_checksum not in tunnel.checksums:
            raise TestbedError(
                f"real server {self.name}: tunnel {self.tunnel} takes no {self.tunnel_checksum} "
                f"(choose from {', '.join(tunnel.checksums)})"
            )
        if self.tunnel_port:
            _port(self.tunnel_port, f"real server {self.name} tunnel_port")
            if not tunnel.port:
                raise TestbedError(f"real server {self.name}: tunnel {self.tunnel} has no port")
        for what in ("weight", "upper_threshold", "lower_threshold"):
            value = getattr(self, what)
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not (0 <= value <= MAX_WEIGHT)
            ):
                raise TestbedError(
                    f"real server {self.name} {what}: {value!r} is not in 0..{MAX_WEIGHT}"
                )


@dataclass(frozen=True, kw_only=True)
class Service:
    """The virtual service: VIP:port, protocol, scheduler and forwarding mode."""

    vip: Address
    dip: Address
    port: int = 80
    protocol: str = "tcp"
    scheduler: str = "rr"
    mode: str = "nat"
    nat_port: int | None = None  # real servers' port in NAT mode
    persistence: int = 0  # ipvsadm -p seconds (0: off)
    one_packet: bool = False  # ipvsadm -o: every UDP datagram scheduled on its own
    sched_flags: tuple[str, ...] = ()  # ipvsadm -b
    # ipvsadm -M as a prefix length: the client block one template covers (None: one address)
    persistence_prefix: int | None = None
    persistence_engine: str | None = None  # ipvsadm --pe (sip: by Call-ID)
    fwmark: int = 0  # ipvsadm -f: the service matches this mark, not vip:port (0: none)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vip", parse_address(self.vip, "service vip"))
        object.__setattr__(self, "dip", parse_address(self.dip, "service dip"))
        if self.port != 0 or not self.persistence:  # port 0: every port, persistent only
            _port(self.port, "service port")
        if self.nat_port is not None:
            _port(self.nat_port, "service nat_port")
        # registry lookups: an unknown name fails in one line, listing the known ones
        PROTOCOLS[self.protocol]
        SCHEDULERS[self.scheduler]
        MODES[self.mode]
        if family_of(self.vip) is not family_of(self.dip):
            raise TestbedError(f"service vip {self.vip} and dip {self.dip} differ in family")
        object.__setattr__(self, "sched_flags", tuple(self.sched_flags))
        for flag in self.sched_flags:
            if flag not in SCHED_FLAGS:
                raise TestbedError(
                    f"unknown scheduler flag {flag!r} (choose from {', '.join(SCHED_FLAGS)})"
                )
            if flag not in SCHEDULERS[self.scheduler].flags:
                raise TestbedError(f"scheduler flag {flag!r} does not apply to {self.scheduler}")
        if not isinstance(self.persistence, int) or self.persistence < 0:
            raise TestbedError(f"service persistence: {self.persistence!r} is not >= 0 seconds")
        self._check_persistence_options()
        if not isinstance(self.fwmark, int) or not 0 <= self.fwmark <= 0xFFFFFFFF:
            raise TestbedError(f"service fwmark: {self.fwmark!r} is not a 32-bit mark")

    def _check_persistence_options(self) -> None:
        # ipvsadm(8): -M and --pe qualify -p
        for what, value in (("persistence_prefix", self.persistence_prefix),
                            ("persistence_engine", self.persistence_engine)):  # fmt: skip
            if value is not None and not self.persistence:
                raise TestbedError(f"service {what} needs persistence (ipvsadm -p)")
        if self.persistence_prefix is not None:
            prefix, bits = self.persistence_prefix, self.family.host_prefix
            if not isinstance(prefix, int) or not 1 <= prefix <= bits:
                raise TestbedError(f"service persistence_prefix: {prefix!r} is not in 1..{bits}")
        if self.persistence_engine is not None:
            engine = PERSISTENCE_ENGINES[self.persistence_engine]
            if self.protocol not in engine.protocols:
                reads = ", ".join(engine.protocols)
                raise TestbedError(
                    f"persistence engine {engine.name} reads only {reads}, not {self.protocol}"
                )

    @property
    def forwarding(self) -> Mode:
        return MODES[self.mode]

    @property
    def transport(self) -> Protocol:
        return PROTOCOLS[self.protocol]

    @property
    def family(self) -> Family:
        return family_of(self.vip)

    @property
    def real_port(self) -> int:
        """Port the real servers listen on: only a mode that maps ports can rewrite it."""
        if self.forwarding.maps_port and self.nat_port is not None:
            return self.nat_port
        return self.port

    @property
    def endpoint(self) -> str:
        """``vip:port`` as clients and ipvsadm write it."""
        return self.family.endpoint(self.vip, self.port)

    @property
    def ipvsadm_key(self) -> str:
        """The service as ipvsadm(8) names it: ``-f MARK`` or ``-t|-u|--sctp-service vip:port``."""
        if self.fwmark:
            return f"-f {self.fwmark}" + (" -6" if self.family.version == 6 else "")
        return f"{self.transport.ipvsadm_flag} {self.endpoint}"

    @property
    def persistence_block(self) -> int:
        """The prefix length of the client block one persistence template covers."""
        return self.persistence_prefix or self.family.host_prefix


def _encapsulating() -> str:
    return " or ".join(m.title for m in MODES.values() if m.encapsulates)


def carried_over(addr: Address, source: Network, target: Network) -> Address:
    """``addr`` of network ``source`` as the same host of ``target``: its host number,
    written in decimal, read as hexadecimal, so the two read alike
    (203.0.113.11 in 203.0.113.0/24 -> 2001:db8:203:113::11 in 2001:db8:203:113::/64)."""
    host = int(addr) - int(source.network_address)
    return target.network_address + int(str(host), 16)


@dataclass(frozen=True, kw_only=True)
class DualStack:
    """The same hosts in a second address family: two networks, every address derived.

    Each declared address keeps its host number in the second family's network
    (``carried_over``), so a topology declares its hosts once.
    """

    outside: Network
    inside: Network

    def __post_init__(self) -> None:
        object.__setattr__(self, "outside", parse_network(self.outside, "dual_stack outside"))
        object.__setattr__(self, "inside", parse_network(self.inside, "dual_stack inside"))
        if self.outside.version != self.inside.version:
            raise TestbedError("dual_stack: outside and inside differ in family")
        if self.outside.overlaps(self.inside):
            raise TestbedError(
                f"dual_stack: outside {self.outside} and inside {self.inside} overlap"
            )


@dataclass(frozen=True, kw_only=True)
class ClusterSpec:
    """A whole LVS cluster, as one declaration.

    >>> spec = load_topology()                      # topologies/default.toml
    >>> dr = spec.with_service(mode="dr", scheduler="wrr")
    """

    name: str
    outside: Network
    inside: Network
    service: Service
    router: TwoLegged
    clients: tuple[Client, ...]
    directors: tuple[TwoLegged, ...]
    real_servers: tuple[RealServer, ...]
    dual_stack: DualStack | None = None
    source: str = field(default="<python>", compare=False)
    # one spec per address family the hosts have (this one first), built and
    # validated once
    _views: tuple[ClusterSpec, ...] = field(default=(), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outside", parse_network(self.outside, "outside"))
        object.__setattr__(self, "inside", parse_network(self.inside, "inside"))
        if self.outside.overlaps(self.inside):
            raise TestbedError(f"outside {self.outside} and inside {self.inside} overlap")
        if not self.clients:
            raise TestbedError("a cluster needs at least one client")
        if not self.directors:
            raise TestbedError("a cluster needs at least one director")
        if not self.real_servers:
            raise TestbedError("a cluster needs at least one real server")
        self._check_placement()
        views: tuple[ClusterSpec, ...] = (self,)
        if self.dual_stack is not None:
            if self.dual_stack.outside.version == self.outside.version:
                raise TestbedError(
                    f"dual_stack: {self.dual_stack.outside} is of the cluster's own family"
                )
            views += (self._carried_to(self.dual_stack),)
        object.__setattr__(self, "_views", views)

    def _carried_to(self, dual: DualStack) -> ClusterSpec:
        """This cluster with every address carried over to the dual stack's networks."""

        def out(addr: Address) -> Address:
            return carried_over(addr, self.outside, dual.outside)

        def ins(addr: Address) -> Address:
            if addr.version != self.inside.version:  # a TUN real server of the other
                return addr  # family already: its own address there
            return carried_over(addr, self.inside, dual.inside)

        def two(h: TwoLegged) -> TwoLegged:
            return dataclasses.replace(h, outside=out(h.outside), inside=ins(h.inside))

        try:
            return dataclasses.replace(
                self,
                outside=dual.outside,
                inside=dual.inside,
                dual_stack=None,
                service=dataclasses.replace(
                    self.service, vip=out(self.service.vip), dip=ins(self.service.dip)
                ),
                router=two(self.router),
                clients=tuple(dataclasses.replace(c, ip=out(c.ip)) for c in self.clients),
                directors=tuple(two(d) for d in self.directors),
                real_servers=tuple(dataclasses.replace(r, ip=ins(r.ip)) for r in self.real_servers),
            )
        except TestbedError as exc:
            raise TestbedError(f"dual_stack: {exc}") from None

    @property
    def families(self) -> tuple[Family, ...]:
        """The address families the hosts have (the declared one first)."""
        return tuple(v.service.family for v in self._views)

    def views(self) -> tuple[ClusterSpec, ...]:
        """This cluster once per address family, each with that family's addresses."""
        return self._views

    def lacks(self, family: Family) -> str | None:
        """Why this topology cannot carry ``family`` (one line), or None."""
        if family in self.families:
            return None
        return f"topology {self.name!r} has no {family.title} addresses"

    def in_family(self, family: Family) -> ClusterSpec:
        """This cluster seen in one family: every address, the VIP and DIP in it."""
        for view in self._views:
            if view.service.family is family:
                return view
        raise TestbedError(str(self.lacks(family)))

    def _check_placement(self) -> None:
        names: set[str] = set()
        addrs: dict[Address, str] = {}

        def claim(owner: str, addr: Address, net: Network) -> None:
            if addr not in net or addr in (net.network_address, net.broadcast_address):
                raise TestbedError(f"{owner}: {addr} is not a host address of {net}")
            if addr in addrs:
                raise TestbedError(f"{owner}: {addr} is already used by {addrs[addr]}")
            addrs[addr] = owner

        for host in self.hosts:
            if host.name in names:
                raise TestbedError(f"host name {host.name!r} is used twice")
            names.add(host.name)
        for c in self.clients:
            claim(c.name, c.ip, self.outside)
        for h in (self.router, *self.directors):
            claim(f"{h.name} outside", h.outside, self.outside)
            claim(f"{h.name} inside", h.inside, self.inside)
        for r in self.real_servers:
            if family_of(r.ip) is self.service.family:
                claim(r.name, r.ip, self.inside)
            elif not self.service.forwarding.encapsulates:  # ip_vs_ctl.c: EINVAL
                raise TestbedError(
                    f"real server {r.name}: {r.ip} is not {self.service.family.title} like the "
                    f"VIP; only {_encapsulating()} carries a service to the other family"
                )
            elif r.ip in addrs:  # of the other family's inside network: unchecked here
                raise TestbedError(f"{r.name}: {r.ip} is already used by {addrs[r.ip]}")
            else:
                addrs[r.ip] = r.name
        claim("service vip", self.service.vip, self.outside)
        claim("service dip", self.service.dip, self.inside)

    @property
    def hosts(self) -> tuple[Client | TwoLegged | RealServer, ...]:
        return (*self.clients, self.router, *self.directors, *self.real_servers)

    @property
    def active(self) -> TwoLegged:
        """The director that holds the VIP (the first one)."""
        return self.directors[0]

    def service_addresses(self, director: str) -> list[tuple[str, str]]:
        """(address/prefix, interface) a director holds while it serves: the VIP,
        facing clients, and the DIP, the NAT real servers' gateway."""
        return [
            (f"{self.service.vip}/{self.service.family.host_prefix}", f"{director}-eth0"),
            (f"{self.service.dip}/{self.inside.prefixlen}", f"{director}-eth1"),
        ]

    def real_server(self, name: str) -> RealServer:
        for r in self.real_servers:
            if r.name == name:
                return r
        raise KeyError(name)

    def director(self, name: str) -> TwoLegged:
        for d in self.directors:
            if d.name == name:
                return d
        raise KeyError(name)

    def tunnel_of(self, rs: RealServer) -> Tunnel:
        return TUNNELS[rs.tunnel]

    def tunnel_port_of(self, rs: RealServer) -> int:
        """The UDP port the real server's tunnel arrives on (0 for a tunnel without one)."""
        return rs.tunnel_port or self.tunnel_of(rs).port

    def modules(self) -> tuple[str, ...]:
        """Kernel modules this spec's service needs: IPVS, its scheduler, its mode's
        (and, for an encapsulating mode, each real server's tunnel's)."""
        service = self.service
        needed = ["ip_vs", SCHEDULERS[service.scheduler].module, *service.forwarding.modules]
        if service.forwarding.encapsulates:
            needed += [
                m
                for r in self.real_servers
                for m in self.tunnel_of(r).modules(
                    family_of(r.ip), service.family, TUNNEL_CHECKSUMS[r.tunnel_checksum]
                )
            ]
        needed += service.transport.modules
        return tuple(dict.fromkeys(needed))

    def needs(self, *, clients: int = 1, directors: int = 1, real_servers: int = 1) -> str | None:
        """Why this topology cannot serve a test needing these counts, or None."""
        for what, want, have in (
            ("clients", clients, len(self.clients)),
            ("directors", directors, len(self.directors)),
            ("real servers", real_servers, len(self.real_servers)),
        ):
            if have < want:
                return f"topology {self.name!r} has {have} {what}; the test needs {want}"
        return None

    def with_service(self, **changes: Any) -> ClusterSpec:
        """A copy with service fields replaced (validated again)."""
        return dataclasses.replace(self, service=dataclasses.replace(self.service, **changes))

    def with_real_servers(self, *servers: RealServer) -> ClusterSpec:
        return dataclasses.replace(self, real_servers=tuple(servers))
