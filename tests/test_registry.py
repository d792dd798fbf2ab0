"""The registry: one declaration per mode, protocol, family, tunnel; the combination policy."""

from __future__ import annotations

import itertools

import pytest
from scapy.layers.inet import IP, TCP

from testbed import TestbedError, load_topology
from testbed.cluster import real_server_host
from testbed.registry import (
    FAMILIES,
    MODES,
    PROTOCOLS,
    SCHEDULERS,
    TUNNELS,
    Mode,
    Registry,
    UnknownEntry,
    combinations,
    family_of,
    neutral_baseline,
    pairwise,
)

SPEC = load_topology()
RS = SPEC.real_servers[0]


def _setup(mode: str) -> str:
    spec = SPEC.with_service(mode=mode)
    host = real_server_host(spec, RS)
    return "\n".join(neutral_baseline(host) + MODES[mode].real_server_setup(host))


def test_nat_routes_replies_through_the_director() -> None:
    assert f"ip route replace default via {SPEC.service.dip}" in _setup("nat")
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
    assert f"ip addr del {SPEC.service.vip}/32 dev tunl0" in base
    assert "net.ipv4.conf.all.arp_ignore=0" in base


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


def test_tunnel_oracle_unwraps_what_it_wraps() -> None:
    ipip = TUNNELS["ipip"]
    inner = IP(src="203.0.113.11", dst="203.0.113.100") / TCP(dport=80)
    outer = IP(bytes(ipip.outer("198.51.100.2", "198.51.100.11") / inner))
    assert outer.proto == 4 and bytes(ipip.inner(outer)) == bytes(IP(bytes(inner)))


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
    assert [c.id for c in full] == ["nat-tcp-ipv4", "dr-tcp-ipv4", "tun-tcp-ipv4"]
    assert combinations("pairwise") == full  # one protocol, one family: pairs are the product
    assert [c.id for c in combinations(modes=MODES.select("dr"))] == ["dr-tcp-ipv4"]
    with pytest.raises(TestbedError, match="unknown combination policy"):
        combinations("random")


def test_local_addresses_are_read_from_proc_without_a_process() -> None:
    import os

    assert "127.0.0.1" in FAMILIES["ipv4"].local_addresses(os.getpid())
