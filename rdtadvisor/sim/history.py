"""The history an operator's store would hold for a suite scenario's socket (for the scoring harness).

`observe(scenario, mode, seed=...)` returns the collector's tidy tables (`rdtadvisor.store.frames`:
samples, settings, facts, domains, events) for ``hours`` of collections every ``step_s``
seconds on one socket holding the scenario's VMs, i.e. what a CAT advisor would really see
before it advises. The chain is the simulator's own, with no shortcut through the truth:

1. `host_spec`: a one-socket `HostSpec` on Xen 4.19 whose preset is the scenario's part
   (`rdtadvisor.sim.presets`, matched on L3 size, ways, bandwidth and clock; the 12-way
   Broadwell-D of KPart's testbed, which has no preset, gets `BROADWELL_D`), with the
   socket's exact truth (`Socket`) kept, so the history's truth is the harness's truth.
   Each VM keeps its hidden `Vm` (curve, rates, priority); its **load varies mildly** over
   the run (a diurnal wave from ``U(0.55, 0.8)`` to 1 with a random peak hour, plus 8 %
   lognormal noise per step) so the occupancy points spread along its curve. A scenario
   without a ``Domain-0`` gets an idle one (domid 0, load 0: it takes no cache), because
   every real ``xl list`` has it. CDP is on for scenarios tagged ``cdp``.
2. `rdtadvisor.sim.truth.simulate_host`: the vectorised truth (one solve per mask segment).
3. `rdtadvisor.sim.measure.measure` + `render_captures`: Xen's quirks on (occupancy
   quantum and lag after a mask change, 10 ms bandwidth snapshots, prefetch, erratum,
   overflows, missing cells) and the byte-exact ``xl`` captures, in memory.
4. The collector's parser, `rdtadvisor.store.frames.capture_frames`, then `frames.concat`.

Step 4 costs ~14 ms per capture (pandas overhead per small table), i.e. 5 s for 6 hours
at 1-minute steps. `observe` therefore parses with `capture_frames` only the captures that
need it (the first, every one whose static files -- ``xl info``, ``psr-hwinfo``,
``psr-cat-show`` ... -- differ from the last parsed one, and every one with an error
cell, an overflow or any stderr) and builds the rows of the others from the measurement
(the occupancy / bandwidth cells as ``xl`` printed them, ``// 1024 * 1024``) and from the
last parsed capture (facts, settings, events, domains; only the time and ``xl list``'s
state change). ``exact=True`` parses every capture instead; ``tests/test_sim_history.py``
checks that both give identical frames.

**History modes** (`harness.HISTORY_MODES`):

* ``"default"``: every VM keeps the default (all-ones) mask the whole time.
* ``"calibration"``: the same run (same loads, same seed) with a time-boxed **private**
  calibration sweep (`calibration_schedule`), built by
  `rdtadvisor.advise.calibrate.private_timeline` as ``rdtadvisor calibrate`` builds its
  schedule for a socket whose domains are all at the default mask (same levels, holds,
  fence and final restore; the command picks which VMs and orders them by bandwidth, the
  harness sweeps every scenario VM in the scenario's order): starting at
  ``calibration_start`` of the run, each VM in turn gets the top ``k`` ways alone for
  ``k = W - W // 4, W // 2, W // 4, ..., 1`` (`calibrate.private_levels`), while every
  other domain (the idle Domain-0 too) is fenced into the low ``W - k`` ways, each level
  held for ``hold`` collections; one VM's last level goes straight to the next VM's first,
  and after the last level every domain
  goes back to the default mask. A level needs 2 COS. ``hold`` defaults to 10 collections
  (10 minutes at 1-minute steps): with the measurement model's 3-minute occupancy lag the
  first two or three collections at a level still show lines draining (as a real sweep
  would), and the 10 ms bandwidth snapshots are noisy, so shorter levels leave the curve
  fit too few clean points. A run
  too short for the sweep shrinks ``hold`` (down to 1) and, if needed, starts the sweep
  earlier; either way the restore is collected at least once before the run ends.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

import numpy as np
import pandas as pd

from rdtadvisor.advise import calibrate
from rdtadvisor.advise.strategy import TRAFFIC_FACT
from rdtadvisor.core.units import GIB, KIB
from rdtadvisor.sim import measure, model, presets
from rdtadvisor.sim.harness import HISTORY_MODES, SuiteScenario
from rdtadvisor.sim.phases import Phase
from rdtadvisor.sim.scenario import DEFAULT_START, DOM0_NAME, HostSpec, MaskChange, VmSpec
from rdtadvisor.sim.truth import simulate_host
from rdtadvisor.sources.capture import Capture, reading_of
from rdtadvisor.store import frames

XEN = "4.19.1"
OPERATOR_NOISE = 0.1               # lognormal sigma of the operator's traffic measurement
HOURS = 6.0
STEP_S = 60
HOLD = 10                       # collections per calibration level
CALIBRATION_START = 0.25        # share of the run before the sweep starts
LOAD_LOW = (0.55, 0.8)          # diurnal trough range; peak load 1
LOAD_NOISE = 0.08               # lognormal sigma per step
MEMORY_PER_VCPU = 4 * GIB

#: KPart's Broadwell-D D-1540 (12 MB, 12 ways, 8 cores) as a preset, for `suite.BDWD`.
#: Model 0x56 is not BROADWELL_X, so Linux's MBM erratum table does not apply [src Linux
#: monitor.c]; RMIDs, COS and the upscaling factor are [estimate] (Broadwell-EP-like).
BROADWELL_D = replace(
    presets.get("broadwell-ep-e5-2698-v4"), name="broadwell-d-d1540", cpu="Intel Xeon D-1540 (Broadwell-D)",
    l3_bytes=12 * 1024**2, ways=12, cos_max=15, rmids=63, bw_bytes_s=25e9, cores_per_socket=8,
    threads_per_core=2, freq_hz=2.0e9, upscale_bytes=64 * KIB, mbm_erratum=False, mbm_cf_threshold=None,
    mbm_cf=1.0, sources="KPart testbed: 12 MB, 12 ways [src KPart README]; 2 x DDR4-2133, 25 GB/s sustained "
                        "[derived, 75%]; 2.0 GHz [recalled]; RMIDs, COS, upscale [estimate]")


@dataclass(frozen=True)
class _ScenarioPreset(presets.Preset):
    """A preset whose truth-model socket is the scenario's own (`simulate_host` reads it)."""

    truth_socket: model.Socket | None = field(default=None, compare=False)

    def socket(self) -> model.Socket:
        return self.truth_socket if self.truth_socket is not None else super().socket()


def preset_for(socket: model.Socket) -> presets.Preset:
    """The preset of the part a suite socket comes from (`BROADWELL_D` for KPart's), whose
    `socket()` returns exactly ``socket``."""
    candidates = [*presets.PRESETS.values(), BROADWELL_D]
    for p in candidates:
        if (p.l3_bytes, p.ways, p.bw_bytes_s, p.freq_hz) == (socket.l3_bytes, socket.ways, socket.bw_bytes_s,
                                                             socket.freq_hz) and p.l3_cat:
            base = p
            break
    else:
        base = replace(BROADWELL_D, name="custom", cpu="custom socket", l3_bytes=int(socket.l3_bytes),
                       ways=socket.ways, bw_bytes_s=socket.bw_bytes_s, freq_hz=socket.freq_hz,
                       sources="made from a suite Socket with no matching preset")
    kw = {f: getattr(base, f) for f in base.__dataclass_fields__}
    return _ScenarioPreset(**kw, truth_socket=socket)


def calibration_schedule(n: int, ways: int, *, start_step: int, hold: int = HOLD, step_s: int = STEP_S,
                         swept: Sequence[int] | None = None) -> list[tuple[timedelta, list[int | None]]]:
    """The private sweep as (offset from the run's start, one mask per domain or None = default).

    The domains ``swept`` (indices; default all ``n``) in turn get the top ``k`` ways alone for
    ``k`` in `rdtadvisor.advise.calibrate.private_levels` (``W - W // 4, W // 2, W // 4, ..., 1``),
    every other domain fenced in the low ``W - k``, each
    level held ``hold`` collections; the last entry puts everyone back to the default. This is
    `rdtadvisor.advise.calibrate.private_timeline` (what ``rdtadvisor calibrate`` schedules on
    a socket whose domains are all at the default mask).
    """
    sweep = calibrate.private_timeline(n, ways, hold_s=hold * step_s, start_s=start_step * step_s,
                                       swept=swept)
    return [(timedelta(seconds=at), layout) for at, layout in sweep]


def calibration_steps(n: int, ways: int, hold: int = HOLD) -> int:
    """Collections the sweep of `calibration_schedule` lasts for ``n`` swept VMs."""
    return n * len(calibrate.private_levels(ways)) * hold


def host_spec(scenario: SuiteScenario, mode: str, *, seed: int, hours: float = HOURS, step_s: int = STEP_S,
              hold: int = HOLD) -> HostSpec:
    """The one-socket host of `observe` (see the module docstring)."""
    if mode not in HISTORY_MODES:
        raise ValueError(f"unknown history mode {mode!r} (one of {', '.join(HISTORY_MODES)})")
    preset = preset_for(scenario.socket)
    cdp = "cdp" in scenario.tags and preset.cdp
    T = int(hours * 3600 // step_s)
    n = len(scenario.vms)
    # The socket's domains in index order: the scenario's VMs, then the idle Domain-0 added
    # below when the scenario has none (fenced like any other domain, as the command does).
    n_all = n + (not any(v.name == DOM0_NAME for v in scenario.vms))
    changes: dict[int, list[MaskChange]] = {i: [] for i in range(n_all)}
    if mode == "calibration":
        per_vm = len(calibrate.private_levels(preset.ways))
        need = n * per_vm * hold
        start = int(T * CALIBRATION_START)
        # the restore (everyone back at the default) must be collected at least once: a run
        # that ended mid-sweep would leave "today's masks" at its last level
        if start + need >= T:
            hold = max(1, (T - 1 - start) // max(n * per_vm, 1))
            need = n * per_vm * hold
            if start + need >= T:
                start = max(0, T - 1 - need)
            if start + need >= T:
                raise ValueError(f"{hours} h at {step_s} s steps cannot hold a calibration of {n} VMs")
        state: list[int | None] = [None] * n_all
        for at, layout in calibration_schedule(n_all, preset.ways, start_step=start, hold=hold, step_s=step_s,
                                               swept=range(n)):
            for j, m in enumerate(layout):
                if m != state[j]:         # only the domains whose mask changes get a MaskChange
                    changes[j].append(MaskChange(at, None, m, m) if cdp else MaskChange(at, m))
            state = layout
    words = [int(seed) % (1 << 63), zlib.crc32(scenario.name.encode()), 0x4157]
    rng = np.random.default_rng(np.random.SeedSequence(words))       # load shapes: not the truth's draws
    specs: list[VmSpec] = []
    next_domid = 1
    for i, v in enumerate(scenario.vms):
        low = float(rng.uniform(*LOAD_LOW))
        peak = float(rng.uniform(0.0, 24.0))
        if v.name == DOM0_NAME:
            domid = 0
        else:
            domid, next_domid = next_domid, next_domid + 1
        specs.append(VmSpec(name=v.name, domid=domid, socket=0, profile="custom", vm=v,
                            memory_bytes=v.vcpus * MEMORY_PER_VCPU, cbm=None, code_cbm=None, data_cbm=None,
                            l2_cbm=None, mba_thrtl=None, attached=True,
                            phases=(Phase("diurnal", low=low, high=1.0, peak=peak),),
                            mask_changes=tuple(changes[i]), noise=LOAD_NOISE))
    if not any(s.domid == 0 for s in specs):
        idle = model.Vm(DOM0_NAME, model.Curve(0.5, 1024.0**2), apki=1.0, vcpus=2)
        specs.append(VmSpec(name=DOM0_NAME, domid=0, socket=0, profile="dom0", vm=idle,
                            memory_bytes=4 * GIB, cbm=None, code_cbm=None, data_cbm=None, l2_cbm=None,
                            mba_thrtl=None, attached=True, phases=(Phase("constant", level=0.0),),
                            mask_changes=tuple(changes[n])))
    specs.sort(key=lambda s: s.domid)
    used = sum(s.memory_bytes for s in specs)
    memory = max(64 * GIB, math.ceil(used * 1.25 / (64 * GIB)) * 64 * GIB)
    return HostSpec(name=scenario.name, xen=XEN, preset=preset, sockets=(0,), cdp=cdp, mba=False,
                    vms=tuple(specs), memory_bytes=memory)


def observe(scenario: SuiteScenario, mode: str, *, seed: int, hours: float = HOURS, step_s: int = STEP_S,
            hold: int = HOLD, quirks: measure.Quirks | None = None, exact: bool = False,
            operator: bool = False) -> dict[str, pd.DataFrame]:
    """The collector's tables for ``hours`` of history of `scenario`'s socket in history `mode`.

    Deterministic for a `seed` (loads, measurement noise); the two modes share the loads.
    ``exact=True`` parses every capture with `frames.capture_frames` (slow; same result).
    ``operator=True``: on a part without MBM, the facts also carry what the operator measures
    outside xl (a ``TRAFFIC_FACT`` row: the socket's memory traffic as pcm-memory reports it, the
    median over the run of the truth's summed bandwidth with `OPERATOR_NOISE` lognormal error),
    which is what scales relative curves (`rdtadvisor.model.shares`). The store takes no such row
    from xl; the harness's advisors read it as ``advise cat`` reads ``[report] memory_traffic``.
    """
    host = host_spec(scenario, mode, seed=seed, hours=hours, step_s=step_s, hold=hold)
    T = int(hours * 3600 // step_s)
    origin = pd.Timestamp(DEFAULT_START).tz_convert("UTC")
    times = pd.date_range(start=origin, periods=T, freq=pd.Timedelta(seconds=step_s))
    truth = simulate_host(host, times, origin, seed)
    m = measure.measure(truth, seed=seed, quirks=quirks)
    captures = list(measure.render_captures(m, source="rdtadvisor.sim.history"))
    out = frames.concat([frames.capture_frames(c) for c in captures]) if exact else _frames(m, captures)
    if operator and not preset_for(scenario.socket).mbm:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed) % (1 << 63), 0x7AF1C]))
        traffic = float(np.median(truth.bandwidth.sum(axis=1))) * float(rng.lognormal(0.0, OPERATOR_NOISE))
        row = pd.DataFrame({"time": [times[-1]], "host": [host.name], "socket": [0], "fact": [TRAFFIC_FACT],
                            "value": [traffic], "text": ["measured outside xl (pcm-memory)"]})
        out["facts"] = pd.concat([out["facts"], frames.validate("facts", row)], ignore_index=True)
    return out


# ---------------------------------------------------------------------------- fast parsing

def _is_dynamic(name: str) -> bool:
    return name.startswith("xl-psr-cmt-show") or name == "xl-list.txt"


def _static_key(cap: Capture) -> tuple:
    return tuple((k, r.argv, r.stdout, r.stderr, r.exit_status, r.error)
                 for k, r in sorted(cap.results.items()) if not _is_dynamic(k))


def _dirty(cap: Capture) -> bool:
    return any(r.stderr or r.exit_status not in (0, None) or r.error is not None
               for k, r in cap.results.items() if _is_dynamic(k))


def _frames(m: measure.Measurement, captures: list[Capture]) -> dict[str, pd.DataFrame]:
    """`frames.concat([capture_frames(c) for c in captures])`, parsing only where needed."""
    T = len(captures)
    parsed: list[dict[str, pd.DataFrame]] = []
    ref_of = np.full(T, -1)                 # clean captures: index into refs
    refs: list[dict[str, pd.DataFrame]] = []
    ref_key: tuple | None = None
    for t, cap in enumerate(captures):
        key = _static_key(cap)
        if key == ref_key and not _dirty(cap):
            ref_of[t] = len(refs) - 1
            continue
        f = frames.capture_frames(cap)
        parsed.append(f)
        if not _dirty(cap):
            refs.append(f)
            ref_key = key
    fast = np.flatnonzero(ref_of >= 0)
    parts: dict[str, list[pd.DataFrame]] = {name: [p[name] for p in parsed if len(p[name])]
                                            for name in frames.TABLES}
    if len(fast):
        times = pd.DatetimeIndex(m.times).tz_convert("UTC")
        for j in np.unique(ref_of[fast]):
            ts = fast[ref_of[fast] == j]
            ref = refs[j]
            for name in ("facts", "settings", "events", "domains"):
                r = ref[name]
                if not len(r):
                    continue
                rows = r.iloc[np.tile(np.arange(len(r)), len(ts))].reset_index(drop=True)
                rows["time"] = np.repeat(times[ts], len(r))
                if name == "domains":
                    # xl list rows follow domid order, as `m.order` does; only the state moves.
                    if len(r) != len(m.order):
                        raise AssertionError("xl list rows do not match the measured domains")
                    rows["state"] = np.where(m.running[ts], "r-----", "-b----").ravel()
                    # as xl prints it: through a C float, then "%8.1f", then parsed back
                    cpu = m.cpu_seconds[ts].astype(np.float32).ravel()
                    rows["cpu_seconds"] = [float(f"{c:.1f}") for c in cpu.astype(np.float64)]
                parts[name].append(frames.validate(name, rows))
        parts["samples"].append(_fast_samples(m, captures[fast[0]], times, fast))
    out = {}
    for name in frames.TABLES:
        if parts[name]:
            f = pd.concat(parts[name], ignore_index=True)
            f = f.sort_values("time", kind="stable").reset_index(drop=True)
            out[name] = frames.validate(name, f)
        else:
            out[name] = frames.empty(name)
    return out


def _fast_samples(m: measure.Measurement, cap: Capture, times: pd.DatetimeIndex,
                  ts: np.ndarray) -> pd.DataFrame:
    """The samples rows of clean captures ``ts``: every shown cell as ``xl`` printed it (KiB)."""
    vms = list(m.host.vms)
    shown = np.flatnonzero(m.attached)
    names = np.array([str(vms[m.order[i]].name) for i in shown], dtype=object)
    domids = np.array([int(vms[m.order[i]].domid) for i in shown], dtype=np.int32)
    k = len(m.sockets)
    blocks = []
    for fname in sorted(n for n in cap.results if n.startswith("xl-psr-cmt-show")):   # capture_frames' order
        argv = cap.results[fname].argv
        metric_xl = argv[-1].replace("_", "-")
        metric, unit = frames.METRICS[metric_xl]
        r = reading_of(fname)
        if metric == "l3_occupancy":
            cells = m.occupancy[ts][:, shown, :]
        elif metric == "mem_bw_total":
            cells = m.total[r][ts][:, shown, :]
        else:
            cells = m.local[r][ts][:, shown, :]
        values = (cells // KIB * KIB).reshape(len(ts), -1)          # (t, shown * k), VM-major
        blocks.append((metric, r, unit, values))
    per_t = len(shown) * k
    nb = len(blocks)
    # rows: for each t, block after block, each block VM-major then socket
    value = np.stack([b[3] for b in blocks], axis=1).reshape(-1)   # (t, block, cell)
    reps = len(ts) * nb
    return frames.validate("samples", pd.DataFrame({
        "time": np.repeat(times[ts], nb * per_t),
        "host": str(m.host.name),
        "socket": np.tile(np.tile(np.asarray(m.sockets, dtype=np.int16), len(shown)), reps),
        "domid": np.tile(np.repeat(domids, k), reps),
        "domain": pd.array(np.tile(np.repeat(names, k), reps), dtype=pd.StringDtype()),
        "metric": np.tile(np.repeat([b[0] for b in blocks], per_t), len(ts)),
        "reading": np.tile(np.repeat(np.array([b[1] for b in blocks], dtype=np.int16), per_t), len(ts)),
        "value": value.astype(np.int64),
        "unit": np.tile(np.repeat([b[2] for b in blocks], per_t), len(ts)),
    }))
