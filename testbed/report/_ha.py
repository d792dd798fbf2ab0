"""The report's high-availability section: failover timeline, timing and survival tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..ha import bursts
from ..observe import FailoverRecord, SyncRun
from ._format import save_figure, table


def failover_plot(cases: list[FailoverRecord], out: Path) -> list[tuple[str, str]]:
    """One timeline row per failover: fault, last packet via master, GARPs, takeover."""
    if not cases:
        return []
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 0.6 * len(cases) + 1.4))
    labelled: set[str] = set()

    def once(label: str) -> str | None:  # each legend entry at its first use
        if label in labelled:
            return None
        labelled.add(label)
        return label

    for y, obs in enumerate(cases):
        lo, hi = obs.window_s
        hi = max(hi, lo + 0.04)  # a point window (clean stop: skew) stays visible
        ax.plot([lo, hi], [y, y], color="#bbbbbb", linewidth=9, solid_capstyle="butt",
                label=once("formula window"))  # fmt: skip
        marks = [
            (obs.last_via_master_s, "x", "#cf222e", "last SYN via master"),
            (obs.released_s, "<", "#8250df", "failed director released the VIP"),
            (obs.decided_s, "d", "#57606a", "daemon logs its decision"),
            (obs.daemon_reported_s, "v", "#000000", "daemon reports takeover"),
            (obs.first_via_backup_s, "o", "#1a7f37", "first SYN via backup"),
            (obs.service_restored_s, "*", "#0969da", "first connection via backup"),
        ]
        for at, marker, color, label in marks:
            if at is not None:
                ax.plot(at, y, marker, color=color, markersize=8, label=once(label))
        garps = obs.garp_s
        ax.plot(garps, [y + 0.25] * len(garps), "|", color="#9a6700", markersize=9,
                label=once("gratuitous ARP"))  # fmt: skip
    ax.axvline(0, color="#cf222e", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(cases)))
    ax.set_yticklabels([c.key for c in cases], fontsize=8)
    ax.set_xlabel("seconds after the fault (dashed line); takeover = first GARP; "
                  "a handover's window starts at the release")  # fmt: skip
    ax.set_title("Failover timeline")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3)
    return [save_figure(fig, out, "failover.png", "Failover timeline per VRRP setting and fault")]


def _handshake(run: SyncRun) -> int:
    """Holds that sent only the handshake (every hold, in results from before it was counted)."""
    return run.holds if run.handshake_holds is None else run.handshake_holds


def failover_tables(cases: list[FailoverRecord], runs: list[SyncRun]) -> str:
    def garp_bursts(o: FailoverRecord) -> list[list[float]]:
        return bursts(o.garp_s, gap=1.0)

    timing = table(
        "Failover: measured vs formula",
        "Times in seconds after the fault. Takeover: the backup's first gratuitous ARP "
        "(or its daemon's report, if earlier); a handover window starts at the release. "
        "Where a daemon runs scripts before taking over (heartbeat), the window holds its "
        "logged decision, stamped to the second. "
        "Service back: the first new connection that succeeded through the backup.",
        cases,
        [
            ("case", lambda o: o.key),
            ("formula", lambda o: o.formula),
            ("window s", lambda o: f"{o.window_s[0]:.3f}-{o.window_s[1]:.3f}"),
            ("decided s", lambda o: "" if o.decided_s is None else o.decided_s),
            ("takeover s", lambda o: o.takeover_s),
            ("service back s", lambda o: o.service_restored_s),
            ("failed probes", lambda o: o.failed_probes),
            ("GARPs per burst", lambda o: " + ".join(str(len(g)) for g in garp_bursts(o))),
            ("bursts at s", lambda o: " / ".join(f"{g[0]:.2f}" for g in garp_bursts(o))),
            ("failback s", lambda o: o.failback_s),
            ("VIP after", lambda o: o.vip_holders_after),
        ],
    )
    survival = table(
        "Connection survival (the preferred director's cable cut, then restored)",
        "Streams: byte-exact counter streams from the real servers. Handshake-only: the "
        "control group below sync_threshold. The failback columns count connections still "
        "receiving after the preferred director preempted.",
        runs,
        [
            ("mode-sync", lambda r: r.key),
            ("streams synced", lambda r: f"{r.synced_streams}/{r.streams}"),
            ("sync lag s", lambda r: r.sync_lag_s),
            ("streams survived", lambda r: f"{r.survived_streams}/{r.streams}"),
            ("reset", lambda r: r.reset_streams),
            ("stalled", lambda r: r.stalled_streams),
            ("longest data gap s", lambda r: r.gap_s),
            ("handshake-only synced", lambda r: f"{r.synced_holds}/{_handshake(r)}"),
            ("handshake-only survived", lambda r: f"{r.survived_holds}/{_handshake(r)}"),
            ("opened via backup, survived failback",
             lambda r: f"{r.late_survived_failback}/{r.late_streams}"),
            ("survived both", lambda r: r.early_survived_failback),
        ],
    )  # fmt: skip
    return timing + survival


FAULT_WORDS = {"kill": "keepalived killed", "stop": "keepalived stopped", "cut": "cable cut"}


def bench_failover_lines(data: dict[str, Any]) -> list[str]:
    """The bench's failover-under-load figures, one line per sync setting."""
    lines = []
    for sync, f in data.get("failover", {}).items():
        lines.append(
            f"failover under load ({FAULT_WORDS.get(f.get('fault', 'cut'), '?')}), sync {sync}: "
            f"{f['survived']}/{f['streams']} streams survived "
            f"({f['survival_share']:.0%}), {f['reset']} reset, {f['stalled']} stalled, "
            f"{f['byte_errors']} byte errors; takeover {f['takeover_s']} s, "
            f"no stream data for {f['throughput_gap_s']} s"
        )
    return lines


def bench_failover_plot(data: dict[str, Any], out: Path) -> list[tuple[str, str]]:
    """All streams' bytes per second around the fault, sync on and off."""
    runs = data.get("failover", {})
    if not runs:
        return []
    import matplotlib.pyplot as plt

    fault = next(iter(runs.values())).get("fault", "cut")  # bench.json before the option: cut
    fig, ax = plt.subplots(figsize=(7, 3))
    for sync, f in runs.items():
        label = f"sync {sync}: {f['survived']}/{f['streams']} survive"
        xs, ys = [t for t, _ in f["timeline"]], [r / 1e3 for _, r in f["timeline"]]
        ax.step(xs, ys, where="post", label=label)
    ax.axvline(0, color="#cf222e", linestyle="--", linewidth=1)
    ax.set_xlabel(f"seconds after the fault on d1: {FAULT_WORDS.get(fault, fault)} (dashed line)")
    ax.set_ylabel("stream data, kB/s")
    ax.set_title("Failover under load: all streams together (DR)", fontsize=10)
    ax.legend(fontsize=8)
    caption = "Stream throughput across a director failure, sync on/off"
    return [save_figure(fig, out, "bench_failover.png", caption)]
