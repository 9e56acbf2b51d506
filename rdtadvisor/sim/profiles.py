"""Named workload types: the parameter ranges a VM of each kind is drawn from.

``PROFILES[name](rng)`` returns the keyword arguments of `model.Vm` (everything but ``name``),
drawn from the ranges below with a `random.Random`; `extras` draws what the scenario needs
besides (memory, default phases, load noise). ``U(a, b)`` is uniform, ``logU`` log-uniform.
Rates are per vCPU at full load; why each range is what it is: ``docs/simulator.md``.

Ranges (``U`` uniform, ``logU`` log-uniform; working set in MiB/GiB; apki per kilo-instruction):

- ``web``: alpha U(0.4, 0.7), ws logU(4, 16) MiB, floor U(0.02, 0.05), apki logU(3, 10),
  cpi0 U(0.9, 1.3), 2 or 4 vCPUs, mlp U(1.5, 2.5), priority 1; diurnal, peak 13-16 h.
- ``cache-sensitive-db``: alpha U(0.5, 0.9), ws logU(12, 40) MiB, floor U(0.01, 0.03),
  apki logU(8, 25), cpi0 U(0.7, 1.0), 4 or 8 vCPUs, mlp U(1.2, 2), priority 2; diurnal, peak 10-12 h.
- ``stream``: alpha U(0, 0.05), ws logU(1, 8) GiB, apki logU(20, 50), cpi0 U(0.5, 0.8),
  2/4/8 vCPUs, mlp U(4, 8), priority 1; constant 0.8-1.
- ``batch``: alpha U(0.3, 0.6), ws logU(8, 64) MiB, apki logU(5, 15), cpi0 U(0.8, 1.2),
  2/4/8 vCPUs, priority 0.5; diurnal, busiest at 1-4 h.
- ``idle``: alpha 0.5, ws logU(0.5, 2) MiB, apki logU(0.5, 2), 1-2 vCPUs; constant 0.02-0.08.
- ``small``: alpha U(0.5, 0.8), ws logU(0.5, 2) MiB, apki logU(5, 15), 1-2 vCPUs,
  priority 1.5 (latency-sensitive victims); diurnal.
- ``noisy``: alpha U(0, 0.03), ws logU(2, 16) GiB, apki logU(40, 90), mlp U(6, 10), 4 or 8
  vCPUs, priority 0.5; constant 0.2-0.4 with 3-8 random bursts a day of 20-60 min at full load.
- ``dom0``: alpha 0.5, ws logU(2, 4) MiB, apki logU(1, 3), 2 or 4 vCPUs; constant 0.05-0.15.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import Any

from rdtadvisor.core.errors import ConfigError
from rdtadvisor.sim import model
from rdtadvisor.sim.phases import Phase

MIB = 1024**2
GIB = 1024**3


def _logu(rng: random.Random, a: float, b: float) -> float:
    return math.exp(rng.uniform(math.log(a), math.log(b)))


def _vm(rng: random.Random, *, alpha: tuple[float, float], ws: tuple[float, float],
        floor: tuple[float, float], apki: tuple[float, float], cpi0: tuple[float, float],
        vcpus: tuple[int, ...], mlp: tuple[float, float], writeback: tuple[float, float],
        priority: float) -> dict[str, Any]:
    """Draw in a fixed order so a profile's draws never depend on another's."""
    curve = model.Curve(alpha=rng.uniform(*alpha), ws_bytes=_logu(rng, *ws), floor=rng.uniform(*floor))
    return {"curve": curve, "apki": _logu(rng, *apki), "cpi0": rng.uniform(*cpi0),
            "vcpus": rng.choice(vcpus), "mlp": rng.uniform(*mlp), "writeback": rng.uniform(*writeback),
            "priority": priority, "remote": 0.0}


PROFILES: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    # Front ends: moderate reuse, working set of a few MiB to a slice of the L3, follow the day.
    "web": lambda r: _vm(r, alpha=(0.4, 0.7), ws=(4 * MIB, 16 * MIB), floor=(0.02, 0.05), apki=(3, 10),
                         cpi0=(0.9, 1.3), vcpus=(2, 4), mlp=(1.5, 2.5), writeback=(0.2, 0.3), priority=1.0),
    # The victim CAT exists for: steep curve up to a working set comparable to the whole L3.
    "cache-sensitive-db": lambda r: _vm(r, alpha=(0.5, 0.9), ws=(12 * MIB, 40 * MIB), floor=(0.01, 0.03),
                                        apki=(8, 25), cpi0=(0.7, 1.0), vcpus=(4, 8), mlp=(1.2, 2.0),
                                        writeback=(0.3, 0.5), priority=2.0),
    # Streaming: footprint of GiB, misses flat in capacity (alpha ~ 0), high MLP (prefetch).
    "stream": lambda r: _vm(r, alpha=(0.0, 0.05), ws=(1 * GIB, 8 * GIB), floor=(0.5, 0.5), apki=(20, 50),
                            cpi0=(0.5, 0.8), vcpus=(2, 4, 8), mlp=(4, 8), writeback=(0.3, 0.5), priority=1.0),
    # Throughput jobs: medium curves, larger working sets, low priority, busiest at night.
    "batch": lambda r: _vm(r, alpha=(0.3, 0.6), ws=(8 * MIB, 64 * MIB), floor=(0.02, 0.05), apki=(5, 15),
                           cpi0=(0.8, 1.2), vcpus=(2, 4, 8), mlp=(2, 3), writeback=(0.2, 0.4), priority=0.5),
    # Nearly nothing to do: a little cache, a few accesses.
    "idle": lambda r: _vm(r, alpha=(0.5, 0.5), ws=(0.5 * MIB, 2 * MIB), floor=(0.05, 0.05), apki=(0.5, 2),
                          cpi0=(1.0, 1.0), vcpus=(1, 2), mlp=(2, 2), writeback=(0.2, 0.2), priority=0.5),
    # Small footprint, latency-sensitive: fits in one or two ways, suffers when evicted.
    "small": lambda r: _vm(r, alpha=(0.5, 0.8), ws=(0.5 * MIB, 2 * MIB), floor=(0.01, 0.03), apki=(5, 15),
                           cpi0=(0.8, 1.1), vcpus=(1, 2), mlp=(1.5, 2.5), writeback=(0.2, 0.3), priority=1.5),
    # The noisy neighbour: a streaming polluter that is quiet most of the time and bursts.
    "noisy": lambda r: _vm(r, alpha=(0.0, 0.03), ws=(2 * GIB, 16 * GIB), floor=(0.5, 0.5), apki=(40, 90),
                           cpi0=(0.5, 0.7), vcpus=(4, 8), mlp=(6, 10), writeback=(0.4, 0.6), priority=0.5),
    # Domain-0: a light VM (backends, toolstack).
    "dom0": lambda r: _vm(r, alpha=(0.5, 0.5), ws=(2 * MIB, 4 * MIB), floor=(0.05, 0.05), apki=(1, 3),
                          cpi0=(1.0, 1.0), vcpus=(2, 4), mlp=(2, 2), writeback=(0.2, 0.2), priority=1.0),
}


@dataclass(frozen=True)
class Extras:
    """What a profile says about a VM besides `model.Vm`: its memory, load phases and load noise."""

    memory_bytes: int
    phases: tuple[Phase, ...]
    noise: float


def _minutes(m: float) -> timedelta:
    return timedelta(minutes=round(m))


_EXTRAS: dict[str, Callable[[random.Random], Extras]] = {
    "web": lambda r: Extras(r.choice((4, 8)) * GIB, (
        Phase("diurnal", low=r.uniform(0.1, 0.3), high=r.uniform(0.7, 1.0), peak=r.uniform(13, 16)),), 0.10),
    "cache-sensitive-db": lambda r: Extras(r.choice((32, 64)) * GIB, (
        Phase("diurnal", low=r.uniform(0.3, 0.5), high=r.uniform(0.8, 1.0), peak=r.uniform(10, 12)),), 0.05),
    "stream": lambda r: Extras(r.choice((16, 32)) * GIB,
                               (Phase("constant", level=r.uniform(0.8, 1.0)),), 0.03),
    "batch": lambda r: Extras(r.choice((8, 16)) * GIB, (
        Phase("diurnal", low=r.uniform(0.4, 0.6), high=1.0, peak=r.uniform(1, 4)),), 0.05),
    "idle": lambda r: Extras(r.choice((2, 4)) * GIB, (Phase("constant", level=r.uniform(0.02, 0.08)),), 0.30),
    "small": lambda r: Extras(r.choice((2, 4)) * GIB, (
        Phase("diurnal", low=r.uniform(0.2, 0.4), high=r.uniform(0.7, 0.9), peak=r.uniform(9, 18)),), 0.10),
    "noisy": lambda r: Extras(r.choice((32, 64)) * GIB, (
        Phase("constant", level=r.uniform(0.2, 0.4)),
        Phase("burst", high=1.0, per_day=r.uniform(3, 8), length=_minutes(r.uniform(20, 60)))), 0.10),
    "dom0": lambda r: Extras(4 * GIB, (Phase("constant", level=r.uniform(0.05, 0.15)),), 0.20),
}

_CURVE_KEYS = {f.name for f in fields(model.Curve)}
_VM_KEYS = {f.name for f in fields(model.Vm)} - {"name"}


def _check(profile: str) -> None:
    if profile not in PROFILES:
        raise ConfigError(f"unknown workload profile {profile!r} (known: {', '.join(sorted(PROFILES))})")


def params(profile: str, rng: random.Random, **overrides: Any) -> dict[str, Any]:
    """`model.Vm` keyword arguments drawn from `profile`, with `overrides` applied.

    Overrides may name any `model.Vm` field or any `model.Curve` field (``alpha``,
    ``ws_bytes``, ``floor``, ``c0_bytes``), which replace that part of the drawn curve.
    """
    _check(profile)
    out = PROFILES[profile](rng)
    unknown = set(overrides) - _CURVE_KEYS - _VM_KEYS
    if unknown:
        raise ConfigError(f"unknown VM parameter(s): {', '.join(sorted(unknown))}")
    curve_over = {k: v for k, v in overrides.items() if k in _CURVE_KEYS}
    out.update({k: v for k, v in overrides.items() if k in _VM_KEYS})
    if curve_over:
        out["curve"] = replace(out["curve"], **curve_over)
    return out


def make_vm(profile: str, name: str, rng: random.Random, **overrides: Any) -> model.Vm:
    """A `model.Vm` of kind `profile`, parameters drawn with `rng` (see the table above)."""
    return model.Vm(name=name, **params(profile, rng, **overrides))


def extras(profile: str, rng: random.Random) -> Extras:
    """Memory, default phases and load noise of a VM of kind `profile` (draw after `make_vm`)."""
    _check(profile)
    return _EXTRAS[profile](rng)
