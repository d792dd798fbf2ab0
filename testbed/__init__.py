"""LVS testbed: a Mininet cluster on real kernel IPVS, and tools to check it.

The public API is small; everything else lives in private modules::

    from testbed import Cluster, load_topology

    spec = load_topology(mode="dr", scheduler="rr")   # topologies/default.toml
    with Cluster(spec) as cluster:                      # needs root and kernel IPVS
        print(cluster.run("c1", "curl -s http://203.0.113.100/"))
        print(cluster.service_state().stats)

On a kernel without IPVS, run through the CLI (``lvs-testbed run``), which
boots a guest kernel that has it.
"""

from ._capture import Capture, Frame
from ._cluster import Cluster
from ._errors import TestbedError
from ._ipvs import Ipvs, ServiceState, parse_ipvsadm, rows_from_netlink
from ._modes import MODES
from ._packets import Hop, PacketMismatch, describe_template, expect_absent, expect_hop, matches
from ._spec import (
    SCHEDULERS,
    Client,
    ClusterSpec,
    RealServer,
    Service,
    TwoLegged,
    load_topology,
)

__all__ = [
    "MODES",
    "SCHEDULERS",
    "Capture",
    "Client",
    "Cluster",
    "ClusterSpec",
    "Frame",
    "Hop",
    "Ipvs",
    "PacketMismatch",
    "RealServer",
    "Service",
    "ServiceState",
    "TestbedError",
    "TwoLegged",
    "describe_template",
    "expect_absent",
    "expect_hop",
    "load_topology",
    "matches",
    "parse_ipvsadm",
    "rows_from_netlink",
]
