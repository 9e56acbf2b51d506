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

import pandas as pd

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
