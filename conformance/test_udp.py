"""UDP connection entries and one-packet scheduling, observed in the director's table.

A UDP datagram from a new client address and port is scheduled and makes an
entry (state "UDP"); later datagrams of the port, and in NAT the answers,
follow it and renew its timer, the udp timeout of ``ipvsadm --set``. Once the
timer runs out the entry is gone and the port is scheduled afresh. With
one-packet scheduling (``-o``) the director keeps no entry: every datagram
is scheduled on its own.
Sources: ipvsadm(8) --set, -o/--ops; net/netfilter/ipvs/ip_vs_proto_udp.c
(udp_timeouts, udp_state_transition), ip_vs_conn.c (ip_vs_conn_new,
IP_VS_CONN_F_ONE_PACKET is never hashed), ip_vs_core.c (ip_vs_schedule),
ip_vs_nfct.c (ip_vs_update_conntrack: "Never alter conntrack for OPS conns
(no reply is expected)").
"""

from __future__ import annotations

import pytest

from testbed import Cluster
from testbed.observe import (
    OnePacketRecord,
    UdpDeletedRecord,
    UdpEntryRecord,
    one_packet_schedule,
    udp_deleted_under_flow,
    udp_entry_lifetime,
)
from testbed.registry import MODES, Mode

# the timer is in jiffies and /proc shows whole seconds; the poll of the table
# adds 0.2 s, the client's start-up under emulation a second or so
EXPIRY_SLACK_S = 2.5


@pytest.fixture(scope="module")
def entry(state_table_mode: Mode, cluster: Cluster) -> UdpEntryRecord:
    return udp_entry_lifetime(cluster, state_table_mode)


def test_a_datagram_makes_an_entry_with_the_udp_timeout(entry: UdpEntryRecord) -> None:
    """A client port's datagrams make an entry in state UDP whose timer starts at the udp
    timeout set with ``ipvsadm --set`` at each datagram; ``ipvsadm -L --timeout``
    reports the timeout.

    Source: ipvsadm(8) --set; ip_vs_proto_udp.c udp_state_transition
    (cp->timeout = timeout_table[IP_VS_UDP_S_NORMAL]), udp_state_name_table.
    """
    assert entry.timeout_read == entry.timeout_set, entry
    assert entry.first, f"the first datagram got no answer: {entry}"
    assert entry.state == "UDP", f"entry state {entry.state!r}, expected 'UDP': {entry}"
    assert entry.timeout_set - 1 <= entry.expires_renewed <= entry.timeout_set, (
        f"timer {entry.expires_renewed} s right after a datagram, udp timeout {entry.timeout_set} s"
    )


def test_a_datagram_within_the_timeout_keeps_its_real_server(entry: UdpEntryRecord) -> None:
    """A second datagram from the same port, half a timeout after the first, goes to the
    same real server through the same entry.

    Source: ip_vs_core.c ip_vs_in_hook (an existing entry is used, not scheduled);
    ip_vs_proto_udp.c udp_state_transition (the timer restarts per packet).
    """
    assert entry.spacing_s is not None and entry.spacing_s < entry.timeout_set - 1, (
        f"the two datagrams were {entry.spacing_s} s apart at the director, not within the "
        f"{entry.timeout_set} s timeout"
    )
    assert entry.renewed == entry.first, (
        f"first datagram to {entry.first!r}, the second ({entry.spacing_s} s later, entry "
        f"alive) to {entry.renewed!r}"
    )


def test_the_entry_expires_after_the_udp_timeout(entry: UdpEntryRecord) -> None:
    """With no datagram for the udp timeout, the entry leaves the table.

    Source: ip_vs_conn.c ip_vs_conn_expire (the entry's timer); ipvsadm(8) --set.
    """
    assert entry.gone_after_s is not None, (
        f"the entry was still in the table {entry.timeout_set + 15} s after the last datagram"
    )
    low, high = entry.timeout_set - 1, entry.timeout_set + EXPIRY_SLACK_S
    assert low <= entry.gone_after_s <= high, (
        f"entry gone {entry.gone_after_s} s after the last datagram; udp timeout "
        f"{entry.timeout_set} s (accepted {low}..{high})"
    )


def test_after_expiry_the_port_is_scheduled_afresh(entry: UdpEntryRecord) -> None:
    """Once the entry has gone, the same client port is a new connection: rr gives it
    the real server after the one it had.

    Source: ip_vs_core.c ip_vs_schedule; ip_vs_rr.c (the next server in the list).
    """
    ring = entry.ring
    expected = ring[(ring.index(entry.first) + 1) % len(ring)]
    assert entry.after == expected, (
        f"after expiry the port went to {entry.after!r}; rr after {entry.first!r} in "
        f"{ring} is {expected!r}"
    )


@pytest.fixture(scope="module")
def one_packet(mode: Mode, cluster: Cluster) -> OnePacketRecord:
    return one_packet_schedule(cluster, mode)


def test_one_packet_scheduling_schedules_every_datagram(one_packet: OnePacketRecord) -> None:
    """With ``-o`` every datagram from one client socket is scheduled on its own (rr:
    each goes to the next real server), no entry is kept, and each counts as a
    connection.

    Source: ipvsadm(8) -o ("one-packet scheduling"); ip_vs_core.c ip_vs_schedule
    (IP_VS_CONN_F_ONE_PACKET for UDP); ip_vs_conn.c (such an entry is never
    hashed and is freed once the packet is sent).
    """
    _scheduled_per_datagram(one_packet)


def test_one_packet_scheduling_follows_wrr(cluster: Cluster) -> None:
    """The same with wrr: the datagrams of one socket follow the weighted interleaving
    of the model (weights 4, 3, 2 over the real servers), datagram by datagram.

    Source: ipvsadm(8) -o; ip_vs_wrr.c.
    """
    mode = next(m for m in MODES.values() if not m.reply_via_director)
    _scheduled_per_datagram(one_packet_schedule(cluster, mode, scheduler="wrr",
                                                weights=(4, 3, 2), datagrams=9))  # fmt: skip


def _scheduled_per_datagram(r: OnePacketRecord) -> None:
    assert r.schedule == r.expected, (
        f"{r.key}: datagrams went to {r.schedule}; the model gives {r.expected}"
    )
    assert r.entries_seen == 0, f"{r.entries_seen} entries kept for the client's port"
    assert r.conns_counted == r.datagrams, (
        f"{r.conns_counted} connections counted for {r.datagrams} datagrams"
    )


def test_one_packet_answers_are_not_expected(one_packet: OnePacketRecord) -> None:
    """No entry is kept, so an answer has nothing to be matched with: where answers pass
    the director (NAT) they leave un-rewritten, from the real servers' own addresses
    and port, and a client talking to the VIP gets none; where they do not (DR, TUN)
    the real servers answer from the VIP themselves.

    Source: ip_vs_nfct.c ip_vs_update_conntrack ("Never alter conntrack for OPS conns
    (no reply is expected)"); ip_vs_core.c ip_vs_out_hook (no entry: the packet is
    not IPVS's); ip_vs_conn.c (ONE_PACKET entries are never hashed).
    """
    r = one_packet
    vip_sources = [s for s in r.answer_sources if s.rsplit(":", 1)[0] == r.vip]
    if r.answers_via_director:
        assert r.answer_sources and not vip_sources, (
            f"answers from {r.answer_sources}: rewritten to the VIP without an entry?"
        )
        assert not any(r.answers), f"the client's socket got answers {r.answers}"
    else:
        assert r.answers == r.schedule, f"answers {r.answers}, schedule {r.schedule}"
        assert len(vip_sources) == r.datagrams, r.answer_sources


@pytest.fixture(scope="module", params=[0, 1], ids=lambda v: f"expire_nodest_conn={v}")
def deleted(request: pytest.FixtureRequest, cluster: Cluster) -> UdpDeletedRecord:
    return udp_deleted_under_flow(cluster, MODES["nat"], request.param)


def test_a_deleted_real_servers_udp_flow_waits_for_its_entry_unless_expired(
    deleted: UdpDeletedRecord,
) -> None:
    """A client port whose real server is deleted from the service: with
    expire_nodest_conn 0 its datagrams are dropped while its entry lives (nobody
    answers) and the port is scheduled afresh only once the entry has expired at
    the udp timeout; with 1 the entry is expired at the next datagram, which is
    scheduled to another real server at once.

    Source: ipvs-sysctl.rst expire_nodest_conn; ip_vs_core.c ip_vs_in_hook ("the
    destination server is not available": ip_vs_conn_expire_now, or NF_DROP).
    """
    d = deleted
    # the entry must still live when the port asks again, or this proves nothing
    assert d.question_gap_s < d.timeout, f"the question came {d.question_gap_s} s later: {d}"
    if d.expire_nodest_conn == 0:
        assert not d.right_after, f"the deleted {d.first}'s port was answered by {d.right_after}"
        assert d.entry_after.endswith(f" {d.first}"), f"entry after: {d.entry_after}"
        assert d.answered_after_s is not None and d.answered_after_s >= d.timeout - 1, (
            f"answered {d.answered_after_s} s after the deletion; udp timeout {d.timeout} s"
        )
    else:
        assert d.right_after not in ("", d.first), (
            f"expire_nodest_conn=1: the next datagram was answered by {d.right_after or 'nobody'}"
        )
        assert not d.entry_after.endswith(f" {d.first}"), f"entry after: {d.entry_after}"
    assert d.then and d.then != d.first
