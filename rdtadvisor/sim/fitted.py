"""A reference advisor that sees only the history: UCP lookahead on *fitted* miss curves.

`ucp_on_fitted` follows `rdtadvisor.sim.harness.Advisor`: from the collector's tables of one
socket (`rdtadvisor.sim.history.observe`), it fits every VM's miss curve with
`rdtadvisor.model.curves.fit_all`, tabulates misses per way (``fit.misses(w * way_bytes)``, w = 1..W)
and runs the existing UCP lookahead (`rdtadvisor.cache.lookahead`), after the
existing KPart-style merge (`baselines.kpart_groups`) when there are more VMs than
``min(COS budget, W)`` partitions. Merged groups' curves come from the fitted curves through
the same sharing rule as the truth model (`model.allocate`: occupancy in proportion to
misses, capped by the working set), at a fixed miss rate per unit of miss ratio.

It is the yardstick the CAT advisor (`rdtadvisor.advise.strategy`) has to beat: the
published algorithm run on what the history shows (its figures: ``docs/results.md``). Nothing clever: no
uncertainty, no do-no-harm check, and the collections taken while lines still drain after a
mask change are used as they are (`settled` can drop them, ``SETTLE_S``; on the suite with
10-collection calibration levels that changed nothing measurable, so it is off by default).

When the history cannot give every VM a curve (no history, a VM never seen, or a CPU
without MBM -- Haswell-EP, occupancy only -- whose masks never varied, so its occupancy
shares show no curve, `rdtadvisor.model.shares`), it returns the default layout (no
partitioning): an honest advisor does not guess. Relative curves (no MBM, after a sweep)
suit it as they are: lookahead compares misses, and one scale per socket changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from rdtadvisor.cache.equilibrium import allocate
from rdtadvisor.cache.layouts import Layout, full_mask
from rdtadvisor.cache.lookahead import lookahead
from rdtadvisor.model.curvefit import CurveFit
from rdtadvisor.model.curves import fit_all
from rdtadvisor.sim import baselines
from rdtadvisor.sim.harness import VmInfo
from rdtadvisor.sim.model import Socket

LABEL = "UCP on fitted curves"
FAMILY = "UCP on fitted curves"
SETTLE_S = 0.0        # drop collections this soon after a mask change (0: keep all; see `settled`)


def settled(samples: pd.DataFrame, settings: pd.DataFrame | None,
            settle_s: float | None = None) -> pd.DataFrame:
    """`samples` without the collections taken less than ``settle_s`` after an L3 mask change
    on their socket (occupancy still draining: the measurement model's 3-minute lag);
    ``settle_s`` defaults to `SETTLE_S`."""
    settle_s = SETTLE_S if settle_s is None else settle_s
    if settings is None or settings.empty or settle_s <= 0 or samples.empty:
        return samples
    st = settings[settings["setting"].isin(("l3_cbm", "l3_data_cbm", "l3_code_cbm"))]
    st = st.sort_values("time", kind="stable")
    key = ["host", "socket", "domid", "setting"]
    prev = st.groupby(key, observed=True)["value"].shift()
    changed = st[prev.notna() & (prev != st["value"]).fillna(False)]
    if changed.empty:
        return samples
    keep = np.ones(len(samples), dtype=bool)
    t_ns = samples["time"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    for (h, s), g in changed.groupby(["host", "socket"], observed=True):
        at = np.unique(g["time"].to_numpy(dtype="datetime64[ns]").astype(np.int64))
        rows = ((samples["host"] == h) & (samples["socket"] == s)).to_numpy()
        idx = np.searchsorted(at, t_ns, side="right") - 1
        since = np.where(idx >= 0, t_ns - at[np.maximum(idx, 0)], np.iinfo(np.int64).max)
        keep &= ~(rows & (since < settle_s * 1e9))
    return samples[keep]


def fitted_curves(socket: Socket, vms: Sequence[VmInfo], history: Mapping[str, pd.DataFrame] | None, *,
                  settle_s: float | None = None) -> list[CurveFit | None]:
    """Each VM's `CurveFit` from the history (by domain name; None when it has none)."""
    if not history or "samples" not in history or history["samples"].empty:
        return [None] * len(vms)
    samples = settled(history["samples"], history.get("settings"), settle_s)
    fits = fit_all(samples, history.get("facts", pd.DataFrame(columns=["fact"])), history.get("settings"),
                   l3_default={h: float(socket.l3_bytes) for h in samples["host"].unique()})
    # (host, socket, domid) -> latest domain name; keep the fit with most points per name
    latest = samples.sort_values("time", kind="stable").drop_duplicates(["host", "socket", "domid"],
                                                                        keep="last")
    by_name: dict[str, CurveFit] = {}
    keys = zip(latest["host"], latest["socket"], latest["domid"], latest["domain"], strict=True)
    for h, s, d, name in keys:
        f = fits.get((str(h), int(s), int(d)))
        if f is not None and (name not in by_name or f.n_points > by_name[name].n_points):
            by_name[str(name)] = f
    return [by_name.get(v.name) for v in vms]


def miss_table(socket: Socket, fits: Sequence[CurveFit]) -> np.ndarray:
    """(n, W + 1) misses/s per way count from fitted curves (column 0 repeats w = 1)."""
    W = socket.ways
    caps = np.arange(1, W + 1) * socket.way_bytes
    table = np.stack([np.asarray(f.misses(caps), dtype=float) for f in fits])
    return np.concatenate([table[:, :1], table], axis=1)


def group_curve(socket: Socket, fits: Sequence[CurveFit], iterations: int = 100) -> np.ndarray:
    """(W + 1,) summed misses/s of VMs with these fitted curves sharing one w-way mask.

    The sharing fixed point of `model.allocate` (damped, as `model.solve`), for every w at
    once; misses are the fitted ``M(c)`` (no latency feedback: the fits are at the load seen).
    """
    W, wb, k = socket.ways, socket.way_bytes, len(fits)
    own = np.zeros((W, k, W))
    for w in range(1, W + 1):
        own[w - 1, :, :w] = 1.0
    ws = np.array([f.ws_bytes for f in fits], dtype=float)
    cap = np.minimum(np.arange(1, W + 1)[:, None] * wb / k, ws[None, :])          # (W, k)

    def misses(c: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(f.misses(c[:, i]), dtype=float) for i, f in enumerate(fits)], axis=1)

    for _ in range(iterations):
        new = allocate(misses(cap), own, wb, ws)
        if np.max(np.abs(new - cap)) < 1e-4 * wb:
            cap = new
            break
        cap = 0.5 * cap + 0.5 * new
    total = misses(cap).sum(axis=1)
    return np.concatenate([total[:1], total])


def ucp_on_fitted(socket: Socket, vms: Sequence[VmInfo], history: Mapping[str, pd.DataFrame] | None, *,
                  cos_budget: int, mode: str) -> Layout:
    """UCP lookahead (+ KPart-style merge) on curves fitted from `history` (a `harness.Advisor`).

    ``mode`` is not used: the advisor reads whatever masks the history holds.
    """
    del mode
    n, W = len(vms), socket.ways
    fits = fitted_curves(socket, vms, history)
    g = max(1, min(n, cos_budget, W))
    if g == 1 or any(f is None for f in fits):
        return Layout((full_mask(W),) * n, W, FAMILY)
    got = [f for f in fits if f is not None]
    table = miss_table(socket, got)
    if g < n:
        def curve_of(members: tuple[int, ...]) -> np.ndarray:
            return table[members[0]] if len(members) == 1 else group_curve(socket, [got[i] for i in members])

        groups = baselines.kpart_groups(n, g, W, curve_of)
        group_table = np.stack([curve_of(m) for m in groups])
    else:
        groups = [(i,) for i in range(n)]
        group_table = table
    sizes = lookahead(group_table, W)
    group_of = [0] * n
    for j, members in enumerate(groups):
        for i in members:
            group_of[i] = j
    return baselines.stack(sizes, group_of, W, FAMILY)
