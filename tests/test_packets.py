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


def _frames_of_every_kind() -> list[Frame]:
    """Frames a failover capture holds, and the odd ones a byte reader could misread."""
    from scapy.layers.inet import ICMP, UDP
    from scapy.layers.inet6 import ICMPv6ND_NA, IPv6
    from scapy.layers.l2 import ARP, Dot1Q
    from scapy.layers.vrrp import VRRP, VRRPv3

    eth = Ether(src="02:00:00:00:00:0A", dst="02:00:00:00:00:02")
    v4 = IP(src="203.0.113.11", dst="203.0.113.100")
    v6 = IPv6(src="2001:db8:203:113::11", dst="2001:db8:203:113::100")
    packets = [
        eth / v4 / TCP(sport=40000 + i, dport=80, flags=f)
        for i, f in enumerate(["S", "SA", "A", "R", "RA", "FA", "PA", "SE", 0x100 | 2])
    ]
    packets += [eth / v6 / TCP(dport=80, flags=f) for f in ["S", "SA", "R"]]
    packets += [
        eth / IP(src="203.0.113.11", dst="203.0.113.100", options=b"\x01" * 4)
        / TCP(flags="S"),  # IPv4 options: TCP starts later
        eth / IP(src="203.0.113.11", dst="203.0.113.100", flags="MF") / TCP(flags="S"),
        eth / IP(src="203.0.113.11", dst="203.0.113.100", frag=3) / TCP(flags="A"),
        eth / IP(dst="198.51.100.11") / v4 / TCP(flags="S"),  # IP-in-IP
        eth / v4 / ICMP(type=3, code=3) / IP(dst="203.0.113.11") / TCP(flags="S"),
        eth / v4 / UDP(dport=694) / b"heartbeat",
        Ether(src="02:00:00:00:00:0B", dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="203.0.113.100",
                                                                     pdst="203.0.113.100"),
        eth / IP(dst="224.0.0.18", proto=112) / VRRP(priority=100),
        eth / IPv6(dst="ff02::12") / VRRPv3(priority=150),
        eth / v6 / ICMPv6ND_NA(tgt="2001:db8:203:113::100"),
        Ether(src="02:00:00:00:00:0A") / Dot1Q(vlan=5) / v4 / TCP(flags="S"),
    ]  # fmt: skip
    frames = [_frame(p, pkttype=PACKET_HOST) for p in packets]
    # truncated: an IP length shorter than its TCP header, a frame cut short
    short = bytearray(bytes(packets[0]))
    short[16:18] = (20 + 10).to_bytes(2, "big")
    frames += [Frame("c1-eth0", 0.0, PACKET_HOST, bytes(short)),
               Frame("c1-eth0", 0.0, PACKET_HOST, bytes(packets[0])[:40])]  # fmt: skip
    return frames


def test_frame_bytes_read_as_scapy_decodes_them() -> None:
    """src_mac and tcp_flags, read without decoding, agree with scapy; tcp_flags is None
    wherever scapy's first TCP header is not the one right after a plain IP header."""
    plain = 0
    for f in _frames_of_every_kind():
        pkt = f.packet
        assert f.src_mac == pkt[Ether].src
        flags = f.tcp_flags()
        if flags is not None:
            plain += 1
            assert TCP in pkt and int(pkt[TCP].flags) == flags, pkt.summary()
    # plain TCP: the 9 IPv4 segments, the 3 IPv6 ones and the one after IPv4 options; not
    # the fragments, the tunnelled or quoted segments, the tagged or truncated frames
    assert plain == 13
