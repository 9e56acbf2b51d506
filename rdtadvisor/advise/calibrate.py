"""Calibration sweeps (issue 5): time-boxed temporary masks that measure the curves of VMs lacking history.

A VM whose L3 mask never narrowed shows the advisor only a narrow band of occupancies (its
load moves it a little along its miss curve), so `rdtadvisor.curves` falls back to a class
prior or rates the fit ``fair``/``low``. A **sweep** narrows one VM's mask for a while at a
time, ``W // 2, W // 4, ..., 1`` ways (`levels`), each level held for ``hold`` collections,
then restores its setting: the collector, still running, records the points the fit lacks.

This module is pure (no I/O). `timeline` is the sweep's order in time and is shared with the
simulator's ``"calibration"`` history mode (`rdtadvisor.sim.history`), so what the harness
scores is exactly what ``rdtadvisor calibrate`` produces. `plan_calibration` chooses, per
host and socket, which VMs to sweep and builds the exact ``xl`` argv (`CalibrationPlan`):

* **Which VMs**: the ones named (``--vm``), else every monitored domain on the socket whose
  fitted curve is not ``good`` (``fallback``, ``low`` or ``fair``), by bandwidth, highest
  first (their curves matter most). Idle domains (bandwidth < `curves.IDLE_BW`) are left
  out: they miss nothing whatever their mask. Domain-0 is swept only when named.
* **Where in the cache**: each level is the low ``w`` bits of the VM's current contiguous
  run (a VM at the default mask: bits from 0), so a VM already in a partition is measured
  inside it and never spills into a neighbour's ways.
* **When**: the sockets of a host run concurrently, one VM per socket at a time; a VM's
  restore and the next VM's first level share an offset (the restore first: it frees the
  COS the next level takes). A level lasts ``hold`` x the collection interval, so the
  collector's samples land inside it. VMs whose sweep would end after the time box are left
  out (named, with the time they need).
* **COS**: a level is a mask no other domain has, so it needs a COS of its own. Every state
  of a VM's sweep (each level, and under CDP the code/data half-way state of its restore) is
  counted against ``cos_max`` (`cbm.cos_needed`); Xen re-uses a COS in place when the domain
  being changed is its only user, which the count reflects. A socket where no VM fits is
  skipped with the reason. Not counted: L2 CAT and MBA settings, which share COS ids with L3
  on Xen 4.10+, and domains whose mask ``xl`` could not read.
* **CDP**: a level is one plain set (Xen sets code and data to the same mask); the restore is
  `plan.build_steps`' (``-c``/``-d`` for the halves that differ, a plain set when they are
  equal), in the host's Xen syntax (`xl.commands.cat_set_argv`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rdtadvisor import curves
from rdtadvisor.advise import cbm
from rdtadvisor.advise.cbm import Mask
from rdtadvisor.errors import ConfigError, PlanError
from rdtadvisor.plan import build_steps, socket_settings, xen_version_of
from rdtadvisor.plans import SocketFacts, socket_facts
from rdtadvisor.xl.commands import cat_set_argv

HOLD = 10                          # collections per level (see rdtadvisor.sim.history for why 10)
DURATION_S = 2 * 3600              # default time box
DOM0 = 0


# --- the sweep's shape, shared with the simulator ------------------------------------------------

def levels(ways_now: int, min_bits: int = 1) -> list[int]:
    """Widths a VM's mask takes during its sweep: ``w // 2, w // 4, ...`` down to ``max(1, min_bits)``.

    Distinct and descending; halving spaces the points evenly in log(capacity), which is how
    a miss curve is fitted. Widths below ``min_bits`` are dropped (no extra level is added at
    the floor). ``levels(11) == [5, 2, 1]``; empty for a 1-way mask.
    """
    floor = max(1, int(min_bits))
    return sorted({ways_now >> k for k in range(1, int(ways_now).bit_length()) if ways_now >> k >= floor},
                  reverse=True)


def sweep_masks(mask: int, min_bits: int = 1) -> list[tuple[int, int]]:
    """(ways, mask) of each level: the low ``w`` bits of ``mask``'s contiguous run.

    ValueError if ``mask`` is not one run (Xen never holds such a mask).
    """
    start, ways = cbm.run_of(int(mask))
    return [(w, cbm.contiguous(start, w)) for w in levels(ways, min_bits)]


def timeline(masks: Sequence[int], *, hold_s: int, start_s: int = 0,
             min_bits: int = 1) -> list[tuple[int, int, int | None]]:
    """The sweep of VMs with these current (data) masks, one after the other, in time order.

    Returns (VM index, offset [s], mask, or None = restore its setting). VM i's levels are
    `sweep_masks` of its mask, each held ``hold_s`` seconds; its restore coincides with VM
    i+1's first level (listed first). A VM without a narrower level gets no entry.
    """
    out: list[tuple[int, int, int | None]] = []
    t = int(start_s)
    for i, m in enumerate(masks):
        steps = sweep_masks(m, min_bits)
        if not steps:
            continue
        for _w, level_mask in steps:
            out.append((i, t, level_mask))
            t += int(hold_s)
        out.append((i, t, None))
    return out


# --- the schedule ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Level:
    """One temporary mask of a sweep: set at ``offset_s`` from the start, held until the next step."""

    offset_s: int
    ways: int
    mask: int
    argv: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"offset_s": self.offset_s, "ways": self.ways, "mask": cbm.hexmask(self.mask),
                "argv": list(self.argv)}


@dataclass(frozen=True)
class Sweep:
    """One VM's sweep on one socket: its levels, then the restore of its original setting."""

    socket: int
    domid: int
    name: str | None
    why: str
    original: Mask                     # today's setting: a mask, or (code, data) under CDP
    levels: tuple[Level, ...]
    restore_offset_s: int
    restore_argv: tuple[tuple[str, ...], ...]   # one plain set, or -c and/or -d under CDP
    bandwidth: float = 0.0             # median total bandwidth [B/s] in the window (ordering)

    @property
    def domain(self) -> str | None:
        """The name, under `plan.Step`'s attribute name (the scripts' domain-id checks read it)."""
        return self.name

    @property
    def start_s(self) -> int:
        return self.levels[0].offset_s

    @property
    def duration_s(self) -> int:
        return self.restore_offset_s - self.start_s

    def to_dict(self) -> dict[str, Any]:
        code, data = cbm.normalise(self.original)
        original: dict[str, str] = ({"cbm": cbm.hexmask(data)} if code == data else
                                    {"code_cbm": cbm.hexmask(code), "data_cbm": cbm.hexmask(data)})
        return {"domid": self.domid, "name": self.name, "why": self.why, "original": original,
                "levels": [lv.to_dict() for lv in self.levels], "restore_offset_s": self.restore_offset_s,
                "restore_argv": [list(a) for a in self.restore_argv]}


@dataclass(frozen=True)
class Skipped:
    """A socket, or a VM on it, left out of the sweep, and why (``socket`` None: the whole host)."""

    socket: int | None
    reason: str
    domid: int | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"socket": self.socket}
        if self.domid is not None:
            d.update(domid=self.domid, name=self.name)
        d["reason"] = self.reason
        return d


@dataclass(frozen=True)
class SocketSweep:
    """The sweeps of one socket, one VM after the other."""

    socket: int
    cdp: bool
    cos_budget: int
    cos_used: int                      # distinct non-default settings today
    sweeps: tuple[Sweep, ...]

    @property
    def duration_s(self) -> int:
        return self.sweeps[-1].restore_offset_s if self.sweeps else 0

    def to_dict(self) -> dict[str, Any]:
        return {"socket": self.socket, "cdp": self.cdp, "cos_budget": self.cos_budget,
                "cos_used": self.cos_used, "duration_s": self.duration_s,
                "vms": [s.to_dict() for s in self.sweeps]}


@dataclass(frozen=True)
class HostCalibration:
    """One host's schedule: its sockets run concurrently, so it lasts as long as the longest."""

    host: str
    interval_s: int
    hold: int
    time_box_s: int
    sockets: tuple[SocketSweep, ...]
    skipped: tuple[Skipped, ...]
    xen_version: tuple[int, int] | None = None

    @property
    def duration_s(self) -> int:
        return max((s.duration_s for s in self.sockets), default=0)

    @property
    def hold_s(self) -> int:
        return self.hold * self.interval_s

    @property
    def sweeps(self) -> list[Sweep]:
        return [w for s in self.sockets for w in s.sweeps]

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "interval_s": self.interval_s, "duration_s": self.duration_s,
                "hold": self.hold, "hold_s": self.hold_s, "time_box_s": self.time_box_s,
                "sockets": [s.to_dict() for s in self.sockets],
                "skipped": [k.to_dict() for k in self.skipped]}


@dataclass(frozen=True)
class CalibrationPlan:
    """Every host's schedule (`to_dict`: ``{"hosts": [...]}``)."""

    hosts: tuple[HostCalibration, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"hosts": [h.to_dict() for h in self.hosts]}


# --- building it from the store's tables -------------------------------------------------------------

def collection_interval(tables: Mapping[str, pd.DataFrame], host: str) -> float | None:
    """Median gap [s] between the host's stored collections (samples' times, else facts'), or None."""
    for name in ("samples", "facts"):
        t = tables.get(name)
        if t is None or not len(t):
            continue
        times = pd.DatetimeIndex(t.loc[t["host"] == host, "time"].unique()).sort_values()
        if len(times) >= 2:
            gaps = np.diff(times.asi8) / 1e9
            return float(np.median(gaps[gaps > 0])) if (gaps > 0).any() else None
    return None


def plan_calibration(history: Mapping[str, pd.DataFrame], *, hosts: Sequence[str] | None = None,
                     vms: Sequence[str] = (), duration_s: int = DURATION_S, hold: int = HOLD,
                     interval_s: float | None = None, min_bits: int = 1) -> CalibrationPlan:
    """The calibration schedule of every host in `history` (the store's samples, facts, settings).

    ``vms``: sweep these domain names (wherever they are monitored and not idle) instead of
    choosing; a name found on none of the hosts is a `ConfigError`. ``interval_s``: the
    collection interval; default: per host, the median gap between its stored collections
    (`ConfigError` naming the host when it has fewer than two). See the module docstring.
    """
    if hold < 1:
        raise ConfigError(f"--hold must be at least 1 collection, got {hold}")
    if duration_s <= 0:
        raise ConfigError(f"the time box must be positive, got {duration_s} s")
    if interval_s is not None and interval_s <= 0:
        raise ConfigError(f"the collection interval must be positive, got {interval_s} s")
    samples = history.get("samples")
    facts = history.get("facts")
    settings = history.get("settings")
    if samples is None or facts is None or settings is None:
        raise ValueError("history needs the samples, facts and settings tables")
    known = sorted(set(facts["host"].astype(str)) | set(samples["host"].astype(str))
                   | set(settings["host"].astype(str)))
    chosen = list(hosts) if hosts else known
    missing = [h for h in chosen if h not in known]
    if missing:
        raise ConfigError(f"host(s) without history: {', '.join(missing)} "
                          f"(known: {', '.join(known) or 'none'})")
    samples = samples[samples["host"].isin(chosen)]
    facts = facts[facts["host"].isin(chosen)]
    settings = settings[settings["host"].isin(chosen)]
    fits = curves.fit_all(samples, facts, settings) if len(samples) else {}
    sfacts = socket_facts(facts)
    out: list[HostCalibration] = []
    found: set[str] = set()
    for host in chosen:
        interval = interval_s if interval_s is not None else collection_interval(history, host)
        if interval is None:
            raise ConfigError(f"{host}: fewer than two stored collections, so the collection interval is "
                              "unknown; give --interval (the collector's, e.g. 60s)")
        out.append(_host(host, samples, facts, settings, fits, sfacts, vms=vms, found=found,
                         duration_s=int(duration_s), hold=int(hold),
                         interval_s=max(1, round(interval)), min_bits=min_bits))
    unknown = [v for v in dict.fromkeys(vms) if v not in found]
    if unknown:
        raise ConfigError(f"--vm: no domain named {', '.join(map(repr, unknown))} in the latest collection "
                          f"of {', '.join(chosen)}")
    return CalibrationPlan(tuple(out))


@dataclass
class _Candidate:
    domid: int
    name: str | None
    why: str
    bandwidth: float


def _host(host: str, samples: pd.DataFrame, facts: pd.DataFrame, settings: pd.DataFrame,
          fits: Mapping[tuple[str, int, int], curves.CurveFit], sfacts: Mapping[tuple[str, int], SocketFacts],
          *, vms: Sequence[str], found: set[str], duration_s: int, hold: int, interval_s: int,
          min_bits: int) -> HostCalibration:
    skipped: list[Skipped] = []
    hold_s = hold * interval_s
    version = xen_version_of(facts, host)
    h_samples = samples[samples["host"] == host]
    h_settings = settings[settings["host"] == host]
    latest = h_settings[h_settings["time"] == h_settings["time"].max()] if len(h_settings) else h_settings
    sockets = sorted({s for (h, s) in sfacts if h == host}
                     | {int(s) for s in h_samples["socket"].dropna().unique()})
    # Named VMs found here, even on a host or socket skipped below (the skip says why).
    found.update(str(n) for n in latest["domain"].dropna().unique() if str(n) in vms)

    def result(socket_sweeps: list[SocketSweep]) -> HostCalibration:
        return HostCalibration(host, interval_s, hold, duration_s, tuple(socket_sweeps), tuple(skipped),
                               version)

    if version is None:
        skipped.append(Skipped(None, "Xen version unknown (no xl info stored): cannot choose the xl syntax"))
        return result([])
    if version < (4, 6):
        skipped.append(Skipped(None, f"Xen {version[0]}.{version[1]} has no CAT (psr-cat-cbm-set needs 4.6)"))
        return result([])
    built: list[SocketSweep] = []
    for socket in sockets:
        sf = sfacts.get((host, socket))
        if sf is None or sf.cbm_len is None:
            skipped.append(Skipped(socket, "no L3 CAT facts stored (psr-hwinfo shows no L3 CAT on it)"))
            continue
        current, names = socket_settings(latest, host, socket)
        on_socket = h_samples[h_samples["socket"] == socket]
        if not (on_socket["metric"] == "mem_bw_total").any():
            skipped.append(Skipped(socket, "no MBM bandwidth samples (no MBM on this CPU, or not collected): "
                                           "a sweep could not be measured"))
            continue
        if sf.cos_max is None:
            skipped.append(Skipped(socket, "COS count unknown (no 'Maximum COS' stored from psr-hwinfo)"))
            continue
        s = _socket(host, socket, sf, version, current, names, on_socket, fits, vms=vms, skipped=skipped,
                    duration_s=duration_s, hold_s=hold_s, min_bits=min_bits)
        if s is not None:
            built.append(s)
    if not built and any("beyond the time box" in k.reason for k in skipped):
        skipped.append(Skipped(None, f"no VM's sweep fits the time box of {_minutes(duration_s)} min "
                                     f"(levels held {hold} x {interval_s} s; try a smaller --hold or a "
                                     "longer --duration)"))
    return result(built)


def _socket(host: str, socket: int, sf: SocketFacts, version: tuple[int, int], current: dict[int, Mask],
            names: Mapping[int, str], on_socket: pd.DataFrame,
            fits: Mapping[tuple[str, int, int], curves.CurveFit], *, vms: Sequence[str],
            skipped: list[Skipped], duration_s: int, hold_s: int, min_bits: int) -> SocketSweep | None:
    assert sf.cbm_len is not None and sf.cos_max is not None
    cbm_len, budget = sf.cbm_len, sf.cos_max
    used = cbm.cos_needed(current.values(), cbm_len)

    def skip(d: int | None, why: str) -> None:
        skipped.append(Skipped(socket, why, d, names.get(d) if d is not None else None))

    if used > budget:
        skip(None, f"today's masks use {used} COS but cos_max is {budget}: the stored facts are inconsistent")
        return None
    last = on_socket[on_socket["time"] == on_socket["time"].max()]
    monitored_now = {int(d) for d in last["domid"]}
    candidates: list[_Candidate] = []
    if vms:
        by_name: dict[str, list[int]] = {}
        for d in sorted(current):
            by_name.setdefault(str(names.get(d)), []).append(d)
        order = [d for v in dict.fromkeys(vms) for d in by_name.get(v, [])]
    else:
        order = sorted(current)
    for d in order:
        fit = fits.get((host, socket, d))
        if not vms and d == DOM0:
            skip(d, "Domain-0 is swept only when named with --vm")
            continue
        if fit is None or d not in monitored_now:
            skip(d, "not monitored in the latest collection (no CMT/MBM samples): run rdtadvisor attach")
            continue
        if fit.median_bandwidth < curves.IDLE_BW:
            skip(d, f"idle ({fit.median_bandwidth / 1e6:.2f} MB/s): its misses do not depend on its mask")
            continue
        if not vms and fit.quality == "good":
            skip(d, "its curve is already good")
            continue
        why = ("named with --vm; " if vms else "") + f"curve {fit.quality}: {fit.reason}"
        candidates.append(_Candidate(d, names.get(d), why, fit.median_bandwidth))
    if not vms:
        candidates.sort(key=lambda c: (-c.bandwidth, c.domid))     # the curves that matter most first

    chosen: list[tuple[_Candidate, list[tuple[int, int]], tuple[tuple[str, ...], ...]]] = []
    refusals: list[Skipped] = []       # for want of a COS: merged into one socket reason if all are
    used_s = 0
    for c in candidates:
        original = current[c.domid]
        data = cbm.normalise(original)[1]
        try:
            steps = sweep_masks(data, min_bits)
        except ValueError:
            skip(c.domid, f"its mask {data:#x} is not one contiguous run")
            continue
        if not steps:
            skip(c.domid, f"its mask {data:#x} has {cbm.ways_of(data)} way(s): nothing narrower to measure"
                          + (f" (minimum {min_bits})" if min_bits > 1 else ""))
            continue
        # Every state of the sweep must fit the COS budget (else Xen: "no free COS available").
        if any(cbm.cos_needed({**current, c.domid: m}.values(), cbm_len) > budget for _w, m in steps):
            why = (f"no free COS: a level is a mask no other domain has, and today's {used} distinct "
                   f"settings use all {budget} COS")
            refusals.append(Skipped(socket, why, c.domid, c.name))
            continue
        try:
            # The restore goes through the plan machinery: the host's xl syntax, and -c/-d for
            # the CDP halves that differ (a plain set would leave code == data).
            last_level = steps[-1][1]
            back = build_steps(host, socket, version, {**current, c.domid: (last_level, last_level)},
                               {c.domid: original}, sf.cdp, cbm_len=cbm_len, cos_budget=budget)
        except PlanError as e:
            refusals.append(Skipped(socket, f"its restore does not fit the COS budget: {e}", c.domid, c.name))
            continue
        need = len(steps) * hold_s
        if used_s + need > duration_s:
            skip(c.domid, f"beyond the time box (needs {_minutes(need)} min)")
            continue
        used_s += need
        chosen.append((c, steps, tuple(s.argv for s in back)))
    if refusals and not chosen and len(refusals) == len(candidates):
        # Every candidate failed for want of a COS: one reason for the socket says it better.
        skip(None, f"no free COS: today's {used} distinct settings use all {budget} COS, and every domain "
                   "to sweep is at the default mask or shares its COS; free one (reset a domain to the "
                   "default mask) to calibrate here")
        return None
    skipped.extend(refusals)
    if not chosen:
        return None
    sweeps: list[Sweep] = []
    plan = timeline([cbm.normalise(current[c.domid])[1] for c, _s, _r in chosen], hold_s=hold_s,
                    min_bits=min_bits)
    for i, (c, steps, restore) in enumerate(chosen):
        mine = [(t, m) for j, t, m in plan if j == i]
        lv = tuple(Level(t, w, m, cat_set_argv(version, str(c.domid), m, socket=socket))
                   for (t, m), (w, _m) in zip([x for x in mine if x[1] is not None], steps, strict=True))
        end = next(t for t, m in mine if m is None)
        sweeps.append(Sweep(socket, c.domid, c.name, c.why, current[c.domid], lv, end, restore, c.bandwidth))
    return SocketSweep(socket, sf.cdp, budget, used, tuple(sweeps))


def _minutes(seconds: float) -> int:
    return math.ceil(seconds / 60)
