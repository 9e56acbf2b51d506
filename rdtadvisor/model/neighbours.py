"""Noisy neighbours: which VM hurts which on a socket, shown with windows and figures.

Input: one socket's bucketed series (median per bucket of ``occupancy_bytes`` and
``bw_total_bytes_s`` per domain: `Usage.series` of `rdtadvisor.model.usage`).

The test is an event study. For every candidate aggressor A:

1. A must burst: its **active** buckets are those where its bandwidth passes halfway from its
   median to its 98th percentile (and at least `Rules.swing` x its median), whatever the duty
   cycle; runs of them (one-bucket gaps bridged) are its **events**.
2. A must stand out from the socket: its bandwidth must rise `Rules.share_rise` times more
   than the rest of the socket's in its active buckets (VMs that all follow one daily curve
   never do, so a shared swing is not blamed on any one of them), and be at least
   `Rules.aggressor_share` of the socket's bandwidth then (insertion pressure, what evicts
   the others, follows its share of the misses).
3. Each event is compared with a **local baseline**: the buckets just before and after it in
   which A is quiet (at most its median), within `Rules.context` event lengths. Slow changes
   (a victim's own daily cycle) cancel out.

A victim V must, in the median event: hold `Rules.occupancy_drop` less L3 than in its
baseline while A holds more, and miss more per byte it still holds (bandwidth / occupancy up
by `Rules.intensity_rise`): squeezed, not merely quieter (a quieter VM's occupancy and
bandwidth fall together). A victim slowed by memory latency may show *less* bandwidth, which
is why the intensity and not the bandwidth is tested. At least `Rules.consistency` of the
events must show the drop. V must hold `Rules.min_occupancy` in its baseline and miss at
least `Rules.min_victim_bw` when A is quiet (a VM that hardly touches memory is not hurt
measurably by losing cache it barely uses).

Severity: ``critical`` when V loses half its cache or more, or the socket passes its bandwidth
capacity during A's events; ``warning`` otherwise. The score (0..1) ranks pairs: V's relative
occupancy loss, raised by its intensity rise.

`watcher_pairs` is OpenStack Watcher's ``noisy_neighbor`` rule for comparison: a VM whose
mean LLC over a period dropped by more than 35% against the previous period is a victim, and
any VM whose LLC rose by more than 35% in the same period is its aggressor. It looks at two
periods at a time and nothing else; ``benchmarks/bench_neighbours.py`` scores both on
simulated ground truth.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rdtadvisor.model.classify import spearman
from rdtadvisor.model.stats import nanmedian_columns, nanquantile_columns


@dataclass(frozen=True)
class Rules:
    swing: float = 1.25              # A's active bandwidth >= this x its median
    share_rise: float = 1.2          # A's active/quiet bandwidth >= this x the rest's
    context: float = 2.0             # baseline: quiet buckets within this many event lengths
    min_context: int = 2             # ... and at least this many buckets on each side
    occupancy_drop: float = 0.2      # V holds at least this much less in the median event
    intensity_rise: float = 0.1      # and misses this much more per byte held
    consistency: float = 0.6         # share of events showing a drop of at least half that
    min_occupancy: float = 512 * 1024   # V must hold this much in its baseline
    min_victim_bw: float = 100e6     # B/s: a VM missing less than this is not hurt measurably
    aggressor_share: float = 0.25    # A's share of the socket's bandwidth in its events: the
                                     # insertion pressure that evicts others is its miss share


@dataclass(frozen=True)
class Pair:
    aggressor: str
    victim: str
    severity: str
    score: float
    occupancy_drop: float  # V's relative loss in A's median event
    bandwidth_change: float  # V's relative bandwidth change in A's median event
    rho: float               # Spearman of A's and V's occupancy over all buckets (evidence only)
    evidence: dict = field(default_factory=dict)


def find_pairs(
    series: pd.DataFrame, *, capacity_bytes_s: float | None = None, rules: Rules = Rules()
) -> list[Pair]:
    """Aggressor/victim pairs on one socket, most severe first (see the module docstring).

    `series`: columns time (bucket start), domain, occupancy_bytes, bw_total_bytes_s.
    """
    occ_f = series.pivot_table(index="time", columns="domain", values="occupancy_bytes", observed=True)
    bw_f = series.pivot_table(index="time", columns="domain", values="bw_total_bytes_s", observed=True)
    if occ_f.shape[0] < 6 or bw_f.empty:
        return []
    bw_f = bw_f.reindex(index=occ_f.index, columns=occ_f.columns)
    return socket_pairs(
        pd.DatetimeIndex(occ_f.index),
        [str(c) for c in occ_f.columns],
        occ_f.to_numpy(dtype="float64", na_value=np.nan),
        bw_f.to_numpy(dtype="float64", na_value=np.nan),
        capacity_bytes_s=capacity_bytes_s,
        rules=rules,
    )


def socket_pairs(
    times: pd.DatetimeIndex,
    names: Sequence[str],
    occ: np.ndarray,
    bw: np.ndarray,
    *,
    capacity_bytes_s: float | None = None,
    rules: Rules = Rules(),
    screen: bool = True,
) -> list[Pair]:
    """`find_pairs` on one socket's bucket grid, without the pivot: `occ` and `bw` are
    (len(times), len(names)), NaN where a domain has no figure; `times` are the buckets where
    some domain has an occupancy and `names` the domains with one, sorted.

    `screen` tests the aggressor conditions that need no events on all columns at once
    (bit for bit what the per-aggressor test computes), so only the columns that pass them
    are examined one by one; False examines every column (the reference the tests compare).
    """
    if len(times) < 6 or np.isnan(bw).all():
        return []
    occ = np.ascontiguousarray(occ, dtype=np.float64)
    bw = np.ascontiguousarray(bw, dtype=np.float64)
    total = np.nansum(bw, axis=1)
    candidates = _aggressors(bw, total, rules) if screen else np.ones(bw.shape[1], dtype=bool)
    pairs: list[Pair] = []
    for ai in np.flatnonzero(candidates):
        pairs += _aggressor_pairs(int(ai), times, names, occ, bw, total, capacity_bytes_s, rules)
    return sorted(pairs, key=lambda p: (p.severity != "critical", -p.score, p.aggressor, p.victim))


def _aggressors(bw: np.ndarray, total: np.ndarray, rules: Rules) -> np.ndarray:
    """Per column: whether it passes the burst, rise and share tests of `_aggressor_pairs`,
    computed for every column at once with the same arithmetic (so the same floats)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        med = nanmedian_columns(bw)
        peak = nanquantile_columns(bw, 0.98)
        half, swing = med + 0.5 * (peak - med), rules.swing * med
        thr = np.where(swing > half, swing, half)  # max(half, swing) as Python picks it
        active = bw >= thr
        quiet = bw <= med
        ok = ~np.isnan(bw).all(axis=0) & ((med > 0) | (peak > 0))
        ok &= (active.sum(axis=0) >= 1) & (quiet.sum(axis=0) >= 3)
        rest = total[:, None] - np.nan_to_num(bw)
        a_quiet = _masked_medians(bw, quiet)
        a_ratio = np.where(a_quiet > 0, _masked_medians(bw, active) / a_quiet, np.inf)
        r_quiet = _masked_medians(rest, quiet)
        r_ratio = np.where(r_quiet > 0, _masked_medians(rest, active) / r_quiet, 1.0)
        ok &= a_ratio >= rules.share_rise * r_ratio
        share = bw / np.where(total > 0, total, np.nan)[:, None]
        ok &= _masked_medians(share, active) >= rules.aggressor_share
    return ok


def _masked_medians(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per column: `_med` of the column under its mask."""
    return nanmedian_columns(np.where(mask, x, np.nan))


def _aggressor_pairs(
    ai: int,
    times: pd.DatetimeIndex,
    names: Sequence[str],
    occ: np.ndarray,
    bw: np.ndarray,
    total: np.ndarray,
    capacity_bytes_s: float | None,
    rules: Rules,
) -> list[Pair]:
    """The pairs with column `ai` as the aggressor (empty if it is none)."""
    a = names[ai]
    a_bw = bw[:, ai]
    if np.isnan(a_bw).all():
        return []
    med, peak = np.nanmedian(a_bw), np.nanquantile(a_bw, 0.98)
    thr = max(med + 0.5 * (peak - med), rules.swing * med)
    active = a_bw >= thr
    quiet = a_bw <= med
    if not (med > 0 or peak > 0) or active.sum() < 1 or quiet.sum() < 3:
        return []
    # A's own rise must outpace the rest of the socket's (a shared daily swing does not)
    rest = total - np.nan_to_num(a_bw)
    a_ratio = _med(a_bw, active) / _med(a_bw, quiet) if _med(a_bw, quiet) > 0 else np.inf
    r_ratio = _med(rest, active) / _med(rest, quiet) if _med(rest, quiet) > 0 else 1.0
    if not a_ratio >= rules.share_rise * r_ratio:
        return []
    if not _med(a_bw / np.where(total > 0, total, np.nan), active) >= rules.aggressor_share:
        return []
    events = _events(active, quiet, rules)
    if not events:
        return []
    a_occ = occ[:, ai]
    a_rise = np.nanmedian([_rel(_med(a_occ, ev), _med(a_occ, base)) for ev, base in events])
    if not a_rise > 0:
        return []
    pairs = []
    for vi, v in enumerate(names):
        if vi == ai:
            continue
        v_occ, v_bw = occ[:, vi], bw[:, vi]
        drops, ints, bws, bases = [], [], [], []
        for ev, base in events:
            o_e, o_b = _med(v_occ, ev), _med(v_occ, base)
            b_e, b_b = _med(v_bw, ev), _med(v_bw, base)
            drops.append(-_rel(o_e, o_b))
            bws.append(_rel(b_e, b_b))
            ints.append(_rel(b_e / o_e if o_e > 0 else np.nan, b_b / o_b if o_b > 0 else np.nan))
            bases.append(o_b)
        drops_a = np.array(drops)
        ok = ~np.isnan(drops_a)
        if not ok.any() or not np.nanmedian(bases) >= rules.min_occupancy:
            continue
        if not _med(v_bw, quiet) >= rules.min_victim_bw:
            continue
        drop = float(np.nanmedian(drops_a))
        intensity = float(np.nanmedian(ints)) if not np.isnan(ints).all() else float("nan")
        consistent = float((drops_a[ok] >= rules.occupancy_drop / 2).mean())
        if not (drop >= rules.occupancy_drop and intensity >= rules.intensity_rise
                and consistent >= rules.consistency):
            continue
        bw_change = float(np.nanmedian(bws)) if not np.isnan(bws).all() else float("nan")
        util = (float(np.nanmedian(total[active])) / capacity_bytes_s
                if capacity_bytes_s and capacity_bytes_s > 0 else None)
        score = float(min(1.0, drop * (1 + max(intensity, 0.0))))
        critical = drop >= 0.5 or (util is not None and util >= 1.0)
        rho = spearman(a_occ, v_occ)
        all_base = np.zeros(len(times), dtype=bool)
        for _, base in events:
            all_base |= base
        pairs.append(Pair(
            aggressor=a, victim=v, severity="critical" if critical else "warning",
            score=round(score, 3), occupancy_drop=round(drop, 3),
            bandwidth_change=round(bw_change, 3) if np.isfinite(bw_change) else float("nan"),
            rho=round(rho, 3) if np.isfinite(rho) else float("nan"),
            evidence={
                "aggressor_bandwidth_bytes_s": {"quiet": _f(_med(a_bw, all_base)),
                                                "active": _f(_med(a_bw, active))},
                "aggressor_occupancy_bytes": {"quiet": _f(_med(a_occ, all_base)),
                                              "active": _f(_med(a_occ, active))},
                "victim_occupancy_bytes": {"quiet": _f(_med(v_occ, all_base)),
                                           "active": _f(_med(v_occ, active))},
                "victim_bandwidth_bytes_s": {"quiet": _f(_med(v_bw, all_base)),
                                             "active": _f(_med(v_bw, active))},
                "victim_misses_per_byte_change": round(intensity, 3),
                "events": len(events), "events_with_drop_share": round(consistent, 3),
                "occupancy_rho": round(rho, 3) if np.isfinite(rho) else None,
                "socket_bandwidth_utilisation_active": None if util is None else round(util, 3),
                "windows": _windows(times, events, v_occ, a_bw, v_bw),
            }))
    return pairs


def _events(active: np.ndarray, quiet: np.ndarray, rules: Rules) -> list[tuple[np.ndarray, np.ndarray]]:
    """(event buckets, local quiet baseline) masks for each run of active buckets."""
    idx = np.flatnonzero(active)
    runs, start = [], idx[0]
    for prev, cur in itertools.pairwise(idx):
        if cur - prev > 2:
            runs.append((start, prev))
            start = cur
    runs.append((start, idx[-1]))
    n = len(active)
    out = []
    for s, e in runs:
        width = max(rules.min_context, int(np.ceil(rules.context * (e - s + 1))))
        ev = np.zeros(n, dtype=bool)
        ev[s:e + 1] = active[s:e + 1]
        base = np.zeros(n, dtype=bool)
        base[max(0, s - width):s] = True
        base[e + 1:min(n, e + 1 + width)] = True
        base &= quiet
        if base.sum() >= 2:
            out.append((ev, base))
    return out


def _med(x: np.ndarray, mask: np.ndarray) -> float:
    v = x[mask]
    v = v[~np.isnan(v)]
    return float(np.median(v)) if len(v) else float("nan")


def _rel(x: float, ref: float) -> float:
    return float(x / ref - 1) if ref and ref > 0 and np.isfinite(x) else float("nan")


def _f(x: float, digits: int = 1) -> float | None:
    return None if not np.isfinite(x) else round(float(x), digits)


def _windows(times: pd.Index, events: list[tuple[np.ndarray, np.ndarray]], v_occ: np.ndarray,
             a_bw: np.ndarray, v_bw: np.ndarray, top: int = 3) -> list[dict]:
    """The `top` events worst for V, each with its figures against its own baseline."""
    step = times[1] - times[0] if len(times) > 1 else pd.Timedelta(0)
    out = []
    for ev, base in events:
        idx = np.flatnonzero(ev)
        o_e, o_b = _med(v_occ, ev), _med(v_occ, base)
        out.append({"start": _iso(times[idx[0]]), "end": _iso(times[idx[-1]] + step),
                    "victim_occupancy_bytes": _f(o_e), "victim_baseline_occupancy_bytes": _f(o_b),
                    "victim_occupancy_drop": _f(-_rel(o_e, o_b), 3),
                    "aggressor_bandwidth_bytes_s": _f(_med(a_bw, ev)),
                    "victim_bandwidth_bytes_s": _f(_med(v_bw, ev))})
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
