"""A request client for every protocol the real servers serve: one connection per request.

    python -m loadgen.ask --protocol udp --count 6 203.0.113.100:80
    python -m loadgen.ask --protocol sctp --count 6 '[2001:db8:203:113::100]:80'

Prints one line per request: the name of the real server that answered,
or an empty line for a request that got no answer within ``--timeout``.
Each request is its own connection from a new source port: a TCP or SCTP
association (connect, request, answer, close) or a UDP socket sending one
datagram and waiting for one back, so the director schedules every
request afresh. Requests go one after another, in order.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import socket
import sys

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


def ask(protocol: str, endpoint: tuple[str, int], *, source: str | None = None,
        timeout: float = 5.0) -> str:  # fmt: skip
    """One request on a new connection; the answering server's name, or ""."""
    kind, proto = PROTOCOLS[protocol]
    family = socket.AF_INET6 if ipaddress.ip_address(endpoint[0]).version == 6 else socket.AF_INET
    with socket.socket(family, kind, proto) as sock:
        sock.settimeout(timeout)
        try:
            if source:
                sock.bind((source, 0))
            sock.connect(endpoint)  # UDP: fixes the peer, so only its answer is read
            sock.sendall(REQUEST)
            if kind == socket.SOCK_DGRAM:
                return name_in(sock.recv(MAX_ANSWER))
            data = bytearray()
            while chunk := sock.recv(MAX_ANSWER):
                data += chunk
            return name_in(bytes(data))
        except OSError:  # refused, reset, unreachable, timed out
            return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("endpoint", help="ADDRESS:PORT, [IPv6]:PORT")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="tcp")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    parser.add_argument("--source", help="source address (default: the route's)")
    args = parser.parse_args(argv)
    try:
        endpoint = parse_endpoint(args.endpoint)
    except ValueError as exc:
        parser.error(str(exc))
    if args.count < 1:
        parser.error("--count must be at least 1")
    for _ in range(args.count):
        print(ask(args.protocol, endpoint, source=args.source, timeout=args.timeout), flush=True)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        sys.exit(main())
