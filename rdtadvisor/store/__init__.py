"""The history store. Enter: captures; leave: tidy tables (`frames`: one row per sample,
setting, fact, domain and event) and every collection ever made, as a partitioned Parquet
dataset.

Embedded (a folder, no server), append-only, crash-safe and idempotent; pandas,
DuckDB and pyarrow read it without rdtadvisor. The layout and the write protocol are
described in `rdtadvisor.store.parquet` and ``docs/store.md``::

    store = Store("~/.local/share/rdtadvisor/store")
    store.append({"samples": samples, "facts": facts, ...})   # skips stored collections
    store.read("samples", hosts="xen01", since="24h")
    store.compact()                                            # nightly
"""

from __future__ import annotations

from rdtadvisor.core.timewindow import parse_when, to_utc
from rdtadvisor.store.parquet import (
    COLLECTIONS,
    COLLECTIONS_SCHEMA,
    FORMAT_VERSION,
    STORE_SCHEMAS,
    STORE_TABLES,
    AppendResult,
    CompactResult,
    Store,
    StoreSummary,
    escape_host,
)

__all__ = [
    "COLLECTIONS",
    "COLLECTIONS_SCHEMA",
    "FORMAT_VERSION",
    "STORE_SCHEMAS",
    "STORE_TABLES",
    "AppendResult",
    "CompactResult",
    "Store",
    "StoreSummary",
    "escape_host",
    "parse_when",
    "to_utc",
]
