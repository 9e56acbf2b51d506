"""Distribution and trend figures per VM x socket, per VM and per socket.

Percentiles are numpy's linear interpolation (``numpy.quantile(method="linear")``, what
pandas and DuckDB's ``quantile_cont`` compute) over the per-collection figures of the
window, NaN figures skipped. Trends are Theil-Sen slopes (the median of pairwise slopes:
robust to bursts and outliers) over daily medians, in units per day; fewer than
`TREND_MIN_DAYS` days of data give no trend (a diurnal swing is not a trend).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

QUANTILES = (0.5, 0.95)
_KEY_LIMIT = 2.0**41  # B or B/s: 2 TiB(/s), far above any L3 or memory bandwidth
TREND_MIN_DAYS = 3
VALUE_COLUMNS = ["occupancy_bytes", "bw_total_bytes_s", "bw_local_bytes_s", "bw_remote_bytes_s"]


def grouped_quantiles(
    codes: np.ndarray, values: np.ndarray, n_groups: int, qs: Sequence[float] = QUANTILES
) -> np.ndarray:
    """Per group: the `qs` quantiles, the max, the mean and the count of non-NaN `values`.

    `codes` are group numbers 0..n_groups-1. Returns an (n_groups, len(qs) + 3) array
    (NaN for groups without values; count as float). One sort of all values, not one per
    group: this is the hot loop of a month-long report.
    """
    ok = ~np.isnan(values)
    c, v = codes[ok], values[ok]
    if (
        len(v)
        and v.min() >= 0
        and v.max() < _KEY_LIMIT
        and n_groups < 2**20
        and np.all(v * 2 == np.round(v * 2))
    ):
        # Figures are whole bytes (or halves: medians of two readings): one int64 sort of
        # (group << 42 | 2 v) orders by group then value, ~3x faster than a two-key lexsort.
        key = np.sort((c.astype(np.int64) << 42) | (v * 2).astype(np.int64))
        c, v = key >> 42, (key & (2**42 - 1)) / 2.0
    else:
        order = np.lexsort((v, c))
        c, v = c[order], v[order]
    counts = np.bincount(c, minlength=n_groups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    out = np.full((n_groups, len(qs) + 3), np.nan)
    has = counts > 0
    for j, q in enumerate(qs):
        pos = starts[has] + q * (counts[has] - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, starts[has] + counts[has] - 1)
        frac = pos - lo
        out[has, j] = v[lo] + (v[hi] - v[lo]) * frac
    out[has, len(qs)] = v[starts[has] + counts[has] - 1]
    sums = np.bincount(c, weights=v, minlength=n_groups)
    out[has, len(qs) + 1] = sums[has] / counts[has]
    out[:, len(qs) + 2] = counts
    return out


def describe(frame: pd.DataFrame, by: list[str], columns: Sequence[str] = VALUE_COLUMNS) -> pd.DataFrame:
    """Per group of `by`: ``<column>_p50``, ``_p95``, ``_max``, ``_mean``, ``_n`` for each column."""
    keys = frame[by]
    codes, uniques = _factorize(keys)
    n = len(uniques)
    out = uniques.copy()
    for col in columns:
        stats = grouped_quantiles(codes, frame[col].to_numpy(dtype="float64", na_value=np.nan), n)
        for j, name in enumerate(["p50", "p95", "max", "mean", "n"]):
            out[f"{col}_{name}"] = stats[:, j]
    return out


def _factorize(keys: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Group numbers for the rows of `keys` and the distinct keys (sorted), as a frame."""
    if len(keys.columns) == 1:
        codes, uniq = pd.factorize(keys.iloc[:, 0], sort=True)
        return codes, pd.DataFrame({keys.columns[0]: uniq})
    g = keys.groupby(list(keys.columns), sort=True, observed=True, dropna=False)
    codes = g.ngroup().to_numpy()
    uniq = g.size().reset_index()[list(keys.columns)]
    return codes, uniq


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


def daily_trends(frame: pd.DataFrame, by: list[str], columns: Sequence[str]) -> pd.DataFrame:
    """Per group: Theil-Sen slope per day of each column's daily medians (``<column>_per_day``).

    NaN where the group has fewer than `TREND_MIN_DAYS` days with data.
    """
    day = frame["time"].dt.floor("D")
    daily = frame[[*by, *columns]].assign(day=day).groupby([*by, "day"], observed=True, sort=True).median()
    daily = daily.reset_index()
    days = (daily["day"] - daily["day"].min()).dt.total_seconds().to_numpy() / 86400.0
    daily["_x"] = days
    rows = []
    for key, g in daily.groupby(by, observed=True, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        slopes = [
            theil_sen(g["_x"].to_numpy(), g[c].to_numpy(dtype="float64", na_value=np.nan))
            if g[c].notna().sum() >= TREND_MIN_DAYS
            else np.nan
            for c in columns
        ]
        rows.append((*key, *slopes))
    return pd.DataFrame.from_records(rows, columns=[*by, *(f"{c}_per_day" for c in columns)])
