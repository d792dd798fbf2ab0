"""ipvsadm as an independent reader and as the commands a person would type.

``parse_ipvsadm`` reads ``ipvsadm -Ln`` into rows comparable with the
netlink dump (``rows_from_netlink``): two readers of one kernel table.
``ipvsadm_commands`` writes a service as the ipvsadm(8) commands that build
it, for guides and failure reports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..registry import MODES, TUNNEL_CHECKSUMS, TUNNELS, family_of
from ..topology import RealServer, Service
from ._netlink import ServiceState

# What ipvsadm and /proc/net/ip_vs* call the protocols IPVS supports, whether or not
# the testbed has declared them yet: an independent reader must see every service
# (include/uapi/linux/in.h numbers; ipvsadm.c and ip_vs_proto_*.c names)
KERNEL_PROTOCOLS = {6: "TCP", 17: "UDP", 132: "SCTP"}

_ENDPOINT = r"(?:\[(?P<{0}6>[0-9a-fA-F:]+)\]|(?P<{0}4>[\d.]+)):(?P<{0}port>\d+)"
_IPVSADM_SERVICE = re.compile(
    rf"^(?P<proto>[A-Z]+)\s+{_ENDPOINT.format('s')}\s+(?P<sched>\S+)(?P<rest>.*)$"
)
_IPVSADM_DEST = re.compile(
    rf"^\s+->\s+{_ENDPOINT.format('d')}\s+(?P<fwd>\w+)\s+(?P<weight>\d+)"
    r"\s+(?P<active>\d+)\s+(?P<inactive>\d+)\s*$"
)


def _forward_name(column: str) -> str:
    for mode in MODES.values():
        if mode.ipvsadm_column == column:
            return mode.name
    return {"Local": "local"}.get(column, column)


@dataclass(frozen=True, kw_only=True)
class IpvsadmRow:
    """One line of ``ipvsadm -Ln`` reduced to what both sources report."""

    service: str  # "TCP 203.0.113.100:80 rr"
    dest: str | None  # "198.51.100.11:8080 nat w=1" (None for the service line)


def _endpoint(addr: str, port: object) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def parse_ipvsadm(text: str) -> list[IpvsadmRow]:
    """Parse ``ipvsadm -Ln`` (numeric) into comparable rows."""
    rows: list[IpvsadmRow] = []
    current: str | None = None
    titles = set(KERNEL_PROTOCOLS.values())
    for line in text.splitlines():
        m = _IPVSADM_SERVICE.match(line)
        if m and m["proto"] in titles:
            addr = m["s6"] or m["s4"]
            current = f"{m['proto']} {_endpoint(addr, m['sport'])} {m['sched']}"
            if "persistent" in m["rest"]:
                current += " persistent"
            rows.append(IpvsadmRow(service=current, dest=None))
        elif (m := _IPVSADM_DEST.match(line)) and current:
            dest = f"{_endpoint(m['d6'] or m['d4'], m['dport'])} {_forward_name(m['fwd'])}"
            rows.append(IpvsadmRow(service=current, dest=f"{dest} w={m['weight']}"))
    return rows


def rows_from_netlink(states: Iterable[ServiceState]) -> list[IpvsadmRow]:
    """The same rows, built from a netlink dump, for comparison with ipvsadm."""
    names = KERNEL_PROTOCOLS
    rows = []
    for s in states:
        svc = f"{names.get(s.protocol, s.protocol)} {_endpoint(s.addr, s.port)} {s.scheduler}"
        if s.persistent:
            svc += " persistent"
        rows.append(IpvsadmRow(service=svc, dest=None))
        rows += [
            IpvsadmRow(service=svc, dest=f"{_endpoint(d.addr, d.port)} {d.method} w={d.weight}")
            for d in s.dests
        ]
    return rows


def _client_block(service: Service) -> str:
    """ipvsadm -M: a mask for IPv4, a prefix length for IPv6."""
    if service.family.version == 6:
        return str(service.persistence_block)
    return service.family.ipvs_netmask(service.persistence_block)


def ipvsadm_commands(service: Service, real_servers: Iterable[RealServer]) -> list[str]:
    """The ipvsadm(8) commands that build this service and its real servers."""
    key = service.ipvsadm_key
    add = f"ipvsadm -A {key} -s {service.scheduler}"
    if service.sched_flags:
        add += f" -b {','.join(service.sched_flags)}"
    if service.persistence:
        add += f" -p {service.persistence}"
    if service.persistence_prefix:
        add += f" -M {_client_block(service)}"
    if service.persistence_engine:
        add += f" --pe {service.persistence_engine}"
    if service.one_packet:
        add += " -o"
    out = [add]
    mode = service.forwarding
    for rs in real_servers:
        dest = family_of(rs.ip).endpoint(rs.ip, service.real_port)
        cmd = f"ipvsadm -a {key} -r {dest} {mode.ipvsadm_flag} -w {rs.weight}"
        if rs.upper_threshold:
            cmd += f" -x {rs.upper_threshold}"
        if rs.lower_threshold:
            cmd += f" -y {rs.lower_threshold}"
        if mode.encapsulates:
            tunnel = TUNNELS[rs.tunnel]
            cmd += f" --tun-type {tunnel.name}"
            if tunnel.port:
                cmd += f" --tun-port {rs.tunnel_port or tunnel.port}"
            if len(tunnel.checksums) > 1:  # a type with a choice of checksum options
                cmd += f" {TUNNEL_CHECKSUMS[rs.tunnel_checksum].ipvsadm_option}"
        out.append(cmd)
    return out


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """The connection-table timeouts of a director's namespace, in seconds (ipvsadm(8)
    --set tcp tcpfin udp; 0 in a change means "leave as it is")."""

    tcp: int
    tcpfin: int
    udp: int

    def command(self) -> str:
        """The ipvsadm command that sets them."""
        return f"ipvsadm --set {self.tcp} {self.tcpfin} {self.udp}"


TIMEOUTS_COMMAND = "ipvsadm -L --timeout"
_TIMEOUTS = re.compile(r"Timeout \(tcp tcpfin udp\): (\d+) (\d+) (\d+)")


def parse_timeouts(text: str) -> Timeouts:
    """``ipvsadm -L --timeout`` ("Timeout (tcp tcpfin udp): 900 120 300") as values."""
    m = _TIMEOUTS.search(text)
    if not m:
        raise ValueError(f"no timeouts in {text!r}")
    return Timeouts(tcp=int(m[1]), tcpfin=int(m[2]), udp=int(m[3]))
