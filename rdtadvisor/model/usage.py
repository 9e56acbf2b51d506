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
import warnings
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
    """What one host contributes to the frames, before concatenation."""

    vm_socket: pd.DataFrame
    vm: pd.DataFrame
    totals: pd.DataFrame  # host, socket, time, summed figures
    socket_stats: pd.DataFrame
    series: pd.DataFrame
    latest: pd.DataFrame  # per_collection rows of the latest collection
    quality: dict


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
    dropped = quality.dropped_rows(tables["events"]).set_index(["host", "domain"])["dropped"]
    parts = {
        c.host: _host_parts(c, changes, settle_for, bucket, ctimes.get(c.host), l3, dropped)
        for c in host_cubes
    }

    totals = _concat([p.totals for p in parts.values()])
    latest = _concat([p.latest for p in parts.values()])
    cap = caplib.socket_capacity(latest, tables["facts"], tables["settings"], limits.bandwidth, totals=totals)
    sockets = _sockets(_concat([p.socket_stats for p in parts.values()]), totals, cap, limits)
    series = _concat([p.series for p in parts.values()])
    vs = _vm_socket(_concat([p.vm_socket for p in parts.values()]), cap, sockets, series, limits)
    vm = _vm(_concat([p.vm for p in parts.values()]), tables.get("domains"))
    pairs = {}
    for (host, socket), s in series.groupby(["host", "socket"], observed=True, sort=True):
        bw_cap = cap.loc[(cap["host"] == host) & (cap["socket"] == socket), "bw_capacity_bytes_s"]
        known = len(bw_cap) and pd.notna(bw_cap.iloc[0])
        pairs[(str(host), int(socket))] = neighbours.find_pairs(
            s, capacity_bytes_s=float(bw_cap.iloc[0]) if known else None
        )
    hosts = _hosts(parts, collections, tables)
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
    changes: pd.DataFrame,
    settle_for: pd.Timedelta,
    bucket: pd.Timedelta,
    ctimes: np.ndarray | None,
    l3: Mapping[tuple[str, int], float],
    dropped: pd.Series,
) -> _HostParts:
    n_t = c.occupancy.shape[0]
    socks = np.unique(c.sockets)
    # Occupancy right after a mask change is the old partition's, not the new one's.
    settle = quality.settling_grid(c.times, c.sockets, changes[changes["host"] == c.host], settle_for)
    figs = {
        "occupancy_bytes": np.where(settle, np.nan, c.occupancy),
        "bw_total_bytes_s": c.bw_total,
        "bw_local_bytes_s": c.bw_local,
        "bw_remote_bytes_s": c.bw_remote,
    }
    present = c.present()

    # per VM x socket
    vm = pd.DataFrame(
        {
            "host": c.host,
            "socket": c.sockets.astype(int),
            "domain": c.names.astype(str),
            "domid": c.domids.astype(int),
        }
    )
    for name in FIGURE_NAMES:
        st = stats.column_stats(figs[name])
        for j, s in enumerate(STAT_NAMES):
            vm[f"{name}_{s}"] = st[:, j]
    seen = present.any(axis=0)
    first = np.argmax(present, axis=0)
    last = n_t - 1 - np.argmax(present[::-1], axis=0)
    vm["samples"] = present.sum(axis=0)
    if ctimes is not None and len(ctimes):
        expected = np.searchsorted(ctimes, c.times[last], side="right") - np.searchsorted(
            ctimes, c.times[first], side="left"
        )
    else:
        expected = last - first + 1
    vm["expected"] = np.where(seen, np.maximum(expected, 1), 0)
    vm["coverage"] = np.clip(vm["samples"] / vm["expected"].clip(lower=1), 0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no readings
        r = np.where(c.readings > 0, c.readings.astype(float), np.nan)
        vm["readings"] = np.nanmedian(r, axis=0) if n_t else np.nan
    vm["rows_dropped"] = [int(dropped.get((c.host, d), 0)) for d in vm["domain"]]
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
    totals = pd.DataFrame(
        {
            "host": c.host,
            "socket": np.tile(socks.astype(int), n_t),
            "time": pd.DatetimeIndex(np.repeat(c.times, len(socks))).tz_localize("UTC"),
            **{name: tot[name].ravel() for name in FIGURE_NAMES},
            "domains": np.column_stack([present[:, c.sockets == s].sum(axis=1) for s in socks]).ravel()
            if len(socks)
            else np.zeros(0),
        }
    )
    sock = pd.DataFrame({"host": c.host, "socket": socks.astype(int)})
    for name in FIGURE_NAMES:
        st = stats.column_stats(tot[name])
        for j, s in enumerate(STAT_NAMES):
            sock[f"{name}_{s}"] = st[:, j]
    for name in ("occupancy_bytes", "bw_total_bytes_s"):
        sock[f"{name}_per_day"] = stats.daily_slopes(c.times, tot[name])

    # per VM over its sockets
    names, inverse = np.unique(c.names.astype(str), return_inverse=True)
    vmt = pd.DataFrame({"host": c.host, "domain": names})
    for name in FIGURE_NAMES:
        summed = (
            np.column_stack([_sum(figs[name][:, inverse == k]) for k in range(len(names))])
            if len(names)
            else np.zeros((n_t, 0))
        )
        st = stats.column_stats(summed)
        for j, s in enumerate(STAT_NAMES):
            vmt[f"{name}_{s}"] = st[:, j]
    last_seen = np.where(seen, last, -1)
    vmt["domid"] = [
        int(c.domids[np.flatnonzero(inverse == k)[np.argmax(last_seen[inverse == k])]])
        for k in range(len(names))
    ]
    vmt["sockets"] = [sorted({int(s) for s in c.sockets[(inverse == k) & seen]}) for k in range(len(names))]

    # buckets: medians per bucket, for charts, classes and neighbours
    series = _series(c, figs, bucket)

    # the latest collection, as long rows (capacity, unmonitored domains)
    latest = c.to_long(last=True)

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
        vm_socket=vm, vm=vmt, totals=totals, socket_stats=sock, series=series, latest=latest, quality=q
    )


def _sum(a: np.ndarray) -> np.ndarray:
    """Row sums skipping NaN; NaN where the whole row is NaN (pandas' sum(min_count=1))."""
    if a.shape[1] == 0:
        return np.full(a.shape[0], np.nan)
    out = np.nansum(a, axis=1)
    out[np.isnan(a).all(axis=1)] = np.nan
    return out


def _series(c: Cube, figs: Mapping[str, np.ndarray], bucket: pd.Timedelta) -> pd.DataFrame:
    b = c.times.view("int64") // bucket.value
    bounds = np.flatnonzero(np.r_[True, b[1:] != b[:-1], True])
    starts = pd.DatetimeIndex((b[bounds[:-1]] * bucket.value).view("datetime64[ns]")).tz_localize("UTC")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        occ = np.vstack(
            [np.nanmedian(figs["occupancy_bytes"][lo:hi], axis=0) for lo, hi in itertools.pairwise(bounds)]
        )
        bw = np.vstack(
            [np.nanmedian(figs["bw_total_bytes_s"][lo:hi], axis=0) for lo, hi in itertools.pairwise(bounds)]
        )
    others = np.empty_like(bw)
    for s in np.unique(c.sockets):
        cols = c.sockets == s
        total = np.nansum(bw[:, cols], axis=1)
        others[:, cols] = total[:, None] - np.nan_to_num(bw[:, cols])
    n_b, n_v = occ.shape
    keep = ~(np.isnan(occ) & np.isnan(bw)).ravel()
    return pd.DataFrame(
        {
            "host": c.host,
            "socket": np.tile(c.sockets.astype(int), n_b),
            "domain": np.tile(c.names.astype(str), n_b),
            "time": np.repeat(starts, n_v),
            "occupancy_bytes": occ.ravel(),
            "bw_total_bytes_s": bw.ravel(),
            "others_bw_bytes_s": others.ravel(),
        }
    )[keep].reset_index(drop=True)


# --- joining hosts ---------------------------------------------------------------------------


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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
    vs: pd.DataFrame, cap: pd.DataFrame, sockets: pd.DataFrame, series: pd.DataFrame, limits: Limits
) -> pd.DataFrame:
    if vs.empty:
        return vs
    key = ["host", "socket", "domain"]
    vs = vs.merge(
        cap[["host", "socket", "l3_bytes", "cbm_len"]].astype({"host": object}),
        on=["host", "socket"],
        how="left",
    )
    vs["confidence"] = [
        quality.confidence(c, n, r)
        for c, n, r in zip(vs["coverage"], vs["samples"], vs["readings"].fillna(0), strict=True)
    ]
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
    by_vm = dict(iter(series.groupby(key, observed=True, sort=False))) if len(series) else {}
    classes = []
    for row in vs.itertuples(index=False):
        s = sk.loc[(row.host, row.socket)]
        classes.append(
            classlib.classify(
                pd.Series(row._asdict()),
                float(s["occupancy_bytes_p50"]),
                float(s["bw_total_bytes_s_p50"]),
                float(row.l3_bytes),
                float(row.cbm_len),
                by_vm.get((row.host, row.socket, row.domain)),
            )
        )
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
    rows = []
    for host, c in collections.groupby("host", observed=True, sort=True):
        host = str(host)
        q = (
            parts[host].quality
            if host in parts
            else {"seen": 0, "occupancy_over_l3": 0, "settling_samples": 0}
        )
        xen = facts[(facts["host"] == host) & (facts["fact"] == "xen_version")]["text"]
        ev = events[events["host"] == host]
        rows.append(
            {
                "host": host,
                "xen_version": str(xen.iloc[-1]) if len(xen) else None,
                "collections": int(c["time"].nunique()),
                "seen": q["seen"],
                "first": c["time"].min(),
                "last": c["time"].max(),
                "rows_dropped": int(dropped.get(host, 0)),
                "overflows": int((ev["kind"] == "counter-overflow").sum()),
                "sample_failures": int((ev["kind"] == "sample-failed").sum()),
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
    out = {}
    for host, d in last.groupby("host", observed=True):
        f = latest[latest["host"] == host]
        if f.empty:
            continue
        missing = sorted(set(d["domain"].astype(str)) - set(f["domain"].astype(str)))
        if missing:
            out[str(host)] = missing
    return out
