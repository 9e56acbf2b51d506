"""Truth model properties: conservation, monotonicity, floor, convergence, speed, determinism.

Hypothesis draws VMs from the whole range the profiles use (alpha 0-0.9, working sets 0.1-64 MiB,
apki up to 60) and contiguous masks anywhere in the CBM, on an 11-way Skylake-SP socket and the
4-way test part.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rdtadvisor.sim import model, phases, presets, scenario, truth
from rdtadvisor.sim.phases import Phase

MIB = 1024**2
SCENARIOS = Path(__file__).parent / "scenarios"
SKX = presets.get("skylake-sp").socket()
TINY = presets.get("tiny").socket()
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def vms(draw, continuous: bool = False) -> model.Vm:
    alpha = draw(st.floats(0.0, 0.9))
    ws = draw(st.floats(0.1, 64.0)) * MIB
    floor = draw(st.floats(0.005, 0.1))
    if continuous:   # no cliff at the knee: the floor is the power law's value there
        floor = float(min(1.0, (ws / (0.25 * MIB)) ** -alpha))
    return model.Vm(
        name="v", curve=model.Curve(alpha=alpha, ws_bytes=ws, floor=floor),
        apki=draw(st.floats(0.5, 60.0)), cpi0=draw(st.floats(0.5, 1.5)), vcpus=draw(st.integers(1, 8)),
        mlp=draw(st.floats(1.0, 8.0)), writeback=draw(st.floats(0.0, 0.6)), remote=draw(st.floats(0.0, 0.5)))


@st.composite
def masks(draw, ways: int) -> int:
    start = draw(st.integers(0, ways - 1))
    length = draw(st.integers(1, ways - start))
    return ((1 << length) - 1) << start


@st.composite
def mixes(draw, socket: model.Socket = SKX, continuous: bool = False, max_vms: int = 8):
    n = draw(st.integers(1, max_vms))
    vs = [draw(vms(continuous)) for _ in range(n)]
    ms = [draw(masks(socket.ways)) for _ in range(n)]
    return vs, ms


def popcount(m: int) -> int:
    return bin(m).count("1")


# --------------------------------------------------------------------------- conservation


@FAST
@given(mixes(), st.integers(1, 4), st.data())
def test_occupancy_never_exceeds_mask_or_l3(mix, T, data):
    vs, ms = mix
    load = np.array(data.draw(st.lists(st.lists(st.floats(0.0, 1.0), min_size=len(vs), max_size=len(vs)),
                                       min_size=T, max_size=T)))
    state = model.solve(SKX, vs, ms, load)
    part = np.array([popcount(m) for m in ms]) * SKX.way_bytes
    ws = np.array([v.curve.ws_bytes for v in vs])
    assert state.occupancy.shape == (T, len(vs))
    assert (state.occupancy <= part * (1 + 1e-9)).all()
    assert (state.occupancy <= ws * (1 + 1e-9)).all()
    assert (state.occupancy.sum(axis=-1) <= SKX.l3_bytes * (1 + 1e-9)).all()
    assert (state.occupancy >= 0).all()


@FAST
@given(mixes(TINY, max_vms=5))
def test_conservation_per_way(mix):
    """Ways that only some VMs share hold no more than those ways' bytes."""
    vs, ms = mix
    state = model.solve(TINY, vs, ms)
    own = model.mask_matrix(ms, TINY.ways)
    for w in range(TINY.ways):
        # VMs confined to ways <= w cannot together hold more than ways 0..w.
        inside = [i for i in range(len(vs)) if not own[i, w + 1:].any()]
        assert state.occupancy[inside].sum() <= (w + 1) * TINY.way_bytes * (1 + 1e-9)


# --------------------------------------------------------------------------- monotonicity


@FAST
@given(vms(), st.integers(1, SKX.ways - 1))
def test_more_ways_never_more_misses_alone(vm, w):
    small = model.solve(SKX, [vm], [(1 << w) - 1])
    large = model.solve(SKX, [vm], [(1 << (w + 1)) - 1])
    assert large.miss_ratio[0] <= small.miss_ratio[0] + 1e-12
    assert large.misses[0] <= small.misses[0] * (1 + 1e-3) + 1e-6
    assert large.occupancy[0] >= small.occupancy[0] - 1e-6


@FAST
@given(vms(), st.lists(vms(), min_size=1, max_size=4), st.integers(1, 5), st.data())
def test_more_ways_never_more_misses_with_neighbours(vm, others, w, data):
    """VM 0 grows from w to w+1 ways; neighbours keep private masks disjoint from both."""
    free = list(range(w + 1, SKX.ways))            # ways left for the neighbours (at least 5)
    cuts = data.draw(st.lists(st.sampled_from(free[1:]), min_size=len(others) - 1,
                              max_size=len(others) - 1, unique=True))
    bounds = [free[0], *sorted(cuts), SKX.ways]
    nmasks = [((1 << (b - a)) - 1) << a for a, b in itertools.pairwise(bounds)]
    small = model.solve(SKX, [vm, *others], [(1 << w) - 1, *nmasks])
    large = model.solve(SKX, [vm, *others], [(1 << (w + 1)) - 1, *nmasks])
    assert large.miss_ratio[0] <= small.miss_ratio[0] + 1e-12
    assert large.misses[0] <= small.misses[0] * (1 + 1e-3) + 1e-6
    # The neighbours' occupancy does not move: their ways are private.
    np.testing.assert_allclose(large.occupancy[1:], small.occupancy[1:], rtol=1e-9)


def test_more_ways_in_a_shared_region_helps_the_cache_sensitive_vm():
    db = model.Vm("db", model.Curve(alpha=0.7, ws_bytes=20 * MIB, floor=0.01), apki=20, vcpus=4)
    stream = model.Vm("stream", model.Curve(alpha=0.02, ws_bytes=4096 * MIB, floor=0.5), apki=40, mlp=6)
    shared = model.solve(SKX, [db, stream], [0x7FF, 0x7FF])
    split = model.solve(SKX, [db, stream], [0x7FE, 0x001])
    assert split.misses[0] < shared.misses[0]
    assert split.speed[0] > shared.speed[0]
    # Occupancy is demand, not utility: sharing, the streaming VM holds more than its share of ways.
    assert shared.occupancy[1] > split.occupancy[1]


# --------------------------------------------------------------------------- floor, speed


@FAST
@given(vms(), st.integers(1, SKX.ways), st.lists(vms(), max_size=3))
def test_isolated_vm_whose_working_set_fits_reaches_its_floor(vm, w, others):
    vm = model.Vm("v", model.Curve(vm.curve.alpha, min(vm.curve.ws_bytes, w * SKX.way_bytes), vm.curve.floor),
                  apki=vm.apki, cpi0=vm.cpi0, vcpus=vm.vcpus, mlp=vm.mlp)
    free = SKX.ways - w
    others = others[:free]
    nmasks = [1 << (w + i) for i in range(len(others))]
    state = model.solve(SKX, [vm, *others], [(1 << w) - 1, *nmasks])
    assert state.miss_ratio[0] == vm.curve.floor
    assert state.occupancy[0] == pytest.approx(vm.curve.ws_bytes, rel=1e-12)


@FAST
@given(mixes())
def test_speed_at_most_one_when_sharing(mix):
    vs, ms = mix
    state = model.solve(SKX, vs, ms)
    assert (state.speed <= 1 + 1e-3).all()
    assert (state.speed > 0).all()


@FAST
@given(vms())
def test_alone_with_every_way_is_speed_one(vm):
    state = model.solve(SKX, [vm], [(1 << SKX.ways) - 1])
    assert state.speed[0] == pytest.approx(1.0, abs=1e-9)


# --------------------------------------------------------------------------- convergence


@FAST
@given(mixes(continuous=True))
def test_converges_with_private_masks(mix):
    """Private (disjoint) ways: the fixed point is reached (only the latency feedback iterates)."""
    vs, _ = mix
    vs = vs[: SKX.ways]
    state = model.solve(SKX, vs, [1 << i for i in range(len(vs))])
    assert state.converged


@FAST
@given(st.lists(vms(), min_size=1, max_size=8))
def test_converges_when_nothing_fits(vs):
    """Everyone shares all ways and no working set fits (no VM is capped): the fixed point is reached."""
    vs = [model.Vm("v", model.Curve(v.curve.alpha, 1024 * MIB, v.curve.floor), apki=v.apki, cpi0=v.cpi0,
                   vcpus=v.vcpus, mlp=v.mlp) for v in vs]
    state = model.solve(SKX, vs, [(1 << SKX.ways) - 1] * len(vs))
    assert state.converged


def test_converges_with_overlapping_masks_and_capped_vms():
    rng = np.random.default_rng(0)
    failures = 0
    for _ in range(100):
        n = int(rng.integers(2, 9))
        vs = []
        for i in range(n):
            a = rng.uniform(0, 0.9)
            ws = float(np.exp(rng.uniform(np.log(0.1 * MIB), np.log(64 * MIB))))
            fl = float(min(1.0, (ws / (0.25 * MIB)) ** -a))
            vs.append(model.Vm(f"v{i}", model.Curve(a, ws, fl), apki=rng.uniform(0.5, 60),
                               cpi0=rng.uniform(0.5, 1.5), vcpus=int(rng.integers(1, 9)),
                               mlp=rng.uniform(1, 8)))
        ms = []
        for _ in range(n):
            s = int(rng.integers(0, SKX.ways))
            ms.append(((1 << int(rng.integers(1, SKX.ways - s + 1))) - 1) << s)
        failures += not model.solve(SKX, vs, ms).converged
    assert failures == 0


def test_allocate_respects_caps():
    own = np.ones((6, 4))
    ws = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 100.0]) * MIB
    cap = model.allocate(np.array([1e9, 1e8, 1e7, 1e6, 1e5, 1e4]), own, 0.5 * MIB, ws)
    assert (cap <= ws * (1 + 1e-12)).all()
    assert cap.sum() <= 2 * MIB * (1 + 1e-12)


def test_allocate_gives_out_every_way_when_demand_exceeds_it():
    """Five VMs fit (1.5 MiB together), the sixth wants 100 MiB: all 2 MiB must be held."""
    own = np.ones((6, 4))
    ws = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 100.0]) * MIB
    cap = model.allocate(np.array([1e9, 1e8, 1e7, 1e6, 1e5, 1e4]), own, 0.5 * MIB, ws)
    np.testing.assert_allclose(cap, np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.5]) * MIB, rtol=1e-9)


# --------------------------------------------------------------------------- phases


def _times(hours: float = 48, step: str = "5min") -> pd.DatetimeIndex:
    return pd.date_range("2026-11-20", periods=int(hours * 60 / 5), freq=step, tz="UTC")


def test_diurnal_peaks_at_its_hour_and_stays_in_range():
    t = _times()
    load = phases.load_series([Phase("diurnal", low=0.2, high=0.9, peak=14.5)], t, np.random.default_rng(0))
    assert load.max() == pytest.approx(0.9)
    assert load.min() == pytest.approx(0.2, abs=1e-3)
    assert t[int(np.argmax(load))].hour == 14 and t[int(np.argmax(load))].minute == 30


def test_periodic_and_random_bursts():
    t = _times()
    ph = [Phase("constant", level=0.3),
          Phase("burst", high=1.0, every=pd.Timedelta("6h"), length=pd.Timedelta("30min"))]
    load = phases.load_series(ph, t, np.random.default_rng(0))
    hot = load == 1.0
    assert hot.sum() == 8 * 6          # 8 bursts of six 5-minute steps in 48 h
    assert set(np.unique(load)) == {0.3, 1.0}
    rnd = phases.load_series([Phase("constant", level=0.2), Phase("burst", per_day=6)], t,
                             np.random.default_rng(1))
    assert 0 < (rnd == 1.0).sum() < len(t) / 2


@given(st.lists(st.sampled_from(["constant", "diurnal", "burst"]), max_size=4), st.floats(0, 1),
       st.integers(0, 2**32))
@settings(max_examples=30, deadline=None)
def test_load_is_a_fraction(kinds, noise, seed):
    ph = [Phase(k) for k in kinds]
    load = phases.load_series(ph, _times(24), np.random.default_rng(seed), noise=noise)
    assert ((load >= 0) & (load <= 1)).all()


def test_growth_ramps_the_working_set():
    t = _times(24)
    f = phases.ws_series([Phase("growth", factor=3.0, start=pd.Timedelta("6h"), end=pd.Timedelta("18h"))], t)
    assert f[0] == 1.0 and f[-1] == 3.0
    assert (np.diff(f) >= 0).all()
    assert f[t.get_loc(pd.Timestamp("2026-11-20 12:00", tz="UTC"))] == pytest.approx(2.0)


def test_bad_phase_parameters_are_rejected():
    with pytest.raises(ValueError, match="low"):
        Phase("diurnal", low=0.9, high=0.1)
    with pytest.raises(ValueError, match="kind"):
        Phase("weekly")


# --------------------------------------------------------------------------- truth over time


@pytest.fixture(scope="module")
def small():
    return scenario.load_scenario(SCENARIOS / "small.toml")


@pytest.fixture(scope="module")
def small_truth(small):
    return list(truth.simulate(small))


def test_truth_shapes_and_conservation_over_time(small, small_truth):
    for ht in small_truth:
        T, n = len(ht.times), len(ht.host.vms)
        assert T == 72 and ht.times.tz is not None and str(ht.times.tz) == "UTC"
        for arr in (ht.occupancy, ht.bandwidth, ht.local_bandwidth, ht.misses, ht.speed, ht.load, ht.masks):
            assert arr.shape == (T, n)
        assert ht.masks.dtype == np.int64
        bits = np.vectorize(popcount)(ht.masks)
        assert (ht.occupancy <= bits * ht.host.preset.l3_bytes / ht.host.preset.ways * (1 + 1e-9)).all()
        for s in ht.host.sockets:
            idx = ht.host.socket_vms(s)
            assert (ht.occupancy[:, idx].sum(axis=1) <= ht.host.preset.l3_bytes * (1 + 1e-9)).all()
            assert ht.utilisation[s].shape == (T,)
        assert (ht.local_bandwidth <= ht.bandwidth + 1e-6).all()
        # Speed is relative to the VM alone at the same load: never above 1 (sharing only hurts).
        assert (ht.speed <= 1 + 1e-3).all()


def test_same_seed_same_truth(small, small_truth):
    again = list(truth.simulate(scenario.load_scenario(SCENARIOS / "small.toml")))
    for a, b in zip(small_truth, again, strict=True):
        for key in ("occupancy", "bandwidth", "local_bandwidth", "misses", "speed", "load", "masks"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    other = list(truth.simulate(small, seed=small.seed + 1))
    assert not np.array_equal(other[0].load, small_truth[0].load)


def test_truth_is_lazy_and_overridable(small):
    it = truth.simulate(small, duration=pd.Timedelta("1h").to_pytimedelta(),
                        step=pd.Timedelta("1min").to_pytimedelta())
    first = next(it)
    assert len(first.times) == 60 and first.times[0] == pd.Timestamp(small.start)


def test_mask_changes_take_effect_at_their_time(small, small_truth):
    ht = small_truth[0]
    j = [v.name for v in ht.host.vms].index("db")
    frame = pd.Series(ht.masks[:, j], index=ht.times)
    start = pd.Timestamp(small.start)
    assert frame[start] == 0x0FF
    assert frame[start + pd.Timedelta("1h55min")] == 0x0FF
    assert frame[start + pd.Timedelta("2h")] == 0x7FF
    assert frame[start + pd.Timedelta("4h")] == 0x7FF     # "default" = all ones
    assert ht.solves >= 3                                  # one solve per socket segment at least


def test_cdp_host_truth_uses_the_data_mask_and_growth(small_truth):
    ht = small_truth[1]
    assert ht.code_masks is not None
    j = [v.name for v in ht.host.vms].index("db")
    assert (ht.masks[:, j] == 0x3).all() and (ht.code_masks[:, j] == 0xC).all()
    assert ht.ws_bytes[-1, j] == pytest.approx(2 * ht.ws_bytes[0, j], rel=0.05)
