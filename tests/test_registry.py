"""The registry: one declaration per mode, protocol, family, tunnel; the combination policy."""

from __future__ import annotations

import itertools
import socket
import struct
from dataclasses import replace
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, GRE, Ether
from scapy.packet import Raw

from loadgen import wire
from testbed import TestbedError, load_topology
from testbed.cluster import real_server_host
from testbed.registry import (
    CHECKSUMS,
    FAMILIES,
    GUE,
    MODES,
    PROTOCOLS,
    SCHEDULERS,
    TUNNEL_CHECKSUMS,
    TUNNELS,
    Encapsulation,
    Mode,
    Registry,
    UnknownEntry,
    combinations,
    family_of,
    neutral_baseline,
    pairwise,
)
from testbed.topology import ClusterSpec

SPEC = load_topology()
RS = SPEC.real_servers[0]


def _setup(mode: str) -> str:
    spec = SPEC.with_service(mode=mode)
    host = real_server_host(spec, RS)
    return "\n".join(neutral_baseline(host) + MODES[mode].real_server_setup(host))


def test_nat_routes_replies_through_the_director() -> None:
    assert _setup("nat").endswith(f"ip -4 route replace default via {SPEC.service.dip}")
    host = real_server_host(SPEC, RS)
    assert "dev lo" not in MODES["nat"].real_server_setup(host)[0]


def test_dr_puts_vip_on_lo_and_solves_the_arp_problem() -> None:
    text = _setup("dr")
    assert f"ip addr add {SPEC.service.vip}/32 dev lo" in text
    for key in (
        "net.ipv4.conf.all.arp_ignore=1",
        "net.ipv4.conf.r1-eth0.arp_ignore=1",
        "net.ipv4.conf.all.arp_announce=2",
        "net.ipv4.conf.r1-eth0.arp_announce=2",
    ):
        assert key in text  # fmt: skip
    assert f"default via {SPEC.router.inside}" in text


def test_tun_brings_up_the_real_servers_tunnel_with_vip_and_relaxes_rp_filter() -> None:
    text = _setup("tun")
    assert "ip link set tunl0 up" in text
    assert f"ip addr add {SPEC.service.vip}/32 dev tunl0" in text
    assert "net.ipv4.conf.tunl0.rp_filter=0" in text
    assert "net.ipv4.conf.all.rp_filter=0" in text
    assert SPEC.with_service(mode="tun").modules() == ("ip_vs", "ip_vs_rr", "ipip")
    assert SPEC.with_service(mode="dr").modules() == ("ip_vs", "ip_vs_rr")


def test_baseline_undoes_every_mode() -> None:
    base = "\n".join(neutral_baseline(real_server_host(SPEC, RS)))
    assert f"ip addr del {SPEC.service.vip}/32 dev lo" in base
    assert f"ip addr del {SPEC.service.vip}/32 dev r1-eth0" in base  # an exposed VIP
    assert "ip addr flush dev tunl0" in base and "ip addr flush dev ip6tnl0" in base
    assert "net.ipv4.conf.all.arp_ignore=0" in base
    assert base.endswith(f"ip -4 route replace default via {SPEC.router.inside}")


def test_ipv6_modes_use_the_ipv6_view_of_the_cluster() -> None:
    v6 = SPEC.in_family(FAMILIES["ipv6"])
    rs = v6.real_servers[0]

    def setup(mode: str) -> str:
        return "\n".join(MODES[mode].real_server_setup(real_server_host(v6, rs)))

    assert setup("nat") == "ip -6 route replace default via 2001:db8:198:51::254"
    assert setup("dr") == "ip addr add 2001:db8:203:113::100/128 dev lo"  # ND needs no sysctl
    assert setup("tun").splitlines() == [
        "ip link set ip6tnl0 up", "ip addr add 2001:db8:203:113::100/128 dev ip6tnl0",
    ]  # fmt: skip
    tun = v6.with_service(mode="tun")
    assert tun.modules() == ("ip_vs", "ip_vs_rr", "ip6_tunnel")
    assert tun.with_service(protocol="sctp").modules()[-1] == "sctp"


def test_every_mode_declares_distinct_names_for_every_tool() -> None:
    modes = MODES.values()
    for attribute in ("fwd_method", "ipvsadm_flag", "ipvsadm_column", "keepalived_kind",
                      "ldirectord_kind", "title"):  # fmt: skip
        values = [getattr(m, attribute) for m in modes]
        assert len(set(values)) == len(values), attribute
    # exactly the documented facts (ipvsadm(8), include/uapi/linux/ip_vs.h)
    assert [(m.name, m.fwd_method, m.ipvsadm_flag) for m in modes] == [
        ("nat", 0, "-m"), ("dr", 3, "-g"), ("tun", 2, "-i"),
    ]  # fmt: skip


def test_mode_oracle_parameters() -> None:
    nat, dr, tun = (MODES[n] for n in ("nat", "dr", "tun"))
    assert nat.rewrites_destination and nat.maps_port and nat.reply_via_director
    assert not dr.rewrites_destination and not dr.encapsulates and dr.vip_on_real_servers
    assert tun.encapsulates and not tun.reply_via_director
    assert (nat.connection_table, dr.connection_table) == ("both directions", "input only")
    assert [m.name for m in MODES.first_per(lambda m: m.connection_table)] == ["nat", "dr"]


def test_tcp_packets_and_client() -> None:
    tcp = PROTOCOLS["tcp"]
    syn = IP() / tcp.opening(40000, 80)
    assert tcp.is_opening(syn) and not tcp.is_answer(syn)
    assert tcp.is_answer(IP() / tcp.answer(80, 40000))
    assert tcp.ports(IP() / TCP(sport=1, dport=2)) == (1, 2)
    assert "curl" in tcp.client("203.0.113.100:80", 3)
    assert tcp.client("203.0.113.100:80", 3).count("http://203.0.113.100:80/") == 3


def test_family_parses_and_formats_addresses() -> None:
    ipv4 = FAMILIES["ipv4"]
    assert family_of("203.0.113.1") is ipv4
    assert ipv4.endpoint("203.0.113.1", 80) == "203.0.113.1:80"
    with pytest.raises(TestbedError, match="not an IPv4 address"):
        ipv4.address("2001:db8::1", "vip")
    assert "net.ipv4.conf.r1-eth0.arp_ignore=1" in ipv4.hide_vip("r1-eth0")[0]


def _encapsulation(outer: str, inner: str, checksum: str = "nocsum", partial: bool = False):  # type: ignore[no-untyped-def]
    o, i = FAMILIES[outer], FAMILIES[inner]
    src, dst = ("198.51.100.2", "198.51.100.11") if o.version == 4 else (
        "2001:db8:198:51::2", "2001:db8:198:51::11")  # fmt: skip
    return Encapsulation(outer=o, inner=i, src=src, dst=dst, port=6080,
                         checksum=TUNNEL_CHECKSUMS[checksum], inner_partial=partial,
                         inner_header_length=20 if i.version == 4 else 40,
                         inner_checksum_offset=16)  # fmt: skip


INNER4 = IP(src="203.0.113.11", dst="203.0.113.100") / TCP(dport=80)
INNER6 = IPv6(src="2001:db8:203:113::11", dst="2001:db8:203:113::100") / TCP(dport=80)


@pytest.mark.parametrize("tunnel", ["ipip", "gue", "gre"])
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_tunnel_oracle_unwraps_what_it_wraps(tunnel: str, family: str) -> None:
    t = TUNNELS[tunnel]
    inner = INNER4 if family == "ipv4" else INNER6
    layer = FAMILIES[family].layer
    wrapped = layer(bytes(t.outer(_encapsulation(family, family)) / inner))
    assert bytes(t.inner(wrapped)) == bytes(layer(bytes(inner)))


def test_encapsulation_headers_follow_the_checksum_option() -> None:
    ipip, gue, gre = TUNNELS["ipip"], TUNNELS["gue"], TUNNELS["gre"]
    assert IP(bytes(ipip.outer(_encapsulation("ipv4", "ipv4")) / INNER4)).proto == 4
    assert IPv6(bytes(ipip.outer(_encapsulation("ipv6", "ipv6")) / INNER6)).nh == 41
    plain = gue.outer(_encapsulation("ipv4", "ipv4"))
    assert plain[UDP].dport == 6080 and plain[UDP].chksum == 0  # no outer checksum
    assert plain[GUE].hlen == 0 and plain[GUE].proto == 4
    assert gue.outer(_encapsulation("ipv4", "ipv4", "csum"))[UDP].chksum is None  # computed
    # remote checksum offload only for a partial inner checksum (ipvs_gue_encap)
    full = gue.outer(_encapsulation("ipv6", "ipv6", "remcsum", partial=False))
    assert full[GUE].hlen == 0 and full[GUE].proto == 41
    remote = GUE(bytes(gue.outer(_encapsulation("ipv4", "ipv4", "remcsum", True))[GUE]))
    assert (remote.hlen, remote.flags, remote.private_flags) == (2, 1, 0x80000000)
    assert (remote.csum_start, remote.csum_offset) == (20, 36)
    g = gre.outer(_encapsulation("ipv4", "ipv6", "csum"))
    assert g[IP].proto == 47 and g[GRE].proto == 0x86DD and g[GRE].chksum_present == 1
    assert gre.outer(_encapsulation("ipv6", "ipv6"))[GRE].chksum_present == 0


def _tun_setup(tunnel: str, checksum: str, family: str) -> list[str]:
    spec = SPEC.in_family(FAMILIES[family]).with_service(mode="tun")
    rs = replace(spec.real_servers[0], tunnel=tunnel, tunnel_checksum=checksum)
    return MODES["tun"].real_server_setup(real_server_host(spec.with_real_servers(rs), rs))


def test_real_servers_receive_each_tunnel_type() -> None:
    assert _tun_setup("gue", "nocsum", "ipv4")[1:4] == [
        "ip fou add port 6080 gue", "ip link set tunl0 up",
        "ip addr add 203.0.113.100/32 dev tunl0",
    ]  # fmt: skip
    assert _tun_setup("gue", "remcsum", "ipv6")[0] == "ip fou add port 6080 gue -6"
    assert "ip link set gre0 up" in _tun_setup("gre", "nocsum", "ipv4")
    csum = _tun_setup("gre", "csum", "ipv6")
    assert "ip link add lvsip6gre type ip6gre local 2001:db8:198:51::11 icsum" in csum
    assert "ip addr add 2001:db8:203:113::100/128 dev lvsip6gre" in csum
    v6 = SPEC.in_family(FAMILIES["ipv6"]).with_service(mode="tun")
    gre = v6.with_real_servers(replace(RS, ip=v6.real_servers[0].ip, tunnel="gre"))
    assert gre.modules() == ("ip_vs", "ip_vs_rr", "ip6_gre")
    teardown = "\n".join(TUNNELS["gue"].teardown() + TUNNELS["gre"].teardown())
    assert "ip fou del port" in teardown and "ip link del lvsgre" in teardown


def _crossing_setup(tunnel: str, vip_family: str) -> tuple[ClusterSpec, list[str]]:
    """TUN setup of a real server reached over the other family than the VIP's."""
    spec = SPEC.in_family(FAMILIES[vip_family]).with_service(mode="tun")
    other = next(v for v in SPEC.views() if v.service.family is not spec.service.family)
    rs = replace(other.real_servers[0], tunnel=tunnel)
    crossing = spec.with_real_servers(rs)
    return crossing, MODES["tun"].real_server_setup(real_server_host(crossing, rs))


def test_a_real_server_of_the_other_family_receives_on_a_crossing_device() -> None:
    spec, v6_in_v4 = _crossing_setup("ipip", "ipv6")
    assert "ip addr add 2001:db8:203:113::100/128 dev sit0" in v6_in_v4
    assert not any("rp_filter" in c for c in v6_in_v4)  # IPv6 inside: no filter to relax
    assert spec.modules() == ("ip_vs", "ip_vs_rr", "sit")
    spec, v4_in_v6 = _crossing_setup("gue", "ipv4")
    assert "ip fou add port 6080 gue -6" in v4_in_v6
    assert "ip link add lvs4in6 type ip6tnl local 2001:db8:198:51::11 mode ipip6" in v4_in_v6
    assert "ip addr add 203.0.113.100/32 dev lvs4in6" in v4_in_v6
    assert any("net.ipv4.conf.lvs4in6.rp_filter=0" in c for c in v4_in_v6)
    assert spec.modules() == ("ip_vs", "ip_vs_rr", "fou", "ip6_tunnel")
    _spec, gre = _crossing_setup("gre", "ipv4")
    assert "ip addr add 203.0.113.100/32 dev ip6gre0" in gre  # GRE's devices take either
    assert "|| ip link del lvs4in6" in "\n".join(TUNNELS["gue"].teardown())


def test_only_an_encapsulating_mode_reaches_the_other_family() -> None:
    spec, _setup = _crossing_setup("ipip", "ipv4")
    with pytest.raises(TestbedError, match=r"only TUN carries a service to the other family"):
        spec.with_service(mode="dr")
    with pytest.raises(TestbedError, match="2001:db8:198:51::11 is already used by r1"):
        spec.with_real_servers(spec.real_servers[0], replace(spec.real_servers[0], name="r9"))


def test_tunnel_options_are_checked_per_tunnel_type() -> None:
    with pytest.raises(TestbedError, match="tunnel ipip takes no csum"):
        replace(RS, tunnel_checksum="csum")
    with pytest.raises(TestbedError, match="tunnel gre takes no remcsum"):
        replace(RS, tunnel="gre", tunnel_checksum="remcsum")
    with pytest.raises(TestbedError, match="tunnel gre has no port"):
        replace(RS, tunnel="gre", tunnel_port=5000)
    with pytest.raises(UnknownEntry, match="unknown tunnel checksum option 'crc'"):
        replace(RS, tunnel="gue", tunnel_checksum="crc")
    assert SPEC.tunnel_port_of(replace(RS, tunnel="gue")) == 6080
    assert SPEC.tunnel_port_of(replace(RS, tunnel="gue", tunnel_port=7777)) == 7777


def test_udp_and_sctp_packets_and_clients() -> None:
    udp, sctp = PROTOCOLS["udp"], PROTOCOLS["sctp"]
    request = IP(bytes(IP() / udp.opening(40000, 80)))
    assert udp.is_opening(request) and not udp.is_answer(request)
    answer = IP(bytes(IP() / UDP(sport=80, dport=40000) / Raw(wire.answer("r1"))))
    assert udp.is_answer(answer) and not udp.is_opening(answer)
    init = IP(bytes(IP() / sctp.opening(40000, 80)))
    assert sctp.is_opening(init) and not sctp.is_answer(init)
    assert sctp.is_answer(IP(bytes(IP() / sctp.answer(80, 40000))))
    assert sctp.ports(init) == (40000, 80) and sctp.modules == ("sctp",)
    # carried in GUE, UDP in UDP: the carried datagram is the one that counts
    wrapped = IP(bytes(IP() / UDP(sport=5555, dport=6080) / GUE(proto=4) / request))
    assert udp.is_opening(wrapped) and udp.ports(wrapped) == (40000, 80)
    command = sctp.client("[2001:db8:203:113::100]:80", 3)
    assert "-m loadgen.ask --protocol sctp --count 3 '[2001:db8:203:113::100]:80'" in command
    assert [p.ipvsadm_flag for p in PROTOCOLS.values()] == ["-t", "-u", "--sctp-service"]


def test_families_differ_only_in_their_entries() -> None:
    v4, v6 = FAMILIES["ipv4"], FAMILIES["ipv6"]
    assert (v4.forwarding, v6.forwarding) == ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")
    assert (v4.ipvs_netmask(32), v4.ipvs_netmask(24)) == ("255.255.255.255", "255.255.255.0")
    assert v6.ipvs_netmask(64) == socket.inet_ntoa(struct.pack("=I", 64))
    assert (v4.encapsulated_as, v6.encapsulated_as) == (4, 41)
    assert v6.address_flags == "nodad" and not v4.address_flags
    assert v6.hide_vip("r1-eth0") == [] and v4.hide_vip("r1-eth0")
    assert v6.expose_vip("r1-eth0", "2001:db8::1/128") == [
        "ip addr replace 2001:db8::1/128 dev r1-eth0 nodad"
    ]
    assert v6.length(IPv6(bytes(IPv6() / UDP() / Raw(b"12345")))) == 40 + 8 + 5


def test_neighbour_solicitations_and_claims() -> None:
    v4, v6 = FAMILIES["ipv4"], FAMILIES["ipv6"]
    mac = "02:00:00:00:00:01"
    arp = v4.solicitation(mac, "198.51.100.1", "203.0.113.100")
    assert arp[ARP].pdst == "203.0.113.100" and arp.dst == "ff:ff:ff:ff:ff:ff"
    assert v4.claims(Ether() / ARP(op=2, psrc="203.0.113.100"), "203.0.113.100")
    assert not v4.claims(arp, "203.0.113.100")  # a request is no claim
    ns = Ether(bytes(v6.solicitation(mac, "2001:db8:198:51::1", "2001:db8:203:113::100")))
    assert ns[IPv6].dst == "ff02::1:ff00:100" and ns.dst == "33:33:ff:00:01:00"
    assert ns[ICMPv6ND_NS].tgt == "2001:db8:203:113::100" and ns[IPv6].hlim == 255
    na = Ether() / IPv6() / ICMPv6ND_NA(tgt="2001:db8:203:113::100")
    assert v6.claims(na, "2001:db8:203:113::100") and not v6.claims(ns, "2001:db8:203:113::100")


@pytest.mark.parametrize(
    ("lookup", "message"),
    [
        (lambda: MODES["snat"], "unknown forwarding mode 'snat' (choose from nat, dr, tun)"),
        (lambda: PROTOCOLS["icmp"], "unknown protocol 'icmp'"),
        (lambda: SCHEDULERS["fastest"], "unknown scheduler 'fastest'"),
        (lambda: TUNNELS["vxlan"], "unknown tunnel type 'vxlan'"),
        (lambda: MODES.select("nat, bogus"), "unknown forwarding mode 'bogus'"),
    ],
)
def test_unknown_names_are_one_line_errors(lookup, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownEntry) as err:
        lookup()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert isinstance(err.value, TestbedError) and isinstance(err.value, KeyError)


def test_registry_keeps_declaration_order_and_refuses_twins() -> None:
    reg: Registry[Mode] = Registry("forwarding mode")
    for m in MODES.values():
        reg.register(m)
    assert list(reg) == ["nat", "dr", "tun"] and "dr" in reg and len(reg) == 3
    assert reg.select(None) == MODES.values() and reg.select("tun,nat")[0].name == "tun"
    with pytest.raises(ValueError, match="registered twice"):
        reg.register(MODES["nat"])


def test_scheduler_flags_belong_to_their_scheduler() -> None:
    assert SCHEDULERS["sh"].flags == ("sh-fallback", "sh-port")
    assert SCHEDULERS["mh"].flag_bits(("mh-fallback", "mh-port")) == 0x0008 | 0x0010
    assert SCHEDULERS["wrr"].module == "ip_vs_wrr"


def _covers_every_pair(rows: list[tuple[str, ...]], dims: list[list[str]]) -> bool:
    for (i, a), (j, b) in itertools.combinations(enumerate(dims), 2):
        for x, y in itertools.product(a, b):
            if not any(r[i] == x and r[j] == y for r in rows):
                return False
    return True


@pytest.mark.parametrize(
    "dims",
    [
        [["nat", "dr", "tun"], ["tcp"], ["ipv4"]],
        [["nat", "dr", "tun"], ["tcp", "udp", "sctp"], ["ipv4", "ipv6"]],
        [["a", "b"], ["x", "y", "z", "w"], ["1", "2", "3"]],
    ],
)
def test_pairwise_covers_every_pair_with_fewer_rows(dims: list[list[str]]) -> None:
    rows = pairwise(dims)
    full = list(itertools.product(*dims))
    assert _covers_every_pair(rows, dims)
    assert len(rows) == len(set(rows)) <= len(full)
    assert len(rows) >= max(len(a) * len(b) for a, b in itertools.combinations(dims, 2))
    assert pairwise(dims) == rows  # deterministic


def test_pairwise_of_the_issue_sizes() -> None:
    """3 modes x 3 protocols x 2 families: 9 combinations cover every pair, of 18."""
    dims = [["nat", "dr", "tun"], ["tcp", "udp", "sctp"], ["ipv4", "ipv6"]]
    assert len(pairwise(dims)) == 9


def test_combinations_of_the_registry() -> None:
    full = combinations("full")
    assert len(full) == 3 * 3 * 2 * 2 and full[0].id == "nat-tcp-ipv4-offload"
    pairs = combinations("pairwise")
    dims = [list(r) for r in (MODES, PROTOCOLS, FAMILIES, CHECKSUMS)]
    rows = [(c.mode.name, c.protocol.name, c.family.name, c.checksums.name) for c in pairs]
    assert _covers_every_pair(rows, dims) and len(pairs) == 9
    one = combinations(
        modes=MODES.select("dr"),
        protocols=PROTOCOLS.select("tcp"),
        families=FAMILIES.select("ipv4"),
        checksums=CHECKSUMS.select("computed"),
    )
    assert [c.id for c in one] == ["dr-tcp-ipv4-computed"]  # fmt: skip
    with pytest.raises(TestbedError, match="unknown combination policy"):
        combinations("random")


def test_local_addresses_are_read_from_proc_without_a_process() -> None:
    import os

    assert "127.0.0.1" in FAMILIES["ipv4"].local_addresses(os.getpid())


def test_local_ipv6_addresses_are_read_from_proc() -> None:
    import os

    assert "::1" in FAMILIES["ipv6"].local_addresses(os.getpid())


def test_announcements_of_an_address() -> None:
    v4, v6 = FAMILIES["ipv4"], FAMILIES["ipv6"]
    garp = Ether() / ARP(op=1, psrc="203.0.113.100", pdst="203.0.113.100")
    assert v4.announces(garp, "203.0.113.100")
    assert not v4.announces(Ether() / ARP(op=1, psrc="203.0.113.3", pdst="203.0.113.100"),
                            "203.0.113.100")  # fmt: skip
    na = Ether() / IPv6(dst="ff02::1") / ICMPv6ND_NA(tgt="2001:db8:203:113::100", S=0, O=1)
    assert v6.announces(na, "2001:db8:203:113::100")
    solicited = Ether() / IPv6() / ICMPv6ND_NA(tgt="2001:db8:203:113::100", S=1)
    assert not v6.announces(solicited, "2001:db8:203:113::100")


def test_every_profile_pattern_selects_a_collected_test() -> None:
    """A renamed test or parametrization leaves a profile pattern stale: caught here."""
    import subprocess
    import sys

    from testbed.registry import load_profiles

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "conformance"], cwd=Path(__file__).resolve().parent.parent,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    ids = [line for line in done.stdout.splitlines() if "::" in line]
    assert ids, done.stdout + done.stderr
    for profile in map(load_profiles().__getitem__, load_profiles()):
        assert profile.unmatched(ids) == [], profile.name
        assert 0 < sum(map(profile.selects, ids)) <= len(ids)


def test_a_profile_pattern_is_a_glob_with_literal_brackets(tmp_path: Path) -> None:
    from testbed.registry import Profile, load_profiles

    p = Profile("p", "x", ("conformance/test_a.py::*[nat-tcp]",))
    assert p.selects("conformance/test_a.py::test_b[nat-tcp]")
    assert not p.selects("conformance/test_a.py::test_b[n]")  # not a character class
    assert not p.selects("conformance/test_a.py::test_b[nat-tcp]x")
    bad = tmp_path / "profiles.toml"
    bad.write_text('[profile.quick]\ntests = ["*"]\n')
    with pytest.raises(TestbedError, match="profile 'quick': missing or bad"):
        load_profiles(bad)
