"""IPVS configuration over generic netlink (pyroute2), one director netns.

The testbed configures IPVS only through netlink, the kernel API ipvsadm
itself uses; ``ipvsadm -Ln`` output is parsed separately (``parse_ipvsadm``)
as an independent cross-check of what the kernel reports.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..registry import MODES, SCHEDULERS, TUNNEL_CHECKSUMS, TUNNELS
from ..topology import RealServer, Service

IP_VS_SVC_F_PERSISTENT = 0x0001  # include/uapi/linux/ip_vs.h
IP_VS_SVC_F_HASHED = 0x0002  # set by the kernel on a service in its table
IP_VS_SVC_F_ONEPACKET = 0x0004
IP_VS_CONN_F_FWD_MASK = 0x0007
# forwarding methods the testbed never configures but the kernel may report
_OTHER_METHODS = {1: "local", 4: "bypass"}


def service_flags(service: Service) -> int:
    """IP_VS_SVC_F_* bits of the service as the testbed requests it."""
    flags = SCHEDULERS[service.scheduler].flag_bits(service.sched_flags)
    if service.persistence:
        flags |= IP_VS_SVC_F_PERSISTENT
    if service.one_packet:
        flags |= IP_VS_SVC_F_ONEPACKET
    return flags


def method_name(fwd_method: int) -> str:
    """The mode name of an IP_VS_CONN_F_* forwarding method (or local/bypass)."""
    for mode in MODES.values():
        if mode.fwd_method == fwd_method & IP_VS_CONN_F_FWD_MASK:
            return mode.name
    return _OTHER_METHODS.get(fwd_method & IP_VS_CONN_F_FWD_MASK, "unknown")


@dataclass(frozen=True, kw_only=True)
class Stats:
    conns: int = 0
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0


@dataclass(frozen=True, kw_only=True)
class DestState:
    addr: str
    port: int
    method: str
    weight: int
    active: int
    inactive: int
    persistent: int
    upper_threshold: int
    lower_threshold: int
    stats: Stats
    address_family: int = 0  # socket.AF_*: a TUN real server may be of the other family
    tunnel_type: int = 0  # IP_VS_CONN_F_TUNNEL_TYPE_*
    tunnel_port: int = 0
    tunnel_flags: int = 0  # IP_VS_TUNNEL_ENCAP_FLAG_*


@dataclass(frozen=True, kw_only=True)
class ServiceState:
    addr: str
    port: int
    protocol: int
    scheduler: str
    persistent: bool
    timeout: int
    stats: Stats
    dests: tuple[DestState, ...]
    flags: int = 0
    family: int = 0  # socket.AF_*
    fwmark: int = 0
    netmask: str = ""  # IPVS_SVC_ATTR_NETMASK as pyroute2 decodes it (Family.ipvs_netmask)
    persistence_engine: str | None = None

    def dest(self, addr: str) -> DestState:
        for d in self.dests:
            if d.addr == addr:
                return d
        raise KeyError(addr)


def _stats(nla: Any, prefix: str) -> Stats:
    raw = nla.get_attr(f"{prefix}_STATS64") or nla.get_attr(f"{prefix}_STATS")
    if raw is None:
        return Stats()

    def val(name: str) -> int:
        return int(raw.get_attr(f"IPVS_STATS_ATTR_{name}") or 0)

    return Stats(
        conns=val("CONNS"),
        inpkts=val("INPKTS"),
        outpkts=val("OUTPKTS"),
        inbytes=val("INBYTES"),
        outbytes=val("OUTBYTES"),
    )


class Ipvs:
    """The IPVS table of one network namespace (a director).

    >>> ipvs = Ipvs(netns=f"/proc/{director.pid}/ns/net")
    >>> ipvs.apply(spec.service, spec.real_servers)
    >>> ipvs.service().stats.conns
    """

    def __init__(self, *, netns: str | None = None) -> None:
        from pyroute2 import IPVS

        self._sock = IPVS(netns=netns) if netns else IPVS()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Ipvs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- building requests ------------------------------------------------
    @staticmethod
    def _service(service: Service) -> Any:
        from pyroute2 import IPVSService

        family = service.family
        fields: dict[str, Any] = {
            "af": family.af,
            "sched_name": service.scheduler,
            "netmask": family.ipvs_netmask(service.persistence_block),
        }
        if service.fwmark:
            fields["fwmark"] = service.fwmark
        else:
            fields |= {"addr": str(service.vip), "port": service.port,
                       "protocol": service.transport.number}  # fmt: skip
        if service.persistence_engine:
            fields["pe_name"] = service.persistence_engine
        if service.persistence:
            fields["timeout"] = service.persistence
        # the whole mask: an edit clears what it does not set
        fields["flags"] = {"flags": service_flags(service), "mask": 0xFFFF}
        return IPVSService(**fields)

    @staticmethod
    def _dest(service: Service, rs: RealServer, weight: int | None = None) -> Any:
        from pyroute2 import IPVSDest

        mode = service.forwarding
        fields: dict[str, Any] = {}
        if mode.encapsulates:  # the real server's tunnel (ipip is the kernel's default)
            tunnel = TUNNELS[rs.tunnel]
            fields["tun_type"] = tunnel.ipvs_type
            fields["tun_flags"] = TUNNEL_CHECKSUMS[rs.tunnel_checksum].flags
            # the kernel reads the port in network byte order (ip_vs_ctl.c
            # ip_vs_genl_parse_dest: nla_get_be16); pyroute2 packs it in host order
            fields["tun_port"] = socket.htons(rs.tunnel_port or tunnel.port)
        return IPVSDest(
            addr=str(rs.ip),
            port=service.real_port,
            fwd_method=mode.fwd_method,
            weight=rs.weight if weight is None else weight,
            u_thresh=rs.upper_threshold,
            l_thresh=rs.lower_threshold,
            **fields,
        )

    # -- changes ------------------------------------------------------------
    def flush(self) -> None:
        """Remove every virtual service (ipvsadm -C)."""
        from pyroute2 import IPVSService

        for msg in self._sock.service("dump"):
            self._sock.service("del", service=IPVSService.from_message(msg))

    def apply(self, service: Service, real_servers: Iterable[RealServer]) -> None:
        """Replace the table with one service and its real servers, in order."""
        self.apply_all([(service, tuple(real_servers))])

    def apply_all(self, table: Iterable[tuple[Service, Iterable[RealServer]]]) -> None:
        """Replace the table with several services, each with its real servers."""
        self.flush()
        for service, real_servers in table:
            svc = self._service(service)
            self._sock.service("add", service=svc)
            for rs in real_servers:
                self._sock.dest("add", service=svc, dest=self._dest(service, rs))

    def add_real_server(self, service: Service, rs: RealServer) -> None:
        self._sock.dest("add", service=self._service(service), dest=self._dest(service, rs))

    def remove_real_server(self, service: Service, rs: RealServer) -> None:
        self._sock.dest("del", service=self._service(service), dest=self._dest(service, rs))

    def set_weight(self, service: Service, rs: RealServer, weight: int) -> None:
        self._sock.dest("set", service=self._service(service), dest=self._dest(service, rs, weight))

    def edit_service(self, service: Service) -> None:
        """Change a service in place (IPVS_CMD_SET_SERVICE): scheduler, flags,
        persistence, netmask, engine; its identity stays."""
        self._sock.service("set", service=self._service(service))

    def edit_real_server(self, service: Service, rs: RealServer) -> None:
        """Change a real server in place (IPVS_CMD_SET_DEST): weight, thresholds,
        forwarding method, tunnel."""
        self._sock.dest("set", service=self._service(service), dest=self._dest(service, rs))

    def request_errno(self, service: dict[str, Any], dest: dict[str, Any] | None = None, *,
                      command: str = "add", existing: bool = False) -> int:  # fmt: skip
        """Send one raw request in pyroute2's field names (``command`` "add", "set" or
        "add twice"), after adding the service first if ``existing``; the errno the
        kernel answered, 0 if it took it. For requests the value objects refuse."""
        from pyroute2 import IPVSDest, IPVSService
        from pyroute2.netlink.exceptions import NetlinkError

        svc = IPVSService(**service)
        if existing:
            self._sock.service("add", service=svc)
        if command == "add twice":
            self._sock.dest("add", service=svc, dest=IPVSDest(**dest or {}))
            command = "add"
        try:
            if dest is None:
                self._sock.service(command, service=svc)
            else:
                self._sock.dest(command, service=svc, dest=IPVSDest(**dest))
        except NetlinkError as e:
            return e.code
        return 0

    # -- reading --------------------------------------------------------------
    def services(self) -> list[ServiceState]:
        """Every service with its real servers and counters, in kernel order."""
        from pyroute2 import IPVSService

        states = []
        for msg in self._sock.service("dump"):
            nla = msg.get_attr("IPVS_CMD_ATTR_SERVICE")
            flags = nla.get_attr("IPVS_SVC_ATTR_FLAGS") or {}
            dests = tuple(
                self._dest_state(d.get_attr("IPVS_CMD_ATTR_DEST"))
                for d in self._sock.dest("dump", service=IPVSService.from_message(msg))
            )
            states.append(
                ServiceState(
                    addr=str(nla.get_attr("IPVS_SVC_ATTR_ADDR") or ""),  # none for a fwmark service
                    port=int(nla.get_attr("IPVS_SVC_ATTR_PORT") or 0),
                    protocol=int(nla.get_attr("IPVS_SVC_ATTR_PROTOCOL") or 0),
                    scheduler=str(nla.get_attr("IPVS_SVC_ATTR_SCHED_NAME")),
                    persistent=bool(int(flags.get("flags", 0)) & IP_VS_SVC_F_PERSISTENT),
                    flags=int(flags.get("flags", 0)),
                    timeout=int(nla.get_attr("IPVS_SVC_ATTR_TIMEOUT") or 0),
                    family=int(nla.get_attr("IPVS_SVC_ATTR_AF") or 0),
                    fwmark=int(nla.get_attr("IPVS_SVC_ATTR_FWMARK") or 0),
                    netmask=str(nla.get_attr("IPVS_SVC_ATTR_NETMASK")),
                    persistence_engine=nla.get_attr("IPVS_SVC_ATTR_PE_NAME") or None,
                    stats=_stats(nla, "IPVS_SVC_ATTR"),
                    dests=dests,
                )
            )
        return states

    def service(self) -> ServiceState:
        """The single service the testbed configured."""
        states = self.services()
        if len(states) != 1:
            raise AssertionError(f"expected one IPVS service, the kernel has {len(states)}")
        return states[0]

    @staticmethod
    def _dest_state(nla: Any) -> DestState:
        def val(name: str) -> int:
            return int(nla.get_attr(f"IPVS_DEST_ATTR_{name}") or 0)

        return DestState(
            addr=str(nla.get_attr("IPVS_DEST_ATTR_ADDR")),
            port=val("PORT"),
            method=method_name(val("FWD_METHOD")),
            weight=val("WEIGHT"),
            active=val("ACTIVE_CONNS"),
            inactive=val("INACT_CONNS"),
            persistent=val("PERSIST_CONNS"),
            upper_threshold=val("U_THRESH"),
            lower_threshold=val("L_THRESH"),
            stats=_stats(nla, "IPVS_DEST_ATTR"),
            address_family=val("ADDR_FAMILY"),
            tunnel_type=val("TUN_TYPE"),
            tunnel_port=socket.ntohs(val("TUN_PORT")),  # be16, read by pyroute2 as host order
            tunnel_flags=val("TUN_FLAGS"),
        )
