"""`xl info`: the host, its CPU topology, memory and the Xen build (version, command line).

Format (``tools/xl/xl_info.c`` ``print_info``; ``tools/libxl/xl_cmdimpl.c`` before 4.9):
one ``key : value`` line each, the key padded to 23 columns, in this order (4.11+)::

    host release version machine                              (output_nodeinfo, uname)
    nr_cpus max_cpu_id nr_nodes cores_per_socket threads_per_core cpu_mhz hw_caps
    virt_caps total_memory free_memory sharing_freed_memory sharing_used_memory
    outstanding_claims free_cpus                              (output_physinfo)
    xen_major xen_minor xen_extra xen_version xen_caps xen_scheduler xen_pagesize
    platform_params xen_changeset xen_commandline cc_compiler cc_compile_by
    cc_compile_domain cc_compile_date build_id                 (output_xeninfo)
    xend_config_format                                         (always "4")

e.g. ``maybe_printf("host                   : %s\\n", utsbuf.nodename)`` and
``maybe_printf("total_memory           : %"PRIu64"\\n", total_pages / pages_per_MiB)``.

Quirks handled here:

* Keys come and go between versions (``max_cpu_id``, ``sharing_*``, ``outstanding_claims``,
  ``xen_version`` (4.3+), ``build_id`` (4.7+), Arm's ``arm_sve_vector_length``): every
  line is kept in ``fields``; only the keys below are required (a missing one is a
  ParseError naming it).
* Values may contain ``:`` (``dom0_mem=4096M,max:4096M``, changeset dates): lines are
  split on the first ``:`` only, which must be at column 23 or later (keys are padded;
  this is what tells ``libxl: error: ...`` apart from a field). ``fields`` keeps each
  value exactly as printed after the ``": "`` separator, trailing spaces included
  (``xen_caps`` ends with one on x86).
* ``virt_caps`` is printed as ``":%s%s..."`` with each capability prefixed by a space, so
  with no capability the line ends at the colon: ``virt_caps              :``.
* ``total_memory``/``free_memory`` are MiB (truncated): they become bytes.
  ``free_memory`` already excludes outstanding claims.
* ``cpu_mhz`` was ``%d`` before 4.10ish and ``%d.%03d`` since; kept as text.
* ``sockets`` is derived as ``nr_cpus // (cores_per_socket * threads_per_core)`` (at least
  1). ``nr_cpus`` counts *online* CPUs, so with CPUs offlined (``smt=0``, ``maxcpus=``)
  the result undercounts.
* ``xen_commandline`` holds the boot options, e.g. ``psr=cmt,cat,cdp``; kept verbatim.
* ``xl info -n`` (topology tables) and ``xl info <name>`` (bare values) print other
  formats: ParseError. A line that is one of xl's error texts is skipped; stderr lines
  such as ``libxl_physinfo failed.`` are not in `rdtadvisor.xl.failures` yet, so a
  capture made with ``2>&1`` after such a failure is a ParseError. CRLF is accepted.

Schema (``HostInfo.to_dict()``)::

    {"host": str, "release": str|null, "nr_cpus": int, "nr_nodes": int,
     "cores_per_socket": int, "threads_per_core": int, "sockets": int,
     "total_memory_bytes": int, "free_memory_bytes": int, "xen_version": str,
     "fields": {str: str}}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rdtadvisor.core.errors import ParseError
from rdtadvisor.core.text import from_bytes, raw_bytes, to_raw
from rdtadvisor.core.units import MIB
from rdtadvisor.xl import failures

COMMAND = "info"

KEY_WIDTH = 23
REQUIRED = ("host", "nr_cpus", "nr_nodes", "cores_per_socket", "threads_per_core", "total_memory",
            "free_memory", "xen_major", "xen_minor", "xen_extra")
# The order xl prints in (4.11+); `render` uses it for records built without `fields`.
ORDER = ("host", "release", "version", "machine", "nr_cpus", "max_cpu_id", "nr_nodes",
         "cores_per_socket", "threads_per_core", "cpu_mhz", "hw_caps", "virt_caps", "total_memory",
         "free_memory", "sharing_freed_memory", "sharing_used_memory", "outstanding_claims", "free_cpus",
         "xen_major", "xen_minor", "xen_extra", "xen_version", "xen_caps", "xen_scheduler", "xen_pagesize",
         "platform_params", "xen_changeset", "xen_commandline", "cc_compiler", "cc_compile_by",
         "cc_compile_domain", "cc_compile_date", "build_id", "xend_config_format")
_NUMA_KEYS = ("cpu_topology", "numa_info", "device topology")   # only with `xl info -n`

_LINE_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_ ]*?) *:(.*)", re.ASCII | re.DOTALL)
_INT_RE = re.compile(r"\d{1,19}", re.ASCII)
_VERSION_RE = re.compile(r"(\d+)\.(\d+)(.*)", re.DOTALL)


@dataclass(frozen=True)
class HostInfo:
    """One parsed ``xl info``. Memory in bytes [B]; ``fields`` holds every line verbatim."""

    host: str
    release: str | None
    nr_cpus: int
    nr_nodes: int
    cores_per_socket: int
    threads_per_core: int
    sockets: int
    total_memory_bytes: int
    free_memory_bytes: int
    xen_version: str
    fields: dict[str, str]

    @property
    def xen_major_minor(self) -> tuple[int, int]:
        """``(4, 17)`` for ``"4.17.2"``: the key for version-dependent xl formats."""
        m = _VERSION_RE.fullmatch(self.xen_version)
        if m is None:
            raise ValueError(f"not a Xen version: {self.xen_version!r}")
        return int(m.group(1)), int(m.group(2))

    @property
    def xen_commandline(self) -> str | None:
        return self.fields.get("xen_commandline")

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract (module docstring)."""
        return {"host": self.host, "release": self.release, "nr_cpus": self.nr_cpus,
                "nr_nodes": self.nr_nodes, "cores_per_socket": self.cores_per_socket,
                "threads_per_core": self.threads_per_core, "sockets": self.sockets,
                "total_memory_bytes": self.total_memory_bytes, "free_memory_bytes": self.free_memory_bytes,
                "xen_version": self.xen_version, "fields": dict(self.fields)}

    def table_rows(self) -> list[dict[str, Any]]:
        """Rows for ``--format table``: one ``key``/``value`` row per typed attribute."""
        return [{"key": k, "value": v} for k, v in self.to_dict().items() if k != "fields"]


def parse(text: str | bytes, *, source: str = "<stdin>") -> HostInfo:
    """Parse one captured stdout of ``xl info`` (no options).

    Raises `ParseError` naming `source`, the line number and the line (or the missing key),
    or `XlReportedError` when xl printed nothing or only its own error texts.
    """
    data = from_bytes(raw_bytes(text))  # names and values in the escaped form of core.text
    lines = data.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    fields: dict[str, str] = {}
    where: dict[str, tuple[int, str]] = {}
    first_failure: tuple[failures.Failure, int, str] | None = None
    for i, raw in enumerate(lines):
        lineno = i + 1
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        m = _LINE_RE.fullmatch(line)
        if m is None or len(line.partition(":")[0]) < KEY_WIDTH:
            # Not an xl info line: every key is padded to 23 columns ("libxl: error: ..." is not).
            failure = failures.classify(line)
            if failure is None:
                raise ParseError("expected a 'key : value' line (is this xl info output?)", source=source,
                                 lineno=lineno, line=line)
            first_failure = first_failure or (failure, lineno, line)
            continue
        key, rest = m.group(1), m.group(2)
        if key in _NUMA_KEYS:
            raise ParseError("'xl info -n' prints topology tables; capture plain 'xl info'", source=source,
                             lineno=lineno, line=line)
        if key in fields:
            raise ParseError(f"key {key!r} printed twice", source=source, lineno=lineno, line=line)
        fields[key] = rest[1:] if rest.startswith(" ") else rest
        where[key] = (lineno, line)

    if not fields:
        if first_failure is not None:
            failure, lineno, line = first_failure
            raise failures.reported(failure, source=source, lineno=lineno, line=line)
        raise failures.no_output(source=source)
    for key in REQUIRED:
        if key not in fields:
            raise ParseError(f"missing required key {key!r} (truncated output, or xl could not read it; "
                             "see its stderr)", source=source, lineno=len(lines) + 1, line="")

    def number(key: str) -> int:
        value = fields[key].strip()
        if not _INT_RE.fullmatch(value):
            lineno, line = where[key]
            raise ParseError(f"expected a number for {key!r}", source=source, lineno=lineno, line=line)
        return int(value)

    nr_cpus, cores, threads = number("nr_cpus"), number("cores_per_socket"), number("threads_per_core")
    if cores * threads == 0:
        lineno, line = where["cores_per_socket" if cores == 0 else "threads_per_core"]
        raise ParseError("cores_per_socket and threads_per_core must be positive", source=source,
                         lineno=lineno, line=line)
    version = f"{number('xen_major')}.{number('xen_minor')}{fields['xen_extra'].strip()}"
    release = fields.get("release")
    return HostInfo(
        host=fields["host"].strip(),
        release=None if release is None else release.strip(),
        nr_cpus=nr_cpus,
        nr_nodes=number("nr_nodes"),
        cores_per_socket=cores,
        threads_per_core=threads,
        sockets=max(1, nr_cpus // (cores * threads)),
        total_memory_bytes=number("total_memory") * MIB,
        free_memory_bytes=number("free_memory") * MIB,
        xen_version=version,
        fields=fields,
    )


def render(info: HostInfo) -> str:
    """Print `info` exactly as ``xl info`` would (the inverse of `parse`).

    Lines come from ``fields`` in their order; the typed attributes override their keys
    (memory truncated to whole MiB). Keys a record lacks in ``fields`` are printed in
    xl's order when ``fields`` is empty, else appended. ``release`` None drops that line.
    """
    m = _VERSION_RE.fullmatch(info.xen_version)
    if m is None:
        raise ValueError(f"not a Xen version: {info.xen_version!r}")
    typed = {"host": info.host, "release": info.release, "nr_cpus": str(info.nr_cpus),
             "nr_nodes": str(info.nr_nodes), "cores_per_socket": str(info.cores_per_socket),
             "threads_per_core": str(info.threads_per_core),
             "total_memory": str(info.total_memory_bytes // MIB),
             "free_memory": str(info.free_memory_bytes // MIB),
             "xen_major": m.group(1), "xen_minor": m.group(2), "xen_extra": m.group(3)}
    values = dict(info.fields)
    if not info.fields:
        values["xen_version"] = info.xen_version
    for key, value in typed.items():
        if value is None:
            values.pop(key, None)
        elif key not in values or values[key].strip() != value:
            values[key] = value
    if info.fields:
        order = list(info.fields) + [k for k in values if k not in info.fields]
    else:
        order = [k for k in ORDER if k in values]
    out = []
    for key in order:
        if key not in values:
            continue
        value = to_raw(values[key])  # the escaped form back to what xl printed
        if key == "virt_caps":  # ":%s%s..." with a space before each capability
            out.append(f"{key:<{KEY_WIDTH}}:{' ' + value if value else ''}\n")
        else:
            out.append(f"{key:<{KEY_WIDTH}}: {value}\n")
    return "".join(out)
