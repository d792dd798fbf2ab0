"""LVS testbed: a Mininet cluster on real kernel IPVS, and the tools to check it.

The package is layered; each subpackage has a small public API (its
``__all__``) and keeps the rest in private modules:

    util      errors, start/stop scopes, waits
    registry  one declaration per forwarding mode, protocol, address family,
              tunnel type and scheduler; the combination policy
    topology  the cluster as a validated declaration (TOML, or Python)
    kernel    probes of the running kernel (modules, /proc)
    guest     choosing, fetching and booting a guest kernel that has IPVS
    ipvs      the system under test's table: netlink, ipvsadm, /proc
    net       captures, the expected-packet oracle, traffic from a host
    cluster   the running Mininet cluster, and clean-up after any crash
    load      the load tools of loadgen/ driven on a cluster
    ha        keepalived and heartbeat pairs, VRRP rules, faults
    checks    health checkers (keepalived, ldirectord) behind one interface
    observe   experiments and their typed results
    sched     reference models of the kernel's schedulers
    bench     the performance bench
    report    results.json, summary and HTML report
    cli       the lvs-testbed command

The short way in::

    from testbed import Cluster, load_topology

    spec = load_topology(mode="dr", scheduler="rr")   # topologies/default.toml
    with Cluster(spec) as cluster:                      # needs root and kernel IPVS
        print(cluster.run("c1", "curl -s http://203.0.113.100/"))
        print(cluster.service_state().stats)

On a kernel without IPVS, run through the CLI (``lvs-testbed run``), which
boots a guest kernel that has it.
"""

from .cluster import Cluster
from .registry import FAMILIES, MODES, PROTOCOLS, SCHEDULERS, TUNNELS, combinations
from .topology import Client, ClusterSpec, RealServer, Service, TwoLegged, load_topology
from .util import TestbedError

__all__ = [
    "FAMILIES",
    "MODES",
    "PROTOCOLS",
    "SCHEDULERS",
    "TUNNELS",
    "Client",
    "Cluster",
    "ClusterSpec",
    "RealServer",
    "Service",
    "TestbedError",
    "TwoLegged",
    "combinations",
    "load_topology",
]
