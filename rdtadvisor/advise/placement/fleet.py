"""The placement problem as plain data: hosts with capacities, VMs with demands, a policy.

Four resources per host, each a capacity and a threshold from the policy:

=============  ===========================================  ====================================
dimension      demand of a VM                               a host may carry
=============  ===========================================  ====================================
l3             its L3 need [B] (over its sockets)           l3_threshold x summed L3 size
bandwidth      p95 total memory bandwidth [B/s]             bandwidth_threshold x summed capacity
memory         memory [B] (``xl list``)                     total memory - memory_headroom
vcpus          vCPUs                                        vcpu_overcommit x physical CPUs
=============  ===========================================  ====================================

Demands are summed per host: summing p95s is conservative (peaks rarely coincide), which is
the safe side for a placement. An unknown capacity (no MBM, no configured bandwidth) leaves
that dimension unconstrained on that host, and the plan says so.

**Sockets.** When hosts list their sockets (`Host.sockets`, one NUMA node each) and VMs their
per-socket demand on their current host (`Vm.socket_demand`), each socket's L3, bandwidth and
memory become dimensions of their own (``l3@socket0``, ``bandwidth@socket0``,
``memory@socket0``, ...): a hot socket next to a cool one makes its host a source, and the
plan must bring that socket under its limits. A migrated domain lands where libxl's automatic
NUMA placement puts it (`landing`): every limit is judged per socket on destinations too.

**Names.** Xen refuses a domain whose name already runs on the destination, so VMs that share
a name (on different hosts) form a group of which each host may hold at most one, like an
anti-affinity group (`Arrays.groups` holds both kinds; Domain-0 never moves and is left out).
As the plan's per-source scripts may run in any order, a VM may not move to a host where a VM
of its name runs before the plan either, even one the plan moves away (`Arrays.allowed`).

`Fleet.arrays()` turns it into numpy matrices for the solvers: demand (VMs x dimensions),
capacity (hosts x dimensions), the current host of each VM, where each VM would land on each
host, and the constraints (pinned, pools, anti-affinity, names, maintenance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

DIMENSIONS = ("l3", "bandwidth", "memory", "vcpus")
_SOCKET_DIMS = ("l3", "bandwidth", "memory")   # per socket, in this order
REASON_OF_DIMENSION = {"l3": "l3-pressure", "bandwidth": "bandwidth-saturation", "memory": "memory",
                       "vcpus": "vcpus"}


@dataclass(frozen=True)
class Socket:
    l3_bytes: float
    bandwidth_bytes_s: float | None       # None: unknown (not constrained)
    memory_bytes: float = np.inf          # the NUMA node's memory; inf: unknown


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
    address: str | None = None            # what other hosts reach it by (xl migrate's target); None: name
    hostname: str | None = None           # what ``xl info`` calls itself there (scripts check it)


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
    home: int | None = None               # the socket (NUMA node) its vCPUs and memory are on; None: spread


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
        """The share of each dimension's capacity a host may carry (then L3, bandwidth, memory per socket)."""
        return np.array([self.l3_threshold, self.bandwidth_threshold, 1 - self.memory_headroom,
                         self.vcpu_overcommit]
                        + [self.l3_threshold, self.bandwidth_threshold, 1 - self.memory_headroom] * sockets)


@dataclass
class Arrays:
    """The fleet as matrices (see the module docstring)."""

    demand: np.ndarray          # (V, D): the 4 host dimensions, then L3 and bandwidth per socket
    capacity: np.ndarray        # (H, D): what each host may carry; inf where unconstrained
    current: np.ndarray         # (V,) host index
    movable: np.ndarray         # (V,) bool: not pinned
    allowed: np.ndarray | None  # (V, H) bool or None (all allowed): pools and maintenance
    groups: list[np.ndarray]    # VM indices of each group of which a host may hold one (anti-affinity, names)
    maintenance: np.ndarray     # (H,) bool
    resident: np.ndarray        # (V,) bool: Domain-0, which a maintenance host keeps
    dims: tuple[str, ...] = DIMENSIONS   # name of each column
    free_ways: np.ndarray | None = None  # (H,) share of contiguous ways free of partitions
    priority: np.ndarray | None = None   # (V,) 1 (most important: moved last) .. 5
    landing: np.ndarray | None = None    # (V, H) the socket each VM would land on there; -1: spread
    n_sockets: np.ndarray | None = None  # (H,) sockets with columns of their own (0: pooled only)
    user_groups: int = 0                 # groups[:user_groups] are anti-affinity groups, the rest names
    aggressor: np.ndarray | None = None  # (V,) bool: a noisy neighbour on its host (moved first on ties)

    @property
    def socket_dims(self) -> np.ndarray:
        """(D,) bool: the per-socket columns."""
        return np.array(["@" in d for d in self.dims], dtype=bool)

    @property
    def node_memory_dims(self) -> np.ndarray:
        """(D,) bool: the per-socket memory columns (limits for arrivals, never what makes a source)."""
        return np.array([d.startswith("memory@") for d in self.dims], dtype=bool)

    def arrival(self, vms: np.ndarray, hosts: np.ndarray) -> np.ndarray:
        """(k, D): what each of `vms` adds to each of `hosts` (pairwise) when it migrates there.

        The pooled columns are its demand as it is; its L3 need, bandwidth and memory go to the
        socket it lands on (`landing`), or are split evenly over the host's sockets when no
        single node can hold its memory.
        """
        vms, hosts = np.asarray(vms, dtype=np.int64), np.asarray(hosts, dtype=np.int64)
        out = np.zeros((len(vms), self.demand.shape[1]))
        out[:, :4] = self.demand[vms, :4]
        if self.landing is None or self.n_sockets is None or out.shape[1] == 4:
            return out
        land = self.landing[vms, hosts]
        n = self.n_sockets[hosts]
        totals = self.demand[vms][:, (0, 1, 2)]
        for s in range((out.shape[1] - 4) // len(_SOCKET_DIMS)):
            cols = slice(4 + len(_SOCKET_DIMS) * s, 4 + len(_SOCKET_DIMS) * (s + 1))
            here = (land == s) & (n > s)
            out[here, cols] = totals[here]
            spread = (land < 0) & (n > s)
            out[spread, cols] = totals[spread] / n[spread, None]
        return out

    def demand_at(self, vms: np.ndarray, hosts: np.ndarray) -> np.ndarray:
        """(k, D): what each of `vms` weighs on each of `hosts` (pairwise): its measured demand
        on its own host, what it brings (`arrival`) on any other."""
        vms, hosts = np.asarray(vms, dtype=np.int64), np.asarray(hosts, dtype=np.int64)
        out = self.arrival(vms, hosts)
        home = hosts == self.current[vms]
        out[home] = self.demand[vms[home]]
        return out


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
        dims = DIMENSIONS + tuple(f"{d}@socket{s}" for s in range(n_sock) for d in _SOCKET_DIMS)
        k = len(_SOCKET_DIMS)
        demand = np.zeros((len(self.vms), len(dims)))
        for i, v in enumerate(self.vms):
            demand[i, :4] = (v.occupancy_bytes, v.bandwidth_bytes_s, v.memory_bytes, v.vcpus)
            sockets = len(self.hosts[hidx[v.host]].sockets)
            for s, (occ, bw) in enumerate(v.socket_demand[:n_sock]):
                demand[i, 4 + k * s: 4 + k * s + 2] = (occ, bw)
            if sockets:
                # its memory is on its home node; a VM spread over the nodes has a share on each
                for s in range(sockets):
                    share = (1.0 if v.home == s else 0.0) if v.home is not None else 1.0 / sockets
                    demand[i, 4 + k * s + 2] = v.memory_bytes * share
        raw = np.full((len(self.hosts), len(dims)), np.inf)
        for i, h in enumerate(self.hosts):
            raw[i, :4] = (h.l3_bytes, np.inf if h.bandwidth_bytes_s is None else h.bandwidth_bytes_s,
                          h.memory_bytes, h.cpus)
            for s, sock in enumerate(h.sockets):
                bw = np.inf if sock.bandwidth_bytes_s is None else sock.bandwidth_bytes_s
                raw[i, 4 + k * s: 4 + k * (s + 1)] = (sock.l3_bytes, bw, sock.memory_bytes)
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
        members: dict[str, list[int]] = {}
        for i, v in enumerate(self.vms):
            if v.group:
                members.setdefault(v.group, []).append(i)
        groups = [np.array(g) for g in members.values() if len(g) > 1]
        user_groups = len(groups)
        by_name: dict[str, list[int]] = {}
        for i, v in enumerate(self.vms):
            if not v.resident:
                by_name.setdefault(v.name, []).append(i)
        named = [np.array(g) for g in by_name.values() if len(g) > 1]
        groups += named
        if named:
            # the scripts of different sources run in any order: a VM may not go where a VM of
            # its name runs before the plan, even one that leaves
            if allowed is None:
                allowed = np.ones((len(self.vms), len(self.hosts)), dtype=bool)
            for g in named:
                allowed[np.ix_(g, current[g])] = False
        n_sockets = np.array([len(h.sockets) for h in self.hosts], dtype=np.int64)
        landing = None
        if n_sock:
            landing = numa_landing(demand[:, 2], *node_load(self, demand, current, n_sock), n_sockets)
        return Arrays(demand=demand, capacity=capacity, current=current,
                      movable=np.array([not (v.pinned or v.resident) for v in self.vms], dtype=bool),
                      allowed=allowed,
                      groups=groups, maintenance=maintenance,
                      resident=np.array([v.resident for v in self.vms], dtype=bool), dims=dims,
                      free_ways=np.array([h.free_ways for h in self.hosts], dtype=float),
                      priority=np.array([v.priority for v in self.vms], dtype=float),
                      landing=landing, n_sockets=n_sockets, user_groups=user_groups,
                      aggressor=np.array([v.aggressor for v in self.vms], dtype=bool))


def node_load(fleet: Fleet, demand: np.ndarray, current: np.ndarray, n_sock: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """(free memory [B], vCPUs runnable) per host x NUMA node, before any move.

    A node's memory is its socket's (`Socket.memory_bytes`); what its VMs use is their memory
    on it (their home node's, or an even share when spread); vCPUs count where the VM's home is
    (spread VMs count on every node, as libxl counts a vCPU runnable on each node it may use).
    """
    k = len(_SOCKET_DIMS)
    n_hosts = len(fleet.hosts)
    node_mem = np.full((n_hosts, n_sock), np.inf)
    for i, h in enumerate(fleet.hosts):
        for s, sock in enumerate(h.sockets):
            node_mem[i, s] = sock.memory_bytes
    used = np.zeros((n_hosts, n_sock))
    vcpus = np.zeros((n_hosts, n_sock))
    for s in range(n_sock):
        np.add.at(used[:, s], current, demand[:, 4 + k * s + 2])
    for i, v in enumerate(fleet.vms):
        h = current[i]
        n = len(fleet.hosts[h].sockets)
        if not n:
            continue
        if v.home is not None and v.home < n:
            vcpus[h, v.home] += v.vcpus
        else:
            vcpus[h, :n] += v.vcpus
    return node_mem - used, vcpus


def numa_landing(memory: np.ndarray, free: np.ndarray, vcpus: np.ndarray,
                 n_sockets: np.ndarray) -> np.ndarray:
    """(V, H): the node each VM would land on if it migrated alone to each host; -1: spread.

    libxl's automatic placement (Xen's ``docs/misc/xl-numa-placement``), for a domain whose
    config pins nothing: among the node sets with enough free memory, the fewest nodes, then
    the fewest vCPUs runnable there, then the most free memory. One node when any node has
    room for the VM's memory; else it spans nodes (-1: its load is then split evenly).
    """
    n_vms, (n_hosts, n_sock) = len(memory), free.shape
    out = np.full((n_vms, n_hosts), -1, dtype=np.int8)
    if n_sock == 0:
        return out
    real = np.arange(n_sock)[None, :] < n_sockets[:, None]                  # (H, S)
    # order the nodes of each host once: fewest vCPUs, then most free memory, then lowest id
    order = np.lexsort((np.broadcast_to(np.arange(n_sock), free.shape), -np.nan_to_num(free, posinf=1e300),
                        vcpus), axis=1) if n_sock > 1 else np.zeros((n_hosts, 1), dtype=np.int64)
    ranked_free = np.take_along_axis(np.where(real, free, -np.inf), order, axis=1)     # (H, S)
    for start in range(0, n_vms, 4096):
        mem = memory[start:start + 4096, None, None]
        fits = ranked_free[None, :, :] >= mem                                # (v, H, S)
        first = fits.argmax(axis=2)
        any_fit = fits.any(axis=2)
        node = np.take_along_axis(np.broadcast_to(order, (len(mem), *order.shape)), first[..., None],
                                  axis=2)[..., 0]
        out[start:start + 4096] = np.where(any_fit, node, -1)
    return out


def loads(demand: np.ndarray, assignment: np.ndarray, n_hosts: int) -> np.ndarray:
    """(H, D) summed demand per host for an assignment (VM -> host index)."""
    out = np.zeros((n_hosts, demand.shape[1]))
    np.add.at(out, assignment, demand)
    return out


def loads_after(a: Arrays, assignment: np.ndarray) -> np.ndarray:
    """(H, D) summed demand per host after a plan: staying VMs as measured, migrated VMs as
    they would arrive (`Arrays.arrival`: on the socket libxl would put them)."""
    return loads(a.demand_at(np.arange(len(assignment)), assignment), assignment, a.capacity.shape[0])


def violations(a: Arrays, assignment: np.ndarray, slack: float = 0.0,
               limit: np.ndarray | None = None) -> np.ndarray:
    """(H,) bool: hosts over capacity in some dimension (by more than `slack`, a share of it),
    holding a VM in maintenance, or holding two members of a group (anti-affinity, one name).

    ``limit`` (H, D), instead of the capacity: a plan's own per-host limits, compared with a
    rounding tolerance (a solver's loads land exactly on them). Without it the per-socket
    memory columns are not judged: they limit what a host may receive, they do not make it a
    source (which node a running VM's memory is on is an estimate).
    """
    n_hosts = a.capacity.shape[0]
    load = loads_after(a, assignment)
    if limit is None:
        judged = ~a.node_memory_dims
        over = (load[:, judged] > a.capacity[:, judged] * (1 + slack)).any(axis=1)
    else:
        over = (load > limit * (1 + 1e-9) + 1e-6).any(axis=1)
    over |= a.maintenance & (np.bincount(assignment[~a.resident], minlength=n_hosts) > 0)
    for g in a.groups:
        over |= np.bincount(assignment[g], minlength=n_hosts) > 1
    return over


def moved(a: Arrays, assignment: np.ndarray) -> np.ndarray:
    """Indices of the VMs an assignment moves."""
    return np.flatnonzero(assignment != a.current)


def names(items: Sequence[Host] | Sequence[Vm]) -> list[str]:
    return [x.name for x in items]
