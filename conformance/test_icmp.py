"""PMTU, ICMP errors and fragments: the packets a real client cannot make on demand.

A client's crafted packets (scapy) go to the VIP while every hop is captured:
a DF datagram that no longer fits once the director encapsulates it, an ICMP
error about one of the client's flows, a datagram in fragments; and a real
server's own ICMP error (a port nobody listens on) on its way back.
Sources: Documentation/networking/ipvs-sysctl.rst (pmtu_disc);
net/netfilter/ipvs/ip_vs_xmit.c (ensure_mtu_is_adequate, ip_vs_icmp_xmit,
ip_vs_nat_icmp); ip_vs_core.c (ip_vs_in_icmp, ip_vs_out_icmp: an error is
matched to its connection through the datagram it quotes);
net/ipv4/ip_input.c ip_local_deliver (fragments for a local address, the VIP,
are reassembled before LOCAL_IN, where IPVS hooks); RFC 1191, RFC 8201.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror, fragment
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6PacketTooBig,
    IPerror6,
    IPv6,
    IPv6ExtHdrFragment,
    fragment6,
)
from scapy.packet import Packet, Raw

from conformance.conftest import skip_unless_family
from loadgen.wire import REQUEST
from testbed import Cluster
from testbed.net import is_fragment
from testbed.observe import Injection, fresh_client_port, inject
from testbed.registry import FAMILIES, MODES, PROTOCOLS, Family, Mode
from testbed.topology import ClusterSpec

pytestmark = pytest.mark.tolerates_load  # packets in captures, no time measured

UDP_ = PROTOCOLS["udp"]
TUN = next(m for m in MODES.values() if m.encapsulates)
NAT = next(m for m in MODES.values() if m.rewrites_destination)
CLOSED_PORT = 9  # a port no real server listens on (discard)
MTU = 1500  # every link of the testbed


def _spec(cluster: Cluster, family: Family, mode: Mode, **service: object) -> ClusterSpec:
    base = cluster.base_spec.in_family(family)
    return base.with_service(mode=mode.name, protocol=UDP_.name, scheduler="rr", **service)


def _request(spec: ClusterSpec, sport: int, size: int, **ip: object) -> Packet:
    """A UDP request to the VIP of ``size`` bytes in all (network header included)."""
    s, fam = spec.service, spec.service.family
    header = fam.layer(src=str(spec.clients[0].ip), dst=str(s.vip), **ip) / UDP(
        sport=sport, dport=s.port
    )
    pad = size - len(bytes(header)) - len(REQUEST)
    return fam.layer(bytes(header / Raw(REQUEST + b" " * pad)))


def _icmp_errors(frames: list, family: Family) -> list[Packet]:
    layer = ICMP if family.version == 4 else (ICMPv6PacketTooBig, ICMPv6DestUnreach)
    kinds = layer if isinstance(layer, tuple) else (layer,)
    return [f.packet for f in frames if any(k in f.packet for k in kinds)]


def _flush_path_mtu(cluster: Cluster) -> None:
    """The client learnt a path MTU from the director's error: forget it for later tests."""
    client = cluster.spec.clients[0].name
    cluster.run(client, "ip route flush cache; ip -6 route flush cache", check=False)


# -- path MTU through the tunnel ------------------------------------------------------------


def _df_datagram_through_the_tunnel(cluster: Cluster, pmtu_disc: int) -> Iterator[Injection]:
    """IPv4 TUN with net.ipv4.vs.pmtu_disc set: a DF datagram of the link's MTU, which
    fits the link but not the tunnel. The sysctl and the client's path MTU are put back."""
    spec = _spec(cluster, FAMILIES["ipv4"], TUN)
    cluster.configure(spec)
    d = spec.active.name
    cluster.run(d, f"sysctl -qw net.ipv4.vs.pmtu_disc={pmtu_disc}")
    try:
        sent = _request(spec, fresh_client_port(cluster), MTU, flags="DF")
        yield inject(cluster, [sent], key=f"pmtu-ipv4-disc{pmtu_disc}")
    finally:
        cluster.run(d, "sysctl -qw net.ipv4.vs.pmtu_disc=1")  # the default
        _flush_path_mtu(cluster)


@pytest.fixture(scope="module")
def pmtu_disc_on(cluster: Cluster) -> Iterator[Injection]:
    yield from _df_datagram_through_the_tunnel(cluster, 1)


def test_df_datagram_too_big_for_the_tunnel_gets_fragmentation_needed(
    pmtu_disc_on: Injection, cluster: Cluster
) -> None:
    """A DF datagram that fits the link but not the tunnel is answered with ICMP
    "fragmentation needed" from the VIP, naming the tunnel's MTU (the link's minus the
    20-byte outer header); nothing is forwarded.

    Source: ipvs-sysctl.rst pmtu_disc ("... sends ICMP FRAG_NEEDED"); ip_vs_xmit.c
    ensure_mtu_is_adequate (icmp_send(ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, mtu)),
    ip_vs_tunnel_xmit (mtu = dst_mtu - sizeof(struct iphdr)); RFC 1191.
    """
    spec = cluster.spec
    client, d = spec.clients[0].name, spec.active.name
    errors = _icmp_errors(pmtu_disc_on.at(f"{client}-eth0", "in"), spec.service.family)
    assert errors, f"the client got no ICMP error; sent {pmtu_disc_on.sent[0].summary()}"
    err = errors[0]
    assert (err[ICMP].type, err[ICMP].code) == (3, 4), f"expected type 3 code 4: {err.summary()}"
    assert err[ICMP].nexthopmtu == MTU - 20, f"MTU {err[ICMP].nexthopmtu}, expected {MTU - 20}"
    assert err[IP].src == str(spec.service.vip), f"the error came from {err[IP].src}"
    sport = pmtu_disc_on.sent[0][UDP].sport
    assert err[IPerror].dst == str(spec.service.vip) and err[UDPerror].sport == sport
    forwarded = [f for f in pmtu_disc_on.at(f"{d}-eth1", "out") if UDP_.is_opening(f.packet)]
    assert not forwarded, f"forwarded anyway: {[f.summary() for f in forwarded]}"


@pytest.fixture(scope="module")
def pmtu_disc_off(cluster: Cluster) -> Iterator[Injection]:
    yield from _df_datagram_through_the_tunnel(cluster, 0)


def test_with_pmtu_disc_off_the_tunnel_fragments_instead(
    pmtu_disc_off: Injection, cluster: Cluster
) -> None:
    """With pmtu_disc=0 no error is sent: the encapsulation is sent in fragments (its
    DF cleared), the real server reassembles it, decapsulates and answers.

    Source: ipvs-sysctl.rst pmtu_disc ("0 - disabled ... fragment them");
    ip_vs_xmit.c ensure_mtu_is_adequate ("If we're going to tunnel the packet and
    pmtu discovery is disabled, we'll just fragment it anyway"), ip_vs_tunnel_xmit
    (df only when sysctl_pmtu_disc).
    """
    spec = cluster.spec
    client, d = spec.clients[0].name, spec.active.name
    assert not _icmp_errors(pmtu_disc_off.at(f"{client}-eth0", "in"), spec.service.family)
    out = [f.packet[IP] for f in pmtu_disc_off.at(f"{d}-eth1", "out") if IP in f.packet]
    pieces = [p for p in out if p.flags.MF or p.frag > 0]
    assert len(pieces) >= 2, f"no outer fragments at {d}-eth1: {[p.summary() for p in out]}"
    assert all(not p.flags.DF for p in pieces), "an outer fragment carries DF"
    answers = [f for f in pmtu_disc_off.at(f"{client}-eth0", "in") if UDP_.is_answer(f.packet)]
    assert answers, "the real server did not answer the fragmented encapsulation"


@pytest.fixture(scope="module")
def too_big_v6(cluster: Cluster) -> Iterator[Injection]:
    skip_unless_family(cluster, FAMILIES["ipv6"])
    spec = _spec(cluster, FAMILIES["ipv6"], TUN)
    cluster.configure(spec)
    sent = _request(spec, fresh_client_port(cluster), MTU)
    yield inject(cluster, [sent], key="pmtu-ipv6")
    _flush_path_mtu(cluster)


def test_ipv6_datagram_too_big_for_the_tunnel_gets_packet_too_big(
    too_big_v6: Injection, cluster: Cluster
) -> None:
    """IPv6 has no DF and routers never fragment: a datagram that does not fit the
    tunnel is answered with "packet too big" naming the MTU (the link's minus the
    40-byte outer header), whatever pmtu_disc says (an IPv4 sysctl).

    Source: ip_vs_xmit.c ensure_mtu_is_adequate (AF_INET6: icmpv6_send
    ICMPV6_PKT_TOOBIG), ip_vs_tunnel_xmit_v6; RFC 8201, RFC 4443 3.2.
    """
    spec = cluster.spec
    client, d = spec.clients[0].name, spec.active.name
    errors = [p for p in _icmp_errors(too_big_v6.at(f"{client}-eth0", "in"), spec.service.family)
              if ICMPv6PacketTooBig in p]  # fmt: skip
    assert errors, "the client got no packet-too-big"
    err = errors[0]
    assert err[ICMPv6PacketTooBig].mtu == MTU - 40, f"MTU {err[ICMPv6PacketTooBig].mtu}"
    assert err[IPv6].src == str(spec.service.vip) and err[IPerror6].dst == str(spec.service.vip)
    forwarded = [f for f in too_big_v6.at(f"{d}-eth1", "out") if UDP_.is_opening(f.packet)]
    assert not forwarded, f"forwarded anyway: {[f.summary() for f in forwarded]}"


# -- ICMP errors about a flow -----------------------------------------------------------------


@pytest.fixture(scope="module")
def client_error(mode: Mode, cluster: Cluster) -> tuple[Injection, str]:
    """A UDP flow from a fresh client port, then the client's "port unreachable"
    about the answer (as if its port had closed meanwhile); the flow's real server."""
    spec = _spec(cluster, FAMILIES["ipv4"], mode)
    cluster.configure(spec)
    client, port = spec.clients[0], fresh_client_port(cluster)
    ask = f"{UDP_.client(spec.service.endpoint, 1)} {UDP_.client_port_option} {port}"
    [server] = [line.strip() for line in cluster.run(client.name, ask).splitlines()][:1]
    assert server, "the flow's datagram got no answer"
    s = spec.service
    quoted = IP(src=str(s.vip), dst=str(client.ip)) / UDP(sport=s.port, dport=port)
    error = IP(src=str(client.ip), dst=str(s.vip)) / ICMP(type=3, code=3) / quoted
    return inject(cluster, [error], key=f"icmp-from-client-{mode.name}"), server


def test_a_clients_icmp_error_reaches_the_flows_real_server(
    client_error: tuple[Injection, str], cluster: Cluster
) -> None:
    """An ICMP error from the client about one of its flows goes to that flow's real
    server, and only to it; in a rewriting mode the datagram it quotes is rewritten
    to the real server's address and port, otherwise it is left as sent.

    Source: ip_vs_core.c ip_vs_in_icmp (the connection is found from the quoted
    datagram, inverted); ip_vs_xmit.c ip_vs_icmp_xmit, ip_vs_nat_icmp.
    """
    injection, server = client_error
    spec = cluster.spec
    rs = spec.real_server(server)
    got = {r.name: [f.packet for f in injection.at(f"{r.name}-eth0", "in") if ICMP in f.packet]
           for r in spec.real_servers}  # fmt: skip
    assert got[server], f"{server}, the flow's real server, got no ICMP error"
    others = {n: len(p) for n, p in got.items() if p and n != server}
    assert not others, f"other real servers got the error too: {others}"
    quoted = got[server][0][IPerror]
    s = spec.service
    rewritten = s.forwarding.rewrites_destination
    src, sport = (str(rs.ip), s.real_port) if rewritten else (str(s.vip), s.port)
    assert (quoted.src, quoted[UDPerror].sport) == (src, sport), (
        f"{s.forwarding.title}: the error quotes {quoted.src}:{quoted[UDPerror].sport}, "
        f"expected {src}:{sport}"
    )


@pytest.fixture(scope="module")
def closed_port(mode: Mode, cluster: Cluster) -> Injection:
    """A datagram to a service whose real servers do not listen on its port."""
    spec = _spec(cluster, FAMILIES["ipv4"], mode, port=CLOSED_PORT, nat_port=None)
    cluster.configure(spec)
    sent = _request(spec, fresh_client_port(cluster), 100)
    return inject(cluster, [sent], key=f"closed-port-{mode.name}")


def test_a_real_servers_icmp_error_comes_back_from_the_vip(
    closed_port: Injection, cluster: Cluster
) -> None:
    """A real server's "port unreachable" reaches the client from the VIP, quoting the
    datagram the client sent to the VIP: in NAT the director rewrites it on its way
    back; in DR and TUN the real server holds the VIP and answers from it, straight
    through the router.

    Source: ip_vs_core.c ip_vs_out_icmp (NAT: the quoted datagram and the outer
    source rewritten back, ip_vs_nat_icmp); RFC 1122 3.2.2.1 (an error's source is
    the address the datagram was sent to); ipvsadm(8) on the reply paths.
    """
    spec = cluster.spec
    s, mode = spec.service, spec.service.forwarding
    client = spec.clients[0].name
    errors = [f for f in closed_port.at(f"{client}-eth0", "in") if ICMP in f.packet]
    assert errors, "the client got no port-unreachable"
    err = errors[0].packet
    assert (err[ICMP].type, err[ICMP].code) == (3, 3) and err[IP].src == str(s.vip), (
        f"{mode.title}: {err.summary()} (expected port unreachable from {s.vip})"
    )
    assert (err[IPerror].dst, err[UDPerror].dport) == (str(s.vip), CLOSED_PORT), err.summary()
    hop = spec.active.name if mode.reply_via_director else spec.router.name
    assert err.src == cluster.mac(f"{hop}-eth0"), (
        f"{mode.title}: the error came through {err.src}, expected {hop}"
    )


@pytest.fixture(scope="module", params=[0, 1], ids=lambda v: f"schedule_icmp={v}")
def stray_error(request: pytest.FixtureRequest, cluster: Cluster) -> tuple[Injection, int]:
    """The client's "port unreachable" about an answer from the VIP to a port that has
    no connection entry (NAT, UDP), with net.ipv4.vs.schedule_icmp 0 or 1."""
    spec = _spec(cluster, FAMILIES["ipv4"], NAT)
    cluster.configure(spec)
    director, value = spec.active.name, request.param
    before = cluster.run(director, "sysctl -n net.ipv4.vs.schedule_icmp").strip()
    s, client = spec.service, spec.clients[0]
    quoted = IP(src=str(s.vip), dst=str(client.ip)) / UDP(
        sport=s.port, dport=fresh_client_port(cluster)
    )
    error = IP(src=str(client.ip), dst=str(s.vip)) / ICMP(type=3, code=3) / quoted
    try:
        cluster.run(director, f"sysctl -qw net.ipv4.vs.schedule_icmp={value}")
        return inject(cluster, [error], key=f"stray-icmp-schedule_icmp={value}"), value
    finally:
        cluster.run(director, f"sysctl -qw net.ipv4.vs.schedule_icmp={before}")


def test_an_icmp_error_without_a_connection_is_scheduled_only_with_schedule_icmp(
    stray_error: tuple[Injection, int], cluster: Cluster
) -> None:
    """An ICMP error quoting a datagram of no connection the director knows is left to
    the director's own stack with schedule_icmp 0 (no real server gets it); with 1 it
    is scheduled like a new connection of the flow it quotes, and exactly one real
    server gets it, its quoted datagram rewritten to that server.

    Source: ipvs-sysctl.rst schedule_icmp; ip_vs_core.c ip_vs_in_icmp
    (ip_vs_try_to_schedule when no connection is found and schedule_icmp is set).
    """
    injection, value = stray_error
    spec = cluster.spec
    got = {r.name for r in spec.real_servers
           for f in injection.at(f"{r.name}-eth0", "in") if ICMP in f.packet}  # fmt: skip
    if value == 0:
        assert not got, f"schedule_icmp=0, yet real servers got the error: {sorted(got)}"
        return
    assert len(got) == 1, f"schedule_icmp=1: the error reached {sorted(got) or 'no real server'}"
    [name] = got
    [error] = [f.packet for f in injection.at(f"{name}-eth0", "in") if ICMP in f.packet][:1]
    rs = spec.real_server(name)
    quoted = error[IPerror]
    assert (quoted.src, quoted[UDPerror].sport) == (str(rs.ip), spec.service.real_port), (
        f"the scheduled error quotes {quoted.src}:{quoted[UDPerror].sport}"
    )


# -- fragments --------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=list(FAMILIES.values()), ids=list(FAMILIES))
def fragmented(request: pytest.FixtureRequest, cluster: Cluster) -> Injection:
    """A 3,000-byte request to the VIP in NAT, sent as fragments of at most 1,000."""
    family: Family = request.param
    skip_unless_family(cluster, family)
    spec = _spec(cluster, family, NAT)
    cluster.configure(spec)
    whole = _request(spec, fresh_client_port(cluster), 3000)
    if family.version == 4:
        pieces = fragment(whole, fragsize=1000)
    else:
        pieces = fragment6(IPv6(src=whole.src, dst=whole.dst) / IPv6ExtHdrFragment()
                           / whole[UDP], 1000)  # fmt: skip
    return inject(cluster, list(pieces), key=f"fragments-{family.name}")


def _is_request_piece(packet: Packet, net: type[Packet]) -> bool:
    """A UDP datagram or a fragment of one, not an ICMP message."""
    if net not in packet or ICMP in packet or packet[net].payload.name.startswith("ICMPv6"):
        return False
    return UDP in packet or is_fragment(packet[net])


def test_fragments_to_the_vip_are_scheduled_as_one_datagram(
    fragmented: Injection, cluster: Cluster
) -> None:
    """A datagram in fragments is one connection: the director reassembles it before
    IPVS sees it (the VIP is a local address), schedules it once, rewrites it, and the
    real server gets all of it and answers.

    Source: net/ipv4/ip_input.c ip_local_deliver (ip_defrag before LOCAL_IN);
    net/ipv6/netfilter/nf_defrag_ipv6 (IPv6, pulled in by IPVS);
    ip_vs_core.c ip_vs_in_hook (IPVS at LOCAL_IN).
    """
    spec = cluster.spec
    net = spec.service.family.layer
    client = spec.clients[0].name
    answers = [f for f in fragmented.at(f"{client}-eth0", "in") if UDP_.is_answer(f.packet)]
    assert len(answers) == 1, f"{len(answers)} answers to one fragmented request"
    # the request's pieces only: a neighbour probe to a real server is no piece of it
    pieces = {
        r.name: [f.packet.summary() for f in fragmented.at(f"{r.name}-eth0", "in")
                 if _is_request_piece(f.packet, net) and f.packet[net].dst == str(r.ip)]
        for r in spec.real_servers
    }  # fmt: skip
    reached = sorted(name for name, got in pieces.items() if got)
    seen = "; ".join(f"{name} got {got}" for name, got in pieces.items() if got)
    assert len(reached) == 1, f"the request's pieces reached {reached or 'nobody'}: {seen}"
