"""`xl list`: the domains on a host, with memory, vCPUs, state flags and CPU time.

Format (``tools/xl/xl_info.c`` ``list_domains``; ``tools/libxl/xl_cmdimpl.c`` before 4.9,
unchanged since the 4.1 era)::

    printf("Name                                        ID   Mem VCPUs\\tState\\tTime(s)");
    printf("\\n");
    per domain:
    printf("%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f", name, domid,
           (current_memkb + outstanding_memkb) / 1024, vcpu_online,
           running ? 'r' : '-', blocked ? 'b' : '-', paused ? 'p' : '-',
           shutdown ? 's' : '-', "-rscwS"[shutdown_reason] (or '?'), dying ? 'd' : '-',
           (float)cpu_time / 1e9);
    putchar('\\n');

Quirks handled here:

* The header holds two **tabs** (``VCPUs\\tState\\tTime(s)``); copies pasted from web pages
  have them expanded to spaces, which is accepted too.
* ``%-40s`` pads by bytes; a name of 40 bytes or more pushes every column right, and
  names may contain spaces or be ``(null)`` (``libxl_domid_to_name`` failed: a warning).
  Rows are therefore parsed from the right: the last five fields are fixed.
* State is six flags: ``r`` running, ``b`` blocked, ``p`` paused, ``s`` shut down, then the
  shutdown reason (``-`` poweroff or none, ``r`` reboot, ``s`` suspend, ``c`` crash,
  ``w`` watchdog, ``S`` soft reset, ``?`` unknown), then ``d`` dying. A crashed domain
  reads ``---sc-``.
* ``Mem`` is MiB (current plus outstanding claim, truncated): it becomes bytes.
* ``Time(s)`` goes through a C ``float`` (24-bit mantissa) before printing, so for long
  running domains it is precise to about 7 significant digits only.
* Options (``-v``, ``-Z``, ``-c``, ``-n``, ``-l``) print another format: such a header is
  a ParseError. ``xl list <domain>`` prints this format with one row.
* Captures made with ``2>&1``: xl's error texts known to `rdtadvisor.xl.failures` become
  warnings, or `XlReportedError` when there is no header at all. CRLF is accepted.

Schema (``DomainList.to_dict()``)::

    {"domains": [{"domid": int, "name": str, "memory_bytes": int, "vcpus": int,
                  "state": str, "cpu_seconds": float}],
     "warnings": [str]}
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from rdtadvisor.core.errors import ParseError
from rdtadvisor.core.text import from_bytes, raw_bytes, to_bytes
from rdtadvisor.core.units import MIB
from rdtadvisor.xl import failures

COMMAND = "list"

HEADER = "Name                                        ID   Mem VCPUs\tState\tTime(s)"
STATE_FLAGS = ("r", "b", "p", "s", "-rscwS?", "d")

_HEADER_RE = re.compile(r"Name[ \t]+ID[ \t]+Mem[ \t]+VCPUs[ \t]+State[ \t]+Time\(s\)", re.ASCII)
_STATE = r"[r-][b-][p-][s-][-rscwS?][d-]"
_STATE_RE = re.compile(_STATE, re.ASCII)
# Parsed from the right: name, domid, MiB, vCPUs, state, seconds. The name takes the rest.
_ROW_RE = re.compile(r"(.*?) +(\d{1,10}) +(\d{1,20}) +(\d{1,10}) +(" + _STATE + r") +(\d{1,20}\.\d{1,9})",
                     re.ASCII)
_NULL_NAME = "(null)"


@dataclass(frozen=True)
class Domain:
    """One row of ``xl list``. ``memory_bytes`` [B], ``cpu_seconds`` [s]."""

    domid: int
    name: str
    memory_bytes: int
    vcpus: int
    state: str
    cpu_seconds: float

    @property
    def running(self) -> bool:
        return self.state[0] == "r"

    @property
    def shutdown(self) -> bool:
        return self.state[3] == "s"

    @property
    def dying(self) -> bool:
        return self.state[5] == "d"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DomainList:
    """One parsed ``xl list``, rows in printed order (xl prints domid order)."""

    domains: tuple[Domain, ...]
    warnings: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.domains)

    def by_id(self) -> dict[int, Domain]:
        return {d.domid: d for d in self.domains}

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract (module docstring)."""
        return {"domains": [d.to_dict() for d in self.domains], "warnings": list(self.warnings)}

    def table_rows(self) -> list[dict[str, Any]]:
        """Flat rows for ``--format table``: one per domain."""
        return [d.to_dict() for d in self.domains]


def parse(text: str | bytes, *, source: str = "<stdin>") -> DomainList:
    """Parse one captured stdout of ``xl list`` (no options; optionally one domain).

    Raises `ParseError` naming `source`, the line number and the line, or
    `XlReportedError` when xl printed nothing or only its own error texts.
    """
    data = from_bytes(raw_bytes(text))  # names and values in the escaped form of core.text
    lines = data.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    warnings: list[str] = []
    header_seen = False
    first_failure: tuple[failures.Failure, int, str] | None = None
    rows: list[Domain] = []
    seen: set[int] = set()

    for i, raw in enumerate(lines):
        lineno = i + 1
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        if not header_seen:
            stripped = line.rstrip(" \t")
            if _HEADER_RE.fullmatch(stripped):
                header_seen = True
                continue
            if _HEADER_RE.match(stripped):
                raise ParseError("the header has extra columns: 'xl list -v/-Z/-c/-n' prints another "
                                 "format; capture plain 'xl list'", source=source, lineno=lineno, line=line)
        else:
            m = _ROW_RE.fullmatch(line.rstrip(" "))
            if m is not None:
                dom = _domain(m)
                if dom.domid in seen:
                    warnings.append(f"line {lineno}: domain id {dom.domid} listed twice")
                seen.add(dom.domid)
                if dom.name == _NULL_NAME:
                    warnings.append(f"domain {dom.domid} has no name (xl printed '(null)')")
                rows.append(dom)
                continue
        failure = failures.classify(line)
        if failure is None:
            what = "an xl list row" if header_seen else \
                "the 'Name ID Mem VCPUs State Time(s)' header (is this xl list output?)"
            raise ParseError(f"expected {what}", source=source, lineno=lineno, line=line)
        first_failure = first_failure or (failure, lineno, line)
        warnings.append(f"xl: {failure.message}")

    if not header_seen:
        if first_failure is not None:
            failure, lineno, line = first_failure
            raise failures.reported(failure, source=source, lineno=lineno, line=line)
        raise failures.no_output(source=source)
    return DomainList(tuple(rows), tuple(warnings))


def _domain(m: re.Match[str]) -> Domain:
    name, domid, mem, vcpus, state, seconds = m.groups()
    return Domain(int(domid), name, int(mem) * MIB, int(vcpus), state, float(seconds))


def render(domains: DomainList) -> str:
    """Print `domains` exactly as ``xl list`` would (the inverse of `parse`).

    Memory is truncated to whole MiB and time rounded to 0.1 s, as xl does. Names are
    padded to 40 *bytes*, like C's ``%-40s``.
    """
    out = [HEADER, "\n"]
    for d in domains.domains:
        if not _STATE_RE.fullmatch(d.state):
            raise ValueError(f"domain {d.domid}: state {d.state!r} is not six xl list flags")
        raw = to_bytes(d.name)  # the escaped form back to the bytes xl printed
        pad = " " * max(0, 40 - len(raw))
        out.append(f"{raw.decode('utf-8', 'surrogateescape')}{pad} {d.domid:5d} "
                   f"{d.memory_bytes // MIB:5d} {d.vcpus:5d}     "
                   f"{d.state}  {d.cpu_seconds:8.1f}\n")
    return "".join(out)
