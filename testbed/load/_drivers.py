"""Drive the load tools (loadgen/) on a running cluster: holders, iperf3, scale limits.

The tools themselves are standalone programs emitting JSON, so a test, the
bench command and a lab user all run the same thing; this module starts
them in the right namespaces, reads their JSON and cleans them up.
"""

from __future__ import annotations

import contextlib
import json
import math
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen.stats import merge_results

from ..cluster import REPO, Cluster
from ..util import TestbedError

IPERF_PORT = 5201
# Connections per source address and destination. prepare_for_scale() sets an
# ephemeral range of 64511 ports, but connect() picks ports of one parity first
# (inet_hash_connect leaves the other half to bind()): past about 32,000 to one
# destination every connect scans that half before finding a port, and a ramp
# to 200,000 through one VIP slowed to a crawl. Stay below the half.
CONNS_PER_ADDRESS = 25_000
_CONNTRACK_MAX = Path("/proc/sys/net/netfilter/nf_conntrack_max")


def prepare_for_scale(cluster: Cluster) -> None:
    """Raise the per-namespace limits a 100k-connection run hits first.

    Clients: the whole ephemeral port range. Real servers: accept queues
    (somaxconn, SYN backlog) deep enough for a burst. conntrack, if loaded,
    must not be the table that fills up first.
    """
    spec = cluster.spec
    for c in spec.clients:
        cluster.run(c.name, "sysctl -qw net.ipv4.ip_local_port_range='1024 65535'")
    for r in spec.real_servers:
        cluster.run(
            r.name, "sysctl -qw net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535"
        )
    if _CONNTRACK_MAX.exists():
        _CONNTRACK_MAX.write_text("1048576\n")


def route_clients_inside(cluster: Cluster) -> None:
    """Give the clients a route to the real servers' own addresses, via the router.

    The direct path, the bench's control: the same client, server and router
    as DR and TUN, without the director.
    """
    spec = cluster.spec
    for c in spec.clients:
        cluster.run(c.name, f"ip route replace {spec.inside} via {spec.router.outside}")


def spread_sources(cluster: Cluster, count: int) -> dict[str, tuple[list[str], int]]:
    """Split ``count`` connections over the clients, with enough source addresses each."""
    clients = [c.name for c in cluster.spec.clients]
    base, extra = divmod(count, len(clients))
    plan = {}
    for i, name in enumerate(clients):
        share = base + (i < extra)
        if share:
            n_addr = max(1, math.ceil(share / CONNS_PER_ADDRESS))
            plan[name] = (cluster.client_addresses(name, n_addr), share)
    return plan


class Holders:
    """``loadgen.holder`` processes on several clients, driven in step.

    >>> with Holders(cluster, targets=["203.0.113.100:80"],
    ...              plan=spread_sources(cluster, 20000), hold=5) as h:
    ...     ramped = h.wait_ramped(timeout=600)
    ...     # ... read the director while everything is open ...
    ...     result = h.release(timeout=120)
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        targets: Sequence[str],
        plan: dict[str, tuple[list[str], int]],
        hold: float = 0.0,
        concurrency: int = 256,
        close_each: bool = False,
    ) -> None:
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        per_client = max(1, concurrency // max(1, len(plan)))
        for client, (sources, count) in plan.items():
            cmd = [sys.executable, "-m", "loadgen.holder", "--count", str(count),
                   "--concurrency", str(per_client), "--hold", str(hold), "--await-release",
                   "--samples"]  # fmt: skip
            cmd += [a for t in targets for a in ("--target", t)]
            cmd += [a for s in sources for a in ("--source", s)]
            if close_each:
                cmd.append("--close-each")
            self._procs[client] = cluster.node(client).popen(
                cmd, cwd=str(REPO), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )  # fmt: skip

    def __enter__(self) -> Holders:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_events(self, event: str, timeout: float) -> dict[str, Any]:
        parts = []
        deadline = time.monotonic() + timeout
        for client, proc in self._procs.items():
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], max(0, deadline - time.monotonic()))
            line = proc.stdout.readline() if ready else b""
            if not line:
                if proc.poll() is None:
                    raise TestbedError(f"holder on {client}: no {event!r} within {timeout:.0f} s")
                assert proc.stderr is not None
                err = proc.stderr.read().decode(errors="replace").strip().splitlines()
                raise TestbedError(f"holder on {client} exited: {err[-1] if err else '?'}")
            data = json.loads(line)
            if data.get("event") != event:
                raise TestbedError(f"holder on {client}: expected {event!r}, got {data}")
            parts.append(data)
        return merge_results(parts)

    def wait_ramped(self, timeout: float) -> dict[str, Any]:
        """Block until every holder has opened (or failed) all its connections."""
        return self._read_events("ramped", timeout)

    def release(self, timeout: float) -> dict[str, Any]:
        """Tell every holder to check its sockets and close; the merged result."""
        for proc in self._procs.values():
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(b"release\n")
                proc.stdin.flush()
        return self._read_events("result", timeout)

    def close(self) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self._procs.clear()


# the compiled connection-rate client scripts/install.sh builds from loadgen/connrate.c
NATIVE_CONNRATE = Path(sys.prefix) / "bin" / "lvs-connrate"
CONNECT_TOOLS = ("python", "native")


def connect_rate(
    cluster: Cluster,
    *,
    client: str,
    targets: Sequence[str],
    count: int,
    concurrency: int = 32,
    timeout: float = 600,
    tool: str = "python",
    connect_timeout: float | None = None,
) -> dict[str, Any]:
    """Open and at once close ``count`` connections from a client's own address: with
    loadgen.holder (``tool="python"``) or the compiled lvs-connrate (``"native"``), whose
    own cost per connection is far below the kernel's; the same result fields.
    ``connect_timeout`` (native only): when a connect still unanswered counts as failed
    (lvs-connrate's default 10 s)."""
    sources = [str(c.ip) for c in cluster.spec.clients if c.name == client]
    if not sources:
        raise TestbedError(f"{client!r} is not a client")
    if tool not in CONNECT_TOOLS:
        raise TestbedError(f"connect tool {tool!r}: choose one of {', '.join(CONNECT_TOOLS)}")
    if tool == "native":
        return _native_connect_rate(cluster, client, targets, sources, count, concurrency,
                                    connect_timeout)  # fmt: skip
    if connect_timeout is not None:
        raise TestbedError("connect_timeout needs the native connect tool")
    with Holders(
        cluster,
        targets=targets,
        plan={client: (sources, count)},
        concurrency=concurrency,
        close_each=True,
    ) as h:
        h.wait_ramped(timeout)
        return h.release(timeout)


def _native_connect_rate(
    cluster: Cluster, client: str, targets: Sequence[str], sources: Sequence[str], count: int,
    concurrency: int, connect_timeout: float | None,
) -> dict[str, Any]:  # fmt: skip
    if not NATIVE_CONNRATE.exists():
        raise TestbedError(f"{NATIVE_CONNRATE} is missing: run scripts/install.sh")
    args = [str(NATIVE_CONNRATE), "--count", str(count), "--concurrency", str(concurrency),
            "--samples", *(f"--target {t}" for t in targets),
            *(f"--source {s}" for s in sources)]  # fmt: skip
    if connect_timeout is not None:
        args += ["--timeout", str(connect_timeout)]
    out = cluster.run(client, " ".join(args), check=False, changes_setup=False).strip()
    try:
        part = json.loads(out.splitlines()[-1])
    except (IndexError, ValueError):
        raise TestbedError(f"lvs-connrate on {client}: {out[-300:] or 'no output'}") from None
    return merge_results([part]) | {"tool": "lvs-connrate"}


def strip_samples(result: dict[str, Any]) -> dict[str, Any]:
    """A holder result without its raw samples (kept out of bench.json)."""
    return {k: v for k, v in result.items() if k != "samples_ms"}


# -- iperf3 ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class IperfResult:
    bits_per_second: float  # as received by the server
    retransmits: int
    seconds: float


def parse_iperf(text: str) -> IperfResult:
    """The receiver's throughput from ``iperf3 -J`` output; its error as TestbedError."""
    start, end = text.find("{"), text.rfind("}")
    try:
        data = json.loads(text[start : end + 1]) if start >= 0 else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise TestbedError(f"iperf3 printed no JSON: {text.strip()[:200]!r}")
    if data.get("error"):
        raise TestbedError(f"iperf3: {data['error']}")
    try:
        received = data["end"]["sum_received"]
        sent = data["end"].get("sum_sent", {})
        return IperfResult(
            bits_per_second=float(received["bits_per_second"]),
            retransmits=int(sent.get("retransmits", 0)),
            seconds=float(received["seconds"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TestbedError(f"iperf3 JSON lacks the receiver's summary ({exc})") from None


@contextlib.contextmanager
def iperf_servers(cluster: Cluster, port: int = IPERF_PORT) -> Iterator[None]:
    """An ``iperf3 -s`` on every real server for the duration of the block."""
    procs = [
        cluster.node(r.name).popen(
            ["iperf3", "-s", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for r in cluster.spec.real_servers
    ]
    try:
        for r in cluster.spec.real_servers:  # listening before the first client connects
            deadline = time.monotonic() + 60
            while f":{port} " not in cluster.run(r.name, f"ss -Htln sport = :{port}"):
                if time.monotonic() > deadline:
                    raise TestbedError(f"iperf3 server on {r.name} did not start")
                time.sleep(0.2)
        yield
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def iperf(
    cluster: Cluster, *, client: str, target: str, port: int = IPERF_PORT, seconds: float = 3
) -> IperfResult:
    """One TCP stream from a client to ``target`` for ``seconds``, via ``iperf3 -c``."""
    out = cluster.run(
        client,
        f"iperf3 -c {target} -p {port} -t {seconds:g} -J --connect-timeout 10000",
        check=False,
    )
    return parse_iperf(out)
