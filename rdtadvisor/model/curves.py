"""Every VM's miss curve from the stored history, whatever the CPU shows.

Sockets with MBM give points on each VM's curve (held occupancy, misses/s from bandwidth)
that `rdtadvisor.model.curvefit` fits; sockets with occupancy only (no MBM) give relative
points from how the VMs share the cache (`rdtadvisor.model.shares`), fitted the same way
and marked ``CurveFit.relative``.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from rdtadvisor.model import shares
from rdtadvisor.model.curvefit import CurveFit, fit_points, l3_of, l3_sizes, points


def fit_all(samples: pd.DataFrame, facts: pd.DataFrame, settings: pd.DataFrame | None = None, *,
            l3_default: Mapping[str, float] | None = None) -> dict[tuple[str, int, int], CurveFit]:
    """A `CurveFit` per (host, socket, domid) seen in `samples`.

    `settings` (the masks) lets the fit weight points taken alone in a partition (see
    `points`). The L3 size comes from the facts (``l3_cache_bytes``); when a host has none, from
    `l3_default` by host, else the largest summed occupancy seen on that socket.
    A domid reused by another domain name keeps the latest name's points only.
    Sockets with occupancy but no bandwidth readings (no MBM) get relative curves from their
    occupancy shares (`rdtadvisor.model.shares`; ``CurveFit.relative``).
    """
    out = fit_points(points(samples, settings), facts, l3_default=l3_default)
    out.update(relative_fits(samples, facts, settings, l3_default=l3_default)[1])
    return out


def relative_fits(samples: pd.DataFrame, facts: pd.DataFrame, settings: pd.DataFrame | None = None, *,
                  l3_default: Mapping[str, float] | None = None
                  ) -> tuple[pd.DataFrame, dict[tuple[str, int, int], CurveFit]]:
    """The sockets of `samples` with occupancy but no bandwidth (no MBM): their pseudo points
    from occupancy shares and the relative curves fitted to them (`rdtadvisor.model.shares`;
    ``CurveFit.relative``). Empty when every socket has MBM, or no sweep varied the pools."""
    only = shares.occupancy_only(samples)
    if not only:
        return points(samples.iloc[:0]), {}
    occ = samples[samples["metric"] == "l3_occupancy"].rename(columns={"value": "occupancy_bytes"})
    known = l3_sizes(facts) if len(facts) else {}
    sizes = {(h, s): l3_of(occ, known, l3_default, h, s) for h, s in only}
    pseudo, alone, gauges = shares.points(samples, settings, sizes)
    fits = {key: shares.relative_fit(f, alone.get(key), gauges[key[:2]], seed=key[2] * 1000 + key[1],
                                     l3_bytes=sizes[key[:2]])
            for key, f in fit_points(pseudo, facts, l3_default=l3_default).items()}
    return pseudo, fits
