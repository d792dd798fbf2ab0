"""TCP connection entries: the state walk and timers of ip_vs_proto_tcp.c, and idle expiry.

A connection is opened through the VIP and closed by the side the case says
(client first, server first, or a client's RST), both ends real kernel
sockets. After every step the director's entry is read from its table and
compared with the state model (testbed.state) fed with exactly the segments
the director handled, and its timer with that state's timeout (tcp and
tcpfin set with ``ipvsadm --set`` to values no other state has). NAT sees
both directions; DR and TUN see the client's segments only and use the
input-only table. Then a connection left idle past the tcp timeout loses
its entry, and its next segment is not forwarded.
Sources: ipvsadm(8) --set; net/netfilter/ipvs/ip_vs_proto_tcp.c
(set_tcp_state, tcp_states, tcp_timeouts, tcp_conn_schedule),
ip_vs_ctl.c (__ip_vs_update_dest: IP_VS_CONN_F_NOOUTPUT unless NAT).
"""

from __future__ import annotations

import pytest

from testbed import Cluster
from testbed.observe import CLOSINGS, IdleRecord, TcpWalkRecord, idle_past_timeout, tcp_state_walk
from testbed.registry import Mode
from testbed.state import TcpEntry, timeouts

TIMER_SLACK_S = 3  # /proc shows whole seconds; the read follows the last segment by ~1 s


@pytest.fixture(scope="module", params=list(CLOSINGS))
def walk(request: pytest.FixtureRequest, state_table_mode: Mode, cluster: Cluster) -> TcpWalkRecord:
    return tcp_state_walk(cluster, state_table_mode, request.param)


def _explain(walk: TcpWalkRecord) -> str:
    return "\n".join(
        f"  {s.name}: segments {' '.join(f'{f}/{d}' for f, d in s.segments) or '-'} -> "
        f"entry {s.state} ({s.expires} s)"
        for s in walk.steps
    )


def test_entry_state_follows_the_state_table(walk: TcpWalkRecord) -> None:
    """After each step the entry is in the state the kernel's table gives for the
    segments the director forwarded (INPUT/OUTPUT in NAT, INPUT-ONLY otherwise): a
    client-side close through NAT goes ESTABLISHED, CLOSE_WAIT, TIME_WAIT; a
    server-side one passes FIN_WAIT; DR ends in FIN_WAIT; an RST closes.

    Source: ip_vs_proto_tcp.c set_tcp_state, tcp_states, tcp_state_idx.
    """
    model = TcpEntry(masquerading=walk.masquerading)
    for step in walk.steps:
        for flags, direction in step.segments:
            model.segment(flags, direction)  # type: ignore[arg-type]
        assert step.state == model.state, (
            f"{walk.key}: after '{step.name}' the entry is {step.state}, the state table "
            f"gives {model.state}\n{_explain(walk)}"
        )
    assert walk.steps[0].state == "ESTABLISHED", f"{walk.key}: not established\n{_explain(walk)}"


def test_entry_timer_is_its_states_timeout(walk: TcpWalkRecord) -> None:
    """Each segment restarts the entry's timer at its new state's timeout: ESTABLISHED's
    and FIN_WAIT's as ``ipvsadm --set tcp tcpfin`` set them, the others the kernel's.

    Source: ip_vs_proto_tcp.c set_tcp_state (cp->timeout = timeout_table[state]),
    tcp_timeouts; ip_vs_ctl.c ip_vs_set_timeout.
    """
    table = timeouts(**walk.timeouts)
    for step in walk.steps:
        wanted = table[step.state]
        assert wanted - TIMER_SLACK_S <= step.expires <= wanted, (
            f"{walk.key}: after '{step.name}' the {step.state} entry's timer is "
            f"{step.expires} s, its timeout {wanted} s\n{_explain(walk)}"
        )


@pytest.fixture(scope="module")
def idle(state_table_mode: Mode, cluster: Cluster) -> IdleRecord:
    return idle_past_timeout(cluster, state_table_mode)


def test_idle_connection_loses_its_entry_at_the_tcp_timeout(idle: IdleRecord) -> None:
    """An established connection with no segment for the tcp timeout leaves the table.

    Source: ipvsadm(8) --set; ip_vs_conn.c ip_vs_conn_expire.
    """
    assert idle.state_before == "ESTABLISHED", idle
    assert idle.gone_after_s is not None, f"entry still there {idle.timeout + 15} s on: {idle}"
    assert idle.timeout - 1 <= idle.gone_after_s <= idle.timeout + TIMER_SLACK_S, idle


def test_segment_after_expiry_is_not_forwarded(idle: IdleRecord) -> None:
    """With the entry gone, the client's next data segment is not scheduled (only a
    SYN is, with sloppy_tcp off): the real server gets nothing; the segment is the
    director's own stack's, which holds the VIP and answers with a reset.

    Source: ip_vs_proto_tcp.c tcp_conn_schedule; ipvs-sysctl.rst sloppy_tcp.
    """
    assert idle.forwarded == 0 and not idle.delivered, (
        f"after the entry expired the director forwarded {idle.forwarded} segments and "
        f"the real server received {idle.delivered!r}: {idle}"
    )
    assert idle.client_error == "ConnectionResetError", (
        f"the client's socket reported {idle.client_error or 'nothing'}, expected a reset "
        f"from the director: {idle}"
    )
