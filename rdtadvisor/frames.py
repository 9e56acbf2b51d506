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
domains   ``xl list``: time, host, domid, domain, memory_bytes, vcpus, state
events    what went wrong or looked odd: time, host, command, kind, message
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from rdtadvisor import xl
from rdtadvisor.errors import ParseError, XlReportedError
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
                "memory_bytes": "int64", "vcpus": "int32", "state": "string"},
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
# its last section only (xen-xl-psr.md §1.1), so a host without MBA "fails" every time.
_STATUS_MEANINGLESS = ("psr-hwinfo",)


def capture_frames(capture: Capture) -> dict[str, pd.DataFrame]:
    """Parse every file of one `Capture` and return the five tidy tables for it.

    Never raises for bad content: unparseable files, xl error texts, missing cells
    and counter overflows become rows of the ``events`` table (kind, message naming
    the file), so the rest of the capture is still stored.
    """
    from rdtadvisor.xl import cat, cmt, domains, hostinfo, hwinfo, mba
    from rdtadvisor.xl.commands import parse_command

    t = pd.Timestamp(capture.time)
    host = capture.host
    rows: dict[str, list[dict]] = {name: [] for name in TABLES}
    sample_parts: list[pd.DataFrame] = []

    def event(command: str, kind: str, message: str) -> None:
        rows["events"].append({"time": t, "host": host, "command": command, "kind": kind, "message": message})

    def fact(name: str, value: float | None = None, text: str | None = None,
             socket: int | None = None) -> None:
        rows["facts"].append({"time": t, "host": host, "socket": socket, "fact": name, "value": value,
                              "text": text})

    where = str(capture.path) if capture.path is not None else f"{host}@{capture.stamp}"
    parsed: dict[str, object] = {}
    order = sorted(capture.results, key=lambda n: (n != "xl-psr-hwinfo.txt", n))  # hwinfo first: MBA needs it
    for name in order:
        result = capture.results[name]
        cmd = parse_command(result.argv)
        label = str(cmd)
        if result.error is not None:
            event(label, "timeout" if result.error.startswith("timed out") else "run-failed", result.error)
            continue
        for failure in failures.classify_all(result.stderr):
            event(label, failure.kind, failure.message)
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
            sample_parts.append(_samples(record, t, host, reading_of(name)))
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
                        rows["settings"].append({
                            "time": t, "host": host, "socket": s.socket, "domid": d.domid,
                            "domain": d.name, "setting": setting, "value": getattr(d, attr)})
        elif isinstance(record, mba.MbaTable):
            for s in record.sockets:
                for d in s.domains:
                    rows["settings"].append({"time": t, "host": host, "socket": s.socket, "domid": d.domid,
                                             "domain": d.name, "setting": "mba_thrtl", "value": d.thrtl})
        elif isinstance(record, hwinfo.HwInfo):
            _hwinfo_facts(record, fact)
        elif isinstance(record, hostinfo.HostInfo):
            for key in ("nr_cpus", "nr_nodes", "sockets", "cores_per_socket", "threads_per_core",
                        "total_memory_bytes", "free_memory_bytes"):
                fact(key, getattr(record, key))
            fact("xen_version", text=record.xen_version)
            if record.release:
                fact("release", text=record.release)
            if "xen_commandline" in record.fields:
                fact("xen_commandline", text=record.fields["xen_commandline"])
        elif isinstance(record, domains.DomainList):
            for d in record.domains:
                rows["domains"].append({"time": t, "host": host, "domid": d.domid, "domain": d.name,
                                        "memory_bytes": d.memory_bytes, "vcpus": d.vcpus, "state": d.state})
    out = {name: (validate(name, pd.DataFrame(r, columns=list(SCHEMAS[name]))) if r else empty(name))
           for name, r in rows.items()}
    if sample_parts:
        out["samples"] = validate("samples", pd.concat(sample_parts, ignore_index=True))
    return out


def _samples(table: cmt.CmtTable, t: pd.Timestamp, host: str, reading: int) -> pd.DataFrame:
    """One psr-cmt-show table as long rows (complete rows only), built column-wise."""
    metric, unit = METRICS[table.metric]
    keep = np.flatnonzero(table.complete)
    k = len(table.sockets)
    row_of = np.repeat(keep, k)
    return pd.DataFrame({
        "time": t, "host": host,
        "socket": np.tile(np.asarray(table.sockets, dtype=np.int16), len(keep)),
        "domid": table.domids[row_of].astype(np.int32),
        "domain": pd.array(table.names.take(pa.array(row_of)), dtype=pd.StringDtype()),
        "metric": metric, "reading": reading,
        "value": table.values[keep].ravel(), "unit": unit,
    })


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
