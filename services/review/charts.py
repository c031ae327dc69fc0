"""Server-side SVG charts (stacked bars per day): no JavaScript, no chart library, no CDN.

Every series is in the legend. Colours are the Okabe-Ito palette (distinguishable with the common
colour-vision deficiencies); past eight series a fill pattern is added to the colour, so no two
series look alike. Each chart comes with the same numbers as a table (``chart_table``), its text
alternative.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

# Okabe & Ito (2008), "Color Universal Design"; black last so it is used least.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
PATTERNS = ["", "diagonal", "dots", "cross"]


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def style_of(index: int) -> tuple[str, str]:
    """(colour, pattern) of the index-th series: distinct for the first 32."""
    return PALETTE[index % len(PALETTE)], PATTERNS[(index // len(PALETTE)) % len(PATTERNS)]


def _defs(chart_id: str, n: int) -> str:
    out = []
    for i in range(len(PALETTE), n):
        colour, pattern = style_of(i)
        pid = f"{chart_id}-p{i}"
        ink = "#ffffff" if colour != "#F0E442" else "#000000"
        if pattern == "diagonal":
            body = f'<path d="M-1,1 l2,-2 M0,6 l6,-6 M5,7 l2,-2" stroke="{ink}" stroke-width="1.5"/>'
        elif pattern == "dots":
            body = f'<circle cx="3" cy="3" r="1.4" fill="{ink}"/>'
        else:
            body = f'<path d="M0,3 h6 M3,0 v6" stroke="{ink}" stroke-width="1.3"/>'
        out.append(f'<pattern id="{pid}" width="6" height="6" patternUnits="userSpaceOnUse">'
                   f'<rect width="6" height="6" fill="{colour}"/>{body}</pattern>')
    return f"<defs>{''.join(out)}</defs>" if out else ""


def _fill(chart_id: str, i: int) -> str:
    colour, pattern = style_of(i)
    return colour if not pattern else f"url(#{chart_id}-p{i})"


def stacked_bars(series: list[Series], *, title: str, chart_id: str, width: int = 1000, empty: str = "—") -> str:
    """An inline <svg> of ``series`` stacked per day, with a legend naming every series."""
    series = [s for s in series if s.total]
    days = sorted({d for s in series for d in s.counts})
    pad_l, pad_b, pad_t, legend_w, row = 44, 40, 16, 360, 20
    plot_h = 220
    height = max(plot_h + pad_b + pad_t, pad_t + row * len(series) + 8)
    plot_w = width - pad_l - legend_w - 20
    totals = [sum(s.counts.get(d, 0) for s in series) for d in days]
    top = max(totals or [0]) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" viewBox="0 0 {width} {height}" '
             f'aria-labelledby="{chart_id}-t"><title id="{chart_id}-t">{escape(title)}</title>',
             _defs(chart_id, len(series))]
    base = pad_t + plot_h
    parts.append(f'<line x1="{pad_l}" y1="{base}" x2="{pad_l + plot_w}" y2="{base}" stroke="#444"/>')
    for value in sorted({0, top // 2, top}):  # whole numbers, each at its own height
        y = base - value / top * plot_h
        parts.append(f'<line x1="{pad_l - 3}" y1="{y:.1f}" x2="{pad_l}" y2="{y:.1f}" stroke="#444"/>')
        parts.append(f'<text x="{pad_l - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12">{value}</text>')
    if days:
        slot = plot_w / len(days)
        bar = max(min(slot * 0.7, 40), 2)
        for i, d in enumerate(days):
            x = pad_l + i * slot + (slot - bar) / 2
            y = base
            for j, s in enumerate(series):
                n = s.counts.get(d, 0)
                if not n:
                    continue
                h = n / top * plot_h
                y -= h
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{_fill(chart_id, j)}" '
                             f'stroke="#ffffff" stroke-width="0.6"><title>{escape(d)} · {escape(s.label)}: {n}</title></rect>')
            if len(days) <= 16 or i % max(1, len(days) // 8) == 0:
                parts.append(f'<text x="{x + bar / 2:.1f}" y="{base + 16}" text-anchor="middle" '
                             f'font-size="12">{escape(d[8:10] + "/" + d[5:7])}</text>')
    else:
        parts.append(f'<text x="{pad_l + plot_w / 2}" y="{pad_t + plot_h / 2}" text-anchor="middle">{escape(empty)}</text>')
    lx = width - legend_w
    for j, s in enumerate(series):
        ly = pad_t + j * row
        label = s.label if len(s.label) <= 52 else s.label[:51] + "…"  # whole in its <title> and the table
        parts.append(f'<rect x="{lx}" y="{ly}" width="14" height="14" fill="{_fill(chart_id, j)}" stroke="#444" stroke-width="0.5"/>')
        parts.append(f'<text x="{lx + 20}" y="{ly + 12}" font-size="12"><title>{escape(s.label)}</title>'
                     f'{escape(label)} ({s.total})</text>')
    parts.append("</svg>")
    return "".join(parts)


def chart_table(series: list[Series], chart_id: str = "") -> dict:
    """The text alternative: every series with its total and its count per day (``fill``: the
    series' colour or pattern in the chart ``chart_id``, for a swatch beside its name)."""
    series = [s for s in series if s.total]
    days = sorted({d for s in series for d in s.counts})
    return {"days": days, "rows": [{"label": s.label, "total": s.total, "style": style_of(i),
                                    "fill": _fill(chart_id, i), "by_day": [s.counts.get(d, 0) for d in days]}
                                   for i, s in enumerate(series)]}


__all__ = ["Series", "stacked_bars", "chart_table", "style_of", "PALETTE", "PATTERNS"]
