"""Long-lived TCP connections from a client namespace, checked byte by byte.

Sockets are created by a thread inside the client's network namespace
(``loadgen.stream`` serves the other end); one reader thread then watches
them all, checks every received byte against the stream pattern and notes
when each byte arrived, so a failover test can tell which connections
survived, whether they were reset, and how long the data stopped.

>>> with StreamSet(cluster.pid("c1")) as streams:
...     streams.open("stream", 20, ("203.0.113.100", 9000))
...     ...                                   # fail the director over
...     streams.survivors("stream")
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from loadgen.stream import pattern

from ..registry import family_of
from ._connector import LINGER_RST
from ._netns import enter_netns

PING = b"ping\n"
# struct tcp_info (include/uapi/linux/tcp.h): __u32 tcpi_segs_out at byte 136, since 4.2
_TCPI_SEGS_OUT = 136


@dataclass(kw_only=True)
class Tracked:
    """One connection and what happened to it."""

    kind: str  # "stream" (server sends) or "hold" (silent until pinged, then echo)
    sock: socket.socket = field(repr=False)
    sport: int
    opened: float
    received: int = 0
    arrivals: list[tuple[float, int]] = field(default_factory=list, repr=False)
    echo: bytes = b""
    error: str | None = None  # "reset", "closed", "mismatch at <offset>"
    closed_at: float | None = None

    @property
    def alive(self) -> bool:
        return self.error is None

    def last_arrival(self, before: float | None = None) -> float | None:
        times = [t for t, _ in self.arrivals if before is None or t < before]
        return times[-1] if times else None

    def first_arrival(self, after: float) -> float | None:
        return next((t for t, _ in self.arrivals if t > after), None)

    def segments_sent(self) -> int:
        """Segments this end has sent: SYN, ACKs, data and retransmissions alike
        (TCP_INFO tcpi_segs_out), i.e. the packets a director saw of the connection."""
        info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCPI_SEGS_OUT + 4)
        return struct.unpack_from("I", info, _TCPI_SEGS_OUT)[0]


class StreamSet:
    """Open stream/hold connections from a client netns and watch them."""

    def __init__(self, client_pid: int, *, connect_timeout: float = 10.0) -> None:
        self._maker = ThreadPoolExecutor(
            max_workers=1, initializer=enter_netns, initargs=(client_pid,)
        )
        self._timeout = connect_timeout
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.conns: list[Tracked] = []
        self._reader = threading.Thread(target=self._read_loop, name="streams", daemon=True)
        self._reader.start()

    def __enter__(self) -> StreamSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- opening --------------------------------------------------------------
    def _connect(self, dst: tuple[str, int], avoid: Collection[int]) -> socket.socket:
        refused: list[socket.socket] = []  # bound, never connected: they send nothing
        try:
            while True:
                sock = socket.socket(family_of(dst[0]).af, socket.SOCK_STREAM)
                sock.bind(("", 0))
                if sock.getsockname()[1] not in avoid:
                    break
                refused.append(sock)
        finally:
            for other in refused:
                other.close()
        sock.settimeout(self._timeout)
        try:
            sock.connect(dst)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    def open(
        self, kind: str, count: int, dst: tuple[str, int], *, avoid: Collection[int] = ()
    ) -> list[Tracked]:
        """Open ``count`` connections of one kind to ``dst``, from source ports not in
        ``avoid`` (say, those a director still has entries of); return them."""
        opened = []
        for _ in range(count):
            sock = self._maker.submit(self._connect, dst, avoid).result()
            t = Tracked(kind=kind, sock=sock, sport=sock.getsockname()[1], opened=time.time())
            with self._lock:
                self.conns.append(t)
                self._sel.register(sock, selectors.EVENT_READ, t)
            opened.append(t)
        return opened

    # -- watching -------------------------------------------------------------
    def _read_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                ready = self._sel.select(timeout=0) if self._sel.get_map() else []
            if not ready:
                time.sleep(0.01)
                continue
            now = time.time()
            for key, _ in ready:
                self._receive(key.data, now)

    def _receive(self, t: Tracked, now: float) -> None:
        try:
            data = t.sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionResetError:
            self._fail(t, "reset", now)
            return
        except OSError as exc:
            self._fail(t, f"error {exc.errno}", now)
            return
        if not data:
            self._fail(t, "closed", now)
            return
        if t.kind == "stream":
            if data != pattern(t.received, len(data)):
                self._fail(t, f"mismatch at byte {t.received}", now)
                return
            t.received += len(data)
            t.arrivals.append((now, t.received))
        else:
            t.echo += data
            t.arrivals.append((now, len(t.echo)))

    def _fail(self, t: Tracked, why: str, now: float) -> None:
        t.error, t.closed_at = why, now
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(t.sock)

    # -- probing and results ----------------------------------------------------
    def ping_holds(self, *, timeout: float = 5.0) -> None:
        """Send PING on every live hold connection; each must echo it within ``timeout``."""
        holds = [t for t in self.conns if t.kind == "hold" and t.alive]
        for t in holds:
            t.echo = b""
            try:
                t.sock.send(PING)
            except OSError as exc:
                self._fail(t, "reset" if isinstance(exc, ConnectionResetError) else "error", 0.0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(t.alive and t.echo != PING for t in holds):
            time.sleep(0.05)
        for t in holds:
            if t.alive and t.echo != PING:
                t.error = "no echo"

    def survivors(self, kind: str) -> list[Tracked]:
        return [t for t in self.conns if t.kind == kind and t.alive]

    def close(self) -> None:
        self._stop.set()
        self._reader.join(5)
        for t in self.conns:
            with contextlib.suppress(OSError):
                t.sock.close()
        self._maker.shutdown(wait=True)
        self._sel.close()


@dataclass(frozen=True, kw_only=True)
class Probe:
    """One connection attempt: when it started and ended, and whether it connected."""

    start: float
    end: float
    ok: bool
    sport: int


class Prober:
    """A new connection attempt every ``interval`` seconds from a client netns.

    Attempts overlap (each has its own ``timeout``), so an outage is resolved
    to one interval, not to one timeout. Successful connections are reset
    at once (SO_LINGER 0) so they leave no state on the real server.
    """

    def __init__(
        self, client_pid: int, dst: tuple[str, int], *, interval: float = 0.05, timeout: float = 1.0
    ) -> None:
        self.dst, self.interval, self.timeout = dst, interval, timeout
        self.probes: list[Probe] = []
        self._stop = threading.Event()
        self._pid = client_pid
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)

    def _run(self) -> None:
        enter_netns(self._pid)
        sel = selectors.DefaultSelector()
        next_at = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_at:
                next_at = now + self.interval
                sock = socket.socket(family_of(self.dst[0]).af, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
                sock.setblocking(False)
                sock.connect_ex(self.dst)
                sel.register(sock, selectors.EVENT_WRITE, (time.time(), now + self.timeout))
            for key, _ in sel.select(timeout=max(0.0, next_at - time.monotonic())):
                self._finish(sel, key.fileobj, key.data[0])  # type: ignore[arg-type]
            for key in list(sel.get_map().values()):
                if time.monotonic() > key.data[1]:
                    self._finish(sel, key.fileobj, key.data[0], timed_out=True)  # type: ignore[arg-type]
        for key in list(sel.get_map().values()):
            self._finish(sel, key.fileobj, key.data[0], timed_out=True)  # type: ignore[arg-type]
        sel.close()

    def _finish(
        self,
        sel: selectors.BaseSelector,
        sock: socket.socket,
        start: float,
        timed_out: bool = False,
    ) -> None:
        sel.unregister(sock)
        ok = not timed_out and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        sport = sock.getsockname()[1]
        sock.close()
        self.probes.append(Probe(start=start, end=time.time(), ok=ok, sport=sport))

    def first_success_after(self, when: float, *, sports: set[int] | None = None) -> Probe | None:
        """The earliest-ending successful attempt that started after ``when``."""
        ok = [
            p for p in self.probes
            if p.ok and p.start >= when and (sports is None or p.sport in sports)
        ]  # fmt: skip
        return min(ok, key=lambda p: p.end, default=None)
