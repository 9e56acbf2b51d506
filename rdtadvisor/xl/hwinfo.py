"""`xl psr-hwinfo [-m|--cmt] [-a|--cat] [-b|--mba]`: which RDT features a host has, per socket.

Format (Xen 4.11 ... today, ``tools/xl/xl_psr.c``; ``docs/xl-formats.md``, psr-hwinfo), sections in
this order, with no blank lines between sections or sockets::

    printf("Cache Monitoring Technology (CMT):\\n");
    printf("%-16s: %s\\n", "Enabled", enabled ? "1" : "0");       /* stops here if 0 */
    printf("%-16s: %u\\n", "Total RMID", total_rmid);              /* absent if the read failed */
    printf("Supported monitor types:\\n");  then bare words, one a line:
        cache-occupancy / total-mem-bandwidth / local-mem-bandwidth
    printf("Cache Allocation Technology (CAT):\\n");               /* L3; then per online socket: */
    printf("%-16s: %u\\n", "Socket ID", id);
    printf("%-16s: %uKB\\n", "L3 Cache", kib);                      /* no space before KB; KiB */
    printf("%-16s: %s\\n", "CDP Status", "Enabled"|"Disabled");    /* 4.7+ only */
    printf("%-16s: %u\\n", "Maximum COS", cos_max);
    printf("%-16s: %u\\n", "CBM length", cbm_len);
    printf("%-16s: %#llx\\n", "Default CBM", (1ull << cbm_len) - 1);
    printf("Cache Allocation Technology (CAT): L2\\n");            /* 4.10+; per socket: */
        Socket ID, Maximum COS, CBM length, Default CBM             /* same %-16s keys */
    printf("Memory Bandwidth Allocation (MBA):\\n");               /* 4.11+; per socket: */
    printf("Socket ID               : %u\\n", id);                 /* keys padded to 24 */
    printf("Linear Mode             : %s\\n", "Enabled"|"Disabled");
    printf("Maximum COS             : %u\\n", cos_max);
    printf("Maximum Throttling Value: %u\\n", thrtl_max);
    printf("Default Throttling Value: %u\\n", 0);

Quirks handled here:

* The lines are not uniform ``key: value``: ``Cache Allocation Technology (CAT): L2`` is a
  header containing ``": "``, and ``Supported monitor types:`` is followed by bare words.
  Key padding is 16, but 24 for MBA; keys are split on the first ``:`` and trimmed.
* Each socket block starts at ``Socket ID``; socket ids are the *online* sockets and may be
  non-contiguous (0, 2).
* Since 4.10 an absent CAT/MBA feature prints nothing at all, not even its header, and no
  message. The CMT header and ``Enabled`` line are always printed when CMT is asked for, so
  empty output comes from ``--cat``/``--mba`` on a host without those features: a valid
  answer (with a warning).
* 4.6 - 4.9 print the L3 header *before* fetching, so a failed fetch leaves a bare
  ``Cache Allocation Technology (CAT):`` (stderr said ``Failed to get cat info``). Every
  version leaves the same bare header when the L3 size (a CMT sysctl) cannot be read:
  ``psr=cat`` without ``psr=cmt``. Both become a warning, never a crash.
* 4.6 has no ``CDP Status`` line: ``cdp`` is then None.
* CMT disabled prints ``Enabled         : 0`` only (``total_rmid`` None).
* The exit status only reflects the last section; this parser never looks at it.
* Captures made with ``2>&1``: xl's error texts (`rdtadvisor.xl.failures`) may appear
  anywhere (stderr is unbuffered, so usually first). Alongside data they become warnings;
  as the only output they raise `XlReportedError`.
* Unknown keys, monitor types or section headers (a future Xen) become warnings.
* CRLF line endings are accepted.

Schema (``HwInfo.to_dict()``)::

    {"cmt": {"enabled": bool, "total_rmid": int|null, "monitor_types": [str]} | null,
     "l3_cat": [{"socket": int, "cache_bytes": int|null, "cdp": bool|null, "cos_max": int,
                 "cbm_len": int, "default_cbm": "0x.."}],
     "l2_cat": [... same keys; cache_bytes and cdp null],
     "mba": [{"socket": int, "linear": bool, "cos_max": int, "thrtl_max": int}],
     "warnings": [str]}

``cache_bytes`` is bytes (xl's ``KB`` is KiB). ``cos_max`` and ``total_rmid`` are highest
*indices* (index 0 is reserved), which equal the usable counts; ``cos_max`` is already
halved under CDP. ``default_cbm`` is computed by xl from ``cbm_len``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rdtadvisor.core.errors import ParseError
from rdtadvisor.core.text import from_bytes, raw_bytes
from rdtadvisor.core.units import KIB
from rdtadvisor.xl import failures

COMMAND = "psr-hwinfo"

HEADER_CMT = "Cache Monitoring Technology (CMT):"
HEADER_L3 = "Cache Allocation Technology (CAT):"
HEADER_L2 = "Cache Allocation Technology (CAT): L2"
HEADER_MBA = "Memory Bandwidth Allocation (MBA):"
MONITOR_TYPES_LINE = "Supported monitor types:"
MONITOR_TYPES = ("cache-occupancy", "total-mem-bandwidth", "local-mem-bandwidth")

_SECTIONS = {HEADER_CMT: "cmt", HEADER_L3: "l3_cat", HEADER_L2: "l2_cat", HEADER_MBA: "mba"}
_TITLES = {"cmt": "CMT", "l3_cat": "L3 CAT", "l2_cat": "L2 CAT", "mba": "MBA"}

# Warnings with a fixed text (tests and `render` recognise them).
EMPTY_WARNING = ("empty output: xl printed no section (on Xen 4.10+ the features asked for are absent "
                 "or not enabled: check psr= on the Xen command line, or xl's stderr)")
L3_EMPTY_WARNING = ("L3 CAT header printed but no socket followed: xl could not read the CAT info "
                    "or the L3 cache size (needs psr=cmt); see xl's stderr")

# Keys each per-socket section prints, in order; all required except _OPTIONAL.
_KEYS: dict[str, tuple[str, ...]] = {
    "l3_cat": ("Socket ID", "L3 Cache", "CDP Status", "Maximum COS", "CBM length", "Default CBM"),
    "l2_cat": ("Socket ID", "Maximum COS", "CBM length", "Default CBM"),
    "mba": ("Socket ID", "Linear Mode", "Maximum COS", "Maximum Throttling Value",
            "Default Throttling Value"),
}
_OPTIONAL = {"L3 Cache", "CDP Status"}   # CDP Status: absent on 4.6; L3 Cache: warned in _cats()
_CMT_KEYS = ("Enabled", "Total RMID")

_KEY_RE = re.compile(r"[A-Za-z][A-Za-z0-9 ()/._-]*", re.ASCII)
_WORD_RE = re.compile(r"[a-z0-9][a-z0-9_-]*", re.ASCII)
_UINT_RE = re.compile(r"\d{1,20}", re.ASCII)
_KB_RE = re.compile(r"(\d{1,20}) ?KB", re.ASCII)
_HEX_RE = re.compile(r"0[xX][0-9a-fA-F]{1,16}|0", re.ASCII)
# Looks like a section header of a Xen we do not know: "Some Words (ABC):" [suffix].
_UNKNOWN_HEADER_RE = re.compile(r"[A-Z][A-Za-z0-9 ]*\([A-Z0-9]{2,}\):(?: \S.*)?", re.ASCII)
_ENABLED = {"Enabled": True, "Disabled": False}


@dataclass(frozen=True)
class CmtInfo:
    """The CMT section. ``total_rmid`` is None when CMT is disabled (or its read failed)."""

    enabled: bool
    total_rmid: int | None
    monitor_types: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "total_rmid": self.total_rmid,
                "monitor_types": list(self.monitor_types)}


@dataclass(frozen=True)
class CatInfo:
    """One socket of the L3 or L2 CAT section.

    ``cache_bytes`` [B]: L3 only (``L3 Cache : 25600KB``); None for L2. ``cdp``: None for
    L2 and on Xen 4.6 (no ``CDP Status`` line). ``cos_max`` is halved under CDP.
    """

    socket: int
    cache_bytes: int | None
    cdp: bool | None
    cos_max: int
    cbm_len: int
    default_cbm: int

    def to_dict(self) -> dict[str, Any]:
        return {"socket": self.socket, "cache_bytes": self.cache_bytes, "cdp": self.cdp,
                "cos_max": self.cos_max, "cbm_len": self.cbm_len, "default_cbm": hex(self.default_cbm)}


@dataclass(frozen=True)
class MbaInfo:
    """One socket of the MBA section (4.11+). ``thrtl_max`` is in percent when ``linear``."""

    socket: int
    linear: bool
    cos_max: int
    thrtl_max: int

    def to_dict(self) -> dict[str, Any]:
        return {"socket": self.socket, "linear": self.linear, "cos_max": self.cos_max,
                "thrtl_max": self.thrtl_max}


@dataclass(frozen=True)
class HwInfo:
    """One parsed ``xl psr-hwinfo``. Absent sections are None / empty tuples."""

    cmt: CmtInfo | None
    l3_cat: tuple[CatInfo, ...]
    l2_cat: tuple[CatInfo, ...]
    mba: tuple[MbaInfo, ...]
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract (module docstring)."""
        return {
            "cmt": None if self.cmt is None else self.cmt.to_dict(),
            "l3_cat": [c.to_dict() for c in self.l3_cat],
            "l2_cat": [c.to_dict() for c in self.l2_cat],
            "mba": [m.to_dict() for m in self.mba],
            "warnings": list(self.warnings),
        }

    def table_rows(self) -> list[dict[str, Any]]:
        """Flat rows for ``--format table``: one per feature and socket, all with the same keys.

        The CMT row has ``socket`` None; keys a feature does not have are None.
        """
        blank = dict.fromkeys(("feature", "socket", "enabled", "total_rmid", "monitor_types",
                               "cache_bytes", "cdp", "cos_max", "cbm_len", "default_cbm",
                               "linear", "thrtl_max"))
        rows = []
        if self.cmt is not None:
            rows.append(dict(blank, feature="cmt", enabled=self.cmt.enabled, total_rmid=self.cmt.total_rmid,
                             monitor_types=",".join(self.cmt.monitor_types)))
        for feature, cats in (("l3_cat", self.l3_cat), ("l2_cat", self.l2_cat)):
            rows += [dict(blank, feature=feature, **c.to_dict()) for c in cats]
        rows += [dict(blank, feature="mba", **m.to_dict()) for m in self.mba]
        return rows


# --- parsing ------------------------------------------------------------------------------

@dataclass
class _Value:
    value: str
    lineno: int
    line: str


@dataclass
class _Section:
    name: str
    lineno: int
    line: str
    blocks: list[dict[str, _Value]] = field(default_factory=list)   # per socket (CAT/MBA)
    keys: dict[str, _Value] = field(default_factory=dict)           # CMT
    types: list[str] | None = None                                   # CMT: after the types line


def parse(text: str | bytes, *, source: str = "<stdin>") -> HwInfo:
    """Parse one captured stdout of ``xl psr-hwinfo`` (any flags, Xen 4.6 ... today).

    Raises `ParseError` naming `source`, the line number and the line for anything that is
    not this format, or `XlReportedError` when the output is only xl's own error texts.
    """
    data = from_bytes(raw_bytes(text))  # names and values in the escaped form of core.text
    lines = data.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    warnings: list[str] = []
    sections: dict[str, _Section] = {}
    current: _Section | None = None
    unknown_section = False
    first_failure: tuple[failures.Failure, int, str] | None = None

    for i, raw in enumerate(lines):
        lineno = i + 1
        line = raw.rstrip("\r").rstrip(" \t")
        if not line.strip():
            continue
        name = _SECTIONS.get(line)
        if name is not None:
            if name in sections:
                raise ParseError(f"the {_TITLES[name]} section is printed twice", source=source,
                                 lineno=lineno, line=line)
            current = sections[name] = _Section(name, lineno, line)
            unknown_section = False
            continue
        failure = failures.classify(line)
        if failure is not None:
            if failure.kind == "usage" and not sections:
                raise failures.reported(failure, source=source, lineno=lineno, line=line)
            first_failure = first_failure or (failure, lineno, line)
            warnings.append(f"xl: {failure.message}")
            continue
        if _UNKNOWN_HEADER_RE.fullmatch(line):
            # A section of a newer Xen: skip its lines (warn once) rather than fail.
            warnings.append(f"line {lineno}: unknown section {line!r} skipped (newer Xen?)")
            current, unknown_section = None, True
            continue
        if unknown_section:
            continue
        if current is None:
            raise ParseError("expected a section header such as 'Cache Monitoring Technology (CMT):' "
                             "(is this xl psr-hwinfo output?)", source=source, lineno=lineno, line=line)
        if current.name == "cmt":
            _cmt_line(current, line, lineno, warnings, source)
        else:
            _socket_line(current, line, lineno, warnings, source)

    if not sections:
        if first_failure is not None:
            failure, lineno, line = first_failure
            raise failures.reported(failure, source=source, lineno=lineno, line=line)
        if unknown_section:
            return HwInfo(None, (), (), (), tuple(warnings))
        return HwInfo(None, (), (), (), (EMPTY_WARNING,))

    cmt = _cmt(sections["cmt"], warnings, source) if "cmt" in sections else None
    l3 = _cats(sections.get("l3_cat"), warnings, source)
    l2 = _cats(sections.get("l2_cat"), warnings, source)
    mba = _mbas(sections.get("mba"), warnings, source)
    return HwInfo(cmt, l3, l2, mba, tuple(warnings))


def _split(line: str, lineno: int, source: str) -> tuple[str, str]:
    key, sep, value = line.partition(":")
    key = key.strip()
    if not sep or not _KEY_RE.fullmatch(key):
        raise ParseError("not a 'key : value' line", source=source, lineno=lineno, line=line)
    return key, value.strip()


def _cmt_line(sec: _Section, line: str, lineno: int, warnings: list[str], source: str) -> None:
    if line == MONITOR_TYPES_LINE:
        if sec.types is not None:
            raise ParseError("'Supported monitor types:' printed twice", source=source, lineno=lineno,
                             line=line)
        sec.types = []
        return
    if sec.types is not None and ":" not in line:
        if not _WORD_RE.fullmatch(line):
            raise ParseError("not a monitor type", source=source, lineno=lineno, line=line)
        if line in sec.types:
            raise ParseError(f"monitor type {line!r} listed twice", source=source, lineno=lineno, line=line)
        if line not in MONITOR_TYPES:
            warnings.append(f"line {lineno}: unknown monitor type {line!r} (newer Xen?)")
        sec.types.append(line)
        return
    key, value = _split(line, lineno, source)
    if key not in _CMT_KEYS:
        warnings.append(f"line {lineno}: unknown key {key!r} in the CMT section (newer Xen?)")
        return
    if key in sec.keys:
        raise ParseError(f"{key!r} printed twice in the CMT section", source=source, lineno=lineno, line=line)
    sec.keys[key] = _Value(value, lineno, line)


def _socket_line(sec: _Section, line: str, lineno: int, warnings: list[str], source: str) -> None:
    key, value = _split(line, lineno, source)
    title = _TITLES[sec.name]
    if key not in _KEYS[sec.name]:
        warnings.append(f"line {lineno}: unknown key {key!r} in the {title} section (newer Xen?)")
        return
    if key == "Socket ID":
        sec.blocks.append({})
    elif not sec.blocks:
        raise ParseError(f"{key!r} before any 'Socket ID' in the {title} section", source=source,
                         lineno=lineno, line=line)
    block = sec.blocks[-1]
    if key in block:
        raise ParseError(f"{key!r} printed twice for one socket", source=source, lineno=lineno, line=line)
    block[key] = _Value(value, lineno, line)


def _uint(v: _Value, source: str) -> int:
    if not _UINT_RE.fullmatch(v.value):
        raise ParseError("expected an unsigned number", source=source, lineno=v.lineno, line=v.line)
    return int(v.value)


def _flag(v: _Value, source: str) -> bool:
    if v.value not in _ENABLED:
        raise ParseError("expected 'Enabled' or 'Disabled'", source=source, lineno=v.lineno, line=v.line)
    return _ENABLED[v.value]


def _cmt(sec: _Section, warnings: list[str], source: str) -> CmtInfo:
    if "Enabled" not in sec.keys:
        raise ParseError("the CMT section has no 'Enabled' line (truncated output?)", source=source,
                         lineno=sec.lineno, line=sec.line)
    v = sec.keys["Enabled"]
    if v.value not in ("0", "1"):
        raise ParseError("expected 'Enabled' to be 0 or 1", source=source, lineno=v.lineno, line=v.line)
    enabled = v.value == "1"
    total = _uint(sec.keys["Total RMID"], source) if "Total RMID" in sec.keys else None
    if enabled and total is None:
        warnings.append("CMT is enabled but no 'Total RMID' was printed (xl: Failed to get max RMID value)")
    elif enabled and sec.types is None:
        warnings.append("CMT is enabled but no 'Supported monitor types:' list was printed (truncated?)")
    return CmtInfo(enabled, total, tuple(sec.types or ()))


def _block_start(sec: _Section, block: dict[str, _Value], source: str) -> tuple[int, _Value]:
    sid = block["Socket ID"]
    for key in _KEYS[sec.name]:
        if key not in block and key not in _OPTIONAL:
            raise ParseError(f"socket {sid.value}: no {key!r} line in the {_TITLES[sec.name]} section "
                             "(truncated output?)", source=source, lineno=sid.lineno, line=sid.line)
    return _uint(sid, source), sid


def _unique(sec: _Section, socket: int, sid: _Value, seen: set[int], source: str) -> None:
    if socket in seen:
        raise ParseError(f"socket {socket} listed twice in the {_TITLES[sec.name]} section", source=source,
                         lineno=sid.lineno, line=sid.line)
    seen.add(socket)


def _cats(sec: _Section | None, warnings: list[str], source: str) -> tuple[CatInfo, ...]:
    if sec is None:
        return ()
    if not sec.blocks:
        warnings.append(L3_EMPTY_WARNING if sec.name == "l3_cat" else
                        f"{_TITLES[sec.name]} header printed but no socket followed")
        return ()
    out, seen = [], set()
    for block in sec.blocks:
        socket, sid = _block_start(sec, block, source)
        _unique(sec, socket, sid, seen, source)
        cache = None
        if "L3 Cache" in block:
            v = block["L3 Cache"]
            m = _KB_RE.fullmatch(v.value)
            if m is None:
                raise ParseError("expected a size like '25600KB'", source=source, lineno=v.lineno,
                                 line=v.line)
            cache = int(m.group(1)) * KIB
        elif sec.name == "l3_cat":
            warnings.append(f"socket {socket}: no 'L3 Cache' line in the L3 CAT section")
        cdp = _flag(block["CDP Status"], source) if "CDP Status" in block else None
        cbm_len = _uint(block["CBM length"], source)
        v = block["Default CBM"]
        if not _HEX_RE.fullmatch(v.value):
            raise ParseError("expected a hex mask like '0xfffff'", source=source, lineno=v.lineno,
                             line=v.line)
        default = int(v.value, 16)
        if cbm_len <= 64 and default != (1 << cbm_len) - 1:
            warnings.append(f"socket {socket}: Default CBM {v.value} does not match CBM length {cbm_len}")
        out.append(CatInfo(socket, cache, cdp, _uint(block["Maximum COS"], source), cbm_len, default))
    return tuple(out)


def _mbas(sec: _Section | None, warnings: list[str], source: str) -> tuple[MbaInfo, ...]:
    if sec is None:
        return ()
    if not sec.blocks:
        warnings.append("MBA header printed but no socket followed")
        return ()
    out, seen = [], set()
    for block in sec.blocks:
        socket, sid = _block_start(sec, block, source)
        _unique(sec, socket, sid, seen, source)
        default = _uint(block["Default Throttling Value"], source)
        if default != 0:
            warnings.append(f"socket {socket}: Default Throttling Value is {default}, xl always prints 0")
        out.append(MbaInfo(socket, _flag(block["Linear Mode"], source), _uint(block["Maximum COS"], source),
                           _uint(block["Maximum Throttling Value"], source)))
    return tuple(out)


# --- printing -----------------------------------------------------------------------------

def render(info: HwInfo, *, xen_version: tuple[int, int] = (4, 22)) -> str:
    """Print `info` exactly as ``xl psr-hwinfo`` of `xen_version` would (the inverse of `parse`).

    * ``CDP Status`` is printed when ``cdp`` is not None; Xen before 4.7 has no CDP, so a
      socket with ``cdp`` set is a ValueError there. ``cache_bytes`` None prints no
      ``L3 Cache`` line; sizes are truncated to whole KiB as xl does.
    * L2 CAT needs 4.10 and MBA 4.11 (ValueError otherwise); 4.5 has no psr-hwinfo.
    * An empty L3 section carrying `L3_EMPTY_WARNING` prints its bare header, as xl does.
    * CMT enabled with ``total_rmid`` None stops after ``Enabled`` (the failed RMID read).
    """
    if xen_version < (4, 6):
        raise ValueError("xl psr-hwinfo does not exist before Xen 4.6")
    if info.l2_cat and xen_version < (4, 10):
        raise ValueError("L2 CAT needs Xen 4.10 or later")
    if info.mba and xen_version < (4, 11):
        raise ValueError("MBA needs Xen 4.11 or later")
    out: list[str] = []
    if info.cmt is not None:
        out.append(HEADER_CMT)
        out.append("%-16s: %s" % ("Enabled", "1" if info.cmt.enabled else "0"))
        if info.cmt.enabled and info.cmt.total_rmid is not None:
            out.append("%-16s: %u" % ("Total RMID", info.cmt.total_rmid))
            out.append(MONITOR_TYPES_LINE)
            out.extend(info.cmt.monitor_types)
    if info.l3_cat or L3_EMPTY_WARNING in info.warnings:
        out.append(HEADER_L3)
    for c in info.l3_cat:
        out.append("%-16s: %u" % ("Socket ID", c.socket))
        if c.cache_bytes is not None:
            out.append("%-16s: %uKB" % ("L3 Cache", c.cache_bytes // KIB))
        if c.cdp is not None:
            if xen_version < (4, 7):
                raise ValueError("CDP needs Xen 4.7 or later (4.6 prints no 'CDP Status')")
            out.append("%-16s: %s" % ("CDP Status", "Enabled" if c.cdp else "Disabled"))
        out.extend(_cat_tail(c))
    if info.l2_cat:
        out.append(HEADER_L2)
    for c in info.l2_cat:
        out.append("%-16s: %u" % ("Socket ID", c.socket))
        out.extend(_cat_tail(c))
    if info.mba:
        out.append(HEADER_MBA)
    for m in info.mba:
        out.append("Socket ID               : %u" % m.socket)
        out.append("Linear Mode             : %s" % ("Enabled" if m.linear else "Disabled"))
        out.append("Maximum COS             : %u" % m.cos_max)
        out.append("Maximum Throttling Value: %u" % m.thrtl_max)
        out.append("Default Throttling Value: %u" % 0)
    return "".join(line + "\n" for line in out)


def _cat_tail(c: CatInfo) -> list[str]:
    default = "%#x" % c.default_cbm if c.default_cbm else "0"  # C's %#llx prints 0 as "0"
    return ["%-16s: %u" % ("Maximum COS", c.cos_max), "%-16s: %u" % ("CBM length", c.cbm_len),
            "%-16s: %s" % ("Default CBM", default)]
