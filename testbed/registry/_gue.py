"""Generic UDP Encapsulation as Linux writes it, as a scapy layer.

scapy has no GUE layer. This one follows include/net/gue.h (variant 0):
version (2 bits), control (1 bit), hlen (5 bits: optional fields in 32-bit
words), the carried protocol, 16 bits of flags; with GUE_FLAG_PRIV a 32-bit
private-flags field follows, and with GUE_PFLAG_REMCSUM there the remote
checksum offload option (the inner checksum's start and its field's offset,
both counted from the end of the GUE header). Sources: include/net/gue.h,
net/ipv4/fou_core.c (fou.c) gue_udp_recv, net/netfilter/ipvs/ip_vs_xmit.c
ipvs_gue_encap; draft-ietf-intarea-gue.
"""

from __future__ import annotations

from scapy.fields import BitField, ByteField, ConditionalField, IntField, ShortField
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet, Raw

GUE_FLAG_PRIV = 0x0001
GUE_PFLAG_REMCSUM = 0x80000000


def _private(pkt: Packet) -> bool:
    return bool(pkt.flags & GUE_FLAG_PRIV)


def _remcsum(pkt: Packet) -> bool:
    return _private(pkt) and bool(pkt.private_flags & GUE_PFLAG_REMCSUM)


class GUE(Packet):
    name = "GUE"
    fields_desc = [  # noqa: RUF012 (scapy reads a class attribute)
        BitField("version", 0, 2),
        BitField("control", 0, 1),
        BitField("hlen", 0, 5),
        ByteField("proto", 0),
        ShortField("flags", 0),
        ConditionalField(IntField("private_flags", 0), _private),
        ConditionalField(ShortField("csum_start", 0), _remcsum),
        ConditionalField(ShortField("csum_offset", 0), _remcsum),
    ]

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        return {4: IP, 41: IPv6}.get(self.proto, Raw)
