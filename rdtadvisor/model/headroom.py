"""Capacity planning: how many more VMs of a profile fit on each socket and host.

A profile is what one more VM would add: L3 occupancy [B] and total memory bandwidth [B/s]
(an existing VM's p95 over the window, or figures the operator gives). A socket takes

    n = min( floor((l3_threshold x L3 - occupancy p95) / profile occupancy),
             floor((bandwidth_threshold x capacity - bandwidth p95) / profile bandwidth) )

more of them, where the socket's p95 figures are the 95th percentile of its *summed*
figures over time (simultaneous demand, not the sum of each VM's own p95). A host takes the
sum over its sockets (a VM's memory and vCPUs live on one socket in this model). The limit
that binds is named; an unknown bandwidth capacity leaves only the L3 limit, and says so.

Note that a busy cache is always nearly full: summed occupancy measures demand under
sharing, not need, so the L3 limit is the conservative one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Profile:
    occupancy_bytes: float
    bandwidth_bytes_s: float
    name: str = "profile"


def socket_headroom(
    sockets: pd.DataFrame, profile: Profile, *, l3_threshold: float = 0.9, bandwidth_threshold: float = 0.8
) -> pd.DataFrame:
    """Per socket: how many more `profile` VMs fit, and which limit binds.

    `sockets` columns: host, socket, l3_bytes, occupancy_p95, bw_capacity_bytes_s,
    bw_capacity_source, bandwidth_p95. Adds ``fit_l3``, ``fit_bandwidth``, ``fit`` and ``limit``.
    """
    out = sockets.copy()
    l3_room = l3_threshold * out["l3_bytes"] - out["occupancy_p95"].fillna(0)
    bw_room = bandwidth_threshold * out["bw_capacity_bytes_s"] - out["bandwidth_p95"].fillna(0)
    out["fit_l3"] = _count(l3_room, profile.occupancy_bytes)
    out["fit_bandwidth"] = _count(bw_room, profile.bandwidth_bytes_s)
    both = out[["fit_l3", "fit_bandwidth"]]
    out["fit"] = both.min(axis=1, skipna=True)
    limit = np.where(
        out["fit_bandwidth"].isna(),
        "l3 (bandwidth capacity not configured)",
        np.where(
            out["fit_l3"].isna(),
            "bandwidth (L3 size unknown)",
            np.where(out["fit_bandwidth"] < out["fit_l3"], "bandwidth", "l3"),
        ),
    )
    out["limit"] = np.where(both.isna().all(axis=1), "unknown", limit)
    return out


def host_headroom(per_socket: pd.DataFrame) -> pd.DataFrame:
    """Per host: the sum of its sockets' ``fit`` and the limit binding on most of them."""
    g = per_socket.groupby("host", observed=True, sort=True)
    out = g["fit"].sum(min_count=1).rename("fit").to_frame()
    out["limit"] = g["limit"].agg(lambda s: s.value_counts().index[0])
    out["sockets"] = g.size()
    return out.reset_index()


def _count(room: pd.Series, need: float) -> pd.Series:
    """floor(room / need) >= 0; NaN when room is unknown; 'unbounded' (NaN) when need is 0."""
    if need <= 0:
        return pd.Series(np.nan, index=room.index)
    return np.floor(room.clip(lower=0) / need)
