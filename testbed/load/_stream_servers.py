"""The long-lived-connection program (loadgen.stream) on every real server."""

from __future__ import annotations

from ..cluster import Cluster

# loadgen.stream's ports: byte-exact streams, silent holds, the load agent
STREAM_PORT, HOLD_PORT, AGENT_PORT = 9000, 9001, 9100


def ensure_stream_servers(cluster: Cluster) -> None:
    """Start ``loadgen.stream`` on every real server once per cluster."""
    args = ["--stream-port", str(STREAM_PORT), "--hold-port", str(HOLD_PORT)]
    args += ["--agent-port", str(AGENT_PORT)]
    for rs in cluster.spec.real_servers:
        cluster.ensure_program(rs.name, "loadgen.stream", *args, wait=False)
    for rs in cluster.spec.real_servers:
        cluster.wait_program(rs.name, "loadgen.stream")
