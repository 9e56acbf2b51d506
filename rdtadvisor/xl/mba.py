"""`xl psr-mba-show [Domain]`: the memory-bandwidth throttle (THRTL) of every domain, per socket.

Xen 4.11+ only (the front end is byte-identical since). Format (``docs/xl-formats.md``, psr-mba-show),
one block per socket, no blank lines::

    printf("%-16s: %u\\n", "Socket ID", id);
    printf("%-16s: %u\\n", "Default THRTL", 0);
    printf("%5s%25s%16s\\n", "ID", "NAME", "THRTL");
    per domain:  printf("%5d%25s", domid, name);
                 linear mode  printf("%16"PRIu64, thrtl);   non-linear  printf("%#16"PRIx64, thrtl);
                 on error     printf("%16s", "error");                 printf("\\n");

Example (non-linear, RECONSTRUCTED from xl's printf formats)::

    Socket ID       : 0
    Default THRTL   : 0
       ID                     NAME           THRTL
        0                 Domain-0               0
        3              guest-web01             0x8

Quirks handled here (the row layout ones in `rdtadvisor.xl._blocks`):

* The number base depends on the host's MBA mode (``Linear Mode`` in ``xl psr-hwinfo -b``):
  decimal when linear, hex when not, and ``%#x`` prints ``0`` (no ``0x``) for zero.
  With ``linear=None`` the base is inferred: any ``0x`` token means hex; any other
  non-zero token means decimal; a table of only zeros (or errors) reads the same either
  way and keeps ``linear`` None. A ``0x`` token with ``linear=True``, or a decimal token
  other than ``0`` with ``linear=False`` (or next to ``0x`` tokens), is a `ParseError`.
* ``error`` cells give None and a warning naming the domain.
* Values are what Xen stored, i.e. already rounded down (``mba_sanitize_thrtl``).
* Names of 25+ bytes collide with the ID; names may hold spaces or read ``(null)``.
* xl's error texts alone (``Failed to get info`` when MBA is off) raise `XlReportedError`
  with the `rdtadvisor.xl.failures` kind; empty output is kind ``no-output``.

Schema (``MbaTable.to_dict()``, JSON contract version 1)::

    {"sockets": [{"socket": int, "default_thrtl": int,
                  "domains": [{"domid": int, "name": str, "thrtl": int|null}]}],
     "linear": bool|null, "warnings": [str]}

``thrtl`` is Xen's abstract throttle value (roughly "% delay" in linear mode), no unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rdtadvisor.core.errors import ParseError
from rdtadvisor.xl import _blocks

COMMAND = "psr-mba-show"
COLUMNS = ("THRTL",)

_DEC = re.compile(r"^[0-9]+$")
_HEX = re.compile(r"^(?:0x[0-9A-Fa-f]+|0)$")
_UNEXPECTED_HINTS = {
    "L3 Cache": "this is psr-cat-show output",
    "Default CBM": "this is psr-cat-show output",
}
_KIND_HINTS = {
    "info-failed": "MBA is not enabled: it needs Xen 4.11+ booted with psr=mba on MBA hardware",
}


@dataclass(frozen=True)
class MbaDomain:
    """One domain's throttle on one socket; None where xl printed ``error``."""

    domid: int
    name: str
    thrtl: int | None


@dataclass(frozen=True)
class MbaSocket:
    """One socket block. `default_thrtl` is what xl prints as the default (always 0)."""

    socket: int
    default_thrtl: int
    domains: tuple[MbaDomain, ...]


@dataclass(frozen=True)
class MbaTable:
    """One parsed `psr-mba-show` output.

    linear : the host's MBA mode as given to `parse` or inferred from the number base;
        None when the table cannot tell (only zeros and errors) and nobody said.
    """

    sockets: tuple[MbaSocket, ...]
    linear: bool | None
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract (module docstring)."""
        return {
            "sockets": [{
                "socket": s.socket,
                "default_thrtl": s.default_thrtl,
                "domains": [{"domid": d.domid, "name": d.name, "thrtl": d.thrtl} for d in s.domains],
            } for s in self.sockets],
            "linear": self.linear,
            "warnings": list(self.warnings),
        }

    def table_rows(self) -> list[dict[str, Any]]:
        """Flat rows for `--format table`: one per socket x domain."""
        return [{"socket": s.socket, "default_thrtl": s.default_thrtl, "linear": self.linear,
                 "domid": d.domid, "name": d.name, "thrtl": d.thrtl}
                for s in self.sockets for d in s.domains]


def parse(text: str | bytes, *, linear: bool | None = None, source: str = "<stdin>") -> MbaTable:
    """Parse one captured stdout of ``xl psr-mba-show``.

    `linear` is the host's MBA mode (``Linear Mode`` in ``xl psr-hwinfo -b``), or None to
    infer it from the number base. Raises `ParseError` (`XlReportedError` for xl's own
    error texts) naming `source`, the line number and the offending line.
    """
    tokens = _blocks.tokenize(text, keys=("Default THRTL",), headers=(COLUMNS,), source=source,
                              command=COMMAND, unexpected_hints=_UNEXPECTED_HINTS, kind_hints=_KIND_HINTS)
    rows = [row for block in tokens.blocks for row in block.rows]
    cells = [(row, row.cells[0]) for row in rows if row.cells and row.cells[0] != "error"]
    hex_row = next((row for row, cell in cells if cell.lower().startswith("0x")), None)
    if linear and hex_row is not None:
        raise ParseError("hex THRTL in a table read as linear (decimal); is the host's MBA mode non-linear?",
                         source=source, lineno=hex_row.lineno, line=hex_row.line)
    if linear is None:
        if hex_row is not None:
            linear = False
        elif any(cell != "0" for _, cell in cells):
            linear = True
    pattern = _DEC if linear else _HEX
    for row, cell in cells:
        if not pattern.match(cell):
            base = "decimal" if linear else "hex (%#x: 0x.., or 0)"
            raise ParseError(f"THRTL {cell!r} is not {base}; xl prints one base per host: "
                             "decimal in linear mode, hex otherwise", source=source, lineno=row.lineno,
                             line=row.line)

    warnings = list(tokens.warnings)
    sockets = []
    for block in tokens.blocks:
        key = block.keys["Default THRTL"]
        if not _DEC.match(key.value):
            raise ParseError("'Default THRTL' is not a number", source=source, lineno=key.lineno,
                             line=key.line)
        domains = []
        for row in block.rows:
            assert row.cells is not None  # tokenize(allow_missing=False)
            cell = row.cells[0]
            if cell == "error":
                warnings.append(f"socket {block.socket}: domain {row.name!r} (id {row.domid}): "
                                "xl could not read the THRTL and printed 'error'")
                thrtl = None
            else:
                thrtl = int(cell, 10 if linear else 16)
            domains.append(MbaDomain(row.domid, row.name, thrtl))
        sockets.append(MbaSocket(block.socket, int(key.value), tuple(domains)))
    return MbaTable(tuple(sockets), linear, tuple(warnings))


def render(table: MbaTable, *, linear: bool) -> str:
    """Print `table` exactly as xl would on a host in `linear` (decimal) or non-linear (hex) mode."""
    out = []
    for s in table.sockets:
        out.append("%-16s: %u\n" % ("Socket ID", s.socket))
        out.append("%-16s: %u\n" % ("Default THRTL", s.default_thrtl))
        out.append("%5s%25s%16s\n" % ("ID", "NAME", COLUMNS[0]))
        for d in s.domains:
            out.append("%5d%s%16s\n" % (d.domid, _blocks.pad(d.name), _cell(d.thrtl, linear)))
    return "".join(out)


def _cell(thrtl: int | None, linear: bool) -> str:
    if thrtl is None:
        return "error"
    return str(thrtl) if linear else _blocks.hex_cell(thrtl)  # %"PRIu64 or %#"PRIx64
