"""ipvsadm -Ln parsing, the independent cross-check of the netlink dump."""

from __future__ import annotations

from testbed.ipvs import DestState, ServiceState, Stats, parse_ipvsadm, rows_from_netlink

IPVSADM = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  203.0.113.100:80 rr
  -> 198.51.100.11:8080           Masq    1      0          2
  -> 198.51.100.12:8080           Masq    3      1          0
UDP  203.0.113.100:53 wlc persistent 300
  -> 198.51.100.13:53             Route   0      0          0
"""


def test_parse_services_and_dests() -> None:
    rows = parse_ipvsadm(IPVSADM)
    assert [(r.service, r.dest) for r in rows] == [
        ("TCP 203.0.113.100:80 rr", None),
        ("TCP 203.0.113.100:80 rr", "198.51.100.11:8080 nat w=1"),
        ("TCP 203.0.113.100:80 rr", "198.51.100.12:8080 nat w=3"),
        ("UDP 203.0.113.100:53 wlc persistent", None),
        ("UDP 203.0.113.100:53 wlc persistent", "198.51.100.13:53 dr w=0"),
    ]


def _dest(addr: str, port: int, method: str, weight: int) -> DestState:
    return DestState(addr=addr, port=port, method=method, weight=weight, active=0, inactive=0,
                     persistent=0, upper_threshold=0, lower_threshold=0, stats=Stats())  # fmt: skip


def test_netlink_rows_compare_equal_to_ipvsadm_rows() -> None:
    states = [
        ServiceState(addr="203.0.113.100", port=80, protocol=6, scheduler="rr", persistent=False,
                     timeout=0, stats=Stats(), dests=(
                         _dest("198.51.100.11", 8080, "nat", 1),
                         _dest("198.51.100.12", 8080, "nat", 3))),
        ServiceState(addr="203.0.113.100", port=53, protocol=17, scheduler="wlc", persistent=True,
                     timeout=300, stats=Stats(), dests=(_dest("198.51.100.13", 53, "dr", 0),)),
    ]  # fmt: skip
    assert rows_from_netlink(states) == parse_ipvsadm(IPVSADM)


def test_a_differing_weight_is_detected() -> None:
    states = [
        ServiceState(addr="203.0.113.100", port=80, protocol=6, scheduler="rr", persistent=False,
                     timeout=0, stats=Stats(), dests=(_dest("198.51.100.11", 8080, "nat", 2),))
    ]  # fmt: skip
    assert rows_from_netlink(states) != parse_ipvsadm(IPVSADM)[:2]


def test_declared_protocols_agree_with_the_kernels_names() -> None:
    from testbed.ipvs import KERNEL_PROTOCOLS
    from testbed.registry import PROTOCOLS

    for proto in PROTOCOLS.values():
        assert KERNEL_PROTOCOLS[proto.number] == proto.title


def test_ipv6_endpoints_in_brackets() -> None:
    text = (
        "TCP  [2001:db8::100]:80 rr\n"
        "  -> [2001:db8:1::11]:80          Route   1      0          0\n"
    )
    rows = parse_ipvsadm(text)
    assert [(r.service, r.dest) for r in rows] == [
        ("TCP [2001:db8::100]:80 rr", None),
        ("TCP [2001:db8::100]:80 rr", "[2001:db8:1::11]:80 dr w=1"),
    ]


def test_ipvsadm_commands_build_the_service() -> None:
    from testbed import load_topology
    from testbed.ipvs import ipvsadm_commands

    spec = load_topology(scheduler="sh", sched_flags=["sh-port"])
    cmds = ipvsadm_commands(spec.service, spec.real_servers[:1])
    assert cmds == [
        "ipvsadm -A -t 203.0.113.100:80 -s sh -b sh-port",
        "ipvsadm -a -t 203.0.113.100:80 -r 198.51.100.11:8080 -m -w 1",
    ]


def test_timeouts_are_read_and_written_as_ipvsadm_does() -> None:
    import pytest

    from testbed.ipvs import Timeouts, parse_timeouts

    t = parse_timeouts("Timeout (tcp tcpfin udp): 900 120 300\n")
    assert t == Timeouts(tcp=900, tcpfin=120, udp=300)
    assert Timeouts(tcp=0, tcpfin=0, udp=4).command() == "ipvsadm --set 0 0 4"
    with pytest.raises(ValueError):
        parse_timeouts("ipvsadm: permission denied")


def test_one_packet_scheduling_is_written_as_ops() -> None:
    from testbed import load_topology
    from testbed.ipvs import ipvsadm_commands

    spec = load_topology(protocol="udp", one_packet=True)
    assert ipvsadm_commands(spec.service, spec.real_servers)[0].endswith(" -s rr -o")
