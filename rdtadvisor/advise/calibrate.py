"""Calibration sweeps: time-boxed temporary masks that measure the curves of VMs lacking history.

A VM whose L3 mask never narrowed shows the advisor only a narrow band of occupancies (its
load moves it a little along its miss curve), so `rdtadvisor.model.curvefit` falls back to a class
prior or rates the fit ``fair``/``low``. A **sweep** gives one VM ``W // 2, W // 4, ..., 1``
ways at a time (`levels`; a private sweep starts wider, at ``W - W // 4``: `private_levels`),
each level held for ``hold`` collections, then restores the settings: the collector, still
running, records the points the fit lacks. Two designs:

* **private** (the default, for a socket where every domain is at the default mask today):
  at a level of ``k`` ways the swept VM gets the TOP ``k`` ways alone and every other domain
  on the socket is **fenced** into the low ``W - k`` ways (one shared COS), `private_timeline`.
  The VM then holds ``min(k ways, its working set)`` whatever its neighbours do, so the points
  spread over the capacities a plan may give it and are "alone" points (weighted highest by
  the curve fit). Narrowing only the VM while the others keep every way measures much less:
  a narrowed VM dominates its few ways and its occupancy barely moves (a VM measured at
  1.9 MiB with 1 way held 3.8 MiB with 11), so the fit sees too narrow a range.
  The cost: during a level the other domains run with ``W - k`` ways. Levels whose fence
  would be narrower than ``min_bits`` are dropped (`private_levels`).
* **narrow** (the fallback): the VM's mask shrinks to the low ``w`` bits of its own contiguous
  run, the other domains untouched (`sweep_masks`, `timeline`). Used on a socket that is
  already partitioned (for disjoint runs this is private already, and fencing would undo
  the operator's partition), where ``xl`` could not read some domain's mask (it cannot be
  fenced), or where the COS budget cannot hold a private level (2 COS plus what the
  transitions need).

This module is pure (no I/O). `private_timeline` is the sweep's order in time and is shared
with the simulator's ``"calibration"`` history mode (`rdtadvisor.sim.history`), so what the
harness scores is exactly what ``rdtadvisor calibrate`` produces on an all-default socket.
`plan_calibration` chooses, per host and socket, the design and which VMs to sweep, and
builds the exact ``xl`` argv (`CalibrationPlan`):

* **Which VMs**: the ones named (``--vm``), else every monitored domain on the socket whose
  fitted curve is not ``good`` (``fallback``, ``low`` or ``fair``), by bandwidth, highest
  first (their curves matter most). Idle domains (bandwidth < `curves.IDLE_BW`) are left
  out: they miss nothing whatever their mask. Domain-0 is swept only when named (private
  design: it is fenced like every other domain). Without MBM (Haswell-EP: occupancy
  only) every domain holding cache is swept, the most occupancy first, and only the
  private design: the curves come from occupancy shares (`rdtadvisor.model.shares`), which
  only pools of different sizes show.
* **When**: the sockets of a host run concurrently, one VM per socket at a time. A level
  lasts ``hold`` x the collection interval, so the collector's samples land inside it.
  Narrow: a VM's restore and the next VM's first level share an offset (the restore first:
  it frees the COS the next level takes). Private: one VM's last level goes straight to the
  next VM's first (the previous VM joins the fence), and one final restore puts every
  domain back. VMs whose sweep would end after the time box are left out (named, with the
  time they need).
* **Commands**: every transition (previous state -> a level's state, last level -> the
  original settings) is `plan.build_steps`', so its order keeps **every intermediate
  state** within ``cos_max`` (parking a domain on the default mask if needed), its syntax is
  the host's Xen's (`xl.commands.cat_set_argv`), and under CDP a restore sets ``-c``/``-d``
  for halves that differ (a level is one plain set: Xen sets code and data together). A
  `Level` therefore carries a tuple of argv. Not counted: L2 CAT and MBA settings, which
  share COS ids with L3 on Xen 4.10+.
* **Rollback**: `SocketSweep.touched` lists every domain the sweep changes (fenced ones too)
  with the argv that restores its original setting from any point of the sweep, for the
  scripts' traps and the standalone rollback (`rdtadvisor.render.calibration_script`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from rdtadvisor.advise.plan import build_steps
from rdtadvisor.cache import cbm
from rdtadvisor.cache.cbm import Mask
from rdtadvisor.core.errors import ConfigError, PlanError
from rdtadvisor.model import curvefit as curves
from rdtadvisor.model.capacity import SocketFacts, socket_facts
from rdtadvisor.model.curves import fit_all
from rdtadvisor.model.masks import socket_settings, xen_version_of
from rdtadvisor.xl.commands import cat_set_argv

HOLD = 10                          # collections per level (see rdtadvisor.sim.history for why 10)
DURATION_S = 2 * 3600              # default time box
DOM0 = 0
PRIVATE_COS = 2                    # a private level: the swept VM's COS and the fence's

Design = Literal["private", "narrow"]
Argv = tuple[str, ...]


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


def private_levels(ways: int, min_bits: int = 1) -> list[int]:
    """Widths ``k`` of a private sweep on a ``ways``-way socket: ``ways - ways // 4`` (8 ways or
    more), then `levels`; those whose fence keeps ``min_bits``.

    The wide first level measures what a plan giving the VM most of the cache would do: a
    working-set knee or a plateau above half the L3 is otherwise never seen, and the fit
    extends the slope it saw below (it matters most where a knee sits high, like the
    database of the suite's bdw-bw-saturated-4cos at 14 of 20 ways; ``docs/results.md``).
    Its price: for one level per VM every other domain runs in a quarter of the ways.
    The fence (every other domain) gets ``ways - k`` ways, which Xen, like the VM's ``k``,
    must accept under the ``min_bits`` policy: ``private_levels(11) == [9, 5, 2, 1]``,
    ``private_levels(11, min_bits=3) == [8, 5]``.
    """
    floor = max(1, int(min_bits))
    base = levels(ways, min_bits)
    wide = min(ways - ways // 4, ways - floor)
    head = [wide] if ways >= 8 and (not base or wide > base[0]) else []
    return [k for k in [*head, *base] if ways - k >= floor]


def private_layout(n: int, ways: int, index: int, k: int) -> list[int | None]:
    """A private level: domain ``index`` has the top ``k`` ways, the ``n - 1`` others the low ``ways - k``."""
    if not 0 <= index < n or not 1 <= k < ways:
        raise ValueError(f"private_layout({n}, {ways}, {index}, {k}): need 0 <= index < n and 1 <= k < ways")
    layout: list[int | None] = [cbm.contiguous(0, ways - k)] * n
    layout[index] = cbm.contiguous(ways - k, k)
    return layout


def private_timeline(n: int, ways: int, *, hold_s: int, start_s: int = 0, min_bits: int = 1,
                     swept: Sequence[int] | None = None) -> list[tuple[int, list[int | None]]]:
    """The private sweep of a socket of ``n`` domains at the default mask, as whole-socket layouts in time.

    Returns (offset [s], one mask per domain index, or None = its setting before the sweep).
    The domains ``swept`` (indices, in that order; default: all ``n`` in index order) each
    take every `private_levels` width ``k`` in turn for ``hold_s`` seconds, as
    `private_layout` (top ``k`` ways alone, the others fenced in the low ``ways - k``); one
    VM's last level is followed directly by the next VM's first. The last entry, ``hold_s``
    after the last level, puts every domain back (all None). Empty when nothing is swept or
    no level fits.
    """
    order = range(n) if swept is None else list(swept)
    ks = private_levels(ways, min_bits)
    out: list[tuple[int, list[int | None]]] = []
    t = int(start_s)
    if not ks:
        return out
    for i in order:
        for k in ks:
            out.append((t, private_layout(n, ways, i, k)))
            t += int(hold_s)
    if out:
        out.append((t, [None] * n))
    return out


def left_level(masks: Mapping[int, Mask], ways: int) -> tuple[int, int] | None:
    """``(domid, k)`` when ``masks`` (domid -> mask or (code, data)) are exactly a private
    sweep level, `private_layout`: one domain alone in the top ``k`` ways (``k`` one of
    `private_levels`, under any ``min_bits``), every other domain (at least one) in the low
    ``ways - k``; else None.

    Nothing else rdtadvisor emits looks like this (its plans put a confined VM at the bottom
    of the CBM), so on a host it means a sweep whose script was killed before restoring:
    its masks are not the operator's, and a new sweep must not take them as the originals.
    """
    pairs = {d: cbm.normalise(m) for d, m in masks.items()}
    if len(pairs) < 2 or any(c != d for c, d in pairs.values()):
        return None
    # any min_bits policy's levels (it moves the wide first one)
    widths = sorted({k for bits in range(1, 5) for k in private_levels(ways, bits)}, reverse=True)
    for k in widths:
        top, low = cbm.contiguous(ways - k, k), cbm.contiguous(0, ways - k)
        alone = [d for d, (m, _) in pairs.items() if m == top]
        if len(alone) == 1 and all(m == low for d, (m, _) in pairs.items() if d != alone[0]):
            return alone[0], k
    return None


def left_message(domid: int, k: int, names: Mapping[int, str], others: int, ways: int) -> str:
    """Why a socket's masks look like a sweep left behind (`left_level`), and what to do."""
    who = names.get(domid) or f"domid {domid}"
    return (f"its masks look like a calibration sweep left in place ({who} alone in the top {k} ways, "
            f"{others} other domain(s) fenced into the low {ways - k}): if a `rdtadvisor calibrate` "
            "script was killed, run its .rollback.sh first")


def sweep_masks(mask: int, min_bits: int = 1) -> list[tuple[int, int]]:
    """(ways, mask) of each narrowing level: the low ``w`` bits of ``mask``'s contiguous run.

    ValueError if ``mask`` is not one run (Xen never holds such a mask).
    """
    start, ways = cbm.run_of(int(mask))
    return [(w, cbm.contiguous(start, w)) for w in levels(ways, min_bits)]


def timeline(masks: Sequence[int], *, hold_s: int, start_s: int = 0,
             min_bits: int = 1) -> list[tuple[int, int, int | None]]:
    """The narrowing sweep of VMs with these current (data) masks, one after the other, in time order.

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

def domid_of(argv: Sequence[str]) -> int:
    """The domain an ``xl psr-cat-set ... DOMID MASK`` argv changes (`cat_set_argv` puts it second last)."""
    return int(argv[-2])


@dataclass(frozen=True)
class Level:
    """One level of a sweep: its commands run at ``offset_s`` from the start, held until the next step.

    ``argv``: every xl command of the transition into this level, in order (`plan.build_steps`):
    narrow, the VM's own set; private, the fence commands for the other domains and the VM's
    set (in the order that keeps each state within the COS budget). ``fence``: the mask the
    other domains hold during a private level (None: narrow, the others are untouched).
    """

    offset_s: int
    ways: int
    mask: int
    argv: tuple[Argv, ...]
    fence: int | None = None

    @property
    def domids(self) -> tuple[int, ...]:
        """The domains these commands change, in order, once each."""
        return tuple(dict.fromkeys(domid_of(a) for a in self.argv))

    def to_dict(self) -> dict[str, Any]:
        return {"offset_s": self.offset_s, "ways": self.ways, "mask": cbm.hexmask(self.mask),
                "fence": cbm.hexmask(self.fence) if self.fence is not None else None,
                "argv": [list(a) for a in self.argv]}


def _original_dict(original: Mask) -> dict[str, str]:
    code, data = cbm.normalise(original)
    return ({"cbm": cbm.hexmask(data)} if code == data else
            {"code_cbm": cbm.hexmask(code), "data_cbm": cbm.hexmask(data)})


@dataclass(frozen=True)
class Sweep:
    """One VM's sweep on one socket: its levels, then the restore of the settings it changed.

    ``restore_argv``: narrow, the VM's own restore (one plain set, or ``-c`` and/or ``-d``
    under CDP); private, empty except on the socket's last sweep, where it is the final
    restore of every domain (before that, the next VM's first level moves this VM into the
    fence, at ``restore_offset_s``).
    """

    socket: int
    domid: int
    name: str | None
    why: str
    original: Mask                     # today's setting: a mask, or (code, data) under CDP
    levels: tuple[Level, ...]
    restore_offset_s: int
    restore_argv: tuple[Argv, ...]
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
        return {"domid": self.domid, "name": self.name, "why": self.why,
                "original": _original_dict(self.original), "levels": [lv.to_dict() for lv in self.levels],
                "restore_offset_s": self.restore_offset_s,
                "restore_argv": [list(a) for a in self.restore_argv]}


@dataclass(frozen=True)
class Touched:
    """A domain a socket's sweep changes, and the argv that put it back from any point of the sweep.

    Every touched domain's original setting is the default on a private socket, so each
    restore is a reset, which frees a COS and fits the budget in any order; on a narrow
    socket one VM is changed at a time, and its restore is the one `build_steps` checked.
    """

    socket: int
    domid: int
    name: str | None
    original: Mask
    restore_argv: tuple[Argv, ...]

    @property
    def domain(self) -> str | None:
        """The name, under `plan.Step`'s attribute name (the scripts' domain-id checks read it)."""
        return self.name

    def to_dict(self) -> dict[str, Any]:
        return {"domid": self.domid, "name": self.name, "original": _original_dict(self.original),
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
    """The sweeps of one socket, one VM after the other, with the design and why it was chosen."""

    socket: int
    cdp: bool
    cos_budget: int
    cos_used: int                      # distinct non-default settings today
    sweeps: tuple[Sweep, ...]
    design: Design = "narrow"
    design_reason: str = ""
    touched: tuple[Touched, ...] = ()  # every domain changed (fenced ones too), in restore order
    cbm_len: int = 0

    @property
    def duration_s(self) -> int:
        return self.sweeps[-1].restore_offset_s if self.sweeps else 0

    def to_dict(self) -> dict[str, Any]:
        return {"socket": self.socket, "design": self.design, "design_reason": self.design_reason,
                "cdp": self.cdp, "cbm_len": self.cbm_len, "cos_budget": self.cos_budget,
                "cos_used": self.cos_used, "duration_s": self.duration_s,
                "vms": [s.to_dict() for s in self.sweeps], "touched": [t.to_dict() for t in self.touched]}


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

    @property
    def touched(self) -> list[Touched]:
        """Every (socket, domain) the schedule changes: what a rollback restores."""
        return [t for s in self.sockets for t in s.touched]

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

    Per socket, a private sweep when every domain is at the default mask today, its masks
    are all readable and the COS budget holds the transitions; else a narrowing sweep, the
    reason in `SocketSweep.design_reason`. ``vms``: sweep these domain names (wherever they
    are monitored and not idle) instead of choosing; a name found on none of the hosts is a
    `ConfigError`. ``interval_s``: the collection interval; default: per host, the median
    gap between its stored collections (`ConfigError` naming the host when it has fewer
    than two). See the module docstring.
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
    fits = fit_all(samples, facts, settings) if len(samples) else {}
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


@dataclass(frozen=True)
class _Ctx:
    """What every step of one socket's planning needs."""

    host: str
    socket: int
    sf: SocketFacts
    version: tuple[int, int]
    current: dict[int, Mask]
    names: Mapping[int, str]
    duration_s: int
    hold_s: int
    min_bits: int

    @property
    def cbm_len(self) -> int:
        assert self.sf.cbm_len is not None
        return self.sf.cbm_len

    @property
    def budget(self) -> int:
        assert self.sf.cos_max is not None
        return self.sf.cos_max

    def skipped(self, d: int | None, why: str) -> Skipped:
        return Skipped(self.socket, why, d, self.names.get(d) if d is not None else None)


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
        occupancy = None
        if not (on_socket["metric"] == "mem_bw_total").any():
            occ = on_socket[on_socket["metric"] == "l3_occupancy"]
            if occ.empty:
                skipped.append(Skipped(socket, "no CMT or MBM samples (not attached, or not collected): "
                                               "a sweep could not be measured"))
                continue
            # no MBM (Haswell-EP): the sweep is read from occupancy shares (`rdtadvisor.model.shares`)
            occupancy = occ.groupby("domid")["value"].median().astype(float).to_dict()
        if sf.cos_max is None:
            skipped.append(Skipped(socket, "COS count unknown (no 'Maximum COS' stored from psr-hwinfo)"))
            continue
        ctx = _Ctx(host, socket, sf, version, current, names, duration_s, hold_s, min_bits)
        s = _socket(ctx, latest, on_socket, fits, vms=vms, skipped=skipped, occupancy=occupancy)
        if s is not None:
            built.append(s)
    if not built and any("beyond the time box" in k.reason for k in skipped):
        skipped.append(Skipped(None, f"no VM's sweep fits the time box of {_minutes(duration_s)} min "
                                     f"(levels held {hold} x {interval_s} s; try a smaller --hold or a "
                                     "longer --duration)"))
    return result(built)


def _unreadable(ctx: _Ctx, latest: pd.DataFrame, monitored_now: set[int]) -> list[int]:
    """Domains on the socket whose L3 mask is unknown: xl printed ``error`` (a null value), or none stored."""
    rows = latest[(latest["socket"] == ctx.socket)
                  & latest["setting"].isin(["l3_cbm", "l3_code_cbm", "l3_data_cbm"])]
    listed = {int(d) for d in rows["domid"]}
    return sorted((listed | monitored_now) - set(ctx.current))


def _socket(ctx: _Ctx, latest: pd.DataFrame, on_socket: pd.DataFrame,
            fits: Mapping[tuple[str, int, int], curves.CurveFit], *, vms: Sequence[str],
            skipped: list[Skipped], occupancy: Mapping[int, float] | None = None) -> SocketSweep | None:
    """One socket's sweep (None: nothing to sweep, reasons in `skipped`). `occupancy`: domid ->
    median occupancy [B] on a socket without MBM, whose sweep must be private (below)."""
    left = left_level(ctx.current, ctx.cbm_len)
    if left is not None:
        skipped.append(ctx.skipped(None, left_message(*left, ctx.names, len(ctx.current) - 1, ctx.cbm_len)))
        return None
    used = cbm.cos_needed(ctx.current.values(), ctx.cbm_len)
    if used > ctx.budget:
        skipped.append(ctx.skipped(None, f"today's masks use {used} COS but cos_max is {ctx.budget}: "
                                         "the stored facts are inconsistent"))
        return None
    last = on_socket[on_socket["time"] == on_socket["time"].max()]
    monitored_now = {int(d) for d in last["domid"]}
    candidates = _candidates(ctx, fits, monitored_now, vms=vms, skipped=skipped, occupancy=occupancy)
    if not candidates:
        return None
    reason = _why_not_private(ctx, _unreadable(ctx, latest, monitored_now))
    if reason is not None and occupancy is not None:
        # without MBM only pools of different sizes show a curve: narrowing one VM's mask
        # leaves it in the one pool with the others
        skipped.append(ctx.skipped(None, f"no MBM: only a private sweep shows curves in occupancy shares, "
                                         f"and {reason}"))
        return None
    if reason is None:
        private = _private(ctx, candidates, skipped)
        if not isinstance(private, str):
            return private
        reason = private
    return _narrow(ctx, candidates, used, skipped, reason)


def _candidates(ctx: _Ctx, fits: Mapping[tuple[str, int, int], curves.CurveFit], monitored_now: set[int],
                *, vms: Sequence[str], skipped: list[Skipped],
                occupancy: Mapping[int, float] | None = None) -> list[_Candidate]:
    """The VMs to sweep on the socket, in sweep order; the others go to ``skipped`` with the reason.

    Without MBM (`occupancy` given) the order is by occupancy (a domain's share of the
    insertions) and a domain with no curve yet is a candidate unless it holds next to nothing."""
    current, names = ctx.current, ctx.names
    if vms:
        by_name: dict[str, list[int]] = {}
        for d in sorted(current):
            by_name.setdefault(str(names.get(d)), []).append(d)
        order = [d for v in dict.fromkeys(vms) for d in by_name.get(v, [])]
    else:
        order = sorted(current)
    out: list[_Candidate] = []
    for d in order:
        fit = fits.get((ctx.host, ctx.socket, d))
        if not vms and d == DOM0:
            skipped.append(ctx.skipped(d, "Domain-0 is swept only when named with --vm"))
            continue
        if occupancy is not None and d in monitored_now:
            held = occupancy.get(d, 0.0)
            if held < 2 * curves.OCC_QUANTUM:
                skipped.append(ctx.skipped(d, f"idle (holds {held / 1024:.0f} KiB of L3): its misses do not "
                                              "depend on its mask"))
            elif not vms and fit is not None and fit.quality == "good":
                skipped.append(ctx.skipped(d, "its curve is already good"))
            else:
                why = "no MBM: a private sweep varies the pools its curve is read from (occupancy shares)"
                out.append(_Candidate(d, names.get(d), ("named with --vm; " if vms else "") + why, held))
            continue
        if fit is None or d not in monitored_now:
            skipped.append(ctx.skipped(d, "not monitored in the latest collection (no CMT/MBM samples): "
                                          "run rdtadvisor attach"))
            continue
        if fit.median_bandwidth < curves.IDLE_BW:
            skipped.append(ctx.skipped(d, f"idle ({fit.median_bandwidth / 1e6:.2f} MB/s): its misses do not "
                                          "depend on its mask"))
            continue
        if not vms and fit.quality == "good":
            skipped.append(ctx.skipped(d, "its curve is already good"))
            continue
        why = ("named with --vm; " if vms else "") + f"curve {fit.quality}: {fit.reason}"
        out.append(_Candidate(d, names.get(d), why, fit.median_bandwidth))
    if not vms:
        out.sort(key=lambda c: (-c.bandwidth, c.domid))     # the curves that matter most first
    return out


def _why_not_private(ctx: _Ctx, unreadable: list[int]) -> str | None:
    """Why the socket cannot take a private sweep (the narrowing one instead), or None if it can."""
    default = cbm.normalise(cbm.full(ctx.cbm_len))
    partitioned = sorted(d for d, m in ctx.current.items() if cbm.normalise(m) != default)
    if partitioned:
        # Fencing would undo the operator's partition for the sweep's length; and a VM in a
        # run of its own is already measured alone when narrowed inside it.
        return (f"partitioned today ({len(partitioned)} domain(s) at a non-default mask, e.g. domid "
                f"{partitioned[0]}): each VM is narrowed inside its own run, which is already private "
                "where the runs are disjoint")
    if unreadable:
        return (f"xl could not read the mask of domid(s) {', '.join(map(str, unreadable))}: a domain whose "
                "mask is unknown cannot be fenced, so each VM is narrowed instead")
    if ctx.budget < PRIVATE_COS:
        return (f"cos_max is {ctx.budget}: a private level needs {PRIVATE_COS} COS (the swept VM's and the "
                "fence's)")
    if not private_levels(ctx.cbm_len, ctx.min_bits):
        return (f"a {ctx.cbm_len}-way CBM leaves no private level whose fence keeps {max(1, ctx.min_bits)} "
                "way(s)")
    return None


def _private(ctx: _Ctx, candidates: list[_Candidate], skipped: list[Skipped]) -> SocketSweep | str | None:
    """The private sweep of an all-default socket; a str (why not) when a transition does not fit the COS."""
    W = ctx.cbm_len
    ks = private_levels(W, ctx.min_bits)
    need = len(ks) * ctx.hold_s
    doms = sorted(ctx.current)
    index = {d: j for j, d in enumerate(doms)}
    mine: list[Skipped] = []           # committed only if the private design holds
    chosen: list[_Candidate] = []
    for c in candidates:
        if (len(chosen) + 1) * need > ctx.duration_s:
            mine.append(ctx.skipped(c.domid, f"beyond the time box (needs {_minutes(need)} min)"))
            continue
        chosen.append(c)
    if not chosen:
        skipped.extend(mine)
        return None
    plan = private_timeline(len(doms), W, hold_s=ctx.hold_s, min_bits=ctx.min_bits,
                            swept=[index[c.domid] for c in chosen])
    state: dict[int, Mask] = {d: cbm.normalise(m) for d, m in ctx.current.items()}
    transitions: list[tuple[int, tuple[Argv, ...]]] = []
    for at, layout in plan:
        target: dict[int, Mask] = {d: (layout[j] if layout[j] is not None else ctx.current[d])
                                   for j, d in enumerate(doms)}
        try:
            steps = build_steps(ctx.host, ctx.socket, ctx.version, state, target, ctx.sf.cdp, cbm_len=W,
                                cos_budget=ctx.budget, names=ctx.names, min_bits=ctx.min_bits)
        except PlanError as e:
            return f"a private level does not fit the COS budget ({e}): each VM is narrowed instead"
        transitions.append((at, tuple(s.argv for s in steps)))
        state = {d: cbm.normalise(m) for d, m in target.items()}
    skipped.extend(mine)
    L = len(ks)
    final = transitions[-1][1]
    sweeps: list[Sweep] = []
    for i, c in enumerate(chosen):
        lv = tuple(Level(at, k, cbm.contiguous(W - k, k), argv, fence=cbm.contiguous(0, W - k))
                   for (at, argv), k in zip(transitions[i * L:(i + 1) * L], ks, strict=True))
        end = transitions[(i + 1) * L][0]
        sweeps.append(Sweep(ctx.socket, c.domid, c.name, c.why, ctx.current[c.domid], lv, end,
                            final if i == len(chosen) - 1 else (), c.bandwidth))
    touched = tuple(Touched(ctx.socket, d, ctx.names.get(d), ctx.current[d],
                            tuple(a for a in final if domid_of(a) == d)) for d in doms)
    why = ("every domain is at the default mask today: each VM is measured alone in the top k ways, "
           "the others fenced below")
    return SocketSweep(ctx.socket, ctx.sf.cdp, ctx.budget, 0, tuple(sweeps), "private", why, touched, W)


def _narrow(ctx: _Ctx, candidates: list[_Candidate], used: int, skipped: list[Skipped],
            reason: str) -> SocketSweep | None:
    """The narrowing sweep: each VM inside its own run, the other domains untouched."""
    current, cbm_len, budget, socket = ctx.current, ctx.cbm_len, ctx.budget, ctx.socket
    chosen: list[tuple[_Candidate, list[tuple[int, int]], tuple[Argv, ...]]] = []
    refusals: list[Skipped] = []       # for want of a COS: merged into one socket reason if all are
    used_s = 0
    for c in candidates:
        original = current[c.domid]
        data = cbm.normalise(original)[1]
        try:
            steps = sweep_masks(data, ctx.min_bits)
        except ValueError:
            skipped.append(ctx.skipped(c.domid, f"its mask {data:#x} is not one contiguous run"))
            continue
        if not steps:
            skipped.append(ctx.skipped(c.domid, f"its mask {data:#x} has {cbm.ways_of(data)} way(s): nothing "
                                                "narrower to measure"
                                       + (f" (minimum {ctx.min_bits})" if ctx.min_bits > 1 else "")))
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
            back = build_steps(ctx.host, socket, ctx.version, {**current, c.domid: (last_level, last_level)},
                               {c.domid: original}, ctx.sf.cdp, cbm_len=cbm_len, cos_budget=budget)
        except PlanError as e:
            refusals.append(Skipped(socket, f"its restore does not fit the COS budget: {e}", c.domid, c.name))
            continue
        need = len(steps) * ctx.hold_s
        if used_s + need > ctx.duration_s:
            skipped.append(ctx.skipped(c.domid, f"beyond the time box (needs {_minutes(need)} min)"))
            continue
        used_s += need
        chosen.append((c, steps, tuple(s.argv for s in back)))
    if refusals and not chosen and len(refusals) == len(candidates):
        # Every candidate failed for want of a COS: one reason for the socket says it better.
        skipped.append(ctx.skipped(None, f"no free COS: today's {used} distinct settings use all {budget} "
                                         "COS, and every domain to sweep is at the default mask or shares "
                                         "its COS; free one (reset a domain to the default mask) to "
                                         "calibrate here"))
        return None
    skipped.extend(refusals)
    if not chosen:
        return None
    sweeps: list[Sweep] = []
    plan = timeline([cbm.normalise(current[c.domid])[1] for c, _s, _r in chosen], hold_s=ctx.hold_s,
                    min_bits=ctx.min_bits)
    for i, (c, steps, restore) in enumerate(chosen):
        mine = [(t, m) for j, t, m in plan if j == i]
        lv = tuple(Level(t, w, m, (cat_set_argv(ctx.version, str(c.domid), m, socket=socket),))
                   for (t, m), (w, _m) in zip([x for x in mine if x[1] is not None], steps, strict=True))
        end = next(t for t, m in mine if m is None)
        sweeps.append(Sweep(socket, c.domid, c.name, c.why, current[c.domid], lv, end, restore, c.bandwidth))
    touched = tuple(Touched(socket, w.domid, w.name, w.original, w.restore_argv) for w in sweeps)
    return SocketSweep(socket, ctx.sf.cdp, budget, used, tuple(sweeps), "narrow", reason, touched, cbm_len)


def _minutes(seconds: float) -> int:
    return math.ceil(seconds / 60)
