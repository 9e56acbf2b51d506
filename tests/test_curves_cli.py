"""`rdtadvisor curves`: each VM's estimated miss curve and its uncertainty, from the store."""

from __future__ import annotations

import csv
import io
import json

import pytest

from rdtadvisor.cli.curves import render_text
from rdtadvisor.model.curvefit import TABLE_COLUMNS
from rdtadvisor.sim import suite
from rdtadvisor.sim.history import observe
from rdtadvisor.store import Store
from tests.clirun import run


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The skx-stream-neighbour host after a calibration sweep, and with default masks only."""
    sc = next(s for s in suite.scenarios() if s.name == "skx-stream-neighbour")
    out = {}
    for mode in ("calibration", "default"):
        path = tmp_path_factory.mktemp(mode) / "store"
        Store(path).append(observe(sc, mode, seed=sc.seed))
        out[mode] = path
    return sc, out


def curves_json(store) -> list[dict]:
    r = run("--store", str(store), "curves", "--format", "json")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)["curves"]


def test_one_row_per_vm_with_its_band_around_the_estimate(stores):
    sc, store = stores
    rows = curves_json(store["calibration"])
    by_name = {r["domain"]: r for r in rows}
    assert {v.name for v in sc.vms} <= set(by_name)
    assert all(set(r) == set(TABLE_COLUMNS) for r in rows)
    for r in rows:
        assert r["ways"] == sc.socket.ways
        assert r["alpha_lo"] <= r["alpha_hi"]
        for at in ("1way", "half", "all"):
            assert r[f"misses_{at}_lo"] <= r[f"misses_{at}_hi"]
    stream = by_name["stream"]
    assert stream["kind"] == "streaming" and stream["measured"]
    # flat: squeezing the streamer to one way barely changes its misses
    assert stream["misses_1way"] <= 1.3 * stream["misses_all"]
    # a cache-sensitive VM misses clearly more in one way than with the whole cache
    sensitive = [r for r in rows if r["kind"] == "sensitive" and r["measured"]]
    assert len(sensitive) == 3 and all(r["misses_1way"] > 1.5 * r["misses_all"] for r in sensitive)


def test_default_mask_history_names_the_curves_a_calibration_would_measure(stores):
    _, store = stores
    rows = curves_json(store["default"])
    unmeasured = sorted(r["domain"] for r in rows if not r["measured"] and r["bandwidth_bytes_s"] >= 1e6)
    assert unmeasured                         # never squeezed: some curves are guesses
    text = run("--store", str(store["default"]), "curves")
    assert text.exit_code == 0
    note = text.stdout.strip().splitlines()[-1]
    assert note.startswith(f"{len(unmeasured)} curve(s) not measured") and "rdtadvisor calibrate" in note
    assert all(f":{name}" in note for name in unmeasured)
    assert sum(not r["measured"] for r in curves_json(store["calibration"])) < len(unmeasured)


def test_csv_has_the_documented_columns(stores):
    _, store = stores
    r = run("--store", str(store["calibration"]), "curves", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(r.stdout)))
    assert r.exit_code == 0 and table and list(table[0]) == TABLE_COLUMNS


def test_an_unknown_host_is_a_usage_error(stores):
    _, store = stores
    r = run("--store", str(store["calibration"]), "curves", "--host", "nope")
    assert r.exit_code == 2 and "nope" in r.stderr


def test_markdown_escapes_pipes_in_names():
    import pandas as pd

    row = dict.fromkeys(TABLE_COLUMNS, float("nan"))
    row.update(host="h", socket=0, domid=3, domain="a|b", kind="sensitive", quality="good", measured=True,
               points=40, occupancy_p5_bytes=1e6, occupancy_p95_bytes=4e6, alpha=0.5, alpha_lo=0.4,
               alpha_hi=0.6, bandwidth_bytes_s=1e9, reason="r")
    md = render_text(pd.DataFrame([row], columns=TABLE_COLUMNS), markdown=True)
    assert "a\\|b" in md and md.splitlines()[2].count(" | ") == md.splitlines()[0].count(" | ")


def test_a_host_without_mbm_is_named_on_stderr(tmp_path):
    sc = next(s for s in suite.scenarios() if s.name == "hsw-cos-starved-5")
    store = tmp_path / "s"
    Store(store).append(observe(sc, "default", seed=sc.seed, hours=1.0))
    r = run("--store", str(store), "curves", "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout) == {"curves": []}
    assert f"{sc.name}: no memory-bandwidth samples" in r.stderr and len(r.stderr.splitlines()) == 1
    assert "occupancy shares" in r.stderr and "rdtadvisor calibrate" in r.stderr


def test_after_a_sweep_a_host_without_mbm_gets_relative_curves(tmp_path):
    sc = next(s for s in suite.scenarios() if s.name == "hsw-cos-starved-5")
    store = tmp_path / "s"
    Store(store).append(observe(sc, "calibration", seed=sc.seed))
    rows = curves_json(store)
    vms = {v.name for v in sc.vms}
    mine = [r for r in rows if r["domain"] in vms]
    assert {r["domain"] for r in mine} == vms and all(r["relative"] for r in mine)
    assert next(r for r in mine if r["domain"] == "stream")["kind"] == "streaming"
    text = run("--store", str(store), "curves").stdout
    assert "relative" in text and "relative units" in text


def test_markdown_leaves_no_raw_html_from_a_hostile_name():
    import pandas as pd

    from rdtadvisor.advise.cat import CatAdvice
    from rdtadvisor.cli.advise import _text

    evil = "<img src=x onerror=alert(1)>"
    row = dict.fromkeys(TABLE_COLUMNS, float("nan"))
    row.update(host="h", socket=0, domid=3, domain=evil, kind="sensitive", quality="good", measured=True,
               points=40, occupancy_p5_bytes=1e6, occupancy_p95_bytes=4e6, alpha=0.5, alpha_lo=0.4,
               alpha_hi=0.6, bandwidth_bytes_s=1e9, reason="r")
    md = render_text(pd.DataFrame([row], columns=TABLE_COLUMNS), markdown=True)
    assert "\\<img" in md and "<" not in md.replace("\\<", "")      # every < escaped
    declined = CatAdvice((), ({"host": "h", "socket": 0, "reason": f"no measured curve ({evil})"},))
    assert "<" not in _text(declined, markdown=True).replace("\\<", "")
    assert evil in _text(declined, markdown=False)
