"""What each socket has and how much of it is in use: L3 size, bandwidth capacity, COS and RMIDs.

`socket_capacity` returns one row per (host, socket):

======================  =====================================================================
l3_bytes                L3 size [B] (``psr-hwinfo``, or 4.5's occupancy header); NaN unknown
cbm_len, cdp            the CAT mask length in ways and whether CDP is on (NaN / False unknown)
cos_used, cos_budget    distinct non-default CAT settings in the latest collection vs the
                        classes a socket can hold (``cache.cbm.cos_needed``/``cos_budget``)
rmid_used, rmid_total   attached domains in the host's latest collection vs ``total_rmid``
                        (RMIDs are host-wide: the same figures on every socket of a host)
bw_capacity_bytes_s     the socket's memory bandwidth capacity [B/s]
bw_capacity_source      ``config`` (the operator said), ``observed-peak`` (the highest figure
                        sustained over `SUSTAIN` consecutive collections: a floor, since the
                        socket may never have been saturated) or ``unknown``
======================  =====================================================================

`SocketFacts` / `socket_facts` give each socket's latest L3 facts (size, CBM length, CDP,
default mask, COS) from the facts table, as the advisors and ``whatif`` use them.

Pure functions over the store's tables and `figures.per_collection`; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rdtadvisor.cache import cbm as cbmlib

CAPACITY_COLUMNS = [
    "host",
    "socket",
    "l3_bytes",
    "cbm_len",
    "cdp",
    "cos_used",
    "cos_budget",
    "rmid_used",
    "rmid_total",
    "bw_capacity_bytes_s",
    "bw_capacity_source",
]
SUSTAIN = 3  # collections a bandwidth figure must hold to count as sustained


@dataclass(frozen=True)
class SocketFacts:
    """What the store knows of one socket's L3: size, CBM length, CDP, default mask."""

    l3_bytes: float | None
    cbm_len: int | None
    cdp: bool
    default_cbm: int | None
    cos_max: int | None = None      # highest COS id (already halved under CDP); COS 0 is the default

    @property
    def ways(self) -> int | None:
        if self.cbm_len is not None:
            return self.cbm_len
        return self.default_cbm.bit_length() if self.default_cbm else None

    @property
    def full_mask(self) -> int | None:
        if self.default_cbm:
            return self.default_cbm
        return (1 << self.cbm_len) - 1 if self.cbm_len else None


def socket_facts(facts: pd.DataFrame) -> dict[tuple[str, int], SocketFacts]:
    """Latest L3 facts per (host, socket) from the facts table."""
    f = facts[facts["socket"].notna() & facts["fact"].isin(
        ["l3_cache_bytes", "l3_cbm_len", "l3_cdp", "l3_default_cbm", "l3_cos_max"])]
    f = f.sort_values("time", kind="stable").drop_duplicates(["host", "socket", "fact"], keep="last")
    table: dict[tuple[str, int], dict[str, float]] = {}
    for h, s, name, v in zip(f["host"], f["socket"], f["fact"], f["value"], strict=True):
        if pd.notna(v):
            table.setdefault((str(h), int(s)), {})[str(name)] = float(v)
    return {k: SocketFacts(l3_bytes=d.get("l3_cache_bytes"),
                           cbm_len=int(d["l3_cbm_len"]) if "l3_cbm_len" in d else None,
                           cdp=bool(d.get("l3_cdp", 0)),
                           default_cbm=int(d["l3_default_cbm"]) if "l3_default_cbm" in d else None,
                           cos_max=int(d["l3_cos_max"]) if "l3_cos_max" in d else None)
            for k, d in table.items()}


@dataclass(frozen=True)
class BandwidthCapacity:
    """Memory bandwidth per socket as the operator knows it [B/s]: a default for every host
    and per-host overrides (config ``[report] bandwidth_capacity`` and ``[report.hosts.X]``)."""

    default: float | None = None
    hosts: Mapping[str, float] = field(default_factory=dict)

    def of(self, host: str) -> float | None:
        return self.hosts.get(host, self.default)


def socket_totals(figures: pd.DataFrame) -> pd.DataFrame:
    """Per (host, socket, time): the figures summed over the socket's domains.

    Columns: host, socket, time, occupancy_bytes, bw_total_bytes_s, bw_local_bytes_s,
    bw_remote_bytes_s, domains (how many had figures). Sorted by host, socket, time.
    """
    cols = ["occupancy_bytes", "bw_total_bytes_s", "bw_local_bytes_s", "bw_remote_bytes_s"]
    g = figures.groupby(["host", "socket", "time"], sort=True, observed=True)
    out = g[cols].sum(min_count=1)
    out["domains"] = g.size()
    return out.reset_index()


def sustained_peak(totals: pd.DataFrame, n: int = SUSTAIN) -> pd.Series:
    """Per (host, socket): the highest summed bandwidth held for `n` consecutive collections [B/s]
    (with fewer than `n` collections, the lowest of them)."""
    bw = totals[["host", "socket", "bw_total_bytes_s"]].dropna()
    if bw.empty:
        return pd.Series(dtype="float64")
    # rolling(n, min_periods=min(n, len)).min() of each socket's figures, for all sockets at once
    g = bw.groupby(["host", "socket"], observed=True, sort=False)["bw_total_bytes_s"]
    x = bw["bw_total_bytes_s"].to_numpy(dtype="float64")
    held = x.copy()
    for k in range(1, n):
        held = np.fmin(held, g.shift(k).to_numpy(dtype="float64", na_value=np.nan))
    i = g.cumcount().to_numpy()
    size = g.transform("size").to_numpy()
    held = np.where(np.minimum(i + 1, n) >= np.minimum(n, size), held, np.nan)
    return pd.Series(held, index=bw.index).groupby([bw["host"], bw["socket"]], observed=True).max()


def socket_capacity(
    figures: pd.DataFrame,
    facts: pd.DataFrame,
    settings: pd.DataFrame,
    configured: BandwidthCapacity | None = None,
    totals: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per (host, socket) seen in `figures` or `facts`: see the module docstring.

    `facts` and `settings` may span many collections; the latest value of each is used.
    `totals` (from `socket_totals`) saves recomputing it when the caller has it.
    """
    configured = configured or BandwidthCapacity()
    totals = socket_totals(figures) if totals is None else totals
    peak = {(str(h), int(s)): float(v) for (h, s), v in sustained_peak(totals).items()}
    last = latest_facts(facts)
    sockets = set(zip(figures["host"].astype(str), figures["socket"].astype(int), strict=True))
    sockets |= {(h, s) for h, s in last if s is not None}
    latest_fig = figures[figures["time"] == figures.groupby("host", observed=True)["time"].transform("max")]
    rmid_used = latest_fig.groupby("host", observed=True)["domid"].nunique()
    cos_used = _cos_used(settings, last)
    rows = []
    for host, socket in sorted(sockets):
        f = {**last.get((host, None), {}), **last.get((host, socket), {})}
        cdp = bool(f.get("l3_cdp", 0))
        cos_max = f.get("l3_cos_max")
        conf = configured.of(host)
        if conf:
            bw, source = float(conf), "config"
        elif peak.get((host, socket), 0) > 0:
            bw, source = peak[(host, socket)], "observed-peak"
        else:
            bw, source = np.nan, "unknown"
        cbm_len = f.get("l3_cbm_len")
        if cbm_len is None and f.get("l3_default_cbm"):
            cbm_len = float(int(f["l3_default_cbm"]).bit_length())
        rows.append(
            (
                host,
                socket,
                f.get("l3_cache_bytes", np.nan),
                cbm_len if cbm_len else np.nan,
                cdp,
                cos_used.get((host, socket), np.nan),
                cbmlib.cos_budget(int(cos_max), cdp) if cos_max is not None else np.nan,
                rmid_used.get(host, 0),
                f.get("total_rmid", np.nan),
                bw,
                source,
            )
        )
    out = pd.DataFrame.from_records(rows, columns=CAPACITY_COLUMNS)
    return out.astype(
        {
            "host": "string",
            "socket": "int16",
            "l3_bytes": "float64",
            "cbm_len": "float64",
            "cdp": "bool",
            "cos_used": "float64",
            "cos_budget": "float64",
            "rmid_used": "int64",
            "rmid_total": "float64",
            "bw_capacity_bytes_s": "float64",
            "bw_capacity_source": "string",
        }
    )


def latest_facts(facts: pd.DataFrame) -> dict[tuple[str, int | None], dict[str, float]]:
    """(host, socket or None for host-wide) -> {fact: latest non-null value}."""
    f = facts[facts["value"].notna()].sort_values("time", kind="stable")
    f = f.drop_duplicates(["host", "socket", "fact"], keep="last")
    out: dict[tuple[str, int | None], dict[str, float]] = {}
    for h, s, name, v in zip(f["host"], f["socket"], f["fact"], f["value"], strict=True):
        out.setdefault((str(h), None if pd.isna(s) else int(s)), {})[str(name)] = float(v)
    return out


def _cos_used(
    settings: pd.DataFrame, facts: Mapping[tuple[str, int | None], dict[str, float]]
) -> dict[tuple[str, int], int]:
    """Distinct non-default L3 settings per socket in each host's latest collection."""
    l3 = settings[settings["setting"].isin(["l3_cbm", "l3_code_cbm", "l3_data_cbm"])]
    if l3.empty:
        return {}
    l3 = l3[l3["time"] == l3.groupby("host", observed=True)["time"].transform("max")]
    # one pass over the rows in their order, later rows winning (`socket_settings`, per socket)
    by: dict[tuple[str, int], dict[int, dict[str, int]]] = {}
    for h, s, d, setting, v in zip(l3["host"], l3["socket"], l3["domid"], l3["setting"], l3["value"],
                                   strict=True):
        domains = by.setdefault((str(h), int(s)), {})
        if not pd.isna(v):
            domains.setdefault(int(d), {})[str(setting)] = int(v)
    out = {}
    for (host, socket), domains in by.items():
        f = facts.get((host, socket), {})
        n = f.get("l3_cbm_len") or (
            int(f["l3_default_cbm"]).bit_length() if f.get("l3_default_cbm") else None
        )
        if not n:
            continue
        current = [
            m["l3_cbm"] if "l3_cbm" in m else (m["l3_code_cbm"], m["l3_data_cbm"])
            for m in domains.values()
            if "l3_cbm" in m or ("l3_code_cbm" in m and "l3_data_cbm" in m)
        ]
        out[(host, socket)] = cbmlib.cos_needed(current, int(n))
    return out
