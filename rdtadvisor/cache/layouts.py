"""Valid L3 CAT layouts of one socket, and the exhaustive families the scoring harness searches.

A `Layout` gives every VM on a socket one capacity bitmask (CBM). It is valid when every
mask passes Xen's ``cat_check_cbm`` (`valid`: non-zero, one contiguous run of ones, no bit at
or above the CBM length) and the layout fits the COS budget: the number of *distinct
non-default* masks is at most the socket's usable COS count K (`cos_used`). Xen reserves
COS 0 for the default all-ones mask, so a VM left at default costs nothing, and VMs whose
masks are identical share one COS (``find_cos`` before ``pick_avail_cos``; see
``docs/xl-formats.md``, "Setting masks, and what Xen enforces"). Under CDP
the budget is ``(cos_max - 1) >> 1``; callers pass the halved K (`cdp_budget`).

Two families are enumerated, both as numpy arrays of masks (`LayoutSet`), because the
harness scores every member with one batched solve:

(a) **Disjoint** (`disjoint`): the VMs are split into k <= K groups (a set partition; VMs in
    one group share one mask, i.e. one COS), and the W ways into k contiguous runs of
    >= 1 way, stacked from bit 0 in the order of each group's lowest VM index. Every way
    is used: in the truth model ways are interchangeable, and an idle way added to a
    neighbouring run gives that group more capacity, which lowers its miss ratios, the
    socket's bandwidth and so everybody's memory latency; a layout with idle ways is thus
    dominated by the same layout without them (and the count below assumes none). Ways a
    policy keeps back (I/O, DDIO, Domain-0) are the advisor's business, not the
    yardstick's. Since the ways are interchangeable, the order of the runs is irrelevant
    and one canonical order per (partition, sizes) suffices. The count is ``sum_{k<=K} S(n, k) C(W-1, k-1)``
    (Stirling numbers of the second kind): 12,161 for n = 6, K = 4, W = 11 (``docs/algorithms.md``,
    "Judging advice"). k = 1 is the all-ones mask, i.e. no partitioning at COS 0.

(b) **Overlay** (`overlay`): a non-empty set S of VMs (not all of them) shares one mask R
    laid *over* a disjoint layout (a) of the other VMs. Exactly two shapes of R are
    enumerated:

    * **default**: R = all ones. The VMs of S stay at COS 0 (free) and compete in every
      way, including the private runs of the others (``docs/algorithms.md``,
      "Layouts": a domain left at COS 0 can allocate into every way). The others use <= K COS.
    * **edge**: R = the top ``r`` ways of one group's run, for every ``r`` from 1 way (the
      small shared range for streaming VMs) up to one less than the run (r equal to
      the run would be the disjoint layout with S merged into that group). Within a run
      the ways are interchangeable, so "the top r" stands for any r of them.
      The group whose run R overlaps is any of the k groups: it is placed last (top bits),
      the others keep canonical order. S costs one COS: k + 1 <= K (k = 1: the others keep
      the default all-ones mask, so one COS).

    Both shapes keep every VM's mask contiguous. Overlays whose R straddles two runs, or
    several overlay sets, are not enumerated: they are the same mechanism (a polluter
    confined to a few ways of somebody else's run) at a combinatorial price the optimum's
    time budget (10 s for a 6-VM socket, `benchmarks/bench_optimum.py`) cannot pay.
    n = 6, K = 4, W = 11: 141,920 overlay layouts (23,400 of them "default", 118,520
    "edge"), 154,081 in all.

`count_disjoint` gives the closed form of (a); `count_overlay` that of (b).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from math import comb

import numpy as np

from rdtadvisor.cache import cbm

FAMILY_DISJOINT, FAMILY_OVERLAY_DEFAULT, FAMILY_OVERLAY_EDGE = 0, 1, 2
FAMILY_NAMES = {FAMILY_DISJOINT: "disjoint", FAMILY_OVERLAY_DEFAULT: "overlay-default",
                FAMILY_OVERLAY_EDGE: "overlay-edge"}


def full_mask(ways: int) -> int:
    """The default all-ones CBM of COS 0."""
    return (1 << ways) - 1


def valid(mask: int, ways: int) -> bool:
    """Exactly Xen's ``cat_check_cbm``: bits only in [0, ways), at least one set, contiguous.

    (Xen 4.10+ also rejects values wider than 32 bits; with ``ways <= 32`` that is the
    range check.) No minimum width: Xen checks none.
    """
    return cbm.is_valid(mask, ways)


def cos_used(masks: Iterable[int], ways: int) -> int:
    """COS a set of masks needs in Xen: distinct masks other than the default (COS 0)."""
    return len({int(m) for m in masks} - {full_mask(ways)})


def cdp_budget(cos_max: int) -> int:
    """Usable COS per socket when CDP is on: Xen's ``(cos_max - 1) >> 1`` (each has code+data)."""
    return (cos_max - 1) >> 1


def contiguous_mask(start: int, length: int) -> int:
    """``length`` ones starting at bit ``start``."""
    return ((1 << length) - 1) << start


@dataclass(frozen=True)
class Layout:
    """One mask per VM (in the VMs' order) on a socket of ``ways`` ways."""

    masks: tuple[int, ...]
    ways: int
    family: str = "custom"

    def __post_init__(self) -> None:
        object.__setattr__(self, "masks", tuple(int(m) for m in self.masks))

    @property
    def cos_used(self) -> int:
        """Distinct non-default masks: what Xen's COS budget is charged."""
        return cos_used(self.masks, self.ways)

    def invalid_masks(self) -> list[int]:
        return [m for m in self.masks if not valid(m, self.ways)]

    def is_valid(self, cos_budget: int | None = None) -> bool:
        """Every mask passes `valid`, and (if given) ``cos_used <= cos_budget``."""
        if self.invalid_masks():
            return False
        return cos_budget is None or self.cos_used <= cos_budget

    def way_counts(self) -> tuple[int, ...]:
        return tuple(bin(m).count("1") for m in self.masks)

    def hex(self) -> str:
        width = (self.ways + 3) // 4
        return " ".join(f"{m:0{width}x}" for m in self.masks)

    @classmethod
    def default(cls, n: int, ways: int) -> Layout:
        """No partitioning: every VM at the default all-ones mask (COS 0)."""
        return cls((full_mask(ways),) * n, ways, "default")


class LayoutSet:
    """Many layouts of the same n VMs and W ways, as an (B, n) int64 array of masks."""

    def __init__(self, masks: np.ndarray, ways: int, family: np.ndarray | None = None) -> None:
        masks = np.asarray(masks, dtype=np.int64)
        self.masks = masks if masks.ndim == 2 else masks.reshape(len(masks), -1)
        self.ways = ways
        self.family = (np.zeros(len(self.masks), dtype=np.int8) if family is None
                       else np.asarray(family, dtype=np.int8))

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def n(self) -> int:
        return self.masks.shape[1]

    def __getitem__(self, i: int) -> Layout:
        return Layout(tuple(int(m) for m in self.masks[i]), self.ways, FAMILY_NAMES[int(self.family[i])])

    def __iter__(self) -> Iterator[Layout]:
        for i in range(len(self)):
            yield self[i]

    def cos_used(self) -> np.ndarray:
        """(B,) COS each layout needs (distinct non-default masks)."""
        m = np.sort(self.masks, axis=1)
        distinct = np.ones(m.shape, dtype=bool)
        distinct[:, 1:] = m[:, 1:] != m[:, :-1]
        return (distinct & (m != full_mask(self.ways))).sum(axis=1)

    @staticmethod
    def concat(parts: Sequence[LayoutSet], n: int, ways: int) -> LayoutSet:
        parts = [p for p in parts if len(p)]
        if not parts:
            return LayoutSet(np.zeros((0, n), dtype=np.int64), ways)
        return LayoutSet(np.concatenate([p.masks for p in parts]), ways,
                         np.concatenate([p.family for p in parts]))


# ---------------------------------------------------------------------------- combinatorics

@cache
def stirling2(n: int, k: int) -> int:
    """Stirling number of the second kind: partitions of n labelled items into k blocks."""
    if n == k:
        return 1
    if k == 0 or k > n:
        return 0
    return k * stirling2(n - 1, k) + stirling2(n - 1, k - 1)


def count_disjoint(n: int, ways: int, cos_budget: int) -> int:
    """Closed form of family (a): ``sum_{k=1}^{min(n, K', W)} S(n,k) C(W-1,k-1)``.

    K' = max(K, 1): the one-group layout is the default mask and needs no COS.
    """
    top = min(n, max(cos_budget, 1), ways)
    return sum(stirling2(n, k) * comb(ways - 1, k - 1) for k in range(1, top + 1))


def count_overlay(n: int, ways: int, cos_budget: int, edge_ways: Sequence[int] | None = None) -> int:
    """Closed form of family (b) (see the module docstring)."""
    edge_ways = range(1, ways) if edge_ways is None else edge_ways
    total = 0
    for s in range(1, n):
        rest = n - s
        # default overlay: the rest in any disjoint layout but the one-group one (that is the
        # no-partitioning layout again).
        total += comb(n, s) * (count_disjoint(rest, ways, cos_budget) - 1)
        # edge overlay: k groups, the host's run longer than r, every other run >= 1 way.
        for k in range(1, min(rest, ways) + 1):
            if _edge_cos(k) > cos_budget:
                continue
            for r in edge_ways:
                # runs: k-1 others >= 1 and the host >= r + 1, summing to W: C(W - r - 1, k - 1) each.
                if ways - r >= k:
                    total += comb(n, s) * stirling2(rest, k) * k * comb(ways - r - 1, k - 1)
    return total


def _edge_cos(k: int) -> int:
    """COS an edge overlay over k groups needs: k runs + R, but one run of all W ways is the default."""
    return 1 if k == 1 else k + 1


def set_partitions(n: int, max_blocks: int) -> dict[int, np.ndarray]:
    """Restricted-growth strings of n items with k <= max_blocks blocks, by k: {k: (P_k, n)}."""
    out: dict[int, list[list[int]]] = {}

    def rec(prefix: list[int], blocks: int) -> None:
        if len(prefix) == n:
            out.setdefault(blocks, []).append(list(prefix))
            return
        for b in range(min(blocks + 1, max_blocks)):
            prefix.append(b)
            rec(prefix, max(blocks, b + 1))
            prefix.pop()

    if n == 0:
        return {}
    rec([], 0)
    return {k: np.array(v, dtype=np.int64) for k, v in sorted(out.items())}


def compositions(total: int, parts: int, minimum: int = 1) -> np.ndarray:
    """Every tuple of ``parts`` integers >= minimum summing to ``total``: (C, parts)."""
    if parts == 0:
        return np.zeros((1 if total == 0 else 0, 0), dtype=np.int64)
    spare = total - parts * minimum
    if spare < 0:
        return np.zeros((0, parts), dtype=np.int64)
    # stars and bars: choose parts-1 bar positions among spare + parts - 1 slots.
    from itertools import combinations
    rows = []
    for bars in combinations(range(spare + parts - 1), parts - 1):
        edges = (-1, *bars, spare + parts - 1)
        rows.append([edges[i + 1] - edges[i] - 1 + minimum for i in range(parts)])
    return np.array(rows, dtype=np.int64).reshape(-1, parts)


def _stack(sizes: np.ndarray) -> np.ndarray:
    """(C, k) run lengths stacked from bit 0 -> (C, k) masks."""
    starts = np.concatenate([np.zeros((len(sizes), 1), dtype=np.int64), np.cumsum(sizes, axis=1)[:, :-1]],
                            axis=1)
    return ((np.int64(1) << sizes) - 1) << starts


def disjoint(n: int, ways: int, cos_budget: int) -> LayoutSet:
    """Family (a): every disjoint contiguous layout with <= K groups using all W ways."""
    if n < 1 or ways < 1:
        raise ValueError("need at least one VM and one way")
    parts = []
    for k, rgs in set_partitions(n, min(max(cos_budget, 1), ways)).items():
        block_masks = _stack(compositions(ways, k))                 # (C, k)
        masks = block_masks[:, rgs].transpose(1, 0, 2).reshape(-1, n)  # (P*C, n)
        parts.append(LayoutSet(masks, ways))
    return LayoutSet.concat(parts, n, ways)


def overlay(n: int, ways: int, cos_budget: int, edge_ways: Sequence[int] | None = None) -> LayoutSet:
    """Family (b): one shared range R over a disjoint layout of the other VMs (module docstring).

    ``edge_ways`` restricts the widths r of the edge overlay (default: every width).
    """
    from itertools import combinations
    edge_ways = range(1, ways) if edge_ways is None else edge_ways
    parts: list[LayoutSet] = []
    full = full_mask(ways)
    for s in range(1, n):
        rest = n - s
        base = disjoint(rest, ways, cos_budget).masks
        base_masks = base[(base != full).any(axis=1)]
        for S in combinations(range(n), s):
            others = [i for i in range(n) if i not in S]
            sel_s, sel_o = np.array(S), np.array(others)
            # default overlay: S at all-ones over any partitioned layout of the others (k >= 2).
            m = np.empty((len(base_masks), n), dtype=np.int64)
            m[:, sel_o] = base_masks
            m[:, sel_s] = full
            parts.append(LayoutSet(m, ways, np.full(len(m), FAMILY_OVERLAY_DEFAULT)))
            # edge overlay: S on the top r ways of the host group's run, host placed last.
            for k, rgs in set_partitions(rest, ways).items():
                if _edge_cos(k) > cos_budget:
                    continue
                for r in edge_ways:
                    if ways - r < k:
                        continue
                    sizes = compositions(ways - r, k)                  # host gets +r below
                    sizes = sizes.copy()
                    sizes[:, -1] += r
                    run_masks = _stack(sizes)                          # (C, k): slot k-1 is the host
                    edge = contiguous_mask(ways - r, r)
                    for host in range(k):
                        order = [b for b in range(k) if b != host] + [host]   # block -> slot
                        slot_of = np.empty(k, dtype=np.int64)
                        slot_of[order] = np.arange(k)
                        mo = run_masks[:, slot_of[rgs]].transpose(1, 0, 2).reshape(-1, rest)
                        m = np.empty((len(mo), n), dtype=np.int64)
                        m[:, sel_o] = mo
                        m[:, sel_s] = edge
                        parts.append(LayoutSet(m, ways, np.full(len(m), FAMILY_OVERLAY_EDGE)))
    return LayoutSet.concat(parts, n, ways)


def enumerate_layouts(n: int, ways: int, cos_budget: int, *, overlapping: bool = True) -> LayoutSet:
    """Family (a), plus family (b) if ``overlapping``: what the harness's optimum searches."""
    parts = [disjoint(n, ways, cos_budget)]
    if overlapping:
        parts.append(overlay(n, ways, cos_budget))
    return LayoutSet.concat(parts, n, ways)


def per_vm(n: int, ways: int) -> LayoutSet:
    """Disjoint layouts with one private run per VM (n COS; the budget is not applied)."""
    if n > ways:
        return LayoutSet(np.zeros((0, n), dtype=np.int64), ways)
    return LayoutSet(_stack(compositions(ways, n)), ways)
