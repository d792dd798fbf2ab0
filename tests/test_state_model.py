"""The TCP connection-state model against walks read off ip_vs_proto_tcp.c by hand."""

from __future__ import annotations

from testbed.state import (
    STATES,
    TABLES,
    TcpEntry,
    flag_row,
    new_conn_expected,
    reschedules,
    timeouts,
    walk,
)

OPEN = [("S", "in"), ("SA", "out"), ("A", "in")]
OPEN_ONE_WAY = [("S", "in"), ("A", "in")]  # DR/TUN: the director sees the client only


def test_tables_are_complete_and_name_only_known_states() -> None:
    for variant in TABLES.values():
        assert set(variant) == {"input", "output", "input_only"}
        for table in variant.values():
            for row in table.values():
                assert list(row) == list(STATES) and set(row.values()) <= set(STATES)


def test_nat_client_close_goes_through_close_wait_to_time_wait() -> None:
    states = walk(True, [*OPEN, ("FA", "in"), ("A", "out"), ("FA", "out"), ("A", "in")])
    assert states == ["SYN_RECV", "SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "CLOSE_WAIT",
                      "TIME_WAIT", "TIME_WAIT"]  # fmt: skip


def test_nat_server_close_passes_fin_wait() -> None:
    states = walk(True, [*OPEN, ("FA", "out"), ("A", "in"), ("FA", "in"), ("A", "out")])
    assert states[3:] == ["FIN_WAIT", "FIN_WAIT", "TIME_WAIT", "TIME_WAIT"]


def test_dr_sees_one_direction_and_ends_in_fin_wait() -> None:
    client_close = walk(False, [*OPEN_ONE_WAY, ("FA", "in"), ("A", "in")])
    assert client_close == ["SYN_RECV", "ESTABLISHED", "FIN_WAIT", "FIN_WAIT"]
    # the server's FIN is not seen: the client's ACK of it changes nothing
    server_close = walk(False, [*OPEN_ONE_WAY, ("A", "in"), ("FA", "in")])
    assert server_close[2:] == ["ESTABLISHED", "FIN_WAIT"]


def test_rst_closes_and_flagless_segment_closes() -> None:
    assert walk(True, [*OPEN, ("R", "in")])[-1] == "CLOSE"
    assert walk(False, [*OPEN_ONE_WAY, ("RA", "in")])[-1] == "CLOSE"
    assert walk(True, [*OPEN, ("", "in")])[-1] == "CLOSE"
    assert flag_row("FA") == "fin" and flag_row("RA") == "rst" and flag_row("SA") == "syn"


def test_an_output_segment_ends_input_only_for_good() -> None:
    entry = TcpEntry(masquerading=False)
    assert entry.table("in") == "input_only"
    entry.segment("SA", "out")
    assert entry.table("in") == "input"


def test_active_states_and_timeouts() -> None:
    entry = TcpEntry(masquerading=True)
    entry.segment("S", "in")
    assert entry.active
    # a client's RST to an unanswered SYN leaves the entry SYN_RECV, still active
    assert entry.segment("R", "in") == "SYN_RECV" and entry.active
    entry.segment("A", "in")
    entry.segment("R", "in")
    assert not entry.active
    assert timeouts(tcp=30, tcpfin=5)["ESTABLISHED"] == 30
    assert timeouts(tcpfin=5)["FIN_WAIT"] == 5 and timeouts()["FIN_WAIT"] == 120


def test_secure_tcp_needs_the_answer_to_establish() -> None:
    """With secure_tcp, a NAT entry whose SYN was not answered stays SYN_RECV at the
    client's ACK; an input-only entry's SYN puts it in SYNACK."""
    assert walk(True, [("S", "in"), ("A", "in")], secure=True) == ["SYN_RECV", "SYN_RECV"]
    assert walk(True, [("S", "in"), ("A", "in")]) == ["SYN_RECV", "ESTABLISHED"]
    assert walk(False, [("S", "in"), ("A", "in")], secure=True) == ["SYNACK", "ESTABLISHED"]


def test_source_port_reuse_reschedules_as_is_new_conn_expected_says() -> None:
    # NAT after a normal close: TIME_WAIT, rescheduled unless conn_reuse_mode is 0
    assert reschedules("TIME_WAIT", no_output=False, conn_reuse_mode=1)
    assert not reschedules("TIME_WAIT", no_output=False, conn_reuse_mode=0)
    # DR after a normal close sits in FIN_WAIT: only bit 2 reschedules it
    assert not reschedules("FIN_WAIT", no_output=True, conn_reuse_mode=1)
    assert reschedules("FIN_WAIT", no_output=True, conn_reuse_mode=3)
    assert not reschedules("FIN_WAIT", no_output=False, conn_reuse_mode=3)  # NAT's FIN_WAIT
    assert reschedules("CLOSE", no_output=True, conn_reuse_mode=1)  # after an RST
    assert not reschedules("CLOSE", no_output=True, conn_reuse_mode=1, controlled=True)
    # a real server of weight 0 with expire_nodest_conn: rescheduled whatever the state
    assert reschedules("ESTABLISHED", no_output=False, conn_reuse_mode=0,
                       expire_nodest_conn=1, weight=0)  # fmt: skip
    assert not reschedules("ESTABLISHED", no_output=False, conn_reuse_mode=1, weight=0)
    assert new_conn_expected("CLOSE", no_output=False, conn_reuse_mode=0)
