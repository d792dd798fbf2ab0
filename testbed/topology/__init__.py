"""Cluster topologies: the whole LVS cluster as one validated declaration.

>>> from testbed.topology import load_topology
>>> spec = load_topology()                          # topologies/default.toml
>>> [r.name for r in spec.real_servers]
['r1', 'r2', 'r3']
>>> spec.with_service(mode="dr").service.real_port  # only NAT maps the port
80
>>> load_topology("wide").name                      # topologies/wide.py, built in Python
'wide'
>>> [str(v.service.vip) for v in spec.views()]      # dual-stack: one view per family
['203.0.113.100', '2001:db8:203:113::100']
"""

from ._load import DEFAULT_TOPOLOGY, TOPOLOGIES, load_topology
from ._picture import svg_picture, text_picture
from ._spec import (
    MAX_WEIGHT,
    Client,
    ClusterSpec,
    DualStack,
    RealServer,
    Service,
    TwoLegged,
    carried_over,
)

__all__ = [
    "DEFAULT_TOPOLOGY",
    "MAX_WEIGHT",
    "TOPOLOGIES",
    "Client",
    "ClusterSpec",
    "DualStack",
    "RealServer",
    "Service",
    "TwoLegged",
    "carried_over",
    "load_topology",
    "svg_picture",
    "text_picture",
]
