"""Tidy long frames: the vocabulary every later stage reads.

Each parsed capture becomes five tables (pandas' long/``melt`` layout). Columns
and units are listed in ``docs/nomenclature.md``; `SCHEMAS` is the single source of
truth for names and dtypes and `validate` enforces it.

samples   one row per (collection, reading, socket, domain, metric)
    time [UTC], host, socket, domid, domain, metric, reading, value, unit
    metric: ``l3_occupancy`` [B], ``mem_bw_total`` [B/s], ``mem_bw_local`` [B/s]
    reading: 0..N-1, the repeated 10 ms bandwidth snapshots of one collection
settings  CAT masks and MBA throttles in force: time, host, socket, domid, domain, setting, value
    setting: ``l3_cbm``, ``l3_code_cbm``, ``l3_data_cbm``, ``l2_cbm``, ``mba_thrtl``; value null = ``error``
facts     host and socket facts: time, host, socket (null = host-wide), fact, value, text
domains   ``xl list``: time, host, domid, domain, memory_bytes, vcpus, state, cpu_seconds
    cpu_seconds: ``Time(s)``, the CPU time the domain has used since it started [s] (null in
    stores written before it was kept)
events    what went wrong or looked odd: time, host, command, kind, message
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from rdtadvisor import xl
from rdtadvisor.core.errors import ParseError, XlReportedError
from rdtadvisor.core.text import from_raw
from rdtadvisor.sources.capture import reading_of
from rdtadvisor.xl import failures

if TYPE_CHECKING:
    from rdtadvisor.sources.capture import Capture
    from rdtadvisor.xl import cmt, hwinfo

METRICS = {  # xl monitor type -> (metric, unit)
    "cache-occupancy": ("l3_occupancy", "B"),
    "total-mem-bandwidth": ("mem_bw_total", "B/s"),
    "local-mem-bandwidth": ("mem_bw_local", "B/s"),
}

_TIME = "datetime64[ns, UTC]"
SCHEMAS: dict[str, dict[str, str]] = {
    "samples": {"time": _TIME, "host": "string", "socket": "int16", "domid": "int32", "domain": "string",
                "metric": "string", "reading": "int16", "value": "int64", "unit": "string"},
    "settings": {"time": _TIME, "host": "string", "socket": "int16", "domid": "int32", "domain": "string",
                 "setting": "string", "value": "Int64"},
    "facts": {"time": _TIME, "host": "string", "socket": "Int16", "fact": "string", "value": "Float64",
              "text": "string"},
    "domains": {"time": _TIME, "host": "string", "domid": "int32", "domain": "string",
                "memory_bytes": "int64", "vcpus": "int32", "state": "string", "cpu_seconds": "Float64"},
    "events": {"time": _TIME, "host": "string", "command": "string", "kind": "string", "message": "string"},
}
TABLES = tuple(SCHEMAS)


def empty(table: str) -> pd.DataFrame:
    """An empty frame with `table`'s columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in SCHEMAS[table].items()})


def validate(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Return `frame` with exactly `table`'s columns, in order, cast to the schema's dtypes.

    Raises ValueError naming missing columns; extra columns are a programming error too.
    """
    schema = SCHEMAS[table]
    missing = [c for c in schema if c not in frame.columns]
    extra = [c for c in frame.columns if c not in schema]
    if missing or extra:
        raise ValueError(f"{table}: missing columns {missing}, unexpected {extra}")
    return frame[list(schema)].astype(schema)


# --- parsed capture -> frames ----------------------------------------------------------------

# Commands whose non-zero exit is not a failure by itself: psr-hwinfo's status comes from
# its last section only (docs/xl-formats.md, psr-hwinfo "Exit status"), so a host without MBA
# "fails" every time.
_STATUS_MEANINGLESS = ("psr-hwinfo",)


def capture_frames(capture: Capture) -> dict[str, pd.DataFrame]:
    """The five tidy tables for one `Capture` (see `frames_of`)."""
    return frames_of([capture])


def frames_of(captures: Iterable[Capture]) -> dict[str, pd.DataFrame]:
    """Parse every file of every capture and return the five tidy tables for all of them.

    Never raises for bad content: unparseable files, xl error texts, missing cells
    and counter overflows become rows of the ``events`` table (kind, message naming
    the file), so the rest of a capture is still stored. Rows are gathered as plain
    columns and each table is built once, so a replay of thousands of captures pays
    pandas' per-frame cost once, not per capture.
    """
    acc = _Tables()
    for capture in captures:
        _add_capture(acc, capture)
    return acc.frames()


class _Tables:
    """Rows for the small tables, column chunks for `samples`."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple]] = {name: [] for name in TABLES if name != "samples"}
        self.samples: list[tuple[pd.Timestamp, str, str, int, str, cmt.CmtTable]] = []

    def frames(self) -> dict[str, pd.DataFrame]:
        out = {name: (validate(name, pd.DataFrame.from_records(r, columns=list(SCHEMAS[name])))
                      if r else empty(name)) for name, r in self.rows.items()}
        out["samples"] = self._samples() if self.samples else empty("samples")
        return {name: out[name] for name in TABLES}

    def _samples(self) -> pd.DataFrame:
        """Every psr-cmt-show table as long rows (complete rows only), built column-wise."""
        times, hosts, metrics, readings, units, sockets, domids, names, values = ([] for _ in range(9))
        lengths = []
        for t, host, metric, reading, unit, table in self.samples:
            keep = np.flatnonzero(table.complete)
            k = len(table.sockets)
            row_of = np.repeat(keep, k)
            lengths.append(len(row_of))
            times.append(t.value)
            hosts.append(host)
            metrics.append(metric)
            readings.append(reading)
            units.append(unit)
            sockets.append(np.tile(np.asarray(table.sockets, dtype=np.int16), len(keep)))
            domids.append(table.domids[row_of])
            names.append(table.names.take(pa.array(row_of)))
            values.append(table.values[keep].ravel())
        n = np.asarray(lengths)

        def repeat(items: list, dtype: object = object) -> np.ndarray:
            return np.repeat(np.asarray(items, dtype=dtype), n)

        return validate("samples", pd.DataFrame({
            "time": pd.to_datetime(repeat(times, np.int64), utc=True),
            "host": pd.array(repeat(hosts), dtype=pd.StringDtype()),
            "socket": np.concatenate(sockets), "domid": np.concatenate(domids).astype(np.int32),
            "domain": pd.array(pa.concat_arrays([a.cast(pa.large_string()) for a in names]),
                               dtype=pd.StringDtype()),
            "metric": pd.array(repeat(metrics), dtype=pd.StringDtype()),
            "reading": repeat(readings, np.int16),
            "value": np.concatenate(values),
            "unit": pd.array(repeat(units), dtype=pd.StringDtype()),
        }))


def _add_capture(acc: _Tables, capture: Capture) -> None:
    from rdtadvisor.xl import cat, cmt, domains, hostinfo, hwinfo, mba
    from rdtadvisor.xl.commands import parse_command

    t = pd.Timestamp(capture.time)
    host = capture.host
    rows = acc.rows

    def event(command: str, kind: str, message: str) -> None:
        rows["events"].append((t, host, command, kind, message))

    def fact(name: str, value: float | None = None, text: str | None = None,
             socket: int | None = None) -> None:
        rows["facts"].append((t, host, socket, name, value, text))

    # Raw text (paths, argv, stderr, errors: surrogateescape) enters the store in the escaped
    # form of rdtadvisor.core.text, like everything the parsers return.
    where = from_raw(str(capture.path)) if capture.path is not None else f"{host}@{capture.stamp}"
    parsed: dict[str, object] = {}
    order = sorted(capture.results, key=lambda n: (n != "xl-psr-hwinfo.txt", n))  # hwinfo first: MBA needs it
    for name in order:
        result = capture.results[name]
        cmd = parse_command(result.argv)
        label = from_raw(str(cmd))
        if result.error is not None:
            event(label, "timeout" if result.error.startswith("timed out") else "run-failed",
                  from_raw(result.error))
            continue
        for failure in failures.classify_all(result.stderr):
            event(label, failure.kind, from_raw(failure.message))
        if result.exit_status not in (0, None) and cmd.name not in _STATUS_MEANINGLESS and not result.stdout:
            event(label, "exit-status", f"exited {result.exit_status} with no output")
            continue
        source = f"{where}/{name}"
        try:
            if cmd.name == "psr-mba-show":
                hw = parsed.get("xl-psr-hwinfo.txt")
                linear = hw.mba[0].linear if isinstance(hw, hwinfo.HwInfo) and hw.mba else None
                record = mba.parse(result.stdout, linear=linear, source=source)
            else:
                record = xl.parse(cmd, result.stdout, source=source)
        except XlReportedError as e:
            if not result.stderr.strip():  # otherwise stderr already said it
                event(label, e.kind, e.reason)
            continue
        except ParseError as e:
            # xl failed part-way and said why on stderr (e.g. psr-cat-show stops after
            # "Socket ID" without CMT): the short stdout is explained, not garbage.
            explained = result.exit_status not in (0, None) and failures.classify_all(result.stderr)
            event(label, "truncated" if explained else "parse-error", str(e))
            continue
        parsed[name] = record
        for warning in getattr(record, "warnings", ()):
            event(label, "parse-warning", warning)

        if isinstance(record, cmt.CmtTable):
            metric, unit = METRICS[record.metric]
            acc.samples.append((t, host, metric, reading_of(name), unit, record))
            if record.metric == "cache-occupancy":
                fact("total_rmid", record.total_rmid)
                if "xl-psr-hwinfo.txt" not in capture.results:  # Xen 4.5: no psr-hwinfo
                    for socket, size in record.l3_cache_bytes.items():
                        fact("l3_cache_bytes", size, socket=socket)
        elif isinstance(record, cat.CatTable):
            for s in record.sockets:
                fact(f"l{record.level}_default_cbm", s.default_cbm, socket=s.socket)
                pairs = (("l3_code_cbm", "code_cbm"), ("l3_data_cbm", "data_cbm")) if s.cdp else \
                    ((f"l{record.level}_cbm", "cbm"),)
                for d in s.domains:
                    for setting, attr in pairs:
                        value = getattr(d, attr)
                        rows["settings"].append((t, host, s.socket, d.domid, d.name, setting, value))
        elif isinstance(record, mba.MbaTable):
            for s in record.sockets:
                for d in s.domains:
                    rows["settings"].append((t, host, s.socket, d.domid, d.name, "mba_thrtl", d.thrtl))
        elif isinstance(record, hwinfo.HwInfo):
            _hwinfo_facts(record, fact)
        elif isinstance(record, hostinfo.HostInfo):
            for key in ("nr_cpus", "nr_nodes", "sockets", "cores_per_socket", "threads_per_core",
                        "total_memory_bytes", "free_memory_bytes"):
                fact(key, getattr(record, key))
            fact("xen_version", text=record.xen_version)
            fact("hostname", text=record.host)      # what a script run on the host checks it is on
            if record.release:
                fact("release", text=record.release)
            if "xen_commandline" in record.fields:
                fact("xen_commandline", text=record.fields["xen_commandline"])
        elif isinstance(record, domains.DomainList):
            for d in record.domains:
                rows["domains"].append((t, host, d.domid, d.name, d.memory_bytes, d.vcpus, d.state,
                                        d.cpu_seconds))


def _hwinfo_facts(info: hwinfo.HwInfo, fact: Callable[..., None]) -> None:
    if info.cmt is not None:
        fact("cmt_enabled", float(info.cmt.enabled))
        if info.cmt.total_rmid is not None:
            fact("total_rmid", info.cmt.total_rmid)
        fact("monitor_types", text=",".join(info.cmt.monitor_types))
    for prefix, cats in (("l3", info.l3_cat), ("l2", info.l2_cat)):
        for c in cats:
            if c.cache_bytes is not None:
                fact(f"{prefix}_cache_bytes", c.cache_bytes, socket=c.socket)
            if c.cdp is not None:
                fact(f"{prefix}_cdp", float(c.cdp), socket=c.socket)
            fact(f"{prefix}_cos_max", c.cos_max, socket=c.socket)
            fact(f"{prefix}_cbm_len", c.cbm_len, socket=c.socket)
    for m in info.mba:
        fact("mba_linear", float(m.linear), socket=m.socket)
        fact("mba_cos_max", m.cos_max, socket=m.socket)
        fact("mba_thrtl_max", m.thrtl_max, socket=m.socket)


def concat(parts: list[dict[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """Concatenate per-capture frames (from `capture_frames`) table by table."""
    return {name: (pd.concat([p[name] for p in parts if len(p[name])], ignore_index=True)
                   if any(len(p[name]) for p in parts) else empty(name)) for name in TABLES}
