"""Distribution and trend figures per VM x socket, per VM and per socket.

Percentiles are numpy's linear interpolation (``numpy.quantile(method="linear")``, what
pandas and DuckDB's ``quantile_cont`` compute) over the per-collection figures of the
window, NaN figures skipped. Trends are Theil-Sen slopes (the median of pairwise slopes:
robust to bursts and outliers) over daily medians, in units per day; fewer than
`TREND_MIN_DAYS` days of data give no trend (a diurnal swing is not a trend).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence

import numpy as np

QUANTILES = (0.5, 0.95)
_KEY_LIMIT = 2.0**41  # B or B/s: 2 TiB(/s), far above any L3 or memory bandwidth
TREND_MIN_DAYS = 3


def column_stats(a: np.ndarray, qs: Sequence[float] = QUANTILES) -> np.ndarray:
    """Per column of a 2-D array: the `qs` quantiles, max, mean and count of its non-NaN values.

    Returns (n_columns, len(qs) + 3), NaN for empty columns (count 0). One column-wise sort
    (NaN sorts last), then the quantiles are read off by position: numpy's linear method.
    """
    n_cols = a.shape[1]
    out = np.full((n_cols, len(qs) + 3), np.nan)
    if n_cols == 0:
        return out
    srt = np.sort(a, axis=0)
    n = (~np.isnan(a)).sum(axis=0)
    has = n > 0
    cols = np.flatnonzero(has)
    for j, q in enumerate(qs):
        pos = q * (n[has] - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n[has] - 1)
        out[has, j] = srt[lo, cols] + (srt[hi, cols] - srt[lo, cols]) * (pos - lo)
    out[has, len(qs)] = srt[n[has] - 1, cols]
    out[has, len(qs) + 1] = np.nansum(a[:, has], axis=0) / n[has]
    out[:, len(qs) + 2] = n
    return out


def theil_sen(x: np.ndarray, y: np.ndarray) -> float:
    """The median of the pairwise slopes dy/dx (NaN pairs and equal x skipped); NaN if none."""
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if len(x) < 2:
        return float("nan")
    i, j = np.triu_indices(len(x), k=1)
    dx = x[j] - x[i]
    keep = dx != 0
    if not keep.any():
        return float("nan")
    return float(np.median((y[j] - y[i])[keep] / dx[keep]))


def daily_slopes(times: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Per column of `a` (rows at sorted `times`, datetime64): the Theil-Sen slope per day of
    its daily medians; NaN for columns with fewer than `TREND_MIN_DAYS` days of data."""
    day = times.astype("datetime64[D]")
    bounds = np.flatnonzero(np.r_[True, day[1:] != day[:-1], True])
    if len(bounds) - 1 < TREND_MIN_DAYS:
        return np.full(a.shape[1], np.nan)
    x = (day[bounds[:-1]] - day[0]).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN days of a column
        med = np.vstack([np.nanmedian(a[lo:hi], axis=0) for lo, hi in itertools.pairwise(bounds)])
    return np.array(
        [
            theil_sen(x, med[:, j]) if (~np.isnan(med[:, j])).sum() >= TREND_MIN_DAYS else np.nan
            for j in range(a.shape[1])
        ]
    )


def nanmedian_columns(a: np.ndarray) -> np.ndarray:
    """Per column of a 2-D array, `numpy.nanmedian` of it, bit for bit, in one sort: the middle
    value, or the mean of the two middle ones computed as (lo + hi) / 2 as numpy does; NaN for
    columns without values."""
    return _ranked(a, None)


def nanquantile_columns(a: np.ndarray, q: float) -> np.ndarray:
    """Per column of a 2-D array, ``numpy.nanquantile(column, q)`` (linear method), bit for bit:
    numpy's virtual index (n - 1) * q and its two-sided interpolation (``b - (b - a) * (1 - t)``
    from the upper neighbour when t >= 0.5)."""
    return _ranked(a, q)


def _ranked(a: np.ndarray, q: float | None) -> np.ndarray:
    n_cols = a.shape[1]
    out = np.full(n_cols, np.nan)
    if n_cols == 0 or a.shape[0] == 0:
        return out
    srt = np.sort(a, axis=0)  # NaN sorts last
    n = (~np.isnan(a)).sum(axis=0)
    has = n > 0
    cols = np.flatnonzero(has)
    n = n[has]
    if q is None:
        out[has] = (srt[(n - 1) // 2, cols] + srt[n // 2, cols]) / 2
        return out
    virtual = (n - 1).astype(np.float64) * q
    prev = np.floor(virtual)
    top = virtual >= n - 1
    lo = np.where(top, n - 1, prev.astype(np.int64))
    hi = np.where(top, n - 1, lo + 1)
    t = virtual - np.where(top, -1.0, prev)  # numpy's gamma; at the top both neighbours are the last
    below, above = srt[lo, cols], srt[hi, cols]
    diff = above - below
    out[has] = np.where(t >= 0.5, above - diff * (1 - t), below + diff * t)
    return out
