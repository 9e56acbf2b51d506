"""The HTML report (rdtadvisor.render.report_html): one safe, self-contained, readable page.

The report dict is built by hand here, following docs/report.md: two hosts with two sockets
each, twelve VMs on one socket (so the "others" aggregation is used), hostile VM names,
findings of every severity with evidence windows, series with gaps, and one socket that has
no series. Pure tests check the markup; `test_report_renders_cleanly_in_a_real_browser`
opens it in headless Chromium and checks what a person would see (skipped when Chromium or
Playwright is missing, except under CI, where it fails).
"""

from __future__ import annotations

import copy
import math
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rdtadvisor.core.units import GIB, MIB
from rdtadvisor.render import svg
from rdtadvisor.render.report_html import gibs, mib, pct, render_html

SCRIPT_NAME = "<script>alert(1)</script>"
IMG_NAME = '"><img src=x onerror=alert(1)>'
SVG_NS = "http://www.w3.org/2000/svg"
CHROMIUM = "/usr/bin/chromium"
L3 = 28835840  # 27.5 MiB
START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
BUCKET_S = 900
BUCKETS = 96  # 24 h of 15-minute buckets


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _stats(p50: float, p95: float, mx: float) -> dict[str, float]:
    return {"p50": p50, "p95": p95, "max": mx}


def _vm(name: str, domid: int, occ_mib: float, bw_gibs: float, cls: str = "cache-sensitive") -> dict:
    occ = occ_mib * MIB
    bw = bw_gibs * GIB
    return {
        "name": name, "domid": domid, "class": cls,
        "evidence": f"occupancy {occ_mib * 0.6:.1f}-{occ_mib * 1.2:.1f} MiB",
        "cbm": "0x7ff" if domid % 2 else None,
        "occupancy_bytes": {"mean": occ * 0.8, "p50": occ * 0.7, "p95": occ, "max": occ * 1.2},
        "occupancy_share": {"p50": occ * 0.7 / L3, "p95": occ / L3, "max": occ * 1.2 / L3},
        "bandwidth_bytes_s": _stats(bw * 0.5, bw, bw * 1.3),
        "local_bandwidth_bytes_s": _stats(bw * 0.4, bw * 0.8, bw),
        "remote_bandwidth_bytes_s": _stats(bw * 0.1, bw * 0.2, bw * 0.3),
        "trend": {"occupancy_bytes_per_day": 0.2 * MIB, "bandwidth_bytes_s_per_day": -0.01 * GIB,
                  "days_to_limit": 41.5 if domid == 3 else None,
                  "limit": "socket bandwidth capacity" if domid == 3 else None},
        "quality": {"samples": 570, "expected": 576, "coverage": 0.99, "confidence": "high"},
    }


def _wave(level: float, i: int, phase: float) -> float:
    return level * (0.75 + 0.25 * math.sin(i / 9 + phase))


def _series(vms: list[dict], gaps: set[int]) -> dict:
    """Bucketed series for the socket's VMs; buckets in `gaps` are null for every VM (host down)."""
    occ, bw = {}, {}
    for k, v in enumerate(vms):
        level_occ, level_bw = v["occupancy_bytes"]["p95"], v["bandwidth_bytes_s"]["p95"]
        occ[v["name"]] = [None if i in gaps else _wave(level_occ, i, k) for i in range(BUCKETS)]
        bw[v["name"]] = [None if i in gaps else _wave(level_bw, i, k * 2) for i in range(BUCKETS)]
    # One VM started late: its first buckets are unknown, not zero.
    first = vms[-1]["name"]
    occ[first][:10] = [None] * 10
    bw[first][:10] = [None] * 10
    return {"times": [_iso(START + timedelta(seconds=BUCKET_S * i)) for i in range(BUCKETS)],
            "occupancy_bytes": occ, "bandwidth_bytes_s": bw}


def _socket(sid: int, vms: list[dict]) -> dict:
    occ = sum(v["occupancy_bytes"]["p95"] for v in vms)
    bw = sum(v["bandwidth_bytes_s"]["p95"] for v in vms)
    return {
        "socket": sid, "l3_bytes": L3,
        "occupancy_bytes": _stats(occ * 0.7, occ, occ * 1.1),
        "occupancy_share": _stats(occ * 0.7 / L3, occ / L3, occ * 1.1 / L3),
        "bandwidth_bytes_s": _stats(bw * 0.5, bw, bw * 1.2),
        "bandwidth_capacity_bytes_s": 1.1e11, "bandwidth_capacity_source": "config",
        "bandwidth_utilisation": _stats(bw * 0.5 / 1.1e11, bw / 1.1e11, bw * 1.2 / 1.1e11),
        "cos": {"used": 2, "available": 15, "cdp": False},
        "masks": [{"cbm": "0x7ff", "ways": 11, "domains": [v["name"] for v in vms[:2]]}],
        "vms": vms,
    }


def _host(name: str, sockets: list[dict]) -> dict:
    names = sorted({v["name"] for s in sockets for v in s["vms"]})
    return {
        "host": name, "xen_version": "4.19.1", "collections": 576,
        "first": _iso(START), "last": _iso(START + timedelta(days=1)),
        "rmid": {"used": 17, "total": 223}, "unmonitored": ["build-agent"],
        "sockets": sockets,
        "vms": [{"name": n, "domid": i, "sockets": [0], "occupancy_bytes": _stats(0, 0, 0),
                 "bandwidth_bytes_s": _stats(0, 0, 0), "memory_bytes": 8 * GIB, "vcpus": 4}
                for i, n in enumerate(names)],
        "quality": {"expected": 576, "seen": 570, "coverage": 0.99, "rows_dropped": 3, "error_cells": 0,
                    "overflows": 2, "occupancy_over_l3": 1,
                    "settling": [{"socket": 0, "since": _iso(START),
                                  "until": _iso(START + timedelta(hours=1)), "reason": "mask change"}],
                    "confidence": "medium", "notes": ["3 rows dropped: truncated psr-cmt-show output"]},
    }


def _finding(severity: str, kind: str, host: str, socket: int | None, vms: list[str], score: float) -> dict:
    return {
        "severity": severity, "kind": kind, "host": host, "socket": socket, "vms": vms, "score": score,
        "summary": f"{kind} on {host}" + (f" socket {socket}" if socket is not None else "") + f": {vms[0]}",
        "evidence": {
            "victim_occupancy_bytes": 9.1 * MIB, "aggressor_bandwidth_bytes_s": 3.5 * GIB,
            "occupancy_share": 0.98, "rho": -0.81, "drop_pct": 38,
            "windows": [{"start": _iso(START + timedelta(hours=h)),
                         "end": _iso(START + timedelta(hours=h + 1)),
                         "occupancy_bytes": 20 * MIB, "bandwidth_bytes_s": 4 * GIB} for h in (3, 15)],
        },
    }


def make_report() -> dict[str, Any]:
    """A report as `build_report` would produce it (docs/report.md), series included."""
    busy = [_vm(SCRIPT_NAME, 1, 6.0, 2.5), _vm(IMG_NAME, 2, 1.5, 0.4, "streaming")]
    busy += [_vm(f"web-{k:02d}", 10 + k, 0.5 + k * 0.4, 0.1 + k * 0.15, "neutral") for k in range(10)]
    sky = _host("xen-sky01", [_socket(0, busy), _socket(1, [_vm("db-orders", 3, 14.0, 1.2),
                                                           _vm("etl-burst", 5, 9.0, 6.8, "streaming"),
                                                           _vm("cache-01", 7, 3.0, 0.3)])])
    ice = _host("xen-ice02", [_socket(0, [_vm("db-users", 21, 12.0, 2.0), _vm("batch-7", 22, 6.0, 4.0)]),
                              _socket(1, [_vm("web-front", 23, 2.0, 0.6)])])
    hosts = [sky, ice]
    findings = [
        _finding("critical", "noisy-neighbour", "xen-sky01", 1, ["etl-burst", "db-orders"], 0.82),
        _finding("warning", "l3-pressure", "xen-sky01", 0, [SCRIPT_NAME, IMG_NAME], 0.55),
        _finding("warning", "bandwidth-saturation", "xen-ice02", 0, ["batch-7"], 0.41),
        _finding("info", "unmonitored", "xen-sky01", None, ["build-agent"], 0.1),
    ]
    return {
        "schema": "rdtadvisor.report/1", "generated": "2026-11-26T12:00:00Z",
        "window": {"since": _iso(START), "until": _iso(START + timedelta(days=1)), "hours": "09-17",
                   "tz": "UTC", "collections": 576, "step_s": 300},
        "status": "critical",
        "summary": {"hosts": 2, "sockets": 4, "vms": 18,
                    "findings": {"critical": 1, "warning": 2, "info": 1}},
        "hosts": hosts,
        "findings": findings,
        "series": {"bucket_s": BUCKET_S, "hosts": [
            {"host": "xen-sky01", "sockets": [{"socket": s["socket"], **_series(s["vms"], set(range(40, 46)))}
                                              for s in sky["sockets"]]},
            # xen-ice02 has series for socket 0 only.
            {"host": "xen-ice02", "sockets": [{"socket": 0, **_series(ice["sockets"][0]["vms"], set())}]},
        ]},
    }


CHARTS_WITH_SERIES = 6  # 2 charts x (2 sockets of xen-sky01 + socket 0 of xen-ice02)
SCALES = 2  # one heat-map colour scale per host


@pytest.fixture
def report() -> dict[str, Any]:
    return make_report()


@pytest.fixture
def page(report: dict[str, Any]) -> str:
    return render_html(report)


def _charts(html: str) -> list[str]:
    return re.findall(r'<svg class="chart".*?</svg>', html, flags=re.S)


# -- pure tests ----------------------------------------------------------------------------

def test_output_is_exactly_one_html_document(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    for tag in ("<html", "<head>", "<body>", "</body>", "</html>"):
        assert page.count(tag) == 1, tag
    assert page.rstrip().endswith("</html>")


def test_page_loads_nothing_from_the_network(page: str) -> None:
    urls = re.findall(r"https?://[^\s\"'<>)]+", page)
    assert set(urls) <= {SVG_NS}
    assert not re.search(r"<(script|link|iframe|object|embed|img)\b", page, flags=re.I)
    assert "@import" not in page and "url(http" not in page


def test_content_security_policy_forbids_scripts_and_remote_loads(page: str) -> None:
    assert ('<meta http-equiv="Content-Security-Policy" content="default-src &#x27;none&#x27;; '
            "style-src &#x27;unsafe-inline&#x27;; img-src data:\">") in page


def test_hostile_vm_names_appear_escaped_and_never_raw(page: str) -> None:
    assert SCRIPT_NAME not in page and IMG_NAME not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "onerror=alert(1)>" not in page


def test_hostile_host_names_and_free_text_are_escaped_too(report: dict[str, Any]) -> None:
    evil = '<b onmouseover="x()">'
    report["hosts"][0]["host"] = evil
    report["findings"][0]["summary"] = evil
    report["findings"][0]["evidence"]["reason"] = evil
    report["hosts"][0]["quality"]["notes"] = [evil]
    html = render_html(report)
    assert evil not in html
    assert html.count("&lt;b onmouseover=&quot;x()&quot;&gt;") >= 4


def test_header_shows_window_status_and_counts(page: str) -> None:
    head = page.split('<section id="findings">')[0]
    assert "2026-11-25 12:00 UTC" in head and "2026-11-26 12:00 UTC" in head
    assert "hours 09-17 UTC" in head
    assert '<span class="badge critical">critical</span>' in head
    assert "<b>18</b> VMs" in head


def test_findings_keep_the_given_order_and_render_evidence_windows(page: str) -> None:
    section = page.split('<section id="findings">')[1].split("</section>")[0]
    kinds = re.findall(r"<b>([a-z0-9-]+)</b> <span class=\"muted\">", section)
    assert kinds == ["noisy-neighbour", "l3-pressure", "bandwidth-saturation", "unmonitored"]
    # Figures are formatted by the unit in their key; windows become a table with start/end first.
    assert "9.1 MiB" in section and "3.50 GiB/s" in section and "98%" in section and "38%" in section
    assert section.count("<th>start</th><th>end</th>") == 4
    assert "2026-11-25 15:00 UTC" in section


def test_every_time_chart_has_units_and_a_utc_time_axis(page: str) -> None:
    charts = _charts(page)
    assert len(charts) == CHARTS_WITH_SERIES
    for chart in charts:
        assert "time (UTC)" in chart
        assert ("occupancy (MiB)" in chart) != ("bandwidth (GiB/s)" in chart)
        assert re.search(r"<svg[^>]*>\s*<title>[^<]+</title>", chart), "charts need an accessible title"


def test_occupancy_chart_draws_the_l3_size_as_a_reference_line(page: str) -> None:
    occupancy = [c for c in _charts(page) if "occupancy (MiB)" in c]
    assert occupancy and all("L3 27.5 MiB" in c and "stroke-dasharray" in c for c in occupancy)


def test_more_than_eight_vms_chart_the_top_eight_and_others(page: str) -> None:
    busy = _charts(page)[0]  # xen-sky01 socket 0, twelve VMs
    names = set(re.findall(r"<polygon [^>]*><title>([^<]+)</title>", busy))
    assert len(names) == 9 and "others (4 VMs)" in names
    # The four smallest by p95 are the ones summed; the biggest is charted by name.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in names
    assert "web-00" not in names
    assert "others (4 VMs)" in page and "others (4 VMs) summed" in page


def test_eight_or_fewer_vms_have_no_others_series(page: str) -> None:
    assert all("others (" not in c for c in _charts(page)[2:])


def test_null_buckets_are_gaps_not_zeros() -> None:
    times = [START + timedelta(seconds=BUCKET_S * i) for i in range(6)]
    chart = svg.time_chart(times, BUCKET_S, [svg.Series("a", [1.0, 2.0, None, None, 3.0, 4.0], "#000")],
                           title="t", y_title="bandwidth (GiB/s)", stacked=False)
    assert chart.count("<polyline") == 2  # two runs of known values, nothing drawn through the gap
    assert "<title>no data</title>" in chart  # the gap is shaded as unknown


def test_a_socket_without_series_says_so_instead_of_drawing(page: str) -> None:
    ice = page.split("<h2>xen-ice02</h2>")[1].split('<section id="heat">')[0]
    assert ice.count('<svg class="chart"') == 2
    assert "No time series for this socket" in ice


def test_without_series_a_note_replaces_the_time_charts(report: dict[str, Any]) -> None:
    del report["series"]
    html = render_html(report)
    assert "built without series" in html
    assert not _charts(html)
    assert "L3 occupancy per VM" not in html


def test_vm_table_formats_mib_gibs_and_percent(page: str) -> None:
    # db-orders: p95 occupancy 14.0 MiB = 51% of 27.5 MiB, p95 bandwidth 1.20 GiB/s.
    row = re.search(r"<tr><td class=name>db-orders.*?</tr>", page, flags=re.S)
    assert row
    assert "14.0<span class=sub>51%</span>" in row.group(0)
    assert ">1.20<" in row.group(0) and ">0.96<" in row.group(0) and ">0.24<" in row.group(0)
    assert "42 days</b> to socket bandwidth capacity" in row.group(0)


def test_unknown_figures_show_as_a_dash_never_zero(report: dict[str, Any]) -> None:
    vm = report["hosts"][1]["sockets"][1]["vms"][0]
    vm["occupancy_bytes"]["p50"] = None
    vm["bandwidth_bytes_s"]["p95"] = None
    row = re.search(r"<tr><td class=name>web-front.*?</tr>", render_html(report), flags=re.S)
    assert row
    assert "<td class=n>—<span class=sub>" in row.group(0)
    assert "<td class=n>—</td>" in row.group(0)


def test_partial_or_odd_input_renders_without_inventing_data(report: dict[str, Any]) -> None:
    assert "<h2>Findings</h2>" in render_html({})  # a minimal dict still renders every section
    sky = report["series"]["hosts"][0]["sockets"]
    for name in sky[1]["occupancy_bytes"]:
        sky[1]["occupancy_bytes"][name] = [None] * BUCKETS  # no occupancy known at all
    report["series"]["hosts"][1]["sockets"][0]["times"][3] = "garbage"
    html = render_html(report)
    all_null = _charts(html)[2]
    assert "<title>no data</title>" in all_null and "<polygon" not in all_null
    assert "No usable time series for this socket." in html


def test_number_formats() -> None:
    assert mib(12.34 * MIB) == "12.3"
    assert gibs(1.5 * GIB) == "1.50"
    assert pct(0.987) == "99%"
    assert (mib(None), gibs(None), pct(None)) == ("—", "—", "—")


def test_heat_map_prints_p95_share_per_vm_and_socket_with_a_legend(page: str) -> None:
    heat = page.split('<section id="heat">')[1].split("</section>")[0]
    assert heat.count('<table class="heat">') == 2 and heat.count('<svg class="scale"') == SCALES
    # db-orders holds 14 MiB of 27.5 MiB at p95 on socket 1 of xen-sky01; nothing on socket 0.
    row = re.search(r"<tr><th scope=row class=name>db-orders</th>(.*?)</tr>", heat)
    assert row and re.findall(r">(\d+%|)</td>", row.group(1)) == ["", "51%"]


def test_data_quality_lists_every_host_with_settling_and_notes(page: str) -> None:
    quality = page.split('<section id="quality">')[1]
    assert quality.count("<h3>") == 2 and quality.count("mask change") == 2
    assert "truncated psr-cmt-show output" in quality
    for label in ("expected", "seen", "coverage", "rows dropped", "overflows", "occupancy over L3"):
        assert f"<th class=n>{label}</th>" in quality


def test_sections_come_in_the_documented_order(page: str) -> None:
    marks = ['id="findings"', 'id="hosts"', 'id="heat"', 'id="quality"']
    positions = [page.index(m) for m in marks]
    assert positions == sorted(positions)


def test_renderer_does_not_modify_the_report(report: dict[str, Any]) -> None:
    before = copy.deepcopy(report)
    render_html(report)
    assert report == before


@pytest.mark.parametrize("top", [0.0, 0.3, 1.0, 7.3, 27.5, 28.9, 99.0, 1234.5])
def test_axis_ticks_are_few_round_and_cover_the_data(top: float) -> None:
    ticks = svg.nice_ticks(top)
    assert 2 <= len(ticks) <= 6 and ticks[0] == 0 and ticks[-1] >= top
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 6) in (1.0, 2.0, 2.5, 5.0)


@pytest.mark.parametrize("hours", [1, 5, 24, 24 * 7, 24 * 30])
def test_time_ticks_are_at_most_six_round_utc_times(hours: int) -> None:
    start = datetime(2026, 11, 25, 12, 7, tzinfo=UTC)
    ticks, _fmt = svg.time_ticks(start, start + timedelta(hours=hours))
    assert 2 <= len(ticks) <= 6
    assert all(t.second == 0 and t.minute % 5 == 0 for t in ticks)


# -- real browser ----------------------------------------------------------------------------

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Per svg: text boxes that intersect (1 px tolerance), and texts outside the svg's own box.
_LAYOUT_JS = """
() => [...document.querySelectorAll('svg')].map((svg, i) => {
  const box = svg.getBoundingClientRect();
  const texts = [...svg.querySelectorAll('text')].map(t => {
    const r = t.getBoundingClientRect();
    return {text: t.textContent, l: r.left, r: r.right, t: r.top, b: r.bottom};
  });
  const overlaps = [];
  for (let a = 0; a < texts.length; a++)
    for (let b = a + 1; b < texts.length; b++) {
      const p = texts[a], q = texts[b];
      if (Math.min(p.r, q.r) - Math.max(p.l, q.l) > 1 && Math.min(p.b, q.b) - Math.max(p.t, q.t) > 1)
        overlaps.push([p.text, q.text]);
    }
  const outside = texts.filter(p => p.l < box.left - 1 || p.r > box.right + 1 ||
                                    p.t < box.top - 1 || p.b > box.bottom + 1).map(p => p.text);
  return {index: i, cls: svg.getAttribute('class'), width: box.width, height: box.height,
          texts: texts.length, overlaps, outside};
})
"""


def _browser_or_skip() -> Any:
    """Playwright's sync API, or skip with the reason -- but under CI (``CI`` set), fail."""
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install playwright; uses Debian's chromium)"
    if reason is None and not os.access(CHROMIUM, os.X_OK):
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test is required under CI: {reason}")
        pytest.skip(reason)
    return sync_playwright


def test_report_renders_cleanly_in_a_real_browser(page: str, tmp_path: Path) -> None:
    sync_playwright = _browser_or_skip()
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    shot = tmp_path / "report.png"
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1100, "height": 900})
            tab.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                   if m.type in ("error", "warning") else None)
            tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            tab.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
            tab.on("request", lambda r: problems.append(f"request: {r.url}")
                   if not r.url.startswith("file://") else None)
            tab.goto(path.as_uri(), wait_until="load")
            text = tab.inner_text("body")
            layout = tab.evaluate(_LAYOUT_JS)
            elements = tab.evaluate("document.querySelectorAll('script, img, iframe').length")
            tab.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    assert problems == []
    assert SCRIPT_NAME in text and IMG_NAME in text  # the hostile names are shown as text
    assert elements == 0
    charts = [s for s in layout if s["cls"] == "chart"]
    assert len(charts) == CHARTS_WITH_SERIES
    assert len([s for s in layout if s["cls"] == "scale"]) == SCALES
    for s in layout:
        assert s["width"] > 100 and s["height"] > 30, s
        assert s["overlaps"] == [], f"svg {s['index']} ({s['cls']}): overlapping labels {s['overlaps']}"
        assert s["outside"] == [], f"svg {s['index']} ({s['cls']}): labels clipped {s['outside']}"
    assert all(s["texts"] >= 8 for s in charts)  # tick labels on both axes and axis titles
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if os.environ.get("RDTADVISOR_KEEP_SCREENSHOT"):  # for looking at the page by eye
        Path(os.environ["RDTADVISOR_KEEP_SCREENSHOT"]).write_bytes(shot.read_bytes())
