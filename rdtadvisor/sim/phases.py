"""Load and working-set phases: how a VM's activity changes over a simulated run.

A VM's busy fraction at time t (share of its vCPUs' cycles it uses, in [0, 1]) is built from
its phases, all vectorised over the whole run:

* ``constant``: a level (``level``), in force between ``start`` and ``end`` (default: the whole
  run). Levels of several active constant/diurnal phases **multiply**.
* ``diurnal``: ``low + (high - low) * (1 + cos(2 pi (hour - peak) / 24)) / 2``: a smooth day with
  its maximum ``high`` at ``peak`` (UTC hour, fractional) and minimum ``low`` twelve hours away.
* ``burst``: load is raised to at least ``high`` for ``length`` at a time, either every
  ``every`` from ``start`` (periodic) or at random times, ``per_day`` bursts a day on average
  (Poisson, drawn from the VM's own generator).
* ``growth``: no effect on load; the working set grows linearly from 1x at ``start`` to
  ``factor`` x at ``end`` (default: the whole run) and stays there (`ws_series`).

Then, if ``noise`` > 0, multiplicative lognormal jitter of that sigma per step, and a clip to
[0, 1]. Times ``start``/``end`` are offsets from the start of the run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

KINDS = ("constant", "diurnal", "burst", "growth")


@dataclass(frozen=True)
class Phase:
    kind: str                          # "diurnal" | "burst" | "growth" | "constant"
    low: float = 0.2                   # diurnal: trough load
    high: float = 1.0                  # diurnal: peak load; burst: load during a burst
    peak: float = 14.0                 # diurnal: UTC hour of the peak (14.5 = 14:30)
    level: float = 1.0                 # constant: load level
    start: timedelta | None = None     # offset from the run's start (None: from the start)
    end: timedelta | None = None       # offset from the run's start (None: to the end)
    every: timedelta | None = None     # burst: period (None: random bursts at `per_day`)
    length: timedelta = timedelta(minutes=30)  # burst: duration of one burst
    per_day: float = 4.0               # burst: mean bursts per day when `every` is None
    factor: float = 1.0                # growth: working-set multiplier reached at `end`

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown phase kind {self.kind!r} (one of {', '.join(KINDS)})")
        for name in ("low", "high", "level"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not {v}")
        if self.kind == "diurnal" and self.low > self.high:
            raise ValueError(f"low ({self.low}) above high ({self.high})")
        if not 0.0 <= self.peak < 24.0:
            raise ValueError(f"peak must be an hour in [0, 24), not {self.peak}")
        if self.factor <= 0:
            raise ValueError(f"factor must be positive, not {self.factor}")
        if self.per_day < 0:
            raise ValueError(f"per_day must be >= 0, not {self.per_day}")
        if self.length <= timedelta(0) or (self.every is not None and self.every <= timedelta(0)):
            raise ValueError("length and every must be positive")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError("end before start")


def _offsets_s(times: pd.DatetimeIndex, origin: pd.Timestamp | None) -> np.ndarray:
    origin = times[0] if origin is None else pd.Timestamp(origin)
    return np.asarray((times - origin).total_seconds(), dtype=float)


def _window(phase: Phase, offs: np.ndarray) -> np.ndarray:
    lo = -math.inf if phase.start is None else phase.start.total_seconds()
    hi = math.inf if phase.end is None else phase.end.total_seconds()
    return (offs >= lo) & (offs < hi)


def _hours(times: pd.DatetimeIndex) -> np.ndarray:
    t = times.tz_convert("UTC") if times.tz is not None else times
    return np.asarray(t.hour + t.minute / 60.0 + t.second / 3600.0, dtype=float)


def burst_mask(phase: Phase, times: pd.DatetimeIndex, rng: np.random.Generator,
               origin: pd.Timestamp | None = None) -> np.ndarray:
    """(T,) booleans: the steps inside one of `phase`'s bursts."""
    offs = _offsets_s(times, origin)
    inside = _window(phase, offs)
    length = phase.length.total_seconds()
    first = 0.0 if phase.start is None else phase.start.total_seconds()
    if phase.every is not None:
        period = phase.every.total_seconds()
        return inside & (offs >= first) & (np.mod(offs - first, period) < length)
    if len(offs) == 0:
        return inside
    span = max(offs[-1] - first, 0.0) + length
    count = rng.poisson(phase.per_day * span / 86400.0)
    if count == 0:
        return np.zeros(len(offs), dtype=bool)
    starts = np.sort(first - length + rng.uniform(0.0, span, size=count))
    # A step is in a burst if the latest burst start before it is less than `length` ago.
    idx = np.searchsorted(starts, offs, side="right") - 1
    last = np.where(idx >= 0, starts[np.maximum(idx, 0)], -math.inf)
    return inside & (offs - last < length)


def load_series(phases: Sequence[Phase], times: pd.DatetimeIndex, rng: np.random.Generator, *,
                noise: float = 0.0, origin: pd.Timestamp | None = None) -> np.ndarray:
    """(T,) busy fraction in [0, 1] for `phases` at `times` (origin: the run's start, default times[0])."""
    offs = _offsets_s(times, origin)
    load = np.ones(len(times))
    bursts = []
    for ph in phases:
        inside = _window(ph, offs)
        if ph.kind == "constant":
            load = np.where(inside, load * ph.level, load)
        elif ph.kind == "diurnal":
            wave = 0.5 * (1.0 + np.cos(2 * np.pi * (_hours(times) - ph.peak) / 24))
            day = ph.low + (ph.high - ph.low) * wave
            load = np.where(inside, load * day, load)
        elif ph.kind == "burst":
            bursts.append(ph)
    for ph in bursts:
        load = np.where(burst_mask(ph, times, rng, origin), np.maximum(load, ph.high), load)
    if noise > 0:
        load = load * rng.lognormal(-0.5 * noise**2, noise, size=len(times))
    return np.clip(load, 0.0, 1.0)


def ws_series(phases: Sequence[Phase], times: pd.DatetimeIndex, *,
              origin: pd.Timestamp | None = None) -> np.ndarray:
    """(T,) working-set multiplier: growth phases ramp linearly from 1 to `factor`; several multiply."""
    offs = _offsets_s(times, origin)
    out = np.ones(len(times))
    for ph in phases:
        if ph.kind != "growth":
            continue
        a = 0.0 if ph.start is None else ph.start.total_seconds()
        b = (offs[-1] if len(offs) else a) if ph.end is None else ph.end.total_seconds()
        frac = np.clip((offs - a) / (b - a), 0.0, 1.0) if b > a else (offs >= a).astype(float)
        out = out * (1.0 + (ph.factor - 1.0) * frac)
    return out
