"""Cluster.client_addresses: disjoint blocks per client, added once (no root: run() faked)."""

from __future__ import annotations

import pytest

from testbed import FAMILIES, Cluster, TestbedError, load_topology


class FakeCluster(Cluster):
    def __init__(self) -> None:
        super().__init__(load_topology(), progress=lambda _msg: None)
        self.workdir.rmdir()  # nothing is started: leave no temporary directory
        self.commands: list[str] = []
        self.present: set[str] = set()

    def run(self, host: str, *commands: str, check: bool = True) -> str:
        for cmd in commands:
            self.commands.append(f"{host}: {cmd}")
            if cmd.startswith("ip addr add "):
                self.present.add(cmd.split()[3])
        return " ".join(sorted(self.present))


def test_each_client_gets_its_own_block() -> None:
    c = FakeCluster()
    c1 = c.client_addresses("c1", 3)
    c2 = c.client_addresses("c2", 63)
    assert c1 == ["203.0.113.128", "203.0.113.129", "203.0.113.130"]
    assert c2[0] == "203.0.113.192" and c2[-1] == "203.0.113.254"  # never the broadcast
    assert not set(c1) & set(c2)


def test_addresses_are_added_once() -> None:
    c = FakeCluster()
    c.client_addresses("c1", 2)
    c.client_addresses("c1", 3)
    adds = [x for x in c.commands if "ip addr add" in x]
    assert adds == [f"c1: ip addr add 203.0.113.{h}/24 dev c1-eth0 " for h in (128, 129, 130)]
    routes = [x for x in c.commands if "ip route" in x]
    assert routes[-1] == "c1: ip route replace 203.0.113.0/24 dev c1-eth0 src 203.0.113.11 metric 0"


def test_ipv6_extra_addresses_keep_the_clients_own_as_source() -> None:
    c = FakeCluster()
    c.spec = c.spec.in_family(FAMILIES["ipv6"])
    assert c.client_addresses("c2", 2) == ["2001:db8:203:113::c0", "2001:db8:203:113::c1"]
    assert c.commands[-3:] == [
        "c2: ip addr add 2001:db8:203:113::c0/64 dev c2-eth0 nodad",
        "c2: ip addr add 2001:db8:203:113::c1/64 dev c2-eth0 nodad",
        "c2: ip route replace 2001:db8:203:113::/64 dev c2-eth0 src 2001:db8:203:113::12"
        " metric 256",
    ]


@pytest.mark.parametrize(("client", "count", "message"),
                         [("c2", 64, "room for 63"), ("r1", 1, "not a client")])  # fmt: skip
def test_bad_requests_are_one_line_errors(client: str, count: int, message: str) -> None:
    with pytest.raises(TestbedError, match=message):
        FakeCluster().client_addresses(client, count)
