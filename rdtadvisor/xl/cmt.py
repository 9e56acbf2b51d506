"""`xl psr-cmt-show <type> [domain]`: per-domain L3 occupancy or memory bandwidth, per socket.

Format (Xen 4.6 ... today, unchanged; 4.5 identical for ``cache_occupancy``), from
``xen-xl-psr.md`` §2.2::

    printf("Total RMID: %d\\n", total_rmid);
    printf("%-40s %5s", "Name", "ID");  then per online socket  printf("%14s %d", "Socket", id);
    occupancy only:  printf("%-46s", "Total L3 Cache Size");  per socket  printf("%13u KB", kib);
    per attached domain:  printf("%-40s %5d", name, domid);
        then per socket  printf("%13"PRIu64" KB", kib)  or  printf("%11"PRIu64" KB/s", kib_per_s)

Quirks handled here:

* Only domains attached to CMT get a row; an empty table is a valid answer.
* A socket whose read failed prints nothing: the row is shorter and the missing socket
  cannot be identified, so the row keeps no values and a warning names the domain.
* Names longer than 40 characters push the columns right; names may contain spaces
  or be ``(null)``. ``%-40s`` pads by bytes, so positions are computed on bytes.
* Sizes are KiB labelled ``KB`` and rates KiB/s labelled ``KB/s``; both become bytes.

Schema (``CmtTable.to_dict()``, JSON contract version 1)::

    {"command": str, "metric": "cache-occupancy"|"total-mem-bandwidth"|"local-mem-bandwidth",
     "total_rmid": int, "sockets": [int], "l3_cache_bytes": {"<socket>": int} (occupancy only),
     "rows": [{"domid": int, "name": str, "socket": int, "value": int}], "warnings": [str]}

``value`` is bytes for occupancy and bytes/s for bandwidth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rdtadvisor.errors import ParseError, XlReportedError
from rdtadvisor.units import KIB
from rdtadvisor.xl import failures
from rdtadvisor.xl.commands import CMT_METRICS

COMMAND = "psr-cmt-show"

_TOTAL_RMID = re.compile(rb"^Total RMID: (-?\d+)$")
_HEADER = re.compile(rb"^Name {36} {2,}ID((?: +Socket \d+)*)$")
_SOCKET = re.compile(rb"Socket (\d+)")
_L3_LINE = re.compile(rb"^Total L3 Cache Size((?: +\d+ KB)+)$")
_L3_CELL = re.compile(rb"(\d+) KB")
# A data row: name, at least one space, domid, then cells. Anchored on the right.
_ROW = {
    False: re.compile(rb"^(.*?) +(-?\d+)((?: +\d+ KB)*)$"),
    True: re.compile(rb"^(.*?) +(-?\d+)((?: +\d+ KB/s)*)$"),
}
_CELL = {False: re.compile(rb"(\d+) KB"), True: re.compile(rb"(\d+) KB/s")}

# Fixed layout of a row whose name fits in 40 bytes: name[0:40] ' ' domid[41:46] cells of 16.
_NAME_END, _ID_START, _CELLS_START, _CELL_W = 40, 41, 46, 16


@dataclass(frozen=True)
class CmtTable:
    """One parsed `psr-cmt-show` table, column-oriented (tables can be long; see benchmarks).

    Attributes
    ----------
    metric : one of ``cache-occupancy``, ``total-mem-bandwidth``, ``local-mem-bandwidth``.
    total_rmid : highest RMID index, which equals the number of attachable domains.
    sockets : socket ids in column order (online sockets; may be non-contiguous).
    l3_cache_bytes : socket -> L3 size [B]; occupancy tables only (libxc caches the first
        socket's size, so every socket shows it).
    domids, names : one entry per printed row, in printed order.
    values : int64 array (rows x sockets), [B] for occupancy, [B/s] for bandwidth.
    complete : bool array per row; False where a socket cell was missing (values are 0).
    warnings : recoverable oddities, each naming the domain.
    """

    metric: str
    total_rmid: int
    sockets: tuple[int, ...]
    l3_cache_bytes: dict[int, int]
    domids: np.ndarray
    names: list[str]
    values: np.ndarray
    complete: np.ndarray
    warnings: tuple[str, ...] = field(default=())
    command: str | None = None

    @property
    def unit(self) -> str:
        return "B" if self.metric == "cache-occupancy" else "B/s"

    def __len__(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract (module docstring); one row per complete domain x socket."""
        rows = []
        for i in np.flatnonzero(self.complete):
            domid, name = int(self.domids[i]), self.names[i]
            for j, socket in enumerate(self.sockets):
                rows.append({"domid": domid, "name": name, "socket": socket, "value": int(self.values[i, j])})
        out: dict[str, Any] = {
            "command": self.command or f"xl {COMMAND} {self.metric}",
            "metric": self.metric,
            "total_rmid": self.total_rmid,
            "sockets": list(self.sockets),
        }
        if self.metric == "cache-occupancy":
            out["l3_cache_bytes"] = {str(s): b for s, b in self.l3_cache_bytes.items()}
        out["rows"] = rows
        out["warnings"] = list(self.warnings)
        return out

    def table_rows(self) -> list[dict[str, Any]]:
        """Flat rows for `--format table`."""
        unit = self.unit
        return [dict(r, unit=unit) for r in self.to_dict()["rows"]]


def parse(text: str | bytes, metric: str, *, source: str = "<stdin>", command: str | None = None) -> CmtTable:
    """Parse one captured stdout of ``xl psr-cmt-show <metric>``.

    `metric` must come from the command line: total and local bandwidth tables look
    alike. Raises `ParseError` (or `XlReportedError` for xl's own error texts) naming
    `source`, the line number and the offending line.
    """
    if metric not in CMT_METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    data = text.encode() if isinstance(text, str) else bytes(text)
    bandwidth = metric != "cache-occupancy"
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    warnings: list[str] = []

    # Preamble: Total RMID, header, [Total L3 Cache Size]. Error texts (captures made
    # with 2>&1) may appear anywhere; they become warnings, or the error if nothing else.
    pos, total_rmid, sockets, l3 = 0, None, None, {}
    while pos < len(lines):
        line = lines[pos]
        lineno = pos + 1
        if total_rmid is None:
            m = _TOTAL_RMID.match(line)
            if m:
                total_rmid = int(m.group(1))
            elif not _skip_error_line(line, warnings, source, lineno, fatal=True):
                raise ParseError("expected 'Total RMID: N' (is this psr-cmt-show output?)",
                                 source=source, lineno=lineno, line=_s(line))
        elif sockets is None:
            m = _HEADER.match(line)
            if m:
                sockets = tuple(int(s) for s in _SOCKET.findall(m.group(1)))
                if len(set(sockets)) != len(sockets):
                    raise ParseError("repeated socket id in header", source=source, lineno=lineno,
                                     line=_s(line))
            elif not _skip_error_line(line, warnings, source, lineno, fatal=False):
                raise ParseError("expected the 'Name ID Socket N ...' header", source=source,
                                 lineno=lineno, line=_s(line))
        else:
            m = _L3_LINE.match(line)
            if m and not bandwidth:
                sizes = [int(v) * KIB for v in _L3_CELL.findall(m.group(1))]
                if len(sizes) != len(sockets):
                    warnings.append(f"L3 size printed for {len(sizes)} of {len(sockets)} sockets")
                l3 = dict(zip(sockets, sizes, strict=False))
                pos += 1
            break
        pos += 1
    if total_rmid is None:
        raise XlReportedError("no output: xl printed nothing on stdout (its stderr says why)",
                              kind="no-output", source=source)
    if sockets is None:
        raise ParseError("truncated: header line missing after 'Total RMID'", source=source,
                         lineno=len(lines) + 1, line="")
    if total_rmid < 0:
        warnings.append(f"Total RMID is {total_rmid}: xl could not read the RMID count")

    domids, names, values, complete = _rows(lines, pos, sockets, bandwidth, warnings, source)
    return CmtTable(metric, total_rmid, sockets, l3, domids, names, values, complete, tuple(warnings),
                    command)


def _rows(lines: list[bytes], start: int, sockets: tuple[int, ...], bandwidth: bool,
          warnings: list[str], source: str) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    k = len(sockets)
    width = _CELLS_START + _CELL_W * k
    body = lines[start:]
    n = len(body)
    domids = np.zeros(n, dtype=np.int64)
    values = np.zeros((n, k), dtype=np.int64)
    complete = np.ones(n, dtype=bool)
    names: list[str | None] = [None] * n

    # Fast path, vectorised: rows in the standard fixed layout (name <= 40 bytes, all cells).
    fixed = [i for i, line in enumerate(body) if len(line) == width]
    if fixed and k:
        block = np.frombuffer(b"".join(body[i] for i in fixed), dtype=np.uint8).reshape(len(fixed), width)
        ok = block[:, _NAME_END] == 0x20
        ids, ids_ok = _digits(block[:, _ID_START:_CELLS_START])
        ok &= ids_ok
        digits_w = 11 if bandwidth else 13
        suffix = np.frombuffer(b" KB/s" if bandwidth else b" KB", dtype=np.uint8)
        for j in range(k):
            c = _CELLS_START + _CELL_W * j
            v, v_ok = _digits(block[:, c:c + digits_w])
            ok &= v_ok & np.all(block[:, c + digits_w:c + _CELL_W] == suffix, axis=1)
            values[fixed, j] = v * KIB
        domids[fixed] = ids
        name_bytes = block[:, :_NAME_END].copy().view(f"S{_NAME_END}").ravel()
        for row_i, idx in enumerate(fixed):
            if ok[row_i]:
                names[idx] = name_bytes[row_i].rstrip(b" ").decode("utf-8", "replace")

    # Slow path: long names, missing cells, error lines; anything the fast path rejected.
    row_re, cell_re = _ROW[bandwidth], _CELL[bandwidth]
    keep = np.ones(n, dtype=bool)
    for i, line in enumerate(body):
        if names[i] is not None:
            continue
        lineno = start + i + 1
        m = row_re.match(line)
        if m is None:
            if _skip_error_line(line, warnings, source, lineno, fatal=False):
                keep[i] = False
                continue
            raise ParseError("not a psr-cmt-show row", source=source, lineno=lineno, line=_s(line))
        name = m.group(1).decode("utf-8", "replace")
        domids[i] = int(m.group(2))
        names[i] = name
        cells = [int(v) * KIB for v in cell_re.findall(m.group(3))]
        if len(cells) == k:
            values[i] = cells
        elif len(cells) < k:
            complete[i] = False
            warnings.append(
                f"domain {name!r} (id {domids[i]}): {len(cells)} of {k} socket values printed; "
                "cannot tell which socket failed, row dropped")
        else:
            raise ParseError(f"row has {len(cells)} values but the header names {k} sockets",
                             source=source, lineno=lineno, line=_s(line))
    if not keep.all():
        domids, values, complete = domids[keep], values[keep], complete[keep]
        names = [nm for nm, kp in zip(names, keep, strict=True) if kp]
    return domids, names, values, complete  # type: ignore[return-value]


def _digits(cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right-aligned decimal fields (spaces then digits) -> (values, valid mask), vectorised."""
    is_digit = (cols >= 0x30) & (cols <= 0x39)
    is_space = cols == 0x20
    # Valid: only spaces and digits, at least one digit, no space after the first digit.
    valid = np.all(is_digit | is_space, axis=1) & is_digit[:, -1]
    valid &= np.all(np.diff(is_digit.astype(np.int8), axis=1) >= 0, axis=1)
    d = np.where(is_digit, cols.astype(np.int64) - 0x30, 0)
    weights = 10 ** np.arange(cols.shape[1] - 1, -1, -1, dtype=np.int64)
    return d @ weights, valid


def _skip_error_line(line: bytes, warnings: list[str], source: str, lineno: int, *, fatal: bool) -> bool:
    """Recognise xl/libxl error text. Before any data (`fatal`) it is the answer: raise."""
    text = _s(line)
    if not text.strip():
        return not fatal
    failure = failures.classify(text)
    if failure is None:
        return False
    if fatal:
        raise XlReportedError(f"xl reported {failure.kind}: {failure.message}", kind=failure.kind,
                              source=source, lineno=lineno, line=text)
    warnings.append(f"xl: {failure.message}")
    return True


def _s(line: bytes) -> str:
    return line.decode("utf-8", "replace")


def render(table: CmtTable, *, xen_version: tuple[int, int] = (4, 22)) -> str:
    """Print a table exactly as xl would (the inverse of `parse`), for tests and the simulator.

    Values are truncated to whole KiB as xl does. Incomplete rows print only their
    first values (xl drops the failed socket's cell; which one is lost in print).
    """
    bandwidth = table.metric != "cache-occupancy"
    out = [f"Total RMID: {table.total_rmid}\n", "%-40s %5s" % ("Name", "ID")]
    out += ["%14s %d" % ("Socket", s) for s in table.sockets]
    out.append("\n")
    if not bandwidth:
        out.append("%-46s" % "Total L3 Cache Size")
        out += ["%13u KB" % (table.l3_cache_bytes.get(s, 0) // KIB) for s in table.sockets]
        out.append("\n")
    for i, name in enumerate(table.names):
        # C's %-40s pads by bytes, not characters: matters for UTF-8 names.
        out.append(name + " " * max(0, 40 - len(name.encode())) + " %5d" % table.domids[i])
        cells = table.values[i] if table.complete[i] else table.values[i][:-1]
        for v in cells:
            out.append(("%11u KB/s" if bandwidth else "%13u KB") % (int(v) // KIB))
        out.append("\n")
    del xen_version  # same format on every version since 4.5
    return "".join(out)
