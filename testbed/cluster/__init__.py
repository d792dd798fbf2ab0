"""A running LVS cluster (Mininet hosts on Linux bridges, kernel IPVS), and its clean-up.

    with Cluster(load_topology(mode="dr")) as cluster:    # root + kernel IPVS
        cluster.run("c1", "curl -s http://203.0.113.100/")
        cluster.configure(cluster.base_spec.with_service(mode="tun"))   # no rebuild

Everything a run starts carries a marker (an environment variable, a bridge
alias), so ``clean_native`` finds what a killed run left behind.
"""

from ._cleanup import (
    ALIAS_PREFIX,
    MARK_ENV,
    clean_guests,
    clean_native,
    crash,
    guest_processes,
    kill_processes,
    marked_processes,
    our_bridges,
    processes_in_mount_ns,
)
from ._cluster import (
    PREFIX_ENV,
    REPO,
    SERVER,
    Cluster,
    director_host,
    real_server_host,
)

__all__ = [
    "ALIAS_PREFIX",
    "MARK_ENV",
    "PREFIX_ENV",
    "REPO",
    "SERVER",
    "Cluster",
    "clean_guests",
    "clean_native",
    "crash",
    "director_host",
    "guest_processes",
    "kill_processes",
    "marked_processes",
    "our_bridges",
    "processes_in_mount_ns",
    "real_server_host",
]
