"""The truth model: how VMs share one socket's L3 ways and memory bandwidth.

Everything here is pure numpy over plain dataclasses; see ``docs/simulator.md`` for the
derivation and the source of every constant, ``docs/algorithms.md`` for the sharing
equilibrium and the performance model. In short:

* A VM's **miss ratio** falls as a power law of the capacity it holds,
  ``mr(c) = min(1, (c / c0) ** -alpha)``, down to ``floor`` once ``c`` reaches its working
  set ``ws`` (Hartstein et al. 2006: alpha 0.3-0.7; alpha ~ 0 is streaming).
* **Sharing**: in each way, the VMs whose masks include it hold shares proportional to
  their insertion pressure (their miss rates), and no VM holds more than its working
  set; this is a fixed point, solved by damped iteration (StatCC-style).
* **Bandwidth** = misses x 64 B x (1 + write-back fraction). The socket's summed
  bandwidth sets the memory latency through a queueing curve ``L0 / (1 - min(U, 0.95))``
  which feeds back into every VM's CPI: ``CPI = cpi0 + apki/1000 * mr * latency_cycles / mlp``.
* **Speed** = instructions per second relative to the same VM alone on the socket with
  the whole cache. Scores: weighted speedup (priority-weighted sum of speeds), worst
  slowdown, unfairness (max/min slowdown), sockets over their bandwidth threshold.

`solve` takes an optional leading time axis (``load`` of shape (T, n)) so a whole day of
one socket is solved in one vectorised call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rdtadvisor.cache.curve import LINE_BYTES, Curve
from rdtadvisor.cache.equilibrium import allocate, mask_matrix

MIB = 1024**2


@dataclass(frozen=True)
class Vm:
    """One VM's hidden behaviour. Rates per vCPU-second at full load.

    apki : L3 accesses per kilo-instruction.
    cpi0 : cycles per instruction when every L3 access hits.
    mlp : memory-level parallelism (misses overlapped); divides the miss penalty.
    writeback : extra memory traffic from dirty evictions, as a fraction of fills.
    remote : share of its memory traffic served by the other socket's memory.
    """

    name: str
    curve: Curve
    apki: float
    cpi0: float = 0.8
    vcpus: int = 2
    priority: float = 1.0
    mlp: float = 2.0
    writeback: float = 0.3
    remote: float = 0.0


@dataclass(frozen=True)
class Socket:
    """The hardware of one socket (see `rdtadvisor.sim.presets` for real parts)."""

    l3_bytes: int
    ways: int
    bw_bytes_s: float          # sustained (STREAM-like) memory bandwidth of this socket [B/s]
    freq_hz: float = 2.4e9
    latency_ns: float = 90.0   # unloaded local DRAM latency L0
    remote_extra_ns: float = 60.0
    bw_threshold: float = 0.8  # "over its bandwidth threshold" for scoring

    @property
    def way_bytes(self) -> float:
        return self.l3_bytes / self.ways


@dataclass(frozen=True)
class SocketState:
    """`solve`'s answer; arrays are (n,) or (T, n) for VMs, () or (T,) for the socket."""

    occupancy: np.ndarray      # held L3 [B]
    miss_ratio: np.ndarray
    misses: np.ndarray         # L3 misses per second
    bandwidth: np.ndarray      # memory traffic [B/s] (local + remote)
    local_bandwidth: np.ndarray
    ips: np.ndarray            # instructions per second
    speed: np.ndarray          # ips / ips alone with the whole cache
    utilisation: np.ndarray    # socket bandwidth / capacity
    latency_ns: np.ndarray
    converged: bool = field(default=True)


def solve(socket: Socket, vms: Sequence[Vm], masks: Sequence[int], load: np.ndarray | None = None,
          *, alone_ips: np.ndarray | None = None, iterations: int = 200, tol: float = 1e-4) -> SocketState:
    """Solve the sharing fixed point for VMs on one socket with the given L3 masks.

    Parameters
    ----------
    masks : one capacity bitmask per VM (CDP: pass the data mask; code is not modelled
        separately). Identical masks share ways exactly as one COS does.
    load : busy fraction of each VM's vCPUs, shape (n,) or (T, n); default 1.
    alone_ips : per-VM IPS alone with the whole cache (computed if None), for `speed`.
    """
    n = len(vms)
    if n == 0:
        raise ValueError("no VMs")
    lmat = np.ones(n) if load is None else np.asarray(load, dtype=float)
    shape = lmat.shape                                   # (n,) or (T, n)
    own = mask_matrix(masks, socket.ways).astype(float)  # (n, W)
    wb = socket.way_bytes
    apk = np.array([v.apki for v in vms]) / 1000.0
    cpi0 = np.array([v.cpi0 for v in vms])
    vcpus = np.array([v.vcpus for v in vms], dtype=float)
    mlp = np.array([v.mlp for v in vms])
    wback = np.array([v.writeback for v in vms])
    remote = np.array([v.remote for v in vms])
    ws = np.array([v.curve.ws_bytes for v in vms])
    cycles_per_ns = socket.freq_hz / 1e9

    def miss_ratio(cap: np.ndarray) -> np.ndarray:
        return np.stack([vms[i].curve.miss_ratio(cap[..., i]) for i in range(n)], axis=-1)

    # Start from each VM's fair share of its own ways, unloaded latency.
    cap = np.broadcast_to((own * wb / np.maximum(own.sum(axis=0), 1)).sum(axis=1), shape).copy()
    cap = np.minimum(cap, ws)
    latency = np.full(shape[:-1], socket.latency_ns)
    converged = False
    for _ in range(iterations):
        mr = miss_ratio(cap)
        lat_vm = latency[..., None] + remote * socket.remote_extra_ns
        cpi = cpi0 + apk * mr * lat_vm * cycles_per_ns / mlp
        ips = socket.freq_hz * vcpus * lmat / cpi
        misses = ips * apk * mr
        new_cap = allocate(misses, own, wb, ws)
        bw = misses * LINE_BYTES * (1.0 + wback)
        util = bw.sum(axis=-1) / socket.bw_bytes_s
        new_latency = socket.latency_ns / (1.0 - np.minimum(util, 0.95))
        delta = np.max(np.abs(new_cap - cap)) / wb + np.max(np.abs(new_latency - latency)) / socket.latency_ns
        if delta < tol:
            # Keep the undamped step: it lands exactly on a working-set cap, where the
            # curve's knee is (a damped value would stop a hair short of the cliff).
            cap, latency, converged = new_cap, new_latency, True
            break
        cap = 0.5 * cap + 0.5 * new_cap
        latency = 0.5 * latency + 0.5 * new_latency
    mr = miss_ratio(cap)
    lat_vm = latency[..., None] + remote * socket.remote_extra_ns
    cpi = cpi0 + apk * mr * lat_vm * cycles_per_ns / mlp
    ips = socket.freq_hz * vcpus * lmat / cpi
    misses = ips * apk * mr
    bw = misses * LINE_BYTES * (1.0 + wback)
    if alone_ips is None:
        alone_ips = np.array([alone(socket, v).ips.item() for v in vms])
    speed = ips / np.maximum(alone_ips * lmat, 1e-300)
    return SocketState(occupancy=cap, miss_ratio=mr, misses=misses, bandwidth=bw,
                       local_bandwidth=bw * (1.0 - remote), ips=ips, speed=np.where(lmat > 0, speed, 1.0),
                       utilisation=bw.sum(axis=-1) / socket.bw_bytes_s, latency_ns=latency,
                       converged=converged)


def alone(socket: Socket, vm: Vm) -> SocketState:
    """The VM alone on the socket with every way (the reference for `speed`)."""
    full = (1 << socket.ways) - 1
    return solve(socket, [vm], [full], alone_ips=np.array([1.0]))


@dataclass(frozen=True)
class Score:
    """The outcome of one configuration: what the advisors are judged on."""

    weighted_speedup: float    # sum of priority x speed
    worst_slowdown: float      # max over VMs of 1 / speed
    unfairness: float          # max slowdown / min slowdown
    over_threshold: int        # sockets whose bandwidth utilisation exceeds the threshold


def score(states: Sequence[tuple[Socket, Sequence[Vm], SocketState]]) -> Score:
    """Score one or more sockets (time-averaged if the states have a time axis)."""
    ws, slow, over = 0.0, [], 0
    for socket, vms, st in states:
        speed = st.speed if st.speed.ndim == 1 else st.speed.mean(axis=0)
        prio = np.array([v.priority for v in vms])
        ws += float((prio * speed).sum())
        slow += list(1.0 / np.maximum(speed, 1e-9))
        util = np.atleast_1d(st.utilisation)
        over += int(np.mean(util) > socket.bw_threshold)
    return Score(ws, max(slow), max(slow) / max(min(slow), 1e-9), over)
