"""Reads plan files, CAT plans and migration plans (both contracts in ``docs/plan.md``), into dataclasses.

A plan file is JSON with ``plans`` (CAT), ``migrations``, or both::

    {"plans": [{"host": "xen01", "socket": 0, "level": 3,
                "assignments": [{"domid": 5, "name": "db", "cbm": "0x7f0"},
                                {"domid": 7, "name": "batch", "code_cbm": "0x3", "data_cbm": "0xc"}]}],
     "migrations": [{"name": "batch", "domid": 7, "from": "xen01", "to": "xen02"}]}

Other keys of the contracts (``cos``, ``ways``, ``reason``, ``predicted``, ``commands``, ...)
are allowed and ignored. Masks are JSON integers or strings (``"0x7f0"``, ``"2032"``).
Every error is a `ConfigError` naming the file and the JSON path (``$.plans[0].assignments[1].cbm``).
`check_masks` validates masks against a host's stored facts: non-empty, one contiguous
run of ones, within the CBM length (Xen rejects the rest: ``docs/xl-formats.md``, "Setting masks").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rdtadvisor.cache.cbm import is_contiguous
from rdtadvisor.core.errors import ConfigError
from rdtadvisor.model.capacity import SocketFacts


@dataclass(frozen=True)
class MaskEntry:
    """One VM's masks in a CAT plan. Under CDP `code_cbm`/`data_cbm`; else `cbm` (or both halves equal)."""

    domid: int | None
    name: str | None
    cbm: int | None = None
    code_cbm: int | None = None
    data_cbm: int | None = None
    path: str = ""

    @property
    def data_mask(self) -> int:
        """The mask that governs the data (what occupancy mostly is): `data_cbm` or `cbm`."""
        m = self.data_cbm if self.data_cbm is not None else self.cbm
        assert m is not None
        return m

    @property
    def label(self) -> str:
        return self.name if self.name is not None else f"domid {self.domid}"


@dataclass(frozen=True)
class CatEntry:
    host: str
    socket: int
    level: int
    assignments: tuple[MaskEntry, ...]
    path: str = ""


@dataclass(frozen=True)
class Migration:
    name: str | None
    domid: int | None
    source: str
    destination: str
    path: str = ""
    to_socket: int | None = None      # where libxl's placement would put it (advise placement)

    @property
    def label(self) -> str:
        return self.name if self.name is not None else f"domid {self.domid}"


@dataclass(frozen=True)
class PlanFile:
    source: str
    cat: tuple[CatEntry, ...] = ()
    migrations: tuple[Migration, ...] = ()

    @property
    def hosts(self) -> list[str]:
        """Every host the plan touches, in order of first mention."""
        seen: dict[str, None] = {}
        for p in self.cat:
            seen.setdefault(p.host)
        for m in self.migrations:
            seen.setdefault(m.source)
            seen.setdefault(m.destination)
        return list(seen)


def load_plan(path: str | Path) -> PlanFile:
    """Read and parse a plan file; ConfigError names the file (and the JSON path) on any problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read plan: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: plan is not UTF-8 text: {e.reason}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from e
    return parse_plan(data, source=str(p))


def parse_plan(data: Any, *, source: str = "<plan>") -> PlanFile:
    """Turn decoded JSON into a `PlanFile` (see the module docstring for the shape)."""

    def fail(path: str, why: str) -> ConfigError:
        return ConfigError(f"{source}: {path}: {why}")

    if not isinstance(data, dict):
        raise fail("$", f"expected an object with 'plans' and/or 'migrations', got {_kind(data)}")
    if "plans" not in data and "migrations" not in data:
        raise fail("$", "expected 'plans' (a CAT plan) and/or 'migrations' (a migration plan)")
    cat: list[CatEntry] = []
    plans = data.get("plans", [])
    if not isinstance(plans, list):
        raise fail("$.plans", f"expected a list, got {_kind(plans)}")
    seen_sockets: dict[tuple[str, int], str] = {}
    for i, p in enumerate(plans):
        where = f"$.plans[{i}]"
        if not isinstance(p, dict):
            raise fail(where, f"expected an object, got {_kind(p)}")
        host = _string(p, "host", where, fail)
        socket = _int(p, "socket", where, fail, minimum=0)
        level = _int(p, "level", where, fail, default=3)
        if level != 3:
            raise fail(f"{where}.level", f"only level 3 (L3 CAT) can be predicted, got {level}")
        if (host, socket) in seen_sockets:
            raise fail(where, f"{host} socket {socket} is already planned at {seen_sockets[(host, socket)]}")
        seen_sockets[(host, socket)] = where
        assignments = p.get("assignments")
        if not isinstance(assignments, list) or not assignments:
            raise fail(f"{where}.assignments", f"expected a non-empty list, got {_kind(assignments)}")
        out: list[MaskEntry] = []
        ids: dict[object, str] = {}
        for j, a in enumerate(assignments):
            w = f"{where}.assignments[{j}]"
            domid, name = _vm(a, w, fail)
            ident = domid if domid is not None else name
            if ident in ids:
                raise fail(w, f"{ident!r} is already assigned at {ids[ident]}")
            ids[ident] = w
            cbm = _mask(a, "cbm", w, fail)
            code, dat = _mask(a, "code_cbm", w, fail), _mask(a, "data_cbm", w, fail)
            if cbm is None and (code is None or dat is None):
                raise fail(w, "needs 'cbm', or both 'code_cbm' and 'data_cbm' (CDP)")
            if cbm is not None and (code is not None or dat is not None):
                raise fail(w, "give either 'cbm' or 'code_cbm'/'data_cbm', not both")
            out.append(MaskEntry(domid, name, cbm, code, dat, w))
        cat.append(CatEntry(host, socket, level, tuple(out), where))
    migrations: list[Migration] = []
    moves = data.get("migrations", [])
    if not isinstance(moves, list):
        raise fail("$.migrations", f"expected a list, got {_kind(moves)}")
    moved: dict[object, str] = {}
    for i, m in enumerate(moves):
        w = f"$.migrations[{i}]"
        domid, name = _vm(m, w, fail)
        src = _string(m, "from", w, fail)
        dst = _string(m, "to", w, fail)
        if src == dst:
            raise fail(f"{w}.to", f"the VM would stay on {src}")
        key = (src, domid if domid is not None else name)
        if key in moved:
            raise fail(w, f"{name or domid} on {src} already moves at {moved[key]}")
        moved[key] = w
        to_socket = m.get("to_socket")
        if to_socket is not None and (not isinstance(to_socket, int) or isinstance(to_socket, bool)
                                      or to_socket < 0):
            raise fail(f"{w}.to_socket", f"expected a socket number, got {to_socket!r}")
        migrations.append(Migration(name, domid, src, dst, w, to_socket))
    return PlanFile(source, tuple(cat), tuple(migrations))


def _vm(obj: Any, where: str, fail) -> tuple[int | None, str | None]:
    """The (domid, name) a plan entry names: an object with a ``domid``, a ``name`` or both."""
    if not isinstance(obj, dict):
        raise fail(where, f"expected an object, got {_kind(obj)}")
    domid = _int(obj, "domid", where, fail, default=None, minimum=0)
    name = _string(obj, "name", where, fail, required=False)
    if domid is None and name is None:
        raise fail(where, "needs a 'domid' or a 'name'")
    return domid, name


def _kind(x: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(x), type(x).__name__)


def _string(obj: dict, key: str, where: str, fail, *, required: bool = True) -> str | None:
    if key not in obj or obj[key] is None:
        if required:
            raise fail(f"{where}.{key}", "missing")
        return None
    v = obj[key]
    if not isinstance(v, str) or not v.strip():
        raise fail(f"{where}.{key}", f"expected a non-empty string, got {_kind(v)}")
    return v


_MISSING = object()


def _int(obj: dict, key: str, where: str, fail, *, default: Any = _MISSING,
         minimum: int | None = None) -> Any:
    if key not in obj or obj[key] is None:
        if default is _MISSING:
            raise fail(f"{where}.{key}", "missing")
        return default
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise fail(f"{where}.{key}", f"expected an integer, got {_kind(v)} {v!r}")
    if minimum is not None and v < minimum:
        raise fail(f"{where}.{key}", f"must be >= {minimum}, got {v}")
    return v


def _mask(obj: dict, key: str, where: str, fail) -> int | None:
    if key not in obj or obj[key] is None:
        return None
    v = obj[key]
    if isinstance(v, bool):
        raise fail(f"{where}.{key}", f"expected a mask like \"0x7f0\", got {_kind(v)}")
    if isinstance(v, int):
        m = v
    elif isinstance(v, str):
        try:
            m = int(v.strip(), 0)
        except ValueError:
            raise fail(f"{where}.{key}", f"not a mask: {v!r} (try \"0x7f0\")") from None
    else:
        raise fail(f"{where}.{key}", f"expected a mask like \"0x7f0\", got {_kind(v)}")
    if m <= 0:
        raise fail(f"{where}.{key}", f"mask {v!r} is empty: every COS needs at least one way")
    return m


# --- validation against the store's facts ------------------------------------------------------

def check_masks(plan: PlanFile, facts: Mapping[tuple[str, int], SocketFacts]) -> None:
    """Raise ConfigError (file and JSON path) for a mask Xen or the hardware would reject.

    Each planned (host, socket) must be known to the store with its CBM length (from
    ``psr-hwinfo`` or the default mask); every mask must be one contiguous run within it;
    ``code_cbm``/``data_cbm`` only where CDP is on.
    """
    for p in plan.cat:
        sf = facts.get((p.host, p.socket))
        if sf is None or sf.ways is None:
            known = sorted({h for h, _ in facts})
            what = (f"host {p.host!r} is not in the store (known: {', '.join(known) or 'none'})"
                    if p.host not in known else f"{p.host} socket {p.socket}: no L3 CAT facts stored "
                                                f"(CBM length unknown)")
            raise ConfigError(f"{plan.source}: {p.path}: {what}")
        for a in p.assignments:
            if (a.code_cbm is not None or a.data_cbm is not None) and not sf.cdp:
                raise ConfigError(f"{plan.source}: {a.path}: code_cbm/data_cbm given but CDP is off on "
                                  f"{p.host} socket {p.socket}; use 'cbm'")
            for key in ("cbm", "code_cbm", "data_cbm"):
                m = getattr(a, key)
                if m is None:
                    continue
                if m >> sf.ways:
                    raise ConfigError(f"{plan.source}: {a.path}.{key}: mask {m:#x} is wider than the "
                                      f"{sf.ways}-bit CBM of {p.host} socket {p.socket}")
                if not is_contiguous(m):
                    raise ConfigError(f"{plan.source}: {a.path}.{key}: mask {m:#x} is not contiguous "
                                      f"(CAT needs one run of ones)")
