"""The baselines every CAT advisor is compared with: no partitioning, equal split, UCP lookahead.

All three return a valid `Layout` within the COS budget (`rdtadvisor.cache.layouts`), with
contiguous runs stacked from bit 0 (PARTIES-style, ``docs/algorithms.md``, "Layouts").

* `no_partitioning`: every VM at the default all-ones mask (COS 0; costs no COS).
* `equal_split`: ``g = min(n, K, W)`` groups; VM i joins group ``i mod g`` (round robin, so
  with n <= K every VM has its own run); each group gets ``W // g`` ways and the first
  ``W mod g`` groups one more. With g = 1 that is the default mask.
* `ucp_lookahead`: Qureshi & Patt's lookahead (MICRO 2006) as zsim ships it
  (``src/lookahead.cpp``): every partition starts at 1 way; while ways remain, each
  partition's best marginal utility is ``max_k (m(a) - m(a + k)) / k`` over every amount k
  still available, and the partition with the largest one gets its k (ties: the lower
  partition index, then the smaller k). Curves are misses/s over ways (`true_miss_curves`
  computes them from the truth model: each VM alone on the socket with a w-way mask; or
  pass any (n, W + 1) array or ``f(i, w)`` callable).

  **COS budget**: when there are more VMs than ``g = min(K, W)`` partitions, the VMs are first
  merged into g groups KPart-style (El-Sayed et al., HPCA 2018): start from one group per
  VM and repeatedly merge the pair of groups whose *sharing loss* is smallest, where the
  sharing loss of A and B is the mean over w = 2..W of ``m_AB(w) - min_a (m_A(a) + m_B(w - a))``:
  the misses of A and B sharing w ways (their combined curve, from the sharing model:
  `group_miss_curve`) minus their misses with the same w ways split at best between them.
  Lookahead then divides the ways among the groups, and each group's VMs share one mask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from rdtadvisor.advise.sharing import merge_levels
from rdtadvisor.cache.layouts import Layout, contiguous_mask, full_mask
from rdtadvisor.cache.lookahead import lookahead
from rdtadvisor.sim.model import Socket, Vm

#: A miss curve source: an (n, W + 1) array (column w = misses/s with w ways; column 0 unused)
#: or a callable ``f(i, w)`` giving VM i's misses/s with w ways.
Curves = np.ndarray | Callable[[int, int], float]


def no_partitioning(n: int, ways: int) -> Layout:
    """Every VM at the default all-ones mask (COS 0)."""
    return Layout.default(n, ways)


def stack(sizes: Sequence[int], group_of: Sequence[int], ways: int, family: str) -> Layout:
    """Masks for VMs whose group ``group_of[i]`` holds ``sizes[group]`` ways, runs stacked from bit 0.

    A single group holding every way is the default mask (no COS).
    """
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
    if sum(sizes) > ways or min(sizes) < 1:
        raise ValueError(f"way counts {list(sizes)} do not fit {ways} ways")
    group_masks = [contiguous_mask(int(s), int(z)) for s, z in zip(starts, sizes, strict=True)]
    return Layout(tuple(group_masks[g] for g in group_of), ways, family)


def equal_split(n: int, ways: int, cos_budget: int) -> Layout:
    """W // g ways per group, the remainder to the first groups; VMs to groups round robin."""
    g = max(1, min(n, cos_budget, ways))
    sizes = [ways // g + (1 if j < ways % g else 0) for j in range(g)]
    return stack(sizes, [i % g for i in range(n)], ways, "equal split")


def true_miss_curves(socket: Socket, vms: Sequence[Vm]) -> np.ndarray:
    """(n, W + 1) misses/s of each VM alone on the socket with a w-way mask (column 0 = 1 way)."""
    return np.stack([group_miss_curve(socket, [v]) for v in vms])


def group_miss_curve(socket: Socket, vms: Sequence[Vm]) -> np.ndarray:
    """(W + 1,) summed misses/s of ``vms`` sharing one w-way mask, alone on the socket.

    Column 0 repeats w = 1 (no mask is empty). Solved with the harness's batched solver,
    which is `model.solve` for many masks.
    """
    from rdtadvisor.sim.harness import solve_batch

    W = socket.ways
    masks = np.array([[contiguous_mask(0, w)] * len(vms) for w in range(1, W + 1)], dtype=np.int64)
    res = solve_batch(socket, vms, masks, alone_ips_=np.ones(len(vms)))
    total = res.misses.sum(axis=-1)
    return np.concatenate([total[:1], total])


def tabulate(curves: Curves, n: int, ways: int) -> np.ndarray:
    """A `Curves` source as an (n, W + 1) array."""
    if callable(curves):
        return np.array([[curves(i, max(w, 1)) for w in range(ways + 1)] for i in range(n)], dtype=float)
    c = np.asarray(curves, dtype=float)
    if c.shape != (n, ways + 1):
        raise ValueError(f"curves must be ({n}, {ways + 1}), got {c.shape}")
    return c


def kpart_groups(n: int, groups: int, ways: int, curve_of: Callable[[tuple[int, ...]], np.ndarray],
                 ) -> list[tuple[int, ...]]:
    """Greedy KPart-style merging of n VMs into ``groups`` groups by least sharing loss.

    ``curve_of(members)`` gives the (ways + 1,) miss curve of those VMs sharing w ways.
    Returns the groups (sorted tuples of VM indices) ordered by their lowest member. The
    merging is `rdtadvisor.advise.sharing.merge_levels` (the CAT advisor's), over these curves.
    """
    singles = [(i,) for i in range(n)]
    if n <= groups:
        return singles

    def cost(members: list[tuple[int, ...]], cols: np.ndarray | None = None) -> np.ndarray:
        table = np.stack([np.asarray(curve_of(g), dtype=float) for g in members])
        if table.shape[1] != ways + 1:
            raise ValueError(f"curve_of must give {ways + 1} columns, got {table.shape[1]}")
        return table if cols is None else table[:, cols]

    return merge_levels(singles, groups, cost, bottom=groups)[groups]


def ucp_lookahead(socket: Socket, vms: Sequence[Vm], cos_budget: int, *, curves: Curves | None = None,
                  group_curve: Callable[[tuple[int, ...]], np.ndarray] | None = None) -> Layout:
    """UCP lookahead over miss curves (true ones by default), within the COS budget.

    With more VMs than ``min(K, W)`` partitions, the VMs are merged first (`kpart_groups`);
    the merged groups' curves come from ``group_curve(members)`` (default: the truth
    model's `group_miss_curve`).
    """
    n, W = len(vms), socket.ways
    table = true_miss_curves(socket, vms) if curves is None else tabulate(curves, n, W)
    g = max(1, min(n, cos_budget, W))
    if g == 1:
        return Layout((full_mask(W),) * n, W, "UCP lookahead")
    if g < n:
        gc = group_curve or (lambda members: group_miss_curve(socket, [vms[i] for i in members]))

        def curve_of(members: tuple[int, ...]) -> np.ndarray:
            return table[members[0]] if len(members) == 1 else gc(members)

        groups = kpart_groups(n, g, W, curve_of)
        group_table = np.stack([curve_of(m) for m in groups])
    else:
        groups = [(i,) for i in range(n)]
        group_table = table
    sizes = lookahead(group_table, W)
    group_of = [0] * n
    for j, members in enumerate(groups):
        for i in members:
            group_of[i] = j
    return stack(sizes, group_of, W, "UCP lookahead")
