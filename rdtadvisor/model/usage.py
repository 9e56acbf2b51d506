"""The usage model: every figure the report shows, as frames, from the store's tables.

`usage(tables, window)` is the one entry point: tables in (``samples``, ``settings``,
``facts``, ``domains``, ``events``, ``collections``; already limited to the window's
time range by the reader), a `Usage` of tidy frames out. Steps, each a module of its own:

figures.per_collection -> quality (settling, coverage) -> stats.describe (percentiles)
-> stats.daily_trends -> capacity.socket_capacity -> classify -> neighbours.find_pairs

Frames (units in column names; see each module for definitions):

``vm_socket``  host, socket, domain, domid, <figure>_p50/_p95/_max/_mean/_n, share_*,
               trend columns, samples, expected, coverage, readings, confidence, class,
               evidence, class_confidence, cbm
``vm``         host, domain, domid, sockets, occupancy/bandwidth totals over sockets
``sockets``    socket_capacity's columns + summed figures' p50/p95/max + trend
``series``     host, socket, domain, time (bucket start), occupancy_bytes, bw_total_bytes_s
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rdtadvisor.model import capacity as caplib
from rdtadvisor.model import classify as classlib
from rdtadvisor.model import neighbours, quality, stats
from rdtadvisor.model.figures import bucket_size, collection_step, in_hours, per_collection


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
    figures: pd.DataFrame  # per_collection + ``settling``
    vm_socket: pd.DataFrame
    vm: pd.DataFrame
    sockets: pd.DataFrame
    series: pd.DataFrame
    pairs: dict[tuple[str, int], list[neighbours.Pair]]
    hosts: pd.DataFrame  # per-host quality and facts
    settling: pd.DataFrame  # host, socket, since, until
    masks: pd.DataFrame  # latest L3 setting per (host, socket, domain)
    unmonitored: dict[str, list[str]]


def usage(tables: Mapping[str, pd.DataFrame], window: Window = Window(), limits: Limits = Limits()) -> Usage:
    """Build every frame of the model (see the module docstring)."""
    samples = tables["samples"]
    collections = tables.get("collections")
    if collections is None or collections.empty:
        collections = samples[["host", "time"]].drop_duplicates()
    if window.hours is not None:
        samples = samples[in_hours(samples["time"], window.hours, window.tz)]
        collections = collections[in_hours(collections["time"], window.hours, window.tz)]
    fig = per_collection(samples)
    step = collection_step(collections["time"]) if len(collections) else pd.Timedelta(minutes=1)
    changes = quality.mask_changes(tables["settings"])
    settle_for = max(2 * step, pd.Timedelta(minutes=10))
    fig["settling"] = quality.settling_mask(fig, changes, settle_for)
    settling = quality.settling_windows(changes, settle_for)

    # Occupancy right after a mask change is the old partition's, not the new one's.
    stat_fig = fig.assign(occupancy_bytes=fig["occupancy_bytes"].mask(fig["settling"]))
    totals = caplib.socket_totals(stat_fig)
    cap = caplib.socket_capacity(fig, tables["facts"], tables["settings"], limits.bandwidth, totals=totals)

    first = fig["time"].min() if len(fig) else pd.Timestamp.now(tz="UTC")
    last = fig["time"].max() if len(fig) else first
    bucket = bucket_size(first, last, step)
    series = _series(fig, bucket)

    vs = stats.describe(stat_fig, ["host", "socket", "domain"])
    sockets = _sockets(totals, cap, limits)
    vs = _vm_socket(vs, fig, collections, cap, sockets, tables["events"], series, limits)
    vm = _vm(stat_fig, fig, tables.get("domains"))
    pairs = {}
    for (host, socket), s in series.groupby(["host", "socket"], observed=True, sort=True):
        bw_cap = cap.loc[(cap["host"] == host) & (cap["socket"] == socket), "bw_capacity_bytes_s"]
        pairs[(str(host), int(socket))] = neighbours.find_pairs(
            s, capacity_bytes_s=float(bw_cap.iloc[0]) if len(bw_cap) and pd.notna(bw_cap.iloc[0]) else None
        )
    hosts = _hosts(fig, collections, tables, cap)
    return Usage(
        window=window,
        step=step,
        bucket=bucket,
        collections=collections,
        figures=fig,
        vm_socket=vs,
        vm=vm,
        sockets=sockets,
        series=series,
        pairs=pairs,
        hosts=hosts,
        settling=settling,
        masks=_masks(tables["settings"]),
        unmonitored=_unmonitored(tables.get("domains"), fig),
    )


def _series(fig: pd.DataFrame, bucket: pd.Timedelta) -> pd.DataFrame:
    b = fig["time"].dt.floor(bucket)
    g = fig[["host", "socket", "domain", "occupancy_bytes", "bw_total_bytes_s"]].assign(time=b)
    out = g.groupby(["host", "socket", "domain", "time"], observed=True, sort=True).median().reset_index()
    total = out.groupby(["host", "socket", "time"], observed=True)["bw_total_bytes_s"].transform("sum")
    out["others_bw_bytes_s"] = total - out["bw_total_bytes_s"].fillna(0)
    return out


def _sockets(totals: pd.DataFrame, cap: pd.DataFrame, limits: Limits) -> pd.DataFrame:
    d = stats.describe(
        totals,
        ["host", "socket"],
        ["occupancy_bytes", "bw_total_bytes_s", "bw_local_bytes_s", "bw_remote_bytes_s"],
    )
    tr = stats.daily_trends(totals, ["host", "socket"], ["occupancy_bytes", "bw_total_bytes_s"])
    out = cap.merge(d, on=["host", "socket"], how="left").merge(tr, on=["host", "socket"], how="left")
    for q in ("p50", "p95", "max"):
        out[f"share_{q}"] = out[f"occupancy_bytes_{q}"] / out["l3_bytes"]
        out[f"utilisation_{q}"] = out[f"bw_total_bytes_s_{q}"] / out["bw_capacity_bytes_s"]
    cap_of = totals.merge(cap[["host", "socket", "bw_capacity_bytes_s"]], on=["host", "socket"], how="left")
    near = (
        (cap_of["bw_total_bytes_s"] >= 0.95 * cap_of["bw_capacity_bytes_s"])
        .groupby([cap_of["host"], cap_of["socket"]], observed=True)
        .mean()
    )
    out["near_capacity_share"] = near.reindex(pd.MultiIndex.from_frame(out[["host", "socket"]])).to_numpy()
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
    vs: pd.DataFrame,
    fig: pd.DataFrame,
    collections: pd.DataFrame,
    cap: pd.DataFrame,
    sockets: pd.DataFrame,
    events: pd.DataFrame,
    series: pd.DataFrame,
    limits: Limits,
) -> pd.DataFrame:
    key = ["host", "socket", "domain"]
    last = fig.drop_duplicates(key, keep="last").set_index(key)
    span = fig.groupby(key, observed=True)["time"].agg(["min", "max"])
    vs = vs.set_index(key)
    vs["domid"] = last["domid"]
    vs["readings"] = fig.groupby(key, observed=True)["readings"].median()
    # expected: the host's collections between the VM's first and last appearance
    expected = []
    ctimes = {h: np.sort(g["time"].to_numpy()) for h, g in collections.groupby("host", observed=True)}
    for (h, _, _), (lo, hi) in zip(span.index, span.to_numpy(), strict=True):
        t = ctimes.get(h, np.array([], dtype="datetime64[ns]"))
        expected.append(int(np.searchsorted(t, hi, side="right") - np.searchsorted(t, lo, side="left")))
    vs["expected"] = pd.Series(expected, index=span.index)
    vs["samples"] = fig.groupby(key, observed=True).size()
    vs["coverage"] = (vs["samples"] / vs["expected"].clip(lower=1)).clip(upper=1.0)
    dropped = quality.dropped_rows(events).set_index(["host", "domain"])["dropped"]
    vs["rows_dropped"] = [int(dropped.get((h, d), 0)) for h, _, d in vs.index]
    vs = vs.reset_index()
    vs["confidence"] = [
        quality.confidence(c, n, r)
        for c, n, r in zip(vs["coverage"], vs["samples"], vs["readings"].fillna(0), strict=True)
    ]
    vs = vs.merge(cap[["host", "socket", "l3_bytes", "cbm_len"]], on=["host", "socket"], how="left")
    for q in ("p50", "p95", "max"):
        vs[f"share_{q}"] = vs[f"occupancy_bytes_{q}"] / vs["l3_bytes"]
    tr = stats.daily_trends(fig, key, ["occupancy_bytes", "bw_total_bytes_s"])
    vs = vs.merge(tr, on=key, how="left")
    sk = sockets.set_index(["host", "socket"])
    limit = limits.bandwidth_threshold * sk["bw_capacity_bytes_s"]
    where = pd.MultiIndex.from_frame(vs[["host", "socket"]])
    room = (limit - sk["bw_total_bytes_s_p95"]).reindex(where).to_numpy()
    slope = vs["bw_total_bytes_s_per_day"].to_numpy()
    known = (
        (sk["bw_capacity_source"] == "config")
        .reindex(pd.MultiIndex.from_frame(vs[["host", "socket"]]))
        .fillna(False)
        .to_numpy(dtype=bool)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        vs["days_to_limit"] = np.where((slope > 0) & known, np.maximum(room, 0) / slope, np.nan)
    by_vm = {k: g for k, g in series.groupby(key, observed=True, sort=False)}
    classes = []
    for row in vs.itertuples(index=False):
        s = sk.loc[(row.host, row.socket)]
        r = pd.Series(row._asdict())
        classes.append(
            classlib.classify(
                r,
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


def _vm(stat_fig: pd.DataFrame, fig: pd.DataFrame, domains: pd.DataFrame | None) -> pd.DataFrame:
    """Per VM over all its sockets: summed per collection, then described."""
    per_time = stat_fig.groupby(["host", "domain", "time"], observed=True)[
        ["occupancy_bytes", "bw_total_bytes_s", "bw_local_bytes_s", "bw_remote_bytes_s"]
    ].sum(min_count=1)
    out = stats.describe(per_time.reset_index(), ["host", "domain"])
    last = fig.drop_duplicates(["host", "domain"], keep="last").set_index(["host", "domain"])["domid"]
    socks = fig.groupby(["host", "domain"], observed=True)["socket"].agg(
        lambda s: sorted({int(x) for x in s})
    )
    out = out.set_index(["host", "domain"])
    out["domid"] = last
    out["sockets"] = socks
    if domains is not None and len(domains):
        d = domains.sort_values("time", kind="stable").drop_duplicates(["host", "domain"], keep="last")
        d = d.set_index(["host", "domain"])
        out["memory_bytes"] = d["memory_bytes"].reindex(out.index).to_numpy(dtype="float64", na_value=np.nan)
        out["vcpus"] = d["vcpus"].reindex(out.index).to_numpy(dtype="float64", na_value=np.nan)
    else:
        out["memory_bytes"] = out["vcpus"] = np.nan
    return out.reset_index()


def _hosts(
    fig: pd.DataFrame, collections: pd.DataFrame, tables: Mapping[str, pd.DataFrame], cap: pd.DataFrame
) -> pd.DataFrame:
    events = tables["events"]
    facts = tables["facts"]
    rows = []
    for host, c in collections.groupby("host", observed=True, sort=True):
        f = fig[fig["host"] == host]
        xen = facts[(facts["host"] == host) & (facts["fact"] == "xen_version")]["text"]
        over = 0
        if len(f):
            occ = f.groupby(["time", "socket"], observed=True)["occupancy_bytes"].sum()
            l3 = cap[cap["host"] == host].set_index("socket")["l3_bytes"]
            lim = l3.reindex(occ.index.get_level_values("socket")).to_numpy()
            over = int((occ.to_numpy() > lim).sum())
        ev = events[events["host"] == host]
        rows.append(
            {
                "host": str(host),
                "xen_version": str(xen.iloc[-1]) if len(xen) else None,
                "collections": int(c["time"].nunique()),
                "seen": int(f["time"].nunique()),
                "first": c["time"].min(),
                "last": c["time"].max(),
                "rows_dropped": int(
                    len(quality.dropped_rows(ev)) and quality.dropped_rows(ev)["dropped"].sum()
                ),
                "overflows": int((ev["kind"] == "counter-overflow").sum()),
                "sample_failures": int((ev["kind"] == "sample-failed").sum()),
                "occupancy_over_l3": over,
                "settling_samples": int(f["settling"].sum()) if len(f) else 0,
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


def _unmonitored(domains: pd.DataFrame | None, fig: pd.DataFrame) -> dict[str, list[str]]:
    """Per host: running domains in the latest ``xl list`` with no CMT figures at that time."""
    if domains is None or domains.empty:
        return {}
    latest = domains[domains["time"] == domains.groupby("host", observed=True)["time"].transform("max")]
    out = {}
    for host, d in latest.groupby("host", observed=True):
        f = fig[fig["host"] == host]
        if f.empty:
            continue
        seen = set(f[f["time"] == f["time"].max()]["domain"].astype(str))
        missing = sorted(set(d["domain"].astype(str)) - seen)
        if missing:
            out[str(host)] = missing
    return out
