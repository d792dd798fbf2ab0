"""Expected packets written as scapy templates, and matching against captures.

A template is an ordinary scapy packet in which only the fields the test
cares about are set::

    IP(src="198.51.100.2", dst="198.51.100.11") / IP(src=client, dst=vip) / TCP(dport=80)

Layers are matched in order (so the outer and inner IP of an IP-in-IP packet
are distinguished) and only explicitly given fields are compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scapy.packet import NoPayload, Packet, Raw

from ._capture import Frame


def _checked_fields(layer: Packet) -> dict[str, Any]:
    # scapy itself copies an empty list into every list field on construction
    # (IP and TCP options, an SCTP INIT's parameters): an empty list is no check
    return {k: v for k, v in layer.fields.items() if v != []}


def matches(template: Packet, packet: Packet) -> bool:
    """True if every field set in ``template`` has that value in ``packet``."""
    want: Any = template
    got: Any = packet
    while not isinstance(want, NoPayload):
        found = got.getlayer(type(want))
        if found is None:
            return False
        for name, value in _checked_fields(want).items():
            fld = want.get_field(name)
            expected = fld.any2i(want, value)
            actual = found.getfieldval(name)
            if isinstance(expected, str) and isinstance(actual, str):
                expected, actual = expected.lower(), actual.lower()
            if expected != actual:
                return False
        want, got = want.payload, found.payload
    return True


def describe_template(template: Packet) -> str:
    """``IP(src=.., dst=..) / TCP(dport=80)``: only the fields that are checked."""
    parts = []
    layer: Any = template
    while not isinstance(layer, NoPayload):
        fields = ", ".join(f"{k}={v!r}" for k, v in _checked_fields(layer).items())
        parts.append(f"{type(layer).__name__}({fields})")
        layer = layer.payload
    return " / ".join(parts)


@dataclass(frozen=True, kw_only=True)
class Hop:
    """One expected appearance of a packet: at a capture point, in a direction.

    ``expect`` is the scapy template; ``direction`` is "in" (received by the
    host owning the interface) or "out" (sent by it).
    """

    name: str
    point: str
    direction: str
    expect: Packet

    def find(self, frames: Iterable[Frame]) -> list[Frame]:
        return [
            f
            for f in frames
            if f.point == self.point
            and f.direction == self.direction
            and matches(self.expect, f.packet)
        ]


class PacketMismatch(AssertionError):
    """Raised with expected vs got packets laid out for a human."""


def explain(
    what: str,
    *,
    expected: str,
    got: Sequence[Frame],
    limit: int = 25,
) -> str:
    lines = [what, f"  expected: {expected}", f"  got ({len(got)} frames at the points checked):"]
    lines += [f"    {f.summary()}" for f in got[:limit]]
    if len(got) > limit:
        lines.append(f"    ... {len(got) - limit} more")
    if not got:
        lines.append("    (nothing)")
    return "\n".join(lines)


def expect_hop(hop: Hop, frames: Sequence[Frame], *, count: int | None = None) -> list[Frame]:
    """Frames matching ``hop``; raise PacketMismatch if none (or not ``count``)."""
    found = hop.find(frames)
    if (count is None and not found) or (count is not None and len(found) != count):
        at_point = [f for f in frames if f.point == hop.point]
        want = f"{hop.direction} at {hop.point}: {describe_template(hop.expect)}"
        if count is not None:
            want += f" (exactly {count}, found {len(found)})"
        raise PacketMismatch(explain(f"hop '{hop.name}' not seen", expected=want, got=at_point))
    return found


def expect_absent(hop: Hop, frames: Sequence[Frame]) -> None:
    """Raise PacketMismatch if any frame matches ``hop`` (a path that must not exist)."""
    found = hop.find(frames)
    if found:
        want = f"no frame {hop.direction} at {hop.point} like {describe_template(hop.expect)}"
        raise PacketMismatch(explain(f"hop '{hop.name}' must not happen", expected=want, got=found))


_CHECKSUM_FIELDS = ("chksum", "cksum")  # scapy's names: IP, TCP, UDP, SCTP, ICMP / ICMPv6


def _layers(packet: Packet) -> list[Packet]:
    out = []
    layer: Any = packet
    while not isinstance(layer, NoPayload):
        out.append(layer)
        layer = layer.payload
    return out


def _is_quote(layer: Packet) -> bool:
    # scapy dissects the datagram an ICMP error quotes as IPerror, TCPerror, IPerror6...:
    # a truncated copy, not a packet of its own
    return type(layer).__name__.endswith(("error", "error6"))


def _no_udp_checksum(layer: Packet, value: int) -> bool:
    # RFC 768: over IPv4 a UDP checksum of 0 means none was computed
    return type(layer).__name__ == "UDP" and value == 0 and type(layer.underlayer).__name__ == "IP"


def checksum_errors(packet: Packet) -> list[str]:
    """Every checksum in a packet that its bytes do not give.

    Each header's checksum (the IPv4 header, TCP, UDP, SCTP's CRC32c, ICMP, at every
    level of an encapsulation) is recomputed by scapy from the captured bytes with
    that one field emptied, and compared with the captured value. What an ICMP
    error quotes is not checked.
    """
    errors = []
    for depth, layer in enumerate(_layers(packet)):
        if _is_quote(layer):
            break
        name = next((f for f in _CHECKSUM_FIELDS if f in layer.fields), None)
        if name is None:
            continue
        captured = layer.getfieldval(name)
        copy = packet.copy()
        _layers(copy)[depth].setfieldval(name, None)
        wanted = _layers(type(packet)(bytes(copy)))[depth].getfieldval(name)
        if captured != wanted and not _no_udp_checksum(layer, captured):
            errors.append(f"{type(layer).__name__}.{name} {captured:#x}, should be {wanted:#x}")
    return errors


def partial_checksum(layer: Packet) -> int:
    """The checksum field a sender leaves for the device to complete (CHECKSUM_PARTIAL):
    the folded sum of the pseudo-header alone (udp_set_csum: ~udp_v4_check(len, saddr,
    daddr, 0)), to which the device adds the segment's sum."""
    from scapy.layers.inet import in4_pseudoheader
    from scapy.layers.inet6 import in6_pseudoheader
    from scapy.utils import checksum

    under = layer.underlayer
    if type(under).__name__ == "IP":
        pseudo = in4_pseudoheader(under.proto, under, under.len - 4 * under.ihl)
    else:
        pseudo = in6_pseudoheader(under.nh, under, under.plen)
    return ~checksum(bytes(pseudo)) & 0xFFFF


def _fragment_key(packet: Packet) -> tuple | None:
    """What ties a fragment to its siblings (RFC 791 / RFC 8200), or None for a packet
    that is no fragment at its outermost network header."""
    name = type(packet).__name__
    if name == "IP" and (packet.frag or packet.flags.MF):
        return ("IP", packet.src, packet.dst, packet.proto, packet.id)
    if name == "IPv6" and type(packet.payload).__name__ == "IPv6ExtHdrFragment":
        return ("IPv6", packet.src, packet.dst, packet.payload.id)
    return None


def is_fragment(packet: Packet) -> bool:
    """True for an IPv4 or IPv6 packet that is a fragment at its outermost header."""
    return _fragment_key(packet) is not None


def _piece(packet: Packet) -> tuple[int, bool, int, bytes]:
    # (offset in bytes, more fragments, carried protocol, the fragment's data)
    if type(packet).__name__ == "IP":
        data = bytes(packet.payload)[: packet.len - 4 * packet.ihl]
        return 8 * packet.frag, bool(packet.flags.MF), packet.proto, data
    frag = packet.payload
    return 8 * frag.offset, bool(frag.m), frag.nh, bytes(frag.payload)


def reassembled(first: Packet, others: Iterable[Packet]) -> Packet:
    """``first`` (a network-layer packet) whole: itself when it is no fragment, else
    rebuilt from the fragments among ``others`` that share its identification; ``first``
    unchanged when they do not make the whole packet (a piece missing).

    Kept from ``first``: addresses, TOS / traffic class, flow label, TTL / hop limit.
    """
    key = _fragment_key(first)
    if key is None:
        return first
    pieces = sorted({_piece(p) for p in [first, *others] if _fragment_key(p) == key})
    data = b""
    for offset, more, _proto, chunk in pieces:
        if offset != len(data):  # a piece missing (the first one included)
            return first
        data += chunk
        if not more:
            break
    else:
        return first
    carried = pieces[0][2]  # the first piece names the carried protocol
    layer = type(first)
    if layer.__name__ == "IP":
        header = layer(src=first.src, dst=first.dst, tos=first.tos, ttl=first.ttl,
                       id=first.id, flags=int(first.flags) & ~1, proto=carried)  # fmt: skip
    else:
        header = layer(src=first.src, dst=first.dst, tc=first.tc, fl=first.fl,
                       hlim=first.hlim, nh=carried)  # fmt: skip
    return layer(bytes(header / Raw(data)))  # lengths and the IPv4 checksum computed anew
