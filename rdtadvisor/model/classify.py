"""What kind of cache user each VM is on each socket, with the evidence in words.

Classes (checked in this order; thresholds in `Rules`):

``idle``
    p95 total bandwidth under ``idle_bw`` (1 MB/s): it neither misses nor reuses enough to
    matter; whatever occupancy it shows is lines nobody has evicted yet.
``streaming``
    Streaming or polluting: median bandwidth at least ``streaming_bw`` (1 GB/s) and either it
    misses at least ``streaming_intensity`` (2x) as much per byte of L3 it holds as the rest of
    the socket, or it holds at least a quarter of the L3 (insertion pressure) while its
    bandwidth never falls when it holds more: it holds cache and gains little from it.
``cache-sensitive`` (checked before streaming when the evidence is direct)
    It holds at least one way's worth of L3 at p95 and either, when its neighbours' bandwidth
    is high (top vs bottom quartile of the buckets), it holds less and its bandwidth rises:
    the neighbours' pressure moves its occupancy independently of its own load, so this is
    the direct evidence (confidence high; a VM's own load moves occupancy and bandwidth
    *together*, which is why its own correlation proves nothing); or it misses at most as
    much per byte held as the rest of the socket (it reuses what it holds; medium).
    Otherwise a VM holding at least a way is still called cache-sensitive, with confidence
    low and the figures that leave it open.
``light``
    Everything else: under one way's worth of L3 at p95 and modest bandwidth.

Occupancy is demand, not utility: a streaming VM holds a big share precisely because it misses
a lot, which is why the per-byte miss intensity, not occupancy, separates the classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from rdtadvisor.core.units import format_bytes
from rdtadvisor.model.curvefit import IDLE_BW, STREAMING_BW


@dataclass(frozen=True)
class Rules:
    idle_bw: float = IDLE_BW  # B/s
    streaming_bw: float = STREAMING_BW  # B/s, median
    streaming_intensity: float = 2.0  # x the rest of the socket's bandwidth per byte held
    streaming_share: float = 0.25  # or it holds this much of the L3 with no benefit
    memory_bound_bw: float = 4 * 1024**3  # B/s, median: no L3 share absorbs this much
    squeeze_occupancy: float = 0.1  # sensitive: occupancy this much lower under pressure
    squeeze_bandwidth: float = 0.05  # ... and bandwidth this much higher


class Buckets(NamedTuple):
    """One VM's bucketed figures in time order (NaN where it has none): what `classify` reads
    of its series, without a frame per VM."""

    occupancy: np.ndarray
    bandwidth: np.ndarray
    others: np.ndarray | None  # its neighbours' summed bandwidth

    @classmethod
    def of(cls, series: pd.DataFrame) -> Buckets:
        def col(name: str) -> np.ndarray:
            return series[name].to_numpy(dtype="float64", na_value=np.nan)

        others = col("others_bw_bytes_s") if "others_bw_bytes_s" in series else None
        return cls(col("occupancy_bytes"), col("bw_total_bytes_s"), others)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of the non-NaN pairs (NaN with fewer than 8 or no spread)."""
    ok = ~(np.isnan(x) | np.isnan(y))
    if ok.sum() < 8:
        return float("nan")
    rx = pd.Series(x[ok]).rank().to_numpy()
    ry = pd.Series(y[ok]).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def classify(
    vm: Mapping[str, float],
    socket_occ_p50: float,
    socket_bw_p50: float,
    l3_bytes: float,
    cbm_len: float,
    series: pd.DataFrame | Buckets | None,
    rules: Rules = Rules(),
) -> tuple[str, str, str]:
    """(class, evidence, confidence) for one VM on one socket.

    `vm` is a row of `stats.describe` over the per-collection figures (a Series or any mapping
    with its ``*_p50``/``*_p95`` figures); `socket_*_p50` the socket's summed medians; `series`
    this VM's bucketed ``occupancy_bytes``, ``bw_total_bytes_s`` and ``others_bw_bytes_s`` (its
    neighbours' summed bandwidth), as a frame or `Buckets`, or None.
    """
    if isinstance(series, pd.DataFrame):
        series = Buckets.of(series)
    bw50, bw95 = vm["bw_total_bytes_s_p50"], vm["bw_total_bytes_s_p95"]
    occ50, occ95 = vm["occupancy_bytes_p50"], vm["occupancy_bytes_p95"]
    if np.isnan(bw95):
        if np.isnan(occ95):
            return "light", "no figures in the window", "low"
        # Haswell has CMT but no MBM: occupancy alone cannot tell reuse from pollution.
        return "light", f"no bandwidth counters (occupancy p95 {format_bytes(occ95)})", "low"
    if bw95 < rules.idle_bw:
        return "idle", f"bandwidth p95 {_rate(bw95)} (< {_rate(rules.idle_bw)})", "high"
    way = l3_bytes / cbm_len if l3_bytes and cbm_len and cbm_len > 0 else 1024 * 1024
    squeeze = _squeeze(series)
    if occ95 >= way and squeeze is not None:
        occ_drop, bw_rise = squeeze
        if occ_drop >= rules.squeeze_occupancy and bw_rise >= rules.squeeze_bandwidth:
            return (
                "cache-sensitive",
                f"when its neighbours' bandwidth is high it holds {occ_drop:.0%} less "
                f"L3 and its bandwidth rises {bw_rise:.0%}: it misses more with less "
                "cache",
                "high",
            )
    rest_occ = max(socket_occ_p50 - occ50, 0.0)
    rest_bw = max(socket_bw_p50 - bw50, 0.0)
    own = bw50 / max(occ50, 64 * 1024)
    rest = rest_bw / rest_occ if rest_occ > 0 else np.nan
    ratio = own / rest if rest and rest > 0 else np.inf
    intensity = (
        f"{_times(ratio)} the misses per MiB held of the rest of the socket"
        if np.isfinite(ratio)
        else "the only user of the socket's bandwidth"
    )
    share = occ50 / l3_bytes if l3_bytes and l3_bytes > 0 else np.nan
    holds = f"holds {share:.0%} of L3" if np.isfinite(share) else f"holds {format_bytes(occ50)}"
    rho = _self_rho(series)
    if bw50 >= rules.streaming_bw:
        if ratio >= rules.streaming_intensity:
            return (
                "streaming",
                f"bandwidth p50 {_rate(bw50)}, {holds}, {intensity}: the cache it holds does it little good",
                "high" if np.isfinite(ratio) else "medium",
            )
        if share >= rules.streaming_share and not rho < 0:
            return (
                "streaming",
                f"bandwidth p50 {_rate(bw50)} and {holds}, yet its bandwidth never falls "
                f"when it holds more (rho {rho:+.2f}): it fills the cache it streams "
                "through",
                "medium",
            )
        if bw50 >= rules.memory_bound_bw:
            return (
                "streaming",
                f"bandwidth p50 {_rate(bw50)} with {holds}: memory-bound beyond what any L3 "
                "share could absorb",
                "medium",
            )
    if occ95 >= way:
        if ratio <= 1.0:
            return ("cache-sensitive", f"{holds} at p50 with {intensity}: it reuses what it holds", "medium")
        return (
            "cache-sensitive",
            f"{holds} at p50 with {intensity}; no direct evidence yet of what more or less cache does to it",
            "low",
        )
    return "light", f"{holds} at p50 (under one way), bandwidth p50 {_rate(bw50)}", "high"


def _squeeze(series: Buckets | None) -> tuple[float, float] | None:
    """(occupancy drop, bandwidth rise) of this VM when its neighbours' bandwidth is in its top
    quartile vs its bottom quartile: the neighbours' pressure is the instrument that moves its
    occupancy independently of its own load. None without 8 buckets with all three figures, or
    without spread."""
    if series is None or series.others is None:
        return None
    occ, bw, others = series
    ok = ~(np.isnan(occ) | np.isnan(bw) | np.isnan(others))
    if ok.sum() < 8:
        return None
    occ, bw, others = occ[ok], bw[ok], others[ok]
    lo, hi = np.quantile(others, [0.25, 0.75])
    if hi <= lo * 1.1:
        return None
    low, high = others <= lo, others >= hi
    occ_q, occ_p = np.median(occ[low]), np.median(occ[high])
    bw_q, bw_p = np.median(bw[low]), np.median(bw[high])
    if occ_q <= 0 or bw_q <= 0:
        return None
    return float(1 - occ_p / occ_q), float(bw_p / bw_q - 1)


def _self_rho(series: Buckets | None) -> float:
    if series is None:
        return float("nan")
    return spearman(series.occupancy, series.bandwidth)


def _rate(x: float) -> str:
    return format_bytes(x, rate=True)


def _times(x: float) -> str:
    return f"{x:.1f}x" if x < 10 else f"{x:.0f}x"
