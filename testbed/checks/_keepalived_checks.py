"""keepalived's health checkers: one virtual_server block, one checker per real server.

Source: keepalived.conf(5) (delay_loop, lb_algo, lb_kind, protocol,
TCP_CHECK, HTTP_GET, MISC_CHECK with misc_dynamic, retry,
delay_before_retry, inhibit_on_failure, sorry_server).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..cluster import Cluster
from ..ha import Keepalived, config_block, render
from ..topology import ClusterSpec, RealServer, Service
from ..util import TestbedError
from ._checker import Checker, checker_owns_table

CHECKERS = ("TCP_CHECK", "HTTP_GET", "MISC_CHECK")


@dataclass(frozen=True, kw_only=True)
class KeepalivedChecks(Checker):
    """A keepalived virtual_server with one checker per real server."""

    checker: str = "TCP_CHECK"
    delay_loop: float = 1.0
    connect_timeout: float = 1.0
    retry: int = 1
    delay_before_retry: float = 1.0
    inhibit_on_failure: bool = False
    sorry_server: RealServer | None = None
    misc_path: str = ""  # MISC_CHECK: command, the real server's address appended
    misc_dynamic: bool = False
    misc_timeout: int = 3

    def __post_init__(self) -> None:
        if self.checker not in CHECKERS:
            raise TestbedError(
                f"unknown checker {self.checker!r} (choose from {', '.join(CHECKERS)})"
            )
        if self.checker == "MISC_CHECK" and not self.misc_path:
            raise TestbedError("MISC_CHECK needs misc_path")

    @property
    def name(self) -> str:
        return f"keepalived-{self.checker}"

    def removal_bound(self, failing: int = 1) -> float:
        """Longest time from a real server's failure to its removal (keepalived.conf(5)).

        Each real server has its own checker, so ``failing`` does not matter.

        The failure may start just after a good check: the next check comes
        one delay_loop later and fails after connect_timeout; ``retry`` more
        attempts follow, each delay_before_retry apart.
        """
        attempt = self.connect_timeout if self.checker != "MISC_CHECK" else self.misc_timeout
        return self.delay_loop + (self.retry + 1) * attempt + self.retry * self.delay_before_retry

    def recheck_bound(self) -> float:
        return self.delay_loop + self.connect_timeout

    def _checker_block(self, rs: RealServer) -> list[str]:
        retries = [f"retry {self.retry}", f"delay_before_retry {self.delay_before_retry:g}"]
        common = [f"connect_timeout {self.connect_timeout:g}", *retries]
        if self.checker == "TCP_CHECK":
            return config_block("TCP_CHECK", common)
        if self.checker == "HTTP_GET":
            return config_block(
                "HTTP_GET", [*config_block("url", ["path /", "status_code 200"]), *common]
            )
        misc = [
            f'misc_path "{self.misc_path} {rs.ip}"',
            f"misc_timeout {self.misc_timeout}",
            *retries,
        ]
        if self.misc_dynamic:
            misc.append("misc_dynamic")
        return config_block("MISC_CHECK", misc)

    def virtual_server(self, service: Service, servers: tuple[RealServer, ...]) -> list[str]:
        """The keepalived.conf virtual_server block for a service and its real servers."""
        body = [
            f"delay_loop {self.delay_loop:g}",
            f"lb_algo {service.scheduler}",
            f"lb_kind {service.forwarding.keepalived_kind}",
            f"protocol {service.transport.title}",
            "warmup 0",  # first check at once: timing starts at a known point
        ]
        if self.inhibit_on_failure:
            body.append("inhibit_on_failure")
        if self.sorry_server is not None:
            body.append(f"sorry_server {self.sorry_server.ip} {service.real_port}")
        for rs in servers:
            body += config_block(
                f"real_server {rs.ip} {service.real_port}",
                [f"weight {rs.weight}", *self._checker_block(rs)],
            )
        return config_block(f"virtual_server {service.vip} {service.port}", body)

    def config(self, spec: ClusterSpec) -> str:
        """keepalived.conf for the spec's service and real servers (no VRRP)."""
        return render(
            spec, spec.active, virtual_server=self.virtual_server(spec.service, spec.real_servers)
        )

    @contextlib.contextmanager
    def serve(self, cluster: Cluster, **table: Any) -> Iterator[Keepalived]:
        """keepalived's checkers (no VRRP) own the active director's IPVS table."""
        with checker_owns_table(cluster, **table) as spec:
            k = Keepalived(host=cluster.node(spec.active.name), workdir=cluster.workdir)
            k.start(self.config(spec))
            cluster.diagnostics.append(k.log_tail)
            try:
                yield k
            finally:
                k.stop()
                cluster.diagnostics.remove(k.log_tail)
