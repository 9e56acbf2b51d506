"""Relative miss rates from occupancy shares, for CPUs that monitor occupancy but not bandwidth.

Haswell-EP (Xeon E5 v3) has CMT but no MBM: its store holds each domain's L3 occupancy and
no bandwidth, so `rdtadvisor.model.curvefit.points` finds no (capacity, misses/s) point at all. The
occupancy still says something (``docs/algorithms.md``, "The sharing equilibrium"): domains that
share ways hold them in proportion to their insertion (miss) rates, so within one **pool**
(the active domains whose masks overlap, at one collection) a domain's misses/s are its
occupancy times the pool's misses per byte held, ``m_i = kappa_p * O_i``. No counter shows
``kappa_p``, but with power-law curves ``m_i ∝ c ** -alpha_i`` the occupancies follow

    log O_i = beta_i * (a_i - log kappa_p),    beta_i = 1 / (1 + alpha_i),  a_i = log A_i,

and over many pools of different sizes (a calibration sweep fences every other domain into
W/4, W/2, 3/4 W, ... ways) this factor model gives every domain's ``beta`` up to one common
factor and every pool's ``log kappa_p`` up to an affine map (`factor_model`). The common
factor is fixed by an assumption on the flattest domain's exponent (the gauge, below): the
others are relative to it, and ``kappa_p`` is known up to one scale per socket. So `points`
turns occupancy into pseudo points (capacity held, misses/s) in **relative units** (the
socket's median summed pseudo bandwidth is `REFERENCE_BW`), which `rdtadvisor.model.curvefit.fit`
fits like measured ones.

What occupancy cannot show is carried as uncertainty, not guessed away (`relative_fit`):

* the **gauge**: the flattest domain's own exponent. A domain that filled its widest private
  level (no working set within 3/4 of the L3) is taken as flat, alpha 0, the draws spanning
  0-0.1 (`FLAT_GAUGE`; a wider range makes the plans hedge, leaving streamers ways they do
  not use: ``docs/results.md``); one whose working set fitted
  in its private ways is a cache user, so alpha 0.3, drawn 0.1-0.6 (`KNEE_GAUGE`; Hartstein
  et al.'s 0.3-0.7). Every exponent moves with it: ``1 + alpha_i`` scales by the same factor
  in a draw;
* the **scale**: how many misses/s a relative unit is. Occupancy cannot show it; the socket's
  memory traffic measured outside xl can (pcm-memory), and the planner scales the curves by
  it (`rdtadvisor.advise.strategy`, ``Policy.traffic``; without it a socket is declined);
* the **knee**: a domain alone in its widest private ways that holds clearly less than
  them (its high readings below `FILL` of them) has its working set there; its pooled points
  never reach it, so the knee comes from those readings and the floor beyond it is drawn (no
  reading shows it). One that filled them has no knee below what it held (`Alone`).

Points a domain took while it held its whole working set (at `CAPPED` of a knee seen alone)
are left out of the factor model: a capped domain holds less than its share, so its occupancy
says nothing of its misses. So are pools whose members hold more than their ways
(`OVERFULL`): CMT counts a domain's lines wherever they are, and after a fence the lines
left in ways the pool lost stay until something evicts them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from rdtadvisor.cache.curve import LINE_BYTES
from rdtadvisor.model.curvefit import (
    C0_BYTES,
    HUBER_K,
    OCC_QUANTUM,
    POINT_COLUMNS,
    SMALL_FRACTION,
    CurveFit,
    row_masks,
)

REFERENCE_BW = 10e9       # B/s: the socket's median summed pseudo bandwidth (the relative unit)
MIN_POOLED = 8            # pooled readings a domain needs for its exponent
ANCHOR_SHARE = 0.25       # ... and at least this share of the most any domain has
MIN_SPREAD = 0.2          # sd of u, and of log pool ways, over a domain's pools: below, no slope shows
OVERFULL = 1.1            # a pool whose members hold more than this x its ways still drains
FILL = 0.8                # alone, holding less than this share of its ways: its working set fits
CAPPED = 0.9              # pooled readings at this share of a knee seen alone are capped
# the flattest domain's exponent (the gauge): (point estimate, draws' low, draws' high)
FLAT_GAUGE = (0.0, 0.0, 0.1)    # it filled its widest private level (streaming-like), or was never alone
KNEE_GAUGE = (0.3, 0.1, 0.6)    # its working set fitted in its private ways: a cache user (0.3-0.7)
GAUGE_SEED = 20260227     # one gauge stream for every domain: draw e is coherent across them
ITERATIONS = 60           # rounds of `factor_model`'s alternating fit
# what a socket with relative curves lacks, and how to give it (advise cat's and whatif's words)
NO_TRAFFIC = ("no MBM on this CPU: the curves are relative (occupancy shares), and how much a plan changes "
              "depends on the socket's memory traffic, which xl cannot show: measure it (pcm-memory, or "
              "perf's uncore_imc CAS counts) and set [report] memory_traffic")


def occupancy_only(samples: pd.DataFrame) -> list[tuple[str, int]]:
    """(host, socket) pairs with occupancy readings but no bandwidth reading at all."""
    if samples.empty:
        return []
    has = samples.groupby(["host", "socket"], observed=True)["metric"].agg(
        lambda m: (bool((m == "l3_occupancy").any()), bool((m == "mem_bw_total").any())))
    return [(str(h), int(s)) for (h, s), (occ, bw) in has.items() if occ and not bw]


def _pools(masks: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: its pool id (rows of one group -- host, socket, time -- whose masks overlap,
    transitively) and the union of the pool's masks."""
    pool, union = np.arange(len(masks)), masks.astype(np.int64).copy()
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    for rows in np.split(order, bounds):
        if len(rows) > 1 and (masks[rows] == masks[rows[0]]).all():      # the usual case: one pool
            pool[rows] = rows.min()
            continue
        parts: list[tuple[int, list[int]]] = []       # (mask union, rows) per component
        for r in rows:
            m, merged = int(masks[r]), [int(r)]
            keep = []
            for um, ur in parts:
                if um & m:
                    m |= um
                    merged += ur
                else:
                    keep.append((um, ur))
            parts = [*keep, (m, merged)]
        for um, ur in parts:
            pool[ur], union[ur] = min(ur), um
    return pool, union


def factor_model(pool: np.ndarray, vm: np.ndarray, log_occ: np.ndarray, n_vms: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fit ``log_occ = beta[vm] * u[pool] + b[vm]`` by alternating robust least squares.

    Returns (beta, b, pools, u): ``u`` per distinct pool id (``pools``, sorted), normalised
    to mean 0 and sd 1 over the readings, so ``beta`` is in units of that spread; a domain
    whose readings do not span ``u`` gets ``beta`` nan. Huber weights tame the odd reading.
    """
    pools, p_idx = np.unique(pool, return_inverse=True)
    P = len(pools)
    beta, b = np.ones(n_vms), np.zeros(n_vms)
    for k in range(n_vms):
        sel = vm == k
        b[k] = float(np.median(log_occ[sel])) if sel.any() else 0.0
    w = np.ones(len(log_occ))
    u = np.zeros(P)
    for _ in range(ITERATIONS):
        den = np.bincount(p_idx, w * beta[vm] ** 2, P)
        u = np.bincount(p_idx, w * beta[vm] * (log_occ - b[vm]), P) / np.maximum(den, 1e-12)
        u = np.where(den > 0, u, 0.0)
        mu, sd = np.average(u[p_idx], weights=w), np.sqrt(np.cov(u[p_idx], aweights=w))
        u = (u - mu) / max(float(sd), 1e-12)
        for k in range(n_vms):
            sel = vm == k
            x, y, ww = u[p_idx[sel]], log_occ[sel], w[sel]
            if len(x) < 3 or np.ptp(x) < 1e-9:
                beta[k], b[k] = np.nan, float(np.median(y)) if len(y) else 0.0
                continue
            xm, ym = np.average(x, weights=ww), np.average(y, weights=ww)
            beta[k] = float(np.sum(ww * (x - xm) * (y - ym)) / max(np.sum(ww * (x - xm) ** 2), 1e-12))
            b[k] = ym - beta[k] * xm
        res = log_occ - np.nan_to_num(beta[vm]) * u[p_idx] - b[vm]
        s = max(1.4826 * float(np.median(np.abs(res))), 0.02)
        w = np.minimum(1.0, HUBER_K * s / np.maximum(np.abs(res), 1e-12))
        beta = np.where(np.isfinite(beta), beta, 1.0)       # keep a usable start for the next round
    for k in range(n_vms):
        sel = vm == k
        if sel.sum() < 3 or np.ptp(u[p_idx[sel]]) < 1e-9:
            beta[k] = np.nan
    if np.isfinite(beta).any() and np.nanmedian(beta) < 0:   # orient u: occupancies grow with it
        beta, u = -beta, -u
    return beta, b, pools, u


def points(samples: pd.DataFrame, settings: pd.DataFrame | None, l3_bytes: dict[tuple[str, int], float]
           ) -> tuple[pd.DataFrame, dict[tuple[str, int, int], Alone], dict[tuple[str, int], tuple]]:
    """Pseudo points (`rdtadvisor.model.curvefit.POINT_COLUMNS`) for the occupancy-only sockets of
    `samples`, what each domain held alone ((host, socket, domid) -> `Alone`) and each
    socket's gauge ((host, socket) -> `FLAT_GAUGE` or `KNEE_GAUGE`, by its flattest domain).

    ``misses_per_s`` and ``bandwidth_bytes_s`` are in relative units (see the module docstring);
    ``alone`` is False (a pooled reading shares its ways by definition); ``others_bandwidth``
    is the summed pseudo bandwidth of the rest of its pool.
    """
    out: list[pd.DataFrame] = []
    alone_at: dict[tuple[str, int, int], Alone] = {}
    gauges: dict[tuple[str, int], tuple] = {}
    for host, socket in occupancy_only(samples):
        s = samples[(samples["host"] == host) & (samples["socket"] == socket)
                    & (samples["metric"] == "l3_occupancy")]
        key = ["host", "socket", "domid", "domain", "time"]
        occ = s.groupby(key, observed=True, dropna=False)["value"].median().dropna().reset_index()
        occ = occ.rename(columns={"value": "occupancy_bytes"})
        occ["occupancy_bytes"] = occ["occupancy_bytes"].astype(float)
        l3 = l3_bytes.get((host, socket))
        if occ.empty or not l3:
            continue
        masks, known = row_masks(occ, settings)
        width = int(max(int(masks.max()).bit_length(), 1))
        way_bytes = l3 / width
        c = occ["occupancy_bytes"].to_numpy(float)
        active = c >= OCC_QUANTUM
        masks = np.where(active, masks, 0)             # an idle domain takes no part in a pool
        group = pd.factorize(occ["time"])[0]
        pool, union = _pools(masks, np.where(active, group, -1 - np.arange(len(c))))
        pool = np.where(active, pool, -1)
        size = pd.Series(pool[active]).value_counts()
        members = np.zeros(len(c), dtype=int)
        members[active] = size.reindex(pool[active]).to_numpy()
        domid = occ["domid"].to_numpy()
        pool_union = np.bitwise_count(union.astype(np.uint64)).astype(int)   # ways of each row's pool
        own_ways = np.bitwise_count(masks.astype(np.uint64)).astype(int)
        held_alone = _held_alone(c, domid, active & (members == 1) & known, own_ways, way_bytes)
        alone_at.update({(host, socket, d): a for d, a in held_alone.items()})
        ws_seen = {d: a.held for d, a in held_alone.items() if a.fits}
        ws_row = np.array([ws_seen.get(int(d), np.inf) for d in domid])
        # CMT counts a domain's lines wherever they are: after a fence, lines left in ways the
        # pool lost stay until something evicts them (for ever, when the VM alone there holds
        # less than them). A pool whose members hold more than its ways is not in equilibrium.
        pool_held = pd.Series(np.where(active, c, 0.0)).groupby(pool).transform("sum").to_numpy()
        settled = pool_held <= OVERFULL * pool_union * way_bytes
        pooled = active & (members >= 2) & settled
        use = pooled & (c >= 2 * OCC_QUANTUM) & (c < CAPPED * ws_row)
        if use.sum() < MIN_POOLED:
            continue
        vm_ids, vm = np.unique(domid[use], return_inverse=True)
        beta, _, pools, u = factor_model(pool[use], vm, np.log(c[use]), len(vm_ids))
        u_of = u[np.searchsorted(pools, pool[use])]
        n_of = np.bincount(vm, minlength=len(vm_ids))
        # The slope needs pools of different sizes: with every domain in one pool (default masks
        # only) u follows the load swings, which move a domain's occupancy and misses together
        # (the shared-periods bias of `rdtadvisor.model.curvefit.fit`, with no rate to pin it): no curve.
        pool_bytes = np.log(np.maximum(pool_union[use], 1)).astype(float)
        sizes = np.array([np.std(pool_bytes[vm == k]) if n_of[k] else 0.0 for k in range(len(vm_ids))])
        spread = np.array([np.std(u_of[vm == k]) if n_of[k] else 0.0 for k in range(len(vm_ids))])
        # the anchor must be a domain seen throughout, not one with a few stray readings (an idle
        # Domain-0 holding lines a fence left behind)
        enough = n_of >= max(MIN_POOLED, ANCHOR_SHARE * n_of.max())
        usable = (np.isfinite(beta) & (beta > 0) & enough & (spread >= MIN_SPREAD) & (sizes >= MIN_SPREAD))
        if not usable.any():
            continue
        # u grows as the pool's misses per byte fall (log O = beta (log A - log kappa)); the
        # flattest domain (largest beta) has the gauge's exponent a0, so
        # log kappa = -(1 + a0) beta_max u. Every active reading in a pool with a kappa becomes
        # a point, capped ones too: a capped domain misses at least kappa x what it holds (it
        # would hold more otherwise), which is what its class prior anchors on.
        known_pool = np.isin(pool, np.unique(pool[use][usable[vm]])) & pooled
        anchor = int(vm_ids[np.flatnonzero(usable)[np.argmax(beta[usable])]])
        gauge = KNEE_GAUGE if anchor in ws_seen else FLAT_GAUGE
        gauges[(host, socket)] = gauge
        u_row = u[np.clip(np.searchsorted(pools, pool), 0, len(pools) - 1)]
        log_kappa = -(1 + gauge[0]) * float(beta[usable].max()) * u_row
        rows = occ[known_pool].copy()
        rows["misses_per_s"] = np.exp(log_kappa[known_pool] + np.log(c[known_pool]))
        total = rows.groupby("time")["misses_per_s"].sum()
        rows["misses_per_s"] *= REFERENCE_BW / LINE_BYTES / float(np.median(total))
        rows["bandwidth_bytes_s"] = rows["misses_per_s"] * LINE_BYTES
        rows["readings"] = 1
        rows["alone"] = False
        rows["ways"] = own_ways[known_pool].astype(float)
        pool_bw = rows.groupby(pool[known_pool])["bandwidth_bytes_s"].transform("sum")
        rows["others_bandwidth"] = pool_bw.to_numpy() - rows["bandwidth_bytes_s"].to_numpy()
        out.append(rows[POINT_COLUMNS])
    if not out:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in POINT_COLUMNS}), alone_at, gauges
    return pd.concat(out, ignore_index=True), alone_at, gauges


@dataclass(frozen=True)
class Alone:
    """What a domain held alone at its widest private level [B], and whether that was clearly
    less than the level (`FILL`): its working set fitted there."""

    held: float
    fits: bool


def _held_alone(c: np.ndarray, domid: np.ndarray, alone: np.ndarray, own_ways: np.ndarray,
                way_bytes: float) -> dict[int, Alone]:
    """Per domain seen alone in its ways (rows `alone`): what it held at its widest such level.

    Holding clearly less than that level, the working set fitted there (a knee); filling it,
    the working set is at least that big. Only the widest level counts, and its high readings
    (90th percentile): lines fill for a few collections after a mask change, and a narrow
    level shows the same shortfall."""
    out = {}
    for d in np.unique(domid[alone]):
        mine = alone & (domid == d)
        most = own_ways[mine].max()
        held = float(np.quantile(c[mine & (own_ways == most)], 0.9))
        out[int(d)] = Alone(held, held < FILL * most * way_bytes)
    return out


def relative_fit(fit: CurveFit, alone: Alone | None, gauge: tuple[float, float, float] = FLAT_GAUGE, *,
                 seed: int, l3_bytes: float = float("inf")) -> CurveFit:
    """`fit` of pseudo points made honest about what occupancy cannot show (module docstring):
    a knee seen alone, the floor beyond it drawn, no knee below what it filled alone, and the
    gauge drawn into every exponent.

    Draw ``e`` uses the same gauge for every domain of a socket (same `GAUGE_SEED` stream), so
    the planner's ensemble members stay coherent across domains.
    """
    rng = np.random.default_rng(seed)
    d = fit.draws.copy()
    alpha, ws, floor, kind = fit.alpha, fit.ws_bytes, fit.floor, fit.kind
    pivot = max(np.log(max(fit.median_occupancy, C0_BYTES) / C0_BYTES), 0.0)
    note = ""
    knee = alone.held if alone is not None and alone.fits else None
    if alone is not None and not alone.fits and ws < alone.held:
        # it filled its private ways: no knee below what it held there, whatever the pooled
        # points (which bend as the VM's load swings) suggested
        ws, floor = float("inf"), 0.0
        low = d[:, 2] < alone.held
        d[low, 2], d[low, 3] = np.inf, 0.0
        note = f"; no knee below the {alone.held / 2**20:.1f} MiB it filled alone"
        if kind == "small":
            kind = "sensitive"
    # alone, it held `knee` and no more: that is its working set, whatever the pooled points
    # (which never reach it, or bend below it as the VM's load swings) suggested
    if knee is not None and knee >= C0_BYTES and not (knee / 1.2 <= ws <= 1.2 * knee):
        power = min(1.0, (knee / C0_BYTES) ** -alpha)
        ws, floor = knee, power * 0.5           # the floor's draws span 0.05-1 x the power law there
        d[:, 2] = knee * rng.uniform(1.0, 1.1, len(d))
        d_power = np.minimum(1.0, (d[:, 2] / C0_BYTES) ** -d[:, 1])
        d[:, 3] = d_power * rng.uniform(0.05, 1.0, len(d))
        note = f"; knee {knee / 2**20:.1f} MiB seen alone in its ways, the floor beyond it unseen"
        if kind in ("small", "sensitive"):
            kind = "small" if knee < SMALL_FRACTION * l3_bytes else "sensitive"
    base, lo, hi = gauge
    anchor = np.random.default_rng(GAUGE_SEED).uniform(lo, hi, len(d))
    new_alpha = (1 + d[:, 1]) * (1 + anchor) / (1 + base) - 1
    shift = new_alpha - d[:, 1]
    d[:, 0] += shift * pivot                                # pinned at the median occupancy
    knee_at = np.maximum(np.log(np.where(np.isfinite(d[:, 2]), d[:, 2], 1.0) / C0_BYTES), 0.0)
    d[:, 3] *= np.exp(-shift * knee_at)                     # the same cliff at the knee
    d[:, 1] = new_alpha
    d[:, 3] = np.minimum(d[:, 3], 1.0)
    anchored = ("flat" if base == 0 else f"alpha {base:.1f} (its working set fitted in its ways)")
    reason = (f"no MBM: relative curve from occupancy shares (the flattest domain taken as {anchored}, "
              f"{lo:.1f}-{hi:.1f} in the band; misses in relative units); {fit.reason}{note}")
    return replace(fit, alpha=alpha, ws_bytes=ws, floor=floor, kind=kind, draws=d, reason=reason,
                   relative=True)


def scaled(fit: CurveFit, factor: float) -> CurveFit:
    """A relative curve in misses/s: its rates (best estimate, draws, median bandwidth) times
    `factor`, the socket's measured memory traffic over its relative curves' summed median
    bandwidth (what `rdtadvisor.advise.strategy` and `rdtadvisor.advise.whatif` scale by)."""
    d = fit.draws.copy()
    if len(d):
        d[:, 0] += np.log(factor)
    return replace(fit, r=fit.r * factor, median_bandwidth=fit.median_bandwidth * factor, draws=d)
