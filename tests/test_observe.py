"""Pure parts of the experiments: timelines, model comparisons, patterns over any topology."""

from __future__ import annotations

import pytest

from testbed.ha import GarpExpectation, TakeoverWindow
from testbed.ha._keepalived import parse_log
from testbed.net import Tracked
from testbed.observe import (
    Advert,
    Decision,
    Failover,
    SchedulerRecord,
    compare,
    longest_silence,
    recorded,
    spread_over,
    throughput_timeline,
)
from testbed.observe._sync import BUCKET
from testbed.sched import Dest, Flow


def test_throughput_timeline_and_gap() -> None:
    t = Tracked(kind="stream", sock=None, sport=1, opened=0.0)  # type: ignore[arg-type]
    # 100 bytes every 0.1 s, silent from 1.0 s to 2.0 s
    t.arrivals = [(i / 10, 100 * (i + 1)) for i in range(10)]
    t.arrivals += [(2.0 + i / 10, 1000 + 100 * (i + 1)) for i in range(10)]
    line = throughput_timeline([t], start=0.0, end=3.0)
    assert line[0] == (0.0, 300 / BUCKET)  # arrivals at 0.0, 0.1 and 0.2 s
    assert longest_silence(line, after=0.0) == pytest.approx(1.0)
    assert longest_silence(line, after=2.5) == pytest.approx(BUCKET)  # the bucket at 3.0 s
    assert sum(r for _, r in line) * BUCKET == 2000


def test_patterns_spread_over_any_number_of_real_servers() -> None:
    assert spread_over((4, 3, 2), 3) == (4, 3, 2)  # the default topology: the pattern itself
    assert spread_over((4, 3, 2), 5) == (4, 3, 2, 4, 3)
    assert spread_over((3, 0, 1), 2) == (3, 0)


def _decision(expected: str | None, got: str | None, port: int) -> Decision:
    return Decision(
        flow=Flow(saddr="203.0.113.11", sport=port, daddr="203.0.113.100", dport=80),
        expected=expected,
        got=got,
        state=[Dest(name="r1", addr="198.51.100.11", active=2)],
    )


def test_a_comparison_is_recorded_and_explains_what_differs() -> None:
    decisions = [_decision("r1", "r1", 1), _decision("r2", "r3", 2), _decision(None, None, 3)]
    result = compare("case-x", decisions, ["connect failed"], weights=[1, 2])
    assert result.record == SchedulerRecord(
        key="case-x", flows=3, observed={"None": 1, "r1": 1, "r3": 1},
        expected={"None": 1.0, "r1": 1.0, "r2": 1.0}, mismatches=1,
        check="every choice equals the model's", figures={"weights": [1, 2]},
    )  # fmt: skip
    assert result.wrong == [decisions[1]]
    text = result.explain()
    assert "1 of 3 choices differ" in text and "expected r2, got r3" in text
    assert "r1(w=1 a=2 i=0)" in text and "connect failed" in text
    assert result.record in recorded()


def _failover(
    transitions: list[tuple[float, str]],
    adverts: list[tuple[float, str, int]],
    log: list[tuple[float, str]] = (),
) -> Failover:
    return Failover(
        label="keepalived-v3-0.3s", fault="stop", master="d1", backup="d2",
        window=TakeoverWindow(earliest=0.2, latest=0.2, formula="skew"),
        garp=GarpExpectation(), slack=1.0, failback_bound=5.0, keeps_vip=(),
        fault_at=0.0, takeover_at=0.2, reported_at=0.3,
        decided_at=None, decision_resolution=0.0, scripts_bound=0.0, released_at=0.1,
        from_release=False, backup_priority=100,
        adverts=[Advert(*a) for a in adverts], backup_transitions=transitions,
        holders_after=["d2"], client_neigh="", macs={}, garp_times=[0.2],
        first_via_backup=None, last_via_master=None, first_frame_via_backup=None,
        recovered_at=8.0, failback_s=1.0, holders_after_failback=["d1"], probes=[],
        backup_log=list(log),
    )  # fmt: skip


def test_the_failback_is_not_a_lost_mastership() -> None:
    fo = _failover([(-5.0, "BACKUP"), (0.3, "MASTER"), (9.0, "BACKUP")], [])
    assert fo.master_exits == []


def test_a_lost_mastership_and_the_advert_after_shutdown_that_explains_it() -> None:
    adverts = [(-0.5, "d1", 150), (0.05, "d1", 0), (0.8, "d1", 150), (1.0, "d2", 100)]
    fo = _failover([(0.3, "MASTER"), (0.85, "BACKUP"), (1.9, "MASTER"), (9.0, "BACKUP")], adverts)
    assert fo.master_exits == [0.85]
    assert fo.adverts_after_shutdown() == [fo.adverts[2]]
    assert fo.lower_prio_adverts == []  # the priority 0 came before the takeover
    assert "+0.800 d1 prio 150" in fo.vrrp_story()


def test_the_daemon_log_tells_what_the_capture_missed() -> None:
    log = [
        (0.0, "(VI_LVS) Entering MASTER STATE"),
        (1.0, "(VI_LVS) Received advert from fe80::1 with lower priority 50, ours 100, forcing"),
        (1.0, "(VI_LVS) Entering BACKUP STATE"),
        (2.0, "(VI_LVS) Entering MASTER STATE"),
        (9.0, "(VI_LVS) Entering BACKUP STATE"),
    ]
    fo = _failover([(0.3, "MASTER"), (9.0, "BACKUP")], [], log)
    assert fo.logged_lower_prio == [1.0]
    assert fo.master_exits == [1.0]  # the failback at 9.0 is after the recovery
    # an exit the notify script reported is not counted twice
    assert _failover([(0.3, "MASTER"), (1.4, "BACKUP")], [], log).master_exits == [1.4]
    assert "+1.000 (VI_LVS) Entering BACKUP STATE" in fo.vrrp_story()


def test_keepalived_log_lines_are_read_to_the_second() -> None:
    text = (
        "Sun Dec  6 08:36:16 2026: (VI_LVS) Entering MASTER STATE\n"
        "Sun Dec  6 08:36:17 2026: (VI_LVS) Entering BACKUP STATE\n"
        "a line without a stamp\n"
    )
    lines = parse_log(text)
    assert [m for _, m in lines] == [
        "(VI_LVS) Entering MASTER STATE",
        "(VI_LVS) Entering BACKUP STATE",
    ]
    assert lines[1][0] - lines[0][0] == 1.0


def test_a_takeover_burst_sent_twice_is_told_apart_by_the_daemons_log() -> None:
    from conformance.failover_promises import takeover_burst_sent_twice

    vip = "2001:db8:203:113::100"
    header = f"(VI_LVS) Sending/queueing Unsolicited Neighbour Adverts on d2-eth0 for {vip}"
    frame = f"Sending unsolicited Neighbour Advert on d2-eth0 for {vip}"
    twice = [(0.0, header), (0.0, frame), (0.0, header), (0.0, frame), (5.0, header)]
    fo = _failover([(0.3, "MASTER")], [], twice)
    fo.vip, fo.takeover_at = vip, 0.2
    # CI: bursts at the takeover, 0.33 s later, and the delayed one (full7, v3 IPv6 stop)
    fo.garp_times = [0.2] * 5 + [0.53] * 5 + [5.23] * 5
    assert fo.logged_announcements() == [0.0, 0.0]
    assert takeover_burst_sent_twice(fo)
    assert frame not in fo.vrrp_story() and header in fo.vrrp_story()
    fo.garp_times = [0.2] * 5 + [2.23] * 5 + [5.23] * 5  # too late to be the same takeover
    assert not takeover_burst_sent_twice(fo)
    fo.garp_times = [0.2] * 5 + [0.53] * 5  # the delayed burst missing: not excused
    assert not takeover_burst_sent_twice(fo)
    fo.backup_log = twice[:2] + twice[4:]  # the log records one send: the wire's extra
    fo.garp_times = [0.2] * 5 + [0.53] * 5 + [5.23] * 5  # burst is someone else's
    assert not takeover_burst_sent_twice(fo)


def test_failover_frame_filters_answer_as_decoding_every_frame() -> None:
    """The SYN and VRRP filters read bytes first and decode only what may match: the
    same answer as decoding every frame."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import ARP, Ether
    from scapy.layers.vrrp import VRRP, VRRPv3

    from testbed.net import Frame
    from testbed.observe._failover import _adverts, _syn_times

    d1, d2, c1 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:0a"
    vip = "203.0.113.100"
    packets = []
    for i, flags in enumerate(["S", "SA", "A", "R", "S", "F"]):
        dst = vip if i != 4 else "203.0.113.101"
        packets.append(Ether(src=c1, dst=d1) / IP(src="203.0.113.11", dst=dst)
                       / TCP(sport=40000 + i, flags=flags))  # fmt: skip
    packets += [
        Ether(src=d2) / IP(dst="224.0.0.18", proto=112) / VRRP(priority=100),
        Ether(src=d1) / IP(dst="224.0.0.18", proto=112) / VRRP(priority=0),
        Ether(src=c1) / IP(dst="224.0.0.18", proto=112) / VRRP(priority=200),
        Ether(src=d2, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=vip, pdst=vip),
        # not plain TCP (IP-in-IP): decoded, and scapy finds the inner SYN
        Ether(src=c1, dst=d1) / IP(dst=vip) / IP(dst="198.51.100.11") / TCP(flags="S"),
    ]
    frames = [Frame("d1-eth0", float(t), kind, bytes(p))
              for t, p in enumerate(packets) for kind in (0, 4)]  # fmt: skip

    def syns_decoded() -> list[tuple[float, int]]:
        return [(f.time, int(f.packet[TCP].sport)) for f in frames
                if f.direction == "in" and TCP in f.packet and f.packet[TCP].flags == "S"
                and f.packet[IP].dst == vip]  # fmt: skip

    def adverts_decoded(senders: dict[str, str], since: float) -> list[Advert]:
        out = []
        for f in frames:
            pkt = f.packet
            layer = VRRPv3 if VRRPv3 in pkt else VRRP if VRRP in pkt else None
            sender = senders.get(pkt[Ether].src) if layer is not None else None
            if sender is not None and f.time >= since:
                out.append(Advert(f.time, sender, int(pkt[layer].priority)))
        return out

    expected = syns_decoded()
    assert [t for t, _ in expected] == [0.0, 10.0]  # the SYN to the VIP; IP-in-IP's
    assert _syn_times(frames, vip, IP) == expected
    senders = {d1: "d1", d2: "d2"}
    for since in (0.0, 7.0):
        assert _adverts(frames, senders, since) == adverts_decoded(senders, since)
    assert len(_adverts(frames, senders, 0.0)) == 4


def test_exchange_frame_filters_answer_as_decoding_every_frame() -> None:
    """Tracing flows and a handshake decode only the frames that can matter (by point,
    direction, and the port's bytes): the same answer as decoding every frame."""
    from types import SimpleNamespace

    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import ARP, Ether

    from testbed import load_topology
    from testbed.net import Frame
    from testbed.observe._exchange import _handshake_trace, _trace_flows
    from testbed.registry import CHECKSUMS, FAMILIES, MODES, PROTOCOLS, Combination

    spec = load_topology(mode="tun")
    shape = Combination(mode=MODES["tun"], protocol=PROTOCOLS["tcp"], family=FAMILIES["ipv4"],
                        checksums=CHECKSUMS["offload"])  # fmt: skip
    vip, client = str(spec.service.vip), spec.clients[0]
    servers = spec.real_servers
    eth = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:01")
    frames, t = [], 0.0

    def add(point: str, kind: int, pkt: object) -> None:
        nonlocal t
        t += 1.0
        frames.append(Frame(point, t, kind, bytes(pkt)))  # type: ignore[call-overload]

    for i, rs in enumerate(servers * 2):
        sport = 40000 + i
        syn = IP(src=str(client.ip), dst=vip) / TCP(sport=sport, dport=80, flags="S")
        answer = IP(src=vip, dst=str(client.ip)) / TCP(sport=80, dport=sport, flags="SA")
        carried = IP(src="198.51.100.2", dst=str(rs.ip)) / syn
        add(f"{client.name}-eth0", 4, eth / syn)
        add("d1-eth0", 0, eth / syn)
        add("d1-eth1", 4, eth / carried)
        add(f"{rs.name}-eth0", 0, eth / carried)
        add(f"{rs.name}-eth0", 4, eth / answer)
        add("gw-eth0", 4, eth / answer)
        add(f"{client.name}-eth0", 0, eth / answer)
        add(f"{client.name}-eth0", 4, eth / IP(src=str(client.ip), dst=vip)
            / TCP(sport=sport, dport=80, flags="A"))  # fmt: skip
    add(f"{client.name}-eth0", 3, eth / syn)  # a flood
    add(f"{client.name}-eth0", 0, Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=vip, pdst=vip))
    add(f"{client.name}-eth0", 4, eth / IP(src=str(client.ip), dst="203.0.113.3")
        / TCP(sport=39999, flags="S"))  # fmt: skip

    def flows_decoded() -> list[tuple[int, str]]:
        proto, by_point = shape.protocol, {f"{r.name}-eth0": r for r in servers}
        reached, opened = {}, []
        for f in frames:
            if f.point != f"{client.name}-eth0" and f.point not in by_point:
                continue
            pkt = f.packet
            if not proto.is_opening(pkt):
                continue
            sport = proto.ports(pkt)[0]
            if f.point == f"{client.name}-eth0" and f.direction == "out" and pkt[IP].dst == vip:
                opened.append(sport)
            elif f.point in by_point and f.direction == "in":
                reached.setdefault(sport, by_point[f.point].name)
        return [(s, reached.get(s, "?")) for s in opened]

    site = SimpleNamespace(vip=vip)
    flows = _trace_flows(frames, shape, (client.name, str(client.ip)), site, servers)  # type: ignore[arg-type]
    assert [(f.sport, f.rs) for f in flows] == flows_decoded()
    assert [f.rs for f in flows] == [r.name for r in servers * 2]
    proto = shape.protocol
    for sport in (40000, 40004):
        decoded = [(f.point, f.direction, f.packet.summary()) for f in frames
                   if (proto.is_opening(f.packet) or proto.is_answer(f.packet))
                   and sport in proto.ports(f.packet)]  # fmt: skip
        trace = [(h.point, h.direction, h.packet) for h in _handshake_trace(frames, shape, sport)]
        assert trace == decoded and len(trace) == 7


def test_an_earlier_connection_still_closing_is_found_in_the_tcp_table() -> None:
    """/proc/net/tcp: a client socket in LAST_ACK towards port 80, a real server's in
    FIN_WAIT1 on 8080 may still send; TIME_WAIT and LISTEN do not."""
    from testbed.observe._exchange import tcp_table_sends

    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt\n"
    rest = " 00000000:00000000 01:00000014 00000000\n"
    client = head + "   0: 0B7100CB:B0C4 647100CB:0050 09" + rest
    server = head + "   0: 0B6433C6:1F90 0B7100CB:B0C4 04" + rest
    waiting = head + "   0: 0B7100CB:B0C6 647100CB:0050 06" + rest
    listening = head + "   0: 00000000:1F90 00000000:0000 0A" + rest
    assert tcp_table_sends(client, 2, 80) and not tcp_table_sends(client, 2, 8080)
    assert tcp_table_sends(server, 1, 8080) and not tcp_table_sends(server, 2, 8080)
    assert not tcp_table_sends(waiting, 2, 80) and not tcp_table_sends(listening, 1, 8080)
