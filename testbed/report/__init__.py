"""Results of a run: results.json (written by a pytest plugin), summary.txt, report.html.

Rendering happens where the run was started (on the host after a guest run),
so the guest never pays for importing matplotlib under emulation::

    pytest.main(args, plugins=[ResultsPlugin(run_dir, {"run_id": run_dir.name})])
    render(run_dir)          # summary.txt, report.html and its plots
"""

from ._bench import bench_kernels, bench_summary
from ._html import render, summary_text
from ._matrix import Comparison, Difference, bisect_verdict, compare_runs, render_matrix
from ._results import ResultsPlugin, environment, tool_versions

__all__ = [
    "Comparison",
    "Difference",
    "ResultsPlugin",
    "bench_kernels",
    "bench_summary",
    "bisect_verdict",
    "compare_runs",
    "environment",
    "render",
    "render_matrix",
    "summary_text",
    "tool_versions",
]
