"""Real-server setup each forwarding mode renders (commands, not run here)."""

from __future__ import annotations

from testbed import MODES, load_topology

SPEC = load_topology()
RS = SPEC.real_servers[0]


def _setup(mode: str) -> str:
    spec = SPEC.with_service(mode=mode)
    return "\n".join(MODES[mode].baseline(spec, RS) + MODES[mode].setup(spec, RS))


def test_nat_routes_replies_through_the_director() -> None:
    assert f"ip route replace default via {SPEC.service.dip}" in _setup("nat")
    assert "dev lo" not in MODES["nat"].setup(SPEC, RS)[0]


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


def test_tun_brings_up_tunl0_with_vip_and_relaxes_rp_filter() -> None:
    text = _setup("tun")
    assert "ip link set tunl0 up" in text
    assert f"ip addr add {SPEC.service.vip}/32 dev tunl0" in text
    assert "net.ipv4.conf.tunl0.rp_filter=0" in text
    assert "net.ipv4.conf.all.rp_filter=0" in text
    assert MODES["tun"].needs_modules == ("ipip",)


def test_baseline_undoes_every_mode() -> None:
    base = "\n".join(MODES["nat"].baseline(SPEC, RS))
    assert f"ip addr del {SPEC.service.vip}/32 dev lo" in base
    assert f"ip addr del {SPEC.service.vip}/32 dev tunl0" in base
    assert "net.ipv4.conf.all.arp_ignore=0" in base
