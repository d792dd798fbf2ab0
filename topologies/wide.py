"""A second cluster, built in Python: other names, other counts, other addresses.

One client, a router, two directors and five real servers, the real servers
made in a loop. CI runs the forwarding and scheduler checks on it as well as
on default.toml, so nothing in the suite may assume the default's names
(c1, d1, r1...), counts or ports. Addresses are documentation ranges only.

    lvs-testbed run --topology wide -k "forwarding or schedulers"
"""

from testbed.topology import Client, ClusterSpec, RealServer, Service, TwoLegged

REAL_SERVERS = 5


def build() -> ClusterSpec:
    return ClusterSpec(
        name="wide",
        outside="192.0.2.0/24",
        inside="198.51.100.0/24",
        service=Service(vip="192.0.2.80", dip="198.51.100.1", port=8000, nat_port=8008, mode="nat"),
        router=TwoLegged(name="edge", outside="192.0.2.1", inside="198.51.100.250"),
        clients=(Client(name="client", ip="192.0.2.10"),),
        directors=(
            TwoLegged(name="lb1", outside="192.0.2.2", inside="198.51.100.2"),
            TwoLegged(name="lb2", outside="192.0.2.3", inside="198.51.100.3"),
        ),
        real_servers=tuple(
            RealServer(name=f"web{i}", ip=f"198.51.100.{100 + i}")
            for i in range(1, REAL_SERVERS + 1)
        ),
    )
