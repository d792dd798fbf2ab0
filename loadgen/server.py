"""A real-server program: answers HTTP with its own name and holds idle connections.

Run inside a real server's namespace::

    python -m loadgen.server --name r1 --port 80 --port 8080 [--workers 2]

Every connection that sends an HTTP request gets one ``HTTP/1.0 200``
response whose body is the server's name (and an ``X-Real-Server`` header),
then the server closes, so each request a client makes is a new connection
the director schedules. A connection that sends nothing is held open until
the client closes it: that is how the scale checks hold 100,000 connections.

One epoll loop per process, no object per connection beyond the socket and a
small buffer, so one process holds tens of thousands of connections even
under software emulation. ``--workers N`` runs N processes, each with its
own SO_REUSEPORT listening sockets; the kernel spreads connections over them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import sys

from loadgen._proc import die_with_parent, mark_ready, raise_fd_limit

BACKLOG = 65535  # capped by net.core.somaxconn, which the scale setup raises
MAX_REQUEST = 8192


def response(name: str) -> bytes:
    body = name.encode()
    return (
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
        + f"X-Real-Server: {name}\r\nContent-Length: {len(body)}\r\n".encode()
        + b"Connection: close\r\n\r\n"
        + body
    )


def listen(ports: list[int]) -> list[socket.socket]:
    socks = []
    for port in ports:
        sock = socket.create_server(("0.0.0.0", port), backlog=BACKLOG, reuse_port=True)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def serve(name: str, listeners: list[socket.socket]) -> None:
    """Accept, answer requests, hold silent connections; runs until killed."""
    reply = response(name)
    ep = select.epoll()
    by_fd = {s.fileno(): s for s in listeners}
    for s in listeners:
        ep.register(s.fileno(), select.EPOLLIN)
    conns: dict[int, tuple[socket.socket, bytearray]] = {}

    def drop(fd: int) -> None:
        sock, _ = conns.pop(fd)
        with contextlib.suppress(OSError):
            ep.unregister(fd)
        sock.close()

    while True:
        for fd, _events in ep.poll(1.0, 1024):
            if fd in by_fd:
                # accept everything queued: one wake-up serves a burst of SYNs
                while True:
                    try:
                        sock, _ = by_fd[fd].accept()
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
            if b"\r\n\r\n" in buf or len(buf) > MAX_REQUEST:
                with contextlib.suppress(OSError):
                    sock.send(reply)  # fits the empty send buffer in one call
                drop(fd)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, action="append", required=True)
    parser.add_argument("--workers", type=int, default=1, help="SO_REUSEPORT processes")
    parser.add_argument("--ready-file", help="written once all ports listen")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    raise_fd_limit()
    children = []
    for _ in range(args.workers - 1):
        listeners = listen(args.port)  # each worker its own sockets: the kernel balances
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            die_with_parent()
            with contextlib.suppress(KeyboardInterrupt):
                serve(args.name, listeners)
            os._exit(0)
        for s in listeners:
            s.close()
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
    listeners = listen(args.port)
    mark_ready(args.ready_file)
    try:
        serve(args.name, listeners)
    except KeyboardInterrupt:
        stop(signal.SIGINT, None)


if __name__ == "__main__":
    main()
