"""keepalived reloaded (SIGHUP) under traffic: what happens to the kernel table and to
established connections when real servers are removed, re-weighted, added, or an
inhibited one leaves the configuration.

Sources: keepalived(8) (SIGHUP reloads the configuration); keepalived.conf(5)
real_server, weight, inhibit_on_failure; ipvs-sysctl.rst expire_nodest_conn (0:
packets of a connection to a deleted real server are dropped); ip_vs_ctl.c
ip_vs_edit_dest (a new weight, the real server kept), ip_vs_del_dest.
"""

from __future__ import annotations

import pytest

from conformance.conftest import skip_unless_topology
from testbed import Cluster
from testbed.observe import (
    InhibitedReloadRecord,
    ReloadRecord,
    reload_under_traffic,
    reload_without_an_inhibited_server,
)


@pytest.fixture(scope="module")
def reloaded(cluster: Cluster) -> ReloadRecord:
    skip_unless_topology(cluster, real_servers=3)
    return reload_under_traffic(cluster)


def test_the_table_follows_the_reloaded_configuration(reloaded: ReloadRecord) -> None:
    """After SIGHUP the kernel's table is the new configuration's: r1 gone, r2 at its
    new weight, r3 added (keepalived(8), keepalived.conf(5) real_server)."""
    r = reloaded
    assert r.converged_s is not None, f"kernel {r.after}, configured {r.configured}"
    assert r.after == r.configured


def test_a_reweighted_real_servers_connection_carries_on(reloaded: ReloadRecord) -> None:
    """The real server whose weight changed is edited in place: its held connection's
    request after the reload is answered by it (ip_vs_ctl.c ip_vs_edit_dest)."""
    [kept] = [n for n in reloaded.before if n in reloaded.configured]
    assert reloaded.held[kept] == f"answered by {kept}", reloaded


def test_a_removed_real_servers_connection_is_dropped(reloaded: ReloadRecord) -> None:
    """The real server removed from the configuration is deleted from the service:
    its held connection's entry stays, and its request reaches nobody (the director
    drops it with expire_nodest_conn 0; ipvs-sysctl.rst, ip_vs_core.c ip_vs_in_hook)."""
    [removed] = [n for n in reloaded.before if n not in reloaded.configured]
    assert not reloaded.held[removed].startswith("answered"), reloaded
    assert reloaded.entries[removed] != "(none)", reloaded


def test_new_connections_follow_the_new_configuration(reloaded: ReloadRecord) -> None:
    """Fresh connections after the reload go only to configured real servers, the
    added one included (rr over the new list)."""
    got = set(reloaded.new_connections)
    assert got == set(reloaded.configured), f"new connections went to {reloaded.new_connections}"


@pytest.fixture(scope="module")
def inhibited(cluster: Cluster) -> InhibitedReloadRecord:
    skip_unless_topology(cluster, real_servers=2)
    return reload_without_an_inhibited_server(cluster)


def test_an_inhibited_real_server_leaves_with_its_configuration(
    inhibited: InhibitedReloadRecord,
) -> None:
    """A real server kept at weight 0 by inhibit_on_failure leaves the kernel's table
    once a reload drops its block (keepalived.conf(5) inhibit_on_failure)."""
    i = inhibited
    assert 0 in i.inhibited.values(), f"no inhibited real server: {i.inhibited}"
    assert i.converged_s is not None and 0 not in i.after.values(), i
    assert len(i.after) == len(i.inhibited) - 1, i
