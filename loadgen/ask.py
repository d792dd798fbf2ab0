"""A request client for every protocol the real servers serve: one connection per request.

    python -m loadgen.ask --protocol udp --count 6 203.0.113.100:80
    python -m loadgen.ask --protocol sctp --count 6 '[2001:db8:203:113::100]:80'

Prints one line per request: the name of the real server that answered,
or an empty line for a request that got no answer within ``--timeout``.
Each request is its own connection from a new source port: a TCP or SCTP
association (connect, request, answer, close) or a UDP socket sending one
datagram and waiting for one back, so the director schedules every
request afresh. Requests go one after another, in order.

``--sport P`` sends from a chosen source port (one request at a time, so a
later run can reuse the port: a UDP "connection" of the director's table).
``--one-socket`` (UDP) sends every request from one socket and port, each
datagram after the previous one's answer or time-out. ``--interval S``
waits S seconds between requests.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import socket
import sys
import time

from loadgen.wire import MAX_ANSWER, REQUEST, name_in

PROTOCOLS = {
    "tcp": (socket.SOCK_STREAM, socket.IPPROTO_TCP),
    "udp": (socket.SOCK_DGRAM, socket.IPPROTO_UDP),
    "sctp": (socket.SOCK_STREAM, socket.IPPROTO_SCTP),
}


def parse_endpoint(text: str) -> tuple[str, int]:
    """``addr:port`` or ``[v6addr]:port`` -> (addr, port); ValueError with a reason."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not ADDRESS:PORT")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return str(ipaddress.ip_address(host)), int(port)


def _socket(protocol: str, endpoint: tuple[str, int], source: str | None, sport: int,
            timeout: float) -> socket.socket:  # fmt: skip
    kind, proto = PROTOCOLS[protocol]
    family = socket.AF_INET6 if ipaddress.ip_address(endpoint[0]).version == 6 else socket.AF_INET
    sock = socket.socket(family, kind, proto)
    sock.settimeout(timeout)
    if sport:  # the port of an earlier run, maybe still in TIME_WAIT here
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if source or sport:
        sock.bind((source or ("::" if family == socket.AF_INET6 else "0.0.0.0"), sport))
    return sock


def _exchange(sock: socket.socket) -> str:
    """Send one request on a connected socket; the answering server's name, or ""."""
    try:
        sock.sendall(REQUEST)
        if sock.type == socket.SOCK_DGRAM:
            return name_in(sock.recv(MAX_ANSWER))
        data = bytearray()
        while chunk := sock.recv(MAX_ANSWER):
            data += chunk
        return name_in(bytes(data))
    except OSError:  # refused, reset, unreachable, timed out
        return ""


def ask(protocol: str, endpoint: tuple[str, int], *, source: str | None = None,
        sport: int = 0, timeout: float = 5.0) -> str:  # fmt: skip
    """One request on a new connection; the answering server's name, or ""."""
    try:
        sock = _socket(protocol, endpoint, source, sport, timeout)
    except OSError:
        return ""
    with sock:
        try:
            sock.connect(endpoint)  # UDP: fixes the peer, so only its answer is read
        except OSError:
            return ""
        return _exchange(sock)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("endpoint", help="ADDRESS:PORT, [IPv6]:PORT")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="tcp")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    parser.add_argument("--source", help="source address (default: the route's)")
    parser.add_argument("--sport", type=int, default=0, help="source port (default: any)")
    parser.add_argument(
        "--one-socket", action="store_true", help="UDP: every request from one socket and port"
    )
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between requests")
    args = parser.parse_args(argv)
    try:
        endpoint = parse_endpoint(args.endpoint)
    except ValueError as exc:
        parser.error(str(exc))
    if args.count < 1:
        parser.error("--count must be at least 1")
    if not 0 <= args.sport < 65536:
        parser.error("--sport must be a port")
    if args.one_socket:
        if args.protocol != "udp":
            parser.error("--one-socket is for UDP (a stream's requests share its connection)")
        with _socket("udp", endpoint, args.source, args.sport, args.timeout) as sock:
            sock.connect(endpoint)
            for i in range(args.count):
                time.sleep(args.interval if i else 0)
                print(_exchange(sock), flush=True)
        return 0
    for i in range(args.count):
        time.sleep(args.interval if i else 0)
        print(ask(args.protocol, endpoint, source=args.source, sport=args.sport,
                  timeout=args.timeout), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        sys.exit(main())
