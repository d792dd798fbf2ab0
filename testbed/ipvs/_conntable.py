"""The director's connection table and real-server counters, read from /proc.

``/proc/<pid>/net/ip_vs_conn`` and ``/proc/<pid>/net/ip_vs`` of a process in
the director's namespace: cheap enough to read before every scheduling
decision, which the netlink dump is not (net/netfilter/ipvs/ip_vs_conn.c
ip_vs_conn_seq_show, ip_vs_ctl.c ip_vs_info_seq_show).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from ._ipvsadm import KERNEL_PROTOCOLS


@dataclass(frozen=True, kw_only=True)
class Conn:
    """One entry of the director's IPVS connection table."""

    protocol: str  # "TCP"
    client: tuple[str, int]
    virtual: tuple[str, int]
    dest: tuple[str, int]
    state: str
    expires: int


def _hex_addr(text: str) -> str | None:
    """An address as /proc prints it: IPv4 as 8 hex digits (%08X), IPv6 as %pI6
    (eight groups of four hex digits, colon-separated); None for anything else."""
    try:
        if ":" in text:
            return str(ipaddress.IPv6Address(text))
        if len(text) == 8:
            return str(ipaddress.IPv4Address(bytes.fromhex(text)))
    except ValueError:
        pass
    return None


def _proc_token(addr: str, port: int) -> str:
    """An address and port as /proc/net/ip_vs_conn prints them (%08X or %pI6, %04X)."""
    ip = ipaddress.ip_address(addr)
    text = ip.exploded if ip.version == 6 else f"{int(ip):08X}"
    return f" {text} {port:04X} "


def read_connections(
    director_pid: int,
    *,
    client: tuple[str, int] | None = None,
    virtual: tuple[str, int] | None = None,
    reads: int = 1,
) -> list[Conn]:
    """Parse ``/proc/<pid>/net/ip_vs_conn`` of the director's namespace (only the
    entries of one ``client`` address and port, or of one ``virtual`` one, if given).

    Filtering on the printed text first matters: a scheduler check reads the
    table once per connection while it grows, and under emulation parsing every
    entry each time costs minutes per test.

    A table longer than a page comes in several read() calls, and each call
    walks the hash from its start to the offset it stopped at
    (ip_vs_conn_seq_start -> ip_vs_conn_array): an entry that expires in
    between shifts the rest, and one live entry is never printed. ``reads`` > 1
    takes the union of that many readings, which holds every entry that lived
    through them all: for "is this connection in the table" questions.
    """
    path = Path(f"/proc/{director_pid}/net/ip_vs_conn")
    if reads == 1:
        return parse_connections(path.read_text(), client=client, virtual=virtual)
    readings = [parse_connections(path.read_text(), client=client, virtual=virtual)
                for _ in range(reads)]  # fmt: skip
    return union_of_readings(readings)


def union_of_readings(readings: list[list[Conn]]) -> list[Conn]:
    """Every entry any reading shows, once (the latest reading's state of it)."""
    seen: dict[tuple[object, ...], Conn] = {}
    for conns in readings:
        for conn in conns:
            seen[(conn.protocol, conn.client, conn.virtual, conn.dest)] = conn
    return list(seen.values())


def parse_connections(
    text: str, *, client: tuple[str, int] | None = None, virtual: tuple[str, int] | None = None
) -> list[Conn]:
    """The entries of an ``ip_vs_conn`` text (of one ``client``, or one ``virtual``
    address and port, if given)."""
    lines = text.splitlines()[1:]
    service = virtual  # the loop below names each entry's own virtual address
    for endpoint in (e for e in (client, service) if e is not None):
        token = _proc_token(*endpoint)
        lines = [line for line in lines if token in line]
    # and "IP": a firewall-mark service's templates (IPPROTO_IP, ip_vs_sched_persist)
    titles = {*KERNEL_PROTOCOLS.values(), "IP"}
    conns = []
    for line in lines:
        parts = line.split()
        if len(parts) < 9 or parts[0] not in titles:
            continue
        client_addr, virtual, dest = (_hex_addr(parts[i]) for i in (1, 3, 5))
        if client_addr is None or virtual is None or dest is None:
            continue
        conns.append(
            Conn(
                protocol=parts[0],
                client=(client_addr, int(parts[2], 16)),
                virtual=(virtual, int(parts[4], 16)),
                dest=(dest, int(parts[6], 16)),
                state=parts[7],
                expires=int(parts[8]),
            )
        )
    if client is not None:  # the token may have matched another column
        wanted = (str(ipaddress.ip_address(client[0])), client[1])
        conns = [c for c in conns if c.client == wanted]
    if service is not None:
        wanted = (str(ipaddress.ip_address(service[0])), service[1])
        conns = [c for c in conns if c.virtual == wanted]
    return conns


@dataclass(frozen=True, kw_only=True)
class DestCounters:
    """ActiveConn / InActConn of one real server, from ``/proc/<pid>/net/ip_vs``."""

    addr: str
    port: int
    weight: int
    active: int
    inactive: int


def read_dest_counters(director_pid: int) -> dict[str, DestCounters]:
    """Real-server counters of every service (keyed by address), cheap enough per flow."""
    out = {}
    for line in Path(f"/proc/{director_pid}/net/ip_vs").read_text().splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[0] == "->" and ":" in parts[1]:
            hexaddr, _, hexport = parts[1].rpartition(":")
            addr = _hex_addr(hexaddr.strip("[]"))
            if addr is None:
                continue
            out[addr] = DestCounters(
                addr=addr,
                port=int(hexport, 16),
                weight=int(parts[3]),
                active=int(parts[4]),
                inactive=int(parts[5]),
            )
    return out
