"""Forwarding modes, hop by hop, on real kernel IPVS: one exchange per service shape.

Every test runs once per selected (mode, protocol, family, checksums)
combination against the same captured exchange: a real client makes 2 x N
requests to the VIP, one connection each (a TCP connection, an SCTP
association, or a UDP datagram from a new port), while every interface on
the path is captured. The expected packets come from the registry entries'
declared parameters (testbed.net's oracle), never from a mode's name.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from scapy.packet import Packet

from testbed.ipvs import parse_ipvsadm, rows_from_netlink
from testbed.net import (
    PacketMismatch,
    as_forwarded,
    carried,
    checksum_errors,
    comparable,
    datagram_summary,
    expect_absent,
    expect_hop,
    forbidden_hops,
    reply_hops,
    request_hops,
)
from testbed.observe import Exchange

# its checks hold on a busy guest (it may run beside another run: conftest.py)
pytestmark = pytest.mark.tolerates_load

COUNTER_SETTLE_S = 30


def _flows_ok(ex: Exchange) -> None:
    assert ex.flows, f"no client opening packet was captured ({len(ex.frames)} frames seen)"
    lost = [f for f in ex.flows if f.rs == "?"]
    if lost:
        raise PacketMismatch(
            f"{len(lost)} of {len(ex.flows)} connections never reached a real server: "
            f"client ports {[f.sport for f in lost]}"
        )


def test_client_reaches_every_real_server_in_rr_order(exchange: Exchange) -> None:
    """rr hands connections to real servers in turn, in the kernel's list order.

    Source: ipvsadm(8) "Round Robin: distributes jobs equally amongst the
    available real servers"; net/netfilter/ipvs/ip_vs_rr.c walks
    svc->destinations circularly from the last choice, and the netlink dump
    lists that same list.
    """
    order = [d.addr for d in exchange.state.dests]
    names = {str(r.ip): r.name for r in exchange.cluster.spec.real_servers}
    ring = [names[a] for a in order]
    got = exchange.responses
    assert "" not in got, f"some requests failed: responses {got}"
    start = ring.index(got[0])
    expected = [ring[(start + i) % len(ring)] for i in range(len(got))]
    assert got == expected, f"rr order: expected {expected}, got {got} (kernel list {ring})"
    assert set(got) == set(ring), f"not every real server answered: {Counter(got)}"


def test_request_is_rewritten_as_the_mode_specifies(exchange: Exchange) -> None:
    """Client -> director packet goes to the VIP; director -> real server is rewritten per mode.

    NAT rewrites destination IP and port to the real server's; DR keeps the
    IP packet and changes only the destination MAC; TUN wraps it in the real
    server's tunnel (IP-in-IP: outer source = director, outer destination =
    real server).
    Source: ipvsadm(8) -m/-g/-i; net/netfilter/ipvs/ip_vs_xmit.c
    (ip_vs_nat_xmit, ip_vs_dr_xmit, ip_vs_tunnel_xmit).
    """
    _flows_ok(exchange)
    for flow in exchange.flows:
        for hop in request_hops(exchange.site, flow):
            expect_hop(hop, exchange.frames)


def test_director_changes_only_what_the_mode_allows(exchange: Exchange) -> None:
    """The forwarded datagram equals the received one, except for what the mode rewrites.

    NAT: destination address and port become the real server's. DR: the IP
    datagram is kept (only the Ethernet frame is readdressed). TUN: the
    datagram is carried unchanged inside the tunnel. In every mode the director
    is a forwarding hop and decrements the TTL (and fixes the IP checksum).
    Source: ipvsadm(8) -m/-g/-i; net/netfilter/ipvs/ip_vs_xmit.c
    (ip_vs_nat_xmit, ip_vs_dr_xmit, ip_vs_tunnel_xmit, decrement_ttl).
    The transport checksum is not compared here (with offload it is partial);
    test_checksums_are_final_at_every_hop checks it where senders compute it.
    """
    _flows_ok(exchange)
    site, shape = exchange.site, exchange.shape
    net, proto = shape.family.layer, shape.protocol

    def opening(sport: int, point: str, direction: str, **ip: str) -> list[Packet]:
        return [
            f.packet[net]
            for f in exchange.transport_frames(point, direction, **ip)
            if proto.is_opening(f.packet) and proto.ports(f.packet)[0] == sport
        ]

    for flow in exchange.flows:
        received = opening(flow.sport, f"{site.director}-eth0", "in", dst=site.vip)
        sent = opening(flow.sport, f"{site.director}-eth1", "out")
        assert received and sent, (
            f"opening packet of client port {flow.sport} not seen on both sides"
        )
        forwarded = carried(site, flow, sent[0])
        expected = as_forwarded(site, flow, received[0])
        assert comparable(site, forwarded) == comparable(site, expected), (
            f"{shape.mode.title}: the director changed more (or less) than the mode allows\n"
            f"  received:  {datagram_summary(site, received[0])}\n"
            f"  expected:  {datagram_summary(site, expected)}\n"
            f"  forwarded: {datagram_summary(site, forwarded)}\n"
            f"  expected bytes:  {comparable(site, expected).hex()}\n"
            f"  forwarded bytes: {comparable(site, forwarded).hex()}"
        )


def test_checksums_are_final_at_every_hop(exchange: Exchange) -> None:
    """With checksums computed by the stack, every one is valid at every hop, the
    director's rewrites included.

    A rewriting director must update the transport checksum (the pseudo-header
    holds the addresses, and NAT changes address and port): incrementally for
    TCP and UDP, by recomputing SCTP's CRC32c. Source: RFC 1624 (incremental
    update), RFC 9260 appendix A (CRC32c); net/netfilter/ipvs/ip_vs_proto_tcp.c
    tcp_dnat_handler/tcp_snat_handler, ip_vs_proto_udp.c, ip_vs_proto_sctp.c
    sctp_dnat_handler/sctp_nat_csum.
    """
    if reason := exchange.shape.checksums.unverifiable_because:
        pytest.skip(reason)
    _flows_ok(exchange)
    layer = exchange.shape.protocol.layer
    checked, bad = 0, []
    for frame in exchange.frames:
        if frame.direction == "flood" or layer not in frame.packet:
            continue
        checked += 1
        if errors := checksum_errors(frame.packet):
            bad.append(f"  {frame.summary()}: {'; '.join(errors)}")
    assert checked, f"no {exchange.shape.protocol.title} frame was captured"
    assert not bad, f"{len(bad)} of {checked} frames carry a wrong checksum:\n" + "\n".join(
        bad[:25]
    )


def test_reply_takes_the_mode_specific_path(exchange: Exchange) -> None:
    """Replies come from the VIP; NAT replies pass the director, DR/TUN replies never do.

    Source: ipvsadm(8); LVS-NAT "the real servers' replies go back through the
    load balancer, which rewrites the source address to the virtual IP";
    LVS-DR and LVS-Tun "real servers reply directly to the user".
    """
    _flows_ok(exchange)
    for flow in exchange.flows:
        for hop in reply_hops(exchange.site, flow):
            expect_hop(hop, exchange.frames)
        for hop in forbidden_hops(exchange.site, flow):
            expect_absent(hop, exchange.frames)


def test_ipvs_counters_match_the_traffic(exchange: Exchange) -> None:
    """The director's IPVS counters equal what the captures saw.

    conns = connections scheduled; inpkts/inbytes = client packets (IP length)
    that reached the director for the VIP; outpkts = replies it handled (only
    where replies pass the director, as in NAT; DR/TUN replies bypass it). Per
    real server: conns = flows it got.
    Source: ipvsadm(8) --stats; include/uapi/linux/ip_vs.h IPVS_STATS_ATTR_*;
    net/netfilter/ipvs/ip_vs_core.c ip_vs_in_stats/ip_vs_out_stats. The dump
    shows kstats, refreshed by the estimator (ip_vs_ctl.c ip_vs_copy_stats,
    ip_vs_est.c), so the kernel side is polled for up to 30 s. A real server added
    while older connections still hold its entry comes back from the kernel's trash
    with its counters (ip_vs_ctl.c ip_vs_trash_get_dest): what it brings is subtracted.
    """
    _flows_ok(exchange)
    site, shape = exchange.site, exchange.shape
    proto = shape.protocol
    inbound = exchange.transport_frames(f"{site.director}-eth0", "in", dst=site.vip)
    inbound = [f for f in inbound if proto.ports(f.packet)[1] == site.port]
    replies = []
    if shape.mode.reply_via_director:
        replies = exchange.transport_frames(f"{site.director}-eth1", "in")
        replies = [f for f in replies if proto.ports(f.packet)[0] == site.real_port]
    observed = {
        "conns": len(exchange.flows),
        "inpkts": len(inbound),
        "inbytes": sum(shape.family.length(f.packet) for f in inbound),
        "outpkts": len(replies),
        "outbytes": sum(shape.family.length(f.packet) for f in replies),
    }
    # The exported counters are sums the estimator refreshes (every 2 s; since
    # Linux 6.2 in kthreads that start after a calibration phase): poll.
    state = exchange.state
    deadline = time.monotonic() + COUNTER_SETTLE_S
    while True:
        kernel = {k: getattr(state.stats, k) for k in observed}
        if kernel == observed or time.monotonic() > deadline:
            break
        time.sleep(0.5)
        state = exchange.cluster.service_state()
    assert kernel == observed, (
        f"IPVS service counters (kernel, after {COUNTER_SETTLE_S} s) {kernel} != captured "
        f"{observed}\n{exchange.ipvsadm}"
    )
    flows_per_rs = Counter(f.rs_ip for f in exchange.flows)
    # a real server recycled from the kernel's trash brings its earlier count along
    before = exchange.counted_before
    per_dest = {d.addr: d.stats.conns - before.get(d.addr, 0) for d in state.dests}
    assert per_dest == dict(flows_per_rs), (
        f"per-real-server conns: kernel {per_dest} (after subtracting the counts recycled "
        f"real servers brought along: {before}) != captured {dict(flows_per_rs)}"
    )


def test_ipvsadm_agrees_with_netlink(exchange: Exchange) -> None:
    """ipvsadm -Ln (an independent reader) shows the table the testbed set over netlink.

    Source: ipvsadm(8) -L -n; both read the kernel through the IPVS generic
    netlink family (include/uapi/linux/ip_vs.h).
    """
    # ipvsadm sorts real servers by address; the netlink dump is in list order
    from_ipvsadm = sorted(parse_ipvsadm(exchange.ipvsadm), key=str)
    from_netlink = sorted(rows_from_netlink([exchange.state]), key=str)
    assert from_ipvsadm == from_netlink, (
        f"ipvsadm:\n{exchange.ipvsadm}\nnetlink rows: {from_netlink}"
    )
    methods = {d.method for d in exchange.state.dests}
    assert methods == {exchange.shape.mode.name}, (
        f"forwarding method {methods} != {exchange.shape.mode.name}"
    )
