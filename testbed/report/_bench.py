"""The bench's figures as text and plots: one run (bench_summary.txt, its report's
plots), and several kernels side by side (bench-kernels.txt, .json and plots).

Everything here reads bench.json as ``Bench.run`` writes it; figures are the
median [min..max] of the repetitions.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from ._format import save_figure
from ._ha import bench_failover_lines, bench_failover_plot

DIRECT = "direct"


def _fmt_spread(s: dict[str, Any], unit: str = "") -> str:
    if not s.get("n"):
        return "-"
    return f"{s['median']:.4g}{unit} [{s['min']:.4g}..{s['max']:.4g}]"


def _goal(goals: dict[str, Any], key: str, path: str) -> object:
    goal = goals.get(key)
    return goal.get(path) if isinstance(goal, dict) else goal


def _throughput_lines(data: dict[str, Any]) -> list[str]:
    sec = data.get("throughput")
    if not sec:
        return []
    drift = "  CONTROL DRIFTED >10%" if sec.get("control_drift") else ""
    lines = [f"throughput (median [min..max] of {sec['figures'][DIRECT]['n']}){drift}"]
    for path, fig in sec["figures"].items():
        row = f"  {path:7s} {_fmt_spread(fig, ' Mbit/s')}"
        if path in sec["ratios"]:
            goal = _goal(data.get("goals", {}), "throughput_ratio", path)
            row += f"   vs direct {_fmt_spread(sec['ratios'][path])} (goal >= {goal})"
        lines.append(row)
    return lines


def _rate_lines(data: dict[str, Any]) -> list[str]:
    sec = data.get("connect_rate")
    if not sec:
        return []
    goals = data.get("goals", {})
    drift = "  CONTROL DRIFTED >10%" if sec.get("control_drift") else ""
    reps = sec["figures"][DIRECT]["n"]
    lines = [f"connect rate at concurrency {sec.get('concurrency', '?')}, {sec['connections']} "
             f"connections each (median [min..max] of {reps}){drift}"]  # fmt: skip
    p50, p99 = sec.get("connect_p50_ms", {}), sec.get("connect_p99_ms", {})
    for path, fig in sec["figures"].items():
        row = f"  {path:7s} {_fmt_spread(fig, ' conn/s')}"
        if path in sec["ratios"]:
            row += (f"   vs direct {_fmt_spread(sec['ratios'][path])} "
                    f"(goal >= {_goal(goals, 'connect_rate_ratio', path)})")  # fmt: skip
        if p99:
            row += (f"   p50 {_fmt_spread(p50['figures'][path], ' ms')}, "
                    f"p99 {_fmt_spread(p99['figures'][path], ' ms')}")  # fmt: skip
            if path in p99["ratios"]:
                row += (f" ({_fmt_spread(p99['ratios'][path])} of direct's; goal <= "
                        f"{goals.get('connect_p99_vs_direct')})")  # fmt: skip
        row += f"   max {sec['max_connect_ms'][path]:g} ms"
        failed: Counter[str] = Counter()
        for run in sec.get("runs", {}).get(path, []):
            failed.update(run.get("failures", {}))
        if failed:  # connects that never completed are not in the times above
            row += " + failed: " + ", ".join(f"{n} {k}" for k, n in failed.items())
        lines.append(row)
    sweep = sec.get("sweep")
    if sweep:
        paths = list(next(iter(sweep.values()))["figures"])
        lines.append("  saturation sweep: rate conn/s (p50 ms) by offered concurrency; "
                     "VIP/direct ratio")  # fmt: skip
        lines.append("    " + f"{'conc':>5s}" + "".join(f"{p:>22s}" for p in paths))
        for conc, fig in sweep.items():
            cells = []
            for p in paths:
                rate = fig["figures"][p].get("median", 0)
                ms = fig["connect_p50_ms"]["figures"][p].get("median", 0)
                ratio = fig["ratios"].get(p, {}).get("median")
                cells.append(f"{rate:7.0f} ({ms:6.2f})" + (f" x{ratio:.2f}" if ratio else "      "))
            lines.append("    " + f"{conc:>5s}" + "".join(f"{c:>22s}" for c in cells))
    return lines


def scale_effect(scale: dict[str, Any], *, paired: bool = True) -> dict[str, list[float | None]]:
    """Per mode: its rate at each level over its own at the lowest, divided by the same
    for the direct control: below 1, what IPVS adds as its table fills (the hosts'
    own socket tables fill alike on both paths). ``paired``: each rate taken over the
    reference measured beside it first (the curves run minutes apart; a host whose
    speed drifts meanwhile would show in the plain ratio); None where a bench.json
    predates the reference."""
    direct = scale.get(DIRECT)
    if not direct:
        return {}
    key = "paired_vs_lowest_level" if paired else "rate_vs_lowest_level"
    out = {}
    for path, sc in scale.items():
        if path == DIRECT or sc.get("levels") != direct.get("levels"):
            continue
        row: list[float | None] = []
        for mine, theirs in zip(sc["points"], direct["points"], strict=False):
            a, b = mine.get(key), theirs.get(key)
            row.append(round(a / b, 3) if a and b else None)
        if any(r is not None for r in row):
            out[path] = row
    return out


def _scale_lines(data: dict[str, Any]) -> list[str]:
    lines = []
    scale = data.get("scale", {})
    for path, sc in scale.items():
        if "points" not in sc:  # a bench.json from before the scale curve
            continue
        ipvs = (
            "" if sc["ipvs_active_end"] is None else f" vs IPVS ActiveConn {sc['ipvs_active_end']}"
        )
        lines.append(
            f"scale curve {path}: held {sc['held']} at the top ({sc['failed']} failed to open), "
            f"{sc['hold_s']:.0f} s there: {sc['resets']} resets, client "
            f"{sc['client_established_end']}{ipvs} at the end "
            f"({'exact' if sc['exact'] else 'MISMATCH'})"
        )
        lines.append(f"    {'held':>7s} {'ActiveConn':>10s} {'entries':>8s} {'table':>7s} "
                     f"{'B/entry':>7s}  {'conn/s median [min..max]':>26s} {'p50 ms':>7s} "
                     f"{'p99 ms':>7s} {'vs lowest':>9s} {'reference':>9s} "
                     f"{'paired':>7s}")  # fmt: skip
        for pt in sc["points"]:
            mem, fig = pt["memory"], pt["rate"]["figures"]
            active = "-" if pt["exact"] is None else f"{pt['ipvs_active']}"
            active += "" if pt["exact"] in (True, None) else "!"
            lines.append(
                f"    {pt['held']:>7d} {active:>10s} {mem['ip_vs_conn_entries']:>8d} "
                f"{mem.get('table_size', '-')!s:>7s} {pt.get('bytes_per_entry') or '-'!s:>7s}  "
                f"{_fmt_spread(fig['rate_per_s']):>26s} {fig['p50_ms'].get('median', 0):7.2f} "
                f"{fig['p99_ms'].get('median', 0):7.2f} {pt.get('rate_vs_lowest_level')!s:>9s} "
                f"{_reference(pt):>9s} {pt.get('paired_vs_lowest_level') or '-'!s:>7s}"
                + ("  DRIFTED" if pt["rate"].get("drifted") else "")
            )
    for paired, how in ((False, "rate vs lowest"),
                        (True, "paired with the reference, vs lowest")):  # fmt: skip
        for path, row in scale_effect(scale, paired=paired).items():
            levels = [pt["held"] for pt in scale[path]["points"]]
            cells = ", ".join(f"{n}: {r}" for n, r in zip(levels, row, strict=False))
            lines.append(f"  IPVS's own share of the slowdown, {path} ({how}, over "
                         f"direct's): {cells}")  # fmt: skip
    return lines


def _reference(point: dict[str, Any]) -> str:
    """The reference's rate beside a scale level (conn/s median), '-' before there was one."""
    ref = point.get("reference", {}).get("figures", {}).get("rate_per_s", {}).get("median")
    return "-" if ref is None else f"{ref:.0f}"


def bench_summary(data: dict[str, Any]) -> str:
    """The bench's figures against the issue's goals, as text: median [min..max] of reps."""
    env = data.get("environment", {})
    lines = [
        f"LVS testbed bench {data.get('run_id', '?')} (commit {data.get('commit', '?')})",
        f"kernel:    {env.get('kernel', '?')} ({env.get('kernel_origin', '?')}), "
        f"{env.get('where', '?')}, emulation: {env.get('emulation', '?')}",
        "timings:   " + ", ".join(f"{k} {v:.0f}s" for k, v in data.get("timings", {}).items()),
    ]
    if data.get("cmdline"):
        lines.append(f"cmdline:   {data['cmdline']}")
    lines += _throughput_lines(data) + _rate_lines(data) + _scale_lines(data)
    lines += bench_failover_lines(data)
    return "\n".join(lines) + "\n"


def _bar(plt: Any, data: dict[str, Any], section: str, unit: str, title: str) -> Any:
    figs = data[section]["figures"]
    paths = list(figs)
    med = [figs[p]["median"] for p in paths]
    err = [[m - figs[p]["min"] for p, m in zip(paths, med, strict=True)],
           [figs[p]["max"] - m for p, m in zip(paths, med, strict=True)]]  # fmt: skip
    fig, ax = plt.subplots(figsize=(7, 3))
    colors = ["#999999" if p == DIRECT else "#4c72b0" for p in paths]
    ax.bar([p.upper() if p != DIRECT else p for p in paths], med, yerr=err, capsize=6,
           color=colors)  # fmt: skip
    for i, p in enumerate(paths):
        ratio = data[section]["ratios"].get(p)
        if ratio:  # above the error bar
            ax.annotate(f"x{ratio['median']:.2f}", (i, figs[p]["max"]), ha="center",
                        va="bottom", xytext=(0, 4), textcoords="offset points")  # fmt: skip
    ax.set_ylim(0, max(figs[p]["max"] for p in paths) * 1.2)
    ax.set_ylabel(unit)
    ax.set_title(title + " (median, min-max)", fontsize=10)
    return fig


def _curves(
    ax: Any, series: dict[str, tuple[list[float], list[dict[str, Any]]]], log_x: bool
) -> None:
    """Median lines with min-max bars, one per label."""
    for label, (xs, spreads) in series.items():
        med = [s.get("median", 0) for s in spreads]
        err = [[m - s.get("min", m) for m, s in zip(med, spreads, strict=True)],
               [s.get("max", m) - m for m, s in zip(med, spreads, strict=True)]]  # fmt: skip
        ax.errorbar(xs, med, yerr=err, marker="o", capsize=3, label=label)
    if log_x:
        ax.set_xscale("symlog", linthresh=1)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)


def _scale_series(
    scale: dict[str, Any], key: str, prefix: str = "", of: str = "rate"
) -> dict[str, Any]:
    """Per curve: the levels held and each level's ``key`` figure of ``of`` (its own
    rate, or ``vs_reference``: over the reference beside it; curves without it left out)."""

    def figures(pt: dict[str, Any]) -> dict[str, Any]:
        return pt["rate"]["figures"] if of == "rate" else pt[of]

    return {
        f"{prefix}{path}": ([pt["held"] for pt in sc["points"]],
                            [figures(pt)[key] for pt in sc["points"]])
        for path, sc in scale.items()
        if "points" in sc and all(of == "rate" or of in pt for pt in sc["points"])
    }  # fmt: skip


def bench_plots(data: dict[str, Any], out: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    if data.get("throughput", {}).get("figures"):
        title = "Throughput: one TCP stream, direct vs through the VIP"
        fig = _bar(plt, data, "throughput", "Mbit/s", title)
        made.append(
            save_figure(fig, out, "bench_throughput.png", f"{title}; label: median ratio to direct")
        )
    rate = data.get("connect_rate", {})
    if rate.get("figures"):
        title = f"New connections per second at concurrency {rate.get('concurrency', '?')}"
        fig = _bar(plt, data, "connect_rate", "connections/s", title)
        made.append(
            save_figure(
                fig, out, "bench_connect_rate.png", f"{title}; label: median ratio to direct"
            )
        )
    if rate.get("sweep"):
        sweep = rate["sweep"]
        levels = [int(c) for c in sweep]
        paths = list(next(iter(sweep.values()))["figures"])
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
        _curves(a1, {p: (levels, [sweep[c]["figures"][p] for c in sweep]) for p in paths}, True)
        _curves(a2, {p: (levels, [sweep[c]["connect_p50_ms"]["figures"][p] for c in sweep])
                     for p in paths}, True)  # fmt: skip
        a1.set(xlabel="offered concurrency", ylabel="connections/s")
        a2.set(xlabel="offered concurrency", ylabel="median connect time, ms")
        a1.axvline(rate["concurrency"], color="#bbbbbb", linestyle=":")
        fig.suptitle("Saturation sweep: where the rate stops growing, connect time grows "
                     "(dotted: the ratio's concurrency)", fontsize=10)  # fmt: skip
        made.append(save_figure(fig, out, "bench_sweep.png", "Saturation sweep, direct and VIP"))
    scale = data.get("scale", {})
    if any("points" in sc for sc in scale.values()):
        paired = _scale_series(scale, "rate_per_s", of="vs_reference")
        fig, axes = plt.subplots(1, 3 if paired else 2, figsize=(15 if paired else 10, 3.4))
        a1, a2 = axes[:2]
        _curves(a1, _scale_series(scale, "rate_per_s"), False)
        _curves(a2, _scale_series(scale, "p99_ms"), False)
        a1.set(xlabel="connections held", ylabel="new connections/s")
        a2.set(xlabel="connections held", ylabel="p99 connect time, ms")
        if paired:  # what host drift between the curves cannot move
            _curves(axes[2], paired, False)
            axes[2].set(xlabel="connections held", ylabel="rate over the reference's beside it")
        fig.suptitle("Scale curve: the rate of new connections beside those held", fontsize=10)
        made.append(
            save_figure(fig, out, "bench_scale.png", "Scale curves: rate and p99 by entries held")
        )
    made += bench_failover_plot(data, out)
    return made


# -- several kernels ------------------------------------------------------------------------


def _median(section: dict[str, Any], *keys: str) -> float | None:
    for k in keys:
        section = section.get(k, {}) if isinstance(section, dict) else {}
    return section.get("median") if isinstance(section, dict) else None


def kernel_figures(data: dict[str, Any]) -> dict[str, Any]:
    """One kernel's headline figures, flat, for the side-by-side table."""
    out: dict[str, Any] = {}
    for path, r in data.get("throughput", {}).get("ratios", {}).items():
        out[f"throughput {path}/direct"] = r.get("median")
    rate = data.get("connect_rate", {})
    out["connect rate: concurrency"] = rate.get("concurrency")
    for path in rate.get("figures", {}):
        out[f"connect rate {path} conn/s"] = _median(rate, "figures", path)
    for path, r in rate.get("ratios", {}).items():
        out[f"connect rate {path}/direct"] = r.get("median")
        out[f"connect p99 {path}/direct"] = _median(rate, "connect_p99_ms", "ratios", path)
    for path, sc in data.get("scale", {}).items():
        for pt in sc.get("points", []):
            out[f"scale {path} conn/s at {pt['held']}"] = pt["rate"]["figures"]["rate_per_s"].get(
                "median"
            )
        if sc.get("points"):
            top = sc["points"][-1]
            out[f"scale {path} top/lowest"] = top.get("rate_vs_lowest_level")
            out[f"scale {path} table size"] = top["memory"].get("table_size")
            out[f"scale {path} bytes/entry"] = top.get("bytes_per_entry")
            out[f"scale {path} resets, exact"] = f"{sc['resets']}, {sc['exact']}"
    for paired, how in ((False, ""), (True, ", paired")):
        for path, row in scale_effect(data.get("scale", {}), paired=paired).items():
            out[f"scale {path} IPVS share at top{how}"] = row[-1] if row else None
    return out


def _bench_labels(benches: dict[str, dict[str, Any]]) -> list[str]:
    """Each bench's kernel and, when the guest was booted with it, its conn_tab_bits
    (one kernel measured at several table sizes); the caller's key where two are alike."""
    labels = []
    for key, data in benches.items():
        label = str(data.get("environment", {}).get("kernel") or key)
        if bits := re.search(r"ip_vs\.conn_tab_bits=(\d+)", str(data.get("cmdline", ""))):
            label += f" bits={bits[1]}"
        labels.append(label)
    if len(set(labels)) < len(labels):
        return list(benches)
    return labels


def bench_kernels(benches: dict[str, dict[str, Any]], top: Path) -> str:
    """The figures of one bench per kernel side by side: bench-kernels.txt, .json,
    .html and its plots in ``top``; returns the text."""
    figures = {k: kernel_figures(d) for k, d in benches.items()}
    names = list(dict.fromkeys(n for f in figures.values() for n in f))
    kernels = list(benches)
    labels = _bench_labels(benches)
    width = max(16, *(len(x) for x in labels))
    lines = ["LVS testbed bench, kernels side by side (medians of each kernel's repetitions)",
             f"{'figure':44s}" + "".join(f"{x:>{width + 2}s}" for x in labels)]  # fmt: skip
    for n in names:
        cells = [figures[k].get(n) for k in kernels]
        shown = [
            f"{c:.4g}" if isinstance(c, float) else str(c if c is not None else "-") for c in cells
        ]
        lines.append(f"{n:44s}" + "".join(f"{c:>{width + 2}s}" for c in shown))
    text = "\n".join(lines) + "\n"
    (top / "bench-kernels.txt").write_text(text)
    both = {"kernels": dict(zip(kernels, labels, strict=True)), "figures": figures}
    (top / "bench-kernels.json").write_text(json.dumps(both, indent=2))
    plots = _kernel_plots(benches, labels, top)
    imgs = "".join(
        f'<figure><img src="{html.escape(n)}"><figcaption>{html.escape(c)}</figcaption></figure>'
        for n, c in plots
    )
    (top / "bench-kernels.html").write_text(
        f"<!doctype html><meta charset=utf-8><title>bench, kernels side by side</title>"
        f"<h1>Bench: kernels side by side</h1><pre>{html.escape(text)}</pre>{imgs}"
    )
    return text


def _kernel_plots(
    benches: dict[str, dict[str, Any]], labels: list[str], top: Path
) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, Any] = {}
    for (_, data), label in zip(benches.items(), labels, strict=True):
        series |= _scale_series(data.get("scale", {}), "rate_per_s", prefix=f"{label} ")
    if not series:
        return []
    fig, ax = plt.subplots(figsize=(8, 3.6))
    _curves(ax, series, False)
    ax.set(xlabel="connections held", ylabel="new connections/s")
    ax.set_title("Scale curves per kernel and path (median, min-max)", fontsize=10)
    return [save_figure(fig, top, "bench_kernels_scale.png", "Scale curves, kernels side by side")]
