"""The exact optimum of a small placement problem, by enumeration: the oracle the solvers are tested against.

The rule (the same as `rdtadvisor.advise.placement.solve`): a host is a *source* when
``violations(a, a.current, slack=policy.hysteresis)`` flags it. A plan is feasible when

* only movable VMs move, each to a host ``allowed`` for it (never a maintenance host), and at most
  ``policy.max_migrations`` of them when set;
* afterwards every source host is within capacity in every dimension, holds no VM if in
  maintenance and no two members of an anti-affinity group;
* every host that receives a VM ends with ``load <= max(load before, capacity x (1 - destination_margin))``
  in every dimension and no two members of a group;
* hosts that neither send nor receive are not looked at (they are untouched).

The optimum is the feasible plan with the fewest migrations, then the least memory moved; among
equals the first in enumeration order (subsets in `itertools.combinations` order, destinations in
`itertools.product` order), so the answer is deterministic.

Enumeration: for k = 0, 1, 2, ... every k-subset of movable VMs, ordered by memory moved, and every
assignment of the subset to other hosts. Two prunings, both exact: each source host must send at
least one VM (its load only drops by sending, and its groups only break up by sending), and a
maintenance source must send all its VMs. The destination assignments of a batch of subsets are
evaluated at once with array operations.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from rdtadvisor.advise.placement.fleet import Arrays, Policy, loads, violations

# Candidates (subset x destination pattern) evaluated per batch: bounds the (batch, H, columns)
# temporaries to a few tens of MB.
BATCH = 1 << 16


def _columns(a: Arrays) -> np.ndarray:
    """(V, 5 + G): the 4 demands, a 1 (counts VMs, for maintenance), one indicator per group."""
    n_vms = a.demand.shape[0]
    extra = np.zeros((n_vms, 1 + len(a.groups)))
    extra[:, 0] = 1.0
    for j, g in enumerate(a.groups):
        extra[g, 1 + j] = 1.0
    return np.hstack([a.demand, extra])


def _subsets(candidates: np.ndarray, k: int, current: np.ndarray, sources: np.ndarray,
             must: np.ndarray, memory: np.ndarray) -> np.ndarray:
    """(S, k) VM indices: the k-subsets of `candidates` that include a VM of every source and every
    VM in `must`, ordered by memory moved (stable, so ties keep combination order)."""
    if k == 0:
        return np.zeros((1, 0), dtype=np.int64)
    n = math.comb(len(candidates), k)
    flat = np.fromiter(itertools.chain.from_iterable(itertools.combinations(candidates, k)),
                       dtype=np.int64, count=n * k)
    subs = flat.reshape(n, k)
    keep = np.ones(n, dtype=bool)
    hosts = current[subs]
    for s in sources:
        keep &= (hosts == s).any(axis=1)
    for v in must:
        keep &= (subs == v).any(axis=1)
    subs = subs[keep]
    order = np.argsort(memory[subs].sum(axis=1), kind="stable")
    return subs[order]


def exhaustive(a: Arrays, policy: Policy, max_moves: int = 6) -> np.ndarray | None:
    """The optimal assignment (fewest migrations, then least memory moved) by enumeration, or None
    when no feasible plan moves at most `max_moves` VMs (and `policy.max_migrations`).

    Meant for small fleets (<= 5 hosts, <= 20 VMs): the work grows as C(V, k) x (H - 1)^k."""
    if a.demand.shape[1] != 4:
        raise ValueError("exhaustive() judges the four pooled host dimensions only (no per-socket columns)")
    n_vms, n_hosts = a.demand.shape[0], a.capacity.shape[0]
    current = np.asarray(a.current, dtype=np.int64)
    source = violations(a, current, slack=policy.hysteresis)
    if not source.any():
        return current.copy()
    sources = np.flatnonzero(source)
    if n_hosts < 2:
        return None
    cols = _columns(a)
    m = cols.shape[1]
    base = loads(cols, current, n_hosts)                       # (H, m)
    # Limits on a source afterwards: capacity; no VM on maintenance; one member per group.
    src_lim = np.hstack([a.capacity, np.where(a.maintenance, 0.0, np.inf)[:, None],
                         np.ones((n_hosts, len(a.groups)))])
    # Limits on a receiver afterwards: its load before or the margin under capacity; count free.
    recv_lim = np.hstack([np.maximum(base[:, :4], a.capacity * (1 - policy.destination_margin)),
                          np.full((n_hosts, 1), np.inf), np.ones((n_hosts, len(a.groups)))])
    allowed = np.ones((n_vms, n_hosts), dtype=bool) if a.allowed is None else a.allowed.copy()
    allowed[:, a.maintenance] = False           # a maintenance host takes no VM, with or without pools
    elsewhere = allowed.sum(axis=1) - allowed[np.arange(n_vms), current]   # other hosts it may go to
    movable = np.asarray(a.movable, dtype=bool) & (elsewhere > 0)

    # A maintenance source must be emptied: all its VMs move, so none may be stuck there.
    maint_src = sources[a.maintenance[sources]]
    must = np.flatnonzero(np.isin(current, maint_src))
    if not movable[must].all():
        return None
    # A source none of whose VMs can move stays a source.
    if not all(movable[current == s].any() for s in sources):
        return None
    candidates = np.flatnonzero(movable)
    memory = a.demand[:, 2]
    k_max = max_moves if policy.max_migrations is None else min(max_moves, policy.max_migrations)
    k_min = max(len(sources), len(must))
    for k in range(k_min, min(k_max, len(candidates)) + 1):
        subs = _subsets(candidates, k, current, sources, must, memory)
        if len(subs) == 0:
            continue
        # Destination patterns as offsets from the current host: each VM goes to another host.
        offsets = np.array(list(itertools.product(range(1, n_hosts), repeat=k)), dtype=np.int64)
        offsets = offsets.reshape(-1, k)
        n_pat = len(offsets)
        per_batch = max(1, BATCH // n_pat)
        for start in range(0, len(subs), per_batch):
            sub = subs[start:start + per_batch]                          # (n, k)
            n = len(sub)
            cur = current[sub]                                           # (n, k)
            dest = (cur[:, None, :] + offsets[None, :, :]) % n_hosts     # (n, P, k)
            ok = allowed[sub[:, None, :], dest].all(axis=2)              # (n, P)
            d = cols[sub]                                                # (n, k, m)
            sent = np.zeros((n, n_hosts, m))
            np.add.at(sent, (np.arange(n)[:, None], cur), d)
            onehot = (dest[..., None] == np.arange(n_hosts)).astype(float)  # (n, P, k, H)
            got = np.einsum("npkh,nkm->nphm", onehot, d)
            after = (base[None] - sent)[:, None] + got                   # (n, P, H, m)
            ok &= (after[:, :, sources, :] <= src_lim[sources]).all(axis=(2, 3))
            receiving = onehot.any(axis=2)                               # (n, P, H)
            ok &= ((after <= recv_lim).all(axis=3) | ~receiving).all(axis=2)
            hit = np.flatnonzero(ok.ravel())
            if len(hit):
                i, p = divmod(int(hit[0]), n_pat)
                out = current.copy()
                out[sub[i]] = dest[i, p]
                return out
    return None


def check(a: Arrays, policy: Policy, assignment: np.ndarray) -> list[str]:
    """The rules a plan breaks (empty: feasible), recomputed from scratch with `loads`.

    Independent of the enumeration above, so tests can check the oracle and a solver with it."""
    problems: list[str] = []
    n_hosts = a.capacity.shape[0]
    current = np.asarray(a.current)
    assignment = np.asarray(assignment)
    source = violations(a, current, slack=policy.hysteresis)
    mv = np.flatnonzero(assignment != current)
    if (~a.movable[mv]).any():
        problems.append("pinned VM moved")
    if a.allowed is not None and not a.allowed[mv, assignment[mv]].all():
        problems.append("VM moved to a host it is not allowed on")
    if a.maintenance[assignment[mv]].any():
        problems.append("VM moved to a maintenance host")
    if policy.max_migrations is not None and len(mv) > policy.max_migrations:
        problems.append("more migrations than max_migrations")
    after = violations(a, assignment)
    for h in np.flatnonzero(source & after):
        problems.append(f"source host {h} still violates")
    before_load = loads(a.demand, current, n_hosts)
    after_load = loads(a.demand, assignment, n_hosts)
    limit = np.maximum(before_load, a.capacity * (1 - policy.destination_margin))
    group_clash = np.zeros(n_hosts, dtype=bool)
    for g in a.groups:
        group_clash |= np.bincount(assignment[g], minlength=n_hosts) > 1
    for h in np.unique(assignment[mv]):
        if (after_load[h] > limit[h]).any():
            problems.append(f"receiver host {h} over its limit")
        if group_clash[h]:
            problems.append(f"receiver host {h} holds two members of a group")
    return problems
