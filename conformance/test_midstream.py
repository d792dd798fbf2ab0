"""Packets of connections the director never saw begin, and a director that is a sync
backup: sloppy_tcp, sloppy_sctp, backup_only.

A director schedules only a connection's first packet (TCP SYN, SCTP INIT): a
segment of a connection under way, as after a failover without the sync daemon,
is left to the director's own stack unless the protocol's sloppy sysctl is set.
A director whose sync daemon runs as a backup forwards nothing while
backup_only is set (it would loop DR and TUN packets back to the master).
Sources: Documentation/networking/ipvs-sysctl.rst; ip_vs_proto_tcp.c
tcp_conn_schedule; ip_vs_proto_sctp.c sctp_conn_schedule; ip_vs_core.c
ip_vs_in_hook.
"""

from __future__ import annotations

import pytest

from conformance.conftest import skip_unless_available
from testbed import Cluster
from testbed.observe import (
    BackupOnlyRecord,
    MidstreamRecord,
    midstream_packet,
    request_beside_a_backup_daemon,
)
from testbed.registry import PROTOCOLS

# its checks hold on a busy guest (it may run beside another run: conftest.py)
pytestmark = pytest.mark.tolerates_load

CASES = [(p, v) for p in PROTOCOLS.values() if p.midstream for v in (0, 1)]
IDS = [f"{p.name}-{p.sloppy_sysctl.rsplit('.', 1)[1]}={v}" for p, v in CASES]


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def midstream(request: pytest.FixtureRequest, cluster: Cluster) -> MidstreamRecord:
    protocol, value = request.param
    skip_unless_available(cluster, needed_by=f"{protocol.title} services", protocol=protocol.name)
    return midstream_packet(cluster, protocol, value)


def test_a_midstream_packet_is_scheduled_only_when_sloppy(midstream: MidstreamRecord) -> None:
    """A TCP segment without SYN (an SCTP DATA chunk without INIT) to the VIP from a
    port the director has no entry for: with the sloppy sysctl 0 no entry is made and
    no real server gets it; with 1 it is scheduled like a new connection: an entry,
    and exactly one real server gets it.

    Source: ipvs-sysctl.rst sloppy_tcp / sloppy_sctp; ip_vs_proto_tcp.c
    tcp_conn_schedule (``th->rst || !(sloppy_tcp || th->syn)``: not scheduled);
    ip_vs_proto_sctp.c sctp_conn_schedule (INIT only, unless sloppy_sctp).
    """
    m = midstream
    if m.value == 0:
        assert m.entry == "(none)" and not m.reached, (
            f"{m.sysctl}=0: entry {m.entry}, forwarded to {m.reached or 'nobody'}"
        )
    else:
        assert m.entry != "(none)", f"{m.sysctl}=1: no entry for the mid-stream packet"
        assert len(m.reached) == 1, f"{m.sysctl}=1: forwarded to {m.reached or 'nobody'}"


@pytest.fixture(scope="module", params=[0, 1], ids=lambda v: f"backup_only={v}")
def beside_backup(request: pytest.FixtureRequest, cluster: Cluster) -> BackupOnlyRecord:
    return request_beside_a_backup_daemon(cluster, request.param)


def test_backup_only_stops_a_sync_backup_from_forwarding(beside_backup: BackupOnlyRecord) -> None:
    """With a backup sync daemon running on the director, a request through the VIP is
    served by a real server while backup_only is 0, and by none while it is 1 (the
    director's own stack refuses it: nothing listens on the VIP there).

    Source: ipvs-sysctl.rst backup_only; ip_vs_core.c ip_vs_in_hook
    (``sysctl_backup_only && sync_state & IP_VS_STATE_BACKUP``: NF_ACCEPT).
    """
    b = beside_backup
    if b.value == 0:
        assert b.answered_by, f"backup_only=0: no real server answered ({b.client_saw!r})"
    else:
        assert not b.answered_by, f"backup_only=1: {b.answered_by} answered"
