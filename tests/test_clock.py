"""One clock: RDTADVISOR_NOW pins "now" for every default window, so nothing depends on the date.

The suite itself runs pinned (tests/conftest.py); these tests move the pin and check that the
windows, the demo's placement in time and the empty-window error all follow it.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd
import pytest

from rdtadvisor.core import clock
from tests.clirun import run

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "samples" / "demo-fleet.toml"


def test_a_pinned_clock_starts_at_the_pin_and_runs_on(monkeypatch):
    monkeypatch.setenv(clock.ENV, "2031-02-28T23:59:00Z")
    first = clock.now()
    assert pd.Timestamp("2031-02-28T23:59:00Z") <= first < pd.Timestamp("2031-02-28T23:59:05Z")
    assert clock.now() >= first
    assert clock.now_datetime().tzinfo is not None


def test_without_a_pin_the_clock_is_the_system_clock(monkeypatch):
    monkeypatch.delenv(clock.ENV, raising=False)
    assert abs(clock.now() - pd.Timestamp.now(tz="UTC")) < pd.Timedelta(seconds=5)


def test_a_bad_pin_is_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv(clock.ENV, "yesterday")
    with pytest.raises(ValueError, match="RDTADVISOR_NOW='yesterday': not a time"):
        clock.now()


def test_spans_count_back_from_the_pinned_clock(monkeypatch):
    from rdtadvisor.core.timewindow import parse_when

    monkeypatch.setenv(clock.ENV, "2030-06-15T12:00:00Z")
    assert parse_when("7d").floor("min") == pd.Timestamp("2030-06-08T12:00:00Z")


def test_no_module_but_the_clock_reads_the_wall_clock():
    """`datetime.now`, `Timestamp.now`, `time.time`, `date.today` appear only in rdtadvisor/core/clock.py."""
    offenders = []
    for path in sorted((ROOT / "rdtadvisor").rglob("*.py")):
        if path.name == "clock.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name = node.func.attr
                owner = node.func.value
                owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                if ((name in ("now", "utcnow", "today") and owner_name in ("datetime", "Timestamp", "date"))
                        or (name == "time" and owner_name == "time")):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_a_scenario_without_start_ends_at_the_start_of_yesterday(monkeypatch, tmp_path):
    import tomllib

    from rdtadvisor.sim.scenario import parse_scenario

    monkeypatch.setenv(clock.ENV, "2030-06-15T12:34:00Z")
    sc = parse_scenario(tomllib.loads(DEMO.read_text()), source=str(DEMO))
    assert not sc.pinned
    assert sc.start + sc.duration == pd.Timestamp("2030-06-14T00:00:00Z").to_pydatetime()


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_simulate_start_pins_the_run_byte_for_byte_on_any_day(monkeypatch, tmp_path):
    outs = []
    for i, now in enumerate(("2026-12-07T08:00:00Z", "2031-02-28T23:00:00Z")):
        monkeypatch.setenv(clock.ENV, now)
        out = tmp_path / f"run{i}"
        r = run("simulate", str(DEMO), "--out", str(out), "--duration", "30m",
                "--start", "2026-11-20T00:00:00Z", "--quiet")
        assert r.exit_code == 0, r.stderr
        outs.append(_tree(out))
    assert outs[0] == outs[1]
    assert any(name.startswith("xen-sky01/20261120T000000Z") for name in outs[0])


def test_an_empty_window_names_the_newest_collection_and_the_since_that_covers_it(demo_store, monkeypatch):
    monkeypatch.setenv(clock.ENV, "2027-01-10T00:00:00Z")
    r = run("--store", demo_store, "report")
    assert r.exit_code == 3
    line = r.stderr.strip()
    assert "\n" not in line
    assert "the newest collection is 2026-11-20 13:55 UTC" in line
    since = line.rsplit("--since ", 1)[1].split()[0]
    assert since == "2026-11-13"
    again = run("--store", demo_store, "report", "--since", since, "--format", "json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["hosts"]
