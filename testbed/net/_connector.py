"""Fast, controlled connections from a client namespace: TCP, SCTP or UDP.

Spawning a process per connection is far too slow under software emulation,
so connections are opened by a worker thread of this process that has
entered the client's network namespace (sockets stay in the namespace they
were created in). Each connection has a chosen source address and port, so
hashing schedulers can be checked per flow. A UDP "connection" is one
datagram from its address and port: what makes the director's entry.
"""

from __future__ import annotations

import contextlib
import socket
from concurrent.futures import ThreadPoolExecutor

from ..registry import PROTOCOLS, Protocol, family_of
from ._netns import enter_netns

# close with RST: no TIME_WAIT holding the (address, port) pair
LINGER_RST = b"\x01\x00\x00\x00\x00\x00\x00\x00"


class Connector:
    """Open (and hold) TCP connections from a client host's namespace.

    >>> with Connector(cluster.pid("c1")) as conn:
    ...     sock = conn.open("203.0.113.11", 40001, ("203.0.113.100", 80))
    """

    def __init__(
        self, client_pid: int, *, timeout: float = 10.0, protocol: Protocol | None = None
    ) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=1, initializer=enter_netns, initargs=(client_pid,)
        )
        self._timeout = timeout
        self.protocol = protocol or PROTOCOLS["tcp"]
        self.held: list[socket.socket] = []

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self, saddr: str, sport: int, dst: tuple[str, int]) -> socket.socket:
        kind = socket.SOCK_DGRAM if self.protocol.datagrams else socket.SOCK_STREAM
        sock = socket.socket(family_of(saddr).af, kind, self.protocol.number)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.protocol.number == socket.IPPROTO_TCP:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        sock.settimeout(self._timeout)
        try:
            sock.bind((saddr, sport))
            sock.connect(dst)
            if self.protocol.datagrams:
                sock.send(b"lvs-testbed\n")  # the datagram that makes the entry
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

    def close(self) -> None:
        """Every held connection closed, and the worker thread gone."""
        self.close_all()
        self._pool.shutdown(wait=True)
