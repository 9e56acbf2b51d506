"""Baselines the placement solvers are compared with.

`watcher_first_fit` is modelled on OpenStack Watcher's ``noisy_neighbor`` strategy
(``watcher/decision_engine/strategy/strategies/noisy_neighbor.py``, deprecated in 2025.2; see
``docs/algorithms.md``, "Noisy neighbours"), the only cache-aware migration strategy in open
source. What Watcher does:

1. per host, it looks for a *noisy* VM (scanning from the lowest ``watcher-priority``) whose mean
   L3 occupancy over ``period`` rose by more than ``cache_threshold`` % against the previous
   period, while a higher-priority VM's fell by as much; such hosts "need release";
2. the source is picked by ``max()`` over those hosts (no real ranking), and its noisy VM is the
   one to migrate: one migration per audit (continuous audits repeat it);
3. the destination is the **first** host, among those not needing release, with enough free
   vCPUs, RAM and disk (``filter_dest_servers``): L3 cache and memory bandwidth are *not* looked
   at, so the moved VM can overload its destination's cache.

What this baseline keeps: the source hosts are the ones the solvers act on (``violations`` with
the policy's hysteresis: a static p95 snapshot has no period-over-period delta to detect a noisy
VM by), taken in index order; from each it moves VMs one at a time, in the order of ``order``:

* ``"memory"`` (default): largest memory first, as the brief for this baseline reads "the
  instance to migrate" (the biggest, hence most disruptive, guest);
* ``"l3"``: largest L3 occupancy first, the closer static analogue of Watcher's "noisy VM" (the
  cache hog).

Each goes to the first host in index order that is not a source, not in maintenance, allowed for
the VM (pools), holds no member of its anti-affinity group (Nova's scheduler filters would
reject it) and has the free memory and vCPUs (``capacity - load``, so with the policy's memory
headroom and vCPU overcommit). L3 and bandwidth are not checked. It stops for a source when the
source no longer violates (``violations`` without slack) or none of its VMs can be placed; it
repeats Watcher's audit until done, so it may use several migrations per source (Watcher would
need as many audits). Pinned VMs never move.
"""

from __future__ import annotations

import numpy as np

from rdtadvisor.advise.placement.fleet import Arrays, Policy, loads, violations

MEMORY, VCPUS = 2, 3


def watcher_first_fit(a: Arrays, policy: Policy, order: str = "memory") -> np.ndarray:
    """A Watcher-like plan: sources in index order, their VMs by `order` ("memory" or "l3", largest
    first), each to the first non-source host with free memory and vCPUs (cache and bandwidth
    ignored). Returns the assignment (VM -> host index); see the module docstring."""
    if order not in ("memory", "l3"):
        raise ValueError(f"order must be 'memory' or 'l3', not {order!r}")
    n_hosts = a.capacity.shape[0]
    assignment = np.asarray(a.current, dtype=np.int64).copy()
    source = violations(a, assignment, slack=policy.hysteresis)
    load = loads(a.demand, assignment, n_hosts)
    # Watcher's targets: hosts that do not need release; Nova does not schedule to a disabled
    # (maintenance) compute service.
    target = ~source & ~a.maintenance
    group_of = np.full(a.demand.shape[0], -1)
    for j, g in enumerate(a.groups):
        group_of[g] = j
    members = [np.bincount(assignment[g], minlength=n_hosts) for g in a.groups]
    count = np.bincount(assignment, minlength=n_hosts)
    key = a.demand[:, MEMORY] if order == "memory" else a.demand[:, 0]
    for s in np.flatnonzero(source):
        vms = np.flatnonzero((assignment == s) & a.movable)
        vms = vms[np.argsort(-key[vms], kind="stable")]
        for v in vms:
            # violations(a, assignment)[s], kept incrementally (a full recount per VM is O(V)).
            clash = any(m[s] > 1 for m in members)
            if not ((load[s] > a.capacity[s]).any() or (a.maintenance[s] and count[s] > 0) or clash):
                break
            fits = target & (load[:, MEMORY] + a.demand[v, MEMORY] <= a.capacity[:, MEMORY])
            fits &= load[:, VCPUS] + a.demand[v, VCPUS] <= a.capacity[:, VCPUS]
            if a.allowed is not None:
                fits &= a.allowed[v]
            if group_of[v] >= 0:
                fits &= members[group_of[v]] == 0
            dest = np.flatnonzero(fits)
            if len(dest) == 0:
                continue
            h = int(dest[0])
            assignment[v] = h
            load[s] -= a.demand[v]
            load[h] += a.demand[v]
            count[s] -= 1
            count[h] += 1
            if group_of[v] >= 0:
                members[group_of[v]][s] -= 1
                members[group_of[v]][h] += 1
    return assignment
