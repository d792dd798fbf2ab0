"""The ARP problem of DR and TUN, and its IPv6 counterpart: real servers hold the VIP
but must not claim it on their segment.

Runs for every forwarding mode whose real servers hold the VIP
(``Mode.vip_on_real_servers``; the others skip, saying why) and every
address family: ARP for IPv4, neighbour discovery for IPv6. A solicitation
for the VIP is sent on the real servers' segment; only the director may
answer it. For IPv4 the real servers' sysctls make that so; for IPv6
Linux's own rule does (it answers only for addresses on the receiving
interface, and the VIP is on lo or a tunnel device), and each control shows
that the rule is what keeps the real servers quiet.
Sources: LVS HOWTO "The ARP problem"; Documentation/networking/ip-sysctl.rst
(arp_ignore=1: reply only if the target IP is configured on the incoming
interface; arp_announce=2: always use the best local address as ARP source);
RFC 4861 7.2.3 and net/ipv6/ndisc.c ndisc_recv_ns (a solicitation is
answered for an address assigned to the receiving interface).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conformance.conftest import skip_unless_available, skip_unless_family
from testbed import Cluster
from testbed.observe import VIP_PROBES, vip_claims
from testbed.registry import Family, Mode

# its checks hold on a busy guest (it may run beside another run: conftest.py)
pytestmark = pytest.mark.tolerates_load


@pytest.fixture(scope="module")
def vip_on_real_servers(mode: Mode, family: Family, cluster: Cluster) -> Iterator[Cluster]:
    if not mode.vip_on_real_servers:
        pytest.skip(
            f"{mode.title}: real servers do not hold the VIP, so there is no "
            f"{family.neighbour_protocol} problem"
        )
    skip_unless_family(cluster, family)
    skip_unless_available(cluster, needed_by=f"{mode.title} {family.title}", family=family,
                          mode=mode.name)  # fmt: skip
    base = cluster.base_spec.in_family(family)
    cluster.configure(base.with_service(mode=mode.name, scheduler="rr"))
    yield cluster


def test_only_the_director_answers_for_the_vip(vip_on_real_servers: Cluster) -> None:
    """With the VIP on every real server, no real server claims it; the director does
    where its family answers for addresses of other interfaces (ARP's weak host).

    Source: LVS HOWTO "The ARP problem"; ip-sysctl.rst arp_ignore=1,
    arp_announce=2 on the real servers (set by the testbed for DR and TUN);
    for IPv6 ndisc.c ndisc_recv_ns, which answers only for the receiving
    interface's addresses (the director holds the VIP on its outside one).
    """
    cluster = vip_on_real_servers
    family = cluster.spec.service.family
    claims = vip_claims(cluster)
    senders = sorted({f.point for f in claims})
    director_if = f"{cluster.spec.active.name}-eth1"
    expected = [director_if] if family.claims_for_other_interfaces else []
    assert senders == expected, (
        f"{family.neighbour_protocol} claims of {cluster.spec.service.vip} came from "
        f"{senders or 'nobody'}, expected {expected or 'nobody'}:\n"
        + "\n".join(f.summary() for f in claims)
    )
    assert len(claims) == VIP_PROBES * len(expected), (
        f"{VIP_PROBES} solicitations, {len(claims)} director claims"
    )


def test_the_problem_is_real_without_the_precaution(vip_on_real_servers: Cluster) -> None:
    """Control: a real server whose VIP is exposed to its segment does claim it.

    IPv4: with arp_ignore=0 a real server holding the VIP on lo answers ARP for
    it ("reply for any local target IP address, configured on any interface").
    IPv6: with the VIP on its segment's interface a real server answers the
    solicitation. This shows the check above can fail, and why the precaution
    exists. Source: ip-sysctl.rst arp_ignore; RFC 4861 7.2.3.
    """
    cluster = vip_on_real_servers
    spec = cluster.spec
    rs, family = spec.real_servers[0], spec.service.family
    vip = f"{spec.service.vip}/{family.host_prefix}"
    cluster.run(rs.name, *family.expose_vip(f"{rs.name}-eth0", vip))
    try:
        claims = vip_claims(cluster)
    finally:
        cluster.configure(cluster.spec)  # restore the mode's real-server setup
    senders = {f.point for f in claims}
    assert f"{rs.name}-eth0" in senders, (
        f"{rs.name} with the VIP exposed did not claim it; claimers: {senders}"
    )
