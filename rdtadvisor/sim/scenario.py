"""Scenarios: a fleet of Xen hosts and their VMs, read from TOML and validated as Xen would.

The file format is documented with a full example in ``docs/simulator.md``. In short::

    name = "demo"
    start = 2026-11-20T00:00:00Z   # optional: without it the run ends at the start of yesterday
    duration = "2d"
    step = "5m"
    seed = 7

    [[hosts]]
    name = "xen01"
    preset = "skylake-sp"       # rdtadvisor.sim.presets (family alias or part name)
    xen = "4.19.1"
    sockets = 2                 # or a list of ids: [0, 2]
    cdp = false
    mba = true

    [[hosts.vms]]
    name = "web-{i:02d}"        # with count: web-01, web-02, ...
    count = 4
    profile = "web"
    cbm = "0x7f0"

Every error is one `ConfigError` naming the file and the key (``hosts[0].vms[2].cbm``).
Parameters are drawn deterministically from ``(seed, host name, VM name)``, so adding a host or a
VM leaves every other VM unchanged.

Masks are normalised: on a CDP host `VmSpec.cbm` is None and ``code_cbm``/``data_cbm`` hold the
two halves (a ``cbm`` key in the file sets both, as ``xl psr-cat-set`` without ``-c``/``-d`` does);
on other hosts ``code_cbm``/``data_cbm`` are None. None always means the default (all ones, COS 0).
Each `MaskChange` holds the complete L3 state after the change, in the same form.
"""

from __future__ import annotations

import hashlib
import random
import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from rdtadvisor.core import clock
from rdtadvisor.core.errors import ConfigError
from rdtadvisor.core.units import GIB, parse_size
from rdtadvisor.sim import model, presets, profiles
from rdtadvisor.sim.phases import KINDS, Phase

DOM0_NAME = "Domain-0"
DEFAULT_START = datetime(2026, 11, 20, tzinfo=UTC)   # the scoring suite's histories start here


def recent_start(duration: timedelta) -> datetime:
    """Where a scenario without ``start`` begins: so that it ends at the start of yesterday (UTC).

    The history is then recent on any date (a default 7-day window covers it), and a day of
    ``simulate --extend`` still ends before now. The clock is `rdtadvisor.core.clock`.
    """
    end = clock.now().floor("D").to_pydatetime() - timedelta(days=1)
    return end - duration

# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class MaskChange:
    """The L3 masks in force from `at` (offset from the run's start). None: default (all ones)."""

    at: timedelta
    cbm: int | None
    code_cbm: int | None = None
    data_cbm: int | None = None


@dataclass(frozen=True)
class MaskState:
    """A VM's resolved L3 masks at one moment (`data` is what the truth model uses)."""

    cbm: int | None        # non-CDP mask (None on CDP hosts or at default)
    code_cbm: int | None
    data_cbm: int | None
    data: int              # effective data mask, default resolved


@dataclass(frozen=True)
class VmSpec:
    name: str
    domid: int
    socket: int
    profile: str
    vm: model.Vm
    memory_bytes: int
    cbm: int | None                  # L3 mask at start (None = default all ones)
    code_cbm: int | None             # CDP hosts
    data_cbm: int | None
    l2_cbm: int | None
    mba_thrtl: int | None            # as Xen stores it (sanitised)
    attached: bool                   # psr-cmt-attach was done (unattached: invisible to psr-cmt-show)
    phases: tuple[Phase, ...]
    mask_changes: tuple[MaskChange, ...]  # sorted by `at`
    noise: float = 0.0               # load noise (lognormal sigma per step)

    def masks_at(self, offset: timedelta, ways: int) -> MaskState:
        """The L3 masks in force `offset` after the run's start (last change at or before it)."""
        cbm, code, data = self.cbm, self.code_cbm, self.data_cbm
        for ch in self.mask_changes:
            if ch.at > offset:
                break
            cbm, code, data = ch.cbm, ch.code_cbm, ch.data_cbm
        default = (1 << ways) - 1
        eff = data if (code is not None or data is not None) else cbm
        return MaskState(cbm, code, data, default if eff is None else eff)


@dataclass(frozen=True)
class HostSpec:
    name: str
    xen: str
    preset: presets.Preset
    sockets: tuple[int, ...]
    cdp: bool
    mba: bool
    vms: tuple[VmSpec, ...]          # Domain-0 (domid 0) first
    memory_bytes: int

    @property
    def xen_major_minor(self) -> tuple[int, int]:
        return _xen_version(self.xen)

    @property
    def l2(self) -> bool:
        """L2 CAT usable: the part has it and Xen >= 4.10."""
        return self.preset.l2_ways is not None and self.xen_major_minor >= (4, 10)

    @property
    def cos_budget(self) -> int:
        """Distinct non-default masks per socket Xen accepts (`Maximum COS`, halved under CDP)."""
        if not self.cdp:
            return self.preset.cos_max
        return self.preset.cos_max >> 1 if self.xen_major_minor < (4, 10) else self.preset.cdp_cos_max

    def socket_vms(self, socket: int) -> list[int]:
        """Indices into `vms` of the VMs on `socket`."""
        return [i for i, v in enumerate(self.vms) if v.socket == socket]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    start: datetime                  # UTC
    duration: timedelta
    step: timedelta
    seed: int
    hosts: tuple[HostSpec, ...]
    source: str = field(default="", compare=False)
    pinned: bool = True              # start came from the file (or --start), not from the clock


# --------------------------------------------------------------------------- small parsers

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)")
_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """``"2d"``, ``"5m"``, ``"90s"``, ``"12h"``, ``"1h30m"``, ``"1w"`` -> timedelta; ConfigError otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        raise ConfigError(f"not a duration: {text!r} (give a unit: \"90s\", \"5m\", \"12h\", \"2d\")")
    s = str(text).strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ConfigError(f"not a duration: {text!r} (try \"90s\", \"5m\", \"12h\", \"2d\", \"1h30m\")")
    return timedelta(seconds=total)


def parse_mask(value: Any) -> int:
    """A CBM as ``xl psr-cat-set`` reads it (``strtoll(s, NULL, 0)``) or a TOML integer -> int.

    ``"0x7f0"`` is hex, ``"2032"`` decimal, ``"03760"`` octal (a leading 0, as in C); unlike xl,
    garbage is a ValueError rather than 0.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a mask: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        s = value.strip().lower()
        if s.startswith("0x"):
            return int(s[2:], 16)
        if len(s) > 1 and s.startswith("0"):
            return int(s[1:], 8)
        return int(s, 10)
    raise ValueError(f"not a mask: {value!r}")


def mask_error(mask: int, ways: int) -> str | None:
    """Why Xen would reject `mask` on a `ways`-bit CBM (``cat_check_cbm``), or None if valid."""
    if mask <= 0:
        return "empty mask (Xen rejects 0)"
    if mask >> ways:
        return f"{mask:#x} has bits above the {ways}-bit CBM (valid: 0x1 .. {(1 << ways) - 1:#x})"
    low = mask & -mask
    if (mask + low) & mask:
        return f"{mask:#x} is not contiguous (Xen's cat_check_cbm rejects it)"
    return None


def _xen_version(text: str) -> tuple[int, int]:
    m = re.match(r"^(\d+)\.(\d+)", text)
    if not m:
        raise ValueError(f"not a Xen version: {text!r} (e.g. \"4.19.1\")")
    return int(m.group(1)), int(m.group(2))


def seed_key(seed: int, *parts: str) -> str:
    """The string every per-VM generator is seeded from (stable across runs and Python versions)."""
    return "/".join([str(seed), *parts])


def py_rng(seed: int, *parts: str) -> random.Random:
    return random.Random(seed_key(seed, *parts))


def np_seed(seed: int, *parts: str) -> int:
    return int.from_bytes(hashlib.sha256(seed_key(seed, *parts).encode()).digest()[:8], "little")


# --------------------------------------------------------------------------- loading


class _Where:
    """Where in the file we are, for one-line errors: ``file: hosts[0].vms[2].cbm: reason``."""

    def __init__(self, source: str, path: str = "") -> None:
        self.source, self.path = source, path

    def sub(self, key: str | int, label: str | None = None) -> _Where:
        part = f"[{key}]" if isinstance(key, int) else (f".{key}" if self.path else key)
        if label:
            part += f" ({label})"
        return _Where(self.source, self.path + part)

    def error(self, key: str | None, reason: str) -> ConfigError:
        where = self.path if key is None else (f"{self.path}.{key}" if self.path else key)
        return ConfigError(f"{self.source}: {where}: {reason}" if where else f"{self.source}: {reason}")

    def only(self, data: dict, allowed: set[str]) -> None:
        for key in data:
            if key not in allowed:
                raise self.error(key, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def get(self, data: dict, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in data:
            if default is ...:
                raise self.error(key, "required")
            return default
        value = data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(key, f"expected {_kind_name(kinds)}, got {value!r}")
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            raise self.error(key, f"expected {_kind_name(kinds)}, got {value!r}")
        return value

    def duration(self, data: dict, key: str, default: Any = ...) -> Any:
        value = self.get(data, key, str, default)
        if not isinstance(value, str):
            return value
        try:
            return parse_duration(value)
        except ConfigError as e:
            raise self.error(key, str(e)) from None

    def size(self, data: dict, key: str, default: Any = ...) -> Any:
        value = self.get(data, key, (str, int), default)
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            return value
        try:
            out = float(value) if isinstance(value, int) else parse_size(value)
        except ValueError as e:
            raise self.error(key, str(e)) from None
        if out <= 0:
            raise self.error(key, "must be positive")
        return out

    def number(self, data: dict, key: str, default: Any, lo: float, hi: float,
               lo_open: bool = False) -> Any:
        value = self.get(data, key, float, default)
        if value is default:
            return value
        if not (lo < value if lo_open else lo <= value) or value > hi:
            raise self.error(key, f"{value} out of range ({'(' if lo_open else '['}{lo}, {hi}])")
        return value


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true/false", dict: "a table",
             list: "an array", datetime: "a date-time"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


_TOP_KEYS = {"name", "description", "start", "duration", "step", "seed", "hosts"}
_HOST_KEYS = {"name", "preset", "xen", "sockets", "cdp", "mba", "memory", "vms"}
_VM_KEYS = {"name", "profile", "curve", "apki", "cpi0", "mlp", "writeback", "vcpus", "priority", "remote",
            "memory", "socket", "domid", "cbm", "code_cbm", "data_cbm", "l2_cbm", "mba_thrtl", "attached",
            "noise", "phases", "keep_profile_phases", "mask_changes", "count"}
_CURVE_KEYS = {"alpha", "ws", "floor", "c0"}
_PHASE_KEYS = {"kind", "low", "high", "peak", "level", "start", "end", "every", "length", "per_day", "factor"}
_CHANGE_KEYS = {"at", "cbm", "code_cbm", "data_cbm"}


def load_scenario(path: Path, *, seed: int | None = None) -> Scenario:
    """Read and validate a scenario file; `seed` overrides the file's. Errors: one ConfigError."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read scenario: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    return parse_scenario(data, source=str(path), seed=seed, default_name=path.stem)


def parse_scenario(data: dict[str, Any], *, source: str = "<scenario>", seed: int | None = None,
                   default_name: str = "scenario") -> Scenario:
    """`load_scenario` for an already-parsed TOML document (used by tests and benchmarks)."""
    w = _Where(source)
    w.only(data, _TOP_KEYS)
    name = w.get(data, "name", str, default_name)
    description = w.get(data, "description", str, "")
    duration = w.duration(data, "duration", timedelta(days=1))
    pinned = "start" in data
    start = _start(w, data["start"]) if pinned else recent_start(duration)
    step = w.duration(data, "step", timedelta(minutes=5))
    if step <= timedelta(0) or duration < step:
        raise w.error("step", f"step {step} must be positive and no longer than duration {duration}")
    file_seed = w.get(data, "seed", int, 0)
    seed = file_seed if seed is None else seed
    hosts_data = w.get(data, "hosts", list)
    if not hosts_data or not all(isinstance(h, dict) for h in hosts_data):
        raise w.error("hosts", "needs at least one [[hosts]] table")
    hosts = []
    for i, h in enumerate(hosts_data):
        label = h.get("name") if isinstance(h.get("name"), str) else None
        hosts.append(_host(w.sub("hosts").sub(i, label), h, seed))
    names = [h.name for h in hosts]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise w.sub("hosts").sub(i).error("name", f"duplicate host name {n!r}")
    return Scenario(name=name, description=description, start=start, duration=duration, step=step,
                    seed=seed, hosts=tuple(hosts), source=source, pinned=pinned)


def _start(w: _Where, value: Any) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime.combine(value, time())
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise w.error("start", f"not an ISO date-time: {value!r}") from None
    else:
        raise w.error("start", f"expected a date-time, got {value!r}")
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _host(w: _Where, data: dict, seed: int) -> HostSpec:
    w.only(data, _HOST_KEYS)
    name = w.get(data, "name", str)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise w.error("name", f"not a host name: {name!r}")
    try:
        preset = presets.get(w.get(data, "preset", str))
    except ConfigError as e:
        raise w.error("preset", str(e)) from None
    xen = w.get(data, "xen", str, "4.19.1")
    try:
        version = _xen_version(xen)
    except ValueError as e:
        raise w.error("xen", str(e)) from None
    if version < (4, 5):
        raise w.error("xen", f"Xen {xen} has no xl psr-* commands (4.5 or later)")
    sockets_raw = data.get("sockets", 2)
    if isinstance(sockets_raw, int) and not isinstance(sockets_raw, bool) and 1 <= sockets_raw <= 8:
        sockets = tuple(range(sockets_raw))
    elif (isinstance(sockets_raw, list) and sockets_raw and len(set(sockets_raw)) == len(sockets_raw)
          and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 64 for s in sockets_raw)):
        sockets = tuple(sorted(sockets_raw))
    else:
        raise w.error("sockets", f"expected a count 1-8 or a list of distinct ids, got {sockets_raw!r}")
    cdp = w.get(data, "cdp", bool, False)
    mba = w.get(data, "mba", bool, False)
    if cdp and not preset.cdp:
        raise w.error("cdp", f"preset {preset.name} has no CDP")
    if cdp and version < (4, 7):
        raise w.error("cdp", f"CDP needs Xen 4.7 or later (host runs {xen})")
    if cdp and not preset.l3_cat:
        raise w.error("cdp", f"preset {preset.name} has no L3 CAT")
    if mba and not preset.mba:
        raise w.error("mba", f"preset {preset.name} has no MBA")
    if mba and version < (4, 11):
        raise w.error("mba", f"MBA needs Xen 4.11 or later (host runs {xen})")
    host_memory = w.size(data, "memory", None)
    shell = HostSpec(name=name, xen=xen, preset=preset, sockets=sockets, cdp=cdp, mba=mba, vms=(),
                     memory_bytes=0)
    vms_data = w.get(data, "vms", list, [])
    if not all(isinstance(v, dict) for v in vms_data):
        raise w.error("vms", "must be an array of tables ([[hosts.vms]])")
    vms: list[VmSpec] = []
    load: dict[int, int] = dict.fromkeys(sockets, 0)   # vCPUs per socket, for default placement
    used_domids: set[int] = set()
    explicit = {v.get("domid") for v in vms_data if isinstance(v.get("domid"), int)}
    next_domid = 1
    for i, vdata in enumerate(vms_data):
        label = vdata.get("name") if isinstance(vdata.get("name"), str) else None
        vw = w.sub("vms").sub(i, label)
        count = vw.get(vdata, "count", int, 1)
        if not 1 <= count <= 10000:
            raise vw.error("count", f"must be 1-10000, not {count}")
        if count > 1 and "domid" in vdata:
            raise vw.error("domid", "cannot be given with count > 1 (domids are assigned in order)")
        base = vw.get(vdata, "name", str)
        for k in range(1, count + 1):
            if count > 1 or "{" in base:
                try:
                    vname = base.format(i=k) if "{" in base else f"{base}-{k}"
                except (KeyError, IndexError, ValueError) as e:
                    raise vw.error("name", f"bad name template {base!r}: {e}") from None
            else:
                vname = base
            if "domid" in vdata:
                domid = vw.get(vdata, "domid", int)
            else:
                while next_domid in explicit or next_domid in used_domids:
                    next_domid += 1
                domid = 0 if vname == DOM0_NAME else next_domid
            spec = _vm(vw, vdata, shell, vname, domid, load, seed)
            if spec.domid in used_domids:
                raise vw.error("domid", f"domid {spec.domid} used twice on host {name}")
            if not 0 <= spec.domid < 32752:
                raise vw.error("domid", f"domid {spec.domid} out of range (0-32751)")
            if (spec.domid == 0) != (spec.name == DOM0_NAME):
                raise vw.error("name" if spec.domid == 0 else "domid",
                               f"domid 0 is {DOM0_NAME!r} and only it (got {spec.name!r}, {spec.domid})")
            if any(v.name == spec.name for v in vms):
                raise vw.error("name", f"duplicate VM name {spec.name!r} on host {name}")
            used_domids.add(spec.domid)
            load[spec.socket] += spec.vm.vcpus
            vms.append(spec)
    if 0 not in used_domids:
        vms.insert(0, _vm(w.sub("dom0"), {"profile": "dom0", "socket": sockets[0]}, shell, DOM0_NAME, 0,
                          load, seed))
    vms.sort(key=lambda v: v.domid)
    total = sum(v.memory_bytes for v in vms)
    if host_memory is None:
        host_memory = max(64 * GIB * len(sockets), -(-int(total * 1.25) // (64 * GIB)) * 64 * GIB)
    elif total > host_memory:
        raise w.error("memory", f"VMs need {total / GIB:.1f} GiB, the host has {host_memory / GIB:.1f} GiB")
    host = replace(shell, vms=tuple(vms), memory_bytes=int(host_memory))
    _check_budgets(w, host)
    return host


def _mask_value(w: _Where, data: dict, key: str, ways: int, allow_default: bool = False) -> int | None:
    if key not in data:
        return None
    value = data[key]
    if allow_default and value == "default":
        return None
    try:
        mask = parse_mask(value)
    except ValueError:
        hint = 'hex like "0x7f0"' + (' or "default"' if allow_default else "")
        raise w.error(key, f"not a mask: {value!r} ({hint})") from None
    reason = mask_error(mask, ways)
    if reason:
        raise w.error(key, reason)
    return mask


def _l3_state(w: _Where, data: dict, host: HostSpec, before: tuple[int | None, int | None, int | None],
              change: bool) -> tuple[int | None, int | None, int | None]:
    """(cbm, code_cbm, data_cbm) from the keys of `data`, normalised for the host's CDP mode."""
    ways = host.preset.ways
    cbm = _mask_value(w, data, "cbm", ways, allow_default=True)
    code = _mask_value(w, data, "code_cbm", ways, allow_default=True)
    dat = _mask_value(w, data, "data_cbm", ways, allow_default=True)
    if not host.preset.l3_cat and any(k in data for k in ("cbm", "code_cbm", "data_cbm")):
        raise w.error("cbm", f"preset {host.preset.name} has no L3 CAT")
    if any(k in data for k in ("cbm", "code_cbm", "data_cbm")) and host.xen_major_minor < (4, 6):
        raise w.error("cbm", f"L3 CAT needs Xen 4.6 or later (host runs {host.xen})")
    for key in ("code_cbm", "data_cbm"):
        if key in data and not host.cdp:
            raise w.error(key, "code/data masks need CDP on (set cdp = true on the host)")
    if not host.cdp:
        return cbm, None, None
    if "cbm" in data and ("code_cbm" in data or "data_cbm" in data):
        raise w.error("cbm", "give either cbm (sets both halves) or code_cbm/data_cbm")
    if "cbm" in data:
        return None, cbm, cbm
    if change and not ("code_cbm" in data or "data_cbm" in data):
        return None, None, None                       # a change with no mask: back to default
    _, code0, data0 = before
    return None, code if "code_cbm" in data else code0, dat if "data_cbm" in data else data0


def _phase(w: _Where, data: dict) -> Phase:
    w.only(data, _PHASE_KEYS)
    kind = w.get(data, "kind", str)
    if kind not in KINDS:
        raise w.error("kind", f"unknown phase kind {kind!r} (one of {', '.join(KINDS)})")
    kwargs: dict[str, Any] = {"kind": kind}
    for key in ("low", "high", "level"):
        if key in data:
            kwargs[key] = w.number(data, key, None, 0.0, 1.0)
    if "per_day" in data:
        kwargs["per_day"] = w.number(data, "per_day", None, 0.0, 1e4)
    if "factor" in data:
        kwargs["factor"] = w.number(data, "factor", None, 0.0, 1e3, lo_open=True)
    if "peak" in data:
        peak = data["peak"]
        if isinstance(peak, str) and re.fullmatch(r"\d{1,2}:\d{2}", peak):
            hh, mm = map(int, peak.split(":"))
            kwargs["peak"] = hh + mm / 60
        elif isinstance(peak, time):
            kwargs["peak"] = peak.hour + peak.minute / 60
        elif isinstance(peak, (int, float)) and not isinstance(peak, bool):
            kwargs["peak"] = float(peak)
        else:
            raise w.error("peak", f"expected \"HH:MM\" (UTC) or an hour, got {peak!r}")
    for key in ("start", "end", "every", "length"):
        if key in data:
            kwargs[key] = w.duration(data, key)
    try:
        return Phase(**kwargs)
    except ValueError as e:
        raise w.error(None, str(e)) from None


def _vm(w: _Where, data: dict, host: HostSpec, name: str, domid: int, load: dict[int, int],
        seed: int) -> VmSpec:
    w.only(data, _VM_KEYS)
    preset = host.preset
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise w.error("name", f"not a valid domain name: {name!r}")
    profile = w.get(data, "profile", str, "custom" if "curve" in data else ...)
    if profile != "custom" and profile not in profiles.PROFILES:
        known = ", ".join(sorted(profiles.PROFILES))
        raise w.error("profile", f"unknown profile {profile!r} (known: {known})")
    rng = py_rng(seed, host.name, name)
    overrides: dict[str, Any] = {}
    curve = w.get(data, "curve", dict, None)
    if curve is not None:
        cw = w.sub("curve")
        cw.only(curve, _CURVE_KEYS)
        if profile == "custom":
            for key in ("alpha", "ws"):
                cw.get(curve, key, (int, float, str))
        if "alpha" in curve:
            overrides["alpha"] = cw.number(curve, "alpha", None, 0.0, 5.0)
        if "floor" in curve:
            overrides["floor"] = cw.number(curve, "floor", None, 0.0, 1.0, lo_open=True)
        if "ws" in curve:
            overrides["ws_bytes"] = cw.size(curve, "ws")
        if "c0" in curve:
            overrides["c0_bytes"] = cw.size(curve, "c0")
    if profile == "custom" and "apki" not in data:
        raise w.error("apki", "required with an explicit curve and no profile")
    for key, lo, hi, lo_open in (("apki", 0.0, 1000.0, False), ("cpi0", 0.0, 100.0, True),
                                 ("mlp", 0.0, 64.0, True), ("writeback", 0.0, 2.0, False),
                                 ("priority", 0.0, 1e3, True), ("remote", 0.0, 1.0, False)):
        if key in data:
            overrides[key] = w.number(data, key, None, lo, hi, lo_open)
    if "vcpus" in data:
        vcpus = w.get(data, "vcpus", int)
        if not 1 <= vcpus <= 512:
            raise w.error("vcpus", f"must be 1-512, not {vcpus}")
        overrides["vcpus"] = vcpus
    base_profile = "web" if profile == "custom" else profile   # a custom VM draws its defaults from web
    try:
        vm = profiles.make_vm(base_profile, name, rng, **overrides)
        ex = profiles.extras(base_profile, rng)
    except ConfigError as e:
        raise w.error(None, str(e)) from None
    memory = int(w.size(data, "memory", ex.memory_bytes))
    if "socket" in data:
        sock = w.get(data, "socket", int)
        if sock not in host.sockets:
            raise w.error("socket", f"socket {sock} does not exist on {host.name} "
                                    f"(sockets {list(host.sockets)})")
    else:
        sock = min(host.sockets, key=lambda s: (load[s], s))
    # Phases: the file's replace the profile's unless keep_profile_phases.
    phase_data = w.get(data, "phases", list, None)
    if phase_data is None:
        phases = ex.phases
    else:
        if not all(isinstance(p, dict) for p in phase_data):
            raise w.error("phases", "must be an array of tables ([[hosts.vms.phases]])")
        phases = tuple(_phase(w.sub("phases").sub(j), p) for j, p in enumerate(phase_data))
        if w.get(data, "keep_profile_phases", bool, False):
            phases = ex.phases + phases
    noise = w.number(data, "noise", ex.noise, 0.0, 2.0)
    # Masks.
    cbm, code, dat = _l3_state(w, data, host, (None, None, None), change=False)
    l2 = _mask_value(w, data, "l2_cbm", preset.l2_ways or 64)
    if l2 is not None and not host.l2:
        raise w.error("l2_cbm", f"L2 CAT needs a part with it and Xen 4.10+ ({preset.name}, Xen {host.xen})")
    thrtl = None
    if "mba_thrtl" in data:
        if not host.mba:
            raise w.error("mba_thrtl", "MBA is off on this host (set mba = true)")
        raw = w.get(data, "mba_thrtl", int)
        thrtl = sanitize_thrtl(raw, preset)
        if thrtl is None:
            raise w.error("mba_thrtl", f"{raw} rejected by Xen (0 .. {preset.mba_thrtl_max} after rounding)")
    changes = []
    state = (cbm, code, dat)
    change_data = w.get(data, "mask_changes", list, [])
    if not all(isinstance(c, dict) for c in change_data):
        raise w.error("mask_changes", "must be an array of tables ([[hosts.vms.mask_changes]])")
    for j, cdata in sorted(enumerate(change_data), key=lambda jc: _at_key(w.sub("mask_changes").sub(jc[0]),
                                                                        jc[1])):
        cw = w.sub("mask_changes").sub(j)
        cw.only(cdata, _CHANGE_KEYS)
        at = cw.duration(cdata, "at")
        state = _l3_state(cw, cdata, host, state, change=True)
        changes.append(MaskChange(at, *state))
    attached_default = preset.cmt
    attached = w.get(data, "attached", bool, attached_default)
    if attached and not preset.cmt:
        raise w.error("attached", f"preset {preset.name} has no CMT")
    if attached and host.xen_major_minor < (4, 5):
        raise w.error("attached", "CMT needs Xen 4.5 or later")
    return VmSpec(name=name, domid=domid, socket=sock, profile=profile, vm=vm, memory_bytes=memory,
                  cbm=cbm, code_cbm=code, data_cbm=dat, l2_cbm=l2, mba_thrtl=thrtl, attached=attached,
                  phases=phases, mask_changes=tuple(changes), noise=noise)


def _at_key(w: _Where, data: dict) -> timedelta:
    return w.duration(data, "at")


def sanitize_thrtl(value: int, preset: presets.Preset) -> int | None:
    """What Xen stores for ``psr-mba-set VALUE`` (``mba_sanitize_thrtl``), or None if it rejects it."""
    if preset.mba_thrtl_max is None or value < 0:
        return None
    if preset.mba_linear:
        value -= value % (100 - preset.mba_thrtl_max)
    elif value > 0:
        value = 1 << (value.bit_length() - 1)
    return value if value <= preset.mba_thrtl_max else None


def cos_key(vm: VmSpec, l3: tuple[int | None, int | None, int | None]) -> tuple | None:
    """The settings that make up `vm`'s COS with L3 state ``(cbm, code_cbm, data_cbm)``, or
    None at the default (COS 0). Xen 4.10+ shares one COS id across L3, L2 and MBA, so a COS
    is one distinct combination."""
    key = (*l3, vm.l2_cbm, vm.mba_thrtl or None)
    return key if any(x is not None for x in key) else None


def _check_budgets(w: _Where, host: HostSpec) -> None:
    """Xen's COS limit: distinct non-default settings per socket (``no free COS available``).

    RMIDs are not checked: more `attached` domains than ``Total RMID`` is a real situation
    (``psr-cmt-attach`` fails with ``no free RMID available`` for the late ones), which the
    measurement model renders.
    """
    for sock in host.sockets:
        vms = [host.vms[i] for i in host.socket_vms(sock)]
        moments = sorted({timedelta(0)} | {c.at for v in vms for c in v.mask_changes})
        for t in moments:
            states = [(v, v.masks_at(t, host.preset.ways)) for v in vms]
            settings = {cos_key(v, (m.cbm, m.code_cbm, m.data_cbm)) for v, m in states} - {None}
            if len(settings) > host.cos_budget:
                raise w.error("vms", f"socket {sock} needs {len(settings)} distinct COS at +{t}, "
                                     f"Xen has {host.cos_budget} (\"no free COS available\")")
