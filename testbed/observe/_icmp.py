"""Packets a client crafts (scapy), sent to the VIP, and what every hop then sees.

For the checks a real client cannot make on demand: a DF datagram just too
big for the tunnel, a datagram in fragments, an ICMP error about one of its
own flows. The packets leave the client's interface as raw frames addressed
to the director (ARP is not needed: its MAC is read from the cluster), while
every interface on the path is captured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from scapy.layers.l2 import Ether
from scapy.packet import Packet

from ..cluster import Cluster
from ..net import Frame, send_frames
from ._exchange import capture_points
from ._records import TraceHop, record, record_kind

SETTLE_S = 1.5  # errors, answers and forwarded fragments all arrive well within this


@record_kind("injection")
@dataclass(frozen=True, kw_only=True)
class InjectionRecord:
    """What a crafted packet from a client led to, hop by hop."""

    key: str
    sent: list[str]
    seen: list[TraceHop] = field(default_factory=list)


@dataclass(frozen=True)
class Injection:
    """Crafted packets sent to the VIP, and every frame captured meanwhile."""

    sent: list[Packet]
    frames: list[Frame]

    def at(self, point: str, direction: str) -> list[Frame]:
        return [f for f in self.frames if f.point == point and f.direction == direction]


def inject(cluster: Cluster, packets: list[Packet], *, key: str,
           settle: float = SETTLE_S) -> Injection:  # fmt: skip
    """Send network-layer ``packets`` from the first client to the active director (as
    frames on the outside segment), capturing every interface of the path."""
    spec = cluster.spec
    client, director = spec.clients[0].name, spec.active.name
    out = f"{client}-eth0"
    ether = Ether(src=cluster.mac(out), dst=cluster.mac(f"{director}-eth0"))
    with cluster.capture(*capture_points(spec)) as cap:
        send_frames(cluster.pid(client), out, [bytes(ether / p) for p in packets])
        time.sleep(settle)
    frames = cap.frames()
    record(
        InjectionRecord(
            key=key,
            sent=[p.summary() for p in packets],
            seen=[
                TraceHop(point=f.point, direction=f.direction, packet=f.packet.summary())
                for f in frames
                if f.direction != "flood"
            ][:60],
        )
    )
    return Injection(sent=packets, frames=frames)
