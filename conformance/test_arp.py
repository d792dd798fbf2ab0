"""The ARP problem of DR and TUN: real servers hold the VIP but must not claim it.

Runs for every forwarding mode whose real servers hold the VIP
(``Mode.vip_on_real_servers``); the others skip, saying why.
Source: LVS HOWTO "The ARP problem"; Documentation/networking/ip-sysctl.rst
(arp_ignore=1: reply only if the target IP is configured on the incoming
interface; arp_announce=2: always use the best local address as ARP source).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from scapy.layers.l2 import ARP, Ether

from conformance.conftest import skip_unless_available
from testbed import Cluster
from testbed.net import Frame, send_frames
from testbed.registry import Mode

PROBES = 3


def arp_replies_for_vip(cluster: Cluster) -> list[Frame]:
    """Ask "who has VIP?" on the real servers' segment; return every reply sent."""
    spec = cluster.spec
    gw, vip = spec.router, str(spec.service.vip)
    prober = f"{gw.name}-eth1"
    mac = cluster.mac(prober)
    request = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op="who-has", hwsrc=mac, psrc=str(gw.inside), pdst=vip
    )
    points = [prober, f"{spec.active.name}-eth1", *(f"{r.name}-eth0" for r in spec.real_servers)]
    with cluster.capture(*points) as cap:
        send_frames(cluster.pid(gw.name), prober, [bytes(request)] * PROBES)
        time.sleep(1.0)
    return [
        f
        for f in cap.frames()
        if f.direction == "out" and ARP in f.packet and f.packet[ARP].op == 2
        and f.packet[ARP].psrc == vip
    ]  # fmt: skip


@pytest.fixture(scope="module")
def vip_on_real_servers(mode: Mode, cluster: Cluster) -> Iterator[Cluster]:
    if not mode.vip_on_real_servers:
        pytest.skip(f"{mode.title}: real servers do not hold the VIP, so there is no ARP problem")
    skip_unless_available(cluster, needed_by=mode.title, mode=mode.name)
    cluster.configure(cluster.base_spec.with_service(mode=mode.name, scheduler="rr"))
    yield cluster


def test_only_the_director_answers_arp_for_the_vip(vip_on_real_servers: Cluster) -> None:
    """With the VIP on every real server, only the director answers ARP for it.

    Source: LVS HOWTO "The ARP problem"; ip-sysctl.rst arp_ignore=1,
    arp_announce=2 on the real servers (set by the testbed for DR and TUN).
    """
    cluster = vip_on_real_servers
    replies = arp_replies_for_vip(cluster)
    senders = sorted({f.point for f in replies})
    director_if = f"{cluster.spec.active.name}-eth1"
    assert senders == [director_if], (
        f"ARP replies for {cluster.spec.service.vip} came from {senders or 'nobody'}, "
        f"expected only {director_if}:\n" + "\n".join(f.summary() for f in replies)
    )
    assert len(replies) == PROBES, f"{PROBES} requests, {len(replies)} director replies"


def test_arp_problem_is_real_without_the_sysctls(vip_on_real_servers: Cluster) -> None:
    """Control: with arp_ignore=0 a real server holding the VIP does answer ARP for it.

    This shows the check above can fail, and why the sysctls exist.
    Source: ip-sysctl.rst arp_ignore=0 (default) "reply for any local target
    IP address, configured on any interface".
    """
    cluster = vip_on_real_servers
    rs = cluster.spec.real_servers[0]
    cluster.run(rs.name, *cluster.spec.service.family.claim_defaults(f"{rs.name}-eth0"))
    try:
        replies = arp_replies_for_vip(cluster)
    finally:
        cluster.configure(cluster.spec)  # restore the mode's real-server setup
    senders = {f.point for f in replies}
    assert f"{rs.name}-eth0" in senders, (
        f"{rs.name} with arp_ignore=0 did not answer ARP for the VIP; repliers: {senders}"
    )
