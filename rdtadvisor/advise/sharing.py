"""VMs sharing one partition: the pooled equilibrium in closed form, and KPart's greedy merges.

The CAT strategy (`rdtadvisor.advise.strategy`) evaluates thousands of "these VMs share w
ways" questions per socket (KPart's merge decisions, ``docs/algorithms.md``), and
every disjoint layout is a set of such pools. Both are answered here, vectorised.

**The pooled equilibrium** (``docs/algorithms.md``, "The sharing equilibrium"): VMs sharing
one pool of ``P`` bytes hold it in proportion to their insertion (miss) rates, none more
than its working set. With the curve model of `rdtadvisor.model.curvefit`
(``M(c) = r * max(f, min(1, (c / c0) ** -alpha))`` below the knee ``ws``, ``r * f`` at or
above it), the uncapped VMs satisfy ``c_i = lam * M_i(c_i)``
for one common ``lam`` [B s] (``lam = free bytes / their summed misses``). ``c - lam * M(c)``
increases with ``c`` (M never increases), so each VM's holding is a closed-form, increasing
function of ``lam``::

    c(lam) = min(ws, root)   root = lam r                        if lam r <= c0
                                    (lam r c0^alpha)^(1/(1+alpha)) up to the floor's start
                                    lam r f                      beyond it

and the pool's ``lam`` is found by bisection on ``sum_i c_i(lam) = P`` (everyone at its
working set when those fit). This is the fixed point `rdtadvisor.advise.whatif.equilibrium`
iterates towards with `rdtadvisor.cache.equilibrium.allocate` (each way shared in proportion to
pressure, water-filled under the working sets), solved directly: ~30 cheap passes instead of
up to 300 damped ones, for every pool size, ensemble member and candidate group at once.

**Greedy merging** (`merge_levels`): start from units (VM groups), repeatedly merge the pair
whose merge costs least, ``mean over w >= 2 of cost(a+b)[w] - min_x (cost(a)[x] +
cost(b)[w-x])`` (KPart's loss: sharing w ways vs the best private split of the same w), and
record every level. Pair losses are computed once per pair, in batches, and cached.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations

import numpy as np

from rdtadvisor.model.curvefit import C0_BYTES, misses_of

NEWTON_STEPS = 12        # safeguarded Newton passes on log(lam) (pools fill to ~1e-9)
Group = tuple[int, ...]


def pooled_capacity(params: Sequence[np.ndarray], pools: np.ndarray, c0: float = C0_BYTES) -> np.ndarray:
    """(C, ..., n) capacity [B] each VM holds when the VMs of the last axis share one pool, for each
    of the C `pools` [B] (module docstring). ``params`` = (log r, alpha, ws, floor) arrays of
    shape (..., n), broadcastable; a VM with ``log r = -inf`` (padding) holds nothing."""
    arrays = np.broadcast_arrays(*(np.asarray(p, dtype=float) for p in params))
    pools = np.asarray(pools, dtype=float).reshape((-1,) + (1,) * arrays[0].ndim)
    return shared_pools(tuple(a[None] for a in arrays), pools, c0)


def shared_pools(params: Sequence[np.ndarray], pools: np.ndarray, c0: float = C0_BYTES) -> np.ndarray:
    """(..., n) capacity [B] held by VMs sharing pools of `pools` bytes, one pool per row of the
    last axis: ``params`` (..., n) and ``pools`` broadcastable to (..., 1) (a disjoint layout is
    one pool per partition)."""
    log_r, alpha, ws, floor = np.broadcast_arrays(*(np.asarray(p, dtype=float) for p in params))
    pools = np.asarray(pools, dtype=float)
    ws = np.where(np.isfinite(ws), ws, np.inf)
    log_c0 = np.log(c0)
    inv = 1.0 / (1.0 + alpha)
    off_b = (log_r + alpha * log_c0) * inv
    with np.errstate(divide="ignore", invalid="ignore"):
        log_f = np.log(np.clip(floor, 0.0, 1.0))
        # where the floor starts: (c / c0) ** -alpha = f
        log_cf = np.where((alpha > 0) & (floor > 0), log_c0 - log_f / np.where(alpha > 0, alpha, 1.0), np.inf)
    off_c = log_r + log_f
    active = np.isfinite(log_r)
    total_r = np.where(active, np.exp(np.where(active, log_r, 0.0)), 0.0).sum(axis=-1, keepdims=True)
    lo = np.log(pools) - np.log(np.maximum(total_r, 1e-300))          # sum c <= lam * sum r: too small
    hi = lo + 60.0

    def held(log_lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Capacity held at ``lam`` and its elasticity d log c / d log lam (0 when capped)."""
        a = log_lam + log_r
        b = log_lam * inv + off_b
        with np.errstate(invalid="ignore"):
            on_b = (a > log_c0) & (b <= log_cf)
            root = np.where(a <= log_c0, a, np.where(on_b, b, log_lam + off_c))
        c = np.exp(np.where(active, root, -np.inf))
        capped = c >= ws
        return np.minimum(c, ws), np.where(capped, 0.0, np.where(on_b, inv, 1.0))

    # Safeguarded Newton on log(lam): sum c is increasing in lam; a step leaving the bracket
    # is replaced by bisection. Quadratic near the root, so a few passes suffice.
    log_pool = np.log(pools)
    x = lo
    for _ in range(NEWTON_STEPS):
        c, elasticity = held(x)
        total = c.sum(axis=-1, keepdims=True)
        over = total > pools
        hi = np.where(over, np.minimum(hi, x), hi)
        lo = np.where(over, lo, np.maximum(lo, x))
        slope = (c * elasticity).sum(axis=-1, keepdims=True) / np.maximum(total, 1e-300)
        if np.all((np.abs(total - pools) <= 1e-10 * pools) | ((slope == 0) & ~over)):
            break               # every pool full, or everyone at its working set
        with np.errstate(divide="ignore", invalid="ignore"):
            step = x - (np.log(np.maximum(total, 1e-300)) - log_pool) / slope
        inside = np.isfinite(step) & (step >= lo) & (step <= hi)
        x = np.where(inside, step, 0.5 * (lo + hi))
    c, _ = held(x)
    # never over the pool: scale the last iterate's small excess away
    total = c.sum(axis=-1, keepdims=True)
    return np.where(total > pools, c * (pools / np.maximum(total, 1e-300)), c)


def pooled_misses(params: Sequence[np.ndarray], pools: np.ndarray, c0: float = C0_BYTES) -> np.ndarray:
    """(C, ..., n) misses/s of the VMs sharing each pool (`pooled_capacity`)."""
    cap = pooled_capacity(params, pools, c0)
    log_r, alpha, ws, floor = np.broadcast_arrays(*(np.asarray(p, dtype=float) for p in params))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(log_r), misses_of(log_r, alpha, ws, floor, cap, c0), 0.0)


def padded(params: Sequence[np.ndarray], groups: Sequence[Group],
           ) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The (E, n) parameter arrays regrouped as (P, E, m) for P groups of up to m members, the
    missing members padded with ``log r = -inf`` (they hold and miss nothing); and the (P, m)
    member index (-1 for padding)."""
    m = max(len(g) for g in groups)
    idx = np.full((len(groups), m), -1, dtype=int)
    for k, g in enumerate(groups):
        idx[k, :len(g)] = g
    take = np.where(idx >= 0, idx, 0)
    out = []
    for j, p in enumerate(params):
        a = np.moveaxis(p[:, take], 0, 1)                   # (P, E, m)
        pad = -np.inf if j == 0 else (np.inf if j == 2 else 0.0)
        out.append(np.where((idx >= 0)[:, None, :], a, pad))
    return tuple(out), idx


def best_split(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P, W + 1): ``min over 1 <= x < w of a[:, x] + b[:, w - x]`` for w = 0..W (inf below 2)."""
    W = a.shape[-1] - 1
    w = np.arange(W + 1)[:, None]
    x = np.arange(W + 1)[None, :]
    ok = (x >= 1) & (x < w)
    sums = a[:, None, :] + np.take(b, np.clip(w - x, 0, W), axis=1)       # (P, w, x)
    return np.where(ok[None], sums, np.inf).min(axis=-1)


def merge_levels(units: Sequence[Group], top: int, cost: Callable[..., np.ndarray], *,
                 bottom: int = 2, can_merge: Callable[[Group], bool] | None = None,
                 columns: Sequence[int] | None = None) -> dict[int, list[Group]]:
    """KPart's greedy merge sequence: the groups at every level ``k`` from ``min(top, len(units))``
    down to `bottom` (module docstring).

    ``cost(groups)`` returns the (len(groups), W + 1) cost curves (misses, or negated value) of
    those groups each sharing w ways (column 0 repeats w = 1); ``cost(groups, cols)`` only the
    way counts ``cols``. A candidate merge's loss is averaged over ``columns`` (default: every
    w >= 2; a sample of them is cheaper, as only the groups that exist need whole curves).
    Merges ``can_merge`` refuses are never made, so the sequence may stop above `bottom`. Ties
    go to the pair with the smallest member tuples, so the result is deterministic. Levels are
    lists of sorted member tuples, sorted.
    """
    curves: dict[Group, np.ndarray] = {}
    losses: dict[tuple[Group, Group], float] = {}

    def ensure(groups: list[Group]) -> None:
        missing = list(dict.fromkeys(g for g in groups if g not in curves))
        if missing:
            curves.update(zip(missing, np.asarray(cost(missing), dtype=float), strict=True))

    current = sorted(tuple(sorted(u)) for u in units)
    ensure(current)
    ways = len(curves[current[0]]) - 1
    cols = np.arange(2, ways + 1) if columns is None else np.asarray(sorted(set(columns)), dtype=int)
    out: dict[int, list[Group]] = {}
    if len(current) <= top:
        out[len(current)] = list(current)
    while len(current) > bottom:
        fresh = [(a, b) for a, b in combinations(current, 2) if (a, b) not in losses]
        allowed = [(a, b) for a, b in fresh if can_merge is None or can_merge(tuple(sorted(a + b)))]
        for pair in fresh:
            losses.setdefault(pair, np.inf)
        if allowed and len(cols):
            merged = [tuple(sorted(a + b)) for a, b in allowed]
            cm = np.asarray(cost(merged, cols), dtype=float)
            ca = np.stack([curves[a] for a, _ in allowed])
            cb = np.stack([curves[b] for _, b in allowed])
            loss = (cm - best_split(ca, cb)[:, cols]).mean(axis=1)
            losses.update(zip(allowed, loss.tolist(), strict=True))
        pairs = list(combinations(current, 2))
        a, b = min(pairs, key=lambda p: (losses[p], p))
        if not np.isfinite(losses[(a, b)]):
            break
        current = sorted([g for g in current if g not in (a, b)] + [tuple(sorted(a + b))])
        ensure(current)
        if len(current) <= top:
            out[len(current)] = list(current)
    return out
