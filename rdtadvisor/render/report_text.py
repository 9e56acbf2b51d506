"""The report dict (``docs/report.md``) as terminal text, Markdown or CSV.

Text and Markdown show the same things in the same order: status and window, findings
ranked by severity, then host -> socket -> VM tables, then data quality. CSV is one row per
(host, socket, VM) with flat columns in base units (bytes, bytes/s, shares 0..1), for
spreadsheets and scripts.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from rdtadvisor.core.text import printable
from rdtadvisor.core.units import format_bytes
from rdtadvisor.render import markdown

MIB = 1024**2
GIB = 1024**3


def render_text(report: dict[str, Any]) -> str:
    """A plain-text report for a terminal or a mail body."""
    return _render(report, markdown=False)


def render_markdown(report: dict[str, Any]) -> str:
    """A Markdown report (GitHub-flavoured tables); every untrusted string is escaped."""
    return _render(report, markdown=True)


CSV_COLUMNS = [
    "host",
    "socket",
    "vm",
    "domid",
    "class",
    "class_confidence",
    "cbm",
    "l3_bytes",
    "occupancy_bytes_p50",
    "occupancy_bytes_p95",
    "occupancy_bytes_max",
    "occupancy_share_p95",
    "bandwidth_bytes_s_p50",
    "bandwidth_bytes_s_p95",
    "bandwidth_bytes_s_max",
    "local_bandwidth_bytes_s_p95",
    "remote_bandwidth_bytes_s_p95",
    "occupancy_bytes_per_day",
    "bandwidth_bytes_s_per_day",
    "days_to_limit",
    "samples",
    "expected",
    "coverage",
    "confidence",
]


def render_csv(report: dict[str, Any]) -> str:
    """One row per (host, socket, VM), columns `CSV_COLUMNS` (empty cell = unknown)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for h in report["hosts"]:
        for s in h["sockets"]:
            for v in s["vms"]:
                w.writerow(
                    [
                        _csv(x)
                        for x in (
                            h["host"],
                            s["socket"],
                            _safe_csv(v["name"]),
                            v["domid"],
                            v["class"],
                            v["class_confidence"],
                            v["cbm"],
                            s["l3_bytes"],
                            v["occupancy_bytes"]["p50"],
                            v["occupancy_bytes"]["p95"],
                            v["occupancy_bytes"]["max"],
                            v["occupancy_share"]["p95"],
                            v["bandwidth_bytes_s"]["p50"],
                            v["bandwidth_bytes_s"]["p95"],
                            v["bandwidth_bytes_s"]["max"],
                            v["local_bandwidth_bytes_s"]["p95"],
                            v["remote_bandwidth_bytes_s"]["p95"],
                            v["trend"]["occupancy_bytes_per_day"],
                            v["trend"]["bandwidth_bytes_s_per_day"],
                            v["trend"]["days_to_limit"],
                            v["quality"]["samples"],
                            v["quality"]["expected"],
                            v["quality"]["coverage"],
                            v["quality"]["confidence"],
                        )
                    ]
                )
    return out.getvalue()


# --- text and Markdown ------------------------------------------------------------------------


def _render(report: dict[str, Any], *, markdown: bool) -> str:
    md = markdown
    lines: list[str] = []
    w = report["window"]
    counts = report["summary"]["findings"]
    lines += _heading("rdtadvisor report", 1, md)
    item = "- " if md else ""      # Markdown: one list item per line (a paragraph would join them)
    lines.append(
        f"{item}Status: {report['status'].upper()}  ({counts['critical']} critical, {counts['warning']} "
        f"warning, {counts['info']} info)"
    )
    hours = f", hours {w['hours']} {w['tz']}" if w.get("hours") else ""
    lines.append(
        f"{item}Window: {w['since']} to {w['until']}{hours}; {w['collections']} collections every "
        f"{_duration(w['step_s'])}; {report['summary']['hosts']} hosts, {report['summary']['sockets']} "
        f"sockets, {report['summary']['vms']} VMs"
    )
    lines.append(f"{item}Generated: {report['generated']}")
    if "diff" in report:
        d = report["diff"]
        lines += _heading(f"Changes since {d['previous']}", 2, md)
        for label, key in (("new", "new"), ("resolved", "resolved")):
            for k in d[key]:
                lines.append(f"- {label}: {_esc(k, md)}")
        for c in d["changed"]:
            lines.append(f"- changed: {_esc(c['key'], md)}: {c['from']} -> {c['to']}")
        for label, key in (("VM added", "vms_added"), ("VM removed", "vms_removed")):
            for k in d[key]:
                lines.append(f"- {label}: {_esc(k, md)}")
        if not any(d[k] for k in ("new", "resolved", "changed", "vms_added", "vms_removed")):
            lines.append("- nothing changed")

    lines += _heading("Findings", 2, md)
    if not report["findings"]:
        lines.append("No findings.")
    for f in report["findings"]:
        where = f["host"] + (f" socket {f['socket']}" if f["socket"] is not None else "")
        lines.append(
            f"- [{f['severity'].upper()}] {f['kind']} on {_esc(where, md)}: {_esc(f['summary'], md)}"
        )
        for win in f["evidence"].get("windows", [])[:3]:
            occ = win.get("victim_occupancy_bytes")
            lines.append(
                f"    - {win['start']} to {win['end']}: victim holds "
                f"{format_bytes(occ) if occ is not None else '?'}"
                + (
                    f" ({win['victim_occupancy_drop']:.0%} less)"
                    if win.get("victim_occupancy_drop") is not None
                    else ""
                )
            )

    for h in report["hosts"]:
        lines += _heading(f"Host {h['host']} (Xen {h['xen_version'] or '?'})", 2, md, esc=True)
        rmid = h["rmid"]
        lines.append(
            f"{h['collections']} collections, {h['first']} to {h['last']}; RMIDs {rmid['used']} of "
            f"{rmid['total'] if rmid['total'] is not None else '?'} in use"
            + (f"; unmonitored: {_esc(', '.join(h['unmonitored']), md)}" if h["unmonitored"] else "")
        )
        for s in h["sockets"]:
            lines += _socket(s, md)
        q = h["quality"]
        lines += _heading("Data quality", 3, md)
        lines.append(
            f"Coverage {q['seen']}/{q['expected']} ({q['coverage']:.0%}), confidence {q['confidence']}; "
            f"rows dropped {q['rows_dropped']}, failed cells {q['error_cells']}, overflows "
            f"{q['overflows']}, occupancy over L3 {q['occupancy_over_l3']}, settling windows "
            f"{len(q['settling'])}"
        )
        for n in q["notes"]:
            lines.append(f"- {_esc(n, md)}")
    return "\n".join(lines) + "\n"


def _socket(s: dict[str, Any], md: bool) -> list[str]:
    cap = s["bandwidth_capacity_bytes_s"]
    util = s["bandwidth_utilisation"]["p95"]
    out = _heading(f"Socket {s['socket']}", 3, md)
    item = "- " if md else ""      # Markdown: one list item per line (a paragraph would join them)
    out.append(
        f"{item}L3 {_mib(s['l3_bytes'])} MiB, occupied {_pct(s['occupancy_share']['p50'])} p50 / "
        f"{_pct(s['occupancy_share']['p95'])} p95; bandwidth {_gib(s['bandwidth_bytes_s']['p50'])} p50 / "
        f"{_gib(s['bandwidth_bytes_s']['p95'])} p95 GiB/s of {_gib(cap)} GiB/s "
        f"({s['bandwidth_capacity_source']})"
        + (f" = {_pct(util)} p95" if util is not None else "")
        + f"; COS {s['cos']['used'] if s['cos']['used'] is not None else '?'}/"
        f"{s['cos']['available'] if s['cos']['available'] is not None else '?'}"
        + (" (CDP)" if s["cos"]["cdp"] else "")
    )
    if s["trend"]["days_to_limit"] is not None:
        out.append(
            f"{item}Trend: +{_gib(s['trend']['bandwidth_bytes_s_per_day'])} GiB/s per day, limit in "
            f"{s['trend']['days_to_limit']:.0f} days"
        )
    for m in s["masks"]:
        out.append(f"{item}Mask {m['cbm']} ({m['ways']} ways): {_esc(', '.join(m['domains']), md)}")
    header = [
        "VM",
        "class",
        "occ p50",
        "occ p95",
        "L3% p95",
        "bw p50",
        "bw p95",
        "local p95",
        "remote p95",
        "trend/day",
        "conf",
    ]
    rows = []
    for v in s["vms"]:
        rows.append(
            [
                _esc(v["name"], md),
                v["class"],
                _mib(v["occupancy_bytes"]["p50"]),
                _mib(v["occupancy_bytes"]["p95"]),
                _pct(v["occupancy_share"]["p95"]),
                _gib(v["bandwidth_bytes_s"]["p50"]),
                _gib(v["bandwidth_bytes_s"]["p95"]),
                _gib(v["local_bandwidth_bytes_s"]["p95"]),
                _gib(v["remote_bandwidth_bytes_s"]["p95"]),
                _signed_gib(v["trend"]["bandwidth_bytes_s_per_day"]),
                v["quality"]["confidence"],
            ]
        )
    out.append(f"{item}(occupancy in MiB, bandwidth in GiB/s)")
    out += _table(header, rows, md)
    return out


def _table(header: Sequence[str], rows: list[list[str]], md: bool) -> list[str]:
    if md:
        return ["", *markdown.table(header, rows), ""]
    widths = (
        [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
        if rows
        else [len(h) for h in header]
    )
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 or i == 1 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return [fmt.format(*header), *(fmt.format(*r) for r in rows), ""]


def _heading(text: str, level: int, md: bool, esc: bool = False) -> list[str]:
    text = _esc(text, md) if esc else text
    if md:
        return ["", "#" * level + " " + text, ""]
    return ["", text, ("=" if level == 1 else "-" if level == 2 else "~") * len(text)]


def _esc(text: str, md: bool) -> str:
    """Markdown: escape what would turn a VM name into markup, links, HTML or a broken table;
    text: drop control characters (a name must not move the terminal's cursor)."""
    if md:
        return markdown.escape(text)
    return printable(text)


def _mib(x: float | None) -> str:
    return "-" if x is None else f"{x / MIB:.1f}"


def _gib(x: float | None) -> str:
    return "-" if x is None else f"{x / GIB:.2f}"


def _signed_gib(x: float | None) -> str:
    return "-" if x is None else f"{x / GIB:+.2f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def _csv(x: Any) -> Any:
    return "" if x is None else x


def _safe_csv(name: str) -> str:
    """A VM name starting with = + - @ would be a formula in a spreadsheet (CSV injection)."""
    return "'" + name if name[:1] in ("=", "+", "-", "@", "\t", "\r") else name
