"""Run a plan's ``xl`` CAT commands on simulated hosts: what ``simulate --apply`` does.

A plan is the JSON of ``rdtadvisor calibrate --format json`` (a sweep: each level's argv at
its ``offset_s``, then the restore) or of ``rdtadvisor advise cat --format json`` (each
plan's ``commands``, all at once). `commands_of` reads either into `TimedCommand`s;
`apply_commands` runs them on a `HostSpec` in time order, as Xen would, and returns the host
with the resulting `MaskChange`s; `true_effect` compares the simulator's truth with and
without them; `apply_plans` does both for a scenario and a list of plans. No I/O: the CLI
(`rdtadvisor.cli.simulate`) reads the files and writes the captures.

What Xen does, and so what this does (``xl psr-cat-set [-s SOCKET] [-l LEVEL] [-c|-d]
DOMAIN CBM``; ``psr-cat-cbm-set`` before Xen 4.10):

* A mask must be non-empty, contiguous and within the CBM length (`scenario.mask_error`).
* Without ``-s`` the mask is set on every socket; a VM of the simulator lives on one socket,
  so a set for another socket leaves it untouched.
* ``-c``/``-d`` set the code or data half and need CDP on; a plain set on a CDP host sets both.
* The all-ones mask is the default: Xen finds it in COS 0, so it frees the VM's COS.
* Every command must leave at most ``Maximum COS`` distinct settings per socket, counted after
  that one command (``no free COS available``): the plans order their commands so that every
  intermediate state fits, and this checks that they do.
* L2 CAT (``-l 2``) and other commands are not simulated: a plan that holds them is refused.
* A VM the plan changes keeps the scenario's own mask changes only before the plan's first
  command: from then on its masks are the plan's.

Errors are `ConfigError`s naming the plan file, the host and the command.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import numpy as np

from rdtadvisor.core.errors import ConfigError
from rdtadvisor.sim.scenario import HostSpec, MaskChange, cos_key, mask_error, parse_mask

L3State = tuple[int | None, int | None, int | None]      # (cbm, code_cbm, data_cbm), None: default


@dataclass(frozen=True)
class TimedCommand:
    """One argv of a plan, ``at`` after the moment the plan is applied."""

    host: str
    at: timedelta
    argv: tuple[str, ...]
    source: str                 # the plan file, for errors

    @property
    def shell(self) -> str:
        return " ".join(self.argv)


@dataclass(frozen=True)
class CatSet:
    """One parsed ``psr-cat-set``: `socket` None means every socket, `half` None both halves."""

    socket: int | None
    half: str | None            # "code" | "data" | None
    domain: str                 # a domid or a name, as xl takes it
    cbm: int


def commands_of(doc: Any, source: str) -> list[TimedCommand]:
    """The timed commands of a ``calibrate`` or ``advise cat`` JSON document (`source`: its file name)."""
    if isinstance(doc, dict) and isinstance(doc.get("plans"), list):
        return [TimedCommand(str(plan.get("host")), timedelta(0), _argv(cmd.get("argv"), source), source)
                for plan in doc["plans"] for cmd in _list(plan, "commands", source)]
    if isinstance(doc, dict) and isinstance(doc.get("hosts"), list):
        out = []
        for host in doc["hosts"]:
            name = str(host.get("host"))
            for sock in _list(host, "sockets", source):
                for vm in _list(sock, "vms", source):
                    steps = [(level.get("offset_s", 0), _list(level, "argv", source))
                             for level in _list(vm, "levels", source)]
                    steps.append((vm.get("restore_offset_s", 0), _list(vm, "restore_argv", source)))
                    out += [TimedCommand(name, timedelta(seconds=float(at)), _argv(a, source), source)
                            for at, argvs in steps for a in argvs]
        return out
    raise ConfigError(f"{source}: not a CAT plan (the JSON of `rdtadvisor advise cat` or "
                      "`rdtadvisor calibrate`)")


def _list(d: Any, key: str, source: str) -> list:
    value = d.get(key) if isinstance(d, dict) else None
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{source}: {key!r} is not a list")
    return value


def _argv(value: Any, source: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise ConfigError(f"{source}: not a command line (a list of strings): {value!r}")
    return tuple(value)


def parse_cat_set(argv: Sequence[str], xen: tuple[int, int]) -> CatSet:
    """`argv` as the host's ``xl`` reads it; ValueError (why) if it would fail there."""
    if len(argv) < 2 or argv[0] != "xl":
        raise ValueError("not an xl command")
    verb = argv[1]
    want = "psr-cat-set" if xen >= (4, 10) else "psr-cat-cbm-set"
    if verb not in ("psr-cat-set", "psr-cat-cbm-set"):
        raise ValueError(f"only psr-cat-set is simulated, not {verb}")
    if verb != want:
        raise ValueError(f"Xen {xen[0]}.{xen[1]}'s xl has {want}, not {verb}")
    socket: int | None = None
    half: str | None = None
    rest = list(argv[2:])
    while rest and rest[0].startswith("-") and rest[0] != "-":
        opt = rest.pop(0)
        if opt in ("-s", "--socket") and rest:
            value = rest.pop(0)
            if not value.isdigit():
                raise ValueError(f"socket {value!r} is not a number")
            socket = int(value)
        elif opt in ("-l", "--level") and rest:
            level = rest.pop(0)
            if level != "3":
                raise ValueError(f"L{level} CAT changes are not simulated")
        elif opt in ("-c", "--code"):
            half = "code"
        elif opt in ("-d", "--data"):
            half = "data"
        else:
            raise ValueError(f"unknown option {opt}")
    if len(rest) != 2:
        raise ValueError("expected DOMAIN CBM")
    try:
        cbm = parse_mask(rest[1])
    except ValueError:
        raise ValueError(f"not a mask: {rest[1]!r}") from None
    return CatSet(socket, half, rest[0], cbm)


def apply_commands(host: HostSpec, commands: Sequence[TimedCommand], origin: timedelta) -> HostSpec:
    """`host` with `commands` (offsets from `origin`, an offset from the run's start) run in time
    order (stable: a level's argv in their order), as Xen would run them (module docstring)."""
    if not commands:
        return host
    ways = host.preset.ways
    full = (1 << ways) - 1
    xen = host.xen_major_minor
    by_id = {str(v.domid): i for i, v in enumerate(host.vms)}
    by_name = {v.name: i for i, v in enumerate(host.vms)}
    first = origin + min(c.at for c in commands)
    state: list[L3State] = []
    for v in host.vms:
        m = v.masks_at(first, ways)
        state.append((m.cbm, m.code_cbm, m.data_cbm))
    changes: dict[int, list[MaskChange]] = {}
    for cmd in sorted(commands, key=lambda c: c.at):
        def fail(why: str, cmd: TimedCommand = cmd) -> ConfigError:
            return ConfigError(f"{cmd.source}: {host.name}: {cmd.shell}: {why}")
        if not host.preset.l3_cat or xen < (4, 6):
            raise fail(f"no L3 CAT on this host ({host.preset.name}, Xen {host.xen})")
        try:
            op = parse_cat_set(cmd.argv, xen)
        except ValueError as e:
            raise fail(str(e)) from None
        i = by_id.get(op.domain, by_name.get(op.domain))
        if i is None:
            raise fail(f"no domain {op.domain} on this host")
        if op.socket is not None and op.socket not in host.sockets:
            raise fail(f"no socket {op.socket} (the host has {', '.join(map(str, host.sockets))})")
        why = mask_error(op.cbm, ways)
        if why:
            raise fail(why)
        if op.half is not None and not host.cdp:
            raise fail("-c/-d need CDP on (the host runs without it)")
        vm = host.vms[i]
        if op.socket is not None and op.socket != vm.socket:
            continue                                   # its COS on a socket it does not run on
        state[i] = _set(state[i], op, host.cdp, full)
        used = {cos_key(host.vms[j], state[j]) for j in host.socket_vms(vm.socket)} - {None}
        if len(used) > host.cos_budget:
            raise fail(f"no free COS available (socket {vm.socket} has {host.cos_budget})")
        changes.setdefault(i, []).append(MaskChange(origin + cmd.at, *state[i]))
    vms = list(host.vms)
    for i, new in changes.items():
        kept = tuple(c for c in vms[i].mask_changes if c.at < first)
        vms[i] = replace(vms[i], mask_changes=kept + tuple(new))
    return replace(host, vms=tuple(vms))


def _set(before: L3State, op: CatSet, cdp: bool, full: int) -> L3State:
    """The VM's L3 state after `op`; the all-ones mask is the default (None)."""
    value = None if op.cbm == full else op.cbm
    if not cdp:
        return (value, None, None)
    _, code, data = before
    if op.half in (None, "code"):
        code = value
    if op.half in (None, "data"):
        data = value
    return (None, code, data)


def true_effect(with_plan: Any, without: Any, since: timedelta, origin: Any) -> list[dict[str, Any]]:
    """Per socket whose masks differ: the simulator's true weighted speedup (sum of priority x
    speed, averaged over the collections from `since`) with and without the plans, and each
    VM's true speed change (``per_vm``: name -> mean speed with / mean speed without - 1), to
    set against `advise cat`'s ``predicted.per_vm``.

    `with_plan`/`without`: `rdtadvisor.sim.truth.HostTruth` of the same host and times.
    """
    host = with_plan.host
    offs = np.asarray((with_plan.times - origin).total_seconds(), dtype=float)
    rows = offs >= since.total_seconds()
    prio = np.array([v.vm.priority for v in host.vms], dtype=float)
    out = []
    for s in host.sockets:
        idx = host.socket_vms(s)
        if not idx or not rows.any():
            continue
        if np.array_equal(with_plan.masks[rows][:, idx], without.masks[rows][:, idx]) and (
                with_plan.code_masks is None
                or np.array_equal(with_plan.code_masks[rows][:, idx], without.code_masks[rows][:, idx])):
            continue
        ws_with = float((with_plan.speed[rows][:, idx] * prio[idx]).sum(axis=1).mean())
        ws_without = float((without.speed[rows][:, idx] * prio[idx]).sum(axis=1).mean())
        speed_with = with_plan.speed[rows][:, idx].mean(axis=0)
        speed_without = without.speed[rows][:, idx].mean(axis=0)
        per_vm = {host.vms[i].name: float(a / b - 1.0) if b > 0 else 0.0
                  for i, a, b in zip(idx, speed_with, speed_without, strict=True)}
        out.append({"host": host.name, "socket": s, "weighted_speedup": ws_with,
                    "weighted_speedup_without": ws_without, "gain": ws_with / ws_without - 1.0,
                    "per_vm": per_vm})
    return out


def apply_plans(scenario: Any, plans: Sequence[tuple[str, timedelta, Sequence[TimedCommand]]],
                duration: timedelta, step: timedelta, seed: int) -> tuple[Any, list[dict[str, Any]]]:
    """`scenario` with each plan ``(name, origin, commands)`` applied in the order given, and
    each plan's true effect per socket it changes (`true_effect`, labelled ``plan``: name):
    the run with it and the plans before it against the run with only the plans before it,
    from its first command on, over ``duration`` at ``step`` from the scenario's start."""
    import pandas as pd

    from rdtadvisor.sim import truth

    times = truth.time_index(scenario, duration, step)
    start = pd.Timestamp(scenario.start).tz_convert("UTC")
    hosts, effects = [], []
    for host in scenario.hosts:
        current, before = host, None
        for name, origin, cmds in plans:
            mine = [c for c in cmds if c.host == host.name]
            if not mine:
                continue
            new = apply_commands(current, mine, origin)
            before = before or truth.simulate_host(current, times, start, seed)
            after = truth.simulate_host(new, times, start, seed)
            first = origin + min(c.at for c in mine)
            effects += [{**e, "plan": name} for e in true_effect(after, before, first, start)]
            current, before = new, after
        hosts.append(current)
    return replace(scenario, hosts=tuple(hosts)), effects
