"""The report reads typed observations: readable tables and plots, and loud failures on drift."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.observe import (
    RECORD_KINDS,
    BackupOnlyRecord,
    DeletedUnderFlowRecord,
    FailoverRecord,
    FeedbackRecord,
    ForwardingRecord,
    FtpRecord,
    HealthRecord,
    IdleRecord,
    InhibitedReloadRecord,
    InjectionRecord,
    MidstreamRecord,
    OnePacketRecord,
    PersistenceRecord,
    QuiescentRecord,
    ReloadRecord,
    ReuseRecord,
    RoundTripRecord,
    ScaleRecord,
    SchedulerRecord,
    ScopeRecord,
    SipRecord,
    SyncEntryRecord,
    SyncRun,
    SysctlWrite,
    TcpWalkRecord,
    TemplateView,
    ThresholdRecord,
    TraceHop,
    UdpDeletedRecord,
    UdpEntryRecord,
    WalkStep,
    from_json,
    load_records,
    to_json,
)
from testbed.report import render

REPO = Path(__file__).resolve().parent.parent

RECORDS = [
    ForwardingRecord(
        key="nat-tcp-ipv4", mode="nat", protocol="tcp", family="ipv4", requests=6,
        responses_per_server={"r1": 2, "r2": 2, "r3": 2}, kernel_order=["198.51.100.13"],
        service_counters={"conns": 6}, frames_captured=120, exchange_s=3.2,
        handshake_trace=[TraceHop(point="c1-eth0", direction="out", packet="IP / TCP S")],
    ),
    SchedulerRecord(key="wrr[4, 3, 2]", flows=9, observed={"r1": 4, "r2": 3, "r3": 2},
                    expected={"r1": 4.0, "r2": 3.0, "r3": 2.0}, mismatches=0,
                    check="every choice equals the model's", figures={"weights": [4, 3, 2]}),
    ThresholdRecord(key="upper-threshold", first={"r1": 4, "r2": 4}, stages=[{"r2": 6}]),
    FailoverRecord(
        key="keepalived-v2-1s-kill", backend="keepalived-v2-1s", fault="kill",
        formula="3 x 1 + 0.414", window_s=(2.4, 3.4), takeover_s=2.9, daemon_reported_s=3.0,
        decided_s=None,
        released_s=None, lower_prio_adverts_s=[], backup_transitions=[(2.9, "MASTER")],
        service_restored_s=2.95, last_via_master_s=-0.1, first_via_backup_s=2.93,
        garp_s=[2.9, 2.91, 7.9], failed_probes=50, failback_s=4.2, vip_holders_after=["d1", "d2"],
    ),
    SyncRun(
        key="dr-ipvsadm", mode="dr", sync="ipvsadm", streams=18, holds=9, synced_streams=18,
        synced_holds=0, handshake_holds=8, sync_lag_s=2.7, dest_counts={"d1": {"198.51.100.11": 6}},
        survived_streams=18, reset_streams=0, stalled_streams=0, byte_errors=[], gap_s=0.1,
        survived_holds=0, backup_conntrack=0, late_streams=6, late_survived_failback=6,
        early_survived_failback=18, takeover_s=0.9, throughput_gap_s=0.25,
        timeline=[(-2.0, 1000.0), (-1.75, 980.0)],
    ),
    HealthRecord(key="keepalived-TCP_CHECK", removed_s=0.85, bound_s=4.0, restored_s=0.4,
                 during={"r2": 3, "r3": 3}, after={"r1": 2, "r2": 2, "r3": 2}),
    FeedbackRecord(key="misc_dynamic", load=8, weight_before=100, weight_loaded=20,
                   lowered_s=1.0, raised_s=1.1, new_connections={"198.51.100.11": 2},
                   agent_port=9100),
    ScaleRecord(key="nat", connections=20000, ipvs_active=[6667, 6667, 6666],
                ramped={"held": 20000, "failed": 0, "connect_ms": {"p99": 310}},
                result={"resets": 0}),
    UdpEntryRecord(key="udp-nat", timeout_set=4, timeout_read=4, ring=["r3", "r2", "r1"],
                   first="r3", state="UDP", spacing_s=3.0, renewed="r3", expires_renewed=6,
                   gone_after_s=4.4, after="r2"),
    FtpRecord(key="pasv-ipv4", command="PASV", active=False, banner_server="r2", data_server="r2",
              data_peer="203.0.113.100:30001", director_entries=["... -> 198.51.100.12:21"],
              curl_exit=0),
    SyncEntryRecord(key="sctp-ipv6", answered_by="r1", master="SCTP ... -> r1",
                    backup="SCTP ... -> r1", seconds=1.2),
    InjectionRecord(key="pmtu-ipv4-disc1", sent=["IP / UDP 203.0.113.11:42001 > ..."],
                    seen=[TraceHop(point="c1-eth0", direction="in", packet="IP / ICMP")]),
    TcpWalkRecord(key="nat-client-first", masquerading=True,
                  timeouts={"tcp": 700, "tcpfin": 70},
                  steps=[WalkStep(name="handshake", segments=[("S", "in"), ("SA", "out")],
                                  state="ESTABLISHED", expires=699)]),
    IdleRecord(key="idle-dr", timeout=3, state_before="ESTABLISHED", gone_after_s=3.1,
               delivered="", client_error="ConnectionResetError", forwarded=0),
    PersistenceRecord(key="persist-nat", timeout=15, model=["r3", "r2"], held=["r3"] * 3,
                      template=[TemplateView(dest="r3", state="NONE", expires=14, vport=8700)],
                      gone_after_s=15.2, after="r2"),
    QuiescentRecord(key="quiescent-1", sysctl=1, first="r3", second="r2",
                    templates=[TemplateView(dest="r3", state="NONE", expires=14, vport=65535)]),
    ReuseRecord(key="dr-server-fin-reuse3", no_output=True, conn_reuse_mode=3, conntrack=0,
                expire_nodest_conn=0, first_weight=1,
                first="r3", state_before="FIN_WAIT", second="r2", rr_next="r2", connect_s=0.01),
    DeletedUnderFlowRecord(key="nat-expire_nodest_conn=1", expire_nodest_conn=1, first="r3",
                           entry_after="(none)", delivered="", client_saw="ConnectionResetError"),
    ScopeRecord(key="nat-fwmark", scope="fwmark", holder="203.0.113.10",
                connections=["203.0.113.10 -> 192.0.2.1:8701 = r3"],
                templates=[TemplateView(dest="r3", state="NONE", expires=14, vport=0,
                                        client="203.0.113.10", vaddr="0.0.0.67", protocol="IP")]),
    MidstreamRecord(key="tcp-sloppy_tcp=1", sysctl="net.ipv4.vs.sloppy_tcp", value=1,
                    entry="CLOSE", reached=["r3"], back=["IP / TCP 203.0.113.100:80 > c1 R"]),
    UdpDeletedRecord(key="nat-expire_nodest_conn=0", expire_nodest_conn=0, timeout=6,
                     first="r3", right_after="", entry_after="UDP r3", question_gap_s=1.3,
                     answered_after_s=6.4,
                     then="r2"),
    SipRecord(key="nat", model=["r3", "r2"], calls=["lvstb-call-a from 203.0.113.130:40000 = r3"]),
    ReloadRecord(key="remove-r1", before={"r1": 1, "r2": 1}, configured={"r2": 5, "r3": 1},
                 after={"r2": 5, "r3": 1}, converged_s=1.2, held={"r2": "answered by r2"},
                 entries={"r2": "ESTABLISHED"}, new_connections=["r3", "r2"]),
    InhibitedReloadRecord(key="inhibited-r1-removed", inhibited={"r1": 0, "r2": 1},
                          after={"r2": 1}, converged_s=1.0),
    BackupOnlyRecord(key="backup_only=1", value=1, answered_by="", client_saw=""),
    RoundTripRecord(key="catalogue", services=64, saved="-A -t 203.0.113.100:9001 -s rr",
                    restored="-A -t 203.0.113.100:9001 -s rr", lost=[],
                    thresholds_lost=["6 203.0.113.100 9001"]),
    SysctlWrite(key="sync_ports=3", name="sync_ports", value="3", accepted=False,
                read_back="1", before="1"),
    OnePacketRecord(key="ops-dr", datagrams=3, expected=["r3", "r2", "r1"],
                    schedule=["r3", "r2", "r1"], answers=["r3", "r2", "r1"],
                    answer_sources=["203.0.113.100:80"], entries_seen=0, conns_counted=3),
]  # fmt: skip


def _results(tmp_path: Path) -> Path:
    data = {
        "run_id": "r1",
        "topology": "default",
        "environment": {"kernel": "6.1.0-56-amd64", "kernel_origin": "installed",
                        "where": "guest", "emulation": "tcg", "versions": {"scapy": "2.8.0"}},
        "timings": {"topology_build_s": 17.0, "suite_s": 300.0},
        "counts": {"passed": 1, "failed": 1},
        "observations": [to_json(r) for r in RECORDS],
        "tests": [
            {"nodeid": "t::ok[nat]", "doc": "Source: ipvsadm(8)", "outcome": "passed",
             "duration_s": 1.0},
            {"nodeid": "t::bad[dr]", "doc": "", "outcome": "failed", "duration_s": 2.0,
             "details": "expected X got Y", "sections": {"LVS state": "TCP 203.0.113.100:80"}},
        ],
    }  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps(data))
    return tmp_path


def test_records_survive_json_as_the_same_dataclasses() -> None:
    data = json.loads(json.dumps({"observations": [to_json(r) for r in RECORDS]}))
    assert load_records(data) == RECORDS


def test_a_renamed_field_fails_loudly() -> None:
    """The report reads fields by name: a record written with another field name must not
    load silently (it would drop a mark from a plot)."""
    item = to_json(RECORDS[0])
    item["responses"] = item.pop("responses_per_server")
    with pytest.raises(TypeError, match="responses"):
        load_records({"observations": [item]})
    with pytest.raises(TypeError):
        from_json(HealthRecord, {"key": "x"})  # fields missing


def test_report_renders_every_kind_readably(tmp_path: Path) -> None:
    run = _results(tmp_path)
    report = render(run).read_text()
    summary = (run / "summary.txt").read_text()
    assert "6.1.0-56-amd64" in summary and "FAILED t::bad[dr]" in summary
    assert "t::ok[nat]" in report and "expected X got Y" in report and "TCP 203.0.113.100" in report
    for png in ("timings", "forwarding", "schedulers", "failover"):
        assert (run / f"{png}.png").stat().st_size > 0
    # scheduler table: kernel/model per server, not a dict repr
    assert "r1 4/4 · r2 3/3 · r3 2/2" in report and "{&#x27;r1&#x27;" not in report
    for title in ("Schedulers: model vs kernel", "Failover: measured vs formula",
                  "Connection survival", "Health checks", "Load feedback",
                  "Simultaneous connections", "Upper threshold"):  # fmt: skip
        assert title in report
    assert "6667, 6667, 6666" in report  # ActiveConn per real server
    assert "nat-tcp-ipv4" in report and "IP / TCP S" in report  # the handshake trace
    assert "<h2>The network</h2>" in report and "<svg" in report  # drawn from the topology


def test_every_record_kind_has_a_table(tmp_path: Path) -> None:
    """A new kind of observation must reach the report: every registered kind has a sample
    here, and each sample's key appears in the rendered report."""
    assert {r.kind for r in RECORDS} == set(RECORD_KINDS)  # type: ignore[attr-defined]
    report = render(_results(tmp_path)).read_text()
    for rec in RECORDS:
        assert rec.key in report, f"{type(rec).__name__} {rec.key} is not in the report"


def test_old_results_without_typed_observations_still_render(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps({"run_id": "old", "observations": {}}))
    assert "old" in render(tmp_path).read_text()


def _run_with_results_plugin(tmp_path: Path, source: str) -> dict:  # type: ignore[type-arg]
    """Run a small pytest module under the ResultsPlugin; its results.json."""
    (tmp_path / "test_inner.py").write_text(source)
    runner = (
        "import sys, pytest\n"
        "from pathlib import Path\n"
        "from testbed.report import ResultsPlugin\n"
        "plugin = ResultsPlugin(Path(sys.argv[1]) / 'out', {'run_id': 'r'})\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', sys.argv[1]], plugins=[plugin]))\n"
    )
    done = subprocess.run([sys.executable, "-c", runner, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((tmp_path / "out" / "results.json").read_text())


def test_results_record_typed_observations(tmp_path: Path) -> None:
    """What a test records reaches results.json as its kind and fields."""
    data = _run_with_results_plugin(
        tmp_path,
        "from testbed.observe import ThresholdRecord, record\n"
        "def test_ok():\n"
        "    record(ThresholdRecord(key='t', first={'r1': 4}, stages=[]))\n",
    )
    assert data["observations"] == [
        {"kind": "thresholds", "key": "t", "first": {"r1": 4}, "stages": []}
    ]


def test_results_record_skip_and_xfail_reasons(tmp_path: Path) -> None:
    """A known deviation (xfail) is recorded as such with its reason, not as a bare skip."""
    data = _run_with_results_plugin(
        tmp_path,
        "import pytest\n"
        "def test_ok():\n    assert True\n"
        "def test_skip():\n    pytest.skip('kernel lacks module ip_vs_twos')\n"
        "def test_known():\n    pytest.xfail('upstream bug #1')\n",
    )
    outcomes = {
        t["nodeid"].split("::")[1]: (t["outcome"], t.get("skip_reason")) for t in data["tests"]
    }
    assert outcomes == {
        "test_ok": ("passed", None),
        "test_skip": ("skipped", "kernel lacks module ip_vs_twos"),
        "test_known": ("xfailed", "upstream bug #1"),
    }
    assert data["counts"]["xfailed"] == 1
