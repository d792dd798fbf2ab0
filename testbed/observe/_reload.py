"""keepalived reloaded (SIGHUP) under traffic: the kernel table follows the new
configuration, a real server whose weight changed is edited in place (its
connections carry on), one removed from the configuration is deleted (its
connections' packets are dropped, expire_nodest_conn being 0), one added starts
taking new connections, and an inhibited server (weight 0 after a failed check)
leaves the table when its block leaves the configuration.

Sources: keepalived(8) SIGHUP; keepalived.conf(5) real_server, weight,
inhibit_on_failure; ipvs-sysctl.rst expire_nodest_conn; ip_vs_ctl.c
ip_vs_edit_dest, ip_vs_del_dest.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from dataclasses import dataclass, field

from loadgen.wire import REQUEST, name_in

from ..checks import KeepalivedChecks
from ..cluster import Cluster
from ..net import Connector
from ..topology import ClusterSpec
from ..util import wait_until
from ._health import kernel_weights
from ._ports import fresh_client_port
from ._records import record, record_kind
from ._tcp_states import dest_of

CONVERGE_S = 20.0  # reload, then every checker's first check (delay_loop 1 s)


@record_kind("keepalived-reload")
@dataclass(frozen=True, kw_only=True)
class ReloadRecord:
    """Held connections across a keepalived reload that changes the real servers."""

    key: str
    before: dict[str, int]  # the kernel's weights by real server, before the reload
    configured: dict[str, int]  # the new configuration's
    after: dict[str, int]  # the kernel's, once they stopped changing (or at the bound)
    converged_s: float | None  # from SIGHUP until the kernel had the new configuration
    # per held connection, by its real server: what its request after the reload got
    # ("answered by rN", "nothing", or an exception's name), and its entry then
    held: dict[str, str] = field(default_factory=dict)
    entries: dict[str, str] = field(default_factory=dict)
    new_connections: list[str] = field(default_factory=list)  # where fresh ones went


def _by_name(cluster: Cluster, weights: dict[str, int]) -> dict[str, int]:
    names = {str(r.ip): r.name for r in cluster.base_spec.real_servers}
    return {names.get(addr, addr): w for addr, w in sorted(weights.items())}


def _served(cluster: Cluster, names: tuple[str, ...]) -> ClusterSpec:
    """The spec keepalived serves: the cluster's service over ``names`` only."""
    return cluster.spec.with_real_servers(*(cluster.spec.real_server(n) for n in names))


def _ask(sock: socket.socket) -> str:
    """A request on an idle held connection: who answered, or what the client saw."""
    sock.settimeout(3)
    try:
        sock.send(REQUEST)
        data = sock.recv(4096)
    except OSError as exc:
        return type(exc).__name__
    return f"answered by {name_in(data)}" if data else "end of stream"


def reload_under_traffic(cluster: Cluster) -> ReloadRecord:
    """keepalived's checkers serve r1 and r2 (weight 1); one idle connection is held
    to each; the configuration is reloaded with r1 removed, r2 at weight 5 and r3
    added; then each held connection sends its request, and fresh ones are made."""
    checks = KeepalivedChecks(checker="TCP_CHECK", delay_loop=1.0)
    first_two = tuple(r.name for r in cluster.base_spec.real_servers[:2])
    with checks.serve(cluster, mode="nat", real_servers=first_two) as keepalived:
        spec = _served(cluster, first_two)
        want_before = {str(r.ip): r.weight for r in spec.real_servers}
        if not wait_until(lambda: kernel_weights(cluster) == want_before, timeout=CONVERGE_S):
            raise AssertionError(f"keepalived never built its table: {kernel_weights(cluster)}")
        before = _by_name(cluster, kernel_weights(cluster))
        client = str(spec.clients[0].ip)
        vip = (str(spec.service.vip), spec.service.port)
        with Connector(cluster.pid(spec.clients[0].name)) as conn:
            held: dict[str, tuple[socket.socket, int]] = {}
            for _ in range(6):  # rr: one connection to each within a few
                port = fresh_client_port(cluster)
                sock = conn.open(client, port, vip)
                held.setdefault(dest_of(cluster, (client, port))[0], (sock, port))
                if len(held) == len(first_two):
                    break
            removed, kept = spec.real_servers
            added = cluster.base_spec.real_servers[2]
            new = spec.with_real_servers(dataclasses.replace(kept, weight=5), added)
            assert removed.name not in {r.name for r in new.real_servers}
            configured = {str(r.ip): r.weight for r in new.real_servers}
            started = time.monotonic()
            keepalived.reload(checks.config(new))
            converged = wait_until(lambda: kernel_weights(cluster) == configured,
                                   timeout=CONVERGE_S, interval=0.2)  # fmt: skip
            converged_s = round(time.monotonic() - started, 2) if converged else None
            after = _by_name(cluster, kernel_weights(cluster))
            answers = {name: _ask(sock) for name, (sock, _port) in held.items()}
            entries = {name: dest_of(cluster, (client, port))[1]
                       for name, (_sock, port) in held.items()}  # fmt: skip
            fresh = []
            for _ in range(4):
                port = fresh_client_port(cluster)
                sock = conn.open(client, port, vip)
                fresh.append(dest_of(cluster, (client, port))[0])
                sock.close()
    return record(ReloadRecord(key="remove-r1-weight-r2-add-r3", before=before,
                               configured=_by_name(cluster, configured), after=after,
                               converged_s=converged_s, held=answers, entries=entries,
                               new_connections=fresh))  # fmt: skip


@record_kind("keepalived-reload-inhibited")
@dataclass(frozen=True, kw_only=True)
class InhibitedReloadRecord:
    """An inhibited real server (weight 0 after failing) dropped from the configuration."""

    key: str
    inhibited: dict[str, int]  # the kernel's weights once the server's check had failed
    after: dict[str, int]  # once the reload converged (or at the bound)
    converged_s: float | None


def reload_without_an_inhibited_server(cluster: Cluster) -> InhibitedReloadRecord:
    """inhibit_on_failure over r1 and r2; r1's server stopped until the kernel has it
    at weight 0; then a reload whose configuration lacks r1."""
    checks = KeepalivedChecks(checker="TCP_CHECK", delay_loop=1.0, inhibit_on_failure=True)
    first_two = tuple(r.name for r in cluster.base_spec.real_servers[:2])
    with checks.serve(cluster, mode="nat", real_servers=first_two) as keepalived:
        spec = _served(cluster, first_two)
        failing, staying = spec.real_servers
        cluster.stop_real_server(failing.name)
        zero = {str(failing.ip): 0, str(staying.ip): staying.weight}
        if not wait_until(lambda: kernel_weights(cluster) == zero, timeout=CONVERGE_S):
            raise AssertionError(f"{failing.name} was never inhibited: {kernel_weights(cluster)}")
        inhibited = _by_name(cluster, kernel_weights(cluster))
        configured = {str(staying.ip): staying.weight}
        started = time.monotonic()
        keepalived.reload(checks.config(spec.with_real_servers(staying)))
        converged = wait_until(lambda: kernel_weights(cluster) == configured,
                               timeout=CONVERGE_S, interval=0.2)  # fmt: skip
        converged_s = round(time.monotonic() - started, 2) if converged else None
        after = _by_name(cluster, kernel_weights(cluster))
    return record(InhibitedReloadRecord(key="inhibited-r1-removed", inhibited=inhibited,
                                        after=after, converged_s=converged_s))  # fmt: skip
