"""The sync daemon carries entries of every protocol and family, not only TCP over IPv4.

The active director is the sync master, the second director the backup; a
flow of each kind goes through the master, and its entry must reach the
backup with the same client, virtual and real-server endpoints. Sources:
ipvsadm(8) --start-daemon; net/netfilter/ipvs/ip_vs_sync.c (sync message
version 1 carries IPv6 and every protocol; ip_vs_sync_conn_needed: TCP and
SCTP on a change of state, UDP on its sync_threshold-th packet);
ipvs-sysctl.rst sync_threshold.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conformance.conftest import skip_unless_available, skip_unless_family, skip_unless_topology
from testbed import Cluster
from testbed.observe import SyncEntryRecord, sync_daemons, synced_entry
from testbed.registry import FAMILIES, MODES, PROTOCOLS

# its checks hold on a busy guest (it may run beside another run: conftest.py)
pytestmark = pytest.mark.tolerates_load

# every protocol and family but TCP over IPv4, which test_sync follows through failovers
CASES = [(p, f) for f in FAMILIES.values() for p in PROTOCOLS.values()][1:]
# the sync daemon copies entries whatever the mode: the one whose replies pass the master
MODE = next(m for m in MODES.values() if m.reply_via_director)


@pytest.fixture(scope="module")
def daemons(cluster: Cluster) -> Iterator[None]:
    skip_unless_topology(cluster, directors=2)
    with sync_daemons(cluster):
        yield
    cluster.configure(cluster.base_spec)


@pytest.fixture(scope="module", params=CASES, ids=[f"{p.name}-{f.name}" for p, f in CASES])
def entry(request: pytest.FixtureRequest, cluster: Cluster, daemons: None) -> SyncEntryRecord:
    protocol, family = request.param
    skip_unless_family(cluster, family)
    skip_unless_available(cluster, needed_by=f"{protocol.name} over {family.name}",
                          family=family, mode=MODE.name, protocol=protocol.name)  # fmt: skip
    return synced_entry(cluster, MODE, protocol, family)


def test_the_backup_gets_the_flows_entry(entry: SyncEntryRecord) -> None:
    """The flow's entry appears in the backup's table, with the master's endpoints.

    Source: ip_vs_sync.c (ip_vs_sync_conn on the master, ip_vs_proc_conn on the
    backup); ipvsadm(8) --start-daemon.
    """
    assert entry.answered_by, f"{entry.key}: the flow through the master got no answer"
    assert entry.master, f"{entry.key}: no entry on the master for the flow"
    assert entry.backup, f"{entry.key}: the backup never got the entry {entry.master!r}"
    assert entry.backup == entry.master, (
        f"{entry.key}: master {entry.master!r}, backup {entry.backup!r}"
    )
