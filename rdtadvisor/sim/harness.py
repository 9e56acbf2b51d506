"""The scoring harness: the true outcome of any CAT layout and the exhaustive optimum.

Every piece of CAT advice is judged here, on the hidden truth model (`rdtadvisor.sim.model`),
against three baselines (`rdtadvisor.sim.baselines`: no partitioning, equal split, UCP
lookahead on the *true* curves) and against the exhaustive optimum over every valid layout of
`rdtadvisor.cache.layouts` within the socket's COS budget.

* `evaluate` scores one layout with `model.solve` (the reference).
* `solve_batch` / `evaluate_batch` solve the same equations for many layouts at once (masks
  differ per layout, which `model.solve` cannot batch); `tests/test_sim_harness.py` checks
  they agree with `model.solve` on random layouts.
* `optimum` is the exhaustive search (`search`: every layout of family (a), then family (b)
  in decreasing order of a proven upper bound, `speed_bounds`, until the bound falls below
  the best found). `rdtadvisor.sim.scoring` runs advisors and baselines over a suite of
  `SuiteScenario` with these.

Advisors (`Advisor`) see only what a real advisor would: the socket's hardware, per VM its
name, vCPUs and priority (`VmInfo`), the COS budget, and the VMs' *observable* history: the
collector's tidy tables for six hours of the socket (`observed_history`, which runs the truth
through Xen's measurement quirks and the real parsers), never the true curves. Each scenario
is run once per history mode (`HISTORY_MODES`): history recorded with default masks only, and
history that includes a calibration schedule (a way sweep, one VM at a time).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from rdtadvisor.cache import layouts
from rdtadvisor.cache.curve import LINE_BYTES
from rdtadvisor.cache.equilibrium import allocate
from rdtadvisor.cache.layouts import Layout, LayoutSet
from rdtadvisor.sim.model import Score, Socket, Vm, score, solve
from rdtadvisor.sim.model import alone as alone_state

#: History modes a scenario is run in: "default" = history recorded while every VM
#: sat at the default mask; "calibration" = history that includes a `calibrate` schedule.
HISTORY_MODES: tuple[str, ...] = ("default", "calibration")

#: The observable history an advisor receives: table name -> tidy frame (`rdtadvisor.store.frames`).
History = Any

#: Relative weighted-speedup margin under which a plan counts as "no worse than doing nothing".
NOISE_MARGIN = 0.005


@dataclass(frozen=True)
class VmInfo:
    """What an advisor may know of a VM without measuring it: identity and policy."""

    name: str
    vcpus: int
    priority: float


class Advisor(Protocol):
    """A CAT advisor under test: returns one mask per VM (in the order of ``vms``).

    ``history`` is the VMs' observable history (placeholder type, ``None`` for now);
    ``mode`` is the history mode it was recorded in (one of `HISTORY_MODES`).
    """

    def __call__(self, socket: Socket, vms: Sequence[VmInfo], history: History, *,
                 cos_budget: int, mode: str) -> Layout: ...


@dataclass(frozen=True)
class SuiteScenario:
    """One socket to advise: hardware, the VMs' hidden truth, and the usable COS count."""

    name: str
    socket: Socket
    vms: tuple[Vm, ...]
    cos_budget: int
    description: str = ""
    seed: int = 0
    tags: tuple[str, ...] = field(default=())
    overlapping: bool = True   # False: the optimum searches family (a) only (too many overlays)

    def vm_info(self) -> list[VmInfo]:
        return [VmInfo(v.name, v.vcpus, v.priority) for v in self.vms]


# ---------------------------------------------------------------------------- evaluation

def alone_ips(socket: Socket, vms: Sequence[Vm]) -> np.ndarray:
    """IPS of each VM alone with the whole cache: the reference for speed."""
    return np.array([alone_state(socket, v).ips.item() for v in vms])


def evaluate(socket: Socket, vms: Sequence[Vm], layout: Layout | Sequence[int], *,
             alone: np.ndarray | None = None) -> Score:
    """The true `Score` of a layout, with `model.solve` (the reference implementation)."""
    masks = layout.masks if isinstance(layout, Layout) else tuple(layout)
    st = solve(socket, vms, masks, alone_ips=alone)
    return score([(socket, vms, st)])


@dataclass(frozen=True)
class BatchResult:
    """`solve_batch`'s answer for B layouts: (B, n) per VM, (B,) per layout."""

    speed: np.ndarray
    occupancy: np.ndarray
    misses: np.ndarray
    utilisation: np.ndarray
    converged: np.ndarray


def solve_batch(socket: Socket, vms: Sequence[Vm], masks: np.ndarray, *, alone_ips_: np.ndarray | None = None,
                iterations: int = 200, tol: float = 1e-4, chunk: int = 8192, first: int = 30) -> BatchResult:
    """`model.solve` (full load) for B layouts at once: ``masks`` is (B, n).

    The same equations, in the same floating-point order, damping, convergence test (per
    layout) and undamped last step as `model.solve`; the mask matrix gains a leading batch
    axis, which `model.allocate` accepts as it is. Layouts
    leave the iteration as soon as they converge. For speed, layouts are iterated in
    cache-sized chunks for the first ``first`` iterations, then the few still unconverged
    are pooled and finish together.

    Agreement with `model.solve`: to rounding for most layouts, within the convergence
    tolerance for the rest (numpy's vectorised ``pow`` may round one ulp differently from
    the scalar one, which can move convergence by an iteration). Layouts on which
    `model.solve` itself does not converge (flagged ``converged = False``; e.g. a socket
    far past its bandwidth) end, as there, at the damped state of the last iteration.
    """
    masks = np.asarray(masks, dtype=np.int64)
    n = len(vms)
    if masks.ndim != 2 or masks.shape[1] != n:
        raise ValueError(f"masks must be (B, {n})")
    if alone_ips_ is None:
        alone_ips_ = alone_ips(socket, vms)
    eq = _Equations(socket, vms, tol)
    B = len(masks)
    cap, latency = np.zeros((B, n)), np.zeros(B)
    converged = np.zeros(B, dtype=bool)
    left: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for lo in range(0, B, chunk):
        own = _own_matrix(masks[lo:lo + chunk], socket.ways)
        c0, l0 = eq.start(own)
        c, lat, ok = eq.iterate(own, c0, l0, min(first, iterations))
        idx = np.arange(lo, lo + len(own))
        cap[idx], latency[idx], converged[idx] = c, lat, ok
        if not ok.all():
            left.append((idx[~ok], own[~ok], c[~ok], lat[~ok]))
    if left and iterations > first:
        idx = np.concatenate([x[0] for x in left])
        c, lat, ok = eq.iterate(np.concatenate([x[1] for x in left]), np.concatenate([x[2] for x in left]),
                                np.concatenate([x[3] for x in left]), iterations - first)
        cap[idx], latency[idx], converged[idx] = c, lat, ok
    ips, misses = eq.step(cap, latency)
    bw = misses * LINE_BYTES * (1.0 + eq.wback)
    speed = ips / np.maximum(alone_ips_, 1e-300)
    return BatchResult(speed=speed, occupancy=cap, misses=misses,
                       utilisation=bw.sum(axis=-1) / socket.bw_bytes_s, converged=converged)


def _own_matrix(masks: np.ndarray, ways: int) -> np.ndarray:
    """(B, n, W) 0/1 floats: bit w of each mask (`model.mask_matrix` per layout)."""
    if (masks <= 0).any() or (masks >> ways).any():
        raise ValueError(f"a mask is empty or wider than {ways} ways")
    return ((masks[:, :, None] >> np.arange(ways)) & 1).astype(float)


class _Equations:
    """`model.solve`'s per-VM constants and iteration, for a batch of layouts."""

    def __init__(self, socket: Socket, vms: Sequence[Vm], tol: float) -> None:
        self.socket, self.vms, self.tol = socket, list(vms), tol
        self.wb = socket.way_bytes
        self.apk = np.array([v.apki for v in vms]) / 1000.0
        self.cpi0 = np.array([v.cpi0 for v in vms])
        self.vcpus = np.array([v.vcpus for v in vms], dtype=float)
        self.mlp = np.array([v.mlp for v in vms])
        self.wback = np.array([v.writeback for v in vms])
        self.remote_ns = np.array([v.remote for v in vms]) * socket.remote_extra_ns
        self.ws = np.array([v.curve.ws_bytes for v in vms])
        self.cycles_per_ns = socket.freq_hz / 1e9

    def miss_ratio(self, cap: np.ndarray) -> np.ndarray:
        return np.stack([v.curve.miss_ratio(cap[..., i]) for i, v in enumerate(self.vms)], axis=-1)

    def step(self, cap: np.ndarray, latency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ips, misses) at these capacities and latencies."""
        mr = self.miss_ratio(cap)
        cpi = self.cpi0 + self.apk * mr * (latency[:, None] + self.remote_ns) * self.cycles_per_ns / self.mlp
        ips = self.socket.freq_hz * self.vcpus / cpi
        return ips, ips * self.apk * mr

    def start(self, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each VM's fair share of its own ways, unloaded latency (as `model.solve`)."""
        cap = (own * self.wb / np.maximum(own.sum(axis=-2, keepdims=True), 1)).sum(axis=-1)
        return np.minimum(cap, self.ws), np.full(len(own), self.socket.latency_ns)

    def iterate(self, own: np.ndarray, cap: np.ndarray, latency: np.ndarray,
                iterations: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Up to ``iterations`` damped steps. Returns (cap, latency, converged): the undamped
        step for converged layouts (as `model.solve`), the current damped state for the rest."""
        B = len(own)
        sock, wb = self.socket, self.wb
        out_cap, out_lat = cap.copy(), latency.copy()
        converged = np.zeros(B, dtype=bool)
        active = np.arange(B)
        a_cap, a_lat, a_own = cap, latency, own
        a_done = np.zeros(B, dtype=bool)
        for _ in range(iterations):
            _, misses = self.step(a_cap, a_lat)
            new_cap = allocate(misses, a_own, wb, self.ws)
            util = (misses * LINE_BYTES * (1.0 + self.wback)).sum(axis=-1) / sock.bw_bytes_s
            new_lat = sock.latency_ns / (1.0 - np.minimum(util, 0.95))
            delta = np.abs(new_cap - a_cap).max(axis=-1) / wb + np.abs(new_lat - a_lat) / sock.latency_ns
            fresh = (delta < self.tol) & ~a_done
            if fresh.any():
                # Converged layouts keep the undamped step; their later iterations are
                # ignored, and they leave the arrays in batches.
                idx = active[fresh]
                out_cap[idx], out_lat[idx], converged[idx] = new_cap[fresh], new_lat[fresh], True
                a_done |= fresh
            a_cap = 0.5 * a_cap + 0.5 * new_cap
            a_lat = 0.5 * a_lat + 0.5 * new_lat
            left = int((~a_done).sum())
            if not left:
                break
            if left <= 0.7 * len(active):
                keep = ~a_done
                active, a_cap, a_lat = active[keep], a_cap[keep], a_lat[keep]
                a_own, a_done = a_own[keep], a_done[keep]
        rest = ~a_done
        out_cap[active[rest]], out_lat[active[rest]] = a_cap[rest], a_lat[rest]
        return out_cap, out_lat, converged


@dataclass(frozen=True)
class BatchScores:
    """`Score` fields for B layouts, as arrays."""

    weighted_speedup: np.ndarray
    worst_slowdown: np.ndarray
    unfairness: np.ndarray
    over_threshold: np.ndarray
    converged: np.ndarray

    def __getitem__(self, i: int) -> Score:
        return Score(float(self.weighted_speedup[i]), float(self.worst_slowdown[i]),
                     float(self.unfairness[i]), int(self.over_threshold[i]))


def evaluate_batch(socket: Socket, vms: Sequence[Vm], masks: np.ndarray | LayoutSet, *,
                   alone: np.ndarray | None = None) -> BatchScores:
    """`evaluate` for B layouts at once (via `solve_batch`), same formulas as `model.score`."""
    m = masks.masks if isinstance(masks, LayoutSet) else np.asarray(masks, dtype=np.int64)
    res = solve_batch(socket, vms, m, alone_ips_=alone)
    prio = np.array([v.priority for v in vms])
    slow = 1.0 / np.maximum(res.speed, 1e-9)
    worst = slow.max(axis=-1)
    return BatchScores(weighted_speedup=(prio * res.speed).sum(axis=-1), worst_slowdown=worst,
                       unfairness=worst / np.maximum(slow.min(axis=-1), 1e-9),
                       over_threshold=(res.utilisation > socket.bw_threshold).astype(int),
                       converged=res.converged)


def speed_bounds(socket: Socket, vms: Sequence[Vm], alone: np.ndarray | None = None) -> np.ndarray:
    """(n, W + 1): an upper bound of each VM's speed in any layout that gives it w ways.

    The smaller of (1) its speed alone on the socket with a w-way mask: neighbours can only
    take capacity from it and add bandwidth (if its latency were lower than alone, it would
    miss at least as often as alone, so the socket's bandwidth and latency would be at least
    its alone ones); and (2) its speed holding all w ways at the socket's lowest possible
    latency with these VMs (`latency_floor`). Column 0 repeats w = 1.
    """
    a = alone if alone is not None else alone_ips(socket, vms)
    W = socket.ways
    out = np.zeros((len(vms), W + 1))
    masks = np.array([[(1 << w) - 1] for w in range(1, W + 1)], dtype=np.int64)
    eq = _Equations(socket, vms, 1e-4)
    floor = latency_floor(socket, vms)
    caps = np.minimum(np.arange(1, W + 1)[:, None] * socket.way_bytes, eq.ws[None, :])     # (W, n)
    ips, _ = eq.step(caps, np.full(W, floor))
    for i, v in enumerate(vms):
        alone_w = solve_batch(socket, [v], masks, alone_ips_=a[i:i + 1]).speed[:, 0]
        out[i, 1:] = np.minimum(alone_w, ips[:, i] / a[i])
    out[:, 0] = out[:, 1]
    return out


def latency_floor(socket: Socket, vms: Sequence[Vm]) -> float:
    """A lower bound of the socket's memory latency [ns] under any layout of these VMs.

    No VM misses less often than with the whole cache (miss ratio ``mr_min``), so at any
    latency L the socket's utilisation is at least U_min(L) (all VMs at ``mr_min``), and
    the fixed point latency L* = L0 / (1 - min(U(L*), 0.95)) is at least the crossing of
    L = L0 / (1 - min(U_min(L), 0.95)) (decreasing right-hand side), found by bisection.
    """
    eq = _Equations(socket, vms, 1e-4)
    full = np.minimum(socket.ways * socket.way_bytes, eq.ws)[None, :]

    def gap(lat: float) -> float:
        _, misses = eq.step(full, np.array([lat]))
        util = (misses * LINE_BYTES * (1.0 + eq.wback)).sum() / socket.bw_bytes_s
        return lat - socket.latency_ns / (1.0 - min(util, 0.95))

    lo, hi = socket.latency_ns, socket.latency_ns / 0.05
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if gap(mid) < 0:
            lo = mid
        else:
            hi = mid
    return lo


def group_bounds(bounds: np.ndarray, sets: Iterable[int] | None = None) -> np.ndarray:
    """(2^n, W + 1): an upper bound of the summed speeds of a set of VMs sharing w ways.

    Row ``members`` (a bit set of VM indices) is filled for each of ``sets`` (default:
    every set). Capacities c_i > 0 (in ways) with sum <= w round up to integers a_i in
    [1, w] with sum <= w + |set| - 1, and each VM is at most as fast as `speed_bounds` says
    with a_i ways, so the bound is a small knapsack over the set.
    """
    n, W1 = bounds.shape
    W = W1 - 1
    out = np.zeros((1 << n, W1))
    for members in (range(1, 1 << n) if sets is None else sorted(set(sets) - {0})):
        vm = [i for i in range(n) if members >> i & 1]
        for w in range(1, W + 1):
            budget = w + len(vm) - 1
            best = np.full(budget + 1, -np.inf)
            best[0] = 0.0
            for i in vm:
                nxt = np.full(budget + 1, -np.inf)
                for a in range(1, w + 1):
                    nxt[a:] = np.maximum(nxt[a:], best[:budget + 1 - a] + bounds[i, a])
                best = nxt
            out[members, w] = best.max()
    return out


def upper_bounds(socket: Socket, vms: Sequence[Vm], cands: LayoutSet, *,
                 alone: np.ndarray | None = None) -> np.ndarray:
    """(B,) an upper bound of each candidate's weighted speedup (for pruning the search).

    The smaller of two relaxations, each valid for any contiguous layout: (1) every group of
    identical masks shares its w ways (`group_bounds`), groups independent; (2) the VMs whose
    masks lie within a maximal mask M share M's ways. Priorities weight each VM's bound.
    """
    n = len(vms)
    prio = np.array([v.priority for v in vms])
    m = cands.masks
    width = np.bitwise_count(m).astype(np.int64)
    bit = np.int64(1) << np.arange(n, dtype=np.int64)
    same = m[:, :, None] == m[:, None, :]                                  # (B, i, j)
    members = (same * bit[None, None, :]).sum(axis=2)                      # VMs with i's mask
    rep = (members & (bit - 1)[None, :]) == 0                              # i is the lowest of them
    within = (m[:, :, None] & m[:, None, :]) == m[:, :, None]              # mask i within mask j
    strictly = within & ~same
    maximal = ~strictly.any(axis=2)                                        # within no other mask
    inside = (within * bit[None, :, None]).sum(axis=1)                     # VMs within mask j
    sets = np.unique(np.concatenate([members[rep], inside[maximal & rep]])).tolist()
    table = group_bounds(speed_bounds(socket, vms, alone) * prio[:, None], sets)
    ub_groups = np.where(rep, table[members, width], 0.0).sum(axis=1)
    ub_nested = np.where(maximal & rep, table[inside, width], 0.0).sum(axis=1)
    return np.minimum(ub_groups, ub_nested)


@dataclass(frozen=True)
class Search:
    """`search`'s answer: scores of the layouts it evaluated (NaN: pruned by the bound)."""

    candidates: LayoutSet
    weighted_speedup: np.ndarray
    converged: np.ndarray
    evaluated: int

    def best(self, subset: np.ndarray | None = None) -> int:
        """Index of the best evaluated layout (within ``subset``, a boolean mask, if given)."""
        idx = np.arange(len(self.candidates)) if subset is None else np.flatnonzero(subset)
        ws = self.weighted_speedup[idx]
        done = ~np.isnan(ws)
        if not done.any():
            raise ValueError("no layout evaluated")
        idx, ws = idx[done], ws[done]
        return int(idx[best_index(ws, self.candidates.cos_used()[idx], self.converged[idx])])


def search(socket: Socket, vms: Sequence[Vm], cands: LayoutSet, *, alone: np.ndarray | None = None,
           prune: bool = True, slack: float = 1e-4, chunk: int = 8192) -> Search:
    """Evaluate candidate layouts, skipping those that provably cannot be the best.

    Family (a) is always evaluated in full (so its own optimum is exact too). The other
    layouts are taken in decreasing order of an upper bound of their weighted speedup
    (`upper_bounds`) and evaluated chunk by chunk while the bound exceeds the best found so
    far by more than ``slack`` (relative): a layout skipped cannot beat the best by more
    than that plus the fixed point's tolerance (~1e-5), so the optimum is exact to that.
    ``prune=False`` evaluates everything.
    """
    a = alone if alone is not None else alone_ips(socket, vms)
    B = len(cands)
    ws = np.full(B, np.nan)
    conv = np.zeros(B, dtype=bool)

    def run(idx: np.ndarray) -> None:
        sc = evaluate_batch(socket, vms, cands.masks[idx], alone=a)
        ws[idx], conv[idx] = sc.weighted_speedup, sc.converged

    if not prune:
        run(np.arange(B))
        return Search(cands, ws, conv, B)
    ub = upper_bounds(socket, vms, cands, alone=a)
    first = np.flatnonzero(cands.family == layouts.FAMILY_DISJOINT)
    rest = np.flatnonzero(cands.family != layouts.FAMILY_DISJOINT)
    if not len(first):
        first, rest = rest[:1], rest[1:]
    run(first)
    rest = rest[np.argsort(-ub[rest], kind="stable")]
    evaluated = len(first)
    for lo in range(0, len(rest), chunk):
        done = ~np.isnan(ws)
        best = np.max(np.where(conv & done, ws, -np.inf)) if (conv & done).any() else np.nanmax(ws)
        idx = rest[lo:lo + chunk]
        idx = idx[ub[idx] > best * (1 + slack)]
        if not len(idx):
            break
        run(idx)
        evaluated += len(idx)
    return Search(cands, ws, conv, evaluated)


def optimum(socket: Socket, vms: Sequence[Vm], cos_budget: int, *, overlapping: bool = True,
            candidates: LayoutSet | None = None, alone: np.ndarray | None = None,
            prune: bool = True) -> tuple[Layout, Score]:
    """The layout with the highest true weighted speedup among every enumerated valid layout.

    Searches family (a) and, if ``overlapping``, family (b) of `rdtadvisor.cache.layouts`
    within ``cos_budget`` (or the given ``candidates``), with `search` (bound pruning
    unless ``prune=False``). Ties go to the fewest COS, then to the first enumerated; a
    layout whose fixed point does not converge (rare: see `solve_batch`) is chosen only if
    none converges. Returns the layout and its score from `model.solve`.
    """
    cands = candidates if candidates is not None else layouts.enumerate_layouts(
        len(vms), socket.ways, cos_budget, overlapping=overlapping)
    if not len(cands):
        raise ValueError("no candidate layout")
    a = alone if alone is not None else alone_ips(socket, vms)
    layout = cands[search(socket, vms, cands, alone=a, prune=prune).best()]
    return layout, evaluate(socket, vms, layout, alone=a)


def best_index(ws: np.ndarray, cos: np.ndarray, converged: np.ndarray | None = None) -> int:
    """Highest weighted speedup, ties to the fewest COS; layouts whose fixed point did not
    converge (rare: an oscillation across a working-set cliff) only if none did."""
    if converged is not None and converged.any():
        ws = np.where(converged, ws, -np.inf)
    top = ws.max()
    near = np.flatnonzero(ws >= top - 1e-9 * abs(top))
    return int(near[np.argmin(cos[near])])
