"""CAT plans: per (host, socket), the masks to set, the exact ``xl`` steps and their undo.

A `CatPlan` is what an advisor hands over (assignments, predicted effect) plus the ordered
`Step`s that take a socket from today's masks to the target (`build_steps`). `to_dict` is
one entry of the plan JSON contract (``docs/plan.md``)::

    {"plans": [{"host", "socket", "level": 3, "cos_budget", "cos_used",
                "assignments": [{"domid", "name", "cos", "cbm": "0x7f0" (or "code_cbm"/"data_cbm"
                                 under CDP), "ways", "bytes", "reason"}],
                "predicted": {"weighted_speedup", "per_vm": [...], "uncertainty"},
                "commands": [COMMAND], "rollback": [COMMAND]}]}

    COMMAND = {"kind": "cat-set" | "cat-reset", "domid", "name", "argv": ["xl", ...],
               "shell": "xl psr-cat-set -s 0 5 0x7f0", "reason", "evidence": {key: number}}

``commands`` run in order; ``rollback`` (the steps' undo, last step first) restores today's
masks from the plan's end state. ``shell`` is ``shlex.join(argv)``; the domain argument is
always the domid, never the name (names are untrusted text). `rdtadvisor.advise.planfile` (``whatif
--plan``) reads the same files. ``cos`` is a group label, not Xen's COS id: 0 = the default
mask (COS 0), 1..cos_used = one per distinct setting, numbered by mask; Xen picks the ids.

Ordering (`build_steps`): resets to the default first (they free COS), then, greedily, the
changes that free a COS or reuse one before those that need a new one, so that **every
intermediate state** fits the budget: Xen answers ``no free COS available`` when a domain
that shares its COS moves to a setting no other domain has while all COS are taken. When no
order fits, a domain is first parked on the default mask (a ``cat-reset`` saying so). Under
CDP a setting whose code and data masks are equal (before and after) is one plain command
(Xen sets both halves); otherwise one ``-c`` and/or one ``-d`` command, and the
intermediate (new code, old data) pair is counted too. A plain set is never emitted *from* a
code != data pair, because its undo would need two commands: with a tight budget this makes
`build_steps` refuse a few CDP targets that Xen could reach (two domains sharing a code/data
pair, no spare COS); the error says so.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rdtadvisor.cache import cbm as cbmlib
from rdtadvisor.cache.cbm import Mask
from rdtadvisor.core.errors import ConfigError, PlanError
from rdtadvisor.xl.commands import cat_set_argv

StepKind = Literal["cat-set", "cat-reset"]


@dataclass(frozen=True)
class Step:
    """One ``xl`` command of a plan, with the command that undoes it."""

    kind: StepKind                     # "cat-reset": to the default mask (frees a COS); else "cat-set"
    host: str
    socket: int
    domid: int
    domain: str | None                 # the name, for people; never used in argv
    level: int                         # 3 (L3 CAT/CDP) or 2 (L2 CAT)
    argv: tuple[str, ...]              # exact xl argv (`xl.commands.cat_set_argv`), domid as the domain
    undo: tuple[str, ...]              # argv restoring the domain's setting from before this step
    reason: str                        # one line a person reads
    evidence: Mapping[str, float] = field(default_factory=dict)   # figures behind the reason, unit in key

    @property
    def shell(self) -> str:
        return shlex.join(self.argv)

    @property
    def undo_shell(self) -> str:
        return shlex.join(self.undo)


@dataclass(frozen=True)
class Assignment:
    """One domain's target setting in a plan (``cbm``, or ``code_cbm``/``data_cbm`` under CDP)."""

    domid: int
    name: str | None
    cos: int
    cbm: int | None = None
    code_cbm: int | None = None
    data_cbm: int | None = None
    ways: int = 0                      # ways of cbm (under CDP: of the data mask)
    bytes: float = 0.0                 # L3 bytes those ways hold [B]
    reason: str = ""

    @property
    def setting(self) -> Mask:
        if self.cbm is not None:
            return self.cbm
        assert self.code_cbm is not None and self.data_cbm is not None
        return (self.code_cbm, self.data_cbm)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"domid": self.domid, "name": self.name, "cos": self.cos}
        if self.cbm is not None:
            d["cbm"] = cbmlib.hexmask(self.cbm)
        else:
            d["code_cbm"] = cbmlib.hexmask(self.code_cbm or 0)
            d["data_cbm"] = cbmlib.hexmask(self.data_cbm or 0)
        d.update(ways=self.ways, bytes=self.bytes, reason=self.reason)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Assignment:
        def mask(key: str) -> int | None:
            v = d.get(key)
            return None if v is None else cbmlib.parse_mask(v)
        return cls(domid=int(d["domid"]), name=d.get("name"), cos=int(d.get("cos", 0)), cbm=mask("cbm"),
                   code_cbm=mask("code_cbm"), data_cbm=mask("data_cbm"), ways=int(d.get("ways", 0)),
                   bytes=float(d.get("bytes", 0.0)), reason=str(d.get("reason", "")))


_NO_PREDICTION: Mapping[str, Any] = {"weighted_speedup": None, "per_vm": [], "uncertainty": None}


@dataclass(frozen=True)
class CatPlan:
    """The CAT plan of one (host, socket): targets, predicted effect and ordered steps."""

    host: str
    socket: int
    cos_budget: int
    cos_used: int
    assignments: tuple[Assignment, ...]
    steps: tuple[Step, ...] = ()
    predicted: Mapping[str, Any] = field(default_factory=lambda: dict(_NO_PREDICTION))
    level: int = 3

    def to_dict(self) -> dict[str, Any]:
        """One entry of the contract's ``plans`` list (see the module docstring)."""
        return {"host": self.host, "socket": self.socket, "level": self.level,
                "cos_budget": self.cos_budget, "cos_used": self.cos_used,
                "assignments": [a.to_dict() for a in self.assignments],
                "predicted": {**_NO_PREDICTION, **dict(self.predicted)},
                "commands": [_command(s, s.argv, s.kind, s.reason, s.evidence) for s in self.steps],
                "rollback": [_command(s, s.undo, "undo", f"undo: {s.reason}", {})
                             for s in reversed(self.steps)]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CatPlan:
        """Inverse of `to_dict` (``commands`` and ``rollback`` pair up, rollback reversed)."""
        host, socket, level = str(d["host"]), int(d["socket"]), int(d.get("level", 3))
        commands, rollback = list(d.get("commands", [])), list(d.get("rollback", []))
        if len(commands) != len(rollback):
            raise PlanError(f"{host} socket {socket}: {len(commands)} commands but {len(rollback)} "
                            "rollback commands")
        for c, u in zip(commands, reversed(rollback), strict=True):
            _check_argv(c, host, socket, "command")
            _check_argv(u, host, socket, "rollback command")
            if int(c["domid"]) != int(u["domid"]):
                raise PlanError(f"{host} socket {socket}: rollback does not mirror the commands "
                                f"(domid {c['domid']} vs {u['domid']})")
        steps = tuple(Step(kind=c["kind"], host=host, socket=socket, domid=int(c["domid"]),
                           domain=c.get("name"), level=level, argv=tuple(c["argv"]), undo=tuple(u["argv"]),
                           reason=str(c.get("reason", "")),
                           evidence={str(k): float(v) for k, v in (c.get("evidence") or {}).items()})
                      for c, u in zip(commands, reversed(rollback), strict=True))
        return cls(host=host, socket=socket, cos_budget=int(d["cos_budget"]), cos_used=int(d["cos_used"]),
                   assignments=tuple(Assignment.from_dict(a) for a in d.get("assignments", [])),
                   steps=steps, predicted=dict(d.get("predicted") or _NO_PREDICTION), level=level)


_XL_SET = ("psr-cat-set", "psr-cat-cbm-set")


def _check_argv(entry: Mapping[str, Any], host: str, socket: int, what: str) -> None:
    """A plan file read back becomes a root shell script: accept only the argv `build_steps` makes.

    ``xl psr-cat-set|psr-cat-cbm-set -s SOCKET [-l 2] [-c|-d] DOMID 0xMASK`` with this plan's
    socket and the entry's domid.
    """
    argv = entry.get("argv")
    where = f"{host} socket {socket}: {what} {argv!r}"
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise PlanError(f"{where}: argv must be a list of strings")
    if entry.get("kind") not in ("cat-set", "cat-reset", "undo"):
        raise PlanError(f"{where}: unknown kind {entry.get('kind')!r}")
    rest = argv[2:]
    ok = len(argv) >= 6 and argv[0] == "xl" and argv[1] in _XL_SET and rest[:2] == ["-s", str(socket)]
    rest = rest[2:]
    if ok and rest[:2] == ["-l", "2"]:
        rest = rest[2:]
    if ok and rest[:1] in (["-c"], ["-d"]):
        rest = rest[1:]
    ok = (ok and len(rest) == 2 and rest[0] == str(entry.get("domid"))
          and re.fullmatch(r"0x[0-9a-f]+", rest[1]) is not None)
    if not ok:
        raise PlanError(f"{where}: not an xl CAT command of this plan "
                        f"('xl psr-cat-set -s {socket} [-c|-d] DOMID 0xMASK')")


def _command(s: Step, argv: tuple[str, ...], kind: str, reason: str,
             evidence: Mapping[str, float]) -> dict[str, Any]:
    return {"kind": kind, "domid": s.domid, "name": s.domain, "argv": list(argv),
            "shell": shlex.join(argv), "reason": reason, "evidence": dict(evidence)}


def plans_to_dict(plans: Sequence[CatPlan]) -> dict[str, Any]:
    """The whole JSON document: ``{"plans": [...]}``."""
    return {"plans": [p.to_dict() for p in plans]}


def plans_from_dict(data: Mapping[str, Any]) -> list[CatPlan]:
    """Read `plans_to_dict` output back."""
    return [CatPlan.from_dict(p) for p in data.get("plans", [])]


# --- steps ------------------------------------------------------------------------------------

def build_steps(host: str, socket: int, xen_version: tuple[int, int], current: Mapping[int, Mask],
                target: Mapping[int, Mask], cdp: bool, *, cbm_len: int, cos_budget: int,
                names: Mapping[int, str | None] | None = None, min_bits: int = 1, level: int = 3,
                reasons: Mapping[int, str] | None = None,
                evidence: Mapping[int, Mapping[str, float]] | None = None) -> tuple[Step, ...]:
    """Ordered steps taking one socket from ``current`` to ``target`` (domid -> mask or (code, data)).

    ``current`` must hold **every** domain on the socket (they all hold COS references);
    domains absent from ``target`` keep their setting; only domains whose setting changes
    get steps. Each step's undo restores that domain's setting from just before the step,
    so running the undos last-first from the end state visits the same states backwards
    and ends at ``current``. Raises `PlanError` for a target or current mask Xen would
    reject (``min_bits`` applies to non-default targets only), a code/data pair without
    CDP, a domain not in ``current``, a target needing more than ``cos_budget`` COS, or
    an ``xl`` that cannot express the change (`ConfigError` from ``cat_set_argv``).
    """
    names = names or {}
    reasons = reasons or {}
    evidence = evidence or {}
    where = f"{host} socket {socket}"
    default = cbmlib.full(cbm_len) if 1 <= cbm_len <= cbmlib.MAX_CBM_LEN else None
    if default is None:
        raise PlanError(f"{where}: CBM length {cbm_len} is outside 1..{cbmlib.MAX_CBM_LEN}")
    if level == 2 and cdp:
        raise PlanError(f"{where}: CDP applies to L3 only; plan L2 with cdp=False")

    def check(domid: int, m: Mask, what: str, policy: bool) -> tuple[int, int]:
        if isinstance(m, tuple) and not cdp and m[0] != m[1]:
            raise PlanError(f"{where}: domid {domid}: {what} has code/data masks but CDP is off")
        pair = cbmlib.normalise(m)
        for half, v in zip(("code ", "data ") if pair[0] != pair[1] else ("", ""), pair, strict=True):
            bits = min_bits if policy and v != default else 1
            why = cbmlib.why_invalid(v, cbm_len, bits)
            if why:
                raise PlanError(f"{where}: domid {domid}: {what} {half}mask {v:#x}: {why}")
        return pair

    now = {int(d): check(int(d), m, "today's", False) for d, m in current.items()}
    goal = dict(now)
    for d, m in target.items():
        d = int(d)
        if d not in now:
            raise PlanError(f"{where}: domid {d} is not on the socket today (known: {sorted(now)})")
        goal[d] = check(d, m, "target", True)
    today = cbmlib.cos_needed(now.values(), cbm_len)
    if today > cos_budget:
        raise PlanError(f"{where}: today's masks already use {today} COS, more than the budget of "
                        f"{cos_budget}: Xen cannot be in that state, so the COS or mask facts are wrong")
    need = cbmlib.cos_needed(goal.values(), cbm_len)
    if need > cos_budget:
        raise PlanError(f"{where}: the target needs {need} COS but only {cos_budget} are available "
                        f"(Xen: no free COS available)")

    plan = _order(now, goal, cdp, default, cbm_len, cos_budget, greedy=True)
    if plan is None:
        plan = _order(now, goal, cdp, default, cbm_len, cos_budget, greedy=False)
    if plan is None:
        raise PlanError(f"{where}: no order of single xl commands stays within {cos_budget} COS on the way "
                        f"to the target (needs {need}); under CDP each half is set on its own and the "
                        "in-between code/data pair needs a spare COS. Free a COS first (reset a domain "
                        "to the default mask) or plan fewer distinct masks")

    def argv(domid: int, value: int, half: str | None) -> tuple[str, ...]:
        try:
            return cat_set_argv(xen_version, str(domid), value, socket=socket, level=level, half=half)
        except ConfigError as e:
            raise PlanError(f"{where}: domid {domid}: {e}") from e

    steps: list[Step] = []
    for d, before, (half, v), parked in plan:
        after = _apply(before, (half, v))
        if half is None:
            undo = argv(d, before[1], None)
        else:
            undo = argv(d, before[0] if half == "code" else before[1], half)
        reset = after == (default, default)
        if parked:
            reason = "parked on the default mask so that a COS is free during the change"
        else:
            reason = reasons.get(d) or ("back to the default mask (frees its COS)" if reset else
                                        f"mask {_show(now[d])} -> {_show(goal[d])}")
        steps.append(Step(kind="cat-reset" if reset else "cat-set", host=host, socket=socket, domid=d,
                          domain=names.get(d), level=level, argv=argv(d, v, half), undo=undo,
                          reason=reason, evidence=dict(evidence.get(d, {}))))
    return tuple(steps)


Pair = tuple[int, int]
Op = tuple[str | None, int]          # (None | "code" | "data", value)


def _ops(old: Pair, new: Pair, cdp: bool) -> list[Op]:
    """Commands taking one domain from old to new: one plain set when both are plain, else per half."""
    if old == new:
        return []
    if not cdp or (old[0] == old[1] and new[0] == new[1]):
        return [(None, new[1])]
    out: list[Op] = []
    if old[0] != new[0]:
        out.append(("code", new[0]))
    if old[1] != new[1]:
        out.append(("data", new[1]))
    return out


def _apply(pair: Pair, op: Op) -> Pair:
    half, v = op
    return (v, v) if half is None else (v, pair[1]) if half == "code" else (pair[0], v)


def _order(now: dict[int, Pair], goal: dict[int, Pair], cdp: bool, default: int, cbm_len: int,
           budget: int, *, greedy: bool) -> list[tuple[int, Pair, Op, bool]] | None:
    """A sequence of (domid, setting before, op, parked) from now to goal within the budget, or None.

    greedy: resets first, then always the op leaving the fewest COS in use (a domain half-way
    through a code/data change first); park a domain on the default when nothing fits (each
    at most once). Otherwise (the fallback): park every changing domain first, then finish
    the domains one by one; when the target fits the budget and no code/data split is needed
    this always succeeds (parks never add a COS; every later state holds only target
    settings and defaults).
    """
    state = dict(now)
    out: list[tuple[int, Pair, Op, bool]] = []

    def count_after(d: int, op: Op) -> int:
        trial = dict(state)
        trial[d] = _apply(state[d], op)
        return cbmlib.cos_needed(trial.values(), cbm_len)

    def do(d: int, op: Op, parked: bool = False) -> bool:
        if count_after(d, op) > budget:
            return False
        out.append((d, state[d], op, parked))
        state[d] = _apply(state[d], op)
        return True

    def park(d: int) -> bool:
        dflt = (default, default)
        flag = state[d] != dflt and goal[d] != dflt
        return all(do(d, op, parked=flag) for op in _ops(state[d], dflt, cdp))

    changing = [d for d in sorted(goal) if goal[d] != now[d]]
    if not greedy:
        for d in changing:
            if not park(d):
                return None
        for d in changing:
            for op in _ops(state[d], goal[d], cdp):
                if not do(d, op):
                    return None
        return out

    pending = {d: _ops(now[d], goal[d], cdp) for d in changing}
    for d in list(pending):      # resets (plain): never add a COS
        plain_reset = goal[d] == (default, default) and len(pending[d]) == 1 and pending[d][0][0] is None
        if plain_reset and not do(d, pending.pop(d)[0]):
            return None
    parked: set[int] = set()
    while pending:
        # Fewest COS after the op; a domain half-way through a code/data change first.
        best = min(pending, key=lambda d: (count_after(d, pending[d][0]),
                                           state[d] in (now[d], goal[d]), d))
        if do(best, pending[best][0]):
            pending[best].pop(0)
            if not pending[best]:
                del pending[best]
            continue
        victims = [d for d in pending if d not in parked and state[d] != (default, default)]
        if not victims:
            return None
        d = victims[0]
        parked.add(d)
        if not park(d):
            return None
        pending[d] = _ops(state[d], goal[d], cdp)
        if not pending[d]:
            del pending[d]
    return out if state == goal else None


def _show(pair: tuple[int, int]) -> str:
    return hex(pair[0]) if pair[0] == pair[1] else f"code {pair[0]:#x}/data {pair[1]:#x}"


def assignments_for(target: Mapping[int, Mask], cbm_len: int, l3_bytes: float,
                    names: Mapping[int, str | None] | None = None,
                    reasons: Mapping[int, str] | None = None, *, cdp: bool = False) -> tuple[Assignment, ...]:
    """`Assignment`s for a target (domid -> setting) with group labels, ways and bytes filled in.

    ``cos``: 0 for the default setting, else 1.. by distinct setting in ascending (data, code)
    mask order. Under CDP every assignment is written as code_cbm/data_cbm.
    """
    names = names or {}
    reasons = reasons or {}
    default = (cbmlib.full(cbm_len), cbmlib.full(cbm_len))
    pairs = {int(d): cbmlib.normalise(m) for d, m in target.items()}
    groups = sorted({p for p in pairs.values() if p != default}, key=lambda p: (p[1], p[0]))
    cos = {p: i + 1 for i, p in enumerate(groups)}
    out = []
    for d in sorted(pairs):
        code, data = pairs[d]
        ways = cbmlib.ways_of(data)
        common = dict(domid=d, name=names.get(d), cos=cos.get(pairs[d], 0), ways=ways,
                      bytes=cbmlib.bytes_for(ways, l3_bytes, cbm_len), reason=reasons.get(d, ""))
        if cdp:
            out.append(Assignment(code_cbm=code, data_cbm=data, **common))
        else:
            if code != data:
                raise PlanError(f"domid {d}: code/data masks given but CDP is off")
            out.append(Assignment(cbm=data, **common))
    return tuple(out)


def cat_plan(host: str, socket: int, xen_version: tuple[int, int], current: Mapping[int, Mask],
             target: Mapping[int, Mask], *, cdp: bool, cbm_len: int, cos_budget: int, l3_bytes: float,
             names: Mapping[int, str | None] | None = None, reasons: Mapping[int, str] | None = None,
             evidence: Mapping[int, Mapping[str, float]] | None = None,
             predicted: Mapping[str, Any] | None = None, min_bits: int = 1) -> CatPlan:
    """Assemble a validated `CatPlan`: assignments for every domain in ``target``, steps, COS used.

    ``cos_used`` counts the whole socket's end state (domains not in ``target`` keep today's
    setting and still hold their COS).
    """
    steps = build_steps(host, socket, xen_version, current, target, cdp, cbm_len=cbm_len,
                        cos_budget=cos_budget, names=names, min_bits=min_bits, reasons=reasons,
                        evidence=evidence)
    end = {int(d): cbmlib.normalise(m) for d, m in current.items()}
    end.update({int(d): cbmlib.normalise(m) for d, m in target.items()})
    return CatPlan(host=host, socket=socket, cos_budget=cos_budget,
                   cos_used=cbmlib.cos_needed(end.values(), cbm_len),
                   assignments=assignments_for(target, cbm_len, l3_bytes, names, reasons, cdp=cdp),
                   steps=steps, predicted=dict(predicted or _NO_PREDICTION))


# --- today's state from the store's tables ---------------------------------------------------


