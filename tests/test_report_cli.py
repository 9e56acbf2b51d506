"""`rdtadvisor report` and `rdtadvisor headroom` end to end on the simulated demo fleet."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.clirun import run

CONFIG = str(Path(__file__).resolve().parent.parent / "samples" / "demo-config.toml")
SINCE = "2026-11-19"


@pytest.fixture(scope="module")
def report(demo_store: str) -> dict:
    r = run("--config", CONFIG, "--store", demo_store, "report", "--since", SINCE, "--format", "json")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def report_of(store: str, *args: str):
    """`rdtadvisor --config samples/demo-config.toml --store STORE report --since SINCE ARGS...`."""
    return run("--config", CONFIG, "--store", store, "report", "--since", SINCE, *args)


def _findings(report: dict, kind: str) -> list[dict]:
    return [f for f in report["findings"] if f["kind"] == kind]


def test_the_json_report_follows_its_contract(report):
    assert report["schema"] == "rdtadvisor.report/1"
    assert {h["host"] for h in report["hosts"]} == {
        "xen-sky01",
        "xen-bdw-cdp",
        "xen-clx-bw",
        "xen-icx-spare",
        "xen-spr-tune",
        "xen-hsw-legacy",
    }
    sky = next(h for h in report["hosts"] if h["host"] == "xen-sky01")
    sock = sky["sockets"][0]
    assert sock["l3_bytes"] == int(27.5 * 1024**2)
    vm = sock["vms"][0]
    for key in (
        "occupancy_bytes",
        "bandwidth_bytes_s",
        "local_bandwidth_bytes_s",
        "remote_bandwidth_bytes_s",
    ):
        assert set(vm[key]) >= {"p50", "p95", "max"}
        assert vm[key]["p50"] <= vm[key]["p95"] <= vm[key]["max"]
    assert vm["quality"]["confidence"] in ("high", "medium", "low")
    severities = [f["severity"] for f in report["findings"]]
    assert severities == sorted(severities, key=["critical", "warning", "info"].index)


def test_the_noisy_neighbour_of_the_demo_fleet_is_found_with_its_burst_windows(report):
    pairs = {(f["host"], tuple(f["vms"])): f for f in _findings(report, "noisy-neighbour")}
    f = pairs[("xen-sky01", ("etl-burst", "db-orders"))]
    starts = {w["start"] for w in f["evidence"]["windows"]}
    assert starts & {"2026-11-20T02:00:00Z", "2026-11-20T08:00:00Z"}
    assert (
        f["evidence"]["victim_occupancy_bytes"]["active"] < f["evidence"]["victim_occupancy_bytes"]["quiet"]
    )
    # No other host has a noisy neighbour in the scenario.
    assert {h for h, _ in pairs} == {"xen-sky01"}


def test_classes_name_the_streamer_and_its_cache_sensitive_victim(report):
    sky = next(h for h in report["hosts"] if h["host"] == "xen-sky01")
    vms = {v["name"]: v for v in sky["sockets"][0]["vms"]}
    assert vms["etl-burst"]["class"] == "streaming"
    assert vms["db-orders"]["class"] == "cache-sensitive"
    assert vms["etl-burst"]["evidence"]


def test_the_host_near_its_bandwidth_limit_is_flagged_against_the_configured_capacity(report):
    sat = _findings(report, "bandwidth-saturation")
    assert [(f["host"], f["socket"]) for f in sat] == [("xen-clx-bw", 0)]
    assert sat[0]["evidence"]["capacity_bytes_s"] == 105_588_000_000


def test_the_unattached_domain_is_reported_unmonitored(report):
    (f,) = _findings(report, "unmonitored")
    assert f["host"] == "xen-sky01" and f["vms"] == ["build-agent"]


@pytest.mark.parametrize("fmt", ["text", "markdown", "csv", "html"])
def test_every_format_renders_the_same_report(demo_store, fmt):
    r = report_of(demo_store, "--host", "xen-sky01", "--format", fmt)
    assert r.exit_code == 0, r.stderr
    assert "etl-burst" in r.stdout
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(r.stdout)))
        assert {row["host"] for row in rows} == {"xen-sky01"}
        assert any(row["vm"] == "db-orders" and row["class"] == "cache-sensitive" for row in rows)


def test_fail_on_sets_the_exit_status_for_cron(demo_store, tmp_path):
    def status(host: str, *extra: str) -> int:
        return report_of(demo_store, "--host", host, "--output", str(tmp_path / "r"), *extra).exit_code

    # xen-sky01 has a critical noisy neighbour, xen-clx-bw only warnings, xen-icx-spare nothing.
    assert [status("xen-sky01"), status("xen-clx-bw"), status("xen-icx-spare")] == [0, 0, 0]
    # docs/exit-codes.md: 4 a warning, 5 a critical finding
    assert [status(h, "--fail-on", "warning") for h in ("xen-sky01", "xen-clx-bw", "xen-icx-spare")] == [
        5,
        4,
        0,
    ]
    assert [status(h, "--fail-on", "critical") for h in ("xen-sky01", "xen-clx-bw", "xen-icx-spare")] == [
        5,
        0,
        0,
    ]


def test_usage_errors_exit_2_and_data_errors_3_with_one_line(demo_store, tmp_path):
    for args, status in (
        (("--since", "yesterday-ish"), 2),
        (("--hours", "9 to 5"), 2),
        (("--bogus",), 2),
        (("--since", "2020-01-01", "--until", "2020-01-02"), 3),
        (("--host", "no-such-host"), 2),
        (("--diff", str(tmp_path / "missing.json")), 3),
    ):
        r = run("--store", demo_store, "report", *args)
        assert r.exit_code == status, (args, r.stderr)
        assert r.stderr.strip()
    (tmp_path / "bad.json").write_text("{not json")
    r = run("--store", demo_store, "report", "--since", SINCE, "--diff", str(tmp_path / "bad.json"))
    assert r.exit_code == 3 and "bad.json" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_diff_reports_what_changed_since_the_previous_report(demo_store, tmp_path):
    prev = tmp_path / "prev.json"
    r = report_of(demo_store, "--host", "xen-sky01", "--format", "json", "--output", str(prev))
    assert r.exit_code == 0, r.stderr
    assert prev.stat().st_mode & 0o044, "the report must be readable by others (umask), not 0600"
    data = json.loads(prev.read_text())
    data["findings"] = [f for f in data["findings"] if f["kind"] != "unmonitored"]
    data["findings"].append(
        {"kind": "trend", "host": "xen-sky01", "socket": 0, "vms": [], "severity": "warning"}
    )
    prev.write_text(json.dumps(data))
    r = report_of(demo_store, "--host", "xen-sky01", "--format", "json", "--diff", str(prev))
    diff = json.loads(r.stdout)["diff"]
    assert diff["new"] == ["unmonitored/xen-sky01/-/build-agent"]
    assert diff["resolved"] == ["trend/xen-sky01/0/"]


def test_hours_keep_only_those_hours_of_each_day(demo_store):
    r = run(
        "--store",
        demo_store,
        "report",
        "--since",
        SINCE,
        "--host",
        "xen-sky01",
        "--hours",
        "09-12",
        "--format",
        "json",
    )
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["window"]["hours"] == "09-12"
    assert data["window"]["collections"] == 3 * 12  # 09:00-11:55 at 5-minute steps, one day


def test_headroom_counts_vms_of_an_existing_profile_per_host(demo_store):
    r = run(
        "--config",
        CONFIG,
        "--store",
        demo_store,
        "headroom",
        "--since",
        SINCE,
        "--profile",
        "xen-sky01:web-03",
        "--format",
        "json",
    )
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    fits = {h["host"]: h["fit"] for h in data["hosts"]}
    # The host with headroom takes the most; the saturated Cascade Lake takes none.
    assert max(fits, key=lambda h: fits[h] or 0) == "xen-icx-spare"
    assert fits["xen-clx-bw"] == 0
    assert data["fleet_fit"] == sum(v or 0 for v in fits.values())
    r = run("--store", demo_store, "headroom", "--since", SINCE)
    assert r.exit_code == 2                                   # usage: neither --profile nor sizes


def test_the_real_html_report_of_the_demo_fleet_renders_cleanly_in_chromium(demo_store, tmp_path):
    from tests.test_report_html import _LAYOUT_JS, BROWSER_ARGS, CHROMIUM, _browser_or_skip

    sync_playwright = _browser_or_skip()
    out = tmp_path / "demo.html"
    r = report_of(demo_store, "--format", "html", "--output", str(out))
    assert r.exit_code == 0, r.stderr
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1200, "height": 900})
            tab.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            tab.on("pageerror", lambda e: problems.append(str(e)))
            tab.on("request", lambda q: problems.append(q.url) if not q.url.startswith("file://") else None)
            tab.goto(out.as_uri(), wait_until="load")
            text = tab.inner_text("body")
            layout = tab.evaluate(_LAYOUT_JS)
        finally:
            browser.close()
    assert problems == []
    charts = [s for s in layout if s["cls"] == "chart"]
    assert len(charts) == 2 * 11  # occupancy and bandwidth for each of the 11 sockets
    for s in layout:
        assert s["overlaps"] == [] and s["outside"] == [], s
    assert "etl-burst" in text and "noisy-neighbour" in text


def test_an_hours_filter_that_keeps_nothing_is_a_data_error(demo_store):
    r = run(
        "--store",
        demo_store,
        "report",
        "--since",
        "2026-11-20T00:00",
        "--until",
        "2026-11-20T06:00",
        "--hours",
        "12-13",
    )
    assert r.exit_code == 3 and "no samples in the window at those hours" in r.stderr


def test_a_flat_top_needs_enough_collections_to_be_called_saturation(tmp_path):
    samples = Path(__file__).resolve().parent.parent / "samples" / "captures"
    store = str(tmp_path / "st")
    assert run("--store", store, "collect", "--replay", str(samples)).exit_code == 0
    r = run("--store", store, "report", "--since", "2000-01-01", "--format", "json")
    assert r.exit_code == 0, r.stderr
    assert not [f for f in json.loads(r.stdout)["findings"] if f["kind"] == "bandwidth-saturation"]
