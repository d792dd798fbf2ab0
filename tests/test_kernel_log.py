"""Kernel bug reports found in /dev/kmsg records (Documentation/ABI/testing/dev-kmsg)."""

import os

import pytest

from testbed.kernel import KernelLog, bug_reports, parse_record

WARN = (
    "4,1234,98765432,-;WARNING: CPU: 1 PID: 321 at net/netfilter/ipvs/ip_vs_conn.c:1010"
    " ip_vs_conn_expire+0x1c/0x20 [ip_vs]\n SUBSYSTEM=net\n"
)


def test_a_record_is_split_into_its_fields() -> None:
    record = parse_record(WARN)
    assert record is not None
    assert (record.facility, record.level, record.seq, record.usec) == (0, 4, 1234, 98765432)
    assert record.text.startswith("WARNING: CPU: 1 PID: 321 at net/netfilter/ipvs/")
    assert record.text.endswith("\nSUBSYSTEM=net")
    assert parse_record("not a record") is None


@pytest.mark.parametrize(
    "text",
    [
        "WARNING: CPU: 0 PID: 1 at kernel/foo.c:1 foo",
        "BUG: KASAN: slab-use-after-free in ip_vs_conn_expire+0x4c/0x50",
        "BUG: kernel NULL pointer dereference, address: 0000000000000008",
        "kernel BUG at net/core/skbuff.c:123!",
        "Oops: general protection fault, probably for non-canonical address",
        "WARNING: possible circular locking dependency detected",
        "UBSAN: shift-out-of-bounds in net/netfilter/ipvs/ip_vs_mh.c:100:3",
    ],
)
def test_kernel_reports_are_found(text: str) -> None:
    record = parse_record(f"3,1,2,-;{text}\n")
    assert record is not None and bug_reports([record]) == [text]


def test_a_report_keeps_its_trace_up_to_its_end() -> None:
    texts = [
        "IPVS: [rr] scheduler registered.",
        "WARNING: CPU: 1 PID: 321 at net/netfilter/ipvs/ip_vs_conn.c:1010 ip_vs_conn_expire",
        "Modules linked in: ip_vs_rr ip_vs",
        "Call Trace:",
        "---[ end trace 0000000000000000 ]---",
        "IPVS: stopping master sync thread",
    ]
    records = [parse_record(f"4,{i},{i},-;{t}\n") for i, t in enumerate(texts)]
    assert bug_reports([r for r in records if r]) == ["\n".join(texts[1:5])]


def test_ordinary_messages_and_user_space_writes_are_not_reports() -> None:
    quiet = parse_record("6,7,8,-;IPVS: [rr] scheduler registered.\n")
    # facility 1 (user): anyone may write "WARNING:" to /dev/kmsg
    forged = parse_record("12,9,10,-;WARNING: CPU: 0 PID: 1 at nowhere\n")
    assert quiet is not None and forged is not None
    assert bug_reports([quiet, forged]) == []


def test_the_log_returns_records_written_after_it_was_opened() -> None:
    """The real /dev/kmsg: a record written after opening comes back, as user space's."""
    try:
        log = KernelLog()
        writer = os.open("/dev/kmsg", os.O_WRONLY)
    except OSError as exc:
        pytest.skip(f"/dev/kmsg not readable and writable here: {exc}")
    marker = f"lvs-testbed unit test {os.getpid()}: WARNING: CPU: 0 (not a report)"
    try:
        os.write(writer, marker.encode() + b"\n")  # a record without one stays open
        mine = [r for r in log.new() if r.text == marker]
    finally:
        os.close(writer)
        log.close()
    assert len(mine) == 1 and mine[0].facility == 1
    assert bug_reports(mine) == []
