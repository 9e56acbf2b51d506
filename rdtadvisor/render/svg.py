"""Inline SVG chart primitives for the HTML report: time-series charts and a colour scale.

Everything here returns SVG markup as a string, with every piece of text escaped, so that
the report stays one self-contained file (no JavaScript, no chart library, no network).

* `nice_ticks` / `time_ticks`: at most ~6 axis ticks at round values (1-2-2.5-5 x 10^k;
  round clock times in UTC), so labels never crowd.
* `time_chart`: a stacked area chart or a line chart of bucketed series over time. ``None``
  is a gap, never a zero: each series is drawn as separate runs of known values, and
  buckets where no series has data are shaded as "no data".
* `colour_scale`: the horizontal gradient legend of the heat map.

Charts share one geometry (`W` x `H` viewBox) and scale with the page width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape

W, H = 900, 260
# Margins leave room for the rotated y title + tick labels (left) and time labels (bottom).
LEFT, RIGHT, TOP, BOTTOM = 64, 28, 18, 44
FONT = 11  # px in viewBox units; the labels' width estimate below depends on it
AXIS_COLOUR = "#555"
GRID_COLOUR = "#e3e3e3"


def esc(value: object) -> str:
    """Escape any value for HTML/SVG text and attributes (quotes included)."""
    return escape(str(value), quote=True)


@dataclass(frozen=True)
class Series:
    """One named line/band: `values[i]` belongs to bucket `i`; ``None`` means no data."""

    name: str
    values: Sequence[float | None]
    colour: str


def nice_ticks(top: float, max_ticks: int = 6) -> list[float]:
    """Ticks from 0 to a round value >= `top`, at most `max_ticks` of them, step 1/2/2.5/5 x 10^k."""
    if not top or top <= 0 or not math.isfinite(top):
        top = 1.0
    for k in range(math.floor(math.log10(top / max_ticks)) - 1, 400):
        for mult in (1.0, 2.0, 2.5, 5.0):
            step = mult * 10.0**k
            n = math.ceil(top / step - 1e-9)
            if n + 1 <= max_ticks:
                return [i * step for i in range(n + 1)]
    return [0.0, top]  # unreachable for finite input; keeps the type checker honest


def tick_label(value: float, ticks: Sequence[float]) -> str:
    """A tick label with just as many decimals as the tick step needs (0, 2.5, 5, ...)."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > 1e-9 * max(1.0, step):
        decimals += 1
    return f"{value:,.{decimals}f}"


# Candidate tick spacings for time axes, all round on a UTC clock.
_TIME_STEPS = [60 * m for m in (5, 10, 15, 30)] + [3600 * h for h in (1, 2, 3, 6, 12)] + [
    86400 * d for d in (1, 2, 7, 14, 28)
]


def time_ticks(start: datetime, end: datetime, max_ticks: int = 6) -> tuple[list[datetime], str]:
    """Round UTC ticks inside [start, end] (at most `max_ticks`) and the strftime format for them."""
    t0, t1 = start.timestamp(), end.timestamp()
    span = max(t1 - t0, 1.0)
    step = next((s for s in _TIME_STEPS if span / s <= max_ticks - 1), _TIME_STEPS[-1])
    first = math.ceil(t0 / step) * step
    ticks = [datetime.fromtimestamp(t, UTC) for t in range(int(first), int(t1) + 1, step)]
    if step >= 86400:
        fmt = "%d %b"
    elif span > 86400:
        fmt = "%d %b %H:%M"
    else:
        fmt = "%H:%M"
    return ticks[:max_ticks], fmt


def _runs(values: Sequence[float | None]) -> list[tuple[int, int]]:
    """Index ranges [i, j) of consecutive known (non-None) values."""
    runs, start = [], None
    for i, v in enumerate([*values, None]):
        if v is not None and start is None:
            start = i
        elif v is None and start is not None:
            runs.append((start, i))
            start = None
    return runs


def _pts(points: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def time_chart(
    times: Sequence[datetime],
    bucket_s: float,
    series: Sequence[Series],
    *,
    title: str,
    y_title: str,
    stacked: bool,
    reference: tuple[float, str] | None = None,
) -> str:
    """An SVG chart of `series` over bucketed `times` (bucket starts, UTC).

    `stacked`: areas summed bottom-up in the given order; else one line per series.
    `reference`: ``(value, label)`` for a dashed horizontal line (e.g. the socket's L3 size).
    Each run of known values spans its buckets from the first one's start to the last one's
    end, so an isolated bucket between gaps is still visible.
    """
    n = len(times)
    step = timedelta(seconds=bucket_s)
    t_start, t_end = times[0], times[-1] + step
    span = max((t_end - t_start).total_seconds(), 1.0)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x_of(t: datetime) -> float:
        return LEFT + (t - t_start).total_seconds() / span * pw

    starts = [x_of(t) for t in times]
    ends = [x_of(t + step) for t in times]
    centres = [(a + b) / 2 for a, b in zip(starts, ends, strict=True)]

    # Stack bottoms/tops per bucket; a series' None adds nothing to the stack above it.
    lows: list[list[float]] = []
    highs: list[list[float]] = []
    base = [0.0] * n
    for s in series:
        lows.append(base[:])
        if stacked:
            base = [b + (v or 0.0) for b, v in zip(base, s.values, strict=True)]
            highs.append(base[:])
        else:
            highs.append([v or 0.0 for v in s.values])
    top = max([max(h, default=0.0) for h in highs] + [reference[0] if reference else 0.0])
    ticks = nice_ticks(top * 1.04)  # 4% headroom so the reference label fits above its line
    y_max = ticks[-1]

    def y_of(v: float) -> float:
        return TOP + ph - v / y_max * ph

    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" '
        f'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="{FONT}">',
        f"<title>{esc(title)}</title>",
    ]
    # Buckets without any data at all: shaded, so a gap is visibly "unknown", not "zero".
    empty = [None if all(s.values[i] is None for s in series) else 1.0 for i in range(n)]
    gaps = [(i, j) for i, j in _runs([1.0 if e is None else None for e in empty])]
    for i, j in gaps:
        out.append(
            f'<rect x="{starts[i]:.1f}" y="{TOP}" width="{ends[j - 1] - starts[i]:.1f}" height="{ph}" '
            f'fill="#f4f4f4"><title>no data</title></rect>'
        )
    # Grid and y labels.
    for v in ticks:
        y = y_of(v)
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID_COLOUR}"/>')
        out.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{AXIS_COLOUR}">'
            f"{esc(tick_label(v, ticks))}</text>"
        )
    # Data.
    for s, lo, hi in zip(series, lows, highs, strict=True):
        for i, j in _runs(s.values):
            top_pts = [(starts[i], y_of(hi[i]))]
            top_pts += [(centres[k], y_of(hi[k])) for k in range(i, j)]
            top_pts.append((ends[j - 1], y_of(hi[j - 1])))
            if stacked:
                bottom = [(ends[j - 1], y_of(lo[j - 1]))]
                bottom += [(centres[k], y_of(lo[k])) for k in range(j - 1, i - 1, -1)]
                bottom.append((starts[i], y_of(lo[i])))
                out.append(
                    f'<polygon points="{_pts(top_pts + bottom)}" fill="{s.colour}" fill-opacity="0.85" '
                    f'stroke="{s.colour}" stroke-width="0.5"><title>{esc(s.name)}</title></polygon>'
                )
            else:
                out.append(
                    f'<polyline points="{_pts(top_pts)}" fill="none" stroke="{s.colour}" '
                    f'stroke-width="1.8" stroke-linejoin="round"><title>{esc(s.name)}</title></polyline>'
                )
    if reference is not None:
        y = y_of(reference[0])
        out.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#222" '
            f'stroke-width="1.5" stroke-dasharray="6 4"/>'
        )
        out.append(
            f'<text x="{W - RIGHT - 4}" y="{y - 5:.1f}" text-anchor="end" fill="#222" '
            f'font-weight="600">{esc(reference[1])}</text>'
        )
    # Axes and time labels; labels at the plot edges are anchored inwards so none is clipped.
    out.append(
        f'<path d="M{LEFT},{TOP} V{TOP + ph} H{W - RIGHT}" fill="none" stroke="{AXIS_COLOUR}"/>'
    )
    tticks, fmt = time_ticks(t_start, t_end)
    for t in tticks:
        x = x_of(t)
        anchor = "start" if x - LEFT < 40 else "end" if W - RIGHT - x < 40 else "middle"
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + ph}" y2="{TOP + ph + 4}" stroke="{AXIS_COLOUR}"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{TOP + ph + 17}" text-anchor="{anchor}" fill="{AXIS_COLOUR}">'
            f"{esc(t.strftime(fmt))}</text>"
        )
    out.append(
        f'<text x="{LEFT + pw / 2:.1f}" y="{H - 6}" text-anchor="middle" fill="#333">time (UTC)</text>'
    )
    out.append(
        f'<text transform="translate(16 {TOP + ph / 2:.1f}) rotate(-90)" text-anchor="middle" '
        f'fill="#333">{esc(y_title)}</text>'
    )
    out.append("</svg>")
    return "\n".join(out)


def shade(fraction: float | None) -> str:
    """Sequential colour for 0..1 (clamped): white to dark blue. ``None`` is light grey."""
    if fraction is None:
        return "#eeeeee"
    f = min(max(fraction, 0.0), 1.0)
    lo, hi = (247, 251, 255), (8, 48, 107)  # ColorBrewer Blues ends
    r, g, b = (round(a + (c - a) * f) for a, c in zip(lo, hi, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def ink_for(fraction: float | None) -> str:
    """Text colour that stays readable on `shade(fraction)`."""
    return "#fff" if fraction is not None and fraction >= 0.55 else "#111"


def colour_scale(title: str, gradient_id: str, width: int = 360) -> str:
    """A gradient bar from 0% to 100% with five labelled ticks: the heat map's legend.

    `gradient_id` must be unique in the document (one scale per host).
    """
    stops = "".join(
        f'<stop offset="{i * 10}%" stop-color="{shade(i / 10)}"/>' for i in range(11)
    )
    bar_x, bar_w = 10, width - 20
    out = [
        f'<svg class="scale" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} 40" '
        f'width="{width}" height="40" role="img" font-family="system-ui, sans-serif" font-size="{FONT}">',
        f"<title>{esc(title)}</title>",
        f'<defs><linearGradient id="{esc(gradient_id)}">{stops}</linearGradient></defs>',
        f'<rect x="{bar_x}" y="4" width="{bar_w}" height="14" fill="url(#{esc(gradient_id)})" '
        'stroke="#999"/>',
    ]
    for i in range(5):
        x = bar_x + bar_w * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="18" y2="22" stroke="#555"/>')
        out.append(
            f'<text x="{x:.1f}" y="34" text-anchor="{anchor}" fill="#333">{i * 25}%</text>'
        )
    out.append("</svg>")
    return "".join(out)
