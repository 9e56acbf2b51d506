"""History for the scoring harness (`rdtadvisor.sim.history`) and UCP on fitted curves
(`rdtadvisor.sim.fitted`): the collector's tables for a suite socket, with and without a
calibration sweep, and the reference advisor that reads them."""

from __future__ import annotations

import inspect
from functools import cache

import numpy as np
import pandas as pd
import pytest

from rdtadvisor.advise.calibrate import private_levels
from rdtadvisor.cache.layouts import Layout, contiguous_mask, full_mask
from rdtadvisor.sim import baselines, harness, history, scoring, suite
from rdtadvisor.sim.fitted import LABEL, settled, ucp_on_fitted
from rdtadvisor.store import frames

SEED = 7


@cache
def scenario(name: str) -> harness.SuiteScenario:
    return next(s for s in suite.scenarios() if s.name == name)


@cache
def observed(name: str, mode: str, seed: int = SEED) -> dict[str, pd.DataFrame]:
    return history.observe(scenario(name), mode, seed=seed)


# --- the history ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", harness.HISTORY_MODES)
def test_history_has_the_collectors_schema_and_every_collection(mode: str) -> None:
    sc = scenario("skx-stream-neighbour")
    f = observed(sc.name, mode)
    assert set(f) == set(frames.TABLES)
    for name, table in f.items():
        assert list(table.columns) == list(frames.SCHEMAS[name])
        assert {c: str(t) for c, t in table.dtypes.items()} == {
            c: str(pd.Series(dtype=t).dtype) for c, t in frames.SCHEMAS[name].items()}
    T = int(history.HOURS * 3600 // history.STEP_S)
    for name in ("samples", "settings", "facts", "domains"):
        assert f[name]["time"].nunique() == T, name
    assert f["samples"]["time"].diff().dropna().max() == pd.Timedelta(seconds=history.STEP_S)
    # every VM of the scenario (plus Xen's Domain-0) is monitored on socket 0
    names = set(f["samples"]["domain"])
    assert {v.name for v in sc.vms} <= names and "Domain-0" in names
    assert set(f["samples"]["metric"]) == {"l3_occupancy", "mem_bw_total", "mem_bw_local"}
    assert set(f["samples"]["socket"]) == {0}
    l3 = f["facts"][f["facts"]["fact"] == "l3_cache_bytes"]["value"]
    assert (l3 == sc.socket.l3_bytes // 1024 * 1024).all()


def test_default_history_keeps_every_mask_at_default() -> None:
    sc = scenario("skx-stream-neighbour")
    st = observed(sc.name, "default")["settings"]
    assert set(st["setting"]) == {"l3_cbm"}
    assert set(st["value"].astype(int)) == {full_mask(sc.socket.ways)}


def test_calibration_gives_each_vm_the_top_ways_alone_in_turn_and_its_occupancy_follows() -> None:
    sc = scenario("skx-stream-neighbour")
    W, way = sc.socket.ways, sc.socket.way_bytes
    f = observed(sc.name, "calibration")
    st = f["settings"][f["settings"]["setting"] == "l3_cbm"]
    wide = st.pivot(index="time", columns="domain", values="value").astype(int)
    # the private sweep: at every collection either everyone at the default mask, or one VM
    # alone in the top k ways and every other domain (Domain-0 too) fenced into the low W - k
    for _t, row in wide.iterrows():
        if (row == full_mask(W)).all():
            continue
        (swept,) = [n for n, m in row.items() if m >> (W - 1) & 1]
        k = int(row[swept]).bit_count()
        assert row[swept] == contiguous_mask(W - k, k)
        assert (row.drop(swept) == contiguous_mask(0, W - k)).all()
    assert (wide.iloc[-1] == full_mask(W)).all()                   # restored before the run ends
    occ = f["samples"][f["samples"]["metric"] == "l3_occupancy"].pivot(index="time", columns="domain",
                                                                       values="value")
    upscale = history.preset_for(sc.socket).upscale_bytes
    for v in sc.vms:
        masks = wide[v.name]
        ks = private_levels(W)                                       # 3/4, 1/2, 1/4, ... of the ways
        tops = {contiguous_mask(W - k, k) for k in ks}
        fences = {contiguous_mask(0, W - k) for k in ks}
        assert set(masks) == {full_mask(W)} | tops | fences
        for k in ks:
            at = masks.index[masks == contiguous_mask(W - k, k)]
            assert len(at) == history.HOLD                          # held `hold` collections
            last = occ.loc[at[-1], v.name]                           # lag has (mostly) drained
            # alone in its ways, it holds min(k ways, its working set): the point the fit needs
            assert 0.8 * min(k * way, v.curve.ws_bytes) <= last <= k * way * 1.05 + upscale
    # the lag: the first collection after the 1-way level of the biggest VM starts still holds more
    default_occ = observed(sc.name, "default")["samples"]
    default_occ = default_occ[default_occ["metric"] == "l3_occupancy"].pivot(index="time", columns="domain",
                                                                             values="value")
    big = default_occ.median().drop("Domain-0").idxmax()
    first = wide.index[wide[big] == contiguous_mask(W - 1, 1)][0]
    assert occ.loc[first, big] > 1 * way + upscale


def test_same_seed_same_frames_other_seed_other_noise() -> None:
    sc = scenario("skx-remote-memory")
    a = history.observe(sc, "calibration", seed=3, hours=2)
    b = history.observe(sc, "calibration", seed=3, hours=2)
    for name in frames.TABLES:
        pd.testing.assert_frame_equal(a[name], b[name])
    c = history.observe(sc, "calibration", seed=4, hours=2)
    assert not a["samples"]["value"].equals(c["samples"]["value"])


@pytest.mark.parametrize("name", ["skx-stream-neighbour", "bdwd-cdp-3vm", "hsw-cos-starved-5"])
def test_fast_frames_equal_parsing_every_capture(name: str) -> None:
    """`observe` parses only the captures that need it; the rest must come out identical."""
    sc = scenario(name)
    fast = history.observe(sc, "calibration", seed=11, hours=0.75)
    exact = history.observe(sc, "calibration", seed=11, hours=0.75, exact=True)
    for table in frames.TABLES:
        pd.testing.assert_frame_equal(fast[table], exact[table])


def test_cdp_scenario_shows_code_and_data_masks() -> None:
    sc = scenario("bdwd-cdp-3vm")
    W = sc.socket.ways
    st = observed(sc.name, "calibration")["settings"]
    assert set(st["setting"]) == {"l3_code_cbm", "l3_data_cbm"}
    halves = st.pivot_table(index=["time", "domain"], columns="setting", values="value", aggfunc="first")
    assert (halves["l3_code_cbm"] == halves["l3_data_cbm"]).all()      # a level sets both halves
    ks = private_levels(W)
    assert set(halves["l3_data_cbm"].astype(int)) == ({full_mask(W)} | {contiguous_mask(W - k, k) for k in ks}
                                                      | {contiguous_mask(0, W - k) for k in ks})


def test_haswell_history_has_no_bandwidth() -> None:
    s = observed("hsw-cos-starved-5", "default")["samples"]
    assert set(s["metric"]) == {"l3_occupancy"}       # E5 v3: CMT without MBM


def test_schedule_levels_and_fit() -> None:
    sched = history.calibration_schedule(2, 11, start_step=5, hold=3)
    top, low = contiguous_mask, (lambda k: contiguous_mask(0, 11 - k))
    assert [(int(at.total_seconds()) // 60, layout) for at, layout in sched] == [
        (5, [top(2, 9), low(9)]), (8, [top(6, 5), low(5)]), (11, [top(9, 2), low(2)]),
        (14, [top(10, 1), low(1)]),
        (17, [low(9), top(2, 9)]), (20, [low(5), top(6, 5)]), (23, [low(2), top(9, 2)]),
        (26, [low(1), top(10, 1)]),
        (29, [None, None])]
    assert history.calibration_steps(2, 11, hold=3) == 24
    with pytest.raises(ValueError, match="mode"):
        history.host_spec(scenario("skx-all-small"), "sometimes", seed=0)
    # too short for the full hold: the hold shrinks, the sweep still fits
    host = history.host_spec(scenario("hsw-cos-starved-8"), "calibration", seed=0, hours=1)
    last = max(c.at for v in host.vms for c in v.mask_changes)
    assert last < pd.Timedelta(hours=1)


# --- UCP on fitted curves ----------------------------------------------------------------------

def test_follows_the_advisor_protocol() -> None:
    want = [p for p in inspect.signature(harness.Advisor.__call__).parameters.values() if p.name != "self"]
    got = list(inspect.signature(ucp_on_fitted).parameters.values())
    assert [(p.name, p.kind) for p in got] == [(p.name, p.kind) for p in want]


@pytest.mark.parametrize("mode", harness.HISTORY_MODES)
def test_layouts_are_valid_for_every_quick_scenario(mode: str) -> None:
    for sc in suite.quick():
        layout = ucp_on_fitted(sc.socket, sc.vm_info(), observed(sc.name, mode), cos_budget=sc.cos_budget,
                               mode=mode)
        assert isinstance(layout, Layout)
        assert len(layout.masks) == len(sc.vms) and layout.ways == sc.socket.ways
        assert layout.is_valid(sc.cos_budget), (sc.name, layout.hex())
        for m in layout.masks:                                  # contiguous, within the ways
            assert m > 0 and m >> sc.socket.ways == 0
            low = m & -m
            assert (m + low) & m == 0


def test_cos_starved_merges_into_the_budget() -> None:
    sc = scenario("skx-cos-starved-7")
    layout = ucp_on_fitted(sc.socket, sc.vm_info(), history.observe(sc, "calibration", seed=SEED, hours=4),
                           cos_budget=sc.cos_budget, mode="calibration")
    assert layout.is_valid(sc.cos_budget) and layout.cos_used <= sc.cos_budget


def test_no_usable_history_means_no_partitioning() -> None:
    sc = scenario("skx-stream-neighbour")
    n, W = len(sc.vms), sc.socket.ways
    assert ucp_on_fitted(sc.socket, sc.vm_info(), None, cos_budget=15, mode="default").masks == \
        Layout.default(n, W).masks
    hsw = scenario("hsw-cos-starved-5")        # occupancy only, default masks only: no curve shows
    layout = ucp_on_fitted(hsw.socket, hsw.vm_info(), observed(hsw.name, "default"),
                           cos_budget=hsw.cos_budget, mode="default")
    assert layout.masks == Layout.default(len(hsw.vms), hsw.socket.ways).masks


def test_calibration_history_comes_close_to_lookahead_on_true_curves() -> None:
    sc = scenario("skx-stream-neighbour")
    vms = list(sc.vms)
    a = harness.alone_ips(sc.socket, vms)
    truth = baselines.ucp_lookahead(sc.socket, vms, sc.cos_budget)
    ws_true = harness.evaluate(sc.socket, vms, truth, alone=a).weighted_speedup
    ws_none = harness.evaluate(sc.socket, vms, Layout.default(len(vms), sc.socket.ways),
                               alone=a).weighted_speedup
    layout = ucp_on_fitted(sc.socket, sc.vm_info(), observed(sc.name, "calibration"),
                           cos_budget=sc.cos_budget, mode="calibration")
    ws = harness.evaluate(sc.socket, vms, layout, alone=a).weighted_speedup
    assert ws >= 0.97 * ws_true
    assert ws > ws_none


def test_settling_drops_the_collections_right_after_a_mask_change() -> None:
    f = observed("skx-stream-neighbour", "calibration")
    kept = settled(f["samples"], f["settings"], 180)
    dropped = f["samples"]["time"].nunique() - kept["time"].nunique()
    changes = f["settings"].sort_values("time").groupby("domain")["value"].apply(
        lambda s: int((s != s.shift()).iloc[1:].sum())).sum()
    assert 0 < dropped <= 3 * changes
    assert settled(f["samples"], f["settings"], 0) is f["samples"]


def test_run_suite_with_history_factory() -> None:
    sc = scenario("skx-remote-memory")
    res = scoring.run_suite([sc], {LABEL: ucp_on_fitted}, per_vm_optimum=False,
                            history=lambda s, mode: history.observe(s, mode, seed=s.seed, hours=3))
    rows = res[res["plan"] == LABEL]
    assert list(rows["history"]) == list(harness.HISTORY_MODES)
    assert rows["valid"].all()
    assert np.isfinite(rows["pct_of_optimum"]).all()
