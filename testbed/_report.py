"""Turn results.json into summary.txt and a readable report.html with plots.

Rendering happens where the run was started (on the host after a guest run),
so the guest never pays for importing matplotlib under emulation.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from ._report_ha import failover_plot, failover_tables


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
        elif test["outcome"] == "skipped":
            lines.append(f"  skipped {test['nodeid']}: {test.get('skip_reason', '')}")
    return "\n".join(lines) + "\n"


def _plots(data: dict[str, Any], out: Path) -> list[tuple[str, str]]:
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
        fig.tight_layout()
        fig.savefig(out / "timings.png", dpi=110)
        plt.close(fig)
        made.append(("timings.png", "Phase timings (VM boot, topology build, suite)"))
    modes = {
        k.split(".", 1)[1]: v
        for k, v in data.get("observations", {}).items()
        if k.startswith("forwarding.")
    }
    if modes:
        servers = sorted({s for v in modes.values() for s in v["responses_per_server"]})
        fig, ax = plt.subplots(figsize=(7, 3))
        width = 0.8 / max(len(modes), 1)
        for i, (mode, obs) in enumerate(sorted(modes.items())):
            xs = [j + i * width for j in range(len(servers))]
            ax.bar(xs, [obs["responses_per_server"].get(s, 0) for s in servers], width,
                   label=mode.upper())  # fmt: skip
        ax.set_xticks([j + width * (len(modes) - 1) / 2 for j in range(len(servers))])
        ax.set_xticklabels(servers)
        ax.set_ylabel("connections served")
        ax.set_title("rr: connections per real server, by forwarding mode")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(out / "forwarding.png", dpi=110)
        plt.close(fig)
        made.append(("forwarding.png", "Connections per real server (rr) in each mode"))
    sched = _scheduler_rows(data)
    if sched:
        fig, axes = plt.subplots(
            (len(sched) + 3) // 4, 4, figsize=(11, 2.2 * ((len(sched) + 3) // 4)), squeeze=False
        )
        for ax in axes.flat[len(sched) :]:
            ax.axis("off")
        for ax, (name, obs) in zip(axes.flat, sched, strict=False):
            servers = sorted(set(obs["observed"]) | set(obs["expected"]))
            xs = range(len(servers))
            ax.bar([x - 0.2 for x in xs], [obs["expected"].get(s, 0) for s in servers], 0.4,
                   label="model", color="#bbbbbb")  # fmt: skip
            ax.bar([x + 0.2 for x in xs], [obs["observed"].get(s, 0) for s in servers], 0.4,
                   label="kernel", color="#4c72b0")  # fmt: skip
            ax.set_xticks(list(xs))
            ax.set_xticklabels(servers, fontsize=7)
            ax.set_title(name, fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
        axes.flat[0].legend(fontsize=7)
        fig.suptitle("Schedulers: connections per real server, model vs kernel")
        fig.tight_layout()
        fig.savefig(out / "schedulers.png", dpi=100)
        plt.close(fig)
        made.append(("schedulers.png", "Per scheduler: model's expected vs kernel's observed"))
    made += failover_plot(data, out)
    return made


def _scheduler_rows(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (k.split(".", 1)[1], v)
        for k, v in sorted(data.get("observations", {}).items())
        if k.startswith("scheduler.") and "observed" in v and "expected" in v
    ]


def _scheduler_table(data: dict[str, Any]) -> str:
    rows = []
    for name, obs in _scheduler_rows(data):
        extra = {k: v for k, v in obs.items()
                 if k not in ("observed", "expected", "flows", "mismatches", "check")}  # fmt: skip
        rows.append(
            f"<tr><td>{_esc(name)}</td><td>{obs.get('flows', '')}</td>"
            f"<td>{_esc(obs['expected'])}</td><td>{_esc(obs['observed'])}</td>"
            f"<td>{_esc(obs.get('mismatches', ''))}</td><td>{_esc(obs.get('check', ''))}</td>"
            f"<td><small>{_esc(extra) if extra else ''}</small></td></tr>"
        )
    if not rows:
        return ""
    return (
        "<h2>Schedulers: model vs kernel</h2><table><tr><th>scheduler</th><th>flows</th>"
        "<th>model</th><th>kernel</th><th>mismatches</th><th>check</th><th>figures</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _esc(text: object) -> str:
    return html.escape(str(text))


def render(run_dir: Path) -> Path:
    """Write summary.txt and report.html for a run directory; return the report path."""
    data = json.loads((run_dir / "results.json").read_text())
    (run_dir / "summary.txt").write_text(summary_text(data))
    plots = _plots(data, run_dir)
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
        elif t["outcome"] == "skipped":
            detail = _esc(t.get("skip_reason", ""))
        rows.append(
            f"<tr class='{t['outcome']}'><td>{_esc(t['nodeid'])}</td><td>{t['outcome']}</td>"
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
    for key, obs in sorted(data.get("observations", {}).items()):
        if not key.startswith("forwarding.") or not obs.get("handshake_trace"):
            continue
        hops = "".join(
            f"<tr><td>{_esc(h['point'])}</td><td>{_esc(h['direction'])}</td>"
            f"<td><code>{_esc(h['packet'])}</code></td></tr>"
            for h in obs["handshake_trace"]
        )
        traces += f"<h3>{_esc(key.split('.', 1)[1].upper())}</h3><table>{hops}</table>"
    if traces:
        traces = (
            "<h2>One connection's handshake, hop by hop</h2><p>SYN and SYN-ACK of the first "
            "connection in each mode, as captured at every interface on the path.</p>" + traces
        )
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>LVS testbed {_esc(data.get("run_id", ""))}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
td{{vertical-align:top;padding:4px 8px;border-bottom:1px solid #ddd}}
tr.passed td:nth-child(2){{color:#1a7f37}} tr.failed td:nth-child(2),
tr.error td:nth-child(2){{color:#cf222e;font-weight:bold}}
tr.skipped td:nth-child(2){{color:#9a6700}}
pre{{background:#f6f8fa;padding:8px;overflow-x:auto;font-size:12px}}</style></head><body>
<h1>LVS testbed run {_esc(data.get("run_id", ""))}</h1>
<p>Kernel <b>{_esc(env.get("kernel"))}</b> ({_esc(env.get("kernel_origin"))}),
{_esc(env.get("where"))}, emulation: {_esc(env.get("emulation"))}.
Result: {_esc(", ".join(f"{v} {k}" for k, v in data.get("counts", {}).items() if v))}.</p>
<pre>{_esc(summary_text(data))}</pre>
{figures}
{_scheduler_table(data)}
{failover_tables(data)}
{traces}
<h2>Tests</h2><table>{"".join(rows)}</table>
<h2>Versions</h2><table>{versions}</table>
</body></html>"""
    report = run_dir / "report.html"
    report.write_text(page)
    return report
