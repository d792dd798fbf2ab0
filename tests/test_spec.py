"""Cluster specs: the default topology, overrides, and one-line errors for bad input."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from testbed import FAMILIES, RealServer, TestbedError, load_topology
from testbed.topology import carried_over

DEFAULT = load_topology()


def test_default_topology_has_the_documented_shape() -> None:
    assert [c.name for c in DEFAULT.clients] == ["c1", "c2"]
    assert [d.name for d in DEFAULT.directors] == ["d1", "d2"]
    assert [r.name for r in DEFAULT.real_servers] == ["r1", "r2", "r3"]
    assert DEFAULT.active.name == "d1"
    assert DEFAULT.service.vip in DEFAULT.outside
    assert all(r.ip in DEFAULT.inside for r in DEFAULT.real_servers)


def test_addresses_are_documentation_ranges_only() -> None:
    """Safety: the testbed never uses an address that could exist elsewhere."""
    doc = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24",
                                             "203.0.113.0/24", "2001:db8::/32")]  # fmt: skip
    for view in DEFAULT.views():
        for net in (view.outside, view.inside):
            assert any(net.version == d.version and net.subnet_of(d) for d in doc), net


def test_dual_stack_carries_every_address_over_by_its_host_number() -> None:
    v4, v6 = DEFAULT.views()
    assert [f.name for f in DEFAULT.families] == ["ipv4", "ipv6"]
    assert v6 is DEFAULT.in_family(FAMILIES["ipv6"]) and v4 is DEFAULT
    assert str(v6.service.vip) == "2001:db8:203:113::100"
    assert str(v6.service.dip) == "2001:db8:198:51::254"
    assert [str(c.ip) for c in v6.clients] == ["2001:db8:203:113::11", "2001:db8:203:113::12"]
    assert str(v6.real_server("r3").ip) == "2001:db8:198:51::13"
    assert (str(v6.router.outside), str(v6.router.inside)) == (
        "2001:db8:203:113::1", "2001:db8:198:51::1",
    )  # fmt: skip
    assert v6.dual_stack is None and v6.views() == (v6,)
    # a service change reaches every view
    dr = DEFAULT.with_service(mode="dr", scheduler="wrr")
    assert {(v.service.mode, v.service.scheduler) for v in dr.views()} == {("dr", "wrr")}
    assert carried_over(ipaddress.ip_address("10.0.1.5"), ipaddress.ip_network("10.0.0.0/16"),
                        ipaddress.ip_network("2001:db8::/64")) == ipaddress.ip_address(
        "2001:db8::261"
    )  # fmt: skip


def test_a_single_stack_topology_has_one_view() -> None:
    wide = load_topology("wide")
    assert wide.views() == (wide,)
    with pytest.raises(TestbedError, match="topology 'wide' has no IPv6 addresses"):
        wide.in_family(FAMILIES["ipv6"])


@pytest.mark.parametrize(("mode", "port"), [("nat", 8080), ("dr", 80), ("tun", 80)])
def test_only_nat_rewrites_the_port(mode: str, port: int) -> None:
    assert load_topology(mode=mode).service.real_port == port


def test_overrides_and_with_service_revalidate() -> None:
    spec = load_topology(mode="dr", scheduler="wlc")
    assert (spec.service.mode, spec.service.scheduler) == ("dr", "wlc")
    with pytest.raises(TestbedError, match="unknown scheduler 'fastest'"):
        spec.with_service(scheduler="fastest")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"scheduler": "bogus"}, "unknown scheduler 'bogus'"),
        ({"mode": "snat"}, "unknown forwarding mode 'snat'"),
        ({"protocol": "icmp"}, "unknown protocol 'icmp'"),
        ({"vip": "300.1.1.1"}, "is not an IP address"),
        ({"vip": "192.0.2.1"}, "is not a host address of 203.0.113.0/24"),
        ({"vip": "203.0.113.11"}, "already used by c1"),
        ({"port": 0}, "is not a port"),
        ({"persistence": -5}, "persistence"),
    ],
)
def test_bad_service_values_give_one_line(override: dict[str, object], message: str) -> None:
    with pytest.raises(TestbedError, match=re.escape(message)) as err:
        load_topology(**override)
    assert "\n" not in str(err.value)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.toml"
    path.write_text(text)
    return path


def _default_text() -> str:
    return (Path(__file__).parent.parent / "topologies" / "default.toml").read_text()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('name = "r3"', 'name = "r1"'), "host name 'r1' is used twice"),
        (lambda t: t.replace('ip = "198.51.100.13"', 'ip = "198.51.100.12"'), "already used by r2"),
        (lambda t: t.replace("weight = 1", "weight = -1", 1), "weight: -1 is not in"),
        (lambda t: t.replace('name = "c1"', 'name = "client-number-one"'), "is not a host name"),
        (lambda t: t.replace('inside = "198.51.100.0/24"', 'inside = "203.0.113.0/25"'), "overlap"),
        (lambda t: t + "\n[extra]\n", "unknown top-level key"),
        (lambda t: t.replace("scheduler =", "shed ="), "unknown key(s) shed"),
        (lambda t: t.replace("[router]", "[router]\nspeed = 1"), "unknown key(s) speed"),
        (lambda t: t.replace('outside = "203.0.113.1"\n', ""), "missing key(s) outside"),
        # only required keys are named as missing (not optional ones with defaults)
        (lambda t: t.replace('vip = "203.0.113.100"', ""), "[service]: missing key(s) vip"),
        (lambda t: t.replace("[service]", "[service"), "topology file"),
        (
            lambda t: t.replace('"2001:db8:203:113::/64"', '"192.0.2.0/24"'),
            "dual_stack: outside and inside differ in family",
        ),
        (lambda t: t.replace('"2001:db8:198:51::/64"', '"2001:db8:203:113::/120"'), "overlap"),
        (
            lambda t: t.replace('"2001:db8:203:113::/64"', '"2001:db8:203:113::/120"'),
            "dual_stack: service vip: 2001:db8:203:113::100 is not a host address",
        ),
        (
            lambda t: t.replace('"2001:db8:203:113::/64"', '"198.51.0.0/16"').replace(
                '"2001:db8:198:51::/64"', '"192.0.0.0/16"'
            ),
            "of the cluster's own family",
        ),
    ],
)
def test_bad_topology_files_give_one_line(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TestbedError, match=re.escape(message)) as err:
        load_topology(_write(tmp_path, edit(_default_text())))
    assert "Traceback" not in str(err.value)


def test_missing_topology_file() -> None:
    with pytest.raises(TestbedError, match="does not exist"):
        load_topology("/nonexistent/topology.toml")


def test_real_server_weight_bounds() -> None:
    RealServer(name="r9", ip="198.51.100.99", weight=2**31 - 1)
    RealServer(name="r9", ip="198.51.100.99", weight=0)  # quiescent is valid
    with pytest.raises(TestbedError):
        RealServer(name="r9", ip="198.51.100.99", weight=2**31)


def test_scheduler_flags_belong_to_their_scheduler() -> None:
    assert load_topology(scheduler="sh", sched_flags=["sh-port"]).service.sched_flags == (
        "sh-port",
    )
    with pytest.raises(TestbedError, match="does not apply to mh"):
        load_topology(scheduler="mh", sched_flags=["sh-port"])
    with pytest.raises(TestbedError, match="unknown scheduler flag 'sh-fast'"):
        load_topology(scheduler="sh", sched_flags=["sh-fast"])


def test_missing_key_message_names_required_keys_only(tmp_path: Path) -> None:
    text = _default_text().replace('vip = "203.0.113.100"', "")
    with pytest.raises(TestbedError) as err:
        load_topology(_write(tmp_path, text))
    assert str(err.value).endswith("[service]: missing key(s) vip")


def test_python_topology_builds_a_spec() -> None:
    wide = load_topology("wide")
    assert [r.name for r in wide.real_servers] == [f"web{i}" for i in range(1, 6)]
    assert (len(wide.clients), len(wide.directors)) == (1, 2)
    assert wide.source.endswith("topologies/wide.py")
    assert load_topology("topologies/wide.py", mode="dr").service.mode == "dr"
    assert wide.needs(clients=2) == "topology 'wide' has 1 clients; the test needs 2"
    assert wide.needs(directors=2, real_servers=5) is None


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = 1\n", "must define build() -> ClusterSpec"),
        ("def build():\n    return 42\n", "returned int, not a ClusterSpec"),
        ("def build():\n    raise RuntimeError('no network')\n", "RuntimeError: no network"),
        ("import nonexistent_module_xyz\n", "ModuleNotFoundError"),
        (
            "from testbed.topology import RealServer\n"
            "def build():\n    return RealServer(name='R1', ip='198.51.100.1')\n",
            "is not a host name",
        ),
    ],
)
def test_bad_python_topologies_give_one_line(tmp_path: Path, source: str, message: str) -> None:
    path = tmp_path / "mine.py"
    path.write_text(source)
    with pytest.raises(TestbedError, match=re.escape(message)) as err:
        load_topology(path)
    assert "\n" not in str(err.value) and str(err.value).startswith("topology mine.py:")
