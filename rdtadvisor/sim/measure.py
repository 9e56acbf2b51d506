"""The measurement model: what a collection (`rdtadvisor.sources.collect.collect_host`) would have
captured from a simulated host, byte for byte, with Xen's quirks on top of the truth.

`host_captures(truth, seed=...)` turns one `rdtadvisor.sim.truth.HostTruth` into one
`Capture` per time step, holding exactly the files ``collect_host(readings=3)`` keeps on
that host's Xen version (``docs/xl-formats.md``, `rdtadvisor.xl.commands.collection_commands`
and the psr-hwinfo feature filter in `rdtadvisor.sources.collect`):

=========  =========================================================================
Xen        files
=========  =========================================================================
4.5        xl info, xl list, psr-cmt-show cache_occupancy (no psr-hwinfo, no MBM, no CAT)
4.6-4.9    + psr-hwinfo, 3 x total and 3 x local bandwidth, psr-cat-show (L3)
4.10       + psr-cat-show -l 2 when the part has L2 CAT
4.11+      + psr-mba-show when the part has MBA and Xen was booted with psr=mba
=========  =========================================================================

psr-cat-show needs CAT *and* CMT (the L3 size is read through CMT). psr-hwinfo's exit
status is its last section's: 253 on 4.11+ without MBA, on 4.10 without L2 CAT,
on 4.6-4.9 without CAT; since 4.10 an absent feature prints nothing and logs nothing.

Every figure is rendered by the project's own renderers (`rdtadvisor.xl.*.render`), so
the KiB truncation is theirs; `psr-cmt-show` and `xl list`, which change every step,
go through a precompiled printf template per host that tests prove byte-identical to
`rdtadvisor.xl.cmt.render` / `rdtadvisor.xl.domains.render` (a fleet is ~10^5 tables).

The quirks (`Quirks`; each one switchable; all random draws from a numpy Generator
seeded by ``(seed, host name, quirk)``, so switching one quirk off leaves the others'
draws unchanged):

* **Occupancy quantum** (``docs/xl-formats.md``, psr-cmt-show; Intel SDM vol. 3 §17.18.2): the counter
  counts in units of CPUID.0xF.1:EBX (the preset's ``upscale_bytes``) and libxl multiplies
  by it, so occupancy is ``floor(bytes / factor) * factor``, then xl truncates to KiB.
* **Occupancy jitter**: lognormal, sigma `occupancy_sigma` (0.02): the line count moves
  while the workload runs; a modelling choice, small on purpose.
* **Occupancy lag after a mask change** (``docs/algorithms.md``, "What the counters measure":
  lines leave only when evicted): after a step where a
  mask on the socket changed, a VM whose equilibrium occupancy fell approaches it as
  ``m[t] = eq[t] + (m[t-1] - eq[t]) * exp(-dt / tau)``, tau = `occupancy_lag_s` (180 s).
  Physically the stale lines leave as fast as the ways' new owners fill them
  (milliseconds at GB/s of misses, never if the ways sit idle); 3 minutes is a modelling
  choice that makes the lag visible at 1- and 5-minute steps. Growth is immediate (a VM
  fills at its miss rate). A socket whose figures would add up to more than its L3 while
  stale lines linger is scaled down as a whole, so occupancy never exceeds the cache.
* **Bandwidth is a 10 ms snapshot** (``docs/xl-formats.md``): xl reads the counter twice ``usleep(10000)``
  apart and prints ``(s2 - s1) * 1e9 / (t2 - t1) / 1024`` KiB/s. Modelled per cell and per
  reading: the bytes of a window of 10 ms plus the usleep overshoot (50 us timer slack
  + exponential, mean `window_jitter_s`), times a lognormal burst factor with mean 1 and
  sigma `bandwidth_sigma` (0.35; a 10 ms window of a bursty VM; the median is
  ``exp(-sigma^2/2)`` = 0.94 of the mean), counted in whole upscaling units with a random
  counter phase (so 0 KB/s for a quiet VM, steps of ``factor * 100`` B/s), then divided
  by the window in integer arithmetic as xl does. Each reading and each of total/local
  is its own draw (they are separate xl calls).
* **Prefetch misses** (``docs/algorithms.md``, "What the counters measure"; Intel SDM: MBM counts
  "all demand and prefetch misses"): the truth's bandwidth is demand misses plus
  write-backs; each VM's counted traffic is that times a per-VM factor drawn uniformly in
  `prefetch` (1.0-1.3).
* **Skylake-SP MBM erratum** (Linux ``mbm_cf_table`` in
  ``arch/x86/kernel/cpu/resctrl/monitor.c``: for RMIDs above a per-SKU threshold the true
  count is the raw count times ``cf``, 0.97-1.45; Xen's ``psr.c`` applies no correction):
  when the preset has ``mbm_erratum``, a VM whose RMID is above the threshold shows
  ``true / cf``. The table row is Linux's, indexed by ``(max RMID + 1) / 8 - 1``; a preset
  may instead give ``(threshold, cf)``. RMIDs are handed out as Xen does: lowest free
  first (``psr_alloc_rmid``), i.e. in attach (domid) order.
* **Counter overflow**: xl retries a wrapped or >= 1 s window 4 times, then prints
  ``event counter overflowed`` on stderr and no cell; probability `overflow_rate` per
  bandwidth cell (2e-4: a dom0 vCPU descheduled for a second mid-sample, or a wrap).
* **Missing cells** (``docs/xl-formats.md``, "Which rows appear"): a counter read with the
  Error/Unavailable bit set makes libxl log ``Domain N:failed to get monitoring data``
  (no ``Domain N:`` prefix for dom0 or before 4.9, commit e106cd83c8) and xl print no
  cell, so the row is shorter; probability `missing_rate` per cell of every psr-cmt-show table (5e-4).
* **Unattached domains**: only domains with an RMID get a psr-cmt-show row;
  RMIDs run out at ``Total RMID`` (``min(rmid_max 255, hardware)``), later domains get none.
* **Non-home sockets**: a VM's vCPUs occasionally run on the other socket (credit2
  balancing unless hard-pinned), so it holds a little cache and moves a little memory
  there: `stray_occupancy` (1 %) and `stray_bandwidth` (0.5 %) of its home figures,
  each with a lognormal (sigma 0.5) spread.

`Quirks.off()` switches every quirk off except Xen's KiB truncation, so captures parse
back to the truth within 1 KiB (what the tests check); `Quirks.exact()` keeps the
deterministic counter quantisation too.

Also rendered: ``xl list`` (every domain, memory and vCPUs from the scenario, CPU time
accumulated from the load and printed through a C float as xl does), CAT masks per
socket from ``HostTruth.masks`` (the same mask on every socket: the truth has one per VM;
code masks from the scenario under CDP), L2 masks, and MBA throttles as Xen stores them
(``mba_sanitize_thrtl``; ``docs/xl-formats.md``, psr-mba-show).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from rdtadvisor.core.units import KIB, MIB
from rdtadvisor.sim import presets
from rdtadvisor.sources.capture import Capture, CommandResult
from rdtadvisor.xl import cat, cmt, domains, hostinfo, hwinfo, mba
from rdtadvisor.xl.commands import capture_name

MONITOR_TYPES = ("cache-occupancy", "total-mem-bandwidth", "local-mem-bandwidth")
RMID_MAX_DEFAULT = 255          # Xen's opt_rmid_max (psr=rmid_max:N)
WINDOW_NS = 10_000_000          # xl's usleep(10000) between the two counter reads
TIMER_SLACK_NS = 50_000         # Linux's default timer slack: usleep never returns early

# stderr texts (docs/xl-formats.md). File:line:function differ between versions and
# are never matched on; these are 4.19's.
_SAMPLE_FAILED = ("libxl: error: libxl_psr.c:363:libxl_psr_cmt_get_sample: {who}failed to get monitoring "
                  "data: No data available\n")
_OVERFLOW = "event counter overflowed\n"
_CAT_INFO_FAILED = "Failed to get cat info\n"


@dataclass(frozen=True)
class Quirks:
    """Xen's measurement quirks; see the module docstring for each one's source."""

    occupancy_quantum: bool = True
    occupancy_sigma: float = 0.02
    occupancy_lag_s: float = 180.0
    bandwidth_sigma: float = 0.35
    bandwidth_quantum: bool = True
    window_jitter_s: float = 100e-6
    prefetch: tuple[float, float] = (1.0, 1.3)
    mbm_erratum: bool = True
    overflow_rate: float = 2e-4
    missing_rate: float = 5e-4
    stray_occupancy: float = 0.01
    stray_bandwidth: float = 0.005
    random_state: bool = True       # xl list's r/b flag drawn from the load (else r when load >= 0.5)

    @classmethod
    def off(cls) -> Quirks:
        """No quirk but xl's own KiB truncation: captures show the truth."""
        return cls(occupancy_quantum=False, occupancy_sigma=0.0, occupancy_lag_s=0.0, bandwidth_sigma=0.0,
                   bandwidth_quantum=False, window_jitter_s=0.0, prefetch=(1.0, 1.0), mbm_erratum=False,
                   overflow_rate=0.0, missing_rate=0.0, stray_occupancy=0.0, stray_bandwidth=0.0,
                   random_state=False)

    @classmethod
    def exact(cls) -> Quirks:
        """No randomness, but the deterministic counter quantisation (occupancy and bandwidth)."""
        return replace(cls.off(), occupancy_quantum=True, bandwidth_quantum=True)


# --- what a host has ------------------------------------------------------------------------

@dataclass(frozen=True)
class Features:
    """What xl can show on one host: derived from its preset, Xen version and boot options."""

    xen: tuple[int, int]
    cmt: bool
    mbm: bool
    l3_cat: bool                    # psr-cat-show (needs CAT and CMT for the L3 size)
    cdp: bool
    l2_cat: bool
    mba: bool
    total_rmid: int

    @property
    def hwinfo(self) -> bool:
        return self.xen >= (4, 6)


def features(host: Any) -> Features:
    """The `Features` of a `HostSpec` (duck-typed: name, xen, preset, cdp, mba)."""
    p = host.preset
    xen = _major_minor(host.xen)
    rmids = int(getattr(p, "rmids", 0) or 0)
    cmt_on = bool(getattr(p, "cmt", True)) and rmids > 0
    # MBM arrived with Broadwell-EP (E5 v4): Haswell-EP (E5 v3) monitors occupancy only.
    mbm = cmt_on and xen >= (4, 6) and bool(getattr(p, "mbm", "haswell" not in str(p.name).lower()))
    has_cat = bool(getattr(p, "l3_cat", True)) and int(getattr(p, "cos_max", 0) or 0) > 0
    cdp = bool(getattr(host, "cdp", False)) and bool(getattr(p, "cdp", False)) and xen >= (4, 7) and has_cat
    l2 = getattr(p, "l2_ways", None) is not None and xen >= (4, 10)
    mba_on = (getattr(p, "mba_linear", None) is not None and bool(getattr(host, "mba", False))
              and xen >= (4, 11))
    return Features(xen=xen, cmt=cmt_on, mbm=mbm, l3_cat=has_cat and cmt_on and xen >= (4, 6), cdp=cdp,
                    l2_cat=l2, mba=mba_on, total_rmid=min(rmids, RMID_MAX_DEFAULT))


def _major_minor(version: str) -> tuple[int, int]:
    major, minor = str(version).split(".")[:2]
    return int(major), int(minor)


def cos_max_shown(cos_max: int, xen: tuple[int, int], cdp: bool) -> int:
    """``Maximum COS`` as psr-hwinfo prints it: halved under CDP."""
    if not cdp:
        return cos_max
    return cos_max >> 1 if xen < (4, 10) else (cos_max - 1) >> 1


def sanitize_thrtl(thrtl: int, *, linear: bool, thrtl_max: int) -> int:
    """What Xen stores for a requested MBA throttle (``mba_sanitize_thrtl``: rounded down)."""
    if thrtl <= 0:
        return 0
    if linear:
        step = max(1, 100 - thrtl_max)
        thrtl -= thrtl % step
    else:
        thrtl = 1 << (int(thrtl).bit_length() - 1)
    return min(thrtl, thrtl_max)


def erratum_factors(preset: Any, rmids: np.ndarray) -> np.ndarray:
    """Factor Xen's raw MBM shows relative to the truth, per RMID (1.0 where unaffected).

    Linux corrects ``count * cf`` above the threshold; Xen shows the raw count, ``true / cf``.
    The preset gives ``mbm_cf_threshold``/``mbm_cf`` (else Linux's table row for its RMIDs).
    """
    out = np.ones(len(rmids))
    if not getattr(preset, "mbm_erratum", False):
        return out
    threshold = getattr(preset, "mbm_cf_threshold", None)
    cf = float(getattr(preset, "mbm_cf", 1.0) or 1.0)
    if threshold is None:
        row = presets.mbm_correction(int(preset.rmids) + 1)  # Total RMID is the max index
        if row is None:
            return out
        threshold, cf = row
    out[rmids > int(threshold)] = 1.0 / cf
    return out


def _rng(seed: int, host: str, stream: str) -> np.random.Generator:
    """A Generator per (seed, host, quirk): stable across runs and Python versions."""
    words = [int(seed) % (1 << 63), zlib.crc32(host.encode()), zlib.crc32(stream.encode())]
    return np.random.default_rng(np.random.SeedSequence(words))


# --- measurement ----------------------------------------------------------------------------

@dataclass
class Measurement:
    """What Xen's counters read for one host over time, before printing.

    Rows follow `order` (VMs by domid). ``occupancy`` (T, n, k) [B] and ``total``/``local``
    (R, T, n, k) [B/s] are integers as libxl/xl computed them (xl then prints // 1024);
    the ``*_fail`` arrays say why a cell was not printed: 0 printed, 1 sample failed,
    2 counter overflowed. Unattached VMs have rows here but are never printed.
    """

    host: Any
    features: Features
    times: pd.DatetimeIndex
    order: np.ndarray               # (n,) index into host.vms, by domid
    sockets: tuple[int, ...]
    home: np.ndarray                # (n,) column of each VM's own socket
    attached: np.ndarray            # (n,) bool: has an RMID
    rmid: np.ndarray                # (n,) 0 = none
    occupancy: np.ndarray
    total: np.ndarray
    local: np.ndarray
    occupancy_fail: np.ndarray
    total_fail: np.ndarray
    local_fail: np.ndarray
    masks: np.ndarray               # (T, n) L3 (data) CBM
    code_masks: np.ndarray | None   # (T, n) CDP code CBM (HostTruth.code_masks), else None
    running: np.ndarray             # (T, n) bool
    cpu_seconds: np.ndarray         # (T, n)
    prefetch: np.ndarray            # (n,)
    erratum: np.ndarray             # (n,)
    quirks: Quirks = field(default_factory=Quirks)

    @property
    def readings(self) -> int:
        return self.total.shape[0]


def measure(truth: Any, *, seed: int, quirks: Quirks | None = None, readings: int = 3) -> Measurement:
    """Apply Xen's measurement to one `HostTruth`: the counter values xl would print."""
    q = quirks or Quirks()
    host = truth.host
    feat = features(host)
    name = host.name
    vms = list(host.vms)
    order = np.array(sorted(range(len(vms)), key=lambda i: vms[i].domid), dtype=np.int64)
    vms = [vms[i] for i in order]
    sockets = tuple(int(s) for s in host.sockets)
    k, n = len(sockets), len(vms)
    T = len(truth.times)
    col = {s: j for j, s in enumerate(sockets)}
    home = np.array([col.get(int(v.socket), 0) for v in vms], dtype=np.int64)
    preset = host.preset
    l3 = float(preset.l3_bytes)
    upscale = int(getattr(preset, "upscale_bytes", 0) or 0)

    # RMIDs: lowest free first, in attach order; none left after Total RMID.
    want = np.array([bool(getattr(v, "attached", True)) for v in vms]) & feat.cmt
    rank = np.cumsum(want)
    attached = want & (rank <= feat.total_rmid)
    rmid = np.where(attached, rank, 0)

    occ_eq = np.asarray(truth.occupancy, dtype=float)[:, order]
    bw = np.asarray(truth.bandwidth, dtype=float)[:, order]
    bw_local = np.asarray(truth.local_bandwidth, dtype=float)[:, order]
    masks = np.asarray(truth.masks, dtype=np.int64)[:, order]
    code = getattr(truth, "code_masks", None)
    code_masks = None if code is None else np.asarray(code, dtype=np.int64)[:, order]
    load = np.asarray(truth.load, dtype=float)[:, order]
    dt = _step_seconds(truth.times)

    # Occupancy on the home socket: lag after mask changes, jitter; then the other sockets.
    occ_home = _lag(occ_eq, masks, home, dt, q.occupancy_lag_s) if q.occupancy_lag_s > 0 else occ_eq
    if q.occupancy_sigma > 0:
        occ_home = occ_home * _lognormal(_rng(seed, name, "occupancy"), q.occupancy_sigma, (T, n))
    occ = np.zeros((T, n, k))
    rows = np.arange(n)
    occ[:, rows, home] = occ_home
    if q.stray_occupancy > 0 and k > 1:
        spread = _lognormal(_rng(seed, name, "stray-occupancy"), 0.5, (T, n, k), mean_one=False)
        stray = occ_home[:, :, None] * q.stray_occupancy * spread
        stray[:, rows, home] = 0.0
        occ += stray
    occ = _fit_l3(occ, l3)
    if q.occupancy_quantum and upscale > 0:
        occ = np.floor(occ / upscale) * upscale
    occ = np.maximum(occ, 0).astype(np.int64)

    # Bandwidth: counted traffic (prefetch, erratum), per socket, then the 10 ms snapshots.
    lo, hi = q.prefetch
    prefetch = _rng(seed, name, "prefetch").uniform(lo, hi, n) if hi > lo else np.full(n, lo)
    erratum = erratum_factors(preset, rmid) if q.mbm_erratum else np.ones(n)
    scale = prefetch * erratum
    total_rate = _per_socket(bw * scale, home, k, q.stray_bandwidth, _rng(seed, name, "stray-bandwidth"))
    local_rate = _per_socket(bw_local * scale, home, k, q.stray_bandwidth,
                             _rng(seed, name, "stray-bandwidth-local"))
    if feat.mbm:
        total = _snapshots(total_rate, readings, upscale, q, _rng(seed, name, "bandwidth-total"))
        local = _snapshots(local_rate, readings, upscale, q, _rng(seed, name, "bandwidth-local"))
    else:
        total = local = np.zeros((0, T, n, k), dtype=np.int64)

    occ_fail = _failures(_rng(seed, name, "missing-occupancy"), (T, n, k), q.missing_rate, 0.0)
    total_fail = _failures(_rng(seed, name, "missing-total"), total.shape, q.missing_rate, q.overflow_rate)
    local_fail = _failures(_rng(seed, name, "missing-local"), local.shape, q.missing_rate, q.overflow_rate)

    # xl list: the running flag and the CPU time the load accumulates.
    if q.random_state:
        running = _rng(seed, name, "state").random((T, n)) < np.clip(load, 0, 1) * 0.6
    else:
        running = load >= 0.5
    vcpus = np.array([_vcpus(v) for v in vms], dtype=float)
    uptime = _rng(seed, name, "uptime").uniform(0.5, 40.0, n) * 86400.0
    cpu = uptime * vcpus * 0.2 + np.cumsum(load * vcpus * dt[:, None], axis=0)
    running[:, [i for i, v in enumerate(vms) if v.domid == 0]] = True   # xl runs in dom0
    return Measurement(host=host, features=feat, times=truth.times, order=order, sockets=sockets, home=home,
                       attached=attached, rmid=rmid, occupancy=occ, total=total, local=local,
                       occupancy_fail=occ_fail, total_fail=total_fail, local_fail=local_fail, masks=masks,
                       code_masks=code_masks,
                       running=running, cpu_seconds=cpu, prefetch=prefetch, erratum=erratum, quirks=q)


def _vcpus(vm: Any) -> int:
    inner = getattr(vm, "vm", None)
    return int(getattr(inner, "vcpus", None) or getattr(vm, "vcpus", 1))


def _step_seconds(times: pd.DatetimeIndex) -> np.ndarray:
    # pandas 3 may keep microseconds: ask for nanoseconds explicitly.
    t = np.asarray(times.as_unit("ns").asi8, dtype=np.int64) if len(times) else np.zeros(0, dtype=np.int64)
    dt = np.diff(t, prepend=t[:1]) / 1e9 if len(t) else np.zeros(0)
    if len(dt) > 1:
        dt[0] = dt[1]
    elif len(dt):
        dt[0] = 60.0
    return dt


def _lognormal(rng: np.random.Generator, sigma: float, shape: tuple[int, ...], *,
               mean_one: bool = True) -> np.ndarray:
    """Lognormal factors with mean 1 (``mu = -sigma^2/2``), or median 1."""
    mu = -0.5 * sigma * sigma if mean_one else 0.0
    return np.exp(rng.normal(mu, sigma, shape))


def _lag(eq: np.ndarray, masks: np.ndarray, home: np.ndarray, dt: np.ndarray, tau: float) -> np.ndarray:
    """Occupancy that drains towards a lower equilibrium after a mask change on its socket."""
    T, n = eq.shape
    if T < 2:
        return eq
    changed = masks[1:] != masks[:-1]                                # (T-1, n)
    if not changed.any():
        return eq
    sock_ids = np.unique(home)
    per_socket = np.stack([changed[:, home == s].any(axis=1) for s in sock_ids], axis=1)  # (T-1, S)
    trigger = np.zeros((T, n), dtype=bool)
    trigger[1:] = per_socket[:, np.searchsorted(sock_ids, home)]
    out = eq.copy()
    decay = np.exp(-dt / tau)
    draining = np.zeros(n, dtype=bool)
    for t in range(1, T):
        excess = out[t - 1] - eq[t]
        draining = (draining | trigger[t]) & (excess > 0)
        if draining.any():
            out[t] = np.where(draining, eq[t] + excess * decay[t], eq[t])
            draining &= (out[t] - eq[t]) > 1024.0
    return out


def _fit_l3(occ: np.ndarray, l3: float) -> np.ndarray:
    """Never more than the L3 on one socket: scale a socket's column down when it overflows."""
    total = occ.sum(axis=1, keepdims=True)                          # (T, 1, k)
    over = total > l3
    if not over.any():
        return occ
    return np.where(over, occ * (l3 / np.maximum(total, 1.0)), occ)


def _per_socket(rate: np.ndarray, home: np.ndarray, k: int, stray: float,
                rng: np.random.Generator) -> np.ndarray:
    T, n = rate.shape
    out = np.zeros((T, n, k))
    rows = np.arange(n)
    out[:, rows, home] = rate
    if stray > 0 and k > 1:
        spread = _lognormal(rng, 0.5, (T, n, k), mean_one=False)
        extra = rate[:, :, None] * stray * spread
        extra[:, rows, home] = 0.0
        out += extra
    return out


def _snapshots(rate: np.ndarray, readings: int, upscale: int, q: Quirks,
               rng: np.random.Generator) -> np.ndarray:
    """R readings of xl's two-sample bandwidth: integer B/s as xl computes it before // 1024."""
    shape = (readings, *rate.shape)
    if q.window_jitter_s > 0:
        window = WINDOW_NS + TIMER_SLACK_NS + rng.exponential(q.window_jitter_s * 1e9, shape).astype(np.int64)
    else:
        window = np.full(shape, WINDOW_NS, dtype=np.int64)
    burst = _lognormal(rng, q.bandwidth_sigma, shape) if q.bandwidth_sigma > 0 else 1.0
    counted = rate[None] * burst * (window / 1e9)                    # bytes in the window
    if q.bandwidth_quantum and upscale > 0:
        phase = rng.random(shape) if q.bandwidth_sigma > 0 else 0.0
        units = np.floor(counted / upscale + phase).astype(np.int64)
        return units * upscale * 1_000_000_000 // window
    return np.floor(counted * 1e9 / window).astype(np.int64)


def _failures(rng: np.random.Generator, shape: tuple[int, ...], missing: float,
              overflow: float) -> np.ndarray:
    out = np.zeros(shape, dtype=np.int8)
    if (missing <= 0 and overflow <= 0) or not all(shape):
        return out
    u = rng.random(shape)
    out[u < missing] = 1
    out[(u >= missing) & (u < missing + overflow)] = 2
    return out


# --- rendering ------------------------------------------------------------------------------

class CmtTemplate:
    """`cmt.render` for one host's table as a single printf template (the fast path).

    The header is `cmt.render`'s own; each row is ``%-40s %5d`` with the name and domid
    baked in and one ``%13u KB`` / ``%11u KB/s`` per socket, exactly as `cmt.render` prints.
    """

    def __init__(self, metric: str, total_rmid: int, sockets: Sequence[int], l3_bytes: int,
                 names: Sequence[str], domids: Sequence[int]) -> None:
        empty = cmt.CmtTable(metric, total_rmid, tuple(sockets),
                             dict.fromkeys(sockets, l3_bytes) if metric == "cache-occupancy" else {},
                             np.zeros(0, dtype=np.int64), [], np.zeros((0, len(sockets)), dtype=np.int64),
                             np.zeros(0, dtype=bool))
        self.header = cmt.render(empty)
        self.cell = "%11u KB/s" if metric != "cache-occupancy" else "%13u KB"
        self.prefixes = [_pad40(name) + " %5d" % domid for name, domid in zip(names, domids, strict=True)]
        k = len(sockets)
        self.k = k
        self.template = self.header.replace("%", "%%") + "".join(
            p.replace("%", "%%") + self.cell * k + "\n" for p in self.prefixes)

    def render(self, kib: np.ndarray, fail: np.ndarray | None = None) -> str:
        """`kib` (rows, k) whole KiB; `fail` (rows, k) non-zero where no cell was printed."""
        if fail is None or not fail.any():
            return self.template % tuple(kib.ravel().tolist())
        out = [self.header]
        for prefix, row, bad in zip(self.prefixes, kib.tolist(), fail.tolist(), strict=True):
            out.append(prefix + "".join(self.cell % v for v, b in zip(row, bad, strict=True) if not b) + "\n")
        return "".join(out)


class ListTemplate:
    """`domains.render` for one host's fixed set of domains; state and CPU time vary."""

    def __init__(self, rows: Sequence[tuple[str, int, int, int]]) -> None:
        self.template = (domains.HEADER + "\n").replace("%", "%%") + "".join(
            (_pad40(name) + f" {domid:5d} {mem // MIB:5d} {vcpus:5d}     ").replace("%", "%%") + "%s  %8.1f\n"
            for name, domid, mem, vcpus in rows)

    def render(self, states: Sequence[str], cpu: Sequence[float]) -> str:
        return self.template % tuple(x for pair in zip(states, cpu, strict=True) for x in pair)


def _pad40(name: str) -> str:
    # C's %-40s pads by bytes, not characters.
    return name + " " * max(0, 40 - len(name.encode("utf-8")))


def _c_float(x: np.ndarray) -> np.ndarray:
    """xl prints the CPU time through a C float (24-bit mantissa)."""
    return x.astype(np.float32).astype(np.float64)


def _release(xen: tuple[int, int]) -> str:
    if xen < (4, 6):
        return "3.16.0-4-amd64"
    if xen < (4, 10):
        return "4.9.0-8-amd64"
    if xen < (4, 15):
        return "4.19.0-21-amd64"
    return "6.1.0-28-amd64"


def info_text(host: Any, feat: Features) -> str:
    """``xl info`` for the host (static: the scenario fixes every domain's memory)."""
    p = host.preset
    k = len(host.sockets)
    cores, threads = int(p.cores_per_socket), int(p.threads_per_core)
    nr_cpus = cores * threads * k
    total_mib = int(host.memory_bytes) // MIB
    used_mib = sum(int(v.memory_bytes) // MIB for v in host.vms)
    free_mib = max(0, total_mib - used_mib - total_mib // 100)      # ~1 % for Xen's own heap
    parts = str(host.xen).split(".")
    extra = "." + ".".join(parts[2:]) if len(parts) > 2 else ""
    khz = round(float(p.freq_hz) / 1e3)
    opts = ["cmt"] if feat.xen < (4, 6) else ["cmt", "cat"] + (["cdp"] if feat.cdp else []) + \
        (["mba"] if feat.mba else [])
    fields = {
        "host": host.name, "release": _release(feat.xen), "version": "#1 SMP Debian", "machine": "x86_64",
        "nr_cpus": str(nr_cpus), "max_cpu_id": str(nr_cpus - 1), "nr_nodes": str(k),
        "cores_per_socket": str(cores), "threads_per_core": str(threads),
        "cpu_mhz": f"{khz // 1000}.{khz % 1000:03d}" if feat.xen >= (4, 10) else str(khz // 1000),
        "hw_caps": "bfebfbff:77fef3ff:2c100800:00000121:0000000f:d19ffffb:00000008:00000100",
        "virt_caps": "pv hvm hvm_directio pv_directio hap shadow", "total_memory": str(total_mib),
        "free_memory": str(free_mib), "sharing_freed_memory": "0", "sharing_used_memory": "0",
        "outstanding_claims": "0", "free_cpus": "0", "xen_major": parts[0], "xen_minor": parts[1],
        "xen_extra": extra, "xen_version": str(host.xen),
        "xen_caps": "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64 ",
        "xen_scheduler": "credit2" if feat.xen >= (4, 12) else "credit", "xen_pagesize": "4096",
        "platform_params": "virt_start=0xffff800000000000", "xen_changeset": "",
        "xen_commandline": f"placeholder dom0_mem=4096M,max:4096M psr={','.join(opts)}",
        "cc_compiler": "x86_64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0", "cc_compile_by": "pkg-xen-devel",
        "cc_compile_domain": "lists.alioth.debian.org", "cc_compile_date": "Tue Oct 14 10:00:00 UTC 2025",
        "build_id": "0f3c6a3c1bde2c8c9a0f0e4c0d7e4c9f3a1b2c3d", "xend_config_format": "4",
    }
    if feat.xen < (4, 7):
        del fields["build_id"]
    info = hostinfo.HostInfo(host=host.name, release=fields["release"], nr_cpus=nr_cpus, nr_nodes=k,
                             cores_per_socket=cores, threads_per_core=threads, sockets=k,
                             total_memory_bytes=total_mib * MIB, free_memory_bytes=free_mib * MIB,
                             xen_version=str(host.xen), fields=fields)
    return hostinfo.render(info)


def hwinfo_result(host: Any, feat: Features) -> tuple[str, str, int]:
    """``xl psr-hwinfo``: (stdout, stderr, exit status), per Xen version (``docs/xl-formats.md``)."""
    p = host.preset
    sockets = tuple(int(s) for s in host.sockets)
    cmt_info = hwinfo.CmtInfo(True, feat.total_rmid, MONITOR_TYPES if feat.mbm else MONITOR_TYPES[:1]) \
        if feat.cmt else hwinfo.CmtInfo(False, None, ())
    cbm_len = int(p.ways)
    l3 = tuple(hwinfo.CatInfo(s, int(p.l3_bytes), feat.cdp if feat.xen >= (4, 7) else None,
                              cos_max_shown(int(p.cos_max), feat.xen, feat.cdp), cbm_len, (1 << cbm_len) - 1)
               for s in sockets) if feat.l3_cat else ()
    l2 = ()
    if feat.l2_cat:
        l2_len = int(p.l2_ways)
        l2_cos = int(getattr(p, "l2_cos_max", None) or p.cos_max)
        l2 = tuple(hwinfo.CatInfo(s, None, None, l2_cos, l2_len, (1 << l2_len) - 1) for s in sockets)
    mbas = tuple(hwinfo.MbaInfo(s, bool(p.mba_linear), int(getattr(p, "mba_cos_max", 7) or 7),
                                int(p.mba_thrtl_max)) for s in sockets) if feat.mba else ()
    # main_psr_hwinfo: the exit status is the last section's return code (-3 -> 253).
    warnings: tuple[str, ...] = ()
    stderr, status = "", 0
    has_cat = bool(getattr(p, "l3_cat", True)) and int(getattr(p, "cos_max", 0) or 0) > 0
    if has_cat and not feat.cmt:
        # The L3 size is a CMT sysctl: bare header, then xl gives up.
        warnings = (hwinfo.L3_EMPTY_WARNING,)
        stderr = "".join(f"Failed to get l3 cache size for socket:{s}\n" for s in sockets[:1]) + \
            "libxl: error: libxl_psr.c:94:libxl_psr_cmt_get_l3_cache_size: CMT is not supported in this " \
            "system: No such device\n"
        status = 253
    elif not has_cat:
        status = 253
        if feat.xen < (4, 10):
            # 4.6-4.9 print the L3 header before fetching.
            warnings = (hwinfo.L3_EMPTY_WARNING,)
            stderr = _CAT_INFO_FAILED + "libxl: error: libxl_psr.c:133:libxl__psr_cat_log_err_msg: " \
                "CAT is not supported in this system: No such device\n"
    if feat.xen >= (4, 10):
        status = 0 if feat.l2_cat else 253          # L2 runs whatever came before; silent when absent
    if feat.xen >= (4, 11):
        status = 0 if feat.mba else 253             # ... then MBA (the last section's status)
    text = hwinfo.render(hwinfo.HwInfo(cmt_info, l3, l2, mbas, warnings), xen_version=feat.xen)
    return text, stderr, status


# --- captures -------------------------------------------------------------------------------

# Plausible wall times per command [s] for meta.json (xl on a busy dom0).
_BASE_SECONDS = {"info": 0.011, "list": 0.007, "psr-hwinfo": 0.004, "psr-cat-show": 0.003,
                 "psr-mba-show": 0.003}


def host_captures(truth: Any, *, seed: int, quirks: Quirks | None = None, readings: int = 3,
                  source: str = "rdtadvisor simulate") -> Iterator[Capture]:
    """One `Capture` per time step of `truth`, as ``collect_host(readings=3)`` would keep them."""
    yield from render_captures(measure(truth, seed=seed, quirks=quirks, readings=readings), source=source)


def render_captures(m: Measurement, *, source: str = "rdtadvisor simulate") -> Iterator[Capture]:
    """Print a `Measurement` step by step with xl's formats (static texts computed once)."""
    host, feat = m.host, m.features
    vms = [list(host.vms)[i] for i in m.order]
    names = [str(v.name) for v in vms]
    domids = [int(v.domid) for v in vms]
    n, k = len(vms), len(m.sockets)
    p = host.preset
    info = info_text(host, feat)
    listing = ListTemplate([(names[i], domids[i], int(vms[i].memory_bytes), _vcpus(vms[i]))
                            for i in range(n)])
    shown = np.flatnonzero(m.attached)
    shown_names = [names[i] for i in shown]
    shown_ids = [domids[i] for i in shown]
    l3_kib_bytes = int(p.l3_bytes) // KIB * KIB
    occ_tpl = CmtTemplate("cache-occupancy", feat.total_rmid, m.sockets, l3_kib_bytes, shown_names, shown_ids)
    bw_tpl = {metric: CmtTemplate(metric, feat.total_rmid, m.sockets, 0, shown_names, shown_ids)
              for metric in MONITOR_TYPES[1:]}
    prefix_of = [_who(domids[i], feat.xen) for i in shown]

    # Static commands.
    argv_occ = ("xl", "psr-cmt-show", "cache_occupancy" if feat.xen < (4, 6) else "cache-occupancy")
    plan: list[tuple[str, tuple[str, ...]]] = [("info", ("xl", "info")), ("list", ("xl", "list"))]
    hw = hwinfo_result(host, feat) if feat.hwinfo else None
    if hw is not None:
        plan.append(("hwinfo", ("xl", "psr-hwinfo")))
    if feat.cmt or feat.xen < (4, 6):         # 4.5 has no psr-hwinfo to say CMT is off
        plan.append(("occupancy", argv_occ))
        if feat.mbm:
            for r in range(m.readings):
                plan.append((f"total{r}", ("xl", "psr-cmt-show", "total-mem-bandwidth")))
                plan.append((f"local{r}", ("xl", "psr-cmt-show", "local-mem-bandwidth")))
    if feat.l3_cat:
        plan.append(("cat", ("xl", "psr-cat-show")))
    if feat.l2_cat:
        plan.append(("cat2", ("xl", "psr-cat-show", "-l", "2")))
    if feat.mba:
        plan.append(("mba", ("xl", "psr-mba-show")))
    argv_of = dict(plan)
    files = {}
    counts: dict[tuple[str, ...], int] = {}
    for key, argv in plan:
        files[key] = capture_name(argv, counts.get(argv, 0))
        counts[argv] = counts.get(argv, 0) + 1

    cat_texts = _cat_texts(m, vms, names, domids) if feat.l3_cat else None
    l2_text = _l2_text(m, vms, names, domids) if feat.l2_cat else ""
    mba_text = _mba_text(m, vms, names, domids) if feat.mba else ""
    bw_seconds = 0.002 + 0.0101 * len(shown) * k

    occ_kib = m.occupancy[:, shown] // KIB
    occ_fail = m.occupancy_fail[:, shown]
    tot_kib = m.total[:, :, shown] // KIB
    loc_kib = m.local[:, :, shown] // KIB
    tot_fail = m.total_fail[:, :, shown]
    loc_fail = m.local_fail[:, :, shown]
    cpu = _c_float(m.cpu_seconds)
    states = np.where(m.running, "r-----", "-b----")
    times = m.times.to_pydatetime()
    occ_any = occ_fail.reshape(len(times), -1).any(axis=1) if occ_fail.size else np.zeros(len(times), bool)

    for t, when in enumerate(times):
        cap = Capture(host=str(host.name), time=when, source=source)
        clock = when

        def put(key: str, stdout: str, stderr: str = "", status: int = 0, seconds: float = 0.003,
                cap: Capture = cap) -> None:
            nonlocal clock
            cap.results[files[key]] = CommandResult(argv_of[key], stdout, stderr, status, clock, seconds)
            clock = clock + timedelta(seconds=seconds)

        put("info", info, seconds=_BASE_SECONDS["info"])
        put("list", listing.render(states[t].tolist(), cpu[t].tolist()), seconds=_BASE_SECONDS["list"])
        if hw is not None:
            put("hwinfo", hw[0], hw[1], hw[2], seconds=_BASE_SECONDS["psr-hwinfo"])
        if not feat.cmt and feat.xen < (4, 6):
            put("occupancy", "", "CMT is disabled in the system\n", 255)
        elif feat.cmt:
            fail = occ_fail[t] if occ_any[t] else None
            put("occupancy", occ_tpl.render(occ_kib[t], fail), _stderr(fail, prefix_of),
                seconds=0.003 + 0.0002 * len(shown) * k)
            if feat.mbm:
                for r in range(m.readings):
                    for key, tpl, kib, bad in (("total", bw_tpl["total-mem-bandwidth"], tot_kib, tot_fail),
                                               ("local", bw_tpl["local-mem-bandwidth"], loc_kib, loc_fail)):
                        f = bad[r, t]
                        f = f if f.any() else None
                        put(f"{key}{r}", tpl.render(kib[r, t], f), _stderr(f, prefix_of), seconds=bw_seconds)
        if cat_texts is not None:
            put("cat", cat_texts[t], seconds=_BASE_SECONDS["psr-cat-show"])
        if feat.l2_cat:
            put("cat2", l2_text, seconds=_BASE_SECONDS["psr-cat-show"])
        if feat.mba:
            put("mba", mba_text, seconds=_BASE_SECONDS["psr-mba-show"])
        yield cap


def _who(domid: int, xen: tuple[int, int]) -> str:
    # libxl__logv adds "Domain N:" for guests only (0 < domid), and only since 4.9 (e106cd83c8).
    return f"Domain {domid}:" if domid > 0 and xen >= (4, 9) else ""


def _stderr(fail: np.ndarray | None, who: Sequence[str]) -> str:
    if fail is None:
        return ""
    out = []
    for i, j in zip(*np.nonzero(fail), strict=True):
        out.append(_OVERFLOW if fail[i, j] == 2 else _SAMPLE_FAILED.format(who=who[i]))
    return "".join(out)


def _code_masks(m: Measurement, vms: list, full: int) -> np.ndarray:
    """(T, n) CDP code masks: the scenario's, following its mask changes (None = default)."""
    T = len(m.times)
    offsets = (m.times - m.times[0]).to_pytimedelta() if T else []
    code = np.array([[getattr(v, "code_cbm", None) or full for v in vms]] * T, dtype=np.int64).reshape(T, -1)
    for i, v in enumerate(vms):
        for change in getattr(v, "mask_changes", ()):
            when = np.array([o >= change.at for o in offsets], dtype=bool)
            code[when, i] = change.code_cbm or full
    return code


def _cat_texts(m: Measurement, vms: list, names: list[str], domids: list[int]) -> list[str]:
    """psr-cat-show (L3) per step; re-rendered only where a mask changed."""
    p = m.host.preset
    feat = m.features
    cbm_len = int(p.ways)
    full = (1 << cbm_len) - 1
    T = len(m.times)
    # The truth's mask is the data mask under CDP (model.solve); code masks come from the scenario.
    if feat.cdp:
        code = m.code_masks if m.code_masks is not None else _code_masks(m, vms, full)
        both = np.concatenate([m.masks, code], axis=1)
    else:
        both = m.masks
    change = np.ones(T, dtype=bool)
    if T > 1:
        change[1:] = (both[1:] != both[:-1]).any(axis=1)
    n = len(vms)
    out: list[str] = []
    text = ""
    for t in range(T):
        if change[t]:
            row = [int(x) or full for x in both[t].tolist()]
            if feat.cdp:
                doms = tuple(cat.CatDomain(domids[i], names[i], None, row[n + i], row[i]) for i in range(n))
            else:
                doms = tuple(cat.CatDomain(domids[i], names[i], row[i], None, None) for i in range(n))
            socks = tuple(cat.CatSocket(s, int(p.l3_bytes), full, feat.cdp, doms) for s in m.sockets)
            text = cat.render(cat.CatTable(3, socks), xen_version=feat.xen)
        out.append(text)
    return out


def _l2_text(m: Measurement, vms: list, names: list[str], domids: list[int]) -> str:
    p = m.host.preset
    full = (1 << int(p.l2_ways)) - 1
    doms = tuple(cat.CatDomain(domids[i], names[i], int(getattr(v, "l2_cbm", None) or full), None, None)
                 for i, v in enumerate(vms))
    socks = tuple(cat.CatSocket(s, None, full, False, doms) for s in m.sockets)
    return cat.render(cat.CatTable(2, socks), xen_version=m.features.xen)


def _mba_text(m: Measurement, vms: list, names: list[str], domids: list[int]) -> str:
    p = m.host.preset
    linear = bool(p.mba_linear)
    tmax = int(p.mba_thrtl_max)
    doms = tuple(mba.MbaDomain(domids[i], names[i], sanitize_thrtl(int(getattr(v, "mba_thrtl", 0) or 0),
                                                                   linear=linear, thrtl_max=tmax))
                 for i, v in enumerate(vms))
    socks = tuple(mba.MbaSocket(s, 0, doms) for s in m.sockets)
    return mba.render(mba.MbaTable(socks, linear), linear=linear)



# --- a whole scenario -----------------------------------------------------------------------

@dataclass
class FleetResult:
    """What `write_fleet` wrote, and where the time went (summed over hosts; `wall` is elapsed)."""

    hosts: int = 0
    captures: int = 0
    files: int = 0
    seconds_truth: float = 0.0
    seconds_render: float = 0.0
    seconds_write: float = 0.0
    wall: float = 0.0
    workers: int = 1

    def add(self, other: FleetResult) -> None:
        for name in ("hosts", "captures", "files", "seconds_truth", "seconds_render", "seconds_write"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


PARALLEL_MIN_CAPTURES = 2000   # below this, starting worker processes costs more than it saves


def write_fleet(scenario: Any, root: Any, *, duration: Any = None, step: Any = None, seed: int | None = None,
                quirks: Quirks | None = None, readings: int = 3, workers: int | None = None,
                on_progress: Callable[[str, int], None] | None = None, write: bool = True,
                since: Any = None) -> FleetResult:
    """Simulate every host of `scenario` and write its captures under `root` (``write_capture``).

    `seed` overrides the scenario's for the truth (load series) and the measurement alike.
    Hosts are independent (each seeded by its name), so they run in `workers` processes
    (default: one per CPU for big runs) and the bytes do not depend on the worker count.
    `on_progress(host, captures)` is called in this process as captures are written.
    `write=False` renders without writing (for benchmarks). `since` (a UTC datetime): only the
    captures from then on are written (the run before it is still simulated and measured,
    so a continuation starts from the state the run had reached).
    """
    import os

    from rdtadvisor.sim import truth as truth_mod

    seed = scenario.seed if seed is None else seed
    times = truth_mod.time_index(scenario, duration, step)
    origin = pd.Timestamp(scenario.start).tz_convert("UTC")
    source = f"rdtadvisor simulate {getattr(scenario, 'name', '')}".rstrip()
    jobs = [(host, times, origin, seed, root, quirks, readings, source, write, since)
            for host in scenario.hosts]
    if workers is None:
        big = len(times) * len(jobs) >= PARALLEL_MIN_CAPTURES
        workers = min(len(jobs), os.cpu_count() or 1) if big else 1
    workers = max(1, min(workers, len(jobs)))
    started = time.perf_counter()
    total = FleetResult(workers=workers)
    if workers == 1:
        for job in jobs:
            total.add(_host_job(job, on_progress))
    else:
        total.add(_parallel(jobs, workers, on_progress))
    total.wall = time.perf_counter() - started
    return total


def fleet_captures(scenario: Any, *, duration: Any = None, step: Any = None, since: Any = None) -> int:
    """How many captures `write_fleet` will write (hosts x steps, from `since`)."""
    from rdtadvisor.sim import truth as truth_mod

    times = truth_mod.time_index(scenario, duration, step)
    if since is not None:
        times = times[times >= pd.Timestamp(since)]
    return len(times) * len(scenario.hosts)


_PROGRESS_EVERY = 50
_queue: Any = None


def _host_job(job: tuple, on_progress: Callable[[str, int], None] | None = None) -> FleetResult:
    """Truth, rendering and writing of one host (runs in a worker process when parallel)."""
    from rdtadvisor.sim import truth as truth_mod
    from rdtadvisor.sources.capture import write_capture

    host, times, origin, seed, root, quirks, readings, source, write, since = job
    out = FleetResult(hosts=1)
    t0 = time.perf_counter()
    host_truth = truth_mod.simulate_host(host, times, origin, seed)
    out.seconds_truth = time.perf_counter() - t0
    captures = host_captures(host_truth, seed=seed, quirks=quirks, readings=readings, source=source)
    pending = 0
    while True:
        a = time.perf_counter()
        cap = next(captures, None)
        b = time.perf_counter()
        out.seconds_render += b - a
        if cap is None:
            break
        if since is not None and cap.time < since:
            continue
        if write:
            write_capture(root, cap)
            out.seconds_write += time.perf_counter() - b
        out.captures += 1
        out.files += len(cap.results) + 1
        pending += 1
        if pending >= _PROGRESS_EVERY or on_progress is not None:
            if on_progress is not None:
                on_progress(host.name, pending)
            elif _queue is not None:
                _queue.put((host.name, pending))
            pending = 0
    if pending and _queue is not None:
        _queue.put((host.name, pending))
    return out


def _init_worker(queue: Any) -> None:
    global _queue
    _queue = queue


def _parallel(jobs: list[tuple], workers: int, on_progress: Callable[[str, int], None] | None) -> FleetResult:
    import multiprocessing
    import queue as queue_mod
    from concurrent.futures import ProcessPoolExecutor, wait

    # spawn, not fork: the parent may hold Arrow/BLAS threads.
    ctx = multiprocessing.get_context("spawn")
    progress = ctx.Queue()
    total = FleetResult()
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(progress,)) as pool:
        futures = [pool.submit(_host_job, job) for job in jobs]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2)
            while True:
                try:
                    host, n = progress.get_nowait()
                except queue_mod.Empty:
                    break
                if on_progress is not None:
                    on_progress(host, n)
            for f in done:
                total.add(f.result())
    while True:     # progress messages that arrived after the last future
        try:
            host, n = progress.get(timeout=0.05)
        except queue_mod.Empty:
            break
        if on_progress is not None:
            on_progress(host, n)
    return total
