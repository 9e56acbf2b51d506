"""What the store knows about each host: a one-line-per-host overview (pure, over tidy frames)."""

from __future__ import annotations

import pandas as pd

from rdtadvisor.core.units import MIB


def host_inventory(collections: pd.DataFrame, facts: pd.DataFrame, domains: pd.DataFrame,
                   samples: pd.DataFrame) -> pd.DataFrame:
    """One row per host from the latest collection of each.

    Columns: ``host``, ``xen``, ``sockets``, ``l3_mib`` (per socket, [MiB]), ``features``
    (``cmt``, ``cat``, ``cdp``, ``l2cat``, ``mba``), ``domains`` (live ones in ``xl list``),
    ``monitored`` (domains with occupancy samples), ``collections``, ``last`` (UTC).
    """
    if collections.empty:
        return pd.DataFrame(columns=["host", "xen", "sockets", "l3_mib", "features", "domains", "monitored",
                                     "collections", "last"])
    last = collections.groupby("host")["time"].max()
    rows = []
    for host, t in last.items():
        f = facts[(facts.host == host) & (facts.time == t)]
        value = dict(zip(f.fact, f.value, strict=False))
        text = dict(zip(f.fact, f.text, strict=False))
        l3 = f.loc[f.fact == "l3_cache_bytes", "value"]
        features = [name for name, present in (
            ("cmt", value.get("cmt_enabled", 1.0 if "total_rmid" in value else 0.0) == 1.0),
            ("cat", "l3_cbm_len" in value), ("cdp", value.get("l3_cdp") == 1.0),
            ("l2cat", "l2_cbm_len" in value), ("mba", "mba_cos_max" in value)) if present]
        d = domains[(domains.host == host) & (domains.time == t)]
        s = samples[(samples.host == host) & (samples.time == t) & (samples.metric == "l3_occupancy")]
        rows.append({
            "host": host, "xen": text.get("xen_version"),
            "sockets": None if pd.isna(value.get("sockets", float("nan"))) else int(value["sockets"]),
            "l3_mib": None if l3.empty else round(float(l3.max()) / MIB, 1),
            "features": ",".join(features) or "-",
            "domains": len(d), "monitored": s.domid.nunique(),
            "collections": int((collections.host == host).sum()), "last": t,
        })
    return pd.DataFrame(rows)
