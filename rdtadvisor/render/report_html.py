"""The report dict (docs/report.md) as one self-contained HTML page.

`render_html(report)` is a pure function: no I/O, no clock, no network at view time. The page
has inline CSS, charts as inline SVG (`rdtadvisor.render.svg`) and no JavaScript; a
Content-Security-Policy meta tag forbids scripts and remote loads as defence in depth.
Every string taken from the report (host and VM names above all: they come from ``xl``) is
escaped with `html.escape(..., quote=True)` before it reaches the markup.

Sections, in order: header (window, status, counts), findings as ranked, per host and
socket the occupancy/bandwidth charts and the VM table, a VM x socket heat map of p95
occupancy share per host, and data quality per host. The report is read defensively: a
missing key or a ``null`` shows as "—", never as 0, so a newer or partial dict still renders.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rdtadvisor.core.units import GIB, MIB
from rdtadvisor.render.svg import Series, colour_scale, esc, ink_for, shade, time_chart

TOP_N = 8  # series charted by name; the rest is summed into "others" so legends stay short
# Categorical palette (Tableau 10 without its grey, plus three): neighbours stay distinct.
PALETTE = [
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#1f3b73",
    "#8f9e2b",
    "#d37295",
]
OTHERS_COLOUR = "#b5b5b5"
NA = "—"
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
SEVERITIES = ("critical", "warning", "info")

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;
 margin:0 auto;max-width:1000px;padding:16px 24px 48px;background:#fff}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:20px;margin:32px 0 8px;border-bottom:2px solid #ddd}
h3{font-size:16px;margin:24px 0 6px}h4{font-size:14px;margin:14px 0 2px;font-weight:600}
.muted{color:#666}.small{font-size:12px}code{font-size:12px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
 color:#fff;vertical-align:middle;white-space:nowrap}
.ok{background:#2e7d32}.warning{background:#b26a00}.critical{background:#c62828}.info{background:#1565c0}
.high{background:#2e7d32}.medium{background:#b26a00}.low{background:#c62828}.unknown{background:#777}
.facts{display:flex;flex-wrap:wrap;gap:4px 22px;margin:6px 0}.facts b{font-weight:600}
nav ul{margin:4px 0;padding-left:20px}
.finding{border:1px solid #ddd;border-left:5px solid #999;border-radius:4px;padding:8px 12px;margin:10px 0}
.finding.sev-critical{border-left-color:#c62828}.finding.sev-warning{border-left-color:#b26a00}
.finding.sev-info{border-left-color:#1565c0}.finding p{margin:4px 0}
.chip{display:inline-block;background:#eef1f5;border-radius:4px;padding:0 6px;margin:1px 2px;
 font-size:12px;word-break:break-all}
dl.ev{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:6px 0;font-size:13px}
dl.ev dt{color:#555}dl.ev dd{margin:0;word-break:break-word}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border-bottom:1px solid #e4e4e4;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f7f9;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td.name{min-width:130px;max-width:220px;overflow-wrap:anywhere}td.trend,.nw{white-space:nowrap}.sub{display:block;color:#777;font-size:11px}
svg.chart{display:block;width:100%;max-width:900px;height:auto;margin:2px 0}
ul.legend{list-style:none;padding:0;margin:2px 0 12px;display:flex;flex-wrap:wrap;gap:2px 16px;font-size:12px}
ul.legend li{overflow-wrap:anywhere}.sw{display:inline-block;width:11px;height:11px;margin-right:5px;
 vertical-align:-1px;border-radius:2px}
table.heat td.cell{text-align:center;min-width:70px;font-variant-numeric:tabular-nums}
.note{background:#fff8e1;border:1px solid #f0d98c;border-radius:4px;padding:6px 10px}
"""


# -- formatting --------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    """A finite number or None: bools and strings are not figures."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return float(value)


def mib(b: Any) -> str:
    """Bytes as MiB with one decimal, "—" when unknown."""
    v = _num(b)
    return NA if v is None else f"{v / MIB:,.1f}"


def gibs(bs: Any) -> str:
    """Bytes/s as GiB/s with two decimals, "—" when unknown."""
    v = _num(bs)
    return NA if v is None else f"{v / GIB:,.2f}"


def pct(fraction: Any) -> str:
    """A 0..1 fraction as a whole percentage, "—" when unknown."""
    v = _num(fraction)
    return NA if v is None else f"{v * 100:.0f}%"


def _signed(v: float | None, decimals: int, unit: str) -> str:
    return NA if v is None else f"{v:+,.{decimals}f} {unit}"


_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?$")


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not _ISO.match(text):
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def when(text: Any) -> str:
    """An ISO 8601 time as ``2026-11-26 12:00 UTC``; other values as escaped text."""
    t = _parse_time(text)
    if t is not None:
        return f"{t:%Y-%m-%d %H:%M} UTC"
    return NA if text is None else esc(text)


def _get(d: Any, *keys: str) -> Any:
    """``d[k1][k2]...`` or None when any level is missing or not a dict."""
    for k in keys:
        if not isinstance(d, Mapping):
            return None
        d = d.get(k)
    return d


def _badge(level: Any) -> str:
    text = str(level) if level is not None else "unknown"
    cls = text if text in {*SEVERITIES, "ok", "high", "medium", "low"} else "unknown"
    return f'<span class="badge {cls}">{esc(text)}</span>'


def _chips(names: Any) -> str:
    if not isinstance(names, list) or not names:
        return f'<span class="muted">{NA}</span>'
    return "".join(f'<span class="chip">{esc(n)}</span>' for n in names)


# -- evidence: figures named by their unit suffix (docs/report.md) ----------------------

_SUFFIXES = ("_bytes_s_per_day", "_bytes_per_day", "_bytes_s", "_bytes", "_pct")


def _label(key: Any) -> str:
    text = str(key)
    for suffix in _SUFFIXES:
        if text.endswith(suffix) and text != suffix:
            text = text[: -len(suffix)]
            break
    return esc(text.replace("_", " "))


def _figure(key: str, value: Any) -> str:
    """One evidence value, formatted by the unit its key names."""
    if value is None:
        return NA
    if isinstance(value, bool):
        return "yes" if value else "no"
    v = _num(value)
    if v is not None:
        if key.endswith("_bytes_s_per_day"):
            return _signed(v / GIB, 2, "GiB/s per day")
        if key.endswith("_bytes_per_day"):
            return _signed(v / MIB, 1, "MiB per day")
        if key.endswith("_bytes_s"):
            return f"{gibs(v)} GiB/s"
        if key.endswith("_bytes"):
            return f"{mib(v)} MiB"
        if key.endswith(("_share", "utilisation", "coverage")):
            return pct(v)
        if key.endswith("_pct"):
            return f"{v:.0f}%"
        return f"{int(v):,}" if v.is_integer() else f"{v:.3g}"
    if isinstance(value, list):
        if value and all(isinstance(x, Mapping) for x in value):
            return _dict_table(value)
        return ", ".join(_figure(key, x) for x in value) or NA
    if isinstance(value, Mapping):
        return _evidence(value, parent=key)
    return when(value)


def _dict_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows of dicts (e.g. evidence windows) as a table: start/end first, then other keys."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    keys.sort(key=lambda k: {"start": 0, "end": 1}.get(k, 2))
    head = "".join(f"<th>{_label(k)}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{_figure(str(k), r.get(k))}</td>" for k in keys) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _evidence(ev: Any, parent: str = "") -> str:
    """A definition list; keys without a unit of their own (``quiet``, ``p95``) take their
    parent's (``victim_occupancy_bytes: {quiet, active}`` is in bytes)."""
    if not isinstance(ev, Mapping) or not ev:
        return ""
    units = (*_SUFFIXES, "_share", "utilisation", "coverage")
    items = "".join(
        f"<dt>{_label(k)}</dt><dd>{_figure(str(k) if str(k).endswith(units) else parent or str(k), v)}</dd>"
        for k, v in ev.items()
    )
    return f'<dl class="ev">{items}</dl>'


# -- sections ----------------------------------------------------------------------------


def _header(report: Mapping[str, Any]) -> str:
    win = report.get("window") or {}
    summary = report.get("summary") or {}
    counts = summary.get("findings") or {}
    hours = win.get("hours")
    hours_text = f"hours {esc(hours)} {esc(win.get('tz') or 'UTC')}" if hours else "all hours"
    finding_counts = " ".join(f"{_badge(s)} {esc(counts.get(s, 0))}" for s in SEVERITIES)
    return f"""<header>
<h1>RDT cache &amp; bandwidth report {_badge(report.get("status"))}</h1>
<div class="facts"><span><b>Window</b> {when(win.get("since"))} → {when(win.get("until"))}</span>
<span><b>Filter</b> {hours_text}</span>
<span><b>Collections</b> {esc(win.get("collections", NA))} every {esc(win.get("step_s", NA))} s</span>
<span><b>Generated</b> {when(report.get("generated"))}</span></div>
<div class="facts"><span><b>{esc(summary.get("hosts", NA))}</b> hosts</span>
<span><b>{esc(summary.get("sockets", NA))}</b> sockets</span>
<span><b>{esc(summary.get("vms", NA))}</b> VMs</span>
<span><b>Findings</b> {finding_counts}</span></div>
<nav class="small"><ul><li><a href="#findings">Findings</a></li>
<li><a href="#hosts">Hosts and sockets</a></li>
<li><a href="#heat">Occupancy share heat map</a></li><li><a href="#quality">Data quality</a></li></ul></nav>
</header>"""


def _findings(findings: Any) -> str:
    out = ['<section id="findings"><h2>Findings</h2>']
    if not findings:
        out.append('<p class="muted">No findings.</p>')
    for f in findings or []:
        where = esc(f.get("host", NA))
        if f.get("socket") is not None:
            where += f" · socket {esc(f['socket'])}"
        score = _num(f.get("score"))
        out.append(
            f'<article class="finding sev-{esc(f.get("severity"))}"><p>{_badge(f.get("severity"))} '
            f'<b>{esc(f.get("kind", NA))}</b> <span class="muted">{where}'
            f"{f' · score {score:.2f}' if score is not None else ''}</span></p>"
            f'<p>{esc(f.get("summary", ""))}</p><p class="small">VMs: {_chips(f.get("vms"))}</p>'
            f"{_evidence(f.get('evidence'))}</article>"
        )
    out.append("</section>")
    return "\n".join(out)


def _p95(values: Sequence[float | None]) -> float:
    known = sorted(v for v in values if v is not None)
    return known[min(len(known) - 1, int(0.95 * len(known)))] if known else -1.0


def _fit(values: Any, n: int) -> list[float | None]:
    """A series cut or padded (with gaps) to the length of its time axis; junk becomes a gap."""
    vals = [_num(v) for v in (values if isinstance(values, list) else [])][:n]
    return vals + [None] * (n - len(vals))


def _top(data: Any, n: int) -> list[tuple[str, list[float | None], list[str]]]:
    """(label, values, members): the `TOP_N` series by p95, then the rest summed as "others"."""
    named = [(str(k), _fit(v, n)) for k, v in (data or {}).items()]
    named.sort(key=lambda kv: (-_p95(kv[1]), kv[0]))
    out = [(name, vals, [name]) for name, vals in named[:TOP_N]]
    rest = named[TOP_N:]
    if rest:
        summed: list[float | None] = []
        for i in range(n):
            known = [vals[i] for _, vals in rest if vals[i] is not None]
            summed.append(sum(known) if known else None)  # all unknown stays a gap
        out.append((f"others ({len(rest)} VMs)", summed, [name for name, _ in rest]))
    return out


def _legend(entries: Sequence[tuple[str, str, str]]) -> str:
    items = "".join(
        f'<li><span class="sw" style="background:{colour}"></span>{esc(label)} '
        f'<span class="muted">{esc(extra)}</span></li>'
        for label, colour, extra in entries
    )
    return f'<ul class="legend">{items}</ul>'


def _socket_charts(host: str, sock: Mapping[str, Any], sser: Mapping[str, Any], bucket_s: float) -> str:
    times = [_parse_time(t) for t in sser.get("times") or []]
    if not times or any(t is None for t in times):
        return '<p class="muted">No usable time series for this socket.</p>'
    ts: list[datetime] = [t for t in times if t is not None]
    occ = _top(sser.get("occupancy_bytes"), len(ts))
    bw = _top(sser.get("bandwidth_bytes_s"), len(ts))
    # One colour per VM for both charts of the socket, so a VM is the same colour in each.
    colours: dict[str, str] = {}
    for label, _, members in occ + bw:
        if len(members) == 1 and label not in colours:
            colours[label] = PALETTE[len(colours) % len(PALETTE)]

    def colour(label: str, members: list[str]) -> str:
        return colours[label] if len(members) == 1 else OTHERS_COLOUR

    def tail(members: list[str]) -> str:
        return f": {', '.join(members)}" if len(members) > 1 else ""

    out = []
    sid = sock.get("socket")
    l3 = _num(sock.get("l3_bytes"))
    if occ:
        series = [
            Series(lbl, [None if v is None else v / MIB for v in vals], colour(lbl, m))
            for lbl, vals, m in occ
        ]
        ref = (l3 / MIB, f"L3 {mib(l3)} MiB") if l3 else None
        title = f"{host} socket {sid}: L3 occupancy per VM, stacked (MiB)"
        out.append(f"<h4>L3 occupancy per VM, stacked (MiB){' · dashed line: L3 size' if ref else ''}</h4>")
        out.append(
            time_chart(
                ts, bucket_s, series, title=title, y_title="occupancy (MiB)", stacked=True, reference=ref
            )
        )
        out.append(
            _legend(
                [
                    (s.name, s.colour, f"p95 {_p95(s.values):,.1f} MiB{tail(m)}")
                    for s, (_, _, m) in zip(series, occ, strict=True)
                ]
            )
        )
    if bw:
        series = [
            Series(
                lbl + (" summed" if len(m) > 1 else ""),
                [None if v is None else v / GIB for v in vals],
                colour(lbl, m),
            )
            for lbl, vals, m in bw
        ]
        title = f"{host} socket {sid}: total memory bandwidth per VM (GiB/s)"
        out.append("<h4>Total memory bandwidth per VM (GiB/s)</h4>")
        out.append(time_chart(ts, bucket_s, series, title=title, y_title="bandwidth (GiB/s)", stacked=False))
        out.append(
            _legend(
                [
                    (s.name, s.colour, f"p95 {_p95(s.values):,.2f} GiB/s{tail(m)}")
                    for s, (_, _, m) in zip(series, bw, strict=True)
                ]
            )
        )
    return "\n".join(out) or '<p class="muted">No VM series for this socket.</p>'


def _trend(t: Any) -> str:
    if not isinstance(t, Mapping):
        return NA
    occ = _num(t.get("occupancy_bytes_per_day"))
    bw = _num(t.get("bandwidth_bytes_s_per_day"))
    parts = [
        _signed(None if occ is None else occ / MIB, 1, "MiB/day"),
        _signed(None if bw is None else bw / GIB, 2, "GiB/s/day"),
    ]
    days = _num(t.get("days_to_limit"))
    if days is not None:
        parts.append(f"<b>{days:.0f} days</b> to {esc(t.get('limit') or 'limit')}")
    return "<br>".join(parts)


def _vm_table(vms: Any) -> str:
    if not vms:
        return '<p class="muted">No VMs on this socket.</p>'
    rows = sorted(vms, key=lambda v: -(_num(_get(v, "occupancy_bytes", "p95")) or -1.0))
    head = (
        "<tr><th>VM</th><th>class</th><th class=n>occ. p50<span class=sub>MiB (share)</span></th>"
        "<th class=n>occ. p95<span class=sub>MiB (share)</span></th>"
        "<th class=n>occ. max<span class=sub>MiB (share)</span></th>"
        "<th class=n>bandwidth p95<span class=sub>GiB/s</span></th>"
        "<th class=n>local p95<span class=sub>GiB/s</span></th>"
        "<th class=n>remote p95<span class=sub>GiB/s</span></th><th>trend</th><th>confidence</th></tr>"
    )
    body = []
    for v in rows:
        occ = [
            f"{mib(_get(v, 'occupancy_bytes', q))}<span class=sub>{pct(_get(v, 'occupancy_share', q))}</span>"
            for q in ("p50", "p95", "max")
        ]
        q = v.get("quality") or {}
        ident = f"domid {esc(v.get('domid', NA))}" + (f" · CBM {esc(v['cbm'])}" if v.get("cbm") else "")
        body.append(
            f"<tr><td class=name>{esc(v.get('name', NA))}<span class=sub>{ident}</span></td>"
            f"<td><span class=nw>{esc(v.get('class') or NA)}</span>"
            f"<span class=sub>{esc(v.get('evidence') or '')}</span></td>"
            + "".join(f"<td class=n>{c}</td>" for c in occ)
            + f"<td class=n>{gibs(_get(v, 'bandwidth_bytes_s', 'p95'))}</td>"
            f"<td class=n>{gibs(_get(v, 'local_bandwidth_bytes_s', 'p95'))}</td>"
            f"<td class=n>{gibs(_get(v, 'remote_bandwidth_bytes_s', 'p95'))}</td>"
            f'<td class="small trend">{_trend(v.get("trend"))}</td>'
            f"<td>{_badge(q.get('confidence'))}<span class=sub>{pct(q.get('coverage'))} coverage, "
            f"{esc(q.get('samples', NA))}/{esc(q.get('expected', NA))}</span></td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _socket(
    host: str, sock: Mapping[str, Any], sser: Mapping[str, Any] | None, bucket_s: float, with_series: bool
) -> str:
    cos = sock.get("cos") or {}
    masks = "; ".join(
        f"{esc(m.get('cbm'))} ({esc(m.get('ways', NA))} ways): "
        + ", ".join(esc(d) for d in m.get("domains") or [])
        for m in sock.get("masks") or []
        if isinstance(m, Mapping)
    )
    out = [
        f"<h3>Socket {esc(sock.get('socket', NA))}</h3>",
        f'<div class="facts small"><span><b>L3</b> {mib(sock.get("l3_bytes"))} MiB</span>'
        f"<span><b>occupancy p95</b> {mib(_get(sock, 'occupancy_bytes', 'p95'))} MiB "
        f"({pct(_get(sock, 'occupancy_share', 'p95'))})</span>"
        f"<span><b>bandwidth p95</b> {gibs(_get(sock, 'bandwidth_bytes_s', 'p95'))} GiB/s of "
        f"{gibs(sock.get('bandwidth_capacity_bytes_s'))} "
        f"({esc(sock.get('bandwidth_capacity_source', 'unknown'))}), "
        f"{pct(_get(sock, 'bandwidth_utilisation', 'p95'))}</span>"
        f"<span><b>COS</b> {esc(cos.get('used', NA))}/{esc(cos.get('available', NA))}"
        f"{' CDP' if cos.get('cdp') else ''}</span>"
        + (f"<span><b>masks</b> {masks}</span>" if masks else "")
        + "</div>",
    ]
    if with_series:
        if sser is None:
            out.append('<p class="muted">No time series for this socket in the report.</p>')
        else:
            out.append(_socket_charts(host, sock, sser, bucket_s))
    out.append(_vm_table(sock.get("vms")))
    return "\n".join(out)


def _hosts(report: Mapping[str, Any]) -> str:
    series = report.get("series")
    with_series = isinstance(series, Mapping)
    bucket_s = _num(_get(series, "bucket_s")) or _num(_get(report, "window", "step_s")) or 300.0
    series_hosts = (series.get("hosts") or []) if isinstance(series, Mapping) else []
    by_host: dict[str, dict[Any, Mapping[str, Any]]] = {
        str(h.get("host")): {s.get("socket"): s for s in h.get("sockets") or []} for h in series_hosts
    }
    out = ['<section id="hosts"><h2>Hosts and sockets</h2>']
    if not with_series:
        out.append(
            '<p class="note">This report was built without series (<code>--series</code>), '
            "so there are no charts over time.</p>"
        )
    for h in report.get("hosts") or []:
        name = str(h.get("host", NA))
        rmid = h.get("rmid") or {}
        unmon = h.get("unmonitored") or []
        out.append(
            f'<h2>{esc(name)}</h2><div class="facts small"><span><b>Xen</b> {esc(h.get("xen_version", NA))}'
            f"</span><span><b>collections</b> {esc(h.get('collections', NA))}, {when(h.get('first'))} → "
            f"{when(h.get('last'))}</span><span><b>RMIDs</b> {esc(rmid.get('used', NA))}/"
            f"{esc(rmid.get('total', NA))}</span>"
            + (f"<span><b>unmonitored</b> {_chips(unmon)}</span>" if unmon else "")
            + "</div>"
        )
        sockets = by_host.get(name, {})
        for sock in h.get("sockets") or []:
            out.append(_socket(name, sock, sockets.get(sock.get("socket")), bucket_s, with_series))
    out.append("</section>")
    return "\n".join(out)


def _heat(report: Mapping[str, Any]) -> str:
    out = ['<section id="heat"><h2>Occupancy share heat map (p95, % of the socket\'s L3)</h2>']
    for n, h in enumerate(report.get("hosts") or []):
        sockets = [s for s in h.get("sockets") or [] if isinstance(s, Mapping)]
        share: dict[str, dict[int, float | None]] = {}
        for i, s in enumerate(sockets):
            for v in s.get("vms") or []:
                share.setdefault(str(v.get("name")), {})[i] = _num(_get(v, "occupancy_share", "p95"))
        rows = sorted(share, key=lambda vm: (-max((x or 0.0) for x in share[vm].values()), vm))
        out.append(f"<h3>{esc(h.get('host', NA))}</h3>")
        if not rows:
            out.append('<p class="muted">No VMs.</p>')
            continue
        head = "".join(f"<th class=n>socket {esc(s.get('socket', NA))}</th>" for s in sockets)
        body = []
        for vm in rows:
            cells = []
            for i in range(len(sockets)):
                f = share[vm].get(i)
                text = pct(f) if i in share[vm] else ""
                cells.append(
                    f'<td class="cell" style="background:{shade(f) if i in share[vm] else "#fff"};'
                    f'color:{ink_for(f)}">{text}</td>'
                )
            body.append(f"<tr><th scope=row class=name>{esc(vm)}</th>{''.join(cells)}</tr>")
        out.append(f'<table class="heat"><tr><th>VM</th>{head}</tr>{"".join(body)}</table>')
        out.append(colour_scale(f"Colour scale: p95 occupancy share, {h.get('host', '')}", f"heat-scale-{n}"))
    out.append("</section>")
    return "\n".join(out)


def _quality(report: Mapping[str, Any]) -> str:
    out = ['<section id="quality"><h2>Data quality</h2>']
    for h in report.get("hosts") or []:
        q = h.get("quality") or {}
        facts = [
            ("expected", esc(q.get("expected", NA))),
            ("seen", esc(q.get("seen", NA))),
            ("coverage", pct(q.get("coverage"))),
            ("rows dropped", esc(q.get("rows_dropped", NA))),
            ("error cells", esc(q.get("error_cells", NA))),
            ("overflows", esc(q.get("overflows", NA))),
            ("occupancy over L3", esc(q.get("occupancy_over_l3", NA))),
            ("confidence", _badge(q.get("confidence"))),
        ]
        out.append(
            f"<h3>{esc(h.get('host', NA))}</h3><table><tr>"
            + "".join(f"<th class=n>{k}</th>" for k, _ in facts)
            + "</tr><tr>"
            + "".join(f"<td class=n>{v}</td>" for _, v in facts)
            + "</tr></table>"
        )
        settling = [s for s in q.get("settling") or [] if isinstance(s, Mapping)]
        if settling:
            out.append("<h4>Settling periods</h4>" + _dict_table(settling))
        notes = q.get("notes") or []
        if notes:
            out.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    out.append("</section>")
    return "\n".join(out)


def render_html(report: Mapping[str, Any]) -> str:
    """The report dict (docs/report.md) as one self-contained HTML document.

    No I/O and no network at view time: inline CSS, inline SVG, no JavaScript. Every
    string from `report` is escaped, so hostile VM or host names render as visible text.
    """
    title = f"rdtadvisor report {when(report.get('generated'))}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(
            [
                _header(report),
                _findings(report.get("findings")),
                _hosts(report),
                _heat(report),
                _quality(report),
            ]
        )
        + "\n</body></html>\n"
    )
