"""The usage model: every figure the report shows, as frames, from the store's tables.

`usage(tables, window)` is the one entry point: tables in (``samples``, ``settings``,
``facts``, ``domains``, ``events``, ``collections``; already limited to the window's
time range by the reader), a `Usage` of tidy frames out. Steps, each a module of its own:

cube.cubes (per-collection figures, median of readings, as dense per-host arrays)
-> quality (settling, coverage) -> stats.column_stats (percentiles) -> stats trends
-> capacity.socket_capacity -> classify -> neighbours.find_pairs

Frames (units in column names; see each module for definitions):

``vm_socket``  host, socket, domain, domid, <figure>_p50/_p95/_max/_mean/_n, share_*,
               trend columns, samples, expected, coverage, readings, confidence, class,
               evidence, class_confidence
``vm``         host, domain, domid, sockets, occupancy/bandwidth totals over sockets
``sockets``    socket_capacity's columns + summed figures' p50/p95/max + trend
``series``     host, socket, domain, time (bucket start), occupancy_bytes, bw_total_bytes_s,
               others_bw_bytes_s (the rest of the socket's bandwidth in that bucket)
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rdtadvisor.core import clock
from rdtadvisor.model import capacity as caplib
from rdtadvisor.model import classify as classlib
from rdtadvisor.model import neighbours, quality, stats
from rdtadvisor.model.cube import FIGURE_NAMES, Cube, cubes
from rdtadvisor.model.curvefit import l3_sizes
from rdtadvisor.model.figures import bucket_size, collection_step, in_hours

STAT_NAMES = ("p50", "p95", "max", "mean", "n")


class NoHistory(ValueError):
    """The window (and hours filter) holds no samples: there is nothing to model."""


@dataclass(frozen=True)
class Window:
    """The part of history a report looks at: [since, until) and optionally hours of the day."""

    since: pd.Timestamp | None = None
    until: pd.Timestamp | None = None
    hours: tuple[int, int] | None = None
    tz: str = "UTC"


@dataclass(frozen=True)
class Limits:
    """What figures are judged against (config ``[report]``)."""

    bandwidth: caplib.BandwidthCapacity = field(default_factory=caplib.BandwidthCapacity)
    l3_threshold: float = 0.9
    bandwidth_threshold: float = 0.8


@dataclass
class Usage:
    window: Window
    step: pd.Timedelta
    bucket: pd.Timedelta
    collections: pd.DataFrame  # host, time (within the window)
    cubes: list[Cube]
    vm_socket: pd.DataFrame
    vm: pd.DataFrame
    sockets: pd.DataFrame
    series: pd.DataFrame
    pairs: dict[tuple[str, int], list[neighbours.Pair]]
    hosts: pd.DataFrame  # per-host quality and facts
    settling: pd.DataFrame  # host, socket, since, until
    masks: pd.DataFrame  # latest L3 setting per (host, socket, domain)
    unmonitored: dict[str, list[str]]


@dataclass
class _HostParts:
    """What one host contributes to the frames, as numpy columns: every host's are concatenated
    and each frame is built once (a DataFrame per host and step costs more than the numbers)."""

    host: str
    vm_socket: dict[str, np.ndarray]  # one row per cube column
    vm: dict[str, np.ndarray | list]  # one row per VM name
    totals: dict[str, np.ndarray]  # one row per (collection, socket): summed figures
    socket_stats: dict[str, np.ndarray]  # one row per socket
    latest: dict[str, np.ndarray]  # per_collection rows of the latest collection
    quality: dict
    # buckets: (buckets x cube columns) medians, for the series frame, classes and neighbours
    starts: np.ndarray  # bucket starts, datetime64[ns] (UTC)
    sockets: np.ndarray  # per cube column
    names: np.ndarray  # per cube column (str)
    occ: np.ndarray
    bw: np.ndarray
    others: np.ndarray


def usage(tables: Mapping[str, pd.DataFrame], window: Window = Window(), limits: Limits = Limits()) -> Usage:
    """Build every frame of the model (see the module docstring)."""
    samples = tables["samples"]
    collections = tables.get("collections")
    if collections is None or collections.empty:
        collections = samples[["host", "time"]].drop_duplicates()
    collections = collections[["host", "time"]].astype({"host": "string"})
    if window.hours is not None:
        samples = samples[in_hours(samples["time"], window.hours, window.tz)]
        collections = collections[in_hours(collections["time"], window.hours, window.tz)]
    host_cubes = cubes(samples)
    if not host_cubes:
        raise NoHistory("no samples in the window" + (" at those hours" if window.hours else ""))
    step = collection_step(collections["time"]) if len(collections) else pd.Timedelta(minutes=1)
    changes = quality.mask_changes(tables["settings"])
    settle_for = max(2 * step, pd.Timedelta(minutes=10))
    settling = quality.settling_windows(changes, settle_for)
    times = [c.times for c in host_cubes if len(c.times)]
    first = pd.Timestamp(min(t[0] for t in times), tz="UTC") if times else clock.now()
    last = pd.Timestamp(max(t[-1] for t in times), tz="UTC") if times else first
    bucket = bucket_size(first, last, step)
    l3 = l3_sizes(tables["facts"])
    ctimes = {
        str(h): np.sort(pd.DatetimeIndex(g["time"]).as_unit("ns").tz_convert(None).to_numpy())
        for h, g in collections.groupby("host", observed=True)
    }
    host_changes = {str(h): g for h, g in changes.groupby("host", observed=True)} if len(changes) else {}
    dropped: dict[str, dict[str, int]] = {}
    d = quality.dropped_rows(tables["events"])
    for h, dom, n in zip(d["host"], d["domain"], d["dropped"], strict=True):
        dropped.setdefault(str(h), {})[str(dom)] = int(n)
    parts = [
        _host_parts(c, host_changes.get(c.host), settle_for, bucket, ctimes.get(c.host), l3,
                    dropped.get(c.host))
        for c in host_cubes
    ]

    totals = _frame(parts, "totals", times=("time",))
    latest = _latest(parts)
    cap = caplib.socket_capacity(latest, tables["facts"], tables["settings"], limits.bandwidth, totals=totals)
    sockets = _sockets(_frame(parts, "socket_stats"), totals, cap, limits)
    series = _series_frame(parts)
    vs = _vm_socket(_frame(parts, "vm_socket"), parts, cap, sockets, limits)
    vm = _vm(_frame(parts, "vm"), tables.get("domains"))
    pairs = _pairs(parts, cap)
    hosts = _hosts({p.host: p for p in parts}, collections, tables)
    return Usage(
        window=window,
        step=step,
        bucket=bucket,
        collections=collections,
        cubes=host_cubes,
        vm_socket=vs,
        vm=vm,
        sockets=sockets,
        series=series,
        pairs=pairs,
        hosts=hosts,
        settling=settling,
        masks=_masks(tables["settings"]),
        unmonitored=_unmonitored(tables.get("domains"), latest),
    )


# --- one host --------------------------------------------------------------------------------


def _host_parts(
    c: Cube,
    changes: pd.DataFrame | None,
    settle_for: pd.Timedelta,
    bucket: pd.Timedelta,
    ctimes: np.ndarray | None,
    l3: Mapping[tuple[str, int], float],
    dropped: Mapping[str, int] | None,
) -> _HostParts:
    n_t, n_v = c.occupancy.shape
    socks = np.unique(c.sockets)
    # Occupancy right after a mask change is the old partition's, not the new one's.
    if changes is None or changes.empty:
        settle = np.zeros((n_t, n_v), dtype=bool)
    else:
        settle = quality.settling_grid(c.times, c.sockets, changes, settle_for)
    figs = {
        "occupancy_bytes": np.where(settle, np.nan, c.occupancy),
        "bw_total_bytes_s": c.bw_total,
        "bw_local_bytes_s": c.bw_local,
        "bw_remote_bytes_s": c.bw_remote,
    }
    present = c.present()
    str_names = c.names.astype(str)

    # per VM x socket
    vm: dict[str, np.ndarray] = {
        "socket": c.sockets.astype(int),
        "domain": str_names,
        "domid": c.domids.astype(int),
        **_stats_columns(figs),
    }
    seen = present.any(axis=0)
    first = np.argmax(present, axis=0)
    last = n_t - 1 - np.argmax(present[::-1], axis=0)
    samples = present.sum(axis=0)
    vm["samples"] = samples
    if ctimes is not None and len(ctimes):
        expected = np.searchsorted(ctimes, c.times[last], side="right") - np.searchsorted(
            ctimes, c.times[first], side="left"
        )
    else:
        expected = last - first + 1
    vm["expected"] = np.where(seen, np.maximum(expected, 1), 0)
    vm["coverage"] = np.clip(samples / np.maximum(vm["expected"], 1), 0, 1)
    r = np.where(c.readings > 0, c.readings.astype(float), np.nan)
    vm["readings"] = stats.nanmedian_columns(r) if n_t else np.full(n_v, np.nan)
    vm["rows_dropped"] = (
        np.array([dropped.get(d, 0) for d in str_names], dtype=np.int64)
        if dropped
        else np.zeros(n_v, dtype=np.int64)
    )
    for name in ("occupancy_bytes", "bw_total_bytes_s"):
        vm[f"{name}_per_day"] = stats.daily_slopes(c.times, figs[name])

    # per socket: figures summed over the socket's VMs at each collection
    tot = {
        name: np.column_stack([_sum(figs[name][:, c.sockets == s]) for s in socks])
        if len(socks)
        else np.zeros((n_t, 0))
        for name in FIGURE_NAMES
    }
    raw_occ = np.column_stack([_sum(c.occupancy[:, c.sockets == s]) for s in socks]) if len(socks) else None
    totals = {
        "socket": np.tile(socks.astype(int), n_t),
        "time": np.repeat(c.times, len(socks)),
        **{name: tot[name].ravel() for name in FIGURE_NAMES},
        "domains": np.column_stack([present[:, c.sockets == s].sum(axis=1) for s in socks]).ravel()
        if len(socks)
        else np.zeros(0),
    }
    sock = {"socket": socks.astype(int), **_stats_columns(tot)}
    for name in ("occupancy_bytes", "bw_total_bytes_s"):
        sock[f"{name}_per_day"] = stats.daily_slopes(c.times, tot[name])

    # per VM over its sockets (most VMs have one column: their sum is that column)
    names, first_col, inverse, counts = np.unique(str_names, return_index=True, return_inverse=True,
                                                  return_counts=True)
    multi = np.flatnonzero(counts > 1)
    summed = {}
    for name in FIGURE_NAMES:
        a = figs[name][:, first_col] + 0.0  # what _sum gives for one column (-0.0 -> 0.0)
        for k in multi:
            a[:, k] = _sum(figs[name][:, inverse == k])
        summed[name] = a
    vmt: dict[str, np.ndarray | list] = {"domain": names, **_stats_columns(summed)}
    domids = c.domids[first_col].astype(int)
    vm_sockets = [[int(s)] if ok else [] for s, ok in zip(c.sockets[first_col], seen[first_col], strict=True)]
    last_seen = np.where(seen, last, -1)
    for k in multi:
        cols = inverse == k
        domids[k] = int(c.domids[np.flatnonzero(cols)[np.argmax(last_seen[cols])]])
        vm_sockets[k] = sorted({int(s) for s in c.sockets[cols & seen]})
    vmt["domid"] = domids
    vmt["sockets"] = vm_sockets

    # buckets: medians per bucket, for charts, classes and neighbours
    starts, occ_b, bw_b, others_b = _buckets(c, figs, bucket)

    over = 0
    if raw_occ is not None:
        lim = np.array([l3.get((c.host, int(s)), np.inf) for s in socks])
        over = int((raw_occ > lim[None, :]).sum())
    q = {
        "seen": int(present.any(axis=1).sum()),
        "occupancy_over_l3": over,
        "settling_samples": int((settle & ~np.isnan(c.occupancy)).sum()),
    }
    return _HostParts(
        host=c.host,
        vm_socket=vm,
        vm=vmt,
        totals=totals,
        socket_stats=sock,
        latest=_latest_columns(c, present),
        quality=q,
        starts=starts,
        sockets=c.sockets,
        names=str_names,
        occ=occ_b,
        bw=bw_b,
        others=others_b,
    )


def _stats_columns(figs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``<figure>_<stat>`` columns of `stats.column_stats` for each figure's array."""
    out = {}
    for name in FIGURE_NAMES:
        st = stats.column_stats(figs[name])
        for j, s in enumerate(STAT_NAMES):
            out[f"{name}_{s}"] = st[:, j]
    return out


def _latest_columns(c: Cube, present: np.ndarray) -> dict[str, np.ndarray]:
    """`Cube.to_long(last=True)`'s columns, as arrays (the frame is built once for all hosts)."""
    if not len(present):
        return {}
    cols = np.flatnonzero(present[-1])
    return {
        "time": np.repeat(c.times[-1:], len(cols)),
        "socket": c.sockets[cols].astype("int16"),
        "domid": c.domids[cols].astype("int32"),
        "domain": c.names[cols],
        "occupancy_bytes": c.occupancy[-1, cols],
        "bw_total_bytes_s": c.bw_total[-1, cols],
        "bw_local_bytes_s": c.bw_local[-1, cols],
        "bw_remote_bytes_s": c.bw_remote[-1, cols],
        "readings": c.readings[-1, cols].astype("int16"),
    }


def _sum(a: np.ndarray) -> np.ndarray:
    """Row sums skipping NaN; NaN where the whole row is NaN (pandas' sum(min_count=1))."""
    if a.shape[1] == 0:
        return np.full(a.shape[0], np.nan)
    out = np.nansum(a, axis=1)
    out[np.isnan(a).all(axis=1)] = np.nan
    return out


def _buckets(
    c: Cube, figs: Mapping[str, np.ndarray], bucket: pd.Timedelta
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bucket starts, occupancy, total bandwidth, the rest of the socket's bandwidth): medians
    per bucket, (buckets x cube columns)."""
    b = c.times.view("int64") // bucket.value
    bounds = np.flatnonzero(np.r_[True, b[1:] != b[:-1], True])
    starts = (b[bounds[:-1]] * bucket.value).view("datetime64[ns]")
    if len(bounds) - 1 == len(c.times):  # one collection per bucket: its figures are the medians
        occ = figs["occupancy_bytes"].copy()
        bw = figs["bw_total_bytes_s"].copy()
    else:
        spans = list(itertools.pairwise(bounds))
        occ = np.vstack([stats.nanmedian_columns(figs["occupancy_bytes"][lo:hi]) for lo, hi in spans])
        bw = np.vstack([stats.nanmedian_columns(figs["bw_total_bytes_s"][lo:hi]) for lo, hi in spans])
    others = np.empty_like(bw)
    for s in np.unique(c.sockets):
        cols = c.sockets == s
        total = np.nansum(bw[:, cols], axis=1)
        others[:, cols] = total[:, None] - np.nan_to_num(bw[:, cols])
    return starts, occ, bw, others


# --- joining hosts ---------------------------------------------------------------------------


def _frame(parts: list[_HostParts], attr: str, times: tuple[str, ...] = ()) -> pd.DataFrame:
    """One frame of every host's `attr` columns, ``host`` first; empty (no columns) without rows,
    as concatenating no frames gives."""
    cols = [getattr(p, attr) for p in parts]
    rows = [len(next(iter(c.values()))) if c else 0 for c in cols]
    if not sum(rows):
        return pd.DataFrame()
    keep = [c for c, n in zip(cols, rows, strict=True) if n]
    out: dict[str, object] = {
        "host": np.repeat(np.array([p.host for p, n in zip(parts, rows, strict=True) if n], dtype=object),
                          [n for n in rows if n])
    }
    for name in keep[0]:
        if isinstance(keep[0][name], list):
            out[name] = list(itertools.chain.from_iterable(c[name] for c in keep))
        else:
            out[name] = np.concatenate([c[name] for c in keep])
    for name in times:  # datetime64[ns] columns, UTC
        out[name] = pd.DatetimeIndex(out[name]).tz_localize("UTC")
    return pd.DataFrame(out)


def _latest(parts: list[_HostParts]) -> pd.DataFrame:
    """The latest collection of every host as `figures.per_collection` rows (`Cube.to_long`)."""
    f = _frame(parts, "latest", times=("time",))
    if f.empty:
        return f
    f["host"] = pd.array(f["host"].to_numpy(), dtype="string")
    f["domain"] = pd.array(f["domain"].to_numpy(), dtype="string")
    return f[["time", "host", *(c for c in f.columns if c not in ("time", "host"))]]


def _series_frame(parts: list[_HostParts]) -> pd.DataFrame:
    """`Usage.series`: the bucket grids as long rows, cells with neither figure left out."""
    cols: dict[str, list[np.ndarray]] = {k: [] for k in
                                         ("socket", "domain", "time", "occ", "bw", "others", "host")}
    for p in parts:
        n_b, n_v = p.occ.shape
        keep = ~(np.isnan(p.occ) & np.isnan(p.bw)).ravel()
        cols["socket"].append(np.tile(p.sockets.astype(int), n_b)[keep])
        cols["domain"].append(np.tile(p.names, n_b)[keep])
        cols["time"].append(np.repeat(p.starts, n_v)[keep])
        cols["occ"].append(p.occ.ravel()[keep])
        cols["bw"].append(p.bw.ravel()[keep])
        cols["others"].append(p.others.ravel()[keep])
        cols["host"].append(np.full(int(keep.sum()), p.host, dtype=object))
    if not sum(len(h) for h in cols["host"]):
        return pd.DataFrame()
    return pd.DataFrame(
        {
            "host": np.concatenate(cols["host"]),
            "socket": np.concatenate(cols["socket"]),
            "domain": np.concatenate(cols["domain"]),
            "time": pd.DatetimeIndex(np.concatenate(cols["time"])).tz_localize("UTC"),
            "occupancy_bytes": np.concatenate(cols["occ"]),
            "bw_total_bytes_s": np.concatenate(cols["bw"]),
            "others_bw_bytes_s": np.concatenate(cols["others"]),
        }
    )


def _pairs(parts: list[_HostParts], cap: pd.DataFrame) -> dict[tuple[str, int], list[neighbours.Pair]]:
    """`neighbours.find_pairs` of every (host, socket) with bucketed figures, straight from the
    bucket grids: the rows and columns its pivot of `Usage.series` would have."""
    caps = {
        (str(h), int(s)): float(v)
        for h, s, v in zip(cap["host"], cap["socket"], cap["bw_capacity_bytes_s"], strict=True)
    }
    out = {}
    for p in parts:
        for s in np.unique(p.sockets):
            cols = p.sockets == s
            occ, bw = p.occ[:, cols], p.bw[:, cols]
            has_occ = ~np.isnan(occ)
            if not (has_occ.any() or (~np.isnan(bw)).any()):
                continue  # no bucketed figures: not in the series
            rows, named = has_occ.any(axis=1), has_occ.any(axis=0)
            capacity = caps.get((p.host, int(s)), np.nan)
            if rows.sum() < 6 or np.isnan(bw).all():
                out[(p.host, int(s))] = []
                continue
            out[(p.host, int(s))] = neighbours.socket_pairs(
                pd.DatetimeIndex(p.starts[rows]).tz_localize("UTC"),
                p.names[cols][named].tolist(),
                occ[rows][:, named],
                bw[rows][:, named],
                capacity_bytes_s=None if np.isnan(capacity) else capacity,
            )
    return out


def _sockets(
    stats_frame: pd.DataFrame, totals: pd.DataFrame, cap: pd.DataFrame, limits: Limits
) -> pd.DataFrame:
    out = cap.merge(stats_frame, on=["host", "socket"], how="left") if len(stats_frame) else cap.copy()
    for name in FIGURE_NAMES:
        for s in (*STAT_NAMES, "per_day"):
            if f"{name}_{s}" not in out:
                out[f"{name}_{s}"] = np.nan
    for q in ("p50", "p95", "max"):
        out[f"share_{q}"] = out[f"occupancy_bytes_{q}"] / out["l3_bytes"]
        out[f"utilisation_{q}"] = out[f"bw_total_bytes_s_{q}"] / out["bw_capacity_bytes_s"]
    # share of each socket's collections within 5% of its capacity: one merge and group-by, not
    # a scan of the totals per socket (a fleet has thousands of sockets)
    near = pd.Series(np.nan, index=pd.MultiIndex.from_frame(out[["host", "socket"]].astype({"host": object})))
    if len(totals):
        t = totals[["host", "socket", "bw_total_bytes_s"]].dropna().astype({"host": object})
        t = t.merge(
            out[["host", "socket", "bw_capacity_bytes_s"]].astype({"host": object}), on=["host", "socket"]
        )
        hit = (t["bw_total_bytes_s"] >= 0.95 * t["bw_capacity_bytes_s"]).where(
            t["bw_capacity_bytes_s"].notna()
        )
        shares = hit.groupby([t["host"], t["socket"]]).mean()
        near.loc[shares.index.intersection(near.index)] = shares
    out["near_capacity_share"] = near.to_numpy()
    limit = limits.bandwidth_threshold * out["bw_capacity_bytes_s"]
    slope = out["bw_total_bytes_s_per_day"]
    room = limit - out["bw_total_bytes_s_p95"]
    with np.errstate(divide="ignore", invalid="ignore"):
        days = np.where(slope > 0, np.maximum(room, 0) / slope, np.nan)
    # Against an observed peak "capacity" a trend says nothing about the real limit.
    known = (out["bw_capacity_source"] == "config").to_numpy(dtype=bool)
    out["days_to_limit"] = np.where(known, days, np.nan)
    return out


def _vm_socket(
    vs: pd.DataFrame, parts: list[_HostParts], cap: pd.DataFrame, sockets: pd.DataFrame, limits: Limits
) -> pd.DataFrame:
    """`vs`: the parts' ``vm_socket`` columns, in part and column order (the bucket grids' order)."""
    if vs.empty:
        return vs
    vs = vs.merge(
        cap[["host", "socket", "l3_bytes", "cbm_len"]].astype({"host": object}),
        on=["host", "socket"],
        how="left",
    )
    vs["confidence"] = quality.confidences(
        vs["coverage"].to_numpy(), vs["samples"].to_numpy(), vs["readings"].fillna(0).to_numpy()
    )
    for q in ("p50", "p95", "max"):
        vs[f"share_{q}"] = vs[f"occupancy_bytes_{q}"] / vs["l3_bytes"]
    sk = sockets.astype({"host": object}).set_index(["host", "socket"])
    where = pd.MultiIndex.from_frame(vs[["host", "socket"]])
    room = (limits.bandwidth_threshold * sk["bw_capacity_bytes_s"] - sk["bw_total_bytes_s_p95"]).reindex(
        where
    )
    known = (sk["bw_capacity_source"] == "config").reindex(where).fillna(False).to_numpy(dtype=bool)
    slope = vs["bw_total_bytes_s_per_day"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        vs["days_to_limit"] = np.where((slope > 0) & known, np.maximum(room.to_numpy(), 0) / slope, np.nan)
    keys = ("bw_total_bytes_s_p50", "bw_total_bytes_s_p95", "occupancy_bytes_p50", "occupancy_bytes_p95")
    rows = zip(*(vs[k].tolist() for k in keys), strict=True)
    socket_occ = sk["occupancy_bytes_p50"].reindex(where).tolist()
    socket_bw = sk["bw_total_bytes_s_p50"].reindex(where).tolist()
    buckets = (
        classlib.Buckets(p.occ[:, j], p.bw[:, j], p.others[:, j])
        for p in parts
        for j in range(p.occ.shape[1])
    )
    classes = [
        classlib.classify(dict(zip(keys, row, strict=True)), float(so), float(sb), float(l3), float(n), b)
        for row, so, sb, l3, n, b in zip(
            rows, socket_occ, socket_bw, vs["l3_bytes"].tolist(), vs["cbm_len"].tolist(), buckets, strict=True
        )
    ]
    vs["class"] = [c[0] for c in classes]
    vs["evidence"] = [c[1] for c in classes]
    vs["class_confidence"] = [c[2] for c in classes]
    return vs


def _vm(vm: pd.DataFrame, domains: pd.DataFrame | None) -> pd.DataFrame:
    """Add each VM's memory and vCPUs from its latest ``xl list`` row."""
    if vm.empty:
        return vm
    if domains is not None and len(domains):
        d = domains.sort_values("time", kind="stable").drop_duplicates(["host", "domain"], keep="last")
        d = d.astype({"host": object, "domain": object}).set_index(["host", "domain"])
        where = pd.MultiIndex.from_frame(vm[["host", "domain"]].astype(object))
        vm["memory_bytes"] = d["memory_bytes"].reindex(where).to_numpy(dtype="float64", na_value=np.nan)
        vm["vcpus"] = d["vcpus"].reindex(where).to_numpy(dtype="float64", na_value=np.nan)
    else:
        vm["memory_bytes"] = vm["vcpus"] = np.nan
    return vm


def _hosts(
    parts: Mapping[str, _HostParts], collections: pd.DataFrame, tables: Mapping[str, pd.DataFrame]
) -> pd.DataFrame:
    events = tables["events"]
    facts = tables["facts"]
    dropped = quality.dropped_rows(events).groupby("host", observed=True)["dropped"].sum()
    xen = facts[facts["fact"] == "xen_version"].drop_duplicates("host", keep="last")
    xen_of = dict(zip(xen["host"].astype(str), xen["text"], strict=True))
    kinds = Counter(zip(events["host"].astype(str), events["kind"].astype(str), strict=True))
    per_host = collections.groupby("host", observed=True, sort=True)["time"]
    distinct = per_host.nunique()
    rows = []
    for host, n, first, last in zip(distinct.index, distinct, per_host.min(), per_host.max(), strict=True):
        host = str(host)
        q = (
            parts[host].quality
            if host in parts
            else {"seen": 0, "occupancy_over_l3": 0, "settling_samples": 0}
        )
        rows.append(
            {
                "host": host,
                "xen_version": str(xen_of[host]) if host in xen_of else None,
                "collections": int(n),
                "seen": q["seen"],
                "first": first,
                "last": last,
                "rows_dropped": int(dropped.get(host, 0)),
                "overflows": kinds[(host, "counter-overflow")],
                "sample_failures": kinds[(host, "sample-failed")],
                "occupancy_over_l3": q["occupancy_over_l3"],
                "settling_samples": q["settling_samples"],
            }
        )
    return pd.DataFrame(rows)


def _masks(settings: pd.DataFrame) -> pd.DataFrame:
    """Each (host, socket, domain)'s latest L3 setting: ``cbm`` or ``code_cbm``/``data_cbm``."""
    l3 = settings[settings["setting"].isin(["l3_cbm", "l3_code_cbm", "l3_data_cbm"])]
    if l3.empty:
        return pd.DataFrame(columns=["host", "socket", "domain", "l3_cbm", "l3_code_cbm", "l3_data_cbm"])
    l3 = l3[l3["time"] == l3.groupby("host", observed=True)["time"].transform("max")]
    wide = l3.pivot_table(
        index=["host", "socket", "domain"], columns="setting", values="value", aggfunc="last", observed=True
    )
    for c in ("l3_cbm", "l3_code_cbm", "l3_data_cbm"):
        if c not in wide:
            wide[c] = np.nan
    return wide.reset_index()


def _unmonitored(domains: pd.DataFrame | None, latest: pd.DataFrame) -> dict[str, list[str]]:
    """Per host: domains in the latest ``xl list`` with no CMT figures in the latest collection."""
    if domains is None or domains.empty or latest.empty:
        return {}
    last = domains[domains["time"] == domains.groupby("host", observed=True)["time"].transform("max")]
    monitored: dict[str, set[str]] = {}
    for h, d in zip(latest["host"].astype(str), latest["domain"].astype(str), strict=True):
        monitored.setdefault(h, set()).add(d)
    out = {}
    for host, d in last.groupby("host", observed=True)["domain"]:
        f = monitored.get(str(host))
        if not f:
            continue
        missing = sorted(set(d.astype(str)) - f)
        if missing:
            out[str(host)] = missing
    return out
