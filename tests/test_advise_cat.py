"""`rdtadvisor advise cat`: history in, valid reviewable plans (or a reasoned "no change") out."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rdtadvisor.advise import cbm
from rdtadvisor.advise.cat import advise_cat
from rdtadvisor.sim import suite
from rdtadvisor.sim.history import observe
from rdtadvisor.store import Store
from tests.clirun import run

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "captures"


@pytest.fixture(scope="module")
def neighbour():
    sc = next(s for s in suite.scenarios() if s.name == "skx-stream-neighbour")
    return sc, {mode: observe(sc, mode, seed=sc.seed) for mode in ("default", "calibration")}


def test_with_calibration_history_the_streaming_vm_is_confined(neighbour):
    sc, hist = neighbour
    advice = advise_cat(hist["calibration"])
    assert len(advice.plans) == 1 and not advice.declined
    plan = advice.plans[0]
    assert plan.predicted["weighted_speedup"] >= 0.02
    masks = {a.name: a.cbm for a in plan.assignments}
    assert all(cbm.is_valid(m, sc.socket.ways) for m in masks.values())
    assert plan.cos_used <= plan.cos_budget
    assert cbm.ways_of(masks["stream"]) <= 2
    for step in plan.steps:  # exact xl syntax of Xen 4.19, by domid, one socket
        assert step.argv[:4] == ("xl", "psr-cat-set", "-s", "0") and step.argv[4].isdigit()
        assert step.undo[:4] == ("xl", "psr-cat-set", "-s", "0")
    doc = advice.to_dict()
    assert set(doc["plans"][0]) >= {"host", "socket", "level", "cos_budget", "cos_used", "assignments",
                                    "predicted", "commands", "rollback"}


def test_with_default_mask_history_it_declines_and_says_why(neighbour):
    _, hist = neighbour
    advice = advise_cat(hist["default"])
    assert not advice.plans
    assert "hysteresis" in advice.declined[0]["reason"] or "uncertain" in advice.declined[0]["reason"]


def test_cli_on_the_samples_declines_with_reasons(tmp_path):
    store = str(tmp_path / "s")
    assert run("--store", store, "collect", "--replay", str(SAMPLES)).exit_code == 0
    r = run("--store", store, "advise", "cat", "--format", "json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    reasons = {(d["host"], d["socket"]): d["reason"] for d in doc["declined"]}
    assert "CDP" in reasons[("xen-bdw-cdp", 0)]
    assert all(isinstance(p, dict) for p in doc["plans"])


def test_cli_writes_a_script_and_its_rollback_that_sh_accepts(neighbour, tmp_path):
    _, hist = neighbour
    Store(tmp_path / "s").append(hist["calibration"])
    out = tmp_path / "apply.sh"
    r = run("--store", str(tmp_path / "s"), "advise", "cat", "--script", str(out))
    assert r.exit_code == 0, r.stderr
    assert "psr-cat-set" in r.stdout and "predicted weighted speedup +" in r.stdout
    back = tmp_path / "apply.rollback.sh"
    for script in (out, back):
        assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
    assert "set -eu" in out.read_text() and "xl psr-cat-set" in back.read_text()
    md = run("--store", str(tmp_path / "s"), "advise", "cat", "--format", "markdown")
    assert "| domid | name | mask | ways | reason |" in md.stdout
