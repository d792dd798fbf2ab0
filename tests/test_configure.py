"""Cluster.configure(): every family put back to neutral, hosts set up at once, and a host
whose setup did not change left alone (no root: Mininet's shells and IPVS faked)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from testbed import FAMILIES, Cluster, load_topology
from testbed.registry import COMPUTED


class FakeNode:
    """A Mininet host's shell: records each script, answers with exit status 0."""

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        self.name, self.log, self.pending = name, log, ""

    def sendCmd(self, script: str) -> None:
        assert not self.pending, "a second command before the first one's output was read"
        # a pty keeps at most 4095 characters of a line: a longer one would hang the shell
        assert len(script) < 4095 and "\n" not in script, "a line the shell would never read"
        if script.startswith(". /"):  # a long script, sourced from its file: log the script
            path, _, rest = script[2:].partition(";")
            script = Path(path).read_text().rstrip("\n") + ";" + rest
        self.pending = script

    def waitOutput(self) -> str:
        self.log.append((self.name, self.pending))
        out = "".join(f"02:00:00:00:00:{n:02x}\n" for n in range(self.pending.count("/address")))
        self.pending = ""
        return out + "__rc=0\n"

    def intfNames(self) -> list[str]:
        return ["lo", f"{self.name}-eth0"]


class FakeNeighbours:
    """A host's neighbour caches over rtnetlink: records each flush."""

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        self.name, self.log = name, log

    def flush(self) -> int:
        self.log.append((self.name, FLUSHED))
        return 0


FLUSHED = "(neighbours flushed over rtnetlink)"


class FakeIpvs:
    def __init__(self) -> None:
        self.applied: list[Any] = []

    def apply(self, service: Any, real_servers: Any) -> None:
        self.applied.append(service)


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setattr("testbed.cluster._cluster.require_modules", lambda *m: None)
    c = Cluster(load_topology(), progress=lambda _msg: None)
    c.workdir.rmdir()
    c.workdir = tmp_path
    c.log = []
    nodes = {h.name: FakeNode(h.name, c.log) for h in c.base_spec.hosts}

    class Net:
        def get(self, name: str) -> FakeNode:
            return nodes[name]

    c.net = Net()
    c._ipvs[(c.spec.active.name, threading.get_ident())] = FakeIpvs()
    c._neighbours = {h.name: FakeNeighbours(h.name, c.log) for h in c.base_spec.hosts}
    return c


def _scripts(c: Any, host: str) -> list[str]:
    return [script for h, script in c.log if h == host and script != FLUSHED]


def test_every_host_is_set_up_and_flushed_in_one_round(cluster: Any) -> None:
    cluster.configure(cluster.base_spec.with_service(mode="dr"))
    hosts = sorted(h.name for h in cluster.base_spec.hosts)
    scripts, flushes = cluster.log[: len(hosts)], cluster.log[len(hosts) :]
    assert sorted(h for h, _ in scripts) == hosts  # one round of scripts, every host
    assert sorted(flushes) == [(h, FLUSHED) for h in hosts]  # then every cache forgotten
    r1 = _scripts(cluster, "r1")[0]
    # both families put back to neutral, then DR in IPv4
    assert "ip -4 route replace default via 198.51.100.1" in r1
    assert "ip -6 route replace default via 2001:db8:198:51::1" in r1
    assert r1.index("dev lo") < r1.index("ip addr add 203.0.113.100/32 dev lo")
    assert "ethtool -K r1-eth0 tx on" in r1


def test_an_unchanged_host_is_left_alone_until_something_runs_there(cluster: Any) -> None:
    spec = cluster.base_spec.with_service(mode="dr")
    cluster.configure(spec)
    cluster.log.clear()
    cluster.configure(spec.with_service(scheduler="wlc"))  # only the IPVS table differs
    assert all(script == FLUSHED for _, script in cluster.log)  # no process in any host
    cluster.run("r2", "sysctl -w net.ipv4.conf.all.arp_ignore=0")  # a test changes r2
    cluster.log.clear()
    cluster.configure(spec)
    changed = [h for h, script in cluster.log if "ip addr add" in script]
    assert changed == ["r2"]
    assert len(cluster._ipvs[("d1", threading.get_ident())].applied) == 3  # always written


def test_a_family_view_and_checksum_handling_reach_every_host(cluster: Any) -> None:
    v6 = cluster.base_spec.in_family(FAMILIES["ipv6"]).with_service(mode="nat")
    cluster.configure(v6, checksums=COMPUTED)
    assert "ip -6 route replace default via 2001:db8:198:51::254" in _scripts(cluster, "r3")[0]
    assert "sysctl -qw net.ipv6.conf.all.forwarding=1" in _scripts(cluster, "d2")[0]
    assert all("tx off" in script for _, script in cluster.log if script != FLUSHED)
    assert cluster.spec is v6


def test_macs_are_read_once_for_every_host_at_once(cluster: Any) -> None:
    assert cluster.mac("d1-eth0") == "02:00:00:00:00:00"
    assert len(cluster.log) == len(cluster.base_spec.hosts)  # one round, every host
    assert cluster.mac("r3-eth0") == "02:00:00:00:00:00" and cluster.mac("gw-eth0")
    assert len(cluster.log) == len(cluster.base_spec.hosts)  # and never again


def test_a_mode_change_undoes_only_what_the_last_setup_made(cluster: Any) -> None:
    cluster.configure(cluster.base_spec.with_service(mode="dr"))
    cluster.log.clear()
    cluster.configure(cluster.base_spec.with_service(mode="tun"))
    r1 = _scripts(cluster, "r1")[0]
    assert r1.startswith("{ ip addr del 203.0.113.100/32 dev lo 2>/dev/null; true; }")
    assert "ip link set tunl0 up" in r1 and "ip -6 route" not in r1  # no full neutral
    cluster.log.clear()
    v6 = cluster.base_spec.in_family(FAMILIES["ipv6"]).with_service(mode="nat")
    cluster.configure(v6)
    r1 = _scripts(cluster, "r1")[0]
    assert r1.startswith("{ ip addr flush dev tunl0; } && { ip link set tunl0 down; }")
    assert r1.count("route replace default") == 1  # only NAT's, in IPv6


def test_a_long_script_reaches_the_shell_through_a_file(cluster: Any) -> None:
    """A script longer than a pty lets a shell read (4095 characters) is sent as a file;
    the neutral baseline of both families, each tunnel device's teardown once, is not."""
    cluster.configure(cluster.base_spec)
    neutral = _scripts(cluster, "r1")[0]
    assert len(neutral) < 4095 and neutral.count("[ -d /proc/sys/net/ipv4/conf/tunl0 ]") == 1
    cluster.run("c1", "echo " + "x" * 5000)
    assert any(len(script) >= 4095 for h, script in cluster.log if h == "c1")
    cluster.run("c1", "echo short")
    assert cluster.log[-1] == ("c1", "{ echo short; }; echo __rc=$?")


def test_releasing_takes_off_only_what_the_director_holds(
    cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing held, no process at all; the VIP held, only the VIP deleted."""
    import ipaddress

    held: set[Any] = set()
    monkeypatch.setattr(type(cluster), "local_addresses", lambda self, host: held)
    cluster.release_service_addresses("d2")
    assert cluster.log == []
    held.add(ipaddress.ip_address("203.0.113.100"))
    cluster.release_service_addresses("d2")
    ((host, script),) = cluster.log
    assert host == "d2" and "ip addr del 203.0.113.100/32 dev d2-eth0" in script
    assert "198.51.100.254" not in script and "2001:db8" not in script
