"""What a health checker does to the kernel's table, timed from the real server's side.

A real server fails by stopping its program (connections are refused) and
recovers by starting it again; the kernel's table (netlink) and where client
requests go are what is observed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from ..checks import Checker, KeepalivedChecks
from ..cluster import Cluster
from ..ipvs import read_connections
from ..load import AGENT_PORT, HOLD_PORT
from ..net import Connector
from ..util import wait_until
from ._ports import fresh_client_port
from ._records import FeedbackRecord, HealthRecord, record

SLACK = 2.0  # seconds of emulation and polling allowed past a checker's own bound


def kernel_weights(cluster: Cluster) -> dict[str, int]:
    """Real-server address -> weight, as the kernel has it (empty without a service)."""
    return {d.addr: d.weight for s in cluster.ipvs.services() for d in s.dests}


def time_until(
    cluster: Cluster, predicate: Callable[[dict[str, int]], object], bound: float
) -> float:
    """Seconds until ``predicate(kernel weights)`` holds; AssertionError after ``bound``."""
    start = time.time()
    if not wait_until(lambda: predicate(kernel_weights(cluster)), timeout=bound, interval=0.1):
        raise AssertionError(f"not within {bound:.1f} s; kernel weights: {kernel_weights(cluster)}")
    return time.time() - start


def served_by(cluster: Cluster, count: int = 6) -> Counter[str]:
    """Which real servers answer ``count`` requests to the VIP, each from a client port
    the director has no entry of: a reused port meets the old entry, which after a
    real server's removal may lead nowhere (DR's FIN_WAIT is not rescheduled with
    conn_reuse_mode 1: ip_vs_core.c is_new_conn_expected)."""
    s = cluster.spec.service
    one = s.transport.client(s.endpoint, 1)
    ports = [fresh_client_port(cluster) for _ in range(count)]
    commands = [f"{one} {s.transport.client_port_option} {p}" for p in ports]
    out = cluster.run(cluster.spec.clients[0].name, "; ".join(commands), check=False)
    return Counter(line.strip() for line in out.splitlines()[:count])


def removal_and_return(cluster: Cluster, checker: Checker, requests: int = 6) -> HealthRecord:
    """The first real server fails, then recovers, under ``checker``: timed and recorded."""
    first = cluster.base_spec.real_servers[0]
    ip, count = str(first.ip), len(cluster.base_spec.real_servers)
    with checker.serve(cluster):
        time_until(cluster, lambda w: len(w) == count, 30)
        cluster.stop_real_server(first.name)
        removed = time_until(cluster, lambda w: ip not in w, checker.removal_bound() + SLACK)
        during = served_by(cluster, requests)
        cluster.start_real_server(first.name)
        restored = time_until(cluster, lambda w: ip in w, checker.recheck_bound() + SLACK)
        after = served_by(cluster, requests)
    return record(
        HealthRecord(
            key=checker.name,
            removed_s=round(removed, 2),
            bound_s=checker.removal_bound(),
            restored_s=round(restored, 2),
            during=dict(during),
            after=dict(after),
        )
    )


def _new_connections(cluster: Cluster, *, count: int) -> Counter[str]:
    """Open and hold ``count`` connections to the VIP; connections per real-server address."""
    spec = cluster.spec
    vip, port = str(spec.service.vip), spec.service.port
    client = spec.clients[0]
    ours = {(str(client.ip), 42000 + i) for i in range(count)}
    with Connector(cluster.pid(client.name)) as conn:
        for addr, sport in sorted(ours):  # held: the HTTP server waits for a request
            conn.open(addr, sport, (vip, port))
        return Counter(
            c.dest[0] for c in read_connections(cluster.pid(spec.active.name))
            if c.client in ours and c.virtual == (vip, port)
        )  # fmt: skip


def load_feedback(
    cluster: Cluster, checks: KeepalivedChecks, *, load: int = 8, connections: int = 24
) -> FeedbackRecord:
    """Load the first real server directly (bypassing the director) and watch the
    checker's weight for it fall and rise, and where new connections (wlc) go."""
    spec = cluster.base_spec
    first = spec.real_servers[0]
    ip = str(first.ip)
    loader = spec.clients[-1]
    direct = f"{spec.inside} via {spec.router.outside}"  # client -> router -> real server
    with checks.serve(cluster, scheduler="wlc"):
        time_until(cluster, lambda w: len(w) == len(spec.real_servers) and all(w.values()), 20)
        time.sleep(checks.delay_loop + checks.misc_timeout)  # one full round of checks
        # earlier tests may have left connections open on a server: start from its weight
        before = kernel_weights(cluster)[ip]
        expect = max(1, before - 10 * load)
        cluster.run(loader.name, f"ip route replace {direct}")
        try:
            with Connector(cluster.pid(loader.name)) as held:
                for i in range(load):
                    held.open(str(loader.ip), 41000 + i, (ip, HOLD_PORT))
                lowered = time_until(cluster, lambda w: w[ip] == expect, 10)
                shares = _new_connections(cluster, count=connections)
        finally:
            cluster.run(loader.name, f"ip route del {direct}", check=False)
        raised = time_until(cluster, lambda w: w[ip] == before, 10)
    return record(
        FeedbackRecord(
            key="misc_dynamic",
            load=load,
            weight_before=before,
            weight_loaded=expect,
            lowered_s=round(lowered, 2),
            raised_s=round(raised, 2),
            new_connections=dict(shares),
            agent_port=AGENT_PORT,
        )
    )
