"""The placement problem as plain data: hosts with capacities, VMs with demands, a policy.

Four resources per host, each a capacity and a threshold from the policy:

=============  ===========================================  ====================================
dimension      demand of a VM                               a host may carry
=============  ===========================================  ====================================
l3             p95 L3 occupancy [B] (over its sockets)      l3_threshold x summed L3 size
bandwidth      p95 total memory bandwidth [B/s]             bandwidth_threshold x summed capacity
memory         memory [B] (``xl list``)                     total memory - memory_headroom
vcpus          vCPUs                                        vcpu_overcommit x physical CPUs
=============  ===========================================  ====================================

Demands are summed per host: summing p95s is conservative (peaks rarely coincide), which is
the safe side for a placement. An unknown capacity (no MBM, no configured bandwidth) leaves
that dimension unconstrained on that host, and the plan says so.

**Sockets.** When hosts list their sockets (`Host.sockets`) and VMs their per-socket demand
on their current host (`Vm.socket_demand`), each socket's L3 and bandwidth become dimensions
of their own (``l3@socket0``, ``bandwidth@socket0``, ...): a hot socket next to a cool one
makes its host a source, and the plan must bring that socket under its limits. Where a
migrated VM lands on its destination is Xen's NUMA placement, not ours, so destinations are
judged by their pooled figures only (`solve._limits` lifts the socket limits there).

`Fleet.arrays()` turns it into numpy matrices for the solvers: demand (VMs x 4), capacity
(hosts x 4), the current host of each VM, and the constraints (pinned, pools, anti-affinity,
maintenance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

DIMENSIONS = ("l3", "bandwidth", "memory", "vcpus")
REASON_OF_DIMENSION = {"l3": "l3-pressure", "bandwidth": "bandwidth-saturation", "memory": "memory",
                       "vcpus": "vcpus"}


@dataclass(frozen=True)
class Socket:
    l3_bytes: float
    bandwidth_bytes_s: float | None       # None: unknown (not constrained)


@dataclass(frozen=True)
class Host:
    name: str
    l3_bytes: float                       # summed over sockets
    bandwidth_bytes_s: float | None       # summed capacity; None: unknown (not constrained)
    memory_bytes: float
    cpus: int
    pool: str | None = None               # VMs may not leave their pool
    maintenance: bool = False             # to be emptied; takes no VM
    sockets: tuple[Socket, ...] = ()      # per-socket limits (see the module docstring)
    free_ways: float = 1.0                # longest run of ways no partition holds, share of the CBM


@dataclass(frozen=True)
class Vm:
    name: str
    host: str
    occupancy_bytes: float                # p95
    bandwidth_bytes_s: float              # p95
    memory_bytes: float
    vcpus: int
    domid: int | None = None
    pinned: bool = False
    group: str | None = None              # anti-affinity group: at most one member per host
    priority: int = 3                     # 1 (most important) .. 5
    aggressor: bool = False               # a noisy neighbour on its host (from the usage model)
    resident: bool = False                # part of the host (Domain-0): never moves, stays in maintenance
    socket_demand: tuple[tuple[float, float], ...] = ()   # (L3 need, bandwidth) per socket of its host


@dataclass(frozen=True)
class Policy:
    l3_threshold: float = 0.9
    bandwidth_threshold: float = 0.8
    vcpu_overcommit: float = 4.0
    memory_headroom: float = 0.05         # share of each host's memory kept free
    max_migrations: int | None = None
    hysteresis: float = 0.02              # act on a host only when over a threshold by this much
    destination_margin: float = 0.02      # and leave destinations this much under it

    def scale(self, sockets: int = 0) -> np.ndarray:
        """The share of each dimension's capacity a host may carry (then L3, bandwidth per socket)."""
        return np.array([self.l3_threshold, self.bandwidth_threshold, 1 - self.memory_headroom,
                         self.vcpu_overcommit] + [self.l3_threshold, self.bandwidth_threshold] * sockets)


@dataclass
class Arrays:
    """The fleet as matrices (see the module docstring)."""

    demand: np.ndarray          # (V, D): the 4 host dimensions, then L3 and bandwidth per socket
    capacity: np.ndarray        # (H, D): what each host may carry; inf where unconstrained
    current: np.ndarray         # (V,) host index
    movable: np.ndarray         # (V,) bool: not pinned
    allowed: np.ndarray | None  # (V, H) bool or None (all allowed): pools and maintenance
    groups: list[np.ndarray]    # VM indices of each anti-affinity group
    maintenance: np.ndarray     # (H,) bool
    resident: np.ndarray        # (V,) bool: Domain-0, which a maintenance host keeps
    dims: tuple[str, ...] = DIMENSIONS   # name of each column
    free_ways: np.ndarray | None = None  # (H,) share of contiguous ways free of partitions
    priority: np.ndarray | None = None   # (V,) 1 (most important: moved last) .. 5

    @property
    def socket_dims(self) -> np.ndarray:
        """(D,) bool: the per-socket columns."""
        return np.array(["@" in d for d in self.dims], dtype=bool)


@dataclass
class Fleet:
    hosts: list[Host]
    vms: list[Vm]
    notes: list[str] = field(default_factory=list)

    def host_index(self) -> dict[str, int]:
        return {h.name: i for i, h in enumerate(self.hosts)}

    def arrays(self, policy: Policy) -> Arrays:
        hidx = self.host_index()
        n_sock = max((len(h.sockets) for h in self.hosts), default=0)
        dims = DIMENSIONS + tuple(f"{d}@socket{s}" for s in range(n_sock) for d in ("l3", "bandwidth"))
        demand = np.zeros((len(self.vms), len(dims)))
        for i, v in enumerate(self.vms):
            demand[i, :4] = (v.occupancy_bytes, v.bandwidth_bytes_s, v.memory_bytes, v.vcpus)
            for s, (occ, bw) in enumerate(v.socket_demand[:n_sock]):
                demand[i, 4 + 2 * s: 6 + 2 * s] = (occ, bw)
        raw = np.full((len(self.hosts), len(dims)), np.inf)
        for i, h in enumerate(self.hosts):
            raw[i, :4] = (h.l3_bytes, np.inf if h.bandwidth_bytes_s is None else h.bandwidth_bytes_s,
                          h.memory_bytes, h.cpus)
            for s, sock in enumerate(h.sockets):
                bw = np.inf if sock.bandwidth_bytes_s is None else sock.bandwidth_bytes_s
                raw[i, 4 + 2 * s: 6 + 2 * s] = (sock.l3_bytes, bw)
        capacity = raw * policy.scale(n_sock)[None, :]
        current = np.array([hidx[v.host] for v in self.vms], dtype=np.int64)
        maintenance = np.array([h.maintenance for h in self.hosts], dtype=bool)
        pools = [h.pool for h in self.hosts]
        allowed = None
        if any(p is not None for p in pools) or maintenance.any():
            allowed = np.ones((len(self.vms), len(self.hosts)), dtype=bool)
            allowed[:, maintenance] = False
            pool_arr = np.array([p or "" for p in pools], dtype=object)
            # pools are closed both ways: a VM stays among the hosts of its host's pool (or
            # among the hosts in no pool)
            for i in range(len(self.vms)):
                allowed[i] &= pool_arr == (pools[current[i]] or "")
        names: dict[str, list[int]] = {}
        for i, v in enumerate(self.vms):
            if v.group:
                names.setdefault(v.group, []).append(i)
        groups = [np.array(g) for g in names.values() if len(g) > 1]
        return Arrays(demand=demand, capacity=capacity, current=current,
                      movable=np.array([not (v.pinned or v.resident) for v in self.vms], dtype=bool),
                      allowed=allowed,
                      groups=groups, maintenance=maintenance,
                      resident=np.array([v.resident for v in self.vms], dtype=bool), dims=dims,
                      free_ways=np.array([h.free_ways for h in self.hosts], dtype=float),
                      priority=np.array([v.priority for v in self.vms], dtype=float))


def loads(demand: np.ndarray, assignment: np.ndarray, n_hosts: int) -> np.ndarray:
    """(H, D) summed demand per host for an assignment (VM -> host index)."""
    out = np.zeros((n_hosts, demand.shape[1]))
    np.add.at(out, assignment, demand)
    return out


def violations(a: Arrays, assignment: np.ndarray, slack: float = 0.0,
               limit: np.ndarray | None = None) -> np.ndarray:
    """(H,) bool: hosts over capacity in some dimension (by more than `slack`, a share of it),
    holding a VM in maintenance, or holding two members of an anti-affinity group.

    ``limit`` (H, D), instead of the capacity: a plan's own per-host limits, compared with a
    rounding tolerance (a solver's loads land exactly on them).
    """
    n_hosts = a.capacity.shape[0]
    if limit is None:
        over = (loads(a.demand, assignment, n_hosts) > a.capacity * (1 + slack)).any(axis=1)
    else:
        over = (loads(a.demand, assignment, n_hosts) > limit * (1 + 1e-9) + 1e-6).any(axis=1)
    over |= a.maintenance & (np.bincount(assignment[~a.resident], minlength=n_hosts) > 0)
    for g in a.groups:
        over |= np.bincount(assignment[g], minlength=n_hosts) > 1
    return over


def moved(a: Arrays, assignment: np.ndarray) -> np.ndarray:
    """Indices of the VMs an assignment moves."""
    return np.flatnonzero(assignment != a.current)


def names(items: Sequence[Host] | Sequence[Vm]) -> list[str]:
    return [x.name for x in items]
