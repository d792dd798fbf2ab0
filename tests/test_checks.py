"""Health checkers behind one interface: keepalived's virtual_server and ldirectord's config."""

from __future__ import annotations

import pytest

from testbed import TestbedError, load_topology
from testbed.checks import Checker, KeepalivedChecks, Ldirectord

SPEC = load_topology()


@pytest.mark.parametrize("checker", ["TCP_CHECK", "HTTP_GET", "MISC_CHECK"])
def test_keepalived_virtual_server_block(checker: str) -> None:
    checks = KeepalivedChecks(
        checker=checker, misc_path="/x/feedback.sh", misc_dynamic=True, inhibit_on_failure=True,
        sorry_server=SPEC.real_server("r3"),
    )  # fmt: skip
    spec = SPEC.with_service(mode="dr", scheduler="wlc")
    conf = "\n".join(checks.virtual_server(spec.service, spec.real_servers))
    assert "virtual_server 203.0.113.100 80 {" in conf
    assert "lb_algo wlc" in conf and "lb_kind DR" in conf and "inhibit_on_failure" in conf
    assert "protocol TCP" in conf
    assert "sorry_server 198.51.100.13 80" in conf
    assert conf.count(f"{checker} {{") == 3
    assert conf.count("{") == conf.count("}")
    if checker == "MISC_CHECK":
        assert 'misc_path "/x/feedback.sh 198.51.100.11"' in conf and "misc_dynamic" in conf


def test_keepalived_removal_bound_follows_the_man_page() -> None:
    c = KeepalivedChecks(delay_loop=2, connect_timeout=1, retry=2, delay_before_retry=1)
    assert c.removal_bound() == 2 + 3 * 1 + 2 * 1
    assert c.recheck_bound() == 2 + 1


def test_ldirectord_config() -> None:
    spec = SPEC.with_service(mode="dr", scheduler="wlc")
    conf = Ldirectord(quiescent=True, fallback=SPEC.real_server("r3")).render(
        spec, logfile="/x/log"
    )
    assert "virtual=203.0.113.100:80" in conf and "quiescent=yes" in conf
    assert "\treal=198.51.100.11:80 gate 1" in conf
    assert "\tfallback=198.51.100.13:80 gate" in conf
    assert "\tscheduler=wlc" in conf and "\tchecktype=negotiate" in conf
    # the real-server program answers with its name: every name of the topology
    assert '\treceive="^(r1|r2|r3)$"' in conf
    nat = Ldirectord().render(load_topology(mode="nat"), logfile="/x/log")
    assert "\treal=198.51.100.11:8080 masq 1" in nat  # NAT may rewrite the port


def test_ldirectord_config_follows_the_topology() -> None:
    wide = load_topology("wide", mode="tun")
    conf = Ldirectord().render(wide, logfile="/x/log")
    assert "virtual=192.0.2.80:8000" in conf
    assert conf.count(" ipip 1") == 5
    assert '\treceive="^(web1|web2|web3|web4|web5)$"' in conf


def test_ldirectord_removal_bound_counts_each_failing_server() -> None:
    c = Ldirectord(checkinterval=2, checktimeout=3)
    assert (c.removal_bound(), c.removal_bound(failing=2), c.recheck_bound()) == (5, 8, 5)


def test_both_checkers_have_one_interface() -> None:
    for checker in (KeepalivedChecks(), Ldirectord()):
        assert isinstance(checker, Checker)
        assert checker.name.split("-")[0] in ("keepalived", "ldirectord")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: KeepalivedChecks(checker="SMTP_CHECK"), "unknown checker"),
        (lambda: KeepalivedChecks(checker="MISC_CHECK"), "misc_path"),
        (lambda: Ldirectord(checktype="ping"), "checktype"),
    ],
)
def test_bad_checker_settings_are_one_line_errors(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TestbedError, match=message) as err:
        make()
    assert "\n" not in str(err.value)
