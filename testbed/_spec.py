"""Declarative cluster specs: what to build, validated before anything is built.

A spec is plain data (frozen, keyword-only dataclasses). Every check that can
be made without a kernel happens here, so bad input fails with one line
before a single namespace exists.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import TestbedError

# ipvsadm(8) -s; twos exists only in newer kernels (probed at run time).
SCHEDULERS = (
    "rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "ovf",
    "lblc", "lblcr", "dh", "sh", "mh", "twos",
)  # fmt: skip
MODES = ("nat", "dr", "tun")
# ipvsadm(8) -b: scheduler flags, each valid only for its scheduler
SCHED_FLAGS = ("sh-fallback", "sh-port", "mh-fallback", "mh-port")
PROTOCOLS = ("tcp", "udp", "sctp")
MAX_WEIGHT = 2**31 - 1  # ipvsadm(8): weight 0..2147483647
# Mininet names host interfaces "<host>-eth<N>"; Linux allows 15 characters.
_NAME = re.compile(r"^[a-z][a-z0-9]{0,8}$")

DEFAULT_TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "default.toml"


def _addr(value: object, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        raise TestbedError(f"{what}: {value!r} is not an IPv4 address") from None


def _net(value: object, what: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(str(value))
    except ValueError:
        raise TestbedError(f"{what}: {value!r} is not an IPv4 network (a.b.c.d/len)") from None


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
    ip: ipaddress.IPv4Address

    def __post_init__(self) -> None:
        _name(self.name, "client name")
        object.__setattr__(self, "ip", _addr(self.ip, f"client {self.name} ip"))


@dataclass(frozen=True, kw_only=True)
class TwoLegged:
    """A host with one leg on each segment (a director or the router)."""

    name: str
    outside: ipaddress.IPv4Address
    inside: ipaddress.IPv4Address

    def __post_init__(self) -> None:
        _name(self.name, "host name")
        object.__setattr__(self, "outside", _addr(self.outside, f"{self.name} outside"))
        object.__setattr__(self, "inside", _addr(self.inside, f"{self.name} inside"))


@dataclass(frozen=True, kw_only=True)
class RealServer:
    """A real server on the inside segment with its IPVS weight and thresholds."""

    name: str
    ip: ipaddress.IPv4Address
    weight: int = 1
    upper_threshold: int = 0  # ipvsadm -x (0: none)
    lower_threshold: int = 0  # ipvsadm -y

    def __post_init__(self) -> None:
        _name(self.name, "real server name")
        object.__setattr__(self, "ip", _addr(self.ip, f"real server {self.name} ip"))
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

    vip: ipaddress.IPv4Address
    dip: ipaddress.IPv4Address
    port: int = 80
    protocol: str = "tcp"
    scheduler: str = "rr"
    mode: str = "nat"
    nat_port: int | None = None  # real servers' port in NAT mode
    persistence: int = 0  # ipvsadm -p seconds (0: off)
    sched_flags: tuple[str, ...] = ()  # ipvsadm -b

    def __post_init__(self) -> None:
        object.__setattr__(self, "vip", _addr(self.vip, "service vip"))
        object.__setattr__(self, "dip", _addr(self.dip, "service dip"))
        _port(self.port, "service port")
        if self.nat_port is not None:
            _port(self.nat_port, "service nat_port")
        if self.protocol not in PROTOCOLS:
            raise TestbedError(
                f"unknown protocol {self.protocol!r} (choose from {', '.join(PROTOCOLS)})"
            )
        if self.scheduler not in SCHEDULERS:
            raise TestbedError(
                f"unknown scheduler {self.scheduler!r} (choose from {', '.join(SCHEDULERS)})"
            )
        if self.mode not in MODES:
            raise TestbedError(
                f"unknown forwarding mode {self.mode!r} (choose from {', '.join(MODES)})"
            )
        object.__setattr__(self, "sched_flags", tuple(self.sched_flags))
        for flag in self.sched_flags:
            if flag not in SCHED_FLAGS:
                raise TestbedError(
                    f"unknown scheduler flag {flag!r} (choose from {', '.join(SCHED_FLAGS)})"
                )
            if not flag.startswith(self.scheduler + "-"):
                raise TestbedError(f"scheduler flag {flag!r} does not apply to {self.scheduler}")
        if not isinstance(self.persistence, int) or self.persistence < 0:
            raise TestbedError(f"service persistence: {self.persistence!r} is not >= 0 seconds")

    @property
    def real_port(self) -> int:
        """Port the real servers listen on: only NAT can rewrite the port."""
        if self.mode == "nat" and self.nat_port is not None:
            return self.nat_port
        return self.port


@dataclass(frozen=True, kw_only=True)
class ClusterSpec:
    """A whole LVS cluster, as one declaration.

    >>> spec = load_topology()                      # topologies/default.toml
    >>> dr = spec.with_service(mode="dr", scheduler="wrr")
    """

    name: str
    outside: ipaddress.IPv4Network
    inside: ipaddress.IPv4Network
    service: Service
    router: TwoLegged
    clients: tuple[Client, ...]
    directors: tuple[TwoLegged, ...]
    real_servers: tuple[RealServer, ...]
    source: str = field(default="<python>", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outside", _net(self.outside, "outside"))
        object.__setattr__(self, "inside", _net(self.inside, "inside"))
        if self.outside.overlaps(self.inside):
            raise TestbedError(f"outside {self.outside} and inside {self.inside} overlap")
        if not self.clients:
            raise TestbedError("a cluster needs at least one client")
        if not self.directors:
            raise TestbedError("a cluster needs at least one director")
        if not self.real_servers:
            raise TestbedError("a cluster needs at least one real server")
        self._check_placement()

    def _check_placement(self) -> None:
        names: set[str] = set()
        addrs: dict[ipaddress.IPv4Address, str] = {}

        def claim(owner: str, addr: ipaddress.IPv4Address, net: ipaddress.IPv4Network) -> None:
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
            claim(r.name, r.ip, self.inside)
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
            (f"{self.service.vip}/32", f"{director}-eth0"),
            (f"{self.service.dip}/{self.inside.prefixlen}", f"{director}-eth1"),
        ]

    def real_server(self, name: str) -> RealServer:
        for r in self.real_servers:
            if r.name == name:
                return r
        raise KeyError(name)

    def with_service(self, **changes: Any) -> ClusterSpec:
        """A copy with service fields replaced (validated again)."""
        return dataclasses.replace(self, service=dataclasses.replace(self.service, **changes))

    def with_real_servers(self, *servers: RealServer) -> ClusterSpec:
        return dataclasses.replace(self, real_servers=tuple(servers))


def load_topology(path: str | Path | None = None, **service: Any) -> ClusterSpec:
    """Read a TOML topology (default: topologies/default.toml).

    Keyword arguments override fields of its ``[service]`` table.
    """
    path = Path(path) if path else DEFAULT_TOPOLOGY
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise TestbedError(f"topology file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TestbedError(f"topology file {path}: {exc}") from None
    try:
        return _from_dict(data, source=str(path), service_overrides=service)
    except TestbedError as exc:
        raise TestbedError(f"topology {path.name}: {exc}") from None


def _from_dict(
    data: dict[str, Any], *, source: str, service_overrides: dict[str, Any]
) -> ClusterSpec:
    def table(key: str) -> dict[str, Any]:
        value = data.get(key)
        if not isinstance(value, dict):
            raise TestbedError(f"missing [{key}] table")
        return value

    def tables(key: str) -> list[dict[str, Any]]:
        value = data.get(key)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise TestbedError(f"missing [[{key}]] entries")
        return value

    def build(cls: type, fields: dict[str, Any], what: str) -> Any:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(fields) - known
        if unknown:
            raise TestbedError(f"{what}: unknown key(s) {', '.join(sorted(unknown))}")
        try:
            return cls(**fields)
        except TypeError as exc:  # a required key is missing
            missing = sorted(known - set(fields))
            raise TestbedError(f"{what}: missing key(s) {', '.join(missing)}") from exc

    service = {**table("service"), **{k: v for k, v in service_overrides.items() if v is not None}}
    extra = set(data) - {
        "name", "outside", "inside", "service", "router", "clients", "directors", "real_servers"
    }  # fmt: skip
    if extra:
        raise TestbedError(f"unknown top-level key(s) {', '.join(sorted(extra))}")
    return ClusterSpec(
        name=str(data.get("name", Path(source).stem)),
        outside=data.get("outside", ""),
        inside=data.get("inside", ""),
        service=build(Service, service, "[service]"),
        router=build(TwoLegged, table("router"), "[router]"),
        clients=tuple(build(Client, c, "[[clients]]") for c in tables("clients")),
        directors=tuple(build(TwoLegged, d, "[[directors]]") for d in tables("directors")),
        real_servers=tuple(
            build(RealServer, r, "[[real_servers]]") for r in tables("real_servers")
        ),
        source=source,
    )
