"""Packet capture (and injection) on interfaces inside Mininet host namespaces.

Each capture point is a thread that enters the host's network namespace
(setns only affects the calling thread), opens an AF_PACKET socket bound to
one interface and records raw frames with the kernel's packet type, which
tells whether this host received the frame, sent it, or merely saw a bridge
flood (PACKET_OTHERHOST). Each frame carries the kernel's receive time
(SO_TIMESTAMPNS), not the time the thread got to read it: under emulation a
reader runs late and would stamp a paced burst as simultaneous. Frames are
decoded with scapy only when looked at.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..util import TestbedError
from ._netns import enter_netns, run_in_netns

_ETH_P_ALL = 0x0003
# linux/if_packet.h packet types
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST, PACKET_OUTGOING = range(5)
# asm-generic/socket.h: SO_TIMESTAMPNS (SCM_TIMESTAMPNS), a struct timespec per message
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)


def _kernel_time(ancillary: list[tuple[int, int, bytes]]) -> float:
    """The receive time the kernel attached to a frame, or now if it attached none."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return sec + nsec / 1e9
    return time.time()


def send_frames(pid: int, ifname: str, frames: Iterable[bytes]) -> None:
    """Send raw Ethernet frames out of ``ifname`` in the netns of ``pid``."""

    def send() -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
            sock.bind((ifname, 0))
            for frame in frames:
                sock.send(frame)

    run_in_netns(pid, send)


@dataclass(frozen=True)
class Frame:
    """One captured frame: where, when, which way, and its bytes."""

    point: str  # "<host>-eth<N>"
    time: float
    pkttype: int
    data: bytes = field(repr=False)

    @property
    def direction(self) -> str:
        """ "out" (sent by this host), "in" (addressed to it) or "flood"."""
        if self.pkttype == PACKET_OUTGOING:
            return "out"
        if self.pkttype == PACKET_OTHERHOST:
            return "flood"
        return "in"

    @cached_property
    def packet(self) -> Any:
        from scapy.layers.l2 import Ether

        return Ether(self.data)

    def summary(self) -> str:
        return f"{self.point} {self.direction:>5} {self.packet.summary()}"


class _Point(threading.Thread):
    def __init__(self, point: str, pid: int, ifname: str, stop: threading.Event) -> None:
        super().__init__(name=f"capture-{point}", daemon=True)
        self.point, self.pid, self.ifname, self._stop_event = point, pid, ifname, stop
        self.frames: list[Frame] = []
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            enter_netns(self.pid)
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.bind((self.ifname, _ETH_P_ALL))
            sock.settimeout(0.05)
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        with sock:
            # keep reading after stop until the socket is drained
            while True:
                try:
                    data, ancillary, _flags, addr = sock.recvmsg(65535, _ANCILLARY)
                except TimeoutError:
                    if self._stop_event.is_set():
                        return
                    continue
                self.frames.append(Frame(self.point, _kernel_time(ancillary), addr[2], data))


class Capture:
    """Capture on several interfaces at once.

    >>> with Capture({"d1-eth0": d1.pid, "r1-eth0": r1.pid}) as cap:
    ...     client.cmd("curl -s http://203.0.113.100/")
    >>> cap.frames("r1-eth0")
    """

    def __init__(self, points: dict[str, int]) -> None:
        self._stop = threading.Event()
        self._points = {name: _Point(name, pid, name, self._stop) for name, pid in points.items()}

    def __enter__(self) -> Capture:
        for p in self._points.values():
            p.start()
        for p in self._points.values():
            p.ready.wait(10)
            if p.error is not None:
                self.stop()
                raise TestbedError(f"cannot capture on {p.point}: {p.error}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for p in self._points.values():
            if p.is_alive():
                p.join(5)

    def frames(self, point: str | None = None) -> list[Frame]:
        """Frames at one point, or at all points in time order."""
        if point is not None:
            return list(self._points[point].frames)
        return sorted((f for p in self._points.values() for f in p.frames), key=lambda f: f.time)

    def __iter__(self) -> Iterator[Frame]:
        return iter(self.frames())

    @property
    def points(self) -> tuple[str, ...]:
        return tuple(self._points)
