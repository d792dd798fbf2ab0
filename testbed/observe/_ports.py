"""Client ports that no entry in the director's table remembers.

A connection entry outlives the experiment that made it (a UDP entry 300 s
by default), so an experiment that reuses a client port may find the old
entry, with its old real server and forwarding method, instead of being
scheduled afresh. Every experiment that chooses its client's source port
takes a fresh one here: never handed out before in this process, and with
no entry in the active director's table.
"""

from __future__ import annotations

import itertools

from ..cluster import Cluster
from ..ipvs import read_connections

_PORTS = itertools.count(12000)  # below the harnesses' (20000...) and the ephemeral range


def fresh_client_port(cluster: Cluster, client: str | None = None) -> int:
    """A source port for a client (default: the first) that the active director knows
    no entry of."""
    spec = cluster.spec
    host = next((c for c in spec.clients if c.name == client), spec.clients[0])
    address, director = str(host.ip), cluster.pid(spec.active.name)
    while True:
        port = next(_PORTS)
        if not read_connections(director, client=(address, port)):
            return port
