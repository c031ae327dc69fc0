"""Server-side SVG charts (stacked bars per day): no JavaScript, no chart library."""

from __future__ import annotations

from html import escape

PALETTE = ["#1f5f8b", "#c0392b", "#d4a017", "#2e8b57", "#7d3c98", "#e67e22", "#16a085", "#7f8c8d", "#34495e",
           "#a93226"]


def stacked_bars(series: dict[str, dict[str, int]], *, title: str, width: int = 720, height: int = 260) -> str:
    """``series``: key (e.g. cooperation) -> day -> count. Returns an inline <svg>."""
    days = sorted({d for counts in series.values() for d in counts})
    keys = sorted(series)
    pad_l, pad_b, pad_t, legend_w = 40, 40, 24, 190
    plot_w, plot_h = width - pad_l - legend_w - 10, height - pad_b - pad_t
    totals = [sum(series[k].get(d, 0) for k in keys) for d in days]
    top = max(totals or [0]) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" viewBox="0 0 {width} {height}" '
             f'width="100%" aria-label="{escape(title)}"><title>{escape(title)}</title>']
    parts.append(f'<line x1="{pad_l}" y1="{pad_t + plot_h}" x2="{pad_l + plot_w}" y2="{pad_t + plot_h}" stroke="#555"/>')
    for frac in (0, 0.5, 1):
        y = pad_t + plot_h - frac * plot_h
        parts.append(f'<text x="{pad_l - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{round(top * frac)}</text>')
    if days:
        slot = plot_w / len(days)
        bar = max(min(slot * 0.7, 40), 2)
        for i, d in enumerate(days):
            x = pad_l + i * slot + (slot - bar) / 2
            y = pad_t + plot_h
            for j, k in enumerate(keys):
                n = series[k].get(d, 0)
                if not n:
                    continue
                h = n / top * plot_h
                y -= h
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                             f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(d)} {escape(k)}: {n}</title></rect>')
            if len(days) <= 16 or i % max(1, len(days) // 8) == 0:
                parts.append(f'<text x="{x + bar / 2:.1f}" y="{pad_t + plot_h + 16}" text-anchor="middle" '
                             f'font-size="10">{escape(d[5:])}</text>')
    else:
        parts.append(f'<text x="{pad_l + plot_w / 2}" y="{pad_t + plot_h / 2}" text-anchor="middle">—</text>')
    for j, k in enumerate(keys[:12]):
        ly = pad_t + j * 18
        lx = width - legend_w
        parts.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{PALETTE[j % len(PALETTE)]}"/>')
        total = sum(series[k].values())
        parts.append(f'<text x="{lx + 18}" y="{ly + 10}" font-size="11">{escape(k[:26])} ({total})</text>')
    parts.append("</svg>")
    return "".join(parts)
