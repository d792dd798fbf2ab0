"""Packet templates: only the fields a template sets are compared, layer by layer."""

from __future__ import annotations

import socket

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from testbed.net import (
    Frame,
    Hop,
    PacketMismatch,
    describe_template,
    expect_absent,
    expect_hop,
    matches,
)
from testbed.net._capture import (
    PACKET_HOST,
    PACKET_OTHERHOST,
    PACKET_OUTGOING,
    Capture,
)

SYN = (
    Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    / IP(src="203.0.113.11", dst="203.0.113.100", ttl=64)
    / TCP(sport=40000, dport=80, flags="S")
)
TUNNELED = IP(src="198.51.100.2", dst="198.51.100.11") / SYN[IP]


def test_set_fields_must_match_unset_fields_are_ignored() -> None:
    assert matches(IP(dst="203.0.113.100") / TCP(dport=80), SYN)
    assert matches(Ether(dst="02:00:00:00:00:02"), SYN)
    assert not matches(IP(dst="203.0.113.101"), SYN)
    assert not matches(TCP(dport=8080), SYN)


def test_tcp_flags_compare_by_value() -> None:
    assert matches(TCP(flags="S"), SYN)
    assert not matches(TCP(flags="SA"), SYN)


def test_mac_comparison_ignores_case() -> None:
    assert matches(Ether(dst="02:00:00:00:00:02".upper()), SYN)


def test_layers_match_in_order_outer_then_inner() -> None:
    pkt = Ether() / TUNNELED
    assert matches(IP(src="198.51.100.2") / IP(src="203.0.113.11") / TCP(dport=80), pkt)
    # the outer header is not the client's
    assert not matches(IP(src="203.0.113.11") / IP(src="198.51.100.2"), pkt)
    # a plain packet has no second IP layer
    assert not matches(IP() / IP(src="203.0.113.11"), SYN)


def test_describe_template_lists_only_checked_fields() -> None:
    text = describe_template(IP(dst="203.0.113.100") / TCP(dport=80))
    assert text == "IP(dst='203.0.113.100') / TCP(dport=80)"


def _frame(pkt, point: str = "d1-eth1", pkttype: int = PACKET_OUTGOING) -> Frame:  # type: ignore[no-untyped-def]
    return Frame(point, 0.0, pkttype, bytes(pkt))


def test_frame_direction_from_packet_type() -> None:
    assert _frame(SYN, pkttype=PACKET_OUTGOING).direction == "out"
    assert _frame(SYN, pkttype=PACKET_HOST).direction == "in"
    assert _frame(SYN, pkttype=PACKET_OTHERHOST).direction == "flood"


HOP = Hop(name="director forwards", point="d1-eth1", direction="out",
          expect=IP(dst="203.0.113.100") / TCP(dport=80))  # fmt: skip


def test_expect_hop_finds_matching_frames() -> None:
    assert len(expect_hop(HOP, [_frame(SYN), _frame(SYN, point="r1-eth0")])) == 1


def test_expect_hop_explains_expected_and_got() -> None:
    wrong = Ether() / IP(src="203.0.113.11", dst="198.51.100.11") / TCP(dport=8080)
    with pytest.raises(PacketMismatch) as err:
        expect_hop(HOP, [_frame(wrong)])
    text = str(err.value)
    assert "expected: out at d1-eth1: IP(dst='203.0.113.100') / TCP(dport=80)" in text
    assert "198.51.100.11" in text  # the packet that was there instead


def test_expect_hop_ignores_other_direction_and_floods() -> None:
    with pytest.raises(PacketMismatch):
        expect_hop(HOP, [_frame(SYN, pkttype=PACKET_HOST), _frame(SYN, pkttype=PACKET_OTHERHOST)])


def test_expect_hop_count() -> None:
    with pytest.raises(PacketMismatch, match="exactly 2, found 1"):
        expect_hop(HOP, [_frame(SYN)], count=2)


def test_expect_absent() -> None:
    expect_absent(HOP, [])
    with pytest.raises(PacketMismatch, match="must not happen"):
        expect_absent(HOP, [_frame(SYN)])


def test_the_ring_captures_each_frame_as_seen_with_the_kernels_time() -> None:
    """A capture point reads a TPACKET_V2 ring: every frame on the interface, its
    direction, and the time the kernel saw it (not when the thread read it)."""
    import os
    import time

    from scapy.layers.inet import UDP

    if os.geteuid() != 0:
        pytest.skip("AF_PACKET needs root")
    marker = b"ring-capture-%d" % os.getpid()
    with Capture({"lo": os.getpid()}) as cap, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        before = time.time()
        for _ in range(3):
            s.sendto(marker, ("127.0.0.1", 9))
        after = time.time()
        time.sleep(0.3)  # the reader thread polls every 50 ms
    ours = [
        f for f in cap.frames("lo") if UDP in f.packet and bytes(f.packet[UDP].payload) == marker
    ]
    assert sorted(f.direction for f in ours) == ["in"] * 3 + ["out"] * 3  # lo: sent, then received
    assert all(before - 0.01 <= f.time <= after + 0.01 for f in ours)
