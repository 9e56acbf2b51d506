"""Random but realistic fleets for tests and benchmarks of the placement solvers.

Hosts are dual-socket servers of a few platforms (L3, sustained bandwidth and thread counts from
`rdtadvisor.sim.presets`, summed over the two sockets) with a memory size typical of each. VMs
have lognormal p95 L3 occupancy and bandwidth (scaled so that the fleet as a whole carries
`fill` of its L3 and bandwidth capacity), memory of 2-64 GiB and 1-16 vCPUs; a few are
streaming (high bandwidth, large footprint), some pinned, some in anti-affinity pairs.

Placement: `overloaded` of the hosts (rounded) are filled first, each past its L3 or bandwidth
capacity (threshold x size) by 5-40 % (a target drawn per host), taking VMs in a random order
biased towards heavy ones (noisy neighbours gather where it hurts), without ever exceeding their
memory or vCPUs (a real host cannot). Every other VM then goes to a random host among those it
fits on with all four dimensions under 95 % of capacity, so the other hosts are not sources.
When that is not possible the VM goes where it overloads least and `Fleet.notes` says so.

Deterministic per seed (one `numpy.random.Generator`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rdtadvisor.advise.placement.fleet import Fleet, Host, Policy, Vm
from rdtadvisor.sim import presets

GIB = 1024**3


@dataclass(frozen=True)
class Platform:
    preset: str
    memory_gib: tuple[int, ...]   # typical memory sizes of such a host


PLATFORMS = (
    Platform("skylake-sp-gold-6148", (384, 512)),      # 2 x 27.5 MiB, 2 x 96 GB/s, 80 threads
    Platform("cascade-lake-sp-8269cy", (512, 768)),    # 2 x 35.75 MiB, 2 x 106 GB/s, 104 threads
    Platform("ice-lake-sp-8380", (768, 1024)),         # 2 x 60 MiB, 2 x 154 GB/s, 160 threads
)
MEMORY_GIB = np.array([2, 4, 8, 16, 32, 64])
MEMORY_P = np.array([0.15, 0.25, 0.25, 0.2, 0.1, 0.05])
VCPUS = np.array([1, 2, 4, 8, 16])
VCPUS_P = np.array([0.15, 0.3, 0.3, 0.18, 0.07])
STREAMING_BW = 8.0    # a streaming VM's bandwidth, relative to a typical one
FIT = 0.95            # non-overloaded hosts stay under this share of capacity


def _hosts(rng: np.random.Generator, n_hosts: int, pools: int, maintenance: int) -> list[Host]:
    kinds = rng.integers(0, len(PLATFORMS), n_hosts)
    pool_of = rng.integers(0, pools, n_hosts) if pools else None
    in_maintenance = set(rng.choice(n_hosts, size=min(maintenance, n_hosts), replace=False).tolist())
    hosts = []
    for i, k in enumerate(kinds):
        plat = PLATFORMS[k]
        p = presets.get(plat.preset)
        hosts.append(Host(
            name=f"xen{i:04d}", l3_bytes=2.0 * p.l3_bytes, bandwidth_bytes_s=2.0 * p.bw_bytes_s,
            memory_bytes=float(rng.choice(plat.memory_gib) * GIB), cpus=2 * p.threads,
            pool=None if pool_of is None else f"pool{pool_of[i]}", maintenance=i in in_maintenance))
    return hosts


def _demands(rng: np.random.Generator, n_vms: int, capacity: np.ndarray, fill: float,
             streaming: float) -> np.ndarray:
    """(V, 4) integer demands: L3 and bandwidth scaled to `fill` of the fleet's capacity."""
    occ = rng.lognormal(0.0, 1.0, n_vms)
    bw = rng.lognormal(0.0, 1.2, n_vms)
    stream = rng.random(n_vms) < streaming
    bw[stream] *= STREAMING_BW
    occ[stream] *= 2.0            # streaming also sweeps the cache
    demand = np.empty((n_vms, 4))
    for j, x in ((0, occ), (1, bw)):
        x = x * fill * capacity[:, j].sum() / x.sum()
        # A VM cannot use more than a fraction of the smallest host: keeps every VM placeable.
        demand[:, j] = np.minimum(x, 0.3 * capacity[:, j].min())
    demand[:, 2] = rng.choice(MEMORY_GIB, n_vms, p=MEMORY_P) * GIB
    demand[:, 3] = rng.choice(VCPUS, n_vms, p=VCPUS_P)
    # Whole bytes and B/s: sums are then exact in float64, so no plan depends on rounding order.
    return np.round(demand)


def synthetic_fleet(n_hosts: int, n_vms: int, *, seed: int, overloaded: float = 0.1, fill: float = 0.55,
                    streaming: float = 0.05, pinned: float = 0.05, anti_affinity: float = 0.05,
                    pools: int = 0, maintenance: int = 0, policy: Policy | None = None) -> Fleet:
    """A random fleet (see the module docstring).

    `overloaded`: share of hosts placed 5-40 % over their L3 or bandwidth capacity; `fill`: the
    fleet's summed L3 and bandwidth demand as a share of its summed capacity; `streaming`,
    `pinned`: shares of VMs; `anti_affinity`: share of VMs put in anti-affinity pairs (always on
    different hosts initially); `pools`: number of host pools (0: none); `maintenance`: number of
    hosts in maintenance (they still hold VMs, so they are sources). `policy` gives the
    capacities the overloads are measured against (default `Policy()`)."""
    policy = policy or Policy()
    rng = np.random.default_rng(seed)
    hosts = _hosts(rng, n_hosts, pools, maintenance)
    raw = np.array([[h.l3_bytes, h.bandwidth_bytes_s, h.memory_bytes, h.cpus] for h in hosts], dtype=float)
    capacity = raw * policy.scale()[None, :]
    demand = _demands(rng, n_vms, capacity, fill, streaming)
    notes: list[str] = []

    host = np.full(n_vms, -1)
    load = np.zeros((n_hosts, 4))
    n_over = round(overloaded * n_hosts)
    over = rng.choice(n_hosts, size=n_over, replace=False)
    for h in over:
        dim = int(rng.integers(0, 2))                  # l3 or bandwidth
        low, target = 1.05 * capacity[h, dim], rng.uniform(1.05, 1.40) * capacity[h, dim]
        free = np.flatnonzero(host < 0)
        # Random order biased to heavy VMs (Gumbel-max keys: sampling without replacement
        # with probability proportional to the demand).
        keys = np.log(demand[free, dim] + 1.0) + rng.gumbel(size=len(free))
        other = 1 - dim
        # Up to the target; then, if some VM was too big to land under it, up to 40 % over.
        for upper in (target, 1.40 * capacity[h, dim]):
            for v in free[np.argsort(-keys, kind="stable")]:
                if load[h, dim] >= max(low, 0.97 * target):
                    break
                after = load[h] + demand[v]
                if (host[v] >= 0 or after[dim] > upper or after[other] > 1.40 * capacity[h, other]
                        or (after[2:] > capacity[h, 2:]).any()):
                    continue
                host[v] = h
                load[h] = after
            if load[h, dim] >= low:
                break
        if load[h, dim] < low:
            notes.append(f"host {hosts[h].name}: could not reach 5% over its {('l3', 'bandwidth')[dim]}")

    is_over = np.zeros(n_hosts, dtype=bool)
    is_over[over] = True
    rest = np.flatnonzero(host < 0)
    # Largest first (by its largest share of a typical host), so the big ones still find room.
    share = (demand[rest] / capacity.mean(axis=0)).max(axis=1)
    for v in rest[np.argsort(-share, kind="stable")]:
        after = load + demand[v]
        fits = ~is_over & (after <= FIT * capacity).all(axis=1)
        ok = np.flatnonzero(fits)
        if len(ok):
            h = int(rng.choice(ok))
        else:
            pressure = (after / capacity).max(axis=1)
            pressure[is_over] = np.inf
            h = int(np.argmin(pressure)) if np.isfinite(pressure).any() else int(np.argmin(after[:, 0]))
            notes.append(f"vm{v:05d}: no host had room, placed on {hosts[h].name}")
        host[v] = h
        load[h] = load[h] + demand[v]

    pinned_v = rng.random(n_vms) < pinned
    group = [None] * n_vms
    order = rng.permutation(n_vms)
    n_pairs = int(anti_affinity * n_vms) // 2
    made, i = 0, 0
    # Pairs of VMs on different hosts: the initial placement respects anti-affinity.
    while made < n_pairs and i + 1 < len(order):
        v, w = order[i], order[i + 1]
        i += 2
        if host[v] != host[w]:
            group[v] = group[w] = f"aa{made:04d}"
            made += 1
    vms = [Vm(name=f"vm{v:05d}", host=hosts[host[v]].name, occupancy_bytes=float(demand[v, 0]),
              bandwidth_bytes_s=float(demand[v, 1]), memory_bytes=float(demand[v, 2]),
              vcpus=int(demand[v, 3]), domid=v + 1, pinned=bool(pinned_v[v]), group=group[v],
              priority=int(rng.integers(1, 6)))
           for v in range(n_vms)]
    return Fleet(hosts=hosts, vms=vms, notes=notes)
