"""Fleet capacity planning: how many more VMs like a profile each host can take, by every limit.

The same four limits as placement (`rdtadvisor.advise.placement.fleet`): L3 need, memory bandwidth
(where its capacity is configured), memory and vCPUs. A host takes
``min over dimensions of floor((limit - load) / profile)``; maintenance hosts take none. The
binding dimension is named per host.
"""

from __future__ import annotations

import numpy as np

from rdtadvisor.advise.placement.fleet import DIMENSIONS, Fleet, Policy, loads


def fleet_headroom(fleet: Fleet, policy: Policy, profile: np.ndarray) -> list[dict]:
    """Per host: ``{"host", "fit", "limit"}`` for a profile (L3 B, bandwidth B/s, memory B, vCPUs)."""
    a = fleet.arrays(policy)
    load = loads(a.demand, a.current, len(fleet.hosts))
    out = []
    for h, host in enumerate(fleet.hosts):
        if host.maintenance:
            out.append({"host": host.name, "fit": 0, "limit": "maintenance"})
            continue
        fits = [(np.floor(max(a.capacity[h, d] - load[h, d], 0.0) / profile[d]), DIMENSIONS[d])
                for d in range(len(DIMENSIONS)) if profile[d] > 0 and np.isfinite(a.capacity[h, d])]
        if not fits:
            out.append({"host": host.name, "fit": None, "limit": "unconstrained"})
            continue
        fit, limit = min(fits)
        out.append({"host": host.name, "fit": int(fit), "limit": limit})
    return out
