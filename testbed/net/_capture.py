"""Packet capture (and injection) on interfaces inside Mininet host namespaces.

Each capture point is a thread that enters the host's network namespace
(setns only affects the calling thread), opens an AF_PACKET socket bound to
one interface and records raw frames with the kernel's packet type, which
tells whether this host received the frame, sent it, or merely saw a bridge
flood (PACKET_OTHERHOST).

The socket reads through a TPACKET_V2 ring (packet_mmap.rst), into which
the kernel copies each frame at the moment it is seen. A plain AF_PACKET
socket queues a clone that shares the frame's data with the packet's
further path: a receiver that edits headers in place (fou's GUE decapsulation
shortens the outer IP length, remote checksum offload writes the inner
checksum) would change what the capture later reads. Each frame carries the
kernel's time stamp from the ring, not the time the thread got to read it:
under emulation a reader runs late and would stamp a paced burst as
simultaneous. Frames are decoded with scapy only when looked at.
"""

from __future__ import annotations

import mmap
import select
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

    # Read from the bytes, not decoded: scapy takes milliseconds a frame under
    # emulation, and a failover's capture holds thousands of probe frames. Code that
    # filters frames asks these first and decodes only what they leave.
    @property
    def src_mac(self) -> str:
        """The Ethernet source address, as scapy writes it (lower-case, colons)."""
        return self.data[6:12].hex(":")

    def tcp_flags(self) -> int | None:
        """The TCP flags (9 bits, scapy's ``TCP.flags``) of a frame that is plain TCP:
        an unfragmented IPv4 or IPv6 datagram whose header is followed at once by a
        whole TCP header. None for any other frame (decode it to know what it holds)."""
        return _plain_tcp_flags(self.data)

    def summary(self) -> str:
        return f"{self.point} {self.direction:>5} {self.packet.summary()}"


_ETH_HLEN, _TCP_HLEN = 14, 20
_ETHERTYPE_IPV4, _ETHERTYPE_IPV6 = b"\x08\x00", b"\x86\xdd"
_IPV6_HLEN, _IPPROTO_TCP = 40, 6


def _plain_tcp_flags(data: bytes) -> int | None:
    """See Frame.tcp_flags: where scapy would decode the first header after IP as TCP
    (Ether type, IP version, protocol 6, no fragment, lengths covering the header)."""
    ethertype, ip = data[12:14], _ETH_HLEN
    if ethertype == _ETHERTYPE_IPV4 and len(data) >= ip + 20 and data[ip] >> 4 == 4:
        ihl = (data[ip] & 0x0F) * 4
        total = int.from_bytes(data[ip + 2 : ip + 4], "big")
        fragment = int.from_bytes(data[ip + 6 : ip + 8], "big") & 0x3FFF  # MF, offset
        if ihl < 20 or data[ip + 9] != _IPPROTO_TCP or fragment or total < ihl + _TCP_HLEN:
            return None
        tcp = ip + ihl
    elif ethertype == _ETHERTYPE_IPV6 and len(data) >= ip + _IPV6_HLEN and data[ip] >> 4 == 6:
        payload = int.from_bytes(data[ip + 4 : ip + 6], "big")
        if data[ip + 6] != _IPPROTO_TCP or payload < _TCP_HLEN:
            return None
        tcp = ip + _IPV6_HLEN
    else:
        return None
    if len(data) < tcp + _TCP_HLEN:
        return None
    return (data[tcp + 12] & 0x01) << 8 | data[tcp + 13]


# linux/if_packet.h: a TPACKET_V2 receive ring
SOL_PACKET, PACKET_RX_RING, PACKET_VERSION, TPACKET_V2 = 263, 5, 10, 1
TP_STATUS_KERNEL, TP_STATUS_USER = 0, 1
# struct tpacket2_hdr: status, len, snaplen, mac, net, sec, nsec (then vlan, padding)
_TPACKET2_HDR = struct.Struct("@IIIHHII")
_SLL_OFFSET = 32  # TPACKET_ALIGN(sizeof(struct tpacket2_hdr)): the sockaddr_ll follows
_SLL_PKTTYPE = 10  # offset of sll_pkttype in struct sockaddr_ll
FRAME_SIZE = 16384  # per frame: any Ethernet frame, and segmentation-offload batches
BLOCK_SIZE = 1 << 20  # a multiple of the page size holding whole frames
BLOCKS = 8  # 8 MiB, 512 frames in flight per capture point
READY_BOUND_S = 60  # a capture point's socket bound and its ring mapped


class _Ring:
    """An AF_PACKET socket's TPACKET_V2 receive ring, read frame by frame."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        req = struct.pack("IIII", BLOCK_SIZE, BLOCKS, FRAME_SIZE,
                          BLOCKS * (BLOCK_SIZE // FRAME_SIZE))  # fmt: skip
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        self.frames = BLOCKS * (BLOCK_SIZE // FRAME_SIZE)
        self.map = mmap.mmap(sock.fileno(), BLOCK_SIZE * BLOCKS)
        self.next = 0

    def take(self) -> list[tuple[float, int, bytes]]:
        """(kernel time, packet type, bytes) of every frame the kernel has filled."""
        out = []
        while True:
            base = self.next * FRAME_SIZE
            status, _len, snaplen, mac, _net, sec, nsec = _TPACKET2_HDR.unpack_from(self.map, base)
            if not status & TP_STATUS_USER:
                return out
            pkttype = self.map[base + _SLL_OFFSET + _SLL_PKTTYPE]
            out.append((sec + nsec / 1e9, pkttype, self.map[base + mac : base + mac + snaplen]))
            struct.pack_into("@I", self.map, base, TP_STATUS_KERNEL)  # hand it back
            self.next = (self.next + 1) % self.frames

    def close(self) -> None:
        self.map.close()


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
            ring = _Ring(sock)
            sock.bind((self.ifname, _ETH_P_ALL))
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        with sock:
            # keep reading after stop until the ring is drained
            while True:
                taken = ring.take()
                self.frames += [Frame(self.point, t, kind, data) for t, kind, data in taken]
                if not taken:
                    if self._stop_event.is_set():
                        break
                    poller.poll(50)
            ring.close()


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
            # a point not yet bound would miss the first packets: wait, however busy
            if not p.ready.wait(READY_BOUND_S):
                self.stop()
                raise TestbedError(f"capture on {p.point} not ready in {READY_BOUND_S} s")
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

    def wait_quiet(self, quiet_s: float, *, timeout_s: float = 10.0) -> None:
        """Until no point has taken a frame for ``quiet_s`` (or ``timeout_s`` passed): the
        last packets of an exchange have crossed every hop, however busy the machine."""
        deadline = time.monotonic() + timeout_s
        seen, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now = sum(len(p.frames) for p in self._points.values())
            if now != seen:
                seen, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.05)

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
