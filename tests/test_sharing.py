"""The pooled sharing equilibrium in closed form, and KPart's greedy merge levels."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rdtadvisor.advise.sharing import best_split, merge_levels, padded, pooled_capacity, pooled_misses
from rdtadvisor.advise.whatif import equilibrium
from rdtadvisor.model.curvefit import misses_of
from rdtadvisor.sim import baselines

MIB = 2**20


def _curves(seed: int, e: int, n: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    log_r = np.log(rng.uniform(1e3, 1e8, (e, n)))
    alpha = rng.uniform(0, 1.2, (e, n))
    knee = rng.random((e, n)) < 0.5
    ws = np.where(knee, rng.uniform(0.3, 30, (e, n)) * MIB, np.inf)
    floor = np.where(knee, rng.uniform(0.01, 0.5, (e, n)), np.where(rng.random((e, n)) < 0.3, 0.1, 0.0))
    return log_r, alpha, ws, floor


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 12))
def test_pool_is_shared_in_proportion_to_misses_and_capped_at_working_sets(seed, n):
    params = _curves(seed, 4, n)
    pools = np.array([0.5, 2.5, 7.5, 30.0, 200.0]) * MIB
    cap = pooled_capacity(params, pools)
    ws = params[2]
    # the pool is full unless every VM holds its whole working set
    want = np.minimum(pools[:, None], np.where(np.isfinite(ws), ws, np.inf).sum(axis=-1)[None])
    assert np.allclose(cap.sum(axis=-1), want, rtol=1e-8)
    assert (cap <= ws[None] * (1 + 1e-12)).all()
    # the uncapped VMs all hold the same bytes per miss/s (insertion-proportional sharing)
    m = misses_of(*(p[None] for p in params), cap)
    free = cap < ws[None] * (1 - 1e-6)
    per_miss = np.where(free, cap / m, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # rows where every VM is capped
        spread = np.nanmax(per_miss, axis=-1) / np.nanmin(per_miss, axis=-1)
    assert np.all(np.isnan(spread) | (spread < 1 + 1e-6))


def test_it_is_the_fixed_point_the_iterative_equilibrium_reaches():
    params = _curves(7, 6, 5)
    ways, way_bytes = 11, 2.5 * MIB
    own = np.ones((5, ways))                         # everyone in every way: one pool
    cap_iter, miss_iter, ok = equilibrium(*params, own, way_bytes)
    assert ok.all()
    cap = pooled_capacity(params, np.array([ways * way_bytes]))[0]
    assert np.allclose(cap, cap_iter, rtol=2e-3, atol=1e-3 * way_bytes)
    assert np.allclose(pooled_misses(params, np.array([ways * way_bytes]))[0], miss_iter, rtol=5e-3)


def test_padding_holds_and_misses_nothing():
    params = _curves(3, 2, 4)
    pp, idx = padded(params, [(0,), (1, 2, 3)])
    assert idx.tolist() == [[0, -1, -1], [1, 2, 3]]
    m = pooled_misses(pp, np.array([5 * MIB]))
    assert (m[0, 0, :, 1:] == 0).all()
    alone = pooled_misses(tuple(p[:, :1] for p in params), np.array([5 * MIB]))
    assert np.allclose(m[0, 0, :, :1], alone[0])


def test_best_split_is_the_brute_force_minimum():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 10, (3, 9)), rng.uniform(0, 10, (3, 9))
    got = best_split(a, b)
    for p in range(3):
        for w in range(9):
            want = min((a[p, x] + b[p, w - x] for x in range(1, w)), default=np.inf)
            assert got[p, w] == want


def test_merge_levels_follow_kpart_and_record_every_level():
    rng = np.random.default_rng(5)
    ways, n = 10, 6
    table = np.sort(rng.uniform(1, 100, (n, ways + 1)), axis=1)[:, ::-1]

    def curve_of(members):
        # a made-up sharing cost: the members' summed curves, a bit worse than private
        return table[list(members)].sum(axis=0) * (1 + 0.05 * (len(members) - 1))

    def cost(groups, cols=None):
        full = np.stack([curve_of(g) for g in groups])
        return full if cols is None else full[:, cols]

    levels = merge_levels([(i,) for i in range(n)], 4, cost)
    assert sorted(levels) == [2, 3, 4]
    for k, groups in levels.items():
        assert len(groups) == k and sorted(i for g in groups for i in g) == list(range(n))
    # KPart's rule, written out: merge the pair whose sharing loses least against its best split
    current = [(i,) for i in range(n)]
    while len(current) > 3:
        def loss(a, b):
            ca, cb = curve_of(a), curve_of(b)
            split = [min(ca[x] + cb[w - x] for x in range(1, w)) for w in range(2, ways + 1)]
            return float(np.mean(curve_of(tuple(sorted(a + b)))[2:] - split))
        a, b = min(((a, b) for i, a in enumerate(current) for b in current[i + 1:]), key=lambda p: loss(*p))
        current = sorted([g for g in current if g not in (a, b)] + [tuple(sorted(a + b))])
    assert levels[3] == current
    assert baselines.kpart_groups(n, 3, ways, curve_of) == current      # the harness's baseline uses it
    # refused merges are never made: the sequence stops instead
    alone = merge_levels([(i,) for i in range(n)], n, cost, can_merge=lambda g: 0 not in g)
    assert all((0,) in groups for groups in alone.values()) and min(alone) == 2


def test_a_sampled_loss_only_needs_whole_curves_of_groups_that_exist():
    rng = np.random.default_rng(9)
    n, ways = 7, 12
    table = np.sort(rng.uniform(1, 100, (n, ways + 1)), axis=1)[:, ::-1]
    asked: list[tuple] = []

    def cost(groups, cols=None):
        asked.append((tuple(groups), cols is None))
        full = np.stack([table[list(g)].sum(axis=0) * (1 + 0.05 * (len(g) - 1)) for g in groups])
        return full if cols is None else full[:, cols]

    levels = merge_levels([(i,) for i in range(n)], 3, cost, columns=[2, 6, 12])
    whole = [g for groups, is_whole in asked if is_whole for g in groups]
    # the 7 units and the one group each of the 5 merges makes; candidates only at 3 way counts
    assert len(whole) == len(set(whole)) == n + (n - 2)
    assert all(g in whole for groups in levels.values() for g in groups)
    assert {len(gs) for gs in levels.values()} == {2, 3}
