"""Who claims the VIP on the real servers' segment (the ARP problem of DR and TUN).

Sources: LVS HOWTO "The ARP problem"; ip-sysctl.rst (arp_ignore); RFC 4861 7.2.3.
"""

from __future__ import annotations

import time

from ..cluster import Cluster
from ..net import Frame, send_frames

VIP_PROBES = 3  # solicitations sent: each claimant answers every one


def vip_claims(cluster: Cluster) -> list[Frame]:
    """Ask "who has the VIP?" (ARP, or neighbour solicitation for IPv6) from the router
    on the inside segment; every claim a director or real server sends back."""
    spec = cluster.spec
    gw, vip, family = spec.router, str(spec.service.vip), spec.service.family
    prober = f"{gw.name}-eth1"
    request = family.solicitation(cluster.mac(prober), str(gw.inside), vip)
    points = [prober, *(f"{d.name}-eth1" for d in spec.directors),
              *(f"{r.name}-eth0" for r in spec.real_servers)]  # fmt: skip
    with cluster.capture(*points) as cap:
        send_frames(cluster.pid(gw.name), prober, [bytes(request)] * VIP_PROBES)
        time.sleep(1.0)
    return [f for f in cap.frames() if f.direction == "out" and family.claims(f.packet, vip)]
