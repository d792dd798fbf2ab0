"""The report's high-availability section: failover timeline, timing and survival tables."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from ._failover import bursts


def save_figure(fig: Any, out: Path, name: str, caption: str, *, dpi: int = 110) -> tuple[str, str]:
    """Lay out, write and close a figure; return (file name, caption) for the report."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out / name, dpi=dpi)
    plt.close(fig)
    return (name, caption)


def _observed(data: dict[str, Any], prefix: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (k.split(".", 1)[1], v)
        for k, v in sorted(data.get("observations", {}).items())
        if k.startswith(prefix)
    ]


def failover_plot(data: dict[str, Any], out: Path) -> list[tuple[str, str]]:
    """One timeline row per failover: fault, last packet via master, GARPs, takeover."""
    cases = _observed(data, "failover.")
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

    for y, (_name, obs) in enumerate(cases):
        lo, hi = obs["window_s"]
        hi = max(hi, lo + 0.04)  # a point window (clean stop: skew) stays visible
        ax.plot([lo, hi], [y, y], color="#bbbbbb", linewidth=9, solid_capstyle="butt",
                label=once("formula window"))  # fmt: skip
        marks = [
            ("last_via_master_s", "x", "#cf222e", "last SYN via master"),
            ("released_s", "<", "#8250df", "failed director released the VIP"),
            ("daemon_reported_s", "v", "#000000", "daemon reports takeover"),
            ("first_via_backup_s", "o", "#1a7f37", "first SYN via backup"),
            ("service_restored_s", "*", "#0969da", "first connection via backup"),
        ]
        for key, marker, color, label in marks:
            if obs.get(key) is not None:
                ax.plot(obs[key], y, marker, color=color, markersize=8,
                        label=once(label))  # fmt: skip
        garps = [t for t in obs.get("garp_s", []) if t is not None]
        ax.plot(garps, [y + 0.25] * len(garps), "|", color="#9a6700", markersize=9,
                label=once("gratuitous ARP"))  # fmt: skip
    ax.axvline(0, color="#cf222e", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(cases)))
    ax.set_yticklabels([n for n, _ in cases], fontsize=8)
    ax.set_xlabel("seconds after the fault (dashed line); takeover = first GARP; "
                  "a handover's window starts at the release")  # fmt: skip
    ax.set_title("Failover timeline")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3)
    return [save_figure(fig, out, "failover.png", "Failover timeline per VRRP setting and fault")]


def _row(cells: list[object]) -> str:
    return "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"


def _table(title: str, head: list[str], rows: list[list[object]], note: str) -> str:
    if not rows:
        return ""
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return (
        f"<h2>{html.escape(title)}</h2><p>{html.escape(note)}</p><table><tr>{header}</tr>"
        + "".join(_row(r) for r in rows)
        + "</table>"
    )


def failover_tables(data: dict[str, Any]) -> str:
    timing = []
    for name, o in _observed(data, "failover."):
        groups = bursts([t for t in o.get("garp_s", []) if t is not None], gap=1.0)
        timing.append([
            name, o["formula"], f"{o['window_s'][0]:.3f}-{o['window_s'][1]:.3f}",
            o["takeover_s"], o.get("service_restored_s"), o.get("failed_probes"),
            " + ".join(str(len(g)) for g in groups) or "none",
            " / ".join(f"{g[0]:.2f}" for g in groups), o.get("failback_s"),
            ", ".join(o.get("vip_holders_after", [])),
        ])  # fmt: skip
    survival = []
    for name, o in _observed(data, "sync."):
        survival.append([
            name, f"{o['synced_streams']}/{o['streams']}", o.get("sync_lag_s"),
            f"{o['survived_streams']}/{o['streams']}", o["reset_streams"],
            o.get("stalled_streams", ""), o.get("gap_s"),
            f"{o['synced_holds']}/{o['holds']}", f"{o['survived_holds']}/{o['holds']}",
            f"{o['late_survived_failback']}/{o['late_streams']}",
            o["early_survived_failback"],
        ])  # fmt: skip
    return _table(
        "Failover: measured vs formula",
        ["case", "formula", "window s", "takeover s", "service back s", "failed probes",
         "GARPs per burst", "bursts at s", "failback s", "VIP after"],
        timing,
        "Times in seconds after the fault. Takeover: the backup's first gratuitous ARP "
        "(or its daemon's report, if earlier); a handover window starts at the release. "
        "Service back: the first new connection that succeeded through the backup.",
    ) + _table(
        "Connection survival (director d1's cable cut, then restored)",
        ["mode-sync", "streams synced", "sync lag s", "streams survived", "reset", "stalled",
         "longest data gap s", "handshake-only synced", "handshake-only survived",
         "opened via d2, survived failback", "survived both"],
        survival,
        "Streams: byte-exact counter streams from the real servers. Handshake-only: the "
        "control group below sync_threshold. The failback columns count connections still "
        "receiving after d1 preempted.",
    )  # fmt: skip


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
