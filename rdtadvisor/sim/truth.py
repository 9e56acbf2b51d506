"""The hidden truth over time: every VM's occupancy, bandwidth, misses and speed at every step.

For each host and socket, time is cut into segments in which the L3 masks (and the working-set
sizes of growing VMs) are constant, and `model.solve` runs once per segment on the whole
(T_seg, n_socket) load matrix: no loop over time steps. Working-set growth is followed in chunks
of at most ``ceil(T / GROWTH_CHUNKS)`` steps, each solved with the curves scaled by the growth
factor at the chunk's middle step.

Loads come from each VM's phases (`rdtadvisor.sim.phases`), with a numpy generator seeded from
``(seed, host, VM, "load")``: the same seed gives the same truth, and adding a host or a VM does
not change any other VM's series.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

import numpy as np
import pandas as pd

from rdtadvisor.sim import model
from rdtadvisor.sim.phases import load_series, ws_series
from rdtadvisor.sim.scenario import HostSpec, Scenario, VmSpec, np_seed

GROWTH_CHUNKS = 32


@dataclass(frozen=True)
class HostTruth:
    host: HostSpec
    times: pd.DatetimeIndex          # UTC, length T
    occupancy: np.ndarray            # (T, n) [B], n = len(host.vms); a VM's occupancy on its own socket
    bandwidth: np.ndarray            # (T, n) total [B/s]
    local_bandwidth: np.ndarray      # (T, n)
    misses: np.ndarray               # (T, n) per s
    speed: np.ndarray                # (T, n)
    load: np.ndarray                 # (T, n)
    masks: np.ndarray                # (T, n) int64, L3 (data under CDP) mask in force
    utilisation: dict[int, np.ndarray]  # socket -> (T,)
    # --- additions beyond the agreed API ---
    code_masks: np.ndarray | None = None    # (T, n) int64 code mask under CDP, else None
    ips: np.ndarray | None = None           # (T, n) instructions per second
    miss_ratio: np.ndarray | None = None    # (T, n)
    ws_bytes: np.ndarray | None = None      # (T, n) working set in force (growth applied)
    latency_ns: dict[int, np.ndarray] | None = None  # socket -> (T,) memory latency
    solves: int = 0                         # model.solve calls made (segments)
    converged: bool = True                  # every solve converged

    def frame(self, quantity: str = "occupancy") -> pd.DataFrame:
        """One (T, n) quantity as a DataFrame indexed by time, one column per VM name."""
        names = [v.name for v in self.host.vms]
        return pd.DataFrame(getattr(self, quantity), index=self.times, columns=names)


def _mask_series(vm: VmSpec, offs: np.ndarray, ways: int) -> tuple[np.ndarray, np.ndarray]:
    """(data, code) masks in force at each offset [s] as int64 arrays."""
    default = (1 << ways) - 1

    def eff(cbm: int | None, code: int | None, data: int | None) -> tuple[int, int]:
        if code is None and data is None:
            return (cbm if cbm is not None else default), (cbm if cbm is not None else default)
        return (data if data is not None else default), (code if code is not None else default)

    d0, c0 = eff(vm.cbm, vm.code_cbm, vm.data_cbm)
    data = np.full(len(offs), d0, dtype=np.int64)
    code = np.full(len(offs), c0, dtype=np.int64)
    for ch in vm.mask_changes:
        d, c = eff(ch.cbm, ch.code_cbm, ch.data_cbm)
        after = offs >= ch.at.total_seconds()
        data[after] = d
        code[after] = c
    return data, code


def _segments(masks: np.ndarray, wsf: np.ndarray, chunk: int) -> list[tuple[int, int]]:
    """[start, end) row ranges in which masks are constant and growth is cut into chunks."""
    T = masks.shape[0]
    if T == 0:
        return []
    change = np.zeros(T, dtype=bool)
    change[0] = True
    change[1:] |= (masks[1:] != masks[:-1]).any(axis=1)
    growing = (wsf[1:] != wsf[:-1]).any(axis=1)          # steps where some working set moves
    grid = np.zeros(T, dtype=bool)
    grid[::chunk] = True
    # Cut on the grid only inside stretches where a working set is changing.
    moving = np.zeros(T, dtype=bool)
    moving[1:] = growing
    moving[:-1] |= growing
    change |= grid & np.maximum.accumulate(moving[::-1])[::-1] & np.maximum.accumulate(moving)
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], T)
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


LOAD_GRID = np.linspace(0.0, 1.0, 101)


def _alone_ips(socket: model.Socket, vm: model.Vm, load: np.ndarray, cache: dict) -> np.ndarray:
    """`solve`'s ``alone_ips`` making `speed` relative to the VM alone **at the same load**.

    `model.solve` divides by ``alone_ips * load``, i.e. assumes IPS alone is linear in load;
    it is not (a lighter load queues less for memory), so a bandwidth-heavy VM at 30% load would
    read as faster than alone. We pass ``ips_alone(load) / load``, interpolated on a 101-point
    load grid solved once per distinct VM.
    """
    if vm not in cache:
        full = (1 << socket.ways) - 1
        cache[vm] = model.solve(socket, [vm], [full], LOAD_GRID[:, None], alone_ips=np.ones(1)).ips[:, 0]
    ips = np.interp(load, LOAD_GRID, cache[vm])
    return np.where(load > 0, ips / np.maximum(load, 1e-12), 1.0)


def simulate_host(host: HostSpec, times: pd.DatetimeIndex, origin: pd.Timestamp, seed: int) -> HostTruth:
    """The truth of one host at `times` (`origin`: the run's start, for phase offsets)."""
    T, n = len(times), len(host.vms)
    preset = host.preset
    offs = np.asarray((times - origin).total_seconds(), dtype=float)
    load = np.empty((T, n))
    wsf = np.empty((T, n))
    masks = np.empty((T, n), dtype=np.int64)
    code = np.empty((T, n), dtype=np.int64)
    for j, v in enumerate(host.vms):
        rng = np.random.default_rng(np_seed(seed, host.name, v.name, "load"))
        load[:, j] = load_series(v.phases, times, rng, noise=v.noise, origin=origin)
        wsf[:, j] = ws_series(v.phases, times, origin=origin)
        masks[:, j], code[:, j] = _mask_series(v, offs, preset.ways)
    out = {k: np.zeros((T, n)) for k in ("occupancy", "bandwidth", "local_bandwidth", "misses", "ips",
                                         "miss_ratio")}
    speed = np.ones((T, n))
    ws_bytes = wsf * np.array([v.vm.curve.ws_bytes for v in host.vms])
    socket = preset.socket()
    util: dict[int, np.ndarray] = {}
    latency: dict[int, np.ndarray] = {}
    alone_cache: dict[model.Vm, np.ndarray] = {}
    chunk = max(1, math.ceil(T / GROWTH_CHUNKS))
    solves, converged = 0, True
    for s in host.sockets:
        idx = host.socket_vms(s)
        util[s] = np.zeros(T)
        latency[s] = np.full(T, socket.latency_ns)
        if not idx:
            continue
        for a, b in _segments(masks[:, idx], wsf[:, idx], chunk):
            mid = (a + b - 1) // 2
            vms = []
            for j in idx:
                vm = host.vms[j].vm
                f = wsf[mid, j]
                if f != 1.0:
                    vm = replace(vm, curve=replace(vm.curve, ws_bytes=vm.curve.ws_bytes * f))
                    ws_bytes[a:b, j] = vm.curve.ws_bytes
                vms.append(vm)
            seg_load = load[a:b][:, idx]
            ref = np.stack([_alone_ips(socket, vm, seg_load[:, k], alone_cache) for k, vm in enumerate(vms)],
                           axis=-1)
            st = model.solve(socket, vms, masks[a, idx].tolist(), seg_load, alone_ips=ref)
            solves += 1
            converged &= st.converged
            for key in out:
                out[key][a:b, idx] = getattr(st, key)
            speed[a:b, idx] = st.speed
            util[s][a:b] = st.utilisation
            latency[s][a:b] = st.latency_ns
    return HostTruth(host=host, times=times, occupancy=out["occupancy"], bandwidth=out["bandwidth"],
                     local_bandwidth=out["local_bandwidth"], misses=out["misses"], speed=speed, load=load,
                     masks=masks, utilisation=util, code_masks=code if host.cdp else None, ips=out["ips"],
                     miss_ratio=out["miss_ratio"], ws_bytes=ws_bytes, latency_ns=latency, solves=solves,
                     converged=converged)


def time_index(scenario: Scenario, duration: timedelta | None = None,
               step: timedelta | None = None) -> pd.DatetimeIndex:
    """The UTC sample times of a run: ``duration // step`` steps from the scenario's start."""
    duration = scenario.duration if duration is None else duration
    step = scenario.step if step is None else step
    if step <= timedelta(0):
        raise ValueError(f"step must be positive, not {step}")
    T = int(duration / step)
    return pd.date_range(start=pd.Timestamp(scenario.start).tz_convert("UTC"), periods=T,
                         freq=pd.Timedelta(step))


def simulate(scenario: Scenario, *, duration: timedelta | None = None, step: timedelta | None = None,
             seed: int | None = None) -> Iterator[HostTruth]:
    """The truth of every host of `scenario`, one host at a time (lazy: a fleet need not fit in memory).

    `duration`/`step` override the scenario's; `seed` (default: the scenario's) drives the load
    series. The VMs' parameters were drawn when the scenario was loaded (`load_scenario(seed=)`).
    """
    times = time_index(scenario, duration, step)
    origin = pd.Timestamp(scenario.start).tz_convert("UTC")
    seed = scenario.seed if seed is None else seed
    for host in scenario.hosts:
        yield simulate_host(host, times, origin, seed)
