"""VRRP timing rules, GARP burst checks, keepalived.conf and heartbeat files."""

from __future__ import annotations

import datetime
import subprocess

import pytest

from testbed import TestbedError, load_topology
from testbed.checks import KeepalivedChecks
from testbed.ha import (
    GarpExpectation,
    HeartbeatTiming,
    Vrrp,
    bursts,
    master_down_interval,
    render,
    render_ha_cf,
    render_haresources,
    skew_time,
    takeover_decisions,
    takeover_window,
)

SPEC = load_topology()
D1, D2 = SPEC.directors


# -- RFC timing -------------------------------------------------------------------------
def test_skew_and_master_down_follow_the_rfcs() -> None:
    # RFC 3768: skew in seconds regardless of advert_int; RFC 5798: scaled by it
    assert skew_time(priority=100, advert_int=1, version=2) == pytest.approx(156 / 256)
    assert skew_time(priority=100, advert_int=2, version=2) == pytest.approx(156 / 256)
    assert skew_time(priority=100, advert_int=0.3, version=3) == pytest.approx(0.3 * 156 / 256)
    assert master_down_interval(priority=100, advert_int=1, version=2) == pytest.approx(3.609375)
    assert master_down_interval(priority=254, advert_int=1, version=3) < 3.01


def test_takeover_window_by_fault() -> None:
    stop = takeover_window("stop", priority=100, advert_int=1, version=2)
    assert stop.earliest == stop.latest == pytest.approx(0.609375)
    kill = takeover_window("kill", priority=100, advert_int=1, version=2)
    assert (kill.earliest, kill.latest) == pytest.approx((2.609375, 3.609375))
    assert kill.contains(3.9, slack=0.5) and not kill.contains(4.2, slack=0.5)
    assert not kill.contains(2.5, slack=0.5)  # timers never fire early
    assert not kill.contains(2.5, slack=30)  # a generous late slack does not widen that
    with pytest.raises(ValueError, match="unknown fault"):
        takeover_window("reboot", priority=100, advert_int=1, version=2)


def test_bursts_split_on_gaps() -> None:
    assert bursts([5.0, 0.0, 0.01, 5.02], gap=0.5) == [[0.0, 0.01], [5.0, 5.02]]
    assert bursts([], gap=1) == []


def test_garp_expectation_accepts_the_default_pattern() -> None:
    times = [0.001 * i for i in range(5)] + [5.0 + 0.001 * i for i in range(5)]
    assert GarpExpectation().check(times, slack=0.5) == []


@pytest.mark.parametrize(
    ("times", "problem"),
    [
        ([0.0, 0.001, 0.002, 0.003], "takeover burst: 4 frames"),
        ([0.0] * 5 + [7.0] * 5, "unexpected burst at +7.00"),
        ([0.0] * 5 + [7.0] * 5, "no delayed burst"),
        ([0.0] * 4 + [5.0] * 5, "takeover burst: 4 frames"),
        ([0.0] * 5 + [0.4] * 5 + [5.0] * 5, "unexpected burst at +0.40"),
        ([], "no gratuitous ARP"),
    ],
)
def test_garp_expectation_names_the_difference(times: list[float], problem: str) -> None:
    problems = GarpExpectation(delay=5, repeat=5).check(times, slack=0.5)
    assert any(problem in p for p in problems), problems


def test_lower_priority_advert_explains_an_extra_burst() -> None:
    times = [0.0] * 5 + [0.4] * 5 + [5.0] * 5
    assert GarpExpectation().check(times, slack=0.5, lower_prio=[0.35]) == []


def test_a_renewed_takeover_brings_its_own_burst_and_only_one() -> None:
    # the backup left MASTER at +0.9 and took over again at +1.95 (CI, keepalived v3 stop)
    times = [0.0] * 5 + [1.95] * 5 + [5.0] * 5
    assert GarpExpectation().check(times, slack=0.5, master_exits=[0.9]) == []
    assert GarpExpectation().check(times, slack=0.5, master_exits=[2.5]) != []
    twice = [0.0] * 5 + [1.95] * 5 + [3.0] * 5 + [5.0] * 5
    problems = GarpExpectation().check(twice, slack=0.5, master_exits=[0.9])
    assert problems == ["unexpected burst at +3.00 s (5 frames)"]


def test_garp_spacing_must_respect_the_interval() -> None:
    expect = GarpExpectation(repeat=3, delay=2, interval=0.2)
    assert expect.check([0, 0.2, 0.4, 2.0, 2.2, 2.4], slack=0.5) == []
    assert any("spacing" in p for p in expect.check([0, 0.01, 0.2, 2, 2.2, 2.4], slack=0.5))


def test_garp_pacing_tolerates_capture_jitter_but_not_back_to_back_frames() -> None:
    expect = GarpExpectation(repeat=10, delay=0, interval=0.1)
    # heartbeat's send_arp as captured under emulation: one gap 0.086 s, mean 0.101 s
    seen = [0.865, 0.967, 1.069, 1.17, 1.271, 1.373, 1.474, 1.575, 1.69, 1.777]
    assert expect.check(seen, slack=0.6) == []
    paced_badly = [0, 0.1, 0.2, 0.21, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]  # mean fine, two together
    assert any("back to back" in p for p in expect.check(paced_badly, slack=0.6))


# -- keepalived.conf --------------------------------------------------------------------
def test_render_vrrp_pair() -> None:
    vrrp = Vrrp(version=3, advert_int=0.3)
    one, two = render(SPEC, D1, vrrp=vrrp), render(SPEC, D2, vrrp=vrrp)
    assert "state MASTER" in one and "priority 150" in one
    assert "state BACKUP" in two and "priority 100" in two
    for conf, d in ((one, "d1"), (two, "d2")):
        assert f"203.0.113.100/32 dev {d}-eth0" in conf
        assert f"198.51.100.254/24 dev {d}-eth1" in conf
        assert "advert_int 0.3" in conf and "vrrp_version 3" in conf
        assert "lvs_sync_daemon" not in conf and "nopreempt" not in conf
        assert conf.count("{") == conf.count("}")


def test_render_nopreempt_starts_both_as_backup_and_sync_daemon() -> None:
    vrrp = Vrrp(preempt=False, sync_daemon=True)
    one = render(SPEC, D1, vrrp=vrrp)
    assert "state BACKUP" in one and "nopreempt" in one
    assert "lvs_sync_daemon d1-eth1 VI_LVS id 7" in one


def test_rendered_config_passes_keepalived_config_test(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """keepalived itself accepts what we render (keepalived --config-test)."""
    conf = tmp_path / "k.conf"
    conf.write_text(
        render(
            SPEC,
            D2,
            vrrp=Vrrp(sync_daemon=True),
            virtual_server=KeepalivedChecks(checker="HTTP_GET").virtual_server(
                SPEC.service, SPEC.real_servers
            ),
        )
    )
    try:
        out = subprocess.run(
            ["keepalived", "--config-test", "-f", str(conf)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except FileNotFoundError:
        pytest.skip("keepalived is not installed (scripts/install.sh installs it)")
    # the directors' interfaces exist only inside the testbed's namespaces
    problems = [
        line for line in out.stderr.splitlines()
        if "doesn't exist" not in line and "Non-existent interface" not in line
    ]  # fmt: skip
    assert not problems, out.stderr


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Vrrp(version=4), "VRRP version"),
        (lambda: Vrrp(version=2, advert_int=0.5), "whole seconds"),
        (lambda: Vrrp(priorities=(255, 100)), "priorities"),
    ],
)
def test_bad_settings_are_one_line_errors(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TestbedError, match=message) as err:
        make()
    assert "\n" not in str(err.value)


# -- heartbeat -----------------------------------------------------------
def test_render_heartbeat_files() -> None:
    cf = render_ha_cf(
        HeartbeatTiming(), interface="d1-eth0", peer="203.0.113.3", logfile="/l", nodes=["d1", "d2"]
    )
    assert "ucast d1-eth0 203.0.113.3" in cf and "deadtime 4" in cf and "crm off" in cf
    assert "node d1\nnode d2" in cf
    # the same line on both nodes: IPaddr2 picks the interface by netmask
    assert render_haresources(SPEC) == "d1 IPaddr2::203.0.113.100/24 IPaddr2::198.51.100.254/24\n"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: HeartbeatTiming(keepalive=2, warntime=2), "keepalive < warntime"),
    ],
)
def test_bad_heartbeat_settings(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TestbedError, match=message):
        make()


HEARTBEAT_LOG = """\
Dec 02 01:00:49 d2 heartbeat: [5136]: WARN: node d3: is dead
Dec 02 01:00:49 d2 heartbeat: [5136]: info: Dead node d1 gave up resources.
2026/12/02_01:00:51  harc(default)[6700]:    info: Running /etc/ha.d//rc.d/status status
Dec 02 01:00:52 d2 heartbeat: [5136]: WARN: node d1: is dead
Dec  2 01:00:58 d2 heartbeat: [5136]: info: Received shutdown notice from 'd1'.
Dec 02 01:01:03 d2 heartbeat: [5136]: info: Link d1:d2-eth0 dead.
"""


def test_heartbeat_takeover_decisions_are_read_from_its_log() -> None:
    """Only a death or a shutdown notice of the named peer counts, in local time."""
    times = takeover_decisions(HEARTBEAT_LOG, peer="d1", year=2026)
    stamps = [datetime.datetime.fromtimestamp(t).strftime("%H:%M:%S") for t in times]
    assert stamps == ["01:00:52", "01:00:58"]
    assert takeover_decisions(HEARTBEAT_LOG, peer="d9", year=2026) == []


def test_a_logged_lower_priority_advert_explains_a_burst_within_its_second() -> None:
    # the capture missed the advert; keepalived's log stamps it to the second
    times = [0.2] * 5 + [2.23] * 5 + [5.2] * 5
    expectation = GarpExpectation()
    assert expectation.check(times, slack=0.6, logged_lower_prio=[2.0]) == []
    assert expectation.check(times, slack=0.6, logged_lower_prio=[0.0]) == [
        "unexpected burst at +2.03 s (5 frames)"
    ]
