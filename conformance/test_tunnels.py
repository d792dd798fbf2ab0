"""TUN's tunnel types, byte by byte: IP-in-IP, GUE and GRE, with each checksum option.

Every real server is reached through one tunnel option (ipvsadm --tun-type,
--tun-port, --tun-nocsum / --tun-csum / --tun-remcsum), a real client makes
requests through the VIP, and the director's encapsulations are captured on
its inside interface. Cases are (tunnel option, who computes checksums,
family, protocol), every pair of values covered: with checksum offload the
carried transport checksum is partial, which is when GUE's remote checksum
offload applies; with checksums computed by the stack it is final.
Sources: ipvsadm(8); net/netfilter/ipvs/ip_vs_xmit.c (ip_vs_tunnel_xmit,
ip_vs_tunnel_xmit_v6, ipvs_gue_encap, ipvs_gre_encap, udp_set_csum);
include/net/gue.h; RFC 2784 / RFC 2890 (GRE checksum); ip-fou(8).
"""

from __future__ import annotations

import errno
from collections import Counter
from dataclasses import dataclass

import pytest
from pyroute2 import NetlinkError
from scapy.packet import Packet

from conformance.conftest import skip_unless_available, skip_unless_family
from testbed import Cluster
from testbed.kernel import missing_module
from testbed.net import as_forwarded, is_fragment, partial_checksum, reassembled
from testbed.observe import Exchange, send_exchange
from testbed.registry import (
    CHECKSUMS,
    FAMILIES,
    GUE,
    GUE_FLAG_PRIV,
    MODES,
    PROTOCOLS,
    Combination,
    Family,
    Mode,
    TunnelOption,
    family_of,
    innermost_header,
    pairwise,
    tunnel_options,
)
from testbed.topology import RealServer, Service

# its checks hold on a busy guest (it may run beside another run: conftest.py)
pytestmark = pytest.mark.tolerates_load

TUN = next(m for m in MODES.values() if m.encapsulates)
# fields of the outer headers the kernel derives per packet (not the tunnel's choice):
# taken from the capture before the byte comparison, and shown when it fails
DERIVED = {"IP": ("id", "flags", "tos", "ttl", "chksum"), "IPv6": ("tc", "fl", "hlim"),
           "UDP": ("sport", "chksum"), "GRE": ("chksum",)}  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One tunnel option carrying one service shape over one family (the VIP's, or the
    other: ip_vs_ctl.c lets TUN alone reach a real server of the other family)."""

    option: TunnelOption
    shape: Combination
    over: Family

    @property
    def id(self) -> str:
        crossing = "" if self.over is self.shape.family else f"-over-{self.over.name}"
        return f"{self.option.id}-{self.shape.id[len(TUN.name) + 1 :]}{crossing}"


def _cases() -> list[Case]:
    options = {o.id: o for o in tunnel_options()}
    # the last dimension: over the VIP's own family, or over each other one
    rows = pairwise([list(options), list(CHECKSUMS), list(FAMILIES), list(PROTOCOLS),
                     ["own", "other"]])  # fmt: skip
    return [
        Case(options[o], Combination(mode=TUN, protocol=PROTOCOLS[p], family=FAMILIES[f],
                                     checksums=CHECKSUMS[c]), over)
        for o, c, f, p, across in rows
        for over in FAMILIES.values() if (over.name == f) == (across == "own")
    ]  # fmt: skip


# checksums computed, then left to offload (the suite's default, which the next module
# finds): switching means ethtool on every interface of every host, once, not per case
CASES = sorted(_cases(), key=lambda c: c.shape.checksums.tx_offload)


@pytest.fixture(scope="module", params=CASES, ids=[c.id for c in CASES])
def tunnel_exchange(request: pytest.FixtureRequest, cluster: Cluster) -> Exchange:
    case: Case = request.param
    option, shape = case.option, case.shape
    skip_unless_family(cluster, shape.family)
    skip_unless_family(cluster, case.over)
    modules = option.tunnel.modules(case.over, shape.family, option.checksum)
    needed_by = f"{option.id} carrying {shape.family.title} over {case.over.title}"
    skip_unless_available(cluster, needed_by=needed_by, family=shape.family, mode=TUN.name,
                          protocol=shape.protocol.name)  # fmt: skip
    if reason := missing_module(*modules, needed_by=needed_by):
        pytest.skip(reason)
    # no counter check here: what recycled real servers already count is not needed
    return send_exchange(cluster, shape, tunnel=option, over=case.over, count_recycled=False)


def _network_packets(ex: Exchange, point: str, direction: str, layer: type) -> list[Packet]:
    return [f.packet[layer] for f in ex.frames_at(point)
            if f.direction == direction and layer in f.packet]  # fmt: skip


def _encapsulations(ex: Exchange) -> list[tuple[Packet, Packet, object]]:
    """(captured encapsulation from its outer header on, the datagram it carries as the
    director received it, flow) per flow.

    A request larger than the path (an SCTP INIT listing every client address over
    IPv6) comes in fragments, and runs differ in what the director tunnels: each
    fragment as received (seen on 6.1), or the request reassembled by nf_defrag_ipv6,
    the encapsulation then fragmented (seen on 6.12; ip6_output.c ip6_fragment). Both
    are compared whole: the outer fragments reassembled, and the carried datagram
    compared with the client's fragment or with its whole request, as carried.
    """
    site, shape = ex.site, ex.shape
    net, proto = shape.family.layer, shape.protocol
    out = []
    for flow in ex.flows:
        outer = family_of(flow.rs_ip)
        received = [
            f.packet[net] for f in ex.transport_frames(f"{site.director}-eth0", "in", dst=site.vip)
            if proto.is_opening(f.packet) and proto.ports(f.packet)[0] == flow.sport
        ]  # fmt: skip
        sent = [
            f.packet[outer.layer]
            for f in ex.transport_frames(f"{site.director}-eth1", "out", outer, dst=flow.rs_ip)
            if proto.is_opening(f.packet) and proto.ports(f.packet)[0] == flow.sport
        ]  # fmt: skip
        assert received and sent, f"opening packet of client port {flow.sport} not seen twice"
        captured = reassembled(
            sent[0], _network_packets(ex, f"{site.director}-eth1", "out", outer.layer)
        )
        carried = innermost_header(captured, net)
        request = received[0]
        if carried is not None and not is_fragment(carried):
            request = reassembled(request, _network_packets(ex, f"{site.director}-eth0", "in", net))
        out.append((captured, request, flow))
    return out


def test_every_request_is_answered_through_the_tunnel(tunnel_exchange: Exchange) -> None:
    """Each real server decapsulates and answers: every request gets an answer, and rr
    reaches every real server.

    Source: ipvsadm(8) --tun-type; ip-fou(8) (GUE receive), ip-link(8) (gre, ip6gre,
    ipip, ip6tnl); ip_tunnel.c ip_tunnel_rcv (a GRE checksum the receiving device
    does not expect is dropped).
    """
    got = tunnel_exchange.responses
    servers = {r.name for r in tunnel_exchange.cluster.spec.real_servers}
    assert "" not in got and set(got) == servers, (
        f"answers {Counter(got)} (empty: no answer); every one of {sorted(servers)} should "
        f"answer {tunnel_exchange.site.tunnels}"
    )


def _with_kernel_fields(expected: Packet, captured: Packet) -> Packet:
    """``expected`` with the per-packet fields the kernel derives copied from the capture."""
    exp, cap = expected, captured
    while exp and cap and type(exp) is type(cap):
        for name in DERIVED.get(type(exp).__name__, ()):
            if name not in exp.fields or exp.fields[name] is None:
                exp.setfieldval(name, cap.getfieldval(name))
        if isinstance(exp, GUE):
            break
        exp, cap = exp.payload, cap.payload
    return expected


def test_encapsulation_is_exact(tunnel_exchange: Exchange) -> None:
    """The director's packet is the tunnel's headers around the received datagram, byte
    for byte: outer addresses (director to real server), the tunnel's protocol, GUE's
    UDP port and header (with the remote checksum offload option exactly when the
    option is remcsum and the carried checksum is partial), GRE's EtherType and
    checksum-present flag, then the datagram with only its hop limit decremented.

    Per-packet fields the kernel derives (IP id, TOS/traffic class, outer TTL, UDP
    source port from the flow hash, checksums) are taken from the capture.
    Source: ip_vs_xmit.c ipvs_gue_encap, ipvs_gre_encap, ip_vs_tunnel_xmit(_v6);
    include/net/gue.h.
    """
    ex = tunnel_exchange
    site = ex.site
    for captured, received, flow in _encapsulations(ex):
        tunnel, net = site.tunnels[flow.rs].tunnel, type(captured)
        inner = as_forwarded(site, flow, received)
        expected = net(bytes(_with_kernel_fields(tunnel.outer(site.encapsulation(flow)) / inner,
                                                 net(bytes(captured)))))  # fmt: skip
        assert bytes(expected) == bytes(captured), (
            f"{site.tunnels[flow.rs].id}: the encapsulation differs from the option's\n"
            f"  expected: {expected.summary()}\n  captured: {captured.summary()}\n"
            f"  expected bytes: {bytes(expected).hex()}\n"
            f"  captured bytes: {bytes(captured).hex()}"
        )


LCO_ASSUMES_AN_INTERNET_CHECKSUM = (
    "local checksum offload computes the encapsulation's checksum as if the carried "
    "checksum, still to be written by the device, were an Internet checksum "
    "(include/linux/skbuff.h lco_csum); SCTP's is a CRC32c, so once the device writes "
    "it the outer checksum is wrong (checksum-offloads.rst)"
)


def test_encapsulation_checksum_is_what_the_option_says(tunnel_exchange: Exchange) -> None:
    """csum and remcsum: the encapsulation's own checksum (GUE's outer UDP, GRE's).

    With the carried checksum final, or partial and completed later by the sending
    device (local checksum offload), it is the checksum of the packet as it leaves
    the device, carried checksum completed. With remote checksum offload (GUE's
    option present) the carried checksum is the receiver's to complete, and the
    outer UDP checksum is in turn left to the sending device: the field holds the
    pseudo-header's sum, which the device completes over the bytes as sent.
    (nocsum: no checksum, which the exact encapsulation test asserts.)

    Source: ip_vs_xmit.c ip_vs_tunnel_xmit (udp_set_csum(!check, ...)),
    ipvs_gue_encap (ip_summed set to CHECKSUM_NONE for RCO), ipvs_gre_encap
    (gre_build_header, TUNNEL_CSUM); net/ipv4/udp.c udp_set_csum;
    Documentation/networking/checksum-offloads.rst (LCO, RCO); RFC 2784.
    """
    ex = tunnel_exchange
    option = ex.site.tunnels[ex.cluster.spec.real_servers[0].name]
    layer = option.tunnel.checksum_layer
    if layer is None or not option.checksum.flags:
        pytest.skip(f"{option.id}: the encapsulation carries no checksum")
    proto = ex.shape.protocol
    for sent, _received, _flow in _encapsulations(ex):
        net = type(sent)
        packet = net(bytes(sent))
        captured = packet[layer].chksum
        if GUE in packet and packet[GUE].flags & GUE_FLAG_PRIV:
            wanted, what = partial_checksum(packet[layer]), "left to the device"
        else:
            innermost_header(packet, proto.layer).setfieldval(proto.checksum, None)
            packet[layer].chksum = None
            wanted, what = net(bytes(packet))[layer].chksum, "of the completed packet"
            if captured != wanted and ex.shape.checksums.tx_offload and not proto.internet_checksum:
                pytest.xfail(LCO_ASSUMES_AN_INTERNET_CHECKSUM)
        assert captured == wanted, (
            f"{option.id} ({ex.shape.checksums.name}): {layer.__name__} checksum "
            f"{captured:#06x}, should be {wanted:#06x} ({what})\n  {sent.summary()}"
        )


def _crossing(cluster: Cluster, mode: Mode) -> tuple[Service, RealServer]:
    """A service of the declared family in ``mode``, and a real server of the other."""
    spec = cluster.base_spec
    other = next((f for f in spec.families if f is not spec.service.family), None)
    if other is None:
        pytest.skip(f"topology {spec.name!r} has one address family")
    return spec.with_service(mode=mode.name).service, spec.in_family(other).real_servers[0]


def _refusal(cluster: Cluster, service: Service, rs: RealServer) -> tuple[int, str]:
    """(errno of the kernel's refusal, or 0; the director's table) for the service
    with that one real server, added over netlink; the table is emptied after."""
    try:
        cluster.ipvs.apply(service, [rs])
        code = 0
    except NetlinkError as exc:
        code = exc.code
    table = cluster.run(cluster.spec.active.name, "ipvsadm -Ln")
    cluster.ipvs.flush()
    return code, table


def test_only_tun_reaches_a_real_server_of_the_other_family(cluster: Cluster, mode: Mode) -> None:
    """A real server whose address is of the other family than the VIP is accepted
    for TUN, which carries the datagram whole, and refused (EINVAL) for the modes
    that would forward the client's datagram itself to it.

    Source: ip_vs_ctl.c ip_vs_genl_set_cmd ("Which connection types do we
    support?": IP_VS_CONN_F_TUNNEL only); ipvsadm(8).
    """
    service, rs = _crossing(cluster, mode)
    code, table = _refusal(cluster, service, rs)
    wanted = 0 if mode.encapsulates else errno.EINVAL
    assert code == wanted, (
        f"{mode.title} service {service.endpoint} with real server {rs.ip}: "
        f"{errno.errorcode.get(code, 'accepted')}, should be "
        f"{errno.errorcode.get(wanted, 'accepted')}\n{table}"
    )


def test_sync_daemon_and_the_other_family_exclude_each_other(cluster: Cluster) -> None:
    """ "The synchronization protocol is incompatible with mixed family services":
    with a TUN real server of the other family in the table the sync daemon does not
    start, and while a sync daemon runs such a real server is refused (EINVAL both).

    Source: ip_vs_ctl.c ip_vs_genl_new_daemon and ip_vs_genl_set_cmd
    (mixed_address_family_dests, sync_state).
    """
    service, rs = _crossing(cluster, TUN)
    director = cluster.spec.active.name
    start = f"ipvsadm --start-daemon master --mcast-interface {director}-eth1 --syncid 99"
    stop = "ipvsadm --stop-daemon master"
    cluster.ipvs.apply(service, [rs])
    try:
        refused = cluster.run(director, f"{start} 2>&1; echo rc=$?", check=False)
    finally:
        cluster.run(director, f"{stop} 2>/dev/null; true")
        cluster.ipvs.flush()
    assert "rc=0" not in refused, f"the sync daemon started beside {rs.ip}:\n{refused}"
    cluster.run(director, start)
    try:
        code, table = _refusal(cluster, service, rs)
        daemons = cluster.run(director, "ipvsadm -L --daemon")
    finally:
        cluster.run(director, f"{stop} 2>/dev/null; true")
    assert code == errno.EINVAL, (
        f"real server {rs.ip} beside a running sync daemon: "
        f"{errno.errorcode.get(code, 'accepted')}, should be EINVAL\n{daemons}\n{table}"
    )
