"""Readable cells and tables for the report: values as a person reads them, not as reprs."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def fmt(value: Any) -> str:
    """``{'r1': 60, 'r2': 30}`` -> ``r1 60 · r2 30``; lists joined; floats to 4 digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return " · ".join(f"{k} {fmt(v)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value) or "none"
    return str(value)


def esc(value: Any) -> str:
    return html.escape(fmt(value) if not isinstance(value, str) else value)


def table(
    title: str,
    note: str,
    rows: Iterable[Any],
    columns: Sequence[tuple[str, Callable[[Any], Any]]],
) -> str:
    """An HTML table with a heading and a note; one row per item, one cell per column."""
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(get(item))}</td>" for _, get in columns) + "</tr>"
        for item in rows
    )
    if not body:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _ in columns)
    return (
        f"<h2>{html.escape(title)}</h2><p>{html.escape(note)}</p>"
        f"<table><tr>{head}</tr>{body}</table>"
    )


def save_figure(fig: Any, out: Path, name: str, caption: str, *, dpi: int = 110) -> tuple[str, str]:
    """Lay out, write and close a figure; return (file name, caption) for the report."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out / name, dpi=dpi)
    plt.close(fig)
    return (name, caption)
