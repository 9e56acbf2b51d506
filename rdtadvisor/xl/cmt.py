"""`xl psr-cmt-show <type> [domain]`: per-domain L3 occupancy or memory bandwidth, per socket.

Format (Xen 4.6 ... today, unchanged; 4.5 identical for ``cache_occupancy``;
``docs/xl-formats.md``, psr-cmt-show)::

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
import pyarrow as pa
import pyarrow.compute as pc

from rdtadvisor.core.errors import ParseError
from rdtadvisor.core.text import from_bytes, raw_bytes, to_bytes
from rdtadvisor.core.units import KIB
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
    domids, names : one entry per printed row, in printed order; `names` is an Arrow
        string array (lists are converted), so long tables never build Python strings.
    values : int64 array (rows x sockets), [B] for occupancy, [B/s] for bandwidth.
    complete : bool array per row; False where a socket cell was missing (values are 0).
    warnings : recoverable oddities, each naming the domain.
    """

    metric: str
    total_rmid: int
    sockets: tuple[int, ...]
    l3_cache_bytes: dict[int, int]
    domids: np.ndarray
    names: pa.LargeStringArray
    values: np.ndarray
    complete: np.ndarray
    warnings: tuple[str, ...] = field(default=())
    command: str | None = None

    @property
    def unit(self) -> str:
        return "B" if self.metric == "cache-occupancy" else "B/s"

    def __post_init__(self) -> None:
        if not isinstance(self.names, pa.Array):
            object.__setattr__(self, "names", pa.array(list(self.names), pa.large_string()))

    def __len__(self) -> int:
        return len(self.names)

    def name_list(self) -> list[str]:
        """The names as Python strings."""
        return self.names.to_pylist()

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract (module docstring); one row per complete domain x socket."""
        rows = []
        names = self.name_list()
        for i in np.flatnonzero(self.complete):
            domid, name = int(self.domids[i]), names[i]
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
    data = raw_bytes(text)  # str input: raw text (surrogateescape), as a runner decoded it
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    bandwidth = metric != "cache-occupancy"
    warnings: list[str] = []

    # Preamble: Total RMID, header, [Total L3 Cache Size], read line by line. Error texts
    # (captures made with 2>&1) may appear anywhere; before the data they are the answer.
    pos, lineno, total_rmid, sockets, l3 = 0, 0, None, None, {}
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        line, lineno = data[pos:end], lineno + 1
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
            if not (m and not bandwidth):
                lineno -= 1  # a data row: leave it for _rows
                break
            sizes = [int(v) * KIB for v in _L3_CELL.findall(m.group(1))]
            if len(sizes) != len(sockets):
                warnings.append(f"L3 size printed for {len(sizes)} of {len(sockets)} sockets")
            l3 = dict(zip(sockets, sizes, strict=False))
            pos = end + 1
            break
        pos = end + 1
    if total_rmid is None:
        raise failures.no_output(source=source)
    if sockets is None:
        raise ParseError("truncated: header line missing after 'Total RMID'", source=source,
                         lineno=lineno + 1, line="")
    if total_rmid < 0:
        warnings.append(f"Total RMID is {total_rmid}: xl could not read the RMID count")

    body = data[pos:]
    if body and not body.endswith(b"\n"):
        body += b"\n"
    domids, names, values, complete = _rows(body, lineno, sockets, bandwidth, warnings, source)
    return CmtTable(metric, total_rmid, sockets, l3, domids, names, values, complete, tuple(warnings),
                    command)


def _rows(body: bytes, lineno0: int, sockets: tuple[int, ...], bandwidth: bool, warnings: list[str],
          source: str) -> tuple[np.ndarray, pa.LargeStringArray, np.ndarray, np.ndarray]:
    """Data rows. `body` ends with a newline; its first line is line `lineno0 + 1` of the file.

    Rows with every cell present are sliced from the right and checked column-wise with
    Arrow compute kernels; the rest (missing cells, error lines) go through a regex one
    by one. Real tables are small, but a fleet replay parses millions of rows
    (benchmarks/bench_parse.py).
    """
    k = len(sockets)
    width = _CELLS_START + _CELL_W * k
    # The lines as one Arrow array, zero-copy over `body`: each value keeps its newline.
    newlines = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == 0x0A)
    n = len(newlines)
    offsets = np.concatenate(([0], newlines + 1)).astype(np.int64)
    lines = pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(body)])
    domids = np.zeros(n, dtype=np.int64)
    values = np.zeros((n, k), dtype=np.int64)
    complete = np.ones(n, dtype=bool)
    fast = np.zeros(n, dtype=bool)
    names_fast = pa.array([], pa.large_string())

    # Every well-formed row ends in the same fixed layout, whatever the name's length:
    # ... name ' ' %5d domid, then k cells of 16. Slice from the right (negative offsets).
    long_enough = pc.greater_equal(pc.binary_length(lines), width + 1)
    fixed = np.flatnonzero(long_enough.to_numpy(zero_copy_only=False))
    if len(fixed) and k:
        rows = lines if len(fixed) == n else lines.take(pa.array(fixed))
        digits_w = 11 if bandwidth else 13
        cells_at = -_CELL_W * k - 1  # from the right, before the newline
        suffix = pa.scalar(b" KB/s" if bandwidth else b" KB", pa.large_binary())
        ok = pc.equal(pc.binary_slice(rows, cells_at - 6, cells_at - 5), pa.scalar(b" ", pa.large_binary()))
        spans = [(cells_at - 5, cells_at)]
        for j in range(k):
            c = cells_at + _CELL_W * j
            spans.append((c, c + digits_w))
            ok = pc.and_(ok, pc.equal(pc.binary_slice(rows, c + digits_w, c + _CELL_W), suffix))
        fields = []
        for a, b in spans:
            # Right-aligned decimal: strip the leading spaces, the rest must be ASCII digits.
            # The cast skips UTF-8 validation: digit checks are byte-wise, bad bytes fail them.
            raw = pc.binary_slice(rows, a, b).cast(pa.large_string(), safe=False)
            f = pc.ascii_ltrim(raw, characters=" ")
            ok = pc.and_(ok, pc.ascii_is_decimal(f))
            fields.append(f)
        all_ok = pc.all(ok).as_py()
        good = fixed if all_ok else fixed[ok.to_numpy(zero_copy_only=False)]
        fast[good] = True
        ints = [pc.cast(f if all_ok else f.filter(ok), pa.int64()).to_numpy() for f in fields]
        domids[good] = ints[0]
        for j in range(k):
            values[good, j] = ints[j + 1] * KIB
        names_fast = _names(pc.binary_slice(rows if all_ok else rows.filter(ok), 0, cells_at - 6))

    slow = np.flatnonzero(~fast)
    if not len(slow):
        return domids, names_fast, values, complete

    row_re, cell_re = _ROW[bandwidth], _CELL[bandwidth]
    keep = np.ones(n, dtype=bool)
    slow_names: list[str] = []
    for i, line_nl in zip(slow, lines.take(pa.array(slow)).to_pylist(), strict=True):
        line, lineno = line_nl[:-1], lineno0 + int(i) + 1
        m = row_re.match(line)
        if m is None:
            if _skip_error_line(line, warnings, source, lineno, fatal=False):
                keep[i] = False
                slow_names.append("")
                continue
            raise ParseError("not a psr-cmt-show row", source=source, lineno=lineno, line=_s(line))
        name = from_bytes(m.group(1))
        domids[i] = int(m.group(2))
        slow_names.append(name)
        row_cells = [int(v) * KIB for v in cell_re.findall(m.group(3))]
        if len(row_cells) == k:
            values[i] = row_cells
        elif len(row_cells) < k:
            complete[i] = False
            warnings.append(
                f"domain {name!r} (id {domids[i]}): {len(row_cells)} of {k} socket values printed; "
                "cannot tell which socket failed, row dropped")
        else:
            raise ParseError(f"row has {len(row_cells)} values but the header names {k} sockets",
                             source=source, lineno=lineno, line=_s(line))
    # Put fast and slow names back in printed order, then drop skipped error lines.
    order = np.concatenate((np.flatnonzero(fast), slow))
    names = pa.concat_arrays([names_fast, pa.array(slow_names, pa.large_string())]).take(np.argsort(order))
    if not keep.all():
        domids, values, complete = domids[keep], values[keep], complete[keep]
        names = names.filter(pa.array(keep))
    return domids, names, values, complete


def _names(column: pa.Array) -> pa.LargeStringArray:
    """The fixed 40-byte name column without its printf padding, as one Arrow string array of
    names in the escaped form (`rdtadvisor.core.text`: names are bytes to Xen).

    Valid UTF-8 is cast at once (backslashes doubled); otherwise each name is escaped alone.
    """
    try:
        text = pc.replace_substring(column.cast(pa.large_string()), "\\", "\\\\")
    except pa.ArrowInvalid:
        text = pa.array([from_bytes(b) for b in column.to_pylist()], pa.large_string())
    # printf's %-40s padding. ASCII trimming is safe on UTF-8: no multi-byte sequence holds 0x20.
    return pc.ascii_rtrim(text, characters=" ")


def _skip_error_line(line: bytes, warnings: list[str], source: str, lineno: int, *, fatal: bool) -> bool:
    """Recognise xl/libxl error text. Before any data (`fatal`) it is the answer: raise."""
    text = _s(line)
    if not text.strip():
        return not fatal
    failure = failures.classify(text)
    if failure is None:
        return False
    if fatal:
        raise failures.reported(failure, source=source, lineno=lineno, line=text)
    warnings.append(f"xl: {failure.message}")
    return True


def _s(line: bytes) -> str:
    return from_bytes(line)


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
    for i, name in enumerate(table.name_list()):
        # C's %-40s pads by bytes, not characters: matters for UTF-8 names (escaped form -> raw).
        raw = to_bytes(name)
        out.append(raw.decode("utf-8", "surrogateescape") + " " * max(0, 40 - len(raw))
                   + " %5d" % table.domids[i])
        cells = table.values[i] if table.complete[i] else table.values[i][:-1]
        for v in cells:
            out.append(("%11u KB/s" if bandwidth else "%13u KB") % (int(v) // KIB))
        out.append("\n")
    del xen_version  # same format on every version since 4.5
    return "".join(out)
