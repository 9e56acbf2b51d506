"""Per-collection figures: one row per (host, time, socket, domain) from the long ``samples`` table.

Xen's bandwidth figure is a 10 ms snapshot (``docs/xl-formats.md``, psr-cmt-show), so the collector
reads it N times per collection; the figure of a collection is the **median** of those
readings, never one shot. Occupancy is read once (its median is itself).

Columns of `per_collection` (units in the names):

=====================  ==========================================================
time, host             the collection
socket, domid, domain  where and who (``domain`` is the VM's name: its identity
                       across reboots and migrations; ``domid`` changes)
occupancy_bytes        L3 occupancy [B] (NaN when the cell was missing)
bw_total_bytes_s       total memory bandwidth [B/s], median of the readings
bw_local_bytes_s       local (this socket's memory) bandwidth [B/s]
bw_remote_bytes_s      total - local [B/s], clipped at 0 (the two readings are
                       separate 10 ms windows, so the raw difference can be < 0)
readings               how many total-bandwidth readings the median is of
=====================  ==========================================================

Pure functions over DataFrames; no I/O.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

FIGURES = [
    "time",
    "host",
    "socket",
    "domid",
    "domain",
    "occupancy_bytes",
    "bw_total_bytes_s",
    "bw_local_bytes_s",
    "bw_remote_bytes_s",
    "readings",
]
_METRIC_COLUMN = {
    "l3_occupancy": "occupancy_bytes",
    "mem_bw_total": "bw_total_bytes_s",
    "mem_bw_local": "bw_local_bytes_s",
}
_KEY = ["host", "time", "socket", "domid"]


def empty_figures() -> pd.DataFrame:
    """A `per_collection` frame with no rows."""
    return pd.DataFrame(
        {
            "time": pd.Series(dtype="datetime64[ns, UTC]"),
            "host": pd.Series(dtype="string"),
            "socket": pd.Series(dtype="int16"),
            "domid": pd.Series(dtype="int32"),
            "domain": pd.Series(dtype="string"),
            **{c: pd.Series(dtype="float64") for c in FIGURES[5:9]},
            "readings": pd.Series(dtype="int16"),
        }
    )


def per_collection(samples: pd.DataFrame) -> pd.DataFrame:
    """The figures of every (host, time, socket, domid): see the module docstring.

    `samples` is the store's ``samples`` table (any subset of its rows, any order). Rows
    come back sorted by host, time, socket, domid.
    """
    from rdtadvisor.model.cube import cubes

    parts = [c.to_long() for c in cubes(samples)]
    if not parts:
        return empty_figures()
    out = pd.concat(parts, ignore_index=True).sort_values(_KEY, kind="stable", ignore_index=True)
    return out[FIGURES].astype({"domain": "string", "host": "string", "socket": "int16", "domid": "int32"})


_HOURS = re.compile(r"^\s*(\d{1,2})(?::00)?\s*-\s*(\d{1,2})(?::00)?\s*$")


def parse_hours(text: str) -> tuple[int, int]:
    """``"09-17"`` -> (9, 17): the hours [start, end) of each day a window keeps.

    ``22-06`` wraps past midnight. Raises ValueError with a one-line message otherwise.
    """
    m = _HOURS.match(text)
    if m is None:
        raise ValueError(f"{text!r}: not an hour range; use HH-HH such as 09-17 or 22-06")
    start, end = int(m.group(1)), int(m.group(2))
    if not (0 <= start <= 23 and 0 <= end <= 24) or start == end:
        raise ValueError(f"{text!r}: hours must be 0-24 and the range not empty")
    return start, end


def in_hours(times: pd.Series, hours: tuple[int, int], tz: str = "UTC") -> np.ndarray:
    """A boolean mask of `times` whose hour of day (in `tz`) falls in `hours` [start, end)."""
    start, end = hours
    hour = pd.DatetimeIndex(times).tz_convert(tz).hour.to_numpy()
    if start < end:
        return (hour >= start) & (hour < end)
    return (hour >= start) | (hour < end)


def bucket_size(
    first: pd.Timestamp, last: pd.Timestamp, step: pd.Timedelta, points: int = 400
) -> pd.Timedelta:
    """A round bucket for time series of about `points` points over [first, last], never
    finer than the collection `step`: 1, 5, 15, 30 minutes, 1, 3, 6, 12 hours or 1 day."""
    span = max(last - first, pd.Timedelta(0))
    for minutes in (1, 5, 15, 30, 60, 180, 360, 720, 1440):
        size = pd.Timedelta(minutes=minutes)
        if size >= step and span / size <= points:
            return size
    return pd.Timedelta(days=1)


def collection_step(times: pd.Series) -> pd.Timedelta:
    """The usual interval between collections: the median gap between distinct times."""
    t = np.unique(pd.DatetimeIndex(times).as_unit("ns").asi8)
    if len(t) < 2:
        return pd.Timedelta(minutes=1)
    return pd.Timedelta(int(np.median(np.diff(t))), "ns")
