"""Relative miss curves from occupancy shares, for CPUs without MBM (`rdtadvisor.model.shares`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from rdtadvisor.advise import strategy
from rdtadvisor.cache.curve import Curve
from rdtadvisor.cache.equilibrium import allocate
from rdtadvisor.model import shares
from rdtadvisor.model.curves import fit_all
from rdtadvisor.sim import advisors, suite
from rdtadvisor.sim.harness import SuiteScenario, VmInfo, evaluate
from rdtadvisor.sim.history import observe
from rdtadvisor.sim.model import MIB

WAY = 2.25 * MIB        # Haswell-EP: 45 MiB in 20 ways


def scenario(name: str) -> SuiteScenario:
    return next(s for s in suite.scenarios() if s.name == name)


@pytest.fixture(scope="module")
def hsw5():
    """The Haswell-EP scenario's history in both modes, with the socket's memory traffic as the
    operator measures it outside xl (a ``memory_traffic`` facts row)."""
    sc = scenario("hsw-cos-starved-5")
    return sc, {m: observe(sc, m, seed=sc.seed, operator=True) for m in ("default", "calibration")}


def fits_by_name(sc: SuiteScenario, history) -> dict:
    fits = fit_all(history["samples"], history["facts"], history["settings"])
    names = history["samples"].drop_duplicates("domid").set_index("domid")["domain"].to_dict()
    return {names[d]: f for (_, _, d), f in fits.items()}


def test_only_sockets_with_occupancy_and_no_bandwidth_are_occupancy_only():
    s = pd.DataFrame({"host": ["a", "a", "b", "c"], "socket": [0, 1, 0, 0],
                      "metric": ["l3_occupancy", "mem_bw_total", "l3_occupancy", "mem_bw_local"],
                      "value": [1.0, 2.0, 3.0, 4.0]})
    s = pd.concat([s, s.assign(metric=["l3_occupancy", "l3_occupancy", "l3_occupancy", "l3_occupancy"])])
    assert shares.occupancy_only(s) == [("a", 0), ("b", 0), ("c", 0)]
    assert shares.occupancy_only(s.iloc[:0]) == []


def test_factor_model_recovers_the_exponents_relative_to_the_flattest():
    # occupancies from the sharing equilibrium itself: pools of 2..20 ways of 2.25 MiB (every VM
    # holds more than c0, where the power law starts), loads that drift
    alphas = np.array([0.0, 0.3, 0.6, 0.9])
    rates = np.array([4e7, 1e7, 1.5e7, 5e6])
    curves = [Curve(a, 1e12) for a in alphas]
    rng = np.random.default_rng(1)
    pool, vm, y = [], [], []
    for p, ways in enumerate(rng.integers(2, 21, 60)):
        load = rates * rng.lognormal(0, 0.1, 4)
        cap = np.full(4, ways * WAY / 4)
        for _ in range(200):
            m = load * np.array([c.miss_ratio(x) for c, x in zip(curves, cap, strict=True)])
            cap = 0.5 * cap + 0.5 * allocate(m, np.ones((4, ways)), WAY, np.full(4, 1e12))
        pool += [p] * 4
        vm += range(4)
        y += list(np.log(cap))
    beta, _, _, _ = shares.factor_model(np.array(pool), np.array(vm), np.array(y), 4)
    relative = beta.max() / beta - 1            # alpha of each, taking the flattest as flat
    assert np.argmax(beta) == 0
    assert relative == pytest.approx(alphas, abs=0.06)


def test_default_masks_only_give_no_curve(hsw5):
    # every domain in one pool all the time: the occupancy swings are the loads', not a curve's
    sc, h = hsw5
    assert fits_by_name(sc, h["default"]) == {}


def test_a_calibration_sweep_gives_relative_curves_with_the_knees_seen_alone(hsw5):
    sc, h = hsw5
    fits = fits_by_name(sc, h["calibration"])
    truth = {v.name: v.curve for v in sc.vms}
    assert set(truth) <= set(fits)
    assert all(fits[n].relative and "no MBM" in fits[n].reason for n in truth)
    stream = fits["stream"]
    assert stream.alpha < 0.1 and not np.isfinite(stream.ws_bytes) and stream.kind == "streaming"
    for name in ("db0", "db1", "web2"):
        f = fits[name]
        assert f.alpha >= 0.2 and f.kind in ("sensitive", "small"), name
    for name in ("db0", "web1", "web2"):        # knees inside what the sweep's private levels gave
        assert fits[name].ws_bytes == pytest.approx(truth[name].ws_bytes, rel=0.15), name
    # the exponents' common uncertainty: every draw raises or lowers all of them together
    d = np.array([fits[n].draws[:, 1] for n in truth])
    lo, hi = shares.FLAT_GAUGE[1:]             # the streamer filled its ways: the anchor is flat
    assert np.ptp(d[0]) >= 0.9 * (hi - lo)


def test_the_plan_confines_the_streamer_and_beats_doing_nothing(hsw5):
    sc, h = hsw5
    vms = [VmInfo(v.name, v.vcpus, v.priority) for v in sc.vms]
    advice = advisors.advise_scenario_socket(sc.socket, vms, h["calibration"], cos_budget=sc.cos_budget)
    assert advice is not None and advice.declined is None
    by = {v.name: v for v in advice.vms}
    assert by["stream"].ways <= sc.socket.ways // 3
    assert "of the socket's insertions (no MBM)" in by["stream"].reason
    full = (1 << sc.socket.ways) - 1
    none = evaluate(sc.socket, sc.vms, [full] * len(vms)).weighted_speedup
    got = evaluate(sc.socket, sc.vms, list(advice.masks)).weighted_speedup
    assert got > none * 1.02
    low, high = advice.uncertainty
    assert low <= got / none - 1 <= high


def test_without_the_socket_traffic_relative_curves_are_not_acted_on(hsw5):
    # how much a plan gains depends on how stalled the VMs are, which occupancy cannot show
    sc, h = hsw5
    facts = h["calibration"]["facts"]
    blind = {**h["calibration"], "facts": facts[facts["fact"] != "memory_traffic"]}
    vms = [VmInfo(v.name, v.vcpus, v.priority) for v in sc.vms]
    advice = advisors.advise_scenario_socket(sc.socket, vms, blind, cos_budget=sc.cos_budget)
    assert advice is not None and advice.declined == strategy.NO_TRAFFIC
    assert all(v.mask == v.mask_now for v in advice.vms)


def test_without_a_streamer_the_flattest_cache_user_is_not_confined():
    # three cache-sensitive VMs and two small ones: the flattest has a working set that fitted
    # in its private ways, so it is taken as a cache user (alpha 0.3), not as flat
    rng = np.random.default_rng(951)
    vms = tuple([suite.sensitive(rng, f"db{i}") for i in range(3)]
                + [suite.small(rng, f"web{i}") for i in range(2)])
    sc = SuiteScenario(name="hsw-no-streamer", socket=suite.HSW, vms=vms, cos_budget=3, description="",
                       seed=951)
    h = observe(sc, "calibration", seed=sc.seed, operator=True)
    advice = advisors.advise_scenario_socket(sc.socket, [VmInfo(v.name, v.vcpus, v.priority) for v in vms], h,
                                             cos_budget=3)
    full = (1 << sc.socket.ways) - 1
    masks = list(advice.masks) if advice is not None else [full] * len(vms)
    none = evaluate(sc.socket, list(vms), [full] * len(vms)).weighted_speedup
    assert evaluate(sc.socket, list(vms), masks).weighted_speedup >= none * 0.995


def test_relative_units_are_scaled_to_the_measured_traffic():
    assert fit_all(*_tiny_history()) == {}          # two readings per pool size are not a curve
    v = strategy.VmInput(1, "a", 1.0, _relative_fit(3e9))
    w = strategy.VmInput(2, "b", 1.0, _relative_fit(1e9))
    items, log_scale = strategy._absolute([v, w], strategy.Policy(traffic=20e9))
    assert [i.fit.median_bandwidth for i in items] == pytest.approx([15e9, 5e9])
    assert items[0].fit.misses(4 * MIB) == pytest.approx(5 * v.fit.misses(4 * MIB))
    spread = np.exp(log_scale)
    k = strategy.TRAFFIC_SPREAD
    assert log_scale[0] == 0 and 1 / k <= spread.min() < spread.max() <= k
    assert strategy._absolute([v, w], strategy.Policy())[1] is None      # unknown: nothing to scale by


def _relative_fit(bw: float):
    from rdtadvisor.model.curvefit import CurveFit

    return CurveFit(r=bw / 64, alpha=0.3, ws_bytes=float("inf"), floor=0.0, n_points=50,
                    coverage=(MIB, 8 * MIB), quality="fair", kind="sensitive", reason="",
                    median_occupancy=4 * MIB, median_bandwidth=bw,
                    draws=np.tile([np.log(bw / 64), 0.3, np.inf, 0.0], (10, 1)), relative=True)


def _tiny_history():
    t = pd.to_datetime(["2026-01-01T00:00Z", "2026-01-01T00:01Z"])
    samples = pd.DataFrame({"host": "h", "socket": 0, "domid": [1, 2, 1, 2], "domain": ["a", "b", "a", "b"],
                            "time": [t[0], t[0], t[1], t[1]], "metric": "l3_occupancy",
                            "value": [4 * MIB, 2 * MIB, 5 * MIB, 1 * MIB]})
    facts = pd.DataFrame({"host": ["h"], "socket": [0], "time": [t[0]], "fact": ["l3_cache_bytes"],
                          "value": [20 * MIB]})
    return samples, facts, None


def test_a_vm_that_was_never_alone_keeps_no_knee():
    f = _relative_fit(1e9)
    out = shares.relative_fit(f, None, seed=0)
    assert not np.isfinite(out.ws_bytes) and out.relative and "no MBM" in out.reason
    with_knee = shares.relative_fit(f, shares.Alone(6 * MIB, fits=True), seed=0)
    assert with_knee.ws_bytes == 6 * MIB and (with_knee.draws[:, 2] >= 6 * MIB).all()
    # it filled its private ways: a knee the pooled points suggest below that is dropped
    small = replace(f, ws_bytes=3 * MIB, floor=0.1, kind="small",
                    draws=np.tile([np.log(1e9 / 64), 0.3, 3 * MIB, 0.1], (10, 1)))
    filled = shares.relative_fit(small, shares.Alone(30 * MIB, fits=False), seed=0)
    assert not np.isfinite(filled.ws_bytes) and filled.kind == "sensitive"
    assert not np.isfinite(filled.draws[:, 2]).any()

