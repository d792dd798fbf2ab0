"""A picture of the cluster drawn from its spec: text for the terminal, SVG for the report.

Hosts stand in columns: clients (outside only), then the router and the
directors (both segments), then the real servers (inside only). The VIP and
the DIP are drawn on the director that holds them now (``holder``), so an HA
lab shows where the VIP went.

    >>> print(text_picture(load_topology(), holder="d1"))    # doctest: +SKIP

Labs print it when they start (and on `picture`); every run's report shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from ._spec import ClusterSpec

COLUMN = 16  # characters per host in the text picture


@dataclass(frozen=True)
class _Column:
    top: str  # the host on the outside segment only (a client), or a two-legged one
    outside: str  # its address there ("" if none)
    bottom: str  # the host on the inside segment only (a real server), or the same
    inside: str
    note: str  # "VIP .100 DIP .254" on the holder

    @property
    def both(self) -> bool:
        return self.top == self.bottom != ""


def _short(addr: object, net: object) -> str:
    """An address as its host part for IPv4 (.11), whole for IPv6."""
    text = str(addr)
    return "." + text.rsplit(".", 1)[1] if "." in text and "." in str(net) else text


def _columns(spec: ClusterSpec, holder: str | None) -> list[_Column]:
    """Clients above real servers in the first columns, then the two-legged hosts."""
    s, out, ins = spec.service, spec.outside, spec.inside
    cols = []
    for i in range(max(len(spec.clients), len(spec.real_servers))):
        c = spec.clients[i] if i < len(spec.clients) else None
        r = spec.real_servers[i] if i < len(spec.real_servers) else None
        cols.append(_Column(c.name if c else "", _short(c.ip, out) if c else "",
                            r.name if r else "", _short(r.ip, ins) if r else "", ""))  # fmt: skip
    for t in (spec.router, *spec.directors):
        note = f"VIP {_short(s.vip, out)}" if t.name == holder else ""
        cols.append(_Column(t.name, _short(t.outside, out), t.name, _short(t.inside, ins), note))
    return cols


def text_picture(spec: ClusterSpec, holder: str | None = None) -> str:
    """The cluster as box-drawing text; ``holder`` is the director holding VIP and DIP."""
    cols = _columns(spec, holder)
    end = COLUMN * (len(cols) - 1) + 1  # the buses end at the last host's line

    def row(cell: object) -> str:
        return "".join(str(cell(c)).ljust(COLUMN)[:COLUMN] for c in cols).rstrip()  # type: ignore[operator]

    def bus(joint: object, label: str) -> str:
        line = "".join((joint(c) or "═").ljust(COLUMN, "═") for c in cols)  # type: ignore[operator]
        return f"{line[:end]}══ {label}"

    s = spec.service
    dip = f", DIP {s.dip}" if holder else ""
    return "\n".join([
        row(lambda c: f"{c.top} {c.outside}" if c.top else ""),
        row(lambda c: c.note),
        row(lambda c: "│" if c.top else ""),
        bus(lambda c: "╪" if c.both else "╧" if c.top else "", f"outside {spec.outside}"),
        row(lambda c: "│" if c.both else ""),
        bus(lambda c: "╧" if c.both else "╤" if c.bottom else "", f"inside {spec.inside}"),
        row(lambda c: "│" if c.bottom and not c.both else ""),
        row(lambda c: f"{c.bottom} {c.inside}" if c.bottom and not c.both
            else f"({c.inside})" if c.both else ""),
        f"service {s.transport.title} {s.endpoint} ({s.forwarding.title}, {s.scheduler})"
        + (f": VIP on {holder}{dip}" if holder else ": no director holds the VIP"),
    ])  # fmt: skip


def svg_picture(spec: ClusterSpec, holder: str | None = None) -> str:
    """The same picture as an SVG image (for the run report)."""
    cols = _columns(spec, holder)
    step, top_bus, low_bus = 110, 80, 170
    width = step * len(cols) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="250" '
        'font-family="sans-serif" font-size="12">',
    ]
    for y, colour, label in ((top_bus, "#468", f"outside {spec.outside}"),
                             (low_bus, "#684", f"inside {spec.inside}")):  # fmt: skip
        parts += [
            f'<line x1="10" y1="{y}" x2="{width - 10}" y2="{y}" stroke="{colour}" '
            'stroke-width="4"/>',
            f'<text x="{width - 12}" y="{y - 6}" text-anchor="end" fill="{colour}">'
            f"{escape(label)}</text>",
        ]

    def box(x: int, y: int, name: str, addr: str, fill: str) -> list[str]:
        return [
            f'<rect x="{x}" y="{y}" width="90" height="30" rx="4" fill="{fill}" stroke="#333"/>',
            f'<text x="{x + 45}" y="{y + 13}" text-anchor="middle">{escape(name)}</text>',
            f'<text x="{x + 45}" y="{y + 26}" text-anchor="middle" font-size="10">'
            f"{escape(addr)}</text>",
        ]

    for i, c in enumerate(cols):
        x, mid = 20 + i * step, 20 + i * step + 45
        if c.both:
            parts.append(f'<line x1="{mid}" y1="50" x2="{mid}" y2="{low_bus}" stroke="#333"/>')
            parts += box(x, 20, c.top, f"{c.outside} / {c.inside}", "#fd8" if c.note else "#eee")
            if c.note:
                parts.append(f'<text x="{mid}" y="64" text-anchor="middle" font-size="10" '
                             f'fill="#a40">{escape(c.note)}</text>')  # fmt: skip
            continue
        if c.top:
            parts.append(f'<line x1="{mid}" y1="50" x2="{mid}" y2="{top_bus}" stroke="#333"/>')
            parts += box(x, 20, c.top, c.outside, "#def")
        if c.bottom:
            parts.append(f'<line x1="{mid}" y1="{low_bus}" x2="{mid}" y2="200" stroke="#333"/>')
            parts += box(x, 200, c.bottom, c.inside, "#dfd")
    parts.append("</svg>")
    return "\n".join(parts)
