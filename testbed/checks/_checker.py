"""What every health checker is held to, and how one takes over a director's table."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from ..cluster import SERVER, Cluster
from ..load import ensure_stream_servers
from ..topology import ClusterSpec


class Checker(ABC):
    """A health checker: it owns a director's IPVS table and keeps only healthy servers.

    Tests hold every checker to the same promises through this interface:
    ``serve`` hands it the table for a block, ``removal_bound`` and
    ``recheck_bound`` say how soon it must notice a failure and a recovery.
    """

    @property
    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    def removal_bound(self, failing: int = 1) -> float:
        """Longest time from a real server's failure to its removal (or quiescing)."""

    @abstractmethod
    def recheck_bound(self) -> float:
        """Longest wait for the next check of a real server (its recovery noticed)."""

    @abstractmethod
    def serve(self, cluster: Cluster, **table: Any) -> AbstractContextManager[Any]:
        """Run the checker over the active director's table for a ``with`` block."""


@contextlib.contextmanager
def checker_owns_table(
    cluster: Cluster,
    *,
    mode: str = "dr",
    scheduler: str = "rr",
    real_servers: tuple[str, ...] | None = None,
) -> Iterator[ClusterSpec]:
    """Hand the active director's IPVS table to a health checker for a block.

    Yields the spec the checker should serve (``real_servers``: default all);
    on exit every real-server program stopped inside the block runs again and
    the cluster's own table is back.
    """
    spec = cluster.base_spec.with_service(mode=mode, scheduler=scheduler)
    cluster.configure(spec)
    if real_servers is not None:
        spec = spec.with_real_servers(*(spec.real_server(n) for n in real_servers))
    ensure_stream_servers(cluster)
    cluster.ipvs.flush()
    try:
        yield spec
    finally:
        for rs in cluster.base_spec.real_servers:
            cluster.ensure_program(rs.name, SERVER, *cluster.server_args(rs.name))
        cluster.configure(cluster.base_spec)
