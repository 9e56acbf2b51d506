"""How busy each domain's vCPUs are, from the CPU time ``xl list`` prints.

``xl list``'s ``Time(s)`` is the CPU time a domain has used since it started. Between two
collections, ``delta Time(s) / (delta t x vCPUs)`` is the share of its vCPUs' time it ran: its
busy fraction (1: every vCPU ran the whole time). The CAT strategy needs it because MBM
bandwidth is per wall-clock second: a domain busy a tenth of the time that shows 50 MB/s
misses at 500 MB/s while it runs, and stalls on memory ten times as much as its bandwidth
alone suggests (on the demo, Domain-0 held 0.02 MiB of L3 behind nine streamers; its fitted
stall share from bandwidth alone was 7 %, the simulator's truth more than 40 %).

Pitfalls handled:

* A domain that restarted (same domid, counter back near zero, or a new domain reusing the
  domid) makes a negative delta: that interval is dropped.
* ``Time(s)`` goes through a C float before printing (`rdtadvisor.xl.domains`): for a domain
  up for months its resolution is a few seconds, which the median over many intervals absorbs.
* Stores written before ``cpu_seconds`` was kept have nulls: no figure, and callers assume 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MIN_BUSY = 0.02     # a floor: a domain idle in every interval still runs now and then


def busy_fractions(domains: pd.DataFrame | None) -> dict[tuple[str, int], float]:
    """Per (host, domid): the median over consecutive collections of the share of its vCPUs'
    time the domain ran, clipped to [`MIN_BUSY`, 1]. Domains with fewer than two usable
    collections are left out.

    ``domains``: the store's ``domains`` table (`rdtadvisor.store.frames`), any number of hosts.
    """
    if domains is None or domains.empty or "cpu_seconds" not in domains.columns:
        return {}
    d = domains[["host", "domid", "time", "vcpus", "cpu_seconds"]].dropna()
    if d.empty:
        return {}
    d = d.astype({"host": str, "domid": "int64"}).sort_values(["host", "domid", "time"], kind="stable")
    same = (d["host"].eq(d["host"].shift())) & (d["domid"].eq(d["domid"].shift()))
    dt = d["time"].diff().dt.total_seconds()
    used = d["cpu_seconds"].astype(float).diff()
    vcpus = d["vcpus"].astype(float).clip(lower=1)
    frac = used / (dt * vcpus)
    ok = same & (dt > 0) & (used >= 0)
    frac = frac[ok].clip(MIN_BUSY, 1.0)
    if frac.empty:
        return {}
    med = frac.groupby([d.loc[frac.index, "host"], d.loc[frac.index, "domid"]]).median()
    return {(str(h), int(i)): float(v) for (h, i), v in med.items() if np.isfinite(v)}
