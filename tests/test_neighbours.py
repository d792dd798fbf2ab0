"""The rtnetlink neighbour flush's messages (no root: built and parsed as bytes)."""

from __future__ import annotations

import socket
import struct

from testbed.net import _neighbours as nb

V4 = socket.inet_pton(socket.AF_INET, "203.0.113.100")
V6 = socket.inet_pton(socket.AF_INET6, "2001:db8:203:113::100")


def _new_neigh(family: int, ifindex: int, state: int, dst: bytes) -> bytes:
    """An RTM_NEWNEIGH as the kernel sends it: ndmsg, NDA_DST, NDA_LLADDR (6 bytes, padded)."""
    lladdr = struct.pack("=HH", 10, 2) + bytes(6) + b"\0\0"
    dst_attr = struct.pack("=HH", 4 + len(dst), 1) + dst
    body = struct.pack("=BxxxiHBB", family, ifindex, state, 0, 1) + dst_attr + lladdr
    return struct.pack("=IHHII", 16 + len(body), 28, 2, 7, 0) + body


def test_a_dump_datagram_parses_into_entries() -> None:
    data = _new_neigh(socket.AF_INET, 3, 0x04, V4) + _new_neigh(socket.AF_INET6, 2, 0x02, V6)
    data += struct.pack("=IHHII", 20, 3, 2, 7, 0) + bytes(4)  # NLMSG_DONE
    messages = nb._messages(data)
    assert [(kind, seq) for kind, seq, _ in messages] == [(28, 7), (28, 7), (3, 7)]
    entries = [nb.parse_entry(body) for kind, _, body in messages if kind == 28]
    assert entries == [nb.Entry(socket.AF_INET, 3, V4, 0x04),
                       nb.Entry(socket.AF_INET6, 2, V6, 0x02)]  # fmt: skip


def test_a_deletion_names_the_entry_by_family_interface_and_address() -> None:
    entry = nb.Entry(socket.AF_INET6, 5, V6, 0x08)
    ((kind, seq, body),) = nb._messages(nb.delete_request(entry, 42))
    assert (kind, seq) == (29, 42)  # RTM_DELNEIGH
    assert nb.parse_entry(body) == nb.Entry(socket.AF_INET6, 5, V6, 0)
    flags = struct.unpack_from("=IHH", nb.delete_request(entry, 42))[2]
    assert flags == 0x1 | 0x4  # a request, acknowledged: the flush counts the answers


def test_flush_keeps_what_ip_neigh_flush_keeps() -> None:
    """ip-neighbour(8): permanent and noarp entries stay; other families are not ours."""
    assert nb.flushed(nb.Entry(socket.AF_INET, 1, V4, 0x04))  # stale
    assert nb.flushed(nb.Entry(socket.AF_INET6, 1, V6, 0x20))  # failed
    assert not nb.flushed(nb.Entry(socket.AF_INET, 1, V4, 0x80))  # permanent
    assert not nb.flushed(nb.Entry(socket.AF_INET6, 1, V6, 0x40))  # noarp (multicast)
    assert not nb.flushed(nb.Entry(socket.AF_BRIDGE, 1, b"", 0x02))  # a bridge's fdb
