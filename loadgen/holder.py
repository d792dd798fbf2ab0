"""Open, hold and close many TCP connections; report connect times, resets, failures.

Run inside a client's namespace::

    python -m loadgen.holder --target 203.0.113.100:80 --source 203.0.113.128 \\
        --source 203.0.113.129 --count 50000 --hold 60

It prints JSON lines: ``{"event": "ramped", ...}`` once every connection is
open (or failed), then ``{"event": "result", ...}`` after the hold, with the
connect-time distribution (p50, p99, max), the connection rate, failures by
errno, resets and peer closes seen while holding, and how many sockets were
still ESTABLISHED at the end. ``--close-each`` closes every connection as
soon as it is up (a connection-rate measurement); ``--await-release`` holds
after ``--hold`` until a line arrives on stdin, so a caller can read the
director's table while everything is still open.

Why a naive loop stalls near 64k, and what this does instead:

- ``bind((addr, 0))`` before ``connect()`` reserves a local port for the
  address alone, whatever the destination, so one address yields at most the
  ephemeral range (28k by default, 64k at most). IP_BIND_ADDRESS_NO_PORT
  defers the port choice to connect(), which only needs the 4-tuple unique;
  several source addresses multiply the space again.
- File descriptors: the soft RLIMIT_NOFILE is raised to the hard limit, and
  a count the limit cannot hold is refused up front.
- At most ``--concurrency`` connects are in flight, so a burst of SYNs does
  not overflow the servers' accept queues (a dropped SYN costs a 1 s retransmit).
- Several ``--workers`` processes (each its own epoll loop and source
  addresses) when one CPU-bound loop is the limit.

Connections close with RST (SO_LINGER 0): no TIME_WAIT on the client, and the
director's entries expire in seconds rather than minutes.
"""

from __future__ import annotations

import argparse
import errno
import json
import multiprocessing
import select
import signal
import socket
import struct
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from loadgen._proc import die_with_parent, raise_fd_limit
from loadgen.stats import merge_results

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
TCP_ESTABLISHED = 1  # tcpi_state, first byte of struct tcp_info
LINGER_RST = struct.pack("ii", 1, 0)
SAMPLE_EVERY = 0.5  # seconds between ramp samples
SPARE_FDS = 64  # stdio, epoll, pipes


class HolderError(Exception):
    """Bad input or a limit the run cannot fit in: one line, no traceback."""


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What one worker does."""

    targets: tuple[tuple[str, int], ...]
    sources: tuple[str, ...]
    count: int
    concurrency: int = 256
    close_each: bool = False
    timeout: float = 10.0


def parse_target(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    try:
        socket.inet_aton(host)
        number = int(port)
    except (OSError, ValueError):
        number = -1
    if not sep or not 0 < number < 65536:
        raise HolderError(f"target {text!r} is not IPv4-address:port")
    return host, number


def split(plan: Plan, workers: int) -> list[Plan]:
    """One plan per worker: disjoint source addresses, the count shared out."""
    if workers < 1:
        raise HolderError("--workers must be at least 1")
    if len(plan.sources) < workers:
        raise HolderError(f"{workers} workers need at least {workers} source addresses")
    base, extra = divmod(plan.count, workers)
    return [
        Plan(
            targets=plan.targets,
            sources=plan.sources[w::workers],
            count=base + (w < extra),
            concurrency=max(1, plan.concurrency // workers),
            close_each=plan.close_each,
            timeout=plan.timeout,
        )
        for w in range(workers)
    ]


def ensure_fd_limit(needed: int) -> int:
    """Raise the soft open-files limit to the hard one; refuse if still too small."""
    hard = raise_fd_limit()
    if needed > hard:
        raise HolderError(
            f"{needed} open files needed but the hard limit is {hard} "
            "(raise it, or use fewer connections per process)"
        )
    return hard


class Worker:
    """One epoll loop that opens, holds and closes its share of connections."""

    def __init__(self, plan: Plan, t0: float) -> None:
        self.plan = plan
        self.t0 = t0
        self.ep = select.epoll()
        self.held: dict[int, socket.socket] = {}
        self.samples = array("d")
        self.failures: Counter[str] = Counter()
        self.ramp: list[list[float]] = []
        self.resets = 0
        self.closed_by_peer = 0
        self.attempted = 0
        self.ramp_s = 0.0
        self.active_s = 0.0  # until the last connect that succeeded

    def _sample(self) -> None:
        self.ramp.append([round(time.monotonic() - self.t0, 3), len(self.held)])

    def _start(self, i: int) -> tuple[socket.socket, float] | None:
        p = self.plan
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        sock.setblocking(False)
        started = time.monotonic()
        try:
            sock.bind((p.sources[i % len(p.sources)], 0))
            err = sock.connect_ex(p.targets[i % len(p.targets)])
        except OSError as exc:
            err = exc.errno or errno.EIO
        if err not in (0, errno.EINPROGRESS):
            self.failures[errno.errorcode.get(err, str(err))] += 1
            sock.close()
            return None
        self.ep.register(sock.fileno(), select.EPOLLOUT)
        return sock, started

    def open_all(self) -> None:
        """Open ``count`` connections, at most ``concurrency`` connecting at once."""
        p = self.plan
        pending: dict[int, tuple[socket.socket, float]] = {}  # insertion order = age
        first = time.monotonic()
        next_sample = 0.0
        while self.attempted < p.count or pending:
            while self.attempted < p.count and len(pending) < p.concurrency:
                started = self._start(self.attempted)
                self.attempted += 1
                if started is not None:
                    pending[started[0].fileno()] = started
            events = self.ep.poll(0.05, 1024)
            now = time.monotonic()
            for fd, _ev in events:
                if fd not in pending:
                    continue
                sock, started = pending.pop(fd)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self._drop(sock, errno.errorcode.get(err, str(err)))
                    continue
                self.samples.append((now - started) * 1000.0)
                self.active_s = now - first
                if p.close_each:
                    self.ep.unregister(fd)
                    sock.close()
                else:
                    self.ep.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
                    self.held[fd] = sock
            while pending:  # the oldest first: stop at the first one still in time
                fd, (sock, started) = next(iter(pending.items()))
                if now - started < p.timeout:
                    break
                del pending[fd]
                self._drop(sock, "timeout")
            if now - self.t0 >= next_sample:
                self._sample()
                next_sample = now - self.t0 + SAMPLE_EVERY
        self.ramp_s = time.monotonic() - first
        self._sample()

    def _drop(self, sock: socket.socket, reason: str) -> None:
        self.failures[reason] += 1
        self.ep.unregister(sock.fileno())
        sock.close()

    def hold(self, release: Connection) -> float:
        """Hold until the coordinator says so; count resets and peer closes meanwhile."""
        started = time.monotonic()
        self.ep.register(release.fileno(), select.EPOLLIN)
        while True:
            for fd, _ev in self.ep.poll(1.0, 1024):
                if fd == release.fileno():
                    release.recv()
                    self.ep.unregister(fd)
                    return time.monotonic() - started
                sock = self.held.pop(fd, None)
                if sock is None:
                    continue
                try:
                    data = sock.recv(1)
                except ConnectionResetError:
                    self.resets += 1
                except OSError:
                    self.closed_by_peer += 1
                else:
                    if data:  # a server that talks first: not ours, but not a loss either
                        self.held[fd] = sock
                        continue
                    self.closed_by_peer += 1
                self.ep.unregister(fd)
                sock.close()

    def established(self) -> int:
        """How many held sockets the kernel still calls ESTABLISHED."""
        return sum(
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_ESTABLISHED
            for s in self.held.values()
        )

    def close_all(self) -> None:
        for sock in self.held.values():
            sock.close()
        self.held.clear()
        self.ep.close()

    def summary(self) -> dict[str, Any]:
        return {
            "attempted": self.attempted,
            "connected": len(self.samples),
            "held": len(self.held),
            "failures": dict(self.failures),
            "ramp_s": round(self.ramp_s, 3),
            "active_s": round(self.active_s, 3),
            "ramp": self.ramp,
            "samples_ms": [round(x, 3) for x in self.samples],
        }


def _work(plan: Plan, t0: float, pipe: Connection) -> None:
    die_with_parent(signal.SIGKILL)
    worker = Worker(plan, t0)
    try:
        worker.open_all()
        pipe.send(worker.summary())
        hold_s = worker.hold(pipe)
        result = worker.summary() | {
            "resets": worker.resets,
            "closed_by_peer": worker.closed_by_peer,
            "established_at_end": worker.established(),
            "hold_s": round(hold_s, 3),
        }
        worker.close_all()
        pipe.send(result)
    except OSError as exc:  # reported, not a traceback in a child
        pipe.send({"error": f"{type(exc).__name__}: {exc}"})


def _emit(event: str, result: dict[str, Any], *, samples: bool) -> None:
    out = {"event": event} | {k: v for k, v in result.items() if samples or k != "samples_ms"}
    print(json.dumps(out), flush=True)


def _gather(pipes: list[Connection]) -> list[dict[str, Any]]:
    parts = [p.recv() for p in pipes]
    errors = [p["error"] for p in parts if "error" in p]
    if errors:
        raise HolderError(f"a worker failed: {errors[0]}")
    return parts


def run(
    plan: Plan,
    *,
    workers: int = 1,
    hold: float = 0.0,
    await_release: bool = False,
    samples: bool = False,
) -> dict[str, Any]:
    """Open, hold and close as planned; print the two JSON events; return the result."""
    plans = split(plan, workers)
    ensure_fd_limit(max(p.count for p in plans) + plan.concurrency + SPARE_FDS)
    ctx = multiprocessing.get_context("fork")
    t0 = time.monotonic()
    pipes, procs = [], []
    for p in plans:
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=_work, args=(p, t0, theirs), daemon=True)
        proc.start()
        pipes.append(mine)
        procs.append(proc)
    try:
        _emit("ramped", merge_results(_gather(pipes)), samples=samples)
        time.sleep(hold)
        if await_release:
            sys.stdin.readline()
        for pipe in pipes:
            pipe.send("release")
        result = merge_results(_gather(pipes))
        _emit("result", result, samples=samples)
        return result
    finally:
        for proc in procs:  # daemonic children: also killed if we die first
            proc.join(5)
            if proc.is_alive():
                proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", action="append", required=True, help="ADDR:PORT, repeatable")
    parser.add_argument("--source", action="append", required=True, help="local address")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=256, help="connects in flight")
    parser.add_argument("--hold", type=float, default=0.0, help="seconds to hold after ramp")
    parser.add_argument("--await-release", action="store_true", help="then wait for stdin")
    parser.add_argument("--close-each", action="store_true", help="close once connected")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=10.0, help="connect timeout (s)")
    parser.add_argument("--samples", action="store_true", help="include every connect time")
    args = parser.parse_args(argv)
    try:
        if args.count < 1 or args.concurrency < 1 or args.hold < 0:
            raise HolderError("--count and --concurrency must be positive, --hold >= 0")
        for source in args.source:
            try:
                socket.inet_aton(source)
            except OSError:
                raise HolderError(f"source {source!r} is not an IPv4 address") from None
        plan = Plan(
            targets=tuple(parse_target(t) for t in args.target),
            sources=tuple(args.source),
            count=args.count,
            concurrency=args.concurrency,
            close_each=args.close_each,
            timeout=args.timeout,
        )
        run(plan, workers=args.workers, hold=args.hold, await_release=args.await_release,
            samples=args.samples)  # fmt: skip
    except HolderError as exc:
        print(f"holder: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
