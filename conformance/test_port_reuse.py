"""Source-port reuse and deleted real servers: what the director does with a packet
that finds an old entry.

A client connecting again from the port of a connection just closed meets
the old entry: the SYN is scheduled afresh (the old entry expired at once)
when conn_reuse_mode allows it for the entry's state, else it follows the
old entry to its real server. The state depends on the mode and the close:
after a normal close NAT's entry is in TIME_WAIT, DR's (which sees only the
client) in FIN_WAIT, which only bit 2 of conn_reuse_mode reschedules; after
an RST it is in CLOSE. The historic one-second stall of such a reconnect
with net.ipv4.vs.conntrack=1 (a dropped SYN, retransmitted) is timed too.
A real server deleted under an established connection: with
expire_nodest_conn 0 the connection's packets are dropped, with 1 its entry
is expired and the packet, not a SYN, is not scheduled again.
Sources: ipvs-sysctl.rst (conn_reuse_mode, expire_nodest_conn, conntrack);
net/netfilter/ipvs/ip_vs_core.c ip_vs_in_hook, is_new_conn_expected; Linux
5.9 "ipvs: allow connection reuse for unconfirmed conntrack".
"""

from __future__ import annotations

import itertools

import pytest

from testbed import Cluster
from testbed.observe import (
    REUSE_CLOSINGS,
    DeletedUnderFlowRecord,
    ReuseRecord,
    deleted_under_flow,
    port_reuse,
)
from testbed.registry import Mode
from testbed.state import reschedules

# (closing, conn_reuse_mode, conntrack, expire_nodest_conn, quiesce): every reuse mode
# after each close; the default mode with conntrack on, where the stall was; and the
# old real server at weight 0 after a normal close, where expire_nodest_conn 1
# reschedules whatever conn_reuse_mode says (since Linux 5.16 also with mode 0)
QUIESCED = ((0, 0), (0, 1), (1, 1))  # (conn_reuse_mode, expire_nodest_conn)
CASES = [*((c, m, 0, 0, False) for c, m in itertools.product(REUSE_CLOSINGS, (0, 1, 3))),
         *((closing, 1, 1, 0, False) for closing in REUSE_CLOSINGS),
         *(("server-fin", m, 0, nodest, True) for m, nodest in QUIESCED)]  # fmt: skip
STALL_S = 1.0  # a dropped SYN is retransmitted after 1 s (TCP_TIMEOUT_INIT)


IDS = [f"{c}-reuse{m}" + ("-conntrack" if t else "") + (f"-weight0-nodest{n}" if q else "")
       for c, m, t, n, q in CASES]  # fmt: skip


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def reuse(request: pytest.FixtureRequest, state_table_mode: Mode, cluster: Cluster) -> ReuseRecord:
    closing, conn_reuse_mode, conntrack, expire_nodest_conn, quiesce = request.param
    return port_reuse(cluster, state_table_mode, closing, conn_reuse_mode=conn_reuse_mode,
                      conntrack=conntrack, expire_nodest_conn=expire_nodest_conn,
                      quiesce=quiesce)  # fmt: skip


def test_reused_port_is_rescheduled_as_conn_reuse_mode_says(reuse: ReuseRecord) -> None:
    """The reconnect goes to rr's next real server exactly when is_new_conn_expected()
    holds for the old entry's state under conn_reuse_mode (TIME_WAIT or CLOSE; with
    bit 2 also an input-only FIN_WAIT), or, with expire_nodest_conn 1, when the old
    entry's real server has weight 0, in any state and any conn_reuse_mode; otherwise
    to the old entry's real server, quiesced or not.

    Source: ip_vs_core.c ip_vs_in_hook, is_new_conn_expected; ipvs-sysctl.rst
    conn_reuse_mode, expire_nodest_conn; Linux 5.16 "ipvs: Fix reuse connection if
    RS weight is 0" (with conn_reuse_mode 0 such a port was never rescheduled).
    """
    r = reuse
    fresh = reschedules(r.state_before, no_output=r.no_output, conn_reuse_mode=r.conn_reuse_mode,
                        expire_nodest_conn=r.expire_nodest_conn, weight=r.first_weight)  # fmt: skip
    wanted = r.rr_next if fresh else r.first
    assert r.second == wanted, (
        f"{r.key}: old entry {r.state_before} to {r.first}; the reconnect went to "
        f"{r.second}, expected {wanted} ({'rescheduled' if fresh else 'the old entry'}): {r}"
    )


def test_reused_port_connects_without_a_stall(reuse: ReuseRecord) -> None:
    """The reconnect is established at once: no SYN dropped and retransmitted a second
    later, with conntrack on as well (the stall kube-proxy users met before 5.9).

    Source: ip_vs_core.c ip_vs_in_hook (NF_DROP when the old conntrack is still
    used); ipvs-sysctl.rst conntrack.
    """
    assert reuse.connect_s < STALL_S, (
        f"{reuse.key}: the reconnect took {reuse.connect_s} s (a SYN was dropped and "
        f"retransmitted): {reuse}"
    )


@pytest.fixture(scope="module", params=[0, 1], ids=lambda v: f"expire_nodest_conn={v}")
def deleted(request: pytest.FixtureRequest, state_table_mode: Mode,
            cluster: Cluster) -> DeletedUnderFlowRecord:  # fmt: skip
    return deleted_under_flow(cluster, state_table_mode, request.param)


def test_deleted_real_server_under_a_flow(deleted: DeletedUnderFlowRecord) -> None:
    """A real server deleted under an established connection gets none of its later
    packets. With expire_nodest_conn 0 the director drops them and keeps the entry (the
    client stalls); with 1 it expires the entry at the packet, which, not being a SYN,
    is not scheduled again: the director's own stack, holding the VIP, resets it.

    Source: ipvs-sysctl.rst expire_nodest_conn; ip_vs_core.c ip_vs_in_hook ("the
    destination server is not available"), tcp_conn_schedule.
    """
    d = deleted
    assert not d.delivered, f"{d.key}: the deleted real server received {d.delivered!r}"
    if d.expire_nodest_conn:
        assert d.entry_after == "(none)" and d.client_saw == "ConnectionResetError", (
            f"{d.key}: entry {d.entry_after}, client saw {d.client_saw}; expected the entry "
            "expired and a reset"
        )
    else:
        assert d.entry_after == "ESTABLISHED" and d.client_saw == "TimeoutError", (
            f"{d.key}: entry {d.entry_after}, client saw {d.client_saw}; expected the entry "
            "kept and the client stalled"
        )
