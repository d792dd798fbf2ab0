"""A real-server program: answers requests with its own name over TCP, UDP and SCTP.

Run inside a real server's namespace::

    python -m loadgen.server --name r1 --port 80 --port 8080 --udp 80 \\
        --sctp 80 --sctp-address 198.51.100.11 --sctp-address 203.0.113.100

Every TCP or SCTP connection that sends a request gets one ``HTTP/1.0 200``
answer whose body is the server's name (``loadgen.wire``), then the server
closes, so each request a client makes is a new connection the director
schedules. A connection that sends nothing is held open until the client
closes it: that is how the scale checks hold 100,000 connections. A UDP
datagram gets one datagram back, sent *from the address it was sent to*
(IP_PKTINFO / IPV6_PKTINFO): in DR and TUN that is the VIP, which an
unconnected socket would not choose by itself (ip(7), ipv6(7)).

SCTP answers an association from the address its socket is bound to, so it
listens on each ``--sctp-address`` separately (own addresses and VIPs; a VIP
the host does not hold yet is bound with IP_FREEBIND, ip(7)). A socket on
the wildcard address would answer INIT from the route's preferred source
(net/sctp/protocol.c sctp_v4_get_dst), not from the VIP a DR client asked.

Every protocol listens on IPv4 and IPv6 (where the host has it). One epoll
loop per process, no object per connection beyond the socket and a small
buffer. ``--workers N`` runs N processes for TCP, each with its own
SO_REUSEPORT listening sockets; the kernel spreads connections over them.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import select
import signal
import socket
import struct
import sys
from dataclasses import dataclass

from loadgen._proc import die_with_parent, mark_ready, raise_fd_limit
from loadgen.wire import HEADER_END, answer

BACKLOG = 65535  # capped by net.core.somaxconn, which the scale setup raises
MAX_REQUEST = 8192
# linux/in.h, linux/in6.h (Python 3.11's socket module lacks some of them)
IP_PKTINFO = 8
IP_FREEBIND = 15
IPV6_FREEBIND = 78
_IN_PKTINFO = struct.Struct("@i4s4s")  # ifindex, spec_dst, addr
_IN6_PKTINFO = struct.Struct("@16si")  # addr, ifindex
_WILDCARD = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}


def _family_of(addr: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET


def _socket(family: int, kind: int, proto: int = 0) -> socket.socket | None:
    """A socket, or None where the host lacks the family or protocol (no IPv6, no SCTP)."""
    try:
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        print(f"loadgen.server: no socket({family}, {kind}, {proto}): {exc}", file=sys.stderr)
        return None
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return sock


def _listening(
    sock: socket.socket, addr: str, port: int, *, freebind: bool = False
) -> socket.socket:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if freebind:  # an address the host may only hold later (a VIP, per mode)
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
    sock.bind((addr, port))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


@dataclass
class Listeners:
    """The sockets one process serves: stream listeners (TCP, SCTP) and UDP sockets."""

    stream: list[socket.socket]
    datagram: list[socket.socket]

    def close(self) -> None:
        for s in (*self.stream, *self.datagram):
            s.close()


def tcp_listeners(ports: list[int]) -> list[socket.socket]:
    out = []
    for port in ports:
        for family, wildcard in _WILDCARD.items():
            if (sock := _socket(family, socket.SOCK_STREAM)) is not None:
                out.append(_listening(sock, wildcard, port))
    return out


def sctp_listeners(ports: list[int], addresses: list[str]) -> list[socket.socket]:
    """One-to-one SCTP sockets (accept() like TCP), one per address and port."""
    out = []
    for port in ports:
        for addr in addresses or list(_WILDCARD.values()):
            sock = _socket(_family_of(addr), socket.SOCK_STREAM, socket.IPPROTO_SCTP)
            if sock is not None:
                out.append(_listening(sock, addr, port, freebind=bool(addresses)))
    return out


def udp_sockets(ports: list[int]) -> list[socket.socket]:
    out = []
    for port in ports:
        for family, wildcard in _WILDCARD.items():
            sock = _socket(family, socket.SOCK_DGRAM)
            if sock is None:
                continue
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.bind((wildcard, port))
            sock.setblocking(False)
            out.append(sock)
    return out


def _reply_from(ancillary: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
    """The ancillary data that sends a reply from the address a datagram was sent to."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            _ifindex, _spec_dst, dst = _IN_PKTINFO.unpack_from(data)
            return [(socket.IPPROTO_IP, IP_PKTINFO, _IN_PKTINFO.pack(0, dst, bytes(4)))]
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
            dst, _ifindex = _IN6_PKTINFO.unpack_from(data)
            return [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, _IN6_PKTINFO.pack(dst, 0))]
    return []


def _answer_datagrams(sock: socket.socket, reply: bytes) -> None:
    space = socket.CMSG_SPACE(_IN6_PKTINFO.size)
    while True:
        try:
            _data, ancillary, _flags, peer = sock.recvmsg(MAX_REQUEST, space)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # an ICMP error queued on the socket: nothing to answer
            continue
        with contextlib.suppress(OSError):
            sock.sendmsg([reply], _reply_from(ancillary), 0, peer)


def serve(name: str, listeners: Listeners) -> None:
    """Accept, answer requests, hold silent connections; runs until killed."""
    reply = answer(name)
    ep = select.epoll()
    stream = {s.fileno(): s for s in listeners.stream}
    datagram = {s.fileno(): s for s in listeners.datagram}
    for fd in (*stream, *datagram):
        ep.register(fd, select.EPOLLIN)
    conns: dict[int, tuple[socket.socket, bytearray]] = {}

    def drop(fd: int) -> None:
        sock, _ = conns.pop(fd)
        with contextlib.suppress(OSError):
            ep.unregister(fd)
        sock.close()

    while True:
        for fd, _events in ep.poll(1.0, 1024):
            if fd in datagram:
                _answer_datagrams(datagram[fd], reply)
                continue
            if fd in stream:
                # accept everything queued: one wake-up serves a burst of SYNs
                while True:
                    try:
                        sock, _ = stream[fd].accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # EMFILE, ECONNABORTED: try again on the next wake-up
                        break
                    sock.setblocking(False)
                    conns[sock.fileno()] = (sock, bytearray())
                    ep.register(sock.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
                continue
            if fd not in conns:
                continue
            sock, buf = conns[fd]
            try:
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                drop(fd)
                continue
            if not data:  # the client closed
                drop(fd)
                continue
            buf += data
            if HEADER_END in buf or len(buf) > MAX_REQUEST:
                with contextlib.suppress(OSError):
                    sock.send(reply)  # fits the empty send buffer in one call
                drop(fd)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, action="append", default=[], help="TCP port")
    parser.add_argument("--udp", type=int, action="append", default=[], help="UDP port")
    parser.add_argument("--sctp", type=int, action="append", default=[], help="SCTP port")
    parser.add_argument(
        "--sctp-address",
        action="append",
        default=[],
        help="bind SCTP to this address (default: each family's wildcard)",
    )
    parser.add_argument("--workers", type=int, default=1, help="SO_REUSEPORT processes (TCP)")
    parser.add_argument("--ready-file", help="written once all ports listen")
    args = parser.parse_args(argv)  # fmt: skip
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if not (args.port or args.udp or args.sctp):
        parser.error("nothing to serve: give --port, --udp or --sctp")
    for addr in args.sctp_address:
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            parser.error(f"--sctp-address {addr!r} is not an IP address")
    raise_fd_limit()
    children = []
    for _ in range(args.workers - 1):
        # each worker its own TCP sockets: the kernel balances
        extra = Listeners(tcp_listeners(args.port), [])
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            die_with_parent()
            with contextlib.suppress(KeyboardInterrupt):
                serve(args.name, extra)
            os._exit(0)
        extra.close()
        children.append(pid)

    def stop(_signum: int, _frame: object) -> None:
        for pid in children:  # no worker outlives the parent the testbed stops
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    listeners = Listeners(
        stream=tcp_listeners(args.port) + sctp_listeners(args.sctp, args.sctp_address),
        datagram=udp_sockets(args.udp),
    )
    mark_ready(args.ready_file)
    try:
        serve(args.name, listeners)
    except KeyboardInterrupt:
        stop(signal.SIGINT, None)


if __name__ == "__main__":
    main()
