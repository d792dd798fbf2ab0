"""Reassembling captured fragments (testbed.net.reassembled): IPv4 and IPv6, a
fragment carried inside a tunnel, and the cases that must give the first piece back."""

from __future__ import annotations

from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.packet import Raw

from testbed.net import is_fragment, reassembled

PAYLOAD = bytes(range(256)) * 12  # 3,072 bytes: four pieces of at most 1,000


def _v4() -> IP:
    return IP(bytes(IP(src="192.0.2.1", dst="192.0.2.2", id=7, ttl=9) / UDP(sport=5, dport=6)
                    / Raw(PAYLOAD)))  # fmt: skip


def _v6() -> IPv6:
    return IPv6(bytes(IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=9) / UDP(sport=5, dport=6)
                      / Raw(PAYLOAD)))  # fmt: skip


def _v6_pieces() -> list[IPv6]:
    whole = _v6()
    frags = fragment6(IPv6(src=whole.src, dst=whole.dst, hlim=9) / IPv6ExtHdrFragment(id=42)
                      / whole[UDP], 1000)  # fmt: skip
    return [IPv6(bytes(f)) for f in frags]


def test_ipv4_fragments_make_the_datagram_again_in_any_order() -> None:
    pieces = [IP(bytes(f)) for f in fragment(_v4(), fragsize=1000)]
    assert len(pieces) == 4 and all(is_fragment(p) for p in pieces)
    whole = reassembled(pieces[0], reversed(pieces))
    assert not is_fragment(whole)
    assert bytes(whole[UDP]) == bytes(_v4()[UDP]) and whole.ttl == 9


def test_ipv6_fragments_make_the_datagram_again() -> None:
    pieces = _v6_pieces()
    whole = reassembled(pieces[0], pieces[1:])
    assert not is_fragment(whole) and whole.nh == 17
    assert bytes(whole[UDP]) == bytes(_v6()[UDP]) and whole.hlim == 9


def test_a_missing_piece_or_a_stranger_gives_the_first_piece_back() -> None:
    pieces = _v6_pieces()
    assert reassembled(pieces[0], pieces[2:]) is pieces[0]  # the second piece is missing
    assert reassembled(pieces[0], pieces[1:-1]) is pieces[0]  # the last one is missing
    stranger = IPv6(bytes(pieces[1]))
    stranger[IPv6ExtHdrFragment].id = 43
    assert reassembled(pieces[0], [IPv6(bytes(stranger))]) is pieces[0]


def test_a_whole_packet_is_its_own_reassembly() -> None:
    packet = _v4()
    assert not is_fragment(packet) and reassembled(packet, []) is packet


def test_only_the_outermost_header_counts() -> None:
    # a tunnel carrying a fragment is itself no fragment
    inner = _v6_pieces()[0]
    tunnel = IPv6(bytes(IPv6(src="2001:db8::a", dst="2001:db8::b") / inner))
    assert is_fragment(inner) and not is_fragment(tunnel)
    assert reassembled(tunnel, []) is tunnel
