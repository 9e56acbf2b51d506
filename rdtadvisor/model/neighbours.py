"""Noisy neighbours: which VM hurts which on a socket, shown with windows and figures.

Input: one socket's bucketed series (median per bucket of ``occupancy_bytes`` and
``bw_total_bytes_s`` per domain: `series` of `rdtadvisor.model.usage`).

For every ordered pair (aggressor A, victim V) on the socket:

1. A must swing: its **active** buckets (bandwidth at or above its 75th percentile and at
   least `Rules.swing` x its median) and **quiet** buckets (at or below its median) both
   number at least `Rules.min_buckets`.
2. While A is active, V must lose cache: V's median occupancy in active buckets at least
   `Rules.occupancy_drop` lower than in quiet ones, and A's occupancy higher.
3. Across all buckets A's and V's occupancies move against each other (Spearman rho <=
   `Rules.rho`): one takes what the other loses.
4. V's bandwidth must not fall with its occupancy (it would if V's own load fell: then V is
   quieter, not squeezed); a rise is the cost of the lost cache, and strengthens the case.

Severity: ``critical`` when V loses half its cache or more and its bandwidth rises, or the
socket passes its bandwidth capacity while A is active; ``warning`` otherwise. The score
(0..1) ranks pairs: V's relative occupancy loss, raised by its bandwidth increase.

`watcher_pairs` is OpenStack Watcher's ``noisy_neighbor`` rule for comparison: a VM whose
mean LLC over a period dropped by more than 35% against the previous period is a victim, and
any VM whose LLC rose by more than 35% in the same period is its aggressor. It looks at two
periods at a time and nothing else, so diurnal swings that every VM shares, or one burst,
trip it; see ``benchmarks/bench_neighbours.py`` for the two side by side on simulated truth.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rdtadvisor.model.classify import spearman


@dataclass(frozen=True)
class Rules:
    swing: float = 1.25  # A's active bandwidth >= this x its median
    min_buckets: int = 3
    occupancy_drop: float = 0.2  # V's occupancy lower by at least this share while A is active
    rho: float = -0.4
    bandwidth_floor: float = -0.05  # V's bandwidth may fall at most this much while A is active
    min_occupancy: float = 1024 * 1024  # V must hold at least 1 MiB when A is quiet to be a victim


@dataclass(frozen=True)
class Pair:
    aggressor: str
    victim: str
    severity: str
    score: float
    occupancy_drop: float  # V's relative loss while A is active
    bandwidth_change: float  # V's relative bandwidth change while A is active
    rho: float
    evidence: dict = field(default_factory=dict)


def find_pairs(
    series: pd.DataFrame, *, capacity_bytes_s: float | None = None, rules: Rules = Rules()
) -> list[Pair]:
    """Aggressor/victim pairs on one socket, most severe first (see the module docstring).

    `series`: columns time (bucket start), domain, occupancy_bytes, bw_total_bytes_s.
    """
    occ = series.pivot_table(index="time", columns="domain", values="occupancy_bytes", observed=True)
    bw = series.pivot_table(index="time", columns="domain", values="bw_total_bytes_s", observed=True)
    if occ.shape[0] < 2 * rules.min_buckets or bw.empty:
        return []
    bw = bw.reindex(index=occ.index, columns=occ.columns)
    total_bw = bw.sum(axis=1, min_count=1)
    pairs = []
    for a in occ.columns:
        a_bw = bw[a].to_numpy(dtype="float64", na_value=np.nan)
        if np.isnan(a_bw).all():
            continue
        med, p75 = np.nanmedian(a_bw), np.nanquantile(a_bw, 0.75)
        active = a_bw >= max(p75, rules.swing * med)
        quiet = a_bw <= med
        if active.sum() < rules.min_buckets or quiet.sum() < rules.min_buckets or (med <= 0 and p75 <= 0):
            continue
        a_occ = occ[a].to_numpy(dtype="float64", na_value=np.nan)
        a_occ_rise = _rel(np.nanmedian(a_occ[active]), np.nanmedian(a_occ[quiet]))
        if not a_occ_rise > 0:
            continue
        for v in occ.columns:
            if v == a:
                continue
            v_occ = occ[v].to_numpy(dtype="float64", na_value=np.nan)
            v_bw = bw[v].to_numpy(dtype="float64", na_value=np.nan)
            quiet_occ = np.nanmedian(v_occ[quiet]) if (quiet & ~np.isnan(v_occ)).any() else np.nan
            if not quiet_occ >= rules.min_occupancy:
                continue
            drop = -_rel(np.nanmedian(v_occ[active]), quiet_occ)
            bw_change = (
                _rel(np.nanmedian(v_bw[active]), np.nanmedian(v_bw[quiet]))
                if (~np.isnan(v_bw[active])).any() and (~np.isnan(v_bw[quiet])).any()
                else np.nan
            )
            if not drop >= rules.occupancy_drop:
                continue
            rho = spearman(a_occ, v_occ)     # the costly test last
            if not rho <= rules.rho:
                continue
            if np.isfinite(bw_change) and bw_change < rules.bandwidth_floor:
                continue
            tb = total_bw.to_numpy(dtype="float64", na_value=np.nan)
            util = (
                float(np.nanmedian(tb[active])) / capacity_bytes_s
                if capacity_bytes_s and capacity_bytes_s > 0
                else None
            )
            rise = bw_change if np.isfinite(bw_change) else 0.0
            score = float(min(1.0, drop * (1 + max(rise, 0.0))))
            critical = (drop >= 0.5 and rise > 0) or (util is not None and util >= 1.0)
            pairs.append(
                Pair(
                    aggressor=str(a),
                    victim=str(v),
                    severity="critical" if critical else "warning",
                    score=round(score, 3),
                    occupancy_drop=round(float(drop), 3),
                    bandwidth_change=round(float(bw_change), 3) if np.isfinite(bw_change) else float("nan"),
                    rho=round(rho, 3),
                    evidence={
                        "aggressor_bandwidth_bytes_s": {
                            "quiet": _f(np.nanmedian(a_bw[quiet])),
                            "active": _f(np.nanmedian(a_bw[active])),
                        },
                        "aggressor_occupancy_bytes": {
                            "quiet": _f(np.nanmedian(a_occ[quiet])),
                            "active": _f(np.nanmedian(a_occ[active])),
                        },
                        "victim_occupancy_bytes": {
                            "quiet": _f(quiet_occ),
                            "active": _f(np.nanmedian(v_occ[active])),
                        },
                        "victim_bandwidth_bytes_s": {
                            "quiet": _f(np.nanmedian(v_bw[quiet])),
                            "active": _f(np.nanmedian(v_bw[active])),
                        },
                        "occupancy_rho": round(rho, 3),
                        "socket_bandwidth_utilisation_active": None if util is None else round(util, 3),
                        "active_buckets": int(active.sum()),
                        "quiet_buckets": int(quiet.sum()),
                        "windows": _windows(occ.index, active, v_occ, quiet_occ, a_bw, v_bw),
                    },
                )
            )
    return sorted(pairs, key=lambda p: (p.severity != "critical", -p.score, p.aggressor, p.victim))


def _rel(x: float, ref: float) -> float:
    return float(x / ref - 1) if ref and ref > 0 and np.isfinite(x) else float("nan")


def _f(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 1)


def _windows(
    times: pd.Index,
    active: np.ndarray,
    v_occ: np.ndarray,
    quiet_occ: float,
    a_bw: np.ndarray,
    v_bw: np.ndarray,
    top: int = 3,
) -> list[dict]:
    """Contiguous runs of active buckets (gaps of one bucket bridged), the worst `top` for V."""
    idx = np.flatnonzero(active)
    if not len(idx):
        return []
    runs, start = [], idx[0]
    for prev, cur in itertools.pairwise(idx):
        if cur - prev > 2:
            runs.append((start, prev))
            start = cur
    runs.append((start, idx[-1]))
    step = times[1] - times[0] if len(times) > 1 else pd.Timedelta(0)
    out = []
    for s, e in runs:
        sl = slice(s, e + 1)
        v = np.nanmedian(v_occ[sl]) if (~np.isnan(v_occ[sl])).any() else np.nan
        out.append(
            {
                "start": _iso(times[s]),
                "end": _iso(times[e] + step),
                "victim_occupancy_bytes": _f(v),
                "victim_occupancy_drop": _f(-_rel(v, quiet_occ)),
                "aggressor_bandwidth_bytes_s": _f(np.nanmedian(a_bw[sl])),
                "victim_bandwidth_bytes_s": _f(np.nanmedian(v_bw[sl]))
                if (~np.isnan(v_bw[sl])).any()
                else None,
            }
        )
    out.sort(key=lambda w: -(w["victim_occupancy_drop"] or 0))
    return out[:top]


def _iso(t: pd.Timestamp) -> str:
    return pd.Timestamp(t).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def watcher_pairs(series: pd.DataFrame, threshold: float = 0.35) -> set[tuple[str, str]]:
    """(aggressor, victim) pairs OpenStack Watcher's noisy_neighbor rule would flag, over every
    pair of consecutive buckets (its ``period``) of one socket's series."""
    occ = series.pivot_table(index="time", columns="domain", values="occupancy_bytes", observed=True)
    prev, cur = occ.shift(1).to_numpy(), occ.to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        change = cur / prev - 1
    names = [str(c) for c in occ.columns]
    out = set()
    for row in change[1:]:
        victims = [names[i] for i in np.flatnonzero(row < -threshold)]
        noisy = [names[i] for i in np.flatnonzero(row > threshold)]
        out |= {(a, v) for v in victims for a in noisy if a != v}
    return out
