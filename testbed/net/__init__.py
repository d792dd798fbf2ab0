"""On the wire: captures at every hop, expected packets, and real traffic from a host.

    with Capture({"d1-eth0": d1_pid, "r1-eth0": r1_pid}) as cap:
        ...                                      # traffic
    hops = request_hops(site, flow)              # the oracle: scapy templates per hop
    for hop in hops:
        expect_hop(hop, cap.frames())            # PacketMismatch: expected vs got

Connections come from a thread inside a client's namespace (``Connector``,
``StreamSet``, ``Prober``), so hundreds of them cost no process each.
"""

from ._capture import Capture, Frame, send_frames
from ._connector import LINGER_RST, Connector
from ._neighbours import Neighbours
from ._netns import enter_netns, read_sysctls, run_in_netns, write_sysctls
from ._packets import (
    Hop,
    PacketMismatch,
    checksum_errors,
    describe_template,
    expect_absent,
    expect_hop,
    is_fragment,
    matches,
    partial_checksum,
    reassembled,
)
from ._paths import (
    Site,
    TracedFlow,
    as_forwarded,
    carried,
    comparable,
    datagram_summary,
    forbidden_hops,
    reply_hops,
    request_hops,
)
from ._streams import Probe, Prober, StreamSet, Tracked

__all__ = [
    "LINGER_RST",
    "Capture",
    "Connector",
    "Frame",
    "Hop",
    "Neighbours",
    "PacketMismatch",
    "Probe",
    "Prober",
    "Site",
    "StreamSet",
    "TracedFlow",
    "Tracked",
    "as_forwarded",
    "carried",
    "checksum_errors",
    "comparable",
    "datagram_summary",
    "describe_template",
    "enter_netns",
    "expect_absent",
    "expect_hop",
    "forbidden_hops",
    "is_fragment",
    "matches",
    "partial_checksum",
    "read_sysctls",
    "reassembled",
    "reply_hops",
    "request_hops",
    "run_in_netns",
    "send_frames",
    "write_sysctls",
]
