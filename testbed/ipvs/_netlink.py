"""IPVS configuration over generic netlink (pyroute2), one director netns.

The testbed configures IPVS only through netlink, the kernel API ipvsadm
itself uses; ``ipvsadm -Ln`` output is parsed separately (``parse_ipvsadm``)
as an independent cross-check of what the kernel reports.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..registry import MODES, SCHEDULERS, TUNNEL_CHECKSUMS, TUNNELS
from ..topology import RealServer, Service

IP_VS_SVC_F_PERSISTENT = 0x0001  # include/uapi/linux/ip_vs.h
IP_VS_SVC_F_ONEPACKET = 0x0004
IP_VS_CONN_F_FWD_MASK = 0x0007
# forwarding methods the testbed never configures but the kernel may report
_OTHER_METHODS = {1: "local", 4: "bypass"}


def _netmask(value: int) -> str:
    """IPVS_SVC_ATTR_NETMASK as pyroute2 encodes it (an IPv4 address's four bytes).

    The kernel reads the attribute's 32 bits as they are (ip_vs_ctl.c
    ip_vs_genl_parse_service): for IPv4 a mask, for IPv6 a prefix length in
    host byte order, which ipvsadm writes with nla_put_u32.
    """
    return socket.inet_ntoa(struct.pack("=I", value))


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

        fields: dict[str, Any] = {
            "addr": str(service.vip),
            "port": service.port,
            "protocol": service.transport.number,
            "sched_name": service.scheduler,
            "netmask": _netmask(service.family.ipvs_netmask),
        }
        flags = SCHEDULERS[service.scheduler].flag_bits(service.sched_flags)
        if service.persistence:
            flags |= IP_VS_SVC_F_PERSISTENT
            fields["timeout"] = service.persistence
        if service.one_packet:
            flags |= IP_VS_SVC_F_ONEPACKET
        if flags:
            fields["flags"] = {"flags": flags, "mask": 0xFFFF}
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
                    addr=str(nla.get_attr("IPVS_SVC_ATTR_ADDR")),
                    port=int(nla.get_attr("IPVS_SVC_ATTR_PORT") or 0),
                    protocol=int(nla.get_attr("IPVS_SVC_ATTR_PROTOCOL") or 0),
                    scheduler=str(nla.get_attr("IPVS_SVC_ATTR_SCHED_NAME")),
                    persistent=bool(int(flags.get("flags", 0)) & IP_VS_SVC_F_PERSISTENT),
                    flags=int(flags.get("flags", 0)),
                    timeout=int(nla.get_attr("IPVS_SVC_ATTR_TIMEOUT") or 0),
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
        )
