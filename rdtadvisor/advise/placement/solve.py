"""Solving a placement: the fewest migrations that bring every overloaded host under its limits.

Sources are the hosts over a threshold by more than the policy's hysteresis (a host a hair
over its limit is left alone: no churn on noise), maintenance hosts holding VMs, and hosts
holding two members of an anti-affinity group. A plan must leave every source within its
capacity, and every host that receives a VM at most at ``max(its load before, capacity x
(1 - destination_margin))`` in each dimension, so no move creates a new hot spot.

Methods:

``milp``
    A mixed-integer model solved by HiGHS through ``scipy.optimize.milp`` (HiGHS is a
    leading open-source MIP solver and scipy already ships it; OR-Tools' CP-SAT would add a
    large dependency for no gain on a model this linear): binary x[v, h] for each
    candidate VM and destination (its own host included: staying), continuous slack per
    source host and dimension. Objective, lexicographic by weights: overload left (slack, a
    weight above any number of moves), then migrations, then memory moved. Candidates:
    every movable VM and every allowed host on small fleets (the model is then exact); on
    large ones the movable VMs of the sources and, for each, the `CANDIDATES` destinations
    with the most balanced room left after taking it (candidate pruning).
Destinations: the one whose largest share of a limit stays lowest after the move (balanced
headroom), with a small bonus (`FREE_WAYS_WEIGHT`) for contiguous L3 ways that no partition
holds, so the VM can get a mask of its own there later.

``heuristic``
    Always run first (it takes seconds at 1,000 hosts); when it meets the lower bound the plan
    is provably optimal and the model is skipped. Per source, most overloaded first, the
    fewest VMs whose leaving fixes it (the covering problem of `lower_bound`; ties to less
    memory, less important VMs and noisy neighbours) are placed by best fit; a source where
    one of them finds no destination falls to a largest-contribution-first greedy pass (the
    VM that removes the most of the source's normalised excess). Destinations by best
    balanced fit: vector bin packing, judged where each VM would land (`fleet.numa_landing`).

Afterwards `prune` undoes every migration that fixes nothing. Pools are independent (VMs
never leave theirs) and are solved one by one, each with its share of the time limit.

`lower_bound` counts, per source, the fewest of its VMs whose removal covers its excess in
every dimension at once and splits its anti-affinity groups (a tiny covering problem that
ignores destinations), plus every VM of a maintenance host: each migration removes one VM from
one host, so no plan does better. The gap reported is (migrations - bound) / bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import optimize, sparse

from rdtadvisor.advise.placement.fleet import Arrays, Fleet, Policy, loads, loads_after, moved, violations

CANDIDATES = 24  # destinations kept per VM on large fleets
FREE_WAYS_WEIGHT = 0.05  # a host with every way free of partitions counts as 5 points emptier
EXACT_PAIRS = 20_000  # VM x host pairs up to which every pair is a candidate
MILP_PAIRS = 2_000_000  # above this many candidate pairs the MILP is not attempted


@dataclass
class Solution:
    assignment: np.ndarray  # (V,) host index per VM
    method: str  # "milp" | "heuristic" | "none"
    seconds: float
    lower_bound: int  # no plan needs fewer migrations
    gap: float | None  # (migrations - lower_bound) / max(lower_bound, 1)
    optimal: bool  # fewest migrations possible (sources no plan can fix excepted)
    unresolved: np.ndarray  # host indices still violating after the plan
    sources: np.ndarray  # host indices that had to change
    current: np.ndarray  # (V,) host index per VM before the plan
    limit: np.ndarray | None = None  # (H, D) the most each host may carry after the plan
    stuck: np.ndarray | None = None  # (H,) bool: sources no plan can fix (pinned load alone too high)

    @property
    def migrations(self) -> int:
        return int((self.assignment != self.current).sum())


def plan(
    fleet: Fleet, policy: Policy, *, method: str = "auto", time_limit: float = 50.0
) -> tuple[Arrays, Solution]:
    """The arrays of `fleet` and the best plan found (see the module docstring).

    VMs never leave their pool, so pools are independent problems: each is solved on its own
    (its share of `time_limit` by its number of sources) and the plans joined, unless a
    migration budget ties them together.
    """
    pools = sorted({h.pool for h in fleet.hosts}, key=lambda x: (x is not None, x or ""))
    if len(pools) > 1 and policy.max_migrations is None:
        return _by_pool(fleet, policy, pools, method, time_limit)
    return _plan(fleet, policy, method=method, time_limit=time_limit)


def _by_pool(fleet: Fleet, policy: Policy, pools: list, method: str, time_limit: float
             ) -> tuple[Arrays, Solution]:
    started = time.perf_counter()
    a = fleet.arrays(policy)
    src = violations(a, a.current, slack=policy.hysteresis)
    host_pool = np.array([pools.index(h.pool) for h in fleet.hosts])
    n_src = np.bincount(host_pool[src], minlength=len(pools))
    assignment = a.current.copy()
    methods, bound, optimal = set(), 0, True
    for k in range(len(pools)):
        hosts = np.flatnonzero(host_pool == k)
        vms = np.flatnonzero(host_pool[a.current] == k)
        if not n_src[k]:
            continue
        sub = Fleet([fleet.hosts[h] for h in hosts], [fleet.vms[v] for v in vms])
        left = time_limit - (time.perf_counter() - started)
        share = left * n_src[k] / max(int(n_src[k:].sum()), 1)
        _, s = _plan(sub, policy, method=method, time_limit=max(share, 0.5))
        assignment[vms] = hosts[s.assignment]
        methods.add(s.method)
        bound += s.lower_bound
        optimal &= s.optimal
    limit = _limits(a, src, policy)
    stuck = impossible(a, src, limit)
    n = int((assignment != a.current).sum())
    return a, Solution(assignment, "milp" if "milp" in methods else "heuristic" if methods else "none",
                       time.perf_counter() - started, bound, (n - bound) / max(bound, 1), optimal,
                       np.flatnonzero(violations(a, assignment, limit=limit)), np.flatnonzero(src), a.current,
                       limit, stuck)


def _plan(
    fleet: Fleet, policy: Policy, *, method: str = "auto", time_limit: float = 50.0
) -> tuple[Arrays, Solution]:
    """`plan` for one pool."""
    started = time.perf_counter()
    a = fleet.arrays(policy)
    src = violations(a, a.current, slack=policy.hysteresis)
    if policy.max_migrations == 0 or not src.any():
        return a, Solution(
            a.current.copy(),
            "none",
            time.perf_counter() - started,
            0,
            0.0,
            True,
            np.flatnonzero(src),
            np.flatnonzero(src),
            a.current,
        )
    limit = _limits(a, src, policy)
    lb = lower_bound(a, src)
    # The heuristic first: when it meets the lower bound it is optimal and the model is not needed.
    stuck = impossible(a, src, limit)
    # Sources no plan can fix are not chased (moving their VMs would be churn), except that a
    # maintenance host still sends away every VM that can go.
    work = limit.copy()
    work[stuck] = np.inf
    assignment, how = prune(a, heuristic(a, src, work, policy), limit), "heuristic"
    left = violations(a, assignment, limit=limit)
    optimal = not (left & ~stuck).any() and int((assignment != a.current).sum()) == lb
    if method == "milp" or (method == "auto" and not optimal):
        # When the greedy pass fixed every source, the model asks for them all (hard: a far
        # easier model). When it left one unfixed, that source may be unfixable (no destination
        # takes what must leave) and proving the hard model infeasible can take the whole time
        # limit: the soft model fixes as many as it can instead.
        soft = bool((left & src & ~stuck).any())
        pairs = _candidates(a, src, work)
        remaining = time_limit - (time.perf_counter() - started)
        out = _milp(a, src, work, pairs, policy, remaining, soft=soft) \
            if pairs is not None and remaining > 0 else None
        if out is not None:
            candidate = prune(a, out[0], limit)
            if _better(a, candidate, assignment, limit) or method == "milp":
                assignment, optimal, how = candidate, out[1] and not soft, "milp"
    left = violations(a, assignment, limit=limit)
    unresolved = np.flatnonzero(left)
    n = int((assignment != a.current).sum())
    if (left & src).any():
        # the bound for what the plan fixes: sources it leaves over their limits send nothing
        lb = lower_bound(a, src & ~left) + int(sum((a.current[moved(a, assignment)] == h).sum()
                                                   for h in np.flatnonzero(left & src)))
    budget = policy.max_migrations if policy.max_migrations is not None else lb
    optimal = optimal or (not (left & ~stuck).any() and n == lb)
    return a, Solution(
        assignment,
        how,
        time.perf_counter() - started,
        lb,
        # a migration budget below the bound binds: the bound is then the budget itself
        (n - min(lb, budget)) / max(min(lb, budget), 1),
        optimal,
        unresolved,
        np.flatnonzero(src),
        a.current,
        limit,
        stuck,
    )


def prune(a: Arrays, assignment: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """The plan without the migrations that fix nothing.

    A migration stays only if undoing it would put some host over its limits that the plan
    leaves within them (the source it relieves, or a host it made room on), or if it empties
    a maintenance host. So a source that no plan fixes keeps its VMs (moving some of them
    would be churn), and a greedy pass's extra moves are dropped. Repeated until nothing
    more can be undone; largest memory first.
    """
    x = assignment.copy()
    n_hosts = limit.shape[0]
    load = loads_after(a, x)
    groups_of = _groups_of(a)
    count: dict[tuple[int, int], int] = {}
    for j, g in enumerate(a.groups):
        for h in x[g]:
            count[(j, int(h))] = count.get((j, int(h)), 0) + 1
    clashes = np.zeros(n_hosts, dtype=np.int64)
    for (_, h), c in count.items():
        clashes[h] += c > 1
    guests = np.bincount(x[~a.resident], minlength=n_hosts)

    def bad(h: int) -> bool:
        over = bool((load[h] > limit[h] * (1 + 1e-9) + 1e-6).any())
        return over or clashes[h] > 0 or bool(a.maintenance[h] and guests[h] > 0)

    def move(v: int, to: int) -> None:
        frm = int(x[v])
        weight = a.demand_at(np.array([v, v]), np.array([frm, to]))
        load[frm] -= weight[0]
        load[to] += weight[1]
        for j in groups_of[v]:
            for h, step in ((frm, -1), (to, 1)):
                was = count.get((j, h), 0)
                count[(j, h)] = was + step
                clashes[h] += int(was + step > 1) - int(was > 1)
        if not a.resident[v]:
            guests[frm] -= 1
            guests[to] += 1
        x[v] = to

    changed = True
    while changed:
        changed = False
        migrated = np.flatnonzero(x != a.current)
        for v in migrated[np.argsort(-a.demand[migrated, 2], kind="stable")]:
            home, there = int(a.current[v]), int(x[v])
            if a.maintenance[home]:
                continue  # asked for
            before = (bad(home), bad(there))
            move(int(v), home)
            if (bad(home) and not before[0]) or (bad(there) and not before[1]):
                move(int(v), there)
            else:
                changed = True
    return x


# --- limits and checks -----------------------------------------------------------------------


def _limits(a: Arrays, src: np.ndarray, policy: Policy) -> np.ndarray:
    """(H, 4): the most each host may carry after the plan (see the module docstring)."""
    before = loads(a.demand, a.current, len(src))
    limit = np.maximum(before, a.capacity * (1 - policy.destination_margin))
    # a source ends within capacity, and if it also receives, within the receivers' rule too
    limit[src] = np.minimum(a.capacity[src], limit[src])
    # a node's memory limits what may arrive there; a source only sheds it
    mem = a.node_memory_dims
    limit[np.ix_(src, mem)] = np.maximum(before[np.ix_(src, mem)], a.capacity[np.ix_(src, mem)])
    return limit


def impossible(a: Arrays, src: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """(H,) bool: sources no plan can fix, even by moving every movable VM away (pinned or
    resident VMs alone over the limit, a pinned VM on a maintenance host, pinned group mates)."""
    stay = a.current.copy()
    stay[a.movable] = -1
    kept = stay >= 0
    n_hosts = len(src)
    load = loads(a.demand[kept], stay[kept], n_hosts)
    out = (load > limit * (1 + 1e-9) + 1e-6).any(axis=1)
    out |= a.maintenance & (np.bincount(stay[kept & ~a.resident], minlength=n_hosts) > 0)
    for g in a.groups[:a.user_groups]:     # names never clash on one host before a plan
        fixed = g[~a.movable[g]]
        out |= np.bincount(a.current[fixed], minlength=n_hosts) > 1
    return out & src


def _better(a: Arrays, x: np.ndarray, y: np.ndarray, limit: np.ndarray) -> bool:
    """Is assignment `x` better than `y`: fewer hosts left violating, then fewer moves, then less
    memory moved?"""

    def key(z: np.ndarray) -> tuple[int, int, float]:
        m = z != a.current
        return int(violations(a, z, limit=limit).sum()), int(m.sum()), float(a.demand[m, 2].sum())

    return key(x) < key(y)


def lower_bound(a: Arrays, src: np.ndarray) -> int:
    """No plan moves fewer VMs than this (see the module docstring).

    Per source, the smallest set of its movable VMs whose removal covers its excess in every
    dimension at once and leaves at most one member of each group: a tiny covering problem
    (HiGHS) that ignores where the VMs go, so it is a valid bound for the whole plan.
    """
    n_hosts = len(src)
    load = loads(a.demand, a.current, n_hosts)
    total = 0
    for h in np.flatnonzero(src):
        on = np.flatnonzero(a.current == h)
        mov = on[a.movable[on]]
        if a.maintenance[h]:
            total += len(mov)
            continue
        cover = _cover(a, h, mov, load[h] - a.capacity[h], a.current)
        if cover is None:
            total += len(mov)  # cannot be covered: every movable VM would have to go
        elif isinstance(cover, int):
            total += cover
        else:
            total += len(cover)
    return total


def _cover(a: Arrays, h: int, mov: np.ndarray, excess: np.ndarray, assignment: np.ndarray,
           tie: np.ndarray | None = None) -> np.ndarray | int | None:
    """The fewest of `mov` (VMs on host `h`) whose removal covers `excess` in every dimension
    and splits the anti-affinity groups that clash there: their indices (ties broken by
    `tie`, a small extra cost per VM), a count when only a weaker greedy bound was found in
    time, or None when no subset covers it."""
    dims = np.flatnonzero(np.isfinite(excess) & (excess > 0) & ~a.node_memory_dims)
    rows = [a.demand[mov, d] / excess[d] for d in dims]      # scaled: bytes and B/s rows alike
    lo = [1.0] * len(rows)
    for g in a.groups[:a.user_groups]:       # names never clash on one host before a plan
        here = int((assignment[g] == h).sum())
        if here > 1:
            rows.append(np.isin(mov, g).astype(float))
            lo.append(here - 1)
    if not rows or not len(mov):
        return mov[:0]
    A = np.vstack(rows)
    need = np.array(lo)
    if (A.sum(axis=1) < need - 1e-9).any():
        return None
    cost = np.ones(len(mov)) + (tie if tie is not None else 0.0)
    res = optimize.milp(
        cost,
        constraints=optimize.LinearConstraint(A, need - 1e-9, np.inf),
        integrality=np.ones(len(mov)),
        bounds=optimize.Bounds(0, 1),
        options={"time_limit": 5.0},
    )
    if res.x is None or res.status != 0:
        return _greedy_cover(A, need)
    return mov[res.x > 0.5]


def _greedy_cover(A: np.ndarray, need: np.ndarray) -> int:
    """Per row, the fewest largest entries reaching its need; the max over rows (a weaker bound)."""
    best = 0
    for row, n in zip(A, need, strict=True):
        cum = np.cumsum(np.sort(row)[::-1])
        best = max(
            best, int(np.searchsorted(cum, n - 1e-9) + 1) if len(cum) and cum[-1] >= n - 1e-9 else len(row)
        )
    return best


# --- candidates and the MILP -----------------------------------------------------------------


def _candidates(a: Arrays, src: np.ndarray, limit: np.ndarray) -> list[tuple[int, np.ndarray]] | None:
    """(VM, destination hosts) pairs for the model, or None when it would be too large."""
    n_vms, n_hosts = a.demand.shape[0], len(src)
    base = loads(a.demand, a.current, n_hosts)
    exact = n_vms * n_hosts <= EXACT_PAIRS
    vms = np.flatnonzero(a.movable) if exact else np.flatnonzero(a.movable & src[a.current])
    out = []
    total = 0
    for v in vms:
        ok = np.ones(n_hosts, dtype=bool) if a.allowed is None else a.allowed[v].copy()
        ok[a.current[v]] = False
        if not exact:
            # a destination must at least take this VM on its own
            arriving = a.arrival(np.full(n_hosts, v), np.arange(n_hosts))
            ok &= ((base + arriving) <= limit + 1e-6).all(axis=1) & ~src
            cand = np.flatnonzero(ok)
            if len(cand) > CANDIDATES:
                room = np.where(np.isfinite(limit[cand]), limit[cand], np.inf)
                after = (base[cand] + arriving[cand]) / room
                worst = np.nan_to_num(after, nan=0.0).max(axis=1)
                cand = cand[np.argsort(worst, kind="stable")[:CANDIDATES]]
        else:
            cand = np.flatnonzero(ok)
        out.append((int(v), cand))
        total += len(cand) + 1
    return out if total <= MILP_PAIRS else None


def _milp(
    a: Arrays,
    src: np.ndarray,
    limit: np.ndarray,
    pairs: list[tuple[int, np.ndarray]],
    policy: Policy,
    time_limit: float,
    soft: bool = False,
) -> tuple[np.ndarray, bool] | None:
    """The model (see the module docstring); None when it finds no plan in time.

    ``soft``: sources need not all be fixed. A binary per source says whether the plan brings
    it within its limits (else it may not end worse than it is); fixing a source is worth more
    than any number of moves, and so is each VM a maintenance host sends away. The hard model
    (every source fixed) is far easier and is tried first.
    """
    n_hosts, n_dim = limit.shape
    movers = np.array([v for v, _ in pairs], dtype=np.int64)
    fixed = np.ones(a.demand.shape[0], dtype=bool)
    fixed[movers] = False
    base = loads(a.demand[fixed], a.current[fixed], n_hosts)
    # variables: x (one per VM x host, staying included), then slack per source x dimension
    var_vm, var_host = [], []
    for v, cand in pairs:
        hs = np.concatenate(([a.current[v]], cand))
        var_vm.append(np.full(len(hs), v))
        var_host.append(hs)
    vv = np.concatenate(var_vm)
    hh = np.concatenate(var_host)
    n_x = len(vv)
    srcs = np.flatnonzero(src)
    scale = np.where(np.isfinite(limit) & (limit > 0), limit, 1.0)
    n_s = len(srcs) * n_dim
    stays = hh == a.current[vv]
    mem = a.demand[vv, 2]
    mem_total = max(float(a.demand[movers, 2].sum()), 1.0)
    # migrations first, then memory; important VMs (priority 1) cost a little more to move
    prio = a.priority[vv] if a.priority is not None else np.full(len(vv), 3.0)
    move_cost = np.where(stays, 0.0, 1.0 + 0.5 * mem / mem_total + 0.1 * (5 - prio) / 4 / max(len(movers), 1))
    # Without a migration budget every fixable source must be fixed: hard constraints, a far
    # easier model. With one, overload left is allowed at a cost above every possible move.
    if policy.max_migrations is None:
        srcs = srcs[:0]
        n_s = 0
    big = 200.0 * (len(movers) + 1)
    slack_cost = np.full(n_s, big)
    soft = soft and policy.max_migrations is None
    fixable = np.flatnonzero(src & ~a.maintenance) if soft else np.zeros(0, dtype=np.int64)
    y_pos = {int(h): n_x + n_s + i for i, h in enumerate(fixable)}
    n_y = len(fixable)
    before = loads(a.demand, a.current, n_hosts)
    if soft:
        move_cost = move_cost + np.where(stays & a.maintenance[hh], big, 0.0)
    c = np.concatenate([move_cost, slack_cost, np.full(n_y, -big)])

    rows, cols, vals, lo, hi = [], [], [], [], []
    r = 0
    # each VM on exactly one host
    order = np.argsort(vv, kind="stable")
    starts = np.flatnonzero(np.r_[True, vv[order][1:] != vv[order][:-1]])
    for k, s0 in enumerate(starts):
        s1 = starts[k + 1] if k + 1 < len(starts) else len(order)
        idx = order[s0:s1]
        rows += [r] * len(idx)
        cols += list(idx)
        vals += [1.0] * len(idx)
        lo.append(1.0)
        hi.append(1.0)
        r += 1
    # capacity per host and dimension (normalised), sources with slack; a VM staying counts
    # as measured, a VM arriving where libxl would put it
    src_pos = {int(h): i for i, h in enumerate(srcs)}
    by_host = np.argsort(hh, kind="stable")
    cuts = np.flatnonzero(np.diff(hh[by_host])) + 1
    for idx in np.split(by_host, cuts):
        h = hh[idx[0]]
        pair_demand = a.demand_at(vv[idx], hh[idx])
        for d in range(n_dim):
            if not np.isfinite(limit[h, d]):
                continue
            coef = pair_demand[:, d] / scale[h, d]
            keep = coef > 0
            if not keep.any():
                continue
            rows += [r] * int(keep.sum())
            cols += list(idx[keep])
            vals += list(coef[keep])
            if int(h) in src_pos:
                rows.append(r)
                cols.append(n_x + src_pos[int(h)] * n_dim + d)
                vals.append(-1.0)
            lo.append(-np.inf)
            room = (limit[h, d] - base[h, d]) / scale[h, d]
            if int(h) in y_pos and before[h, d] > limit[h, d]:
                # unfixed (y = 0), the source may stay at its load before the plan
                rows.append(r)
                cols.append(y_pos[int(h)])
                vals.append((before[h, d] - limit[h, d]) / scale[h, d])
                room = (before[h, d] - base[h, d]) / scale[h, d]
            hi.append(room)
            r += 1
    # groups (anti-affinity, names): at most one member per host (fixed members count)
    if a.groups:
        member_vm = np.concatenate(a.groups)
        member_group = np.concatenate([np.full(len(g), j) for j, g in enumerate(a.groups)])
        fixed_on: dict[tuple[int, int], int] = {}
        for j, v in zip(member_group[fixed[member_vm]], member_vm[fixed[member_vm]], strict=True):
            key = (int(j), int(a.current[v]))
            fixed_on[key] = fixed_on.get(key, 0) + 1
        # every (variable, group of its VM) pair; one row per (group, host)
        per_vm = np.argsort(member_vm, kind="stable")
        sorted_vm = member_vm[per_vm]
        first = np.searchsorted(sorted_vm, vv, side="left")
        count = np.searchsorted(sorted_vm, vv, side="right") - first
        var = np.repeat(np.arange(n_x), count)
        offset = np.arange(len(var)) - np.repeat(np.cumsum(count) - count, count)
        grp = member_group[per_vm[np.repeat(first, count) + offset]]
        uniq, row_of = np.unique(grp.astype(np.int64) * n_hosts + hh[var], return_inverse=True)
        rows += list(r + row_of)
        cols += list(var)
        vals += [1.0] * len(var)
        for key in uniq:
            j, h = divmod(int(key), n_hosts)
            lo.append(-np.inf)
            hi.append(max(1.0 - fixed_on.get((j, h), 0), 0.0))
        r += len(uniq)
    # soft: a source the plan leaves over its limits receives nothing
    for h, col in y_pos.items():
        idx = np.flatnonzero((hh == h) & ~stays)
        if len(idx):
            rows += [r] * (len(idx) + 1)
            cols += [*idx, col]
            vals += [1.0] * len(idx) + [-float(len(idx))]
            lo.append(-np.inf)
            hi.append(0.0)
            r += 1
    # maintenance hosts keep nothing (movable VMs there must leave; soft: each one that stays
    # costs as much as an unfixed source)
    for h in np.flatnonzero(a.maintenance) if not soft else ():
        idx = np.flatnonzero(hh == h)
        if len(idx):
            rows += [r] * len(idx)
            cols += list(idx)
            vals += [1.0] * len(idx)
            lo.append(-np.inf)
            hi.append(0.0)
            r += 1
    if policy.max_migrations is not None:
        idx = np.flatnonzero(~stays)
        rows += [r] * len(idx)
        cols += list(idx)
        vals += [1.0] * len(idx)
        lo.append(-np.inf)
        hi.append(float(policy.max_migrations))
        r += 1
    A = sparse.csr_array((vals, (rows, cols)), shape=(r, n_x + n_s + n_y))
    integrality = np.concatenate([np.ones(n_x), np.zeros(n_s), np.ones(n_y)])
    bounds = optimize.Bounds(np.zeros(n_x + n_s + n_y),
                             np.concatenate([np.ones(n_x), np.full(n_s, np.inf), np.ones(n_y)]))
    res = optimize.milp(
        c,
        constraints=optimize.LinearConstraint(A, lo, hi),
        integrality=integrality,
        bounds=bounds,
        options={"time_limit": max(time_limit, 1.0), "disp": False, "mip_rel_gap": 1e-6},
    )
    if res.x is None:
        return None
    x = res.x[:n_x] > 0.5
    assignment = a.current.copy()
    assignment[vv[x]] = hh[x]
    return assignment, bool(res.status == 0)


# --- the heuristic ---------------------------------------------------------------------------


def heuristic(a: Arrays, src: np.ndarray, limit: np.ndarray, policy: Policy) -> np.ndarray:
    """Cover first, then greedy vector bin packing (see the module docstring); deterministic.

    Per source (the most overloaded first), the fewest VMs whose leaving fixes it (the
    covering problem of `lower_bound`, ties to less memory and less important VMs) are placed
    by best fit; where one of them finds no destination, that source falls to the greedy pass.
    When every source is fixed this way the plan meets the lower bound: it is optimal.
    """
    n_hosts = len(src)
    assignment = a.current.copy()
    load = loads(a.demand, assignment, n_hosts)
    groups_of = _groups_of(a)
    left = src.copy()
    if policy.max_migrations is None:
        scale = np.where(np.isfinite(limit) & (limit > 0), limit, np.inf)
        with np.errstate(invalid="ignore"):
            worst = np.nan_to_num(((load - limit) / scale).max(axis=1), nan=0.0)
        mem_max = max(float(a.demand[:, 2].max(initial=0.0)), 1.0)
        for h in sorted(np.flatnonzero(src & ~a.maintenance), key=lambda h: (-worst[h], h)):
            on = np.flatnonzero((assignment == h) & a.movable)
            prio = a.priority[on] if a.priority is not None else np.full(len(on), 3.0)
            # among equal counts: less memory to copy, less important VMs, noisy neighbours first
            noisy = a.aggressor[on] if a.aggressor is not None else np.zeros(len(on), dtype=bool)
            tie = 1e-3 * a.demand[on, 2] / mem_max + 1e-4 * (5 - prio) / 4 - 2e-3 * noisy
            chosen = _cover(a, int(h), on, load[h] - limit[h], assignment, tie)
            if chosen is None or isinstance(chosen, int):
                continue
            saved = (assignment.copy(), load.copy())
            with np.errstate(divide="ignore", invalid="ignore"):
                size = np.nan_to_num(a.demand[chosen] / scale[h], nan=0.0, posinf=0.0).max(axis=1)
            ok = True
            for v in chosen[np.argsort(-size, kind="stable")]:
                dest = _best_fit(a, int(v), load, limit, assignment, groups_of, src)
                if dest is None:
                    ok = False
                    break
                load[h] -= a.demand[v]
                load[dest] += a.arrival(np.array([v]), np.array([dest]))[0]
                assignment[v] = dest
            if ok:
                left[h] = False
            else:
                assignment, load = saved
    return _greedy(a, left, limit, policy, assignment, load, groups_of, src)


def _greedy(a: Arrays, todo: np.ndarray, limit: np.ndarray, policy: Policy, assignment: np.ndarray,
            load: np.ndarray, groups_of: list[list[int]], src: np.ndarray) -> np.ndarray:
    """Largest-contribution-first greedy per source in `todo`, from `assignment` (see the module
    docstring); no source in `src` receives."""
    scale = np.where(np.isfinite(limit) & (limit > 0), limit, np.inf)
    moved_already = int((assignment != a.current).sum())
    budget = (policy.max_migrations if policy.max_migrations is not None else len(assignment)) - moved_already
    for h in np.flatnonzero(todo):
        on = [int(v) for v in np.flatnonzero(assignment == h) if a.movable[v]]
        while on and budget > 0:
            with np.errstate(invalid="ignore"):  # inf - inf: a source left alone
                excess = np.nan_to_num(np.clip((load[h] - limit[h]) / scale[h], 0, None), nan=0.0)
            clash = [v for v in on if any((assignment[a.groups[g]] == h).sum() > 1 for g in groups_of[v])]
            if a.maintenance[h]:
                pick = max(on, key=lambda v: (a.demand[v, 2], -v))
            elif clash:
                pick = clash[0]
            elif excess.sum() <= 0:
                break
            else:
                # the VM removing the most excess (normalised), larger memory last
                gain = np.minimum(
                    a.demand[on] / np.where(np.isfinite(scale[h]), scale[h], np.inf), excess[None, :]
                ).sum(axis=1)
                # equal relief: the less important VM (higher priority number) moves first
                prio = -a.priority[on] if a.priority is not None else np.zeros(len(on))
                pick = on[int(np.lexsort((np.arange(len(on)), a.demand[on, 2], prio, -gain))[0])]
            dest = _best_fit(a, pick, load, limit, assignment, groups_of, src)
            on.remove(pick)
            if dest is None:
                continue
            load[h] -= a.demand[pick]
            load[dest] += a.arrival(np.array([pick]), np.array([dest]))[0]
            assignment[pick] = dest
            budget -= 1
    return assignment


def _groups_of(a: Arrays) -> list[list[int]]:
    """Per VM, the indices of the groups (anti-affinity, names) it belongs to."""
    out: list[list[int]] = [[] for _ in range(len(a.current))]
    for j, g in enumerate(a.groups):
        for v in g:
            out[int(v)].append(j)
    return out


def _best_fit(
    a: Arrays,
    v: int,
    load: np.ndarray,
    limit: np.ndarray,
    assignment: np.ndarray,
    groups_of: list[list[int]],
    src: np.ndarray,
) -> int | None:
    n_hosts = len(src)
    after = load + a.arrival(np.full(n_hosts, v), np.arange(n_hosts))
    ok = (after <= limit + 1e-6).all(axis=1) & ~src
    ok[assignment[v]] = False
    if a.allowed is not None:
        ok &= a.allowed[v]
    for g in groups_of[v]:
        mates = a.groups[g][a.groups[g] != v]
        ok &= np.bincount(assignment[mates], minlength=n_hosts) == 0
    cand = np.flatnonzero(ok)
    if not len(cand):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(np.isfinite(limit[cand]), after[cand] / limit[cand], 0.0)
    worst = np.nan_to_num(share, nan=0.0).max(axis=1)
    # balanced headroom first; contiguous ways free of partitions (room for the VM's own mask
    # later) worth up to FREE_WAYS_WEIGHT of it
    free = a.free_ways[cand] if a.free_ways is not None else 0.0
    return int(cand[np.lexsort((cand, worst - FREE_WAYS_WEIGHT * free))[0]])
