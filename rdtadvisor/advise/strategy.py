"""The CAT allocation strategy: which ways each VM of one socket should get, and why.

`plan_socket` is pure: one socket's facts, its VMs with their fitted miss curves
(`rdtadvisor.model.curvefit.CurveFit`), today's masks, the COS budget and a `Policy` in; a
`SocketAdvice` out (per VM: group, mask, ways, reason; the predicted change of the weighted
speedup with its uncertainty; or ``declined`` with the reason for recommending nothing).
`advisor` adapts it to `rdtadvisor.sim.harness.Advisor` so the scoring suite can judge it.
The algorithms and their sources are in ``docs/algorithms.md``; the figures the plans reach,
and the benchmarks behind the constants below, in ``docs/results.md``.

1. **Classify** every VM from its fit: *streaming* = high bandwidth AND a flat curve
   (alpha < 0.1 at >= 1 GB/s) -- never a flat curve alone, which also catches small working
   sets, the streamers' victims; *idle* (below 1 MB/s); *small* (a knee below a tenth of
   the L3); otherwise *sensitive* (or *insensitive*: flat, little bandwidth). The class only
   seeds the clustering and words the reasons: the allocation itself follows the curves.
   **Curves the history could not fit** (`CurveFit.fallback`: class priors chosen from
   bandwidth or occupancy alone) get a wide prior instead of their narrow class draws
   (`_wide_prior`: alpha 0..0.8 through the observed point, a knee anywhere up to the L3),
   so a high-bandwidth VM of unknown curve is weighed as possibly streaming and possibly
   cache-hungry; the reason then says the curve was not measured.
2. **Performance model**, relative to today: a VM's speed changes by
   ``1 / ((1 - s) + s * (P(c') / P(c)) * (L' / L))``, where

   * ``s`` is the share of its time stalled on memory today: its misses per busy
     vCPU-second (``M / (1 + wb) / (vcpus x busy)``) times the memory latency over the
     memory-level parallelism (`Policy.mlp`; `Policy.streaming_mlp` for a streaming VM,
     whose prefetchers keep several lines in flight). MBM counts per wall-clock second, so
     a VM busy a tenth of the time misses ten times as fast while it runs (``busy`` from
     ``xl list``'s CPU time, `rdtadvisor.model.busy`). ``M`` is what MBM measured (median
     bandwidth / 64 B), not the fitted curve at the modelled occupancy: at a knee the curve
     is a cliff, and a VM modelled a hair below its knee would be credited many times its
     real misses, hence a phantom gain from any latency relief;
   * ``L`` is the latency of the queueing curve ``L0 / (1 - U)`` at the socket's bandwidth
     utilisation (only with a configured bandwidth capacity);
   * ``P`` is misses per *instruction*. The fitted curve is misses per second at the speed
     the VM had, so ``P(c) ∝ M(c) / (1 - s(M(c)))``: a squeezed VM runs slower, and its
     misses/s rise less than its misses per instruction. Not for streaming VMs: their
     misses are mostly prefetches, which stall them little, so ``s`` overstates their
     stall and the correction would amplify noise in a flat curve.

   Speeds are normalised by each VM alone with the whole cache, weighted by priority, and
   summed: the weighted speedup (WS), the quantity the scoring harness grades. Allocating
   by misses alone (UCP) over-serves VMs with many vCPUs and streaming VMs whose misses
   cost them little (high MLP): WS is what is maximised.
3. **Capacity** in any layout comes from the sharing equilibrium on the fitted curves
   (occupancy in proportion to insertion rate, capped at the working set), solved for the
   best estimate and for posterior draws of every curve (`CurveFit.draws`) at once: in
   closed form for disjoint layouts (one pool per partition, `rdtadvisor.advise.sharing`),
   with `rdtadvisor.advise.whatif.equilibrium` when masks overlap.
4. **Cluster** KPart-style into at most ``cos_budget`` groups: streaming VMs start in one
   group (a small shared range for polluters), every other VM alone; then the pair of
   groups whose merge loses least WS is merged (`sharing.merge_levels` on negated
   group-value curves, the group value being the expected WS, over the ensemble, its
   members reach sharing w ways, from the equilibrium). Every level 2..K of the merge
   sequence is a candidate. VMs with a guaranteed minimum are never merged (a shared COS
   guarantees nothing).
5. **Split the ways exactly** among the groups: a dynamic programme over the group value
   curves maximises the summed WS under ``sum(ways) = W - reserved`` and the per-group
   minima (min bits, guarantees); runs are stacked contiguously from the low end above the
   reserved ways. Every domain, Domain-0 included, gets a mask: a domain left at COS 0
   allocates into every partition, so only the deliberate "light VMs at default"
   alternatives of step 6 leave any domain there.
6. **Alternatives**: UCP lookahead on the fitted miss curves (the published algorithm, as a
   candidate); for layouts with a streaming group, the streaming group laid over the top
   ways of another group's run instead of a private run; and the 1-3 lightest VMs (least
   bandwidth, no guarantee) left at the default mask with the others clustered into the
   whole budget -- they barely pollute and free COS (the last two when `Policy.overlap`,
   and light VMs only when no ways are reserved). Then a small local search from the
   leading candidates moves one way at a time across run boundaries.
7. **Choose and decide**: every candidate and today's masks are evaluated on the whole
   ensemble (best estimate + draws), including the latency feedback through bandwidth. The
   candidate with the best lower quartile of its gain over today is chosen (ties within
   `Policy.tie_margin`: the fewest COS); it is recommended only if its expected gain is at
   least `Policy.hysteresis` (zsim's 2 %: no churn on noise) and at least
   `Policy.confidence` of the draws predict a gain; otherwise today's masks stay and
   ``declined`` says why.
8. **The reported band** adds the model's own error to the curves' uncertainty. The
   ensemble's 5th-95th percentiles only say how unsure the *curves* are; the stall and
   sharing models, and knees no sweep reached, err by a share of the gain, so on calibrated
   history, where the curves are tight, the ensemble band alone misses most true gains.
   Each half of the band is therefore widened in quadrature by `MODEL_ERROR` x the expected
   gain, the factor chosen so that about nine true gains in ten fall inside
   (``benchmarks/advice_band.py``). The decision (step 7) does not use it: an error
   proportional to the gain does not change its sign.

**Without MBM** (`CurveFit.relative`: curves from occupancy shares, `rdtadvisor.model.shares`)
the curves' misses carry one unknown scale per socket, which the stall model needs. It is
the socket's memory traffic measured outside xl (`Policy.traffic`; `_absolute` scales the
curves so their summed bandwidth matches it, the draws spreading x/÷ `TRAFFIC_SPREAD`);
without it the socket is declined (`NO_TRAFFIC`). A wide prior on the traffic instead
would let the prior make the decision: on a socket whose bus is a few percent busy, a
prior reaching most of the bus predicts latency relief that is not there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from math import ceil

import numpy as np

from rdtadvisor.advise.sharing import Group, merge_levels, padded, pooled_misses, shared_pools
from rdtadvisor.advise.whatif import equilibrium
from rdtadvisor.cache.curve import LINE_BYTES
from rdtadvisor.cache.layouts import Layout, contiguous_mask, full_mask, valid
from rdtadvisor.cache.lookahead import lookahead
from rdtadvisor.model import shares
from rdtadvisor.model.capacity import SocketFacts
from rdtadvisor.model.curvefit import (
    FLAT_ALPHA,
    IDLE_BW,
    MIB,
    SMALL_FRACTION,
    STREAMING_BW,
    CurveFit,
    misses_of,
)

FAMILY = "cat-advisor"
LOCAL_SEARCH_STARTS = 1  # candidates the local search starts from
MAX_DRAWS = 48          # posterior draws per curve used for the ensemble (plus the best estimate)
STREAMING_ALPHA = FLAT_ALPHA   # a fitted exponent below this is "flat"
SHALLOW_ALPHA = 0.2            # ... and below this "shallow": flat for a prefetching VM (`_prefetch_bound`)
PREFETCH_STALL = 1.0    # `_prefetch_bound`: misses/s a fully stalled vCPU could not make
MODEL_ERROR = 0.4       # the reported band's model error, as a share of the expected gain (step 8)
EQUILIBRIUM_TOL = 1e-3  # overlapping layouts: converged when no VM moves 1/1000 of a way (2-3 KB)
BISECTIONS = 30         # `_Model._rel`: the traffic fixed point to 1e-9 of its bracket
# No MBM (`CurveFit.relative`): the relative curves are scaled by the socket's memory traffic
# measured outside xl (`Policy.traffic`), the draws spread log-uniformly over x/÷ this factor
# (the traffic varies with the load, and one figure stands for the whole window)
TRAFFIC_SPREAD = 1.5
SCALE_SEED = 20260227
TRAFFIC_FACT = "memory_traffic"   # a facts row the harness adds for its no-MBM scenarios
NO_TRAFFIC = shares.NO_TRAFFIC


@dataclass(frozen=True)
class Policy:
    """Operator policy and the few model constants the strategy cannot observe.

    min_mib : guaranteed cache per VM name [MiB] (the VM gets a private run at least that big).
    reserved_ways : ways kept out of every mask, at the low end (I/O, DDIO).
    min_bits : the fewest ways any mask may have (Xen checks none; hardware may need 1-2).
    overlap : whether masks may overlap (the streaming range laid over another run).
    hysteresis : the least expected relative WS gain worth a change (zsim/UCP: 2 %).
    max_slowdown : the fair-share floor: no VM's expected speed may drop by more than this
        share (vs today's masks) for the sake of the others' weighted speedup.
    confidence : the share of the posterior ensemble that must predict a gain.
    tie_margin : candidates whose ranking gain is within this of the best count as
        tied; the one with the fewest COS wins (coarser partitions are the more robust to
        curve errors, and cheaper: KPart's point; and fewer masks change).
    risk_quantile : candidates are ranked by this quantile of their gain over the ensemble
        (0.25: the lower quartile, a cautious choice; 0.5 the median).
    seed_streaming : start the clustering with the streaming VMs pooled in one group;
        otherwise from singletons.
    widen_fallback : replace the draws of class-prior fits by a wide prior (`_wide_prior`).
    mlp, writeback : memory-level parallelism and write-back share assumed for every VM
        (the stall model; not observable from CMT/MBM).
    streaming_mlp : the memory-level parallelism of a streaming VM, whose hardware prefetchers
        keep several lines in flight (4-10, ``docs/simulator.md``'s estimate; 6 here).
    latency_ns, bw_capacity : unloaded memory latency and the socket's bandwidth [B/s]
        (None: no latency feedback).
    traffic : the socket's memory traffic [B/s] measured outside xl (pcm-memory): what scales
        relative curves (no MBM, `CurveFit.relative`); None: a socket with them is declined.
    """

    min_mib: Mapping[str, float] = field(default_factory=dict)
    reserved_ways: int = 0
    min_bits: int = 1
    overlap: bool = True
    hysteresis: float = 0.02
    max_slowdown: float = 0.10
    confidence: float = 0.7
    tie_margin: float = 0.002
    widen_fallback: bool = True
    risk_quantile: float = 0.25
    seed_streaming: bool = True
    mlp: float = 2.0
    streaming_mlp: float = 6.0
    writeback: float = 0.3
    latency_ns: float = 90.0
    bw_capacity: float | None = None
    traffic: float | None = None


@dataclass(frozen=True)
class VmInput:
    """One VM to plan: identity, priority (weight in WS), its fitted curve, vCPUs and the share
    of their time they run (`rdtadvisor.model.busy`; 1 when unknown)."""

    domid: int
    name: str
    priority: float
    fit: CurveFit
    vcpus: int = 2
    busy: float = 1.0

    @property
    def running_vcpus(self) -> float:
        """vCPUs running on average: what the VM's misses per second are spread over."""
        return max(self.vcpus, 1) * min(max(self.busy, 0.01), 1.0)


@dataclass(frozen=True)
class VmAdvice:
    domid: int
    name: str
    kind: str                 # streaming | idle | small | sensitive | insensitive | unknown
    group: int                # index of its COS group in the plan (shared mask)
    mask: int                 # recommended (today's when declined)
    mask_now: int
    ways: int
    bytes: float
    speed_change: float       # predicted relative speed change of this VM (expected)
    reason: str


@dataclass(frozen=True)
class Candidate:
    label: str
    masks: tuple[int, ...]
    gain_mean: float          # expected relative WS change vs today
    gain_low: float           # 5th percentile over the ensemble, widened by the model error (step 8)
    gain_high: float          # 95th percentile, widened likewise
    gain_risk: float          # the `Policy.risk_quantile` quantile: what candidates are ranked by
    p_gain: float             # share of the ensemble predicting a gain
    worst_speed: float = 1.0  # the lowest expected relative speed of a protected VM (vs today)
    worst_vm: int = -1        # ... and which VM that is (index into the socket's VMs; -1: none)


@dataclass(frozen=True)
class SocketAdvice:
    ways: int
    cos_budget: int
    cos_used: int
    vms: tuple[VmAdvice, ...]
    chosen: str               # label of the chosen candidate ("today" when declined)
    predicted_gain: float     # expected relative WS change over today (0 when declined)
    uncertainty: tuple[float, float]   # 90 % band of that gain (curves' and model's error)
    candidates: tuple[Candidate, ...]
    declined: str | None
    confidence: float = 0.0   # share of the curves' draws predicting a gain (the decision's test)

    @property
    def masks(self) -> tuple[int, ...]:
        return tuple(v.mask for v in self.vms)

    def layout(self) -> Layout:
        return Layout(self.masks, self.ways, FAMILY)


# ---------------------------------------------------------------------------- classification

def classify(fit: CurveFit, l3_bytes: float) -> str:
    """streaming (high bandwidth AND flat), idle, small, sensitive or insensitive (step 1)."""
    bw = fit.median_bandwidth
    if bw < IDLE_BW:
        return "idle"
    if fit.alpha < STREAMING_ALPHA and _cliff(fit):
        # flat, then a drop once the working set fits: a cache user with a knee, not a streamer
        return "small" if fit.ws_bytes < SMALL_FRACTION * l3_bytes else "sensitive"
    if fit.alpha < STREAMING_ALPHA:
        return "streaming" if bw >= STREAMING_BW else "insensitive"
    if fit.kind == "small" or (np.isfinite(fit.ws_bytes) and fit.ws_bytes < SMALL_FRACTION * l3_bytes):
        return "small"
    return "sensitive"


def _cliff(fit: CurveFit) -> bool:
    """A fitted knee below which misses are at least twice the floor's (the working set fits)."""
    if not np.isfinite(fit.ws_bytes) or fit.quality == "fallback":
        return False
    below = float(fit.curve().miss_ratio(fit.ws_bytes * 0.99))
    return below >= 2.0 * max(fit.floor, 1e-12)


# ---------------------------------------------------------------------------- the model

class _Model:
    """The ensemble of curve sets and the relative-speed model of the module docstring."""

    def __init__(self, vms: Sequence[VmInput], ways: int, way_bytes: float, policy: Policy,
                 now_masks: Sequence[int], latency: float, streaming: Sequence[bool] = (),
                 log_scale: np.ndarray | None = None) -> None:
        """`latency`: today's loaded memory latency [ns] (`loaded_latency`), for the prefetch test.
        `streaming`: per VM, whether it streams (its misses/s are taken as its misses per instruction:
        mostly prefetches, which stall it little, so the stall model overstates its stall).
        `log_scale`: (MAX_DRAWS + 1,) log factors on the misses of the relative curves
        (`CurveFit.relative`), one per ensemble member (`_absolute`)."""
        self.n, self.ways, self.wb, self.policy = len(vms), ways, way_bytes, policy
        cols = []
        for k, v in enumerate(vms):
            f = v.fit
            best = np.array([[np.log(max(f.r, 1e-300)), f.alpha, f.ws_bytes, f.floor]])
            d = f.draws[:MAX_DRAWS] if len(f.draws) else np.zeros((0, 4))
            if policy.widen_fallback and not f.measured and f.median_bandwidth >= IDLE_BW:
                d = _wide_prior(f, ways * way_bytes, MAX_DRAWS, seed=k,
                                prefetching=_prefetch_bound(f, v.running_vcpus, policy, latency))
            if len(d) < MAX_DRAWS:
                d = np.concatenate([d, np.repeat(best, MAX_DRAWS - len(d), axis=0)])
            cols.append(np.concatenate([best, d]))
        arr = np.stack(cols, axis=1)                     # (E, n, 4)
        relative = np.array([v.fit.relative for v in vms], dtype=bool)
        scale = np.zeros((arr.shape[0], self.n))
        if log_scale is not None:
            scale[:, relative] = np.asarray(log_scale, dtype=float)[:, None]
        arr[..., 0] += scale
        self.params = tuple(arr[..., k].copy() for k in range(4))
        self.ws = np.where(np.isfinite(self.params[2]), self.params[2], np.inf)
        self.prio = np.array([v.priority for v in vms], dtype=float)
        self.vcpus = np.array([v.running_vcpus for v in vms], dtype=float)
        self.c0 = vms[0].fit.c0_bytes if vms else 0.25 * MIB
        # today's state: the reference of every relative speed
        self.cap_now, self.m_now = self.solve(now_masks)
        self.lat_now = self.latency(self.m_now.sum(axis=1))
        # today's stall from what MBM measured, not from the curves: a small VM the fit puts a
        # hair under its knee would miss tens of times what it does (the cliff), and be predicted
        # a phantom gain from any latency relief
        seen = np.array([v.fit.median_bandwidth / LINE_BYTES for v in vms], dtype=float) * np.exp(scale)
        per_vcpu = seen / (1 + policy.writeback) / self.vcpus
        # a prefetching stream keeps many lines in flight: it stalls less per miss
        streams = np.asarray(streaming, dtype=bool) if len(streaming) else np.zeros(self.n, dtype=bool)
        mlp = np.where(streams, policy.streaming_mlp, policy.mlp)
        self.stall = np.clip(per_vcpu * self.lat_now[:, None] * 1e-9 / mlp, 0.0, 0.95)
        # stall per miss/s at today's latency: a fitted curve is misses per *second*, observed at
        # the speed the VM had then; per instruction it is m / (1 - stall(m)) (a squeezed VM runs
        # slower, so its misses/s rise less than its misses per instruction do)
        self.k = np.where(streams, 0.0,
                          self.lat_now[:, None] * 1e-9 / policy.mlp / (1 + policy.writeback) / self.vcpus)
        full = np.full_like(self.params[0], ways * way_bytes)
        m_alone = self.misses(np.minimum(full, self.ws))
        self.rel_alone = self._rel(m_alone, lambda tot: self.latency(tot / 1.0), per_vm_latency=True)

    def misses(self, cap: np.ndarray, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        lr, a, ws, fl = (p[rows] for p in self.params)
        return misses_of(lr, a, ws, fl, cap, self.c0)

    def latency(self, bandwidth_misses: np.ndarray) -> np.ndarray:
        if not self.policy.bw_capacity:
            return np.full(np.shape(bandwidth_misses), self.policy.latency_ns)
        u = bandwidth_misses * LINE_BYTES / self.policy.bw_capacity
        return self.policy.latency_ns / (1.0 - np.minimum(u, 0.95))

    def solve(self, masks: Sequence[int], start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(E, n) capacity and misses of a layout. Disjoint layouts (every pair of distinct
        masks disjoint: each partition one pool) in closed form (`sharing.shared_pools`),
        overlapping ones with `whatif.equilibrium`."""
        distinct = sorted(set(int(m) for m in masks))
        union = 0
        for m in distinct:
            if union & m:
                break
            union |= m
        else:
            groups = [tuple(i for i, x in enumerate(masks) if x == m) for m in distinct]
            pp, _ = padded(self.params, groups)                         # (P, E, k)
            pools = np.array([bin(m).count("1") * self.wb for m in distinct])[:, None, None]
            held = shared_pools(pp, pools, self.c0)
            cap = np.zeros_like(self.params[0])
            for k, g in enumerate(groups):
                cap[:, list(g)] = held[k, :, :len(g)]
            return cap, self.misses(cap)
        own = ((np.asarray(masks, dtype=np.int64)[:, None] >> np.arange(self.ways)) & 1).astype(float)
        cap, m, _ = equilibrium(*self.params, own, self.wb, tol=EQUILIBRIUM_TOL, start=start)
        return cap, m

    def _rel(self, m: np.ndarray, lat_of, per_vm_latency: bool = False) -> np.ndarray:
        """Relative speeds (vs today) at misses ``m`` (E, n), with the memory latency their own
        traffic causes: the fixed point ``t = sum(m * rel(latency(t)))`` of the traffic ``t``
        (per VM with `per_vm_latency`, else per socket), found by bisection.

        Faster VMs miss more per second, which raises the latency, which slows them: the
        traffic the VMs would make is decreasing in the traffic there is, so the fixed point is
        unique. Iterating it does not find it near saturation (stalled VMs): it flips between
        a crawl and a sprint, and a fixed number of rounds stops on either (a plan for a
        saturated bus was once predicted to make its streamers 3.4 times faster).
        """
        ratio = self.mpi_ratio(m, self.m_now, self.k)
        scale = ratio / self.lat_now[:, None]

        def made(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """(traffic the VMs make, their speeds) at traffic `t` ((E, n) or (E,))."""
            lat = lat_of(t) if per_vm_latency else lat_of(t)[:, None]
            rel = 1.0 / ((1 - self.stall) + self.stall * scale * lat)
            traffic = m * rel
            return (traffic if per_vm_latency else traffic.sum(axis=1)), rel

        lo = np.zeros(m.shape if per_vm_latency else m.shape[:1])
        hi, _ = made(lo)                         # at the least latency they make the most traffic
        for _ in range(BISECTIONS):
            mid = 0.5 * (lo + hi)
            over = made(mid)[0] < mid
            hi, lo = np.where(over, mid, hi), np.where(over, lo, mid)
        return made(0.5 * (lo + hi))[1]

    @staticmethod
    def mpi_ratio(m: np.ndarray, m_now: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Misses per instruction at misses/s ``m`` relative to today's (``k``: stall per miss/s)."""
        def free(x: np.ndarray) -> np.ndarray:
            return 1 - np.clip(x * k, 0.0, 0.95)
        return m / np.maximum(m_now, 1e-300) * free(m_now) / free(m)

    def ws_of(self, masks: Sequence[int], start: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(E,) weighted speedup, (E, n) relative speeds vs today and (E, n) capacities of a
        layout (`start`: capacities of a nearby layout, where the equilibrium search begins)."""
        cap, m = self.solve(masks, start)
        rel = self._rel(m, self.latency)
        return (self.prio * rel / self.rel_alone).sum(axis=1), rel, cap

    def group_values(self, groups: Sequence[Group], max_ways: int, draws: int | None = None,
                     ways: np.ndarray | None = None) -> np.ndarray:
        """(len(groups), max_ways + 1) expected WS (mean over the ensemble, or its first `draws`
        members) of each group's VMs sharing w ways at today's latency, all groups and way
        counts solved at once (column 0 repeats w = 1, as the miss tables of
        `rdtadvisor.sim.baselines`); with `ways`, only those way counts (len(groups), len(ways))."""
        rows = slice(None) if draws is None else slice(0, draws)
        counts = np.arange(1, max_ways + 1) if ways is None else np.asarray(ways)
        pp, idx = padded(tuple(p[rows] for p in self.params), groups)                 # (P, E, k)
        m = pooled_misses(pp, counts * self.wb, self.c0)                              # (W, P, E, k)
        take, real = np.where(idx >= 0, idx, 0), (idx >= 0)[:, None, :]

        def per_member(a: np.ndarray) -> np.ndarray:                                   # (E, n) -> (P, E, k)
            return np.moveaxis(a[rows][:, take], 0, 1)
        stall, m_now, k = per_member(self.stall), per_member(self.m_now), per_member(self.k)
        weight = np.where(real, self.prio[take][:, None, :] / per_member(self.rel_alone), 0.0)
        rel = 1.0 / ((1 - stall) + stall * self.mpi_ratio(m, m_now, k))
        value = (weight * rel).sum(axis=3).mean(axis=2).T                              # (P, W)
        if ways is not None:
            return value
        return np.concatenate([value[:, :1], value], axis=1)


def _absolute(items: list[VmInput], policy: Policy) -> tuple[list[VmInput], np.ndarray | None]:
    """Relative curves (no MBM, `CurveFit.relative`) in misses/s: scaled so that their summed
    median bandwidth is the socket's measured memory traffic (`Policy.traffic`), and the
    (MAX_DRAWS + 1,) log factors that spread the ensemble's members over x/÷ `TRAFFIC_SPREAD`
    (member 0, the best estimate, stays put). Measured curves are returned as they are
    (factors None when no curve is relative, or the traffic is unknown)."""
    total = sum(v.fit.median_bandwidth for v in items if v.fit.relative)
    if total <= 0 or not policy.traffic:
        return items, None
    g = policy.traffic / total
    out = [replace(v, fit=shares.scaled(v.fit, g)) if v.fit.relative else v for v in items]
    spread = np.log(TRAFFIC_SPREAD)
    return out, np.concatenate([[0.0], np.random.default_rng(SCALE_SEED).uniform(-spread, spread, MAX_DRAWS)])


def _prefetch_bound(fit: CurveFit, vcpus: float, policy: Policy, latency_ns: float | None = None) -> bool:
    """Whether a VM misses faster than demand misses can: at `Policy.mlp` outstanding misses
    per vCPU and the memory latency (`latency_ns`: today's loaded latency when known, else
    the unloaded one), a vCPU stalled all the time makes ``mlp / latency`` misses/s; more than
    that (after the write-back share) takes the hardware prefetchers, i.e. sequential access,
    i.e. a streaming pattern (a pointer-chasing, cache-sensitive VM stays far below it)."""
    per_vcpu = fit.median_bandwidth / LINE_BYTES / (1 + policy.writeback) / max(vcpus, 0.01)
    latency = policy.latency_ns if latency_ns is None else latency_ns
    return per_vcpu * latency * 1e-9 / policy.mlp >= PREFETCH_STALL


def loaded_latency(vms: Sequence[VmInput], policy: Policy) -> float:
    """Today's memory latency [ns] on the socket from the VMs' median bandwidth and the queueing
    curve ``L0 / (1 - U)`` (the unloaded latency when the bandwidth capacity is unknown)."""
    if not policy.bw_capacity:
        return policy.latency_ns
    u = sum(v.fit.median_bandwidth for v in vms) / policy.bw_capacity
    return policy.latency_ns / (1.0 - min(u, 0.95))


def _wide_prior(fit: CurveFit, l3_bytes: float, n: int, seed: int, prefetching: bool = False) -> np.ndarray:
    """(n, 4) draws of (log r, alpha, ws, floor) for a curve the history could not fit.

    The fit's class prior decides the class from bandwidth (or a knee at the occupancy
    held) alone, which step 1 warns against: a high-bandwidth VM may be streaming or
    cache-hungry, a VM holding little may be small or merely squeezed. So the draws span
    both: alpha ~ U(0, 0.8) through the median observed point (log-sd 0.35), and a knee
    anywhere from what it holds to the L3 size (log-uniform) for half of them. A VM missing
    faster than demand misses can (`_prefetch_bound`) is streaming-like: alpha ~ U(0, 0.15).
    """
    rng = np.random.default_rng(seed)
    c_ref = max(fit.median_occupancy, fit.c0_bytes)
    m_ref = max(fit.median_bandwidth / LINE_BYTES, 1.0)
    alpha = rng.uniform(0.0, 0.15 if prefetching else 0.8, n)
    lx = max(np.log(c_ref / fit.c0_bytes), 0.0)
    log_r = np.log(m_ref) + alpha * lx + rng.normal(0, 0.35, n)
    knee = rng.random(n) < 0.5
    lo, hi = np.log(c_ref * 1.05), np.log(max(l3_bytes, c_ref * 1.1))
    ws = np.where(knee, np.exp(rng.uniform(lo, hi, n)), np.inf)
    power = np.minimum(1.0, (np.where(knee, ws, 1.0) / fit.c0_bytes) ** -alpha)
    floor = np.where(knee, power * rng.uniform(0.05, 1.0, n), 0.0)
    return np.column_stack([log_r, alpha, ws, floor])


# ---------------------------------------------------------------------------- way splits

def exact_split(values: np.ndarray, total: int, minima: Sequence[int]) -> list[int] | None:
    """Ways per group maximising ``sum_g values[g, w_g]`` with ``sum w_g = total`` and
    ``w_g >= minima[g]`` (dynamic programme, exact). None if the minima do not fit."""
    g = len(values)
    if sum(minima) > total:
        return None
    best = np.full((g + 1, total + 1), -np.inf)
    arg = np.zeros((g + 1, total + 1), dtype=int)
    best[0, 0] = 0.0
    t = np.arange(total + 1)
    for j in range(g):
        # cand[t, w] = best[j, t - w] + values[j, w] for minima[j] <= w <= t
        w = np.arange(minima[j], total + 1)
        prev = np.where(t[:, None] >= w[None, :], best[j][np.clip(t[:, None] - w[None, :], 0, None)], -np.inf)
        cand = prev + values[j, w][None, :]
        k = np.argmax(cand, axis=1)                 # first maximum: the fewest ways, as before
        best[j + 1] = cand[t, k]
        arg[j + 1] = w[k]
    if not np.isfinite(best[g, total]):
        return None
    sizes, t = [], total
    for j in range(g, 0, -1):
        sizes.append(int(arg[j, t]))
        t -= arg[j, t]
    return sizes[::-1]


def _stacked(groups: Sequence[tuple[int, ...]], sizes: Sequence[int], n: int, start: int) -> list[int]:
    masks = [0] * n
    at = start
    for members, z in zip(groups, sizes, strict=True):
        for i in members:
            masks[i] = contiguous_mask(at, z)
        at += z
    return masks


# ---------------------------------------------------------------------------- the plan

def plan_socket(socket_facts: SocketFacts, vms: Sequence[VmInput | tuple], current_masks: Mapping[int, int],
                *, cos_budget: int, policy: Policy | None = None) -> SocketAdvice:
    """The CAT plan for one socket (method: module docstring).

    ``vms``: `VmInput` or tuples (domid, name, priority, CurveFit[, vcpus]).
    ``current_masks``: domid -> today's L3 mask (missing: the default all-ones mask).
    """
    policy = policy or Policy()
    items, log_scale = _absolute([v if isinstance(v, VmInput) else VmInput(*v) for v in vms], policy)
    W = socket_facts.ways
    if not W:
        raise ValueError("the socket's CBM length is unknown")
    l3 = float(socket_facts.l3_bytes or 0.0)
    if l3 <= 0:
        raise ValueError("the socket's L3 size is unknown")
    full = full_mask(W)
    wb = l3 / W
    n = len(items)
    now = [int(current_masks.get(v.domid, full)) for v in items]
    kinds = [classify(v.fit, l3) for v in items]
    latency = loaded_latency(items, policy)
    # a flat or streaming label from an unmeasured curve is a guess unless the VM misses faster
    # than demand misses can: "unknown" (not pooled with the streamers, reasons say so)
    kinds = ["unknown" if k in ("streaming", "insensitive") and not v.fit.measured
             and not _prefetch_bound(v.fit, v.running_vcpus, policy, latency) else k
             for k, v in zip(kinds, items, strict=True)]
    # a measured but shallow slope on a VM that misses faster than demand misses can is the
    # latency confound of a streamer (squeezed, it leaves the bus to itself and runs faster)
    kinds = ["streaming" if k == "sensitive" and v.fit.measured and v.fit.alpha < SHALLOW_ALPHA
             and _prefetch_bound(v.fit, v.running_vcpus, policy, latency) else k
             for k, v in zip(kinds, items, strict=True)]
    if n == 0:
        return SocketAdvice(W, cos_budget, 0, (), "today", 0.0, (0.0, 0.0), (), "no VMs on this socket")
    if any(v.fit.relative for v in items) and not policy.traffic:
        return _today(items, kinds, now, W, wb, cos_budget, NO_TRAFFIC)
    avail = W - policy.reserved_ways
    start = policy.reserved_ways
    model = _Model(items, W, wb, policy, now, latency, [k == "streaming" for k in kinds], log_scale)
    min_ways = [max(policy.min_bits, ceil(policy.min_mib.get(v.name, 0.0) * MIB / wb - 1e-9)) for v in items]
    guaranteed = [policy.min_mib.get(v.name, 0.0) > 0 for v in items]

    cands: list[tuple[str, list[int], list[tuple[int, ...]] | None]] = []
    value_cache: dict[Group, np.ndarray] = {}

    def values(groups: Sequence[Group], cols: np.ndarray | None = None) -> np.ndarray:
        """(len(groups), avail + 1) group value curves, cached (or only the way counts `cols`,
        not cached: candidate merges). Merge decisions need the curves' shape, not their full
        uncertainty: a sub-ensemble (candidates are scored on the whole)."""
        if cols is not None:
            return model.group_values(list(groups), avail, draws=MERGE_DRAWS, ways=cols)
        missing = list(dict.fromkeys(g for g in groups if g not in value_cache))
        if missing:
            fresh = model.group_values(missing, avail, draws=MERGE_DRAWS)
            value_cache.update(zip(missing, fresh, strict=True))
        return np.stack([value_cache[g] for g in groups])

    # 4. KPart-style clustering, with the streaming VMs pooled in one starting group
    # a guarantee is a private run: guaranteed VMs are never pooled, overlaid or overlapped
    streaming = tuple(i for i in range(n) if kinds[i] == "streaming" and not guaranteed[i])
    any_guarantee = any(guaranteed)
    # 6b. light VMs (least bandwidth; none when any VM has a guarantee, as a VM at the default
    # mask overlaps every run) may stay at the default mask: they barely
    # pollute and free COS for the rest (a small shared range; the harness's overlay family)
    light_order = sorted((i for i in range(n) if kinds[i] != "streaming" and not any_guarantee
                          and reserved_ok(policy)), key=lambda i: (items[i].fit.median_bandwidth, i))
    at_default: list[tuple[int, ...]] = [()]
    if policy.overlap:
        most = min(len(light_order), n - 2, LIGHT_VARIANTS)
        at_default += [tuple(light_order[:j]) for j in range(1, most + 1)]
    pool = streaming
    units = [(i,) for i in range(n)]
    if policy.seed_streaming and len(pool) > 1:
        units = [pool] + [(i,) for i in range(n) if i not in pool]
    levels = _levels(units, cos_budget, avail, policy, guaranteed, values)
    for light in at_default:
        tag = f", {len(light)} light at default" if light else ""
        # the light VMs leave their groups (a group of light VMs only disappears): merging again
        # without them changes little and costs most of the planning time
        variants: dict[tuple[Group, ...], int] = {}
        for k, groups in levels.items():
            kept = tuple(sorted({tuple(i for i in g if i not in light) for g in groups} - {()}))
            if len(kept) >= 2:
                variants.setdefault(kept, k)
        split: list[tuple[float, int, list[Group], list[int]]] = []
        for kept, k in variants.items():
            groups = list(kept)
            table = values(groups)
            sizes = exact_split(table, avail, [max(min_ways[i] for i in g) for g in groups])
            if sizes is not None:
                estimate = float(sum(table[j, z] for j, z in enumerate(sizes)))
                split.append((estimate, k, groups, sizes))
        # only the most promising levels by the sub-ensemble's estimate go on to be scored on the
        # whole ensemble (scoring, with its latency feedback, is the costly part)
        split.sort(key=lambda x: (-x[0], x[1]))
        for _, k, groups, sizes in split[:LEVELS_SCORED]:
            masks = _stacked(groups, sizes, n, start)
            for i in light:
                masks[i] = full
            cands.append((f"kpart-{k}+exact{tag}", masks, groups))
            # 6. the streaming group laid over the top ways of its neighbour's run
            if not (policy.overlap and pool and pool in groups and len(groups) >= 2):
                continue
            s_idx = groups.index(pool)
            rest = [g for g in groups if g != pool]
            if any(guaranteed[i] for i in rest[-1]):
                continue                                   # the overlaid run would be shared
            r_sizes = exact_split(values(rest), avail,
                                  [max(min_ways[i] for i in g) for g in rest])
            r = max(policy.min_bits, sizes[s_idx])
            if r_sizes is not None and r < r_sizes[-1]:
                masks = _stacked(rest, r_sizes, n, start)
                for i in pool:
                    masks[i] = contiguous_mask(start + avail - r, r)
                for i in light:
                    masks[i] = full
                cands.append((f"kpart-{k}+exact, streaming over the top {r} way(s){tag}", masks, None))
    # UCP lookahead on the fitted miss curves, as a candidate (KPart merge when over budget)
    # (it knows no guarantees: only without them)
    ucp = None if any_guarantee else _ucp_fitted(items, model, W, avail, start, cos_budget, policy)
    if ucp is not None:
        cands.append(("UCP lookahead on fitted curves", ucp, None))

    # 7. evaluate every candidate and today's masks on the ensemble
    ws_now, _, _ = model.ws_of(now)
    scored: list[Candidate] = []
    rels: dict[tuple[int, ...], np.ndarray] = {}
    caps: dict[tuple[int, ...], np.ndarray] = {}

    # the fair-share floor protects the VMs whose curve says they need cache
    protected = [i for i in range(n) if kinds[i] in ("sensitive", "small")]

    def score(label: str, masks: Sequence[int], near: tuple[int, ...] | None = None) -> Candidate:
        """A candidate judged on the ensemble; `near`: a scored layout one step away, whose
        equilibrium is where the search for this one starts."""
        ws, rel, cap = model.ws_of(masks, caps.get(near) if near is not None else None)
        gain = ws / ws_now - 1.0
        rels[tuple(int(m) for m in masks)] = rel
        caps[tuple(int(m) for m in masks)] = cap
        lo, hi, risk = np.quantile(gain, [0.05, 0.95, policy.risk_quantile])
        mean = float(np.mean(gain))
        lo, hi = band(mean, float(lo), float(hi))
        speeds = np.mean(rel[:, protected], axis=0)
        worst = int(np.argmin(speeds)) if len(protected) else -1
        return Candidate(label, tuple(int(m) for m in masks), mean, lo, hi,
                         float(risk), float(np.mean(gain > 0)),
                         float(speeds[worst]) if worst >= 0 else 1.0, protected[worst] if worst >= 0 else -1)
    seen: set[tuple[int, ...]] = set()
    for label, masks, _ in cands:
        key = tuple(masks)
        if key in seen or tuple(now) == key:
            continue
        seen.add(key)
        if not all(valid(m, W) for m in masks) or len(set(masks) - {full}) > cos_budget:
            continue
        scored.append(score(label, masks))
    scored.sort(key=lambda c: (-c.gain_risk, -c.gain_mean, c.label))
    # 7b. a small local search from the leading candidates: move one way across a
    # boundary between adjacent runs, judged on the ensemble with the latency feedback
    for c in scored[:LOCAL_SEARCH_STARTS]:
        refined = _local_search(c, score, W, full, start, avail, min_ways, policy)
        if refined is not None and tuple(refined.masks) not in seen:
            seen.add(tuple(refined.masks))
            scored.append(refined)
    scored.sort(key=lambda c: (-c.gain_risk, -c.gain_mean, c.label))
    # the fair-share floor: no plan may buy weighted speedup with one VM's slowdown beyond it
    fair = [c for c in scored if c.worst_speed >= 1.0 - policy.max_slowdown]
    best = fair[0] if fair else None
    if best is not None:
        tied = [c for c in fair if c.gain_risk >= best.gain_risk - policy.tie_margin]
        best = min(tied, key=lambda c: (len(set(c.masks) - {full}), -c.gain_risk, c.label))
    declined = None
    unfair = best is None and bool(scored)
    if unfair:
        best = scored[0]                # not to be applied: the reason says why
    if best is None:
        declined = "no valid alternative to today's masks"
    elif unfair and best.gain_mean >= policy.hysteresis:
        victim = items[best.worst_vm].name if best.worst_vm >= 0 else "a cache-sensitive VM"
        declined = (f"every plan worth making slows a cache-sensitive VM by more than the "
                    f"{100 * policy.max_slowdown:.0f}% fair-share floor (the best, {best.label}, "
                    f"{100 * best.gain_mean:+.1f}% weighted speedup, slows {victim} by "
                    f"{100 * (1 - best.worst_speed):.0f}%)")
    elif best.gain_mean < policy.hysteresis:
        declined = (f"best plan ({best.label}) predicts {100 * best.gain_mean:+.1f}% weighted speedup, "
                    f"under the {100 * policy.hysteresis:.0f}% hysteresis")
    elif best.p_gain < policy.confidence:
        declined = (f"best plan ({best.label}) predicts {100 * best.gain_mean:+.1f}% but only "
                    f"{100 * best.p_gain:.0f}% of the curves' uncertainty agrees (need "
                    f"{100 * policy.confidence:.0f}%): within the uncertainty")
    unmeasured = [v.name for v in items if not v.fit.measured and v.fit.median_bandwidth >= IDLE_BW]
    if declined and unmeasured:
        # the uncertainty comes from curves the history could not fit: a sweep measures them
        declined += (f"; {len(unmeasured)} VM(s) have no measured curve ({', '.join(unmeasured[:4])}"
                     f"{', ...' if len(unmeasured) > 4 else ''}): `rdtadvisor calibrate` schedules a sweep "
                     "that measures them")
    if declined or best is None:          # (no best: declined says so)
        return _today(items, kinds, now, W, wb, cos_budget, declined, tuple(scored))
    masks = list(best.masks)
    rel = rels[best.masks]
    groups_of = _groups(masks)
    relative_total = sum(u.fit.median_bandwidth for u in items if u.fit.relative)
    out = []
    for i, v in enumerate(items):
        m = masks[i]
        ways = bin(m).count("1")
        reason = _reason(kinds[i], v, m, now[i], ways, wb, model, i, masks, full, relative_total)
        out.append(VmAdvice(v.domid, v.name, kinds[i], groups_of[m], m, now[i], ways, ways * wb,
                            float(np.mean(rel[:, i]) - 1.0), reason))
    return SocketAdvice(W, cos_budget, len(set(masks) - {full}), tuple(out), best.label, best.gain_mean,
                        (best.gain_low, best.gain_high), tuple(scored), None, best.p_gain)


def _groups(masks: Sequence[int]) -> dict[int, int]:
    """mask -> its COS group's index, in order of first appearance (identical masks share one)."""
    out: dict[int, int] = {}
    for m in masks:
        out.setdefault(m, len(out))
    return out


def _today(items: Sequence[VmInput], kinds: Sequence[str], now: Sequence[int], W: int, wb: float,
           cos_budget: int, why: str | None, candidates: tuple[Candidate, ...] = ()) -> SocketAdvice:
    """No change: every VM keeps today's mask, and `why` says why (`candidates`: those scored)."""
    groups_of = _groups(now)
    vms = tuple(VmAdvice(v.domid, v.name, k, groups_of[m], m, m, bin(m).count("1"), bin(m).count("1") * wb,
                         0.0, f"{k}: keeps {m:#x} (no change recommended)")
                for v, k, m in zip(items, kinds, now, strict=True))
    return SocketAdvice(W, cos_budget, len(set(now) - {full_mask(W)}), vms, "today", 0.0, (0.0, 0.0),
                        candidates, why)


def band(mean: float, low: float, high: float, model_error: float = MODEL_ERROR) -> tuple[float, float]:
    """The 90 % band of a predicted gain: the ensemble's ``low``..``high`` widened in
    quadrature by ``model_error`` x ``|mean|`` on each side (module docstring, step 8)."""
    e = model_error * abs(mean)
    return mean - float(np.hypot(mean - low, e)), mean + float(np.hypot(high - mean, e))


def _local_search(cand: Candidate, score, W: int, full: int, start: int, avail: int,
                  min_ways: Sequence[int], policy: Policy, rounds: int = 4) -> Candidate | None:
    """Hill-climb the run boundaries of a disjoint layout (VMs at the default mask stay there).
    None when the layout is not a tiling of disjoint runs or nothing improves."""
    masks = list(cand.masks)
    runs = sorted({m for m in masks if m != full}, key=lambda m: (m & -m))
    covered = 0
    for m in runs:
        if covered & m:
            return None
        covered |= m
    if len(runs) < 2 or covered != contiguous_mask(start, avail):
        return None
    sizes = [bin(m).count("1") for m in runs]
    members = [[i for i, m in enumerate(masks) if m == r] for r in runs]
    least = [max([policy.min_bits] + [min_ways[i] for i in g]) for g in members]
    best, improved = cand, False
    for _ in range(rounds):
        step = None
        for b in range(len(sizes) - 1):
            for d in (-1, 1):
                trial = list(sizes)
                trial[b] += d
                trial[b + 1] -= d
                if trial[b] < least[b] or trial[b + 1] < least[b + 1]:
                    continue
                new = list(masks)
                at = start
                for g, z in zip(members, trial, strict=True):
                    for i in g:
                        new[i] = contiguous_mask(at, z)
                    at += z
                c = score(f"{cand.label} + local search", new, near=tuple(masks))
                if (c.gain_risk, c.gain_mean) > (best.gain_risk, best.gain_mean) and (
                        step is None or (c.gain_risk, c.gain_mean) > (step[0].gain_risk, step[0].gain_mean)):
                    step = (c, trial, new)
        if step is None:
            break
        best, sizes, masks, improved = step[0], step[1], step[2], True
    return best if improved else None


MERGE_DRAWS = 4         # ensemble members behind KPart's merge decisions
LEVELS_SCORED = 2       # merge levels per variant scored on the whole ensemble
LIGHT_VARIANTS = 2      # leave the 1..N lightest VMs at the default mask (alternatives)
MERGE_COLUMNS = 6       # way counts a candidate merge is judged at


def reserved_ok(policy: Policy) -> bool:
    """A VM may stay at the default mask only when no ways are reserved (it would use them)."""
    return policy.reserved_ways == 0


def _levels(units: list[Group], cos_budget: int, avail: int, policy: Policy,
            guaranteed: Sequence[bool], values) -> dict[int, list[Group]]:
    """KPart merge levels: for every k in 2..K, the groups (VM index tuples) left by greedy
    merging of ``units`` by least loss of expected WS (`sharing.merge_levels` on the negated
    group values, the loss sampled at `merge_columns` way counts). VMs with a guarantee are
    never merged."""
    max_groups = min(cos_budget, avail // max(policy.min_bits, 1), len(units))
    return merge_levels(units, max_groups, lambda groups, cols=None: -values(groups, cols),
                        can_merge=lambda g: not any(guaranteed[i] for i in g), columns=merge_columns(avail))


def merge_columns(ways: int) -> np.ndarray:
    """The way counts a merge's loss is averaged over: all of 2..W up to `MERGE_COLUMNS` of
    them, else that many spread evenly (a quadrature of the same mean)."""
    if ways - 1 <= MERGE_COLUMNS:
        return np.arange(2, ways + 1)
    return np.unique(np.round(np.linspace(2, ways, MERGE_COLUMNS)).astype(int))


def _ucp_fitted(items: Sequence[VmInput], model: _Model, W: int, avail: int, start: int, cos_budget: int,
                policy: Policy) -> list[int] | None:
    """UCP lookahead (+ KPart merge on the summed-miss curves) on the fitted best estimates."""
    n = len(items)
    g = max(1, min(n, cos_budget, avail // max(policy.min_bits, 1)))
    if g == 1:
        return None
    best = tuple(p[:1] for p in model.params)

    def curves(groups: Sequence[Group], cols: np.ndarray | None = None) -> np.ndarray:
        pp, _ = padded(best, groups)
        counts = np.arange(1, avail + 1) if cols is None else np.asarray(cols)
        m = pooled_misses(pp, counts * model.wb, model.c0).sum(axis=(2, 3)).T        # (P, W)
        return m if cols is not None else np.concatenate([m[:, :1], m], axis=1)

    singles = [(i,) for i in range(n)]
    groups = merge_levels(singles, g, curves, bottom=g)[g] if g < n else singles
    try:
        sizes = lookahead(curves(groups), avail,
                                    min_alloc=max(policy.min_bits, 1))
    except ValueError:
        return None
    return _stacked(groups, sizes, n, start)


def _traffic(f: CurveFit, relative_total: float) -> str:
    """How much memory traffic a VM makes: its median bandwidth, or without MBM (a relative
    curve) its share of the socket's insertions, which is all occupancy shows."""
    if f.relative:
        share = f.median_bandwidth / max(relative_total, 1e-300)
        return f"{100 * share:.0f}% of the socket's insertions (no MBM)"
    return f"{f.median_bandwidth / 1e9:.1f} GB/s"


def _reason(kind: str, v: VmInput, mask: int, now: int, ways: int, wb: float, model: _Model, i: int,
            masks: Sequence[int], full: int, relative_total: float = 0.0) -> str:
    sharers = sum(1 for m in masks if m == mask) - 1
    overlapped = any(m != mask and m & mask for m in masks)
    f = v.fit
    m_full = float(f.misses(model.ways * wb))
    m_one = float(f.misses(wb))
    m_here = float(f.misses(ways * wb))
    saved = 100.0 * (1 - m_here / m_one) if m_one > 0 else 0.0
    share = f" shared with {sharers} other VM{'s' * (sharers != 1)}" if sharers else ""
    over = " (overlapping another run)" if overlapped else ""
    if mask == full and kind in ("idle", "small", "insensitive"):
        # one of step 6's light VMs: say why it is not in a partition like the others
        what = {"idle": f"idle ({f.median_bandwidth / 1e6:.2f} MB/s)",
                "small": f"small working set ({f.ws_bytes / MIB:.1f} MiB)",
                "insensitive": "insensitive (flat curve, little bandwidth)"}[kind]
        return f"{what}: left on the default mask, where it allocates too little to matter"
    if kind == "streaming":
        curve = ("curve not measured, class prior: ask for a calibration" if f.fallback
                 else f"flat curve alpha {f.alpha:.2f}")
        return (f"streaming ({_traffic(f, relative_total)}, {curve}): confined "
                f"to {ways} way{'s' * (ways != 1)}{share}{over}")
    if kind == "unknown":
        return (f"curve not measured ({_traffic(f, relative_total)}; flat-looking from shared periods "
                f"only, or a class prior: ask for a calibration): {ways} way{'s' * (ways != 1)}{share}{over}")
    if kind == "idle":
        region = f"a {ways}-way region{share}" if sharers else f"{ways} way{'s' * (ways != 1)}"
        return f"idle ({f.median_bandwidth / 1e6:.2f} MB/s): in {region}{over}"
    if kind == "small":
        return (f"small working set ({f.ws_bytes / MIB:.1f} MiB): {ways} way{'s' * (ways != 1)}{share} "
                f"hold it{over}")
    if kind == "insensitive":
        return f"insensitive (flat curve, little bandwidth): {ways} way{'s' * (ways != 1)}{share}{over}"
    more = 100 * (1 - m_full / m_here) if m_here > 0 and m_full < m_here else 0.0
    notes = [t for t in (share.strip(), "overlapping another run" if overlapped else "") if t]
    held = f"{ways} way{'s' * (ways != 1)}" + (f" ({', '.join(notes)})" if notes else "")
    if ways <= 1 and more < 0.5:
        return f"cache-sensitive: {held}, enough for it"
    if ways <= 1:
        # nothing to compare with: say what it gives up, and why
        return (f"cache-sensitive: {held}; the whole cache would save {more:.0f}% of its misses, but those "
                "ways speed the others up more")
    extra = f"; the whole cache would save {more:.0f}% more" if more >= 0.5 else ""
    return f"cache-sensitive: {held} save {saved:.0f}% of its misses vs 1 way{extra}"


# ---------------------------------------------------------------------------- harness adapter


