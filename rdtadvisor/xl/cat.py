"""`xl psr-cat-show [-l LEVEL] [Domain]`: the cache masks (CBMs) of every domain, per socket.

Format (``docs/xl-formats.md``, psr-cat-show; Xen 4.6 ... today), one block per socket, no blank lines::

    printf("%-16s: %u\\n", "Socket ID", id);
    printf("%-16s: %uKB\\n", "L3 Cache", kib);                      level 3 only
    printf("%-16s: %#llx\\n", "Default CBM", (1ull << cbm_len) - 1);
    printf("%5s%25s%16s\\n", "ID", "NAME", "CBM");                   CDP: "CBM (code)", "CBM (data)"
    per domain:  printf("%5d%25s", domid, name);
                 per column  printf("%#16"PRIx64, cbm)  or  printf("%16s", "error");  printf("\\n");

Example (level 3, RECONSTRUCTED from xl's printf formats)::

    Socket ID       : 0
    L3 Cache        : 25600KB
    Default CBM     : 0xfffff
       ID                     NAME             CBM
        0                 Domain-0         0xfffff
        7               guest-db02           error
       12a-very-long-domain-name-that-exceeds           0xf00

Quirks handled here (the row layout ones in `rdtadvisor.xl._blocks`):

* Every domain is listed; a domain never set shows the socket's default CBM.
* Under CDP there are two columns, **code first**, then data, and no plain CBM.
* ``error`` cells (4.7+) and rows with no value at all (4.6, where a failed read prints
  nothing) give None and a warning naming the domain.
* ``-l 2`` (4.10+) blocks have no ``L3 Cache`` line, so ``cache_bytes`` is None.
* At level 3 the L3 size is read through CMT: without ``psr=cmt`` xl prints ``Socket ID``
  and stops (4.10+), or nothing (4.6 - 4.9). That is a `ParseError` saying so.
* Names of 25+ bytes collide with the ID; names may hold spaces or read ``(null)``.
* ``L3 Cache`` is KiB labelled ``KB``; it becomes bytes.
* xl's error texts alone (``Failed to get info``, ``Failed to get cat info`` (4.6),
  ``Failed to get L3 cat info`` (4.10), ``Failed to get l3 cache size for socket:0``)
  raise `XlReportedError` with the `rdtadvisor.xl.failures` kind; empty output is kind
  ``no-output``.

Schema (``CatTable.to_dict()``, JSON contract version 1)::

    {"level": 3|2,
     "sockets": [{"socket": int, "cache_bytes": int|null, "default_cbm": "0x..", "cdp": bool,
                  "domains": [{"domid": int, "name": str, "cbm": "0x.."|null,
                               "code_cbm": "0x.."|null, "data_cbm": "0x.."|null}]}],
     "warnings": [str]}

``cbm`` is set without CDP, ``code_cbm``/``data_cbm`` under CDP, the others null; a cell
that read ``error`` or was not printed is null too. CBMs are lowercase hex strings.
``cache_bytes`` is bytes, null for L2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rdtadvisor.core.errors import ParseError
from rdtadvisor.core.units import KIB
from rdtadvisor.xl import _blocks

COMMAND = "psr-cat-show"
PLAIN, CDP = ("CBM",), ("CBM (code)", "CBM (data)")

_L3_SIZE = re.compile(r"^([0-9]+) ?KB$")
_HEX = re.compile(r"^(?:0x[0-9A-Fa-f]+|0)$")   # %#x: 0x1f, but 0 for zero

_CMT_HINT = ("the L3 size is read through CMT: xl stops here when Xen was booted without psr=cmt; "
             "boot with psr=cmt,cat or read L2 only with -l 2")
_MISSING_HINTS = {"L3 Cache": _CMT_HINT}
_UNEXPECTED_HINTS = {
    "Default THRTL": "this is psr-mba-show output",
}
_KIND_HINTS = {
    "l3-size-unavailable": _CMT_HINT.replace("xl stops here when", "it fails when"),
    "cmt-disabled": "psr-cat-show at level 3 needs CMT for the L3 size: boot Xen with psr=cmt,cat",
    "info-failed": "CAT is not enabled at this cache level: boot Xen with psr=cat (psr=cdp for CDP) "
                   "and see xl psr-hwinfo",
}


@dataclass(frozen=True)
class CatDomain:
    """One domain's masks on one socket.

    Without CDP `cbm` is set and `code_cbm`/`data_cbm` are None; under CDP the reverse.
    A value xl printed as ``error`` or did not print (Xen 4.6) is None.
    """

    domid: int
    name: str
    cbm: int | None
    code_cbm: int | None
    data_cbm: int | None


@dataclass(frozen=True)
class CatSocket:
    """One socket block.

    cache_bytes : L3 size [B] at level 3, None at level 2 (libxc caches the first
        socket's size, so every socket shows it).
    default_cbm : all-ones mask of ``cbm_len`` bits, computed by xl.
    cdp : the table has code and data columns.
    """

    socket: int
    cache_bytes: int | None
    default_cbm: int
    cdp: bool
    domains: tuple[CatDomain, ...]


@dataclass(frozen=True)
class CatTable:
    """One parsed `psr-cat-show` output: cache `level` (3 or 2) and its socket blocks, in printed order."""

    level: int
    sockets: tuple[CatSocket, ...]
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract (module docstring)."""
        return {
            "level": self.level,
            "sockets": [{
                "socket": s.socket,
                "cache_bytes": s.cache_bytes,
                "default_cbm": _hex(s.default_cbm),
                "cdp": s.cdp,
                "domains": [{"domid": d.domid, "name": d.name, "cbm": _hex(d.cbm),
                             "code_cbm": _hex(d.code_cbm), "data_cbm": _hex(d.data_cbm)}
                            for d in s.domains],
            } for s in self.sockets],
            "warnings": list(self.warnings),
        }

    def table_rows(self) -> list[dict[str, Any]]:
        """Flat rows for `--format table`: one per socket x domain."""
        rows = []
        for s in self.to_dict()["sockets"]:
            head = {"level": self.level, "socket": s["socket"], "cache_bytes": s["cache_bytes"],
                    "default_cbm": s["default_cbm"], "cdp": s["cdp"]}
            rows += [dict(head, **d) for d in s["domains"]]
        return rows


def parse(text: str | bytes, *, level: int = 3, source: str = "<stdin>") -> CatTable:
    """Parse one captured stdout of ``xl psr-cat-show`` (`level` 3) or ``xl psr-cat-show -l 2``.

    `level` must come from the command line: only the ``L3 Cache`` line tells them apart.
    Raises `ParseError` (`XlReportedError` for xl's own error texts) naming `source`,
    the line number and the offending line.
    """
    if level not in (2, 3):
        raise ValueError(f"cache level must be 2 or 3, not {level!r}")
    other = ("is this 'xl psr-cat-show -l 2' output? L2 blocks have no 'L3 Cache' line" if level == 3 else
             "is this level-3 output ('xl psr-cat-show' without -l 2)?")
    tokens = _blocks.tokenize(
        text, keys=("L3 Cache", "Default CBM") if level == 3 else ("Default CBM",), headers=(PLAIN, CDP),
        source=source, command=COMMAND, allow_missing=True, missing_hints=_MISSING_HINTS,
        unexpected_hints={**_UNEXPECTED_HINTS,
                          ("Default CBM" if level == 3 else "L3 Cache"): other},
        kind_hints=_KIND_HINTS)
    warnings = list(tokens.warnings)
    sockets = []
    for block in tokens.blocks:
        cache_bytes = None
        if level == 3:
            key = block.keys["L3 Cache"]
            m = _L3_SIZE.match(key.value)
            if not m:
                raise ParseError("'L3 Cache' is not '<KiB>KB'", source=source, lineno=key.lineno,
                                 line=key.line)
            cache_bytes = int(m.group(1)) * KIB
        key = block.keys["Default CBM"]
        default_cbm = _cbm(key.value, source, key.lineno, key.line, "'Default CBM'")
        cdp = block.columns == CDP
        domains = []
        for row in block.rows:
            values: list[int | None] = [None] * len(block.columns)
            who = f"socket {block.socket}: domain {row.name!r} (id {row.domid})"
            if row.cells is None:
                warnings.append(f"{who}: no CBM printed (Xen 4.6 prints nothing when it cannot read one)")
            else:
                for j, (title, cell) in enumerate(zip(block.columns, row.cells, strict=True)):
                    if cell == "error":
                        warnings.append(f"{who}: xl could not read the {title} and printed 'error'")
                    else:
                        values[j] = _cbm(cell, source, row.lineno, row.line, title)
            if cdp:
                domains.append(CatDomain(row.domid, row.name, None, values[0], values[1]))
            else:
                domains.append(CatDomain(row.domid, row.name, values[0], None, None))
        sockets.append(CatSocket(block.socket, cache_bytes, default_cbm, cdp, tuple(domains)))
    return CatTable(level, tuple(sockets), tuple(warnings))


def _cbm(token: str, source: str, lineno: int, line: str, what: str) -> int:
    if not _HEX.match(token):
        raise ParseError(f"{what} {token!r} is not a hex mask as xl prints it (%#x)", source=source,
                         lineno=lineno, line=line)
    return int(token, 16)


def _hex(value: int | None) -> str | None:
    return None if value is None else f"{value:#x}"


def render(table: CatTable, *, xen_version: tuple[int, int] = (4, 22)) -> str:
    """Print `table` exactly as xl of `xen_version` would (the inverse of `parse`).

    Xen 4.6 prints nothing for a value it could not read (None); 4.7+ prints ``error``.
    Raises ValueError for what that version cannot print: CAT before 4.6, CDP before
    4.7, level 2 before 4.10, or a level-3 socket without ``cache_bytes``.
    """
    if xen_version < (4, 6):
        raise ValueError("Xen before 4.6 has no CAT")
    if table.level == 2 and xen_version < (4, 10):
        raise ValueError("L2 CAT (-l 2) needs Xen 4.10 or later")
    out = []
    for s in table.sockets:
        if s.cdp and xen_version < (4, 7):
            raise ValueError("CDP needs Xen 4.7 or later")
        out.append("%-16s: %u\n" % ("Socket ID", s.socket))
        if table.level == 3:
            if s.cache_bytes is None:
                raise ValueError(f"socket {s.socket}: a level-3 table needs cache_bytes")
            out.append("%-16s: %uKB\n" % ("L3 Cache", s.cache_bytes // KIB))
        out.append("%-16s: %s\n" % ("Default CBM", _blocks.hex_cell(s.default_cbm)))
        columns = CDP if s.cdp else PLAIN
        out.append("%5s%25s" % ("ID", "NAME") + "".join("%16s" % c for c in columns) + "\n")
        for d in s.domains:
            values = (d.code_cbm, d.data_cbm) if s.cdp else (d.cbm,)
            out.append("%5d%s" % (d.domid, _blocks.pad(d.name)))
            for v in values:
                if v is not None:
                    out.append("%16s" % _blocks.hex_cell(v))
                elif xen_version >= (4, 7):
                    out.append("%16s" % "error")
                # 4.6: a failed read prints nothing (f52fbcf747)
            out.append("\n")
    return "".join(out)
