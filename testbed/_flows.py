"""Fast, controlled TCP flows from a client namespace, and the director's view of them.

Spawning a process per connection is far too slow under software emulation,
so connections are opened by a worker thread of this process that has
entered the client's network namespace (sockets stay in the namespace they
were created in). Each flow has a chosen source address and port, so hashing
schedulers can be checked per flow; where the director sent each flow is
read from its ``/proc/<pid>/net/ip_vs_conn``.
"""

from __future__ import annotations

import contextlib
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ._capture import enter_netns


@dataclass(frozen=True, kw_only=True)
class Conn:
    """One entry of the director's IPVS connection table."""

    protocol: str
    client: tuple[str, int]
    virtual: tuple[str, int]
    dest: tuple[str, int]
    state: str
    expires: int


def _hex_addr(text: str) -> str:
    return socket.inet_ntoa(bytes.fromhex(text))


def read_connections(director_pid: int) -> list[Conn]:
    """Parse ``/proc/<pid>/net/ip_vs_conn`` of the director's namespace."""
    lines = Path(f"/proc/{director_pid}/net/ip_vs_conn").read_text().splitlines()[1:]
    conns = []
    for line in lines:
        parts = line.split()
        if len(parts) < 9 or len(parts[1]) != 8:  # skip IPv6 entries
            continue
        conns.append(
            Conn(
                protocol=parts[0],
                client=(_hex_addr(parts[1]), int(parts[2], 16)),
                virtual=(_hex_addr(parts[3]), int(parts[4], 16)),
                dest=(_hex_addr(parts[5]), int(parts[6], 16)),
                state=parts[7],
                expires=int(parts[8]),
            )
        )
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
            hexaddr, hexport = parts[1].split(":")
            if len(hexaddr) != 8:
                continue
            addr = _hex_addr(hexaddr)
            out[addr] = DestCounters(
                addr=addr,
                port=int(hexport, 16),
                weight=int(parts[3]),
                active=int(parts[4]),
                inactive=int(parts[5]),
            )
    return out


class Connector:
    """Open (and hold) TCP connections from a client host's namespace.

    >>> with Connector(cluster.pid("c1")) as conn:
    ...     sock = conn.open("203.0.113.11", 40001, ("203.0.113.100", 80))
    """

    def __init__(self, client_pid: int, *, timeout: float = 10.0) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=1, initializer=enter_netns, initargs=(client_pid,)
        )
        self._timeout = timeout
        self.held: list[socket.socket] = []

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_all()
        self._pool.shutdown(wait=True)

    def _connect(self, saddr: str, sport: int, dst: tuple[str, int]) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # close with RST: no TIME_WAIT holding the (address, port) pair
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.settimeout(self._timeout)
        try:
            sock.bind((saddr, sport))
            sock.connect(dst)
        except OSError:
            sock.close()
            raise
        return sock

    def open(self, saddr: str, sport: int, dst: tuple[str, int]) -> socket.socket:
        """Connect from (saddr, sport); the socket stays open until close_all()."""
        sock = self._pool.submit(self._connect, saddr, sport, dst).result()
        self.held.append(sock)
        return sock

    def close_all(self) -> None:
        for sock in self.held:
            with contextlib.suppress(OSError):
                sock.close()
        self.held.clear()


def wait_until(predicate, *, timeout: float = 10.0, interval: float = 0.01) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate()`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
