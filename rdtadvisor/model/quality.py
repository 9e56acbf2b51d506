"""How far each figure can be trusted: coverage, dropped rows, overflows, errata, settling.

* **coverage**: samples seen / collections the host had while the VM existed (its first to
  last appearance in the window);
* **rows dropped**: ``parse-warning`` events where xl printed fewer socket cells than the
  header names (the row is ambiguous and dropped; the warning names the domain);
* **overflows**: ``counter-overflow`` events (xl gave up on a bandwidth reading);
* **occupancy over L3**: collections where a socket's summed occupancy exceeded its L3 size
  (CMT's upscaling factor and RMID reuse make this happen; such figures are capped nowhere);
* **settling**: after a mask change the occupancies lag for a while (lines are only evicted
  on demand); collections within `settle_for` of a change are marked, and their occupancy
  figures are left out of the distribution figures of that socket.

Confidence per figure: ``high`` (coverage >= 90%, median of >= 3 bandwidth readings, at
least 12 samples), ``medium`` (coverage >= 50%, at least 6 samples), else ``low``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

_DROPPED = re.compile(r"^domain '(.*)' \(id (-?\d+)\): .*row dropped")


def confidence(coverage: float, samples: float, readings: float) -> str:
    """``high`` / ``medium`` / ``low`` from coverage, sample count and bandwidth readings."""
    if coverage >= 0.9 and samples >= 12 and readings >= 3:
        return "high"
    if coverage >= 0.5 and samples >= 6:
        return "medium"
    return "low"


def confidences(coverage: np.ndarray, samples: np.ndarray, readings: np.ndarray) -> np.ndarray:
    """`confidence` of each element (NaN compares false, as there)."""
    high = (coverage >= 0.9) & (samples >= 12) & (readings >= 3)
    medium = (coverage >= 0.5) & (samples >= 6)
    return np.select([high, medium], ["high", "medium"], "low")


def dropped_rows(events: pd.DataFrame) -> pd.DataFrame:
    """Per (host, domain): rows xl printed ambiguously and the parser dropped (column ``dropped``)."""
    w = events[events["kind"] == "parse-warning"]
    names = w["message"].astype(str).str.extract(_DROPPED)[0]
    w = w.assign(domain=names).dropna(subset=["domain"])
    return w.groupby(["host", "domain"], observed=True).size().rename("dropped").reset_index()


def mask_changes(settings: pd.DataFrame) -> pd.DataFrame:
    """(host, socket, time) of every collection where some domain's L3 setting differed from its
    previous collection's (domains appearing for the first time do not count).

    A month of per-minute settings is millions of rows, so this lays them on a grid
    (collections x (host, socket, domain, setting)) and compares each collection with the
    last value seen before it, instead of sorting and grouping the rows.
    """
    l3 = settings[settings["setting"].isin(list(_L3_SETTINGS))]
    if l3.empty:
        return pd.DataFrame(
            {
                "host": pd.Series(dtype="string"),
                "socket": pd.Series(dtype="int16"),
                "time": pd.Series(dtype="datetime64[ns, UTC]"),
            }
        )
    t = pd.DatetimeIndex(l3["time"]).as_unit("ns").asi8
    tcode, tuniq = pd.factorize(t)
    order = np.argsort(tuniq)
    rank = np.empty(len(tuniq), dtype=np.int64)
    rank[order] = np.arange(len(tuniq))
    tcode = rank[tcode]
    key = np.zeros(len(l3), dtype=np.int64)
    for col in ("host", "socket", "domain", "setting"):
        codes, cats = pd.factorize(l3[col])
        key *= len(cats) + 1
        key += codes + 1
    slot, uniq = pd.factorize(key)
    first = np.empty(len(uniq), dtype=np.int64)
    first[slot[::-1]] = np.arange(len(slot))[::-1]  # a row of each slot, to name it
    grid = np.full((len(tuniq), len(uniq)), np.nan)
    grid[tcode, slot] = l3["value"].to_numpy(dtype="float64", na_value=np.nan)
    prev = pd.DataFrame(grid).ffill().shift(1).to_numpy()
    changed = ~np.isnan(grid) & ~np.isnan(prev) & (grid != prev)
    t_idx, s_idx = np.nonzero(changed)
    rows = first[s_idx]
    out = pd.DataFrame(
        {
            "host": l3["host"].to_numpy()[rows].astype(str),
            "socket": l3["socket"].to_numpy()[rows].astype("int16"),
            "time": pd.DatetimeIndex(tuniq[order][t_idx]).tz_localize("UTC"),
        }
    )
    return (
        out.drop_duplicates()
        .sort_values(["host", "socket", "time"], ignore_index=True)
        .astype({"host": "string"})
    )


_L3_SETTINGS = ("l3_cbm", "l3_code_cbm", "l3_data_cbm")


def settling_grid(
    times: np.ndarray, sockets: np.ndarray, changes: pd.DataFrame, settle_for: pd.Timedelta
) -> np.ndarray:
    """(len(times), len(sockets)) booleans: True where a column's socket had a mask change in
    [change, change + settle_for). `times` sorted datetime64[ns]; `changes` one host's rows of
    `mask_changes`; `sockets` the socket of each column."""
    out = np.zeros((len(times), len(sockets)), dtype=bool)
    t_ns = times.astype("datetime64[ns]").view("int64")
    for s in np.unique(sockets):
        starts = np.sort(pd.DatetimeIndex(changes.loc[changes["socket"] == s, "time"]).as_unit("ns").asi8)
        if len(starts):
            i = np.searchsorted(starts, t_ns, side="right") - 1
            inside = (i >= 0) & (t_ns < starts[np.maximum(i, 0)] + settle_for.value)
            out[:, sockets == s] = inside[:, None]
    return out


def settling_windows(changes: pd.DataFrame, settle_for: pd.Timedelta) -> pd.DataFrame:
    """The settling windows (host, socket, since, until), overlapping ones merged."""
    rows = []
    for (h, s), g in changes.groupby(["host", "socket"], observed=True, sort=True):
        start = end = None
        for t in sorted(g["time"]):
            if end is not None and t <= end:
                end = t + settle_for
                continue
            if start is not None:
                rows.append((h, s, start, end))
            start, end = t, t + settle_for
        if start is not None:
            rows.append((h, s, start, end))
    return pd.DataFrame.from_records(rows, columns=["host", "socket", "since", "until"])
