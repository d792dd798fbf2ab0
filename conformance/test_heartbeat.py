"""The classic LVS stack as a second HA backend: heartbeat moves VIP and DIP.

Both directors have the IPVS table; ldirectord's health checks are held to the
keepalived checker's tests in test_health.py.

The same failovers as test_failover.py (heartbeat stopped, killed, cable cut) are
held to heartbeat's own rules. Sources: heartbeat's ha.cf documentation
(keepalive, deadtime: a node silent for deadtime seconds is dead;
auto_failback on: resources return to their preferred node), haresources
(IPaddr2 resources), resource-agents IPaddr2 (send_arp -r 5 -i 200: five
rounds 200 ms apart, each an ARP request and an ARP reply).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conformance import failover_promises as promise
from conformance.conftest import skip_unless_topology
from testbed import Cluster
from testbed.ha import FAULTS, HeartbeatPair
from testbed.observe import Failover, observe_failover


@pytest.fixture(scope="module")
def pair(cluster: Cluster) -> Iterator[HeartbeatPair]:
    skip_unless_topology(cluster, directors=2)
    with HeartbeatPair(cluster) as hb:  # heartbeat moves addresses, whatever the mode
        yield hb


@pytest.fixture(scope="module", params=FAULTS)
def failover(request: pytest.FixtureRequest, pair: HeartbeatPair) -> Failover:
    return observe_failover(pair, request.param)


def test_vip_moves_to_backup(failover: Failover) -> None:
    """The surviving node acquires the failed node's resources: the VIP moves to the backup
    (haresources IPaddr2). A killed heartbeat leaves its address behind, and a node
    whose cable is cut keeps its resources, as it sees its peer die (ha.cf: without
    ping nodes heartbeat cannot tell the two apart)."""
    promise.vip_moved(failover)


def test_takeover_within_deadtime(failover: Failover) -> None:
    """A silent node is declared dead deadtime seconds after its last heartbeat, so the
    takeover comes between deadtime - keepalive and deadtime after the fault, plus the
    resource scripts' run time; a clean stop hands over before deadtime (ha.cf)."""
    promise.takeover_in_window(failover)


def test_service_restored_through_backup(failover: Failover) -> None:
    """Once the backup holds the VIP, new connections to it succeed through the backup."""
    promise.service_restored(failover)


def test_gratuitous_arp_from_ipaddr2(failover: Failover) -> None:
    """IPaddr2 announces the VIP in five rounds 200 ms apart, each a gratuitous ARP
    request then reply (10 frames, 100 ms apart), and no second burst
    (resource-agents IPaddr2: send_arp -r 5 -i 200; heartbeat's send_arp)."""
    promise.garp_as_promised(failover)


def test_client_arp_cache_points_at_backup(failover: Failover) -> None:
    """After IPaddr2's gratuitous ARP the client's neighbour entry for the VIP carries
    the backup's MAC."""
    promise.client_follows(failover)


def test_auto_failback_returns_resources(failover: Failover) -> None:
    """With auto_failback on, the preferred node takes its resources back when it
    returns (within initdead + deadtime), and only it holds the VIP (ha.cf)."""
    promise.failback(failover)
