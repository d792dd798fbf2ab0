"""The control-plane contract's pure parts: the service vocabulary (client blocks,
engines, firewall marks, port 0), what the kernel should report, the catalogue, the
sysctl declarations."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from testbed import FAMILIES, MODES, PROTOCOLS, SCHEDULERS, TestbedError, load_topology
from testbed.ipvs import SYSCTLS, expected_state, service_key, settings
from testbed.observe import EDITS, REFUSALS, control_table, expected_table, spare_block
from testbed.registry import tunnel_options

DEFAULT = load_topology()
V6 = DEFAULT.in_family(FAMILIES["ipv6"])


def _service(spec=DEFAULT, **changes: object):  # type: ignore[no-untyped-def]
    return dataclasses.replace(spec.service, **changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"persistence_prefix": 24}, "persistence_prefix needs persistence"),
        ({"persistence": 60, "persistence_prefix": 33}, "is not in 1..32"),
        ({"persistence": 60, "persistence_engine": "http"}, "unknown persistence engine"),
        ({"persistence": 60, "persistence_engine": "sip"}, "reads only udp, not tcp"),
        ({"fwmark": -1}, "not a 32-bit mark"),
        ({"port": 0}, "is not a port"),
    ],
)
def test_service_options_are_checked_in_one_line(changes: dict, message: str) -> None:
    with pytest.raises(TestbedError, match=message):
        _service(**changes)


def test_client_blocks_are_masks_for_ipv4_and_prefix_lengths_for_ipv6() -> None:
    v4 = _service(persistence=60, persistence_prefix=24)
    v6 = _service(V6, persistence=60, persistence_prefix=64)
    assert expected_state(v4, ()).netmask == "255.255.255.0"
    # ip_vs_ctl.c reads the IPv6 attribute as a host-order prefix length
    assert socket.inet_aton(expected_state(v6, ()).netmask) == (64).to_bytes(4, "little")
    assert expected_state(_service(), ()).netmask == "255.255.255.255"
    assert _service(port=0, persistence=60).port == 0


def test_a_fwmark_service_is_reported_by_its_mark_alone() -> None:
    marked = expected_state(_service(fwmark=7, persistence=30), DEFAULT.real_servers)
    assert (marked.addr, marked.port, marked.protocol, marked.fwmark) == ("", 0, 0, 7)
    assert marked.flags == 0x0001 | 0x0002  # persistent, and hashed by the kernel
    assert _service(fwmark=7).ipvsadm_key == "-f 7"
    assert _service(V6, fwmark=7).ipvsadm_key == "-f 7 -6"


def test_settings_ignore_counters_and_the_kernels_order_of_real_servers() -> None:
    state = expected_state(_service(), DEFAULT.real_servers)
    busy = dataclasses.replace(
        state, dests=tuple(dataclasses.replace(d, active=3) for d in reversed(state.dests))
    )
    assert settings(busy) == state


def test_the_catalogue_covers_every_entry_once_per_family() -> None:
    table = control_table(DEFAULT, schedulers=list(SCHEDULERS), engines=["sip"])
    keys = [service_key(expected_state(s, r)) for s, r in table]
    assert len(keys) == len(set(keys)) == len(expected_table(table))
    for family in FAMILIES.values():
        services = [s for s, _ in table if s.family is family]
        assert {(s.protocol, s.mode) for s in services} >= {
            (p, m) for p in PROTOCOLS for m in MODES
        }
        assert {s.scheduler for s in services if s.sched_flags} == {"sh", "mh"}
        assert {s.scheduler for s in services} == set(SCHEDULERS)
        assert any(s.fwmark for s in services) and any(s.port == 0 for s in services)
        assert any(s.persistence_engine == "sip" for s in services)
        tunnelled = [(s, r) for s, r in table if s.family is family and s.mode == "tun"]
        assert {(r.tunnel, r.tunnel_checksum) for _, rs in tunnelled for r in rs} == {
            (o.tunnel.name, o.checksum.name) for o in tunnel_options()
        }
        assert {r.ip.version for _, rs in tunnelled for r in rs} == {4, 6}
    weights = {r.weight for _, rs in table for r in rs}
    assert {0, 2**31 - 1} <= weights


def test_edits_and_refusals_are_named_once() -> None:
    for entries in (EDITS, REFUSALS):
        names = [e.name for e in entries]
        assert len(names) == len(set(names))


def test_every_bounded_sysctl_declares_what_it_refuses() -> None:
    bounded = ("drop_entry", "drop_packet", "secure_tcp", "sync_version", "sync_ports",
               "sync_retries", "sync_threshold", "est_nice", "conn_lfactor")  # fmt: skip
    assert all(SYSCTLS[n].rejects and SYSCTLS[n].accepts for n in bounded)
    assert SYSCTLS["sync_threshold"].default == "3 50"
    # a kernel-dependent sysctl names what adds it; the rest must exist everywhere
    assert SYSCTLS["est_nice"].exists_with and not SYSCTLS["pmtu_disc"].exists_with


def test_a_marked_block_is_spare_in_every_topology() -> None:
    """The fwmark tests' destination block overlaps no network of the topology."""
    wide = load_topology("wide")
    assert str(spare_block(DEFAULT, FAMILIES["ipv4"])) == "192.0.2.0/26"
    assert str(spare_block(wide, FAMILIES["ipv4"])) == "203.0.113.0/26"
    assert str(spare_block(V6, FAMILIES["ipv6"])) == "2001:db8:f000::/120"
