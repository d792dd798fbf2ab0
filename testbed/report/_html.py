"""Turn results.json into summary.txt and a readable report.html with plots.

Rendering happens where the run was started (on the host after a guest run),
so the guest never pays for importing matplotlib under emulation.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from ..observe import (
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
    ThresholdRecord,
    UdpDeletedRecord,
    UdpEntryRecord,
    load_records,
    of_kind,
)
from ..topology import load_topology, svg_picture
from ..util import TestbedError
from ._bench import bench_plots, bench_summary
from ._format import fmt, save_figure, table
from ._ha import failover_plot, failover_tables
from ._ktap import ktap_text


def summary_text(data: dict[str, Any]) -> str:
    env = data.get("environment", {})
    counts = data.get("counts", {})
    t = data.get("timings", {})
    lines = [
        f"LVS testbed run {data.get('run_id', '?')}",
        f"kernel:    {env.get('kernel', '?')} ({env.get('kernel_origin', '?')})",
        f"where:     {env.get('where', '?')}, emulation: {env.get('emulation', '?')}",
        "versions:  " + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items()),
        "timings:   " + ", ".join(f"{k} {v:.1f}s" for k, v in t.items()),
        "result:    " + ", ".join(f"{v} {k}" for k, v in counts.items() if v),
    ]
    for test in data.get("tests", []):
        if test["outcome"] in ("failed", "error"):
            lines.append(f"  FAILED {test['nodeid']}")
        elif test["outcome"] in ("skipped", "xfailed"):
            lines.append(f"  {test['outcome']} {test['nodeid']}: {test.get('skip_reason', '')}")
    return "\n".join(lines) + "\n"


def _plots(data: dict[str, Any], records: list[Any], out: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    timings = data.get("timings", {})
    if timings:
        fig, ax = plt.subplots(figsize=(7, 2.8))
        names = list(timings)
        ax.barh(names, [timings[n] for n in names], color="#4c72b0")
        ax.set_xlabel("seconds")
        ax.set_title("Where the time went")
        made.append(
            save_figure(fig, out, "timings.png", "Phase timings (VM boot, topology build, suite)")
        )
    shapes = _forwarding_records(records)
    if shapes:
        servers = sorted({s for r in shapes for s in r.responses_per_server if s})
        cols = min(len(shapes), 5)
        rows = (len(shapes) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 1.9 * rows), squeeze=False,
                                 sharey=True)  # fmt: skip
        for ax in axes.flat[len(shapes) :]:
            ax.axis("off")
        for ax, rec in zip(axes.flat, shapes, strict=False):
            failed = rec.responses_per_server.get("", 0)
            ax.bar(servers, [rec.responses_per_server.get(s, 0) for s in servers],
                   color="#cf222e" if failed else "#4c72b0")  # fmt: skip
            ax.set_title(rec.key + (f" ({failed} failed)" if failed else ""), fontsize=7)
            ax.tick_params(labelsize=7)
        fig.suptitle("rr through the VIP: requests answered per real server, per service shape")
        made.append(
            save_figure(
                fig,
                out,
                "forwarding.png",
                "Requests answered per real server (rr), one panel per service shape",
                dpi=100,
            )
        )
    sched = _scheduler_records(records)
    if sched:
        rows = (len(sched) + 3) // 4
        fig, axes = plt.subplots(rows, 4, figsize=(11, 2.2 * rows), squeeze=False)
        for ax in axes.flat[len(sched) :]:
            ax.axis("off")
        for ax, rec in zip(axes.flat, sched, strict=False):
            servers = sorted(set(rec.observed) | set(rec.expected))
            xs = range(len(servers))
            ax.bar([x - 0.2 for x in xs], [rec.expected.get(s, 0) for s in servers], 0.4,
                   label="model", color="#bbbbbb")  # fmt: skip
            ax.bar([x + 0.2 for x in xs], [rec.observed.get(s, 0) for s in servers], 0.4,
                   label="kernel", color="#4c72b0")  # fmt: skip
            ax.set_xticks(list(xs))
            ax.set_xticklabels(servers, fontsize=7)
            ax.set_title(rec.key, fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
        axes.flat[0].legend(fontsize=7)
        fig.suptitle("Schedulers: connections per real server, model vs kernel")
        made.append(
            save_figure(
                fig,
                out,
                "schedulers.png",
                "Per scheduler: model's expected vs kernel's observed",
                dpi=100,
            )
        )
    made += failover_plot(_failovers(records), out)
    return made


def _forwarding_records(records: list[Any]) -> list[ForwardingRecord]:
    return sorted(of_kind(records, ForwardingRecord), key=lambda r: r.key)


def _counters(rec: ForwardingRecord) -> str:
    c = rec.service_counters
    return " ".join(f"{k} {c.get(k, 0)}" for k in ("conns", "inpkts", "outpkts", "inbytes"))


def _scheduler_records(records: list[Any]) -> list[SchedulerRecord]:
    return sorted(of_kind(records, SchedulerRecord), key=lambda r: r.key)


def _failovers(records: list[Any]) -> list[FailoverRecord]:
    return sorted(of_kind(records, FailoverRecord), key=lambda r: r.key)


def _per_server(rec: SchedulerRecord) -> str:
    """``r1 60/60 · r2 30/30``: kernel/model per real server."""
    servers = sorted(set(rec.observed) | set(rec.expected))
    return " · ".join(
        f"{s} {rec.observed.get(s, 0)}/{fmt(rec.expected.get(s, 0))}" for s in servers
    )


def _record_tables(records: list[Any]) -> str:
    """Every kind of observation as a readable table."""
    return "".join(
        [
            table(
                "Forwarding: per service shape",
                "Each shape's exchange: requests through the VIP (one connection each), "
                "who answered, the director's service counters, the frames captured.",
                _forwarding_records(records),
                [
                    ("mode", lambda r: r.mode),
                    ("protocol", lambda r: r.protocol),
                    ("family", lambda r: r.family),
                    ("checksums", lambda r: r.checksums),
                    (
                        "answers per real server",
                        lambda r: fmt(
                            {k or "no answer": v for k, v in r.responses_per_server.items()}
                        ),
                    ),
                    ("service counters", _counters),
                    ("frames", lambda r: r.frames_captured),
                    ("exchange s", lambda r: r.exchange_s),
                ],
            ),
            table(
                "UDP entries: created, renewed, expired",
                "One client port's entry in the director's table: its state, a second "
                "datagram half a timeout after the first and the timer after it, how long "
                "after the last datagram the entry left; who answered each time.",
                of_kind(records, UdpEntryRecord),
                [
                    ("mode", lambda r: r.key),
                    ("udp timeout set / read", lambda r: f"{r.timeout_set} / {r.timeout_read} s"),
                    ("state", lambda r: r.state),
                    ("second datagram after s", lambda r: r.spacing_s),
                    ("timer after it", lambda r: f"{r.expires_renewed} s"),
                    ("gone after s", lambda r: r.gone_after_s),
                    ("first / renewed / after", lambda r: f"{r.first} / {r.renewed} / {r.after}"),
                    ("rr order", lambda r: r.ring),
                ],
            ),
            table(
                "TCP entries: the state walk of a connection",
                "A connection through the VIP closed by one side (or reset): after each step, "
                "the segments the director handled (in: from the client; out: from the real "
                "server, NAT only) and its entry's state and timer.",
                of_kind(records, TcpWalkRecord),
                [
                    ("case", lambda r: r.key),
                    ("tables", lambda r: "input/output" if r.masquerading else "input-only"),
                    (
                        "tcp / tcpfin set",
                        lambda r: f"{r.timeouts['tcp']} / {r.timeouts['tcpfin']} s",
                    ),
                    (
                        "steps",
                        lambda r: [
                            f"{s.name}: {' '.join(f'{f}/{d}' for f, d in s.segments) or '-'}"
                            f" -> {s.state} {s.expires} s"
                            for s in r.steps
                        ],
                    ),
                ],
            ),
            table(
                "Persistence: one client's template",
                "Connections of one client to a persistent service (each reset at once): "
                "their real servers, rr's first two choices, the template right after them, "
                "when it left the table, and where the next connection went.",
                of_kind(records, PersistenceRecord),
                [
                    ("mode", lambda r: r.key),
                    ("-p", lambda r: f"{r.timeout} s"),
                    ("connections to", lambda r: r.held),
                    ("rr model", lambda r: r.model),
                    (
                        "template",
                        lambda r: [f"{t.dest} {t.state} {t.expires} s" for t in r.template],
                    ),
                    ("gone after s", lambda r: r.gone_after_s),
                    ("next connection", lambda r: r.after),
                ],
            ),
            table(
                "Persistence: what one template covers",
                "Connections of one client differing in source address (-M), port (a port-0 "
                "service) or destination (a firewall-mark service): where each went, and "
                "the templates afterwards.",
                of_kind(records, ScopeRecord),
                [
                    ("case", lambda r: r.key),
                    ("connections", lambda r: r.connections),
                    (
                        "templates",
                        lambda r: [
                            f"{t.protocol} {t.client} -> {t.vaddr}:{t.vport} = {t.dest}"
                            for t in r.templates
                        ],
                    ),
                ],
            ),
            table(
                "Persistence: the SIP engine",
                "Datagrams of two calls, each from two client addresses, to a service with "
                "-p --pe sip: the real server that got each.",
                of_kind(records, SipRecord),
                [
                    ("mode", lambda r: r.key),
                    ("rr model", lambda r: r.model),
                    ("datagrams", lambda r: r.calls),
                ],
            ),
            table(
                "Persistence: a template to a quiescent real server",
                "The template's real server set to weight 0, then the client connects again.",
                of_kind(records, QuiescentRecord),
                [
                    ("case", lambda r: r.key),
                    ("first / second", lambda r: f"{r.first} / {r.second}"),
                    ("templates", lambda r: [f"{t.dest} port {t.vport}" for t in r.templates]),
                ],
            ),
            table(
                "Source-port reuse",
                "A client port connecting again right after its connection closed: the old "
                "entry's state, where the reconnect went (rr's next choice when rescheduled) "
                "and how long its connect took.",
                of_kind(records, ReuseRecord),
                [
                    ("case", lambda r: r.key),
                    ("old entry", lambda r: f"{r.state_before} to {r.first}"),
                    ("reconnect to", lambda r: r.second),
                    ("rr next", lambda r: r.rr_next),
                    ("connect s", lambda r: r.connect_s),
                ],
            ),
            table(
                "A real server deleted under a connection",
                "The connection's real server deleted, then data from the client.",
                of_kind(records, DeletedUnderFlowRecord),
                [
                    ("case", lambda r: r.key),
                    ("deleted", lambda r: r.first),
                    ("entry after", lambda r: r.entry_after),
                    ("server got", lambda r: r.delivered or "nothing"),
                    ("client saw", lambda r: r.client_saw),
                ],
            ),
            table(
                "Control plane: ipvsadm -S and -R",
                "The catalogue of services saved, cleared and restored with ipvsadm; services "
                "whose settings the round trip changed (read over netlink before and after).",
                of_kind(records, RoundTripRecord),
                [
                    ("table", lambda r: r.key),
                    ("services", lambda r: r.services),
                    ("text identical", lambda r: "yes" if r.restored == r.saved else "no"),
                    ("changed", lambda r: r.lost or "none"),
                    ("thresholds lost (no -x/-y in -S)", lambda r: len(r.thresholds_lost)),
                ],
            ),
            table(
                "Control plane: sysctl writes",
                "Each write made in a network namespace of its own: taken or refused, and "
                "the value read right after (the fresh namespace's value before).",
                of_kind(records, SysctlWrite),
                [
                    ("write", lambda r: r.key),
                    ("taken", lambda r: "yes" if r.accepted else "refused"),
                    ("reads", lambda r: r.read_back),
                    ("was", lambda r: r.before),
                ],
            ),
            table(
                "UDP: a real server deleted under a client port's flow",
                "Datagrams from one client port after its real server was deleted: who "
                "answered the next one, the entry then, and when the port was answered again.",
                of_kind(records, UdpDeletedRecord),
                [
                    ("case", lambda r: r.key),
                    ("deleted", lambda r: r.first),
                    ("next datagram", lambda r: r.right_after or "no answer"),
                    ("entry", lambda r: r.entry_after),
                    ("answered after s", lambda r: r.answered_after_s),
                    ("by", lambda r: r.then),
                ],
            ),
            table(
                "keepalived reloaded under traffic",
                "Weights before and after SIGHUP, how long the kernel took to match the new "
                "configuration, and what each held connection's request got afterwards.",
                of_kind(records, ReloadRecord),
                [
                    ("case", lambda r: r.key),
                    ("before", lambda r: r.before),
                    ("after / configured", lambda r: f"{r.after} / {r.configured}"),
                    ("converged s", lambda r: r.converged_s),
                    (
                        "held connections",
                        lambda r: [f"{n}: {a} ({r.entries.get(n)})" for n, a in r.held.items()],
                    ),
                    ("new connections", lambda r: r.new_connections),
                ],
            ),
            table(
                "keepalived reloaded without an inhibited real server",
                "inhibit_on_failure kept a failed real server at weight 0; then its block "
                "left the configuration.",
                of_kind(records, InhibitedReloadRecord),
                [
                    ("case", lambda r: r.key),
                    ("inhibited", lambda r: r.inhibited),
                    ("after", lambda r: r.after),
                    ("converged s", lambda r: r.converged_s),
                ],
            ),
            table(
                "Mid-stream packets (sloppy_tcp, sloppy_sctp)",
                "A packet of a connection the director never saw begin, from a fresh client "
                "port: the director's entry afterwards, the real servers it reached, and "
                "what came back.",
                of_kind(records, MidstreamRecord),
                [
                    ("case", lambda r: r.key),
                    ("entry", lambda r: r.entry),
                    ("reached", lambda r: r.reached or "nobody"),
                    ("back to the client", lambda r: r.back or "nothing"),
                ],
            ),
            table(
                "A director whose sync daemon is a backup",
                "One request through the VIP with a backup sync daemon on the director.",
                of_kind(records, BackupOnlyRecord),
                [
                    ("case", lambda r: r.key),
                    ("answered by", lambda r: r.answered_by or "nobody"),
                    ("client saw", lambda r: r.client_saw),
                ],
            ),
            table(
                "TCP entries: an idle connection past the tcp timeout",
                "An established connection left idle: when its entry left the table, and what "
                "became of the client's next segment.",
                of_kind(records, IdleRecord),
                [
                    ("mode", lambda r: r.key),
                    ("tcp timeout", lambda r: f"{r.timeout} s"),
                    ("gone after s", lambda r: r.gone_after_s),
                    ("forwarded after", lambda r: r.forwarded),
                    ("real server got", lambda r: r.delivered or "nothing"),
                    ("client saw", lambda r: r.client_error or "nothing"),
                ],
            ),
            table(
                "One-packet scheduling (UDP)",
                "Datagrams from one client socket: which real server got each (and the "
                "scheduler model's choice), what came back and from where, entries kept by "
                "the director, connections counted.",
                of_kind(records, OnePacketRecord),
                [
                    ("mode", lambda r: r.key),
                    ("schedule", lambda r: r.schedule),
                    ("model", lambda r: r.expected),
                    ("answers", lambda r: [a or "none" for a in r.answers]),
                    ("answers came from", lambda r: sorted(set(r.answer_sources))),
                    ("entries", lambda r: r.entries_seen),
                    ("conns counted", lambda r: r.conns_counted),
                ],
            ),
            table(
                "Sync daemon: entries of every protocol and family",
                "One flow per protocol and family through the sync master; its entry there "
                "and on the backup, and how long after the flow the backup had it.",
                of_kind(records, SyncEntryRecord),
                [
                    ("case", lambda r: r.key),
                    ("answered by", lambda r: r.answered_by),
                    ("master's entry", lambda r: r.master),
                    ("backup's entry", lambda r: r.backup or "none"),
                    ("after s", lambda r: r.seconds),
                ],
            ),
            table(
                "FTP through NAT (ip_vs_ftp)",
                "One download per way of opening the data connection: the real server of "
                "the control connection (banner) and of the data connection (the file), the "
                "data connection's other end as the client saw it, the director's entries.",
                of_kind(records, FtpRecord),
                [
                    ("case", lambda r: r.key),
                    ("command", lambda r: r.command),
                    ("control / data server", lambda r: f"{r.banner_server} / {r.data_server}"),
                    ("data connection with", lambda r: r.data_peer),
                    ("director's entries", lambda r: r.director_entries),
                ],
            ),
            table(
                "Crafted packets: what each led to",
                "Packets a client crafted (PMTU, ICMP errors, fragments) and every frame "
                "then captured on the path.",
                of_kind(records, InjectionRecord),
                [
                    ("case", lambda r: r.key),
                    ("sent", lambda r: r.sent),
                    ("seen", lambda r: [f"{h.point} {h.direction} {h.packet}" for h in r.seen]),
                ],
            ),
            table(
                "Schedulers: model vs kernel",
                "Per real server: connections the kernel gave it / what the model predicts.",
                _scheduler_records(records),
                [
                    ("scheduler", lambda r: r.key),
                    ("flows", lambda r: r.flows),
                    ("kernel / model per real server", _per_server),
                    ("mismatches", lambda r: r.mismatches),
                    ("check", lambda r: r.check),
                    ("figures", lambda r: r.figures),
                ],
            ),
            table(
                "Upper threshold and hysteresis",
                "Connections per real server: the first batch, then after each close.",
                of_kind(records, ThresholdRecord),
                [
                    ("case", lambda r: r.key),
                    ("first", lambda r: r.first),
                    ("stages", lambda r: " | ".join(fmt(s) for s in r.stages)),
                ],
            ),
            failover_tables(
                _failovers(records), sorted(of_kind(records, SyncRun), key=lambda r: r.key)
            ),
            table(
                "Health checks: a failed real server removed and returned",
                "Seconds from the server's failure to its removal (against the checker's "
                "bound) and from its recovery to its return; requests per server meanwhile.",
                of_kind(records, HealthRecord),
                [
                    ("checker", lambda r: r.key),
                    ("removed s", lambda r: r.removed_s),
                    ("bound s", lambda r: r.bound_s),
                    ("restored s", lambda r: r.restored_s),
                    ("while down", lambda r: r.during),
                    ("after", lambda r: r.after),
                ],
            ),
            table(
                "Load feedback",
                "A real server loaded directly: its weight before and under load, how fast "
                "the checker changed it, and new connections per real-server address.",
                of_kind(records, FeedbackRecord),
                [
                    ("checker", lambda r: r.key),
                    ("load", lambda r: r.load),
                    ("weight", lambda r: f"{r.weight_before} -> {r.weight_loaded}"),
                    ("lowered s", lambda r: r.lowered_s),
                    ("raised s", lambda r: r.raised_s),
                    ("new connections", lambda r: r.new_connections),
                ],
            ),
            table(
                "Simultaneous connections",
                "Held through the VIP: what the clients opened and the director counted.",
                of_kind(records, ScaleRecord),
                [
                    ("mode", lambda r: r.key),
                    ("connections", lambda r: r.connections),
                    ("held", lambda r: r.ramped.get("held")),
                    ("failed", lambda r: r.ramped.get("failed")),
                    ("connect p99 ms", lambda r: r.ramped.get("connect_ms", {}).get("p99")),
                    ("resets", lambda r: r.result.get("resets")),
                    ("ActiveConn per real server", lambda r: r.ipvs_active),
                ],
            ),
        ]
    )


def _network(data: dict[str, Any]) -> str:
    """The run's topology as a picture (none if the topology cannot be read here)."""
    name = data.get("topology")
    if not name:
        return ""
    try:
        spec = load_topology(name)
    except TestbedError:
        return ""
    return (
        f"<h2>The network</h2><p>Topology {_esc(name)}, drawn from its declaration; the VIP on "
        f"the active director {_esc(spec.active.name)}.</p>" + svg_picture(spec, spec.active.name)
    )


def _esc(text: object) -> str:
    return html.escape(str(text))


def render(run_dir: Path) -> Path:
    """Write summary.txt and report.html for a run directory; return the report path.

    A bench run has bench.json instead of (or besides) results.json.
    """
    bench_file, results_file = run_dir / "bench.json", run_dir / "results.json"
    bench = json.loads(bench_file.read_text()) if bench_file.exists() else None
    if results_file.exists():
        data = json.loads(results_file.read_text())
    elif bench is not None:
        data = {k: bench[k] for k in ("run_id", "environment", "timings") if k in bench}
    else:
        raise FileNotFoundError(f"{run_dir} has neither results.json nor bench.json")
    (run_dir / "summary.txt").write_text(summary_text(data))
    if results_file.exists():
        (run_dir / "results.ktap").write_text(ktap_text(data))
    records = load_records(data)
    plots = _plots(data, records, run_dir)
    bench_html = ""
    if bench is not None:
        text = bench_summary(bench)
        (run_dir / "bench_summary.txt").write_text(text)
        plots += bench_plots(bench, run_dir)
        bench_html = f"<h2>Bench</h2><pre>{_esc(text)}</pre>"
    env = data.get("environment", {})
    rows = []
    for t in data.get("tests", []):
        doc = _esc(t.get("doc", "")).replace("\n", "<br>")
        detail = ""
        if t["outcome"] in ("failed", "error"):
            sections = "".join(
                f"<h4>{_esc(k)}</h4><pre>{_esc(v)}</pre>" for k, v in t.get("sections", {}).items()
            )
            detail = f"<details><summary>details</summary><pre>{_esc(t.get('details', ''))}"
            detail += f"</pre>{sections}</details>"
        elif t["outcome"] in ("skipped", "xfailed"):
            detail = _esc(t.get("skip_reason", ""))
        rows.append(
            f"<tr class='{t['outcome']}' id='{_esc(t['nodeid'])}'><td>{_esc(t['nodeid'])}</td>"
            f"<td>{t['outcome']}</td>"
            f"<td>{t['duration_s']:.1f}s</td><td><small>{doc}</small>{detail}</td></tr>"
        )
    versions = "".join(
        f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in env.get("versions", {}).items()
    )
    figures = "".join(
        f"<figure><img src='{name}' alt='{_esc(cap)}'><figcaption>{_esc(cap)}</figcaption></figure>"
        for name, cap in plots
    )
    traces = ""
    for rec in _forwarding_records(records):
        if not rec.handshake_trace:
            continue
        hops = "".join(
            f"<tr><td>{_esc(h.point)}</td><td>{_esc(h.direction)}</td>"
            f"<td><code>{_esc(h.packet)}</code></td></tr>"
            for h in rec.handshake_trace
        )
        traces += f"<h3>{_esc(rec.key)}</h3><table>{hops}</table>"
    if traces:
        traces = (
            "<h2>One connection's opening, hop by hop</h2><p>The opening packet and the "
            "answer of the first connection of each service shape, as captured at every "
            "interface on the path.</p>" + traces
        )
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>LVS testbed {_esc(data.get("run_id", ""))}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
td{{vertical-align:top;padding:4px 8px;border-bottom:1px solid #ddd}}
tr.passed td:nth-child(2){{color:#1a7f37}} tr.failed td:nth-child(2),
tr.error td:nth-child(2){{color:#cf222e;font-weight:bold}}
tr.skipped td:nth-child(2),tr.xfailed td:nth-child(2){{color:#9a6700}}
pre{{background:#f6f8fa;padding:8px;overflow-x:auto;font-size:12px}}</style></head><body>
<h1>LVS testbed run {_esc(data.get("run_id", ""))}</h1>
<p>Kernel <b>{_esc(env.get("kernel"))}</b> ({_esc(env.get("kernel_origin"))}),
{_esc(env.get("where"))}, emulation: {_esc(env.get("emulation"))}.
Result: {_esc(", ".join(f"{v} {k}" for k, v in data.get("counts", {}).items() if v))}.</p>
<pre>{_esc(summary_text(data))}</pre>
{_network(data)}
{bench_html}
{figures}
{_record_tables(records)}
{traces}
<h2>Tests</h2><table>{"".join(rows)}</table>
<h2>Versions</h2><table>{versions}</table>
</body></html>"""
    report = run_dir / "report.html"
    report.write_text(page)
    return report
