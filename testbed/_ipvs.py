"""IPVS configuration over generic netlink (pyroute2), one director netns.

The testbed configures IPVS only through netlink, the kernel API ipvsadm
itself uses; ``ipvsadm -Ln`` output is parsed separately (``parse_ipvsadm``)
as an independent cross-check of what the kernel reports.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._spec import RealServer, Service

# include/uapi/linux/ip_vs.h: IP_VS_CONN_F_* forwarding methods
FWD_METHOD = {"nat": 0, "tun": 2, "dr": 3}
FWD_NAME = {v: k for k, v in FWD_METHOD.items()} | {1: "local", 4: "bypass"}
PROTOCOL = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "sctp": 132}
IP_VS_SVC_F_PERSISTENT = 0x0001
# IP_VS_SVC_F_SCHED1/2: sh-fallback/sh-port, mh-fallback/mh-port (ip_vs.h)
SCHED_FLAG_BITS = {"fallback": 0x0008, "port": 0x0010}


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
            "protocol": PROTOCOL[service.protocol],
            "sched_name": service.scheduler,
        }
        flags = 0
        if service.persistence:
            flags |= IP_VS_SVC_F_PERSISTENT
            fields["timeout"] = service.persistence
        for flag in service.sched_flags:
            flags |= SCHED_FLAG_BITS[flag.split("-", 1)[1]]
        if flags:
            fields["flags"] = {"flags": flags, "mask": 0xFFFF}
        return IPVSService(**fields)

    @staticmethod
    def _dest(service: Service, rs: RealServer, weight: int | None = None) -> Any:
        from pyroute2 import IPVSDest

        return IPVSDest(
            addr=str(rs.ip),
            port=service.real_port,
            fwd_method=FWD_METHOD[service.mode],
            weight=rs.weight if weight is None else weight,
            u_thresh=rs.upper_threshold,
            l_thresh=rs.lower_threshold,
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
            method=FWD_NAME.get(val("FWD_METHOD") & 0x7, "unknown"),
            weight=val("WEIGHT"),
            active=val("ACTIVE_CONNS"),
            inactive=val("INACT_CONNS"),
            persistent=val("PERSIST_CONNS"),
            upper_threshold=val("U_THRESH"),
            lower_threshold=val("L_THRESH"),
            stats=_stats(nla, "IPVS_DEST_ATTR"),
        )


# -- ipvsadm -Ln cross-check ---------------------------------------------------------
_IPVSADM_SERVICE = re.compile(
    r"^(?P<proto>TCP|UDP|SCTP)\s+(?P<addr>[\d.]+):(?P<port>\d+)\s+(?P<sched>\S+)(?P<rest>.*)$"
)
_IPVSADM_DEST = re.compile(
    r"^\s+->\s+(?P<addr>[\d.]+):(?P<port>\d+)\s+(?P<fwd>\w+)\s+(?P<weight>\d+)"
    r"\s+(?P<active>\d+)\s+(?P<inactive>\d+)\s*$"
)
_IPVSADM_FWD = {"Masq": "nat", "Route": "dr", "Tunnel": "tun", "Local": "local"}


@dataclass(frozen=True, kw_only=True)
class IpvsadmRow:
    """One line of ``ipvsadm -Ln`` reduced to what both sources report."""

    service: str  # "TCP 203.0.113.100:80 rr"
    dest: str | None  # "198.51.100.11:8080 nat w=1" (None for the service line)


def parse_ipvsadm(text: str) -> list[IpvsadmRow]:
    """Parse ``ipvsadm -Ln`` (numeric, IPv4) into comparable rows."""
    rows: list[IpvsadmRow] = []
    current: str | None = None
    for line in text.splitlines():
        if m := _IPVSADM_SERVICE.match(line):
            current = f"{m['proto']} {m['addr']}:{m['port']} {m['sched']}"
            if "persistent" in m["rest"]:
                current += " persistent"
            rows.append(IpvsadmRow(service=current, dest=None))
        elif (m := _IPVSADM_DEST.match(line)) and current:
            fwd = _IPVSADM_FWD.get(m["fwd"], m["fwd"])
            dest = f"{m['addr']}:{m['port']} {fwd} w={m['weight']}"
            rows.append(IpvsadmRow(service=current, dest=dest))
    return rows


def rows_from_netlink(states: Iterable[ServiceState]) -> list[IpvsadmRow]:
    """The same rows, built from a netlink dump, for comparison with ipvsadm."""
    names = {v: k.upper() for k, v in PROTOCOL.items()}
    rows = []
    for s in states:
        svc = f"{names.get(s.protocol, s.protocol)} {s.addr}:{s.port} {s.scheduler}"
        if s.persistent:
            svc += " persistent"
        rows.append(IpvsadmRow(service=svc, dest=None))
        rows += [
            IpvsadmRow(service=svc, dest=f"{d.addr}:{d.port} {d.method} w={d.weight}")
            for d in s.dests
        ]
    return rows
