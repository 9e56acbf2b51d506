"""The history store: a hive-partitioned Parquet dataset kept consistent by a journal.

Layout (``<store>`` is the folder given to `Store`)::

    <store>/STORE.json                       {"format": "rdtadvisor-store", "version": 1}
    <store>/<table>/host=<host>/date=YYYY-MM-DD/<first>-<last>-<sha8>.parquet
    <store>/.locks/store.lock                flock: writers exclusive, readers shared
    <store>/.journal/<id>.json               a committed change not yet fully applied
    <store>/.journal/<id>.d/                 the files that change brings (staging)

``<table>`` is one of frames.TABLES plus ``collections`` (one row per stored
collection: time, host, rows_<table> for every table). ``<host>`` is the host name
URI-escaped (``urllib.parse.quote(host, safe="")``, which pyarrow, pandas and DuckDB
decode back); ``host`` and ``date`` are partition columns only, not stored in the
files. ``first``/``last`` are the earliest and latest ``time`` in the file, as
``YYYYMMDDTHHMMSSZ`` (whole seconds, rounded down); ``sha8`` is the start of the SHA-256
of the file's bytes. Every file's rows are sorted by time (stable: the rows of one
collection keep their order). Zstd compression, explicit Arrow schemas derived
from frames.SCHEMAS.

A *collection* is one host's readings at one time: it is identified by (host, time),
and all its rows, in every table, carry that time. Collections are the unit of
idempotence: an append skips the collections the store already has, so replaying the
same captures stores nothing new and overlapping batches store their exact union.

Protocol. Every change is a *journal entry*: files to move into the dataset
("moves") and files to delete from it ("deletes"). Writers hold an exclusive
``flock`` on ``.locks/store.lock`` (the kernel drops it if the process dies)::

    1. lock; recover (below)
    2. append: read the ``time`` column of just the ``collections`` files whose
       host/date folder and [first, last] name range overlap the batch, and drop the
       batch's collections already stored (compact: check the sources still exist)
    3. create the partition folders needed; write each new file into .journal/<id>.d/
       (fsync each, fsync the folders)
    4. COMMIT: write .journal/.tmp-<id>.json, fsync, rename it to .journal/<id>.json,
       fsync .journal
    5. rename each staged file to its place in the dataset, the collections file
       last; only if every move's target now exists, delete the "deletes"; fsync
       the touched folders
    6. delete the journal and its staging folder; unlock

Recovery (under the exclusive lock, at the start of every append and compaction, and
when a `Store` is opened if the lock is free) rolls every committed journal forward
(steps 5-6: both are idempotent) and removes whatever else is in ``.journal`` (staging
folders and temporary files of writers that died before committing: roll back). No
age heuristic is needed: whoever holds the exclusive lock knows every other writer is
dead or waiting.

Because no file reaches the dataset before its journal is committed, a writer killed
at any moment leaves either nothing visible or a committed journal that the next
writer completes (and that readers already see whole, below). Two writers (two cron
jobs) are serialised by the lock, and the second one's step 2 sees what the first one
stored, so nothing is duplicated.
A single lock for the whole store, rather than one per host, keeps a multi-host
append all-or-nothing (a full disk changes nothing) at the price of serialising
writers, whose critical sections last milliseconds (a per-minute append of 20 hosts)
to seconds (a bulk append of a day).

Readers (`Store.read` and the others) take the lock *shared* while they list folders,
so they never see a half-applied change of a live writer; a journal they find was left
by a dead writer, and they apply it in their view (read staged files in place of their
targets, hide deleted files). They read the files after releasing the lock and start
over if a compaction deleted one meanwhile. Other tools (pandas, DuckDB, pyarrow) read
the dataset directly: they never see staged files (outside the table folders), but
can see an append half-applied, or a compaction's target next to its sources, during
the milliseconds of step 5 or after a crash until the store is next opened.

Compaction merges the files of one (table, host, date) partition into one, as a
journal entry whose move is the merged file and whose deletes are its sources.
"""

from __future__ import annotations

import calendar
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from rdtadvisor.core import clock
from rdtadvisor.core.errors import StoreError, StoreWarning
from rdtadvisor.core.timewindow import When, to_utc
from rdtadvisor.store.frames import SCHEMAS, TABLES, validate

FORMAT = "rdtadvisor-store"
FORMAT_VERSION = 1
MARKER = "STORE.json"
COLLECTIONS = "collections"
COLLECTIONS_SCHEMA: dict[str, str] = {"time": SCHEMAS["samples"]["time"], "host": "string",
                                      **{f"rows_{t}": "int64" for t in TABLES}}
STORE_SCHEMAS: dict[str, dict[str, str]] = {**SCHEMAS, COLLECTIONS: COLLECTIONS_SCHEMA}
STORE_TABLES: tuple[str, ...] = (*TABLES, COLLECTIONS)

ROW_GROUP_ROWS = 1 << 16  # compacted files: row groups a time filter can skip
STAMP = "%Y%m%dT%H%M%SZ"
_LOCKS, _JOURNAL, _LOCK_FILE = ".locks", ".journal", "store.lock"
QUARANTINE = ".quarantine"  # where `store check --repair` moves what readers could trip on
_DATA_NAME = re.compile(r"^\d{8}T\d{6}Z-\d{8}T\d{6}Z-[0-9a-f]{8,64}\.parquet$")
_NS = 1_000_000_000
_DAY_NS = 86_400 * _NS
_MAX_NAME = 240  # bytes of a folder name ("host=" + escaped host)
_RETRIES = 8

_ARROW_TYPES = {"datetime64[ns, UTC]": pa.timestamp("ns", tz="UTC"), "string": pa.string(),
                "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
                "Int16": pa.int16(), "Int32": pa.int32(), "Int64": pa.int64(), "Float64": pa.float64()}
_NOT_NULL = {"datetime64[ns, UTC]", "int16", "int32", "int64"}
_STRING_TYPES = {pa.string(): pd.StringDtype()}
_PANDAS_TYPES = {pa.string(): pd.StringDtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
                 pa.int64(): pd.Int64Dtype(), pa.float64(): pd.Float64Dtype()}

# Test seam: called with a step name at each point of the protocol (crash tests sleep here).
_checkpoint = None


def _step(name: str) -> None:
    if _checkpoint is not None:
        _checkpoint(name)


@dataclass(frozen=True)
class AppendResult:
    """What one `Store.append` did: rows written per table, collections written and skipped."""

    rows: dict[str, int]
    collections: int
    skipped: int
    files: int = 0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


@dataclass(frozen=True)
class CompactResult:
    """What one `Store.compact` did: partitions merged, files and bytes before and after."""

    partitions: int = 0
    files_before: int = 0
    files_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0


@dataclass(frozen=True)
class Problem:
    """One finding of `Store.check`: ``kind`` is ``corrupt`` or ``foreign``; ``moved_to`` is set
    once ``--repair`` quarantined it."""

    path: str
    kind: str
    reason: str
    moved_to: str | None = None


@dataclass(frozen=True)
class CheckResult:
    problems: list[Problem]
    files: int


@dataclass(frozen=True)
class StoreSummary:
    """`Store.summary`: per-table stats, hosts, first and last collection times (None if empty)."""

    path: Path
    stats: pd.DataFrame
    hosts: list[str]
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    pending_journals: int = 0


# --------------------------------------------------------------------------- names


def escape_host(host: str) -> str:
    """`host` as it appears in folder names (``host=<this>``): URI-escaped, every byte but [A-Za-z0-9_.~-]."""
    return quote(host, safe="")


def _stamp(ns: int) -> str:
    return time.strftime(STAMP, time.gmtime(ns // _NS))


def _unstamp(text: str) -> int:
    return calendar.timegm((int(text[0:4]), int(text[4:6]), int(text[6:8]),
                            int(text[9:11]), int(text[11:13]), int(text[13:15]))) * _NS


def _file_range(name: str) -> tuple[int, int] | None:
    """[first, last + 1 s) in ns of a file named by the store, (-inf, inf) for other ``.parquet`` files,
    None for anything else (hidden files, other extensions)."""
    if name.startswith((".", "_")) or not name.endswith(".parquet"):
        return None
    parts = name[:-8].split("-")
    try:
        if len(parts) == 3 and len(parts[0]) == len(parts[1]) == 16:
            return _unstamp(parts[0]), _unstamp(parts[1]) + _NS
    except ValueError:
        pass
    return -(2**63), 2**63 - 1


def _file_schema(table: str) -> pa.Schema:
    """The Arrow schema of `table`'s files: the store schema less ``host``.

    No pandas metadata: it would double the size of the small per-minute files.
    """
    return pa.schema([pa.field(col, _ARROW_TYPES[dtype], nullable=dtype not in _NOT_NULL)
                      for col, dtype in STORE_SCHEMAS[table].items() if col != "host"])


_SCHEMAS_ARROW = {t: _file_schema(t) for t in STORE_TABLES}


def _parquet_bytes(table: pa.Table, row_group_size: int | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=row_group_size)
    return sink.getvalue().to_pybytes()


def _data_name(data: bytes, first_ns: int, last_ns: int, folder: Path) -> str:
    """``<first>-<last>-<sha8>.parquet``; more of the hash in the rare case that name is taken in `folder`
    (under the writer lock, a taken name means other bytes: a new name never replaces a file)."""
    digest = hashlib.sha256(data).hexdigest()
    for n in (8, 16, 64):
        name = f"{_stamp(first_ns)}-{_stamp(last_ns)}-{digest[:n]}.parquet"
        if not (folder / name).exists():
            break
    return name


# --------------------------------------------------------------------------- files


def _write_file(path: Path, data: bytes, sync: bool) -> None:
    """Create `path` (it must not exist) holding `data`; fsync it if `sync`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs(path: Path, touched: set[Path], created: list[Path] | None = None) -> None:
    """mkdir -p, adding the parent of every folder created to `touched` (to fsync) and it to `created`."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        touched.add(d.parent)
        if created is not None:
            created.append(d)


def _scandir(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []


class _Lock:
    """flock on ``.locks/store.lock``; `held` is False when it could not be taken (see `acquire`)."""

    def __init__(self, path: Path, exclusive: bool) -> None:
        self.path, self.exclusive, self.fd, self.held = path, exclusive, -1, False

    def acquire(self, *, blocking: bool = True, required: bool = True) -> _Lock:
        try:
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except PermissionError:
                self.fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            if required:
                raise StoreError(f"{self.path}: cannot open the lock file: {e.strerror}") from e
            return self
        try:
            fcntl.flock(self.fd, (fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH)
                        | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(self.fd)
            self.fd = -1
            return self
        self.held = True
        return self

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the flock
            self.fd, self.held = -1, False

    def __enter__(self) -> _Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class _View:
    """What committed-but-unapplied journals change, as a reader sees it (keys: paths in the dataset)."""

    added: dict[Path, dict[str, str]] = field(default_factory=dict)  # folder -> {name: staged file}
    deleted: set[str] = field(default_factory=set)

    def names(self, folder: Path) -> list[str]:
        """The entries of `folder` as this view sees them, sorted; callers filter the names.

        Plain strings: a folder holds thousands of files before compaction.
        """
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            names = []
        added = self.added.get(folder)
        if added:
            names = list(set(names) | set(added))
        if self.deleted:
            base = str(folder)
            names = [n for n in names if os.path.join(base, n) not in self.deleted]
        names.sort()
        return names

    def path(self, folder: Path, name: str) -> str:
        added = self.added.get(folder)
        return added[name] if added and name in added else os.path.join(folder, name)

    def files(self, folder: Path) -> list[tuple[str, str]]:
        """(name, path) of the entries of `folder`, sorted by name."""
        return [(n, self.path(folder, n)) for n in self.names(folder)]

    def subdirs(self, folder: Path, prefix: str) -> list[tuple[str, Path]]:
        names = {e.name for e in _scandir(folder) if e.name.startswith(prefix) and e.is_dir()}
        names.update(p.relative_to(folder).parts[0] for p in self.added
                     if p.is_relative_to(folder) and p != folder
                     and p.relative_to(folder).parts[0].startswith(prefix))
        return sorted((n, folder / n) for n in names)


# --------------------------------------------------------------------------- the store


class Store:
    """An embedded, append-only history store of tidy frames (see the module docstring).

    `path` is created if missing (`create`=False: StoreError instead). `sync`=False skips
    fsync: still safe against killed processes, not against power loss (tests, benchmarks).
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, sync: bool = True) -> None:
        self.path = Path(path).expanduser()
        self.sync = sync
        self._journal = self.path / _JOURNAL
        self._lock_path = self.path / _LOCKS / _LOCK_FILE
        self._open(create)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ----------------------------------------------------------------- opening

    def _open(self, create: bool) -> None:
        p = self.path
        if p.exists() and not p.is_dir():
            raise StoreError(f"{p}: not a folder")
        marker = p / MARKER
        if marker.is_file():
            self._check_marker(marker)
        elif not create:
            raise StoreError(f"{p}: no history store here (no {MARKER})")
        else:
            # Another process may be creating this store right now (two cron collects on a new
            # store): its marker temp file, marker and folders are ours, not foreign content.
            ours = {_LOCKS, _JOURNAL, MARKER, *STORE_TABLES}
            if p.is_dir() and any(e.name not in ours and not e.name.startswith(".tmp-")
                                  for e in _scandir(p)):
                raise StoreError(f"{p}: not empty and not a history store (no {MARKER})")
            try:
                p.mkdir(parents=True, exist_ok=True)
                self._write_atomic(marker, json.dumps({"format": FORMAT, "version": FORMAT_VERSION},
                                                      indent=2).encode() + b"\n")
            except OSError as e:
                raise StoreError(f"{e.filename or p}: cannot create the store: {_reason(e)}") from e
        if os.access(p, os.W_OK):
            try:
                for sub in (_LOCKS, _JOURNAL, *STORE_TABLES):  # table folders: readable even while empty
                    (p / sub).mkdir(exist_ok=True)
            except OSError as e:
                raise StoreError(f"{p}: cannot create {e.filename}: {_reason(e)}") from e
            if _scandir(self._journal):  # a writer died: finish its work unless another writer is busy
                with _Lock(self._lock_path, True).acquire(blocking=False, required=False) as lock:
                    if lock.held:
                        self._recover()

    def _check_marker(self, marker: Path) -> None:
        try:
            meta = json.loads(marker.read_text())
            fmt, version = meta["format"], int(meta["version"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StoreError(f"{marker}: not a valid store marker ({e})") from e
        if fmt != FORMAT:
            raise StoreError(f"{marker}: format {fmt!r} is not {FORMAT!r}")
        if version > FORMAT_VERSION:
            raise StoreError(f"{marker}: store format version {version} is newer than this rdtadvisor "
                             f"understands ({FORMAT_VERSION}); upgrade rdtadvisor")

    def _writer_lock(self) -> _Lock:
        if not os.access(self.path, os.W_OK):
            raise StoreError(f"{self.path}: not writable")
        try:
            (self.path / _LOCKS).mkdir(exist_ok=True)
            self._journal.mkdir(exist_ok=True)
        except OSError as e:
            raise StoreError(f"{self.path}: not writable: {_reason(e)}") from e
        lock = _Lock(self._lock_path, True).acquire()
        try:
            self._recover()
        except BaseException:
            lock.release()
            raise
        return lock

    def _write_atomic(self, path: Path, data: bytes) -> None:
        tmp = path.parent / f".tmp-{secrets.token_hex(6)}-{path.name}"
        try:
            _write_file(tmp, data, self.sync)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.sync:
            _fsync_dir(path.parent)

    # ----------------------------------------------------------------- journal

    def _journals(self) -> list[tuple[Path, dict[str, Any]]]:
        found = []
        for e in sorted(_scandir(self._journal), key=lambda e: e.name):
            if e.name.endswith(".json") and not e.name.startswith("."):
                path = Path(e.path)
                try:
                    entry = json.loads(path.read_text())
                    if not isinstance(entry["moves"], list) or not isinstance(entry["deletes"], list):
                        raise TypeError("moves and deletes must be lists")
                except FileNotFoundError:
                    continue
                except (OSError, ValueError, KeyError, TypeError) as err:
                    raise StoreError(f"{path}: unreadable journal entry ({err}); move it away "
                                     f"to open the store") from err
                found.append((path, entry))
        return found

    def _recover(self) -> None:
        """Under the exclusive lock: roll committed journals forward, remove everything else."""
        try:
            for path, entry in self._journals():
                self._apply(path, entry)
            for e in _scandir(self._journal):
                _step("recover-clean")
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path, ignore_errors=True)
                else:
                    os.unlink(e.path)
        except OSError as e:
            raise StoreError(f"{e.filename or self._journal}: cannot finish an interrupted change: "
                             f"{_reason(e)}") from e

    def _apply(self, jpath: Path, entry: dict[str, Any]) -> None:
        """Steps 5-6 of the protocol for one committed journal entry; idempotent."""
        staging = jpath.with_suffix(".d")
        touched: set[Path] = set()
        for staged, rel in entry["moves"]:
            src, dst = staging / staged, self.path / rel
            if src.exists():
                _makedirs(dst.parent, touched)
                _step("move")
                os.replace(src, dst)
                touched.add(dst.parent)
        if all((self.path / rel).exists() for _, rel in entry["moves"]):
            for rel in entry["deletes"]:
                _step("delete")
                try:
                    (self.path / rel).unlink()
                    touched.add((self.path / rel).parent)
                except FileNotFoundError:
                    pass
        if self.sync:
            for d in touched:
                _fsync_dir(d)
        _step("applied")
        jpath.unlink()
        shutil.rmtree(staging, ignore_errors=True)

    def _commit(self, moves: list[tuple[str, bytes]], deletes: list[str], kind: str) -> None:
        """Write one journal entry (steps 3-6) under the exclusive lock. `moves`: (path in store, bytes)."""
        jid = f"{time.time_ns()}-{kind}-{os.getpid()}-{secrets.token_hex(4)}"
        jpath = self._journal / f"{jid}.json"
        staging = jpath.with_suffix(".d")
        committed = False
        created: list[Path] = []
        try:
            staging.mkdir()
            touched = {staging}
            for rel, _ in moves:  # folders first: a full disk fails here rather than after the commit
                _makedirs((self.path / rel).parent, touched, created)
            for i, (_, data) in enumerate(moves):
                _step("stage")
                _write_file(staging / str(i), data, self.sync)
            if self.sync:
                for d in touched:
                    _fsync_dir(d)
            entry = {"kind": kind, "moves": [[str(i), rel] for i, (rel, _) in enumerate(moves)],
                     "deletes": deletes}
            _step("commit")
            tmp = self._journal / f".tmp-{jid}.json"
            _write_file(tmp, json.dumps(entry).encode(), self.sync)
            os.replace(tmp, jpath)
            committed = True
            if self.sync:
                _fsync_dir(self._journal)
        except OSError as e:
            if not committed:
                shutil.rmtree(staging, ignore_errors=True)
                for leftover in self._journal.glob(f".tmp-{jid}*"):
                    leftover.unlink(missing_ok=True)
                for d in reversed(created):
                    with suppress(OSError):
                        d.rmdir()
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise StoreError(f"{self.path}: disk full; nothing was changed") from e
                raise StoreError(f"{e.filename or self.path}: {_reason(e)}; nothing was changed") from e
        try:
            self._apply(jpath, entry)
        except OSError as e:
            raise StoreError(f"{e.filename or self.path}: {_reason(e)}; the change is committed and the "
                             f"next append, compact or open of the store completes it") from e

    def _view(self) -> _View:
        """Under the shared lock: journals left by dead writers, as the reader must see them."""
        view = _View()
        for jpath, entry in self._journals():
            staging = jpath.with_suffix(".d")
            pending = {}
            for staged, rel in entry["moves"]:
                if (staging / staged).exists():
                    pending[self.path / rel] = staging / staged
            if all(p in pending or p.exists() for p in (self.path / rel for _, rel in entry["moves"])):
                view.deleted.update(str(self.path / rel) for rel in entry["deletes"])
            for dst, src in pending.items():
                view.added.setdefault(dst.parent, {})[dst.name] = str(src)
        return view

    @contextmanager
    def _reading(self) -> Iterator[_View]:
        with _Lock(self._lock_path, False).acquire(required=False):
            yield self._view() if _scandir(self._journal) else _View()

    # ----------------------------------------------------------------- append

    def append(self, frames: Mapping[str, pd.DataFrame]) -> AppendResult:
        """Store the collections in `frames` (table name -> frame of frames.SCHEMAS) that are not stored yet.

        A collection is (host, time); all its rows in every table share that time.
        Collections already in the store are skipped whole, so appending the same
        frames twice stores nothing the second time. Tables missing from `frames`
        count as empty for its collections. The append is all or nothing.
        Raises ValueError for frames that do not match the schemas, StoreError for
        the store (disk full: nothing was changed).
        """
        batch = _prepare(frames)
        counts = _collection_counts(batch)
        if counts.empty:
            return AppendResult(rows=dict.fromkeys(TABLES, 0), collections=0, skipped=0)
        for host in counts.index.get_level_values(0).unique():
            if len(f"host={escape_host(host)}".encode()) > _MAX_NAME:
                raise StoreError(f"{self.path}: host name too long for a folder name: {host[:60]!r}...")
        with self._writer_lock():
            _step("locked")
            stored = self._stored(counts)
            skipped = int(stored.sum())
            if skipped:
                counts = counts[~stored]
                keep = counts.index
                for t, df in batch.items():
                    key = pd.MultiIndex.from_arrays([df["host"], df["time"]])
                    batch[t] = df[key.isin(keep)]
            rows = {t: len(df) for t, df in batch.items()}
            if counts.empty:
                return AppendResult(rows=rows, collections=0, skipped=skipped)
            coll = counts.reset_index()
            moves = []
            for t, df in [*batch.items(), (COLLECTIONS, coll)]:
                moves.extend(self._partition_files(t, df))
            self._commit(moves, [], "append")
        return AppendResult(rows=rows, collections=len(counts), skipped=skipped, files=len(moves))

    def _partition_files(self, table: str, df: pd.DataFrame) -> list[tuple[str, bytes]]:
        """One (store path, parquet bytes) per (host, date) of `df`, rows sorted by time (stably)."""
        if df.empty:
            return []
        codes, names = pd.factorize(df["host"], sort=True)
        ns = df["time"].to_numpy(dtype="datetime64[ns]").view("int64")
        days = ns // _DAY_NS
        order = np.lexsort((np.arange(len(df)), ns, days, codes))
        cols = [c for c in STORE_SCHEMAS[table] if c != "host"]
        arrow = pa.Table.from_pandas(df[cols], schema=_SCHEMAS_ARROW[table], preserve_index=False)
        arrow = arrow.replace_schema_metadata(None).take(pa.array(order))
        codes, days, ns = codes[order], days[order], ns[order]
        cuts = np.flatnonzero((codes[1:] != codes[:-1]) | (days[1:] != days[:-1])) + 1
        out = []
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(df)], strict=True):
            data = _parquet_bytes(arrow.slice(lo, hi - lo))
            day = date.fromordinal(date(1970, 1, 1).toordinal() + int(days[lo]))
            folder = self.path / table / f"host={escape_host(names[codes[lo]])}" / f"date={day}"
            name = _data_name(data, int(ns[lo]), int(ns[hi - 1]), folder)
            out.append((f"{folder.relative_to(self.path)}/{name}", data))
        return out

    def _stored(self, counts: pd.DataFrame) -> np.ndarray:
        """For each (host, time) in `counts`' index: is that collection stored already?"""
        hosts = counts.index.get_level_values(0)
        times = counts.index.get_level_values(1).to_numpy(dtype="datetime64[ns]").view("int64")
        stored = np.zeros(len(counts), dtype=bool)
        view = _View()  # under the exclusive lock, after recovery: no journals
        for host in pd.unique(hosts):
            mine = np.asarray(hosts == host)
            lo, hi = int(times[mine].min()), int(times[mine].max()) + 1
            paths = self._files(COLLECTIONS, host, lo, hi, view)
            if paths:
                have = _read_files(paths, ["time"], _SCHEMAS_ARROW[COLLECTIONS], None)
                have_ns = have.column("time").to_numpy().astype("datetime64[ns]").view("int64")
                stored[mine] = np.isin(times[mine], have_ns)
        return stored

    # ----------------------------------------------------------------- reading

    def _files(self, table: str, host: str, lo: int | None, hi: int | None, view: _View) -> list[str]:
        """`host`'s files of `table` that may hold times in [lo, hi), pruned by folder and file names."""
        lo_ns = -(2**63) if lo is None else lo
        hi_ns = 2**63 - 1 if hi is None else hi
        # Names hold fixed-width stamps: compare them as strings (no parsing of thousands of names).
        # A file covers [first, last + 1 s): it overlaps [lo, hi) iff
        # first <= stamp(hi - 1) and last >= stamp(lo).
        lo_s = "" if lo is None else _stamp(lo)
        hi_s = "~" if hi is None else _stamp(hi - 1)
        host_dir = self.path / table / f"host={escape_host(host)}"
        out = []
        for name, ddir in view.subdirs(host_dir, "date="):
            try:
                day = calendar.timegm(date.fromisoformat(name[5:]).timetuple()) * _NS
            except ValueError:
                day, end = -(2**63), 2**63 - 1
            else:
                end = day + _DAY_NS
            if day >= hi_ns or end <= lo_ns:
                continue
            for fname in view.names(ddir):
                if fname.startswith((".", "_")) or not fname.endswith(".parquet"):
                    continue
                if len(fname) > 34 and fname[16] == "-" and fname[33] == "-":
                    if fname[:16] <= hi_s and fname[17:33] >= lo_s:
                        out.append(view.path(ddir, fname))
                elif _file_range(fname) is not None:  # not named by the store: range unknown
                    out.append(view.path(ddir, fname))
        return out

    def _hosts(self, table: str, view: _View) -> list[str]:
        return [unquote(n[5:]) for n, _ in view.subdirs(self.path / table, "host=")]

    def _plan(self, table: str, hosts: Iterable[str] | None, lo: int | None,
              hi: int | None) -> dict[str, list[str]]:
        with self._reading() as view:
            names = self._hosts(table, view) if hosts is None else sorted(set(hosts))
            return {h: self._files(table, h, lo, hi, view) for h in names}

    def read(self, table: str, *, hosts: str | Iterable[str] | None = None, since: When | None = None,
             until: When | None = None, columns: Iterable[str] | None = None,
             categorical: Iterable[str] = (), sort: bool = True) -> pd.DataFrame:
        """Rows of `table` for `hosts` (default: all) with since <= time < until, sorted by time.

        `table` is one of frames.TABLES or ``collections``. Times: datetime, date,
        Timestamp or text for timewindow.parse_when (``24h``, ISO 8601); naive is UTC.
        Columns have frames.SCHEMAS dtypes (`columns`: a subset, in that order), except
        the string columns named in `categorical` (e.g. host, domain, metric), which come
        back as pandas Categoricals read straight from Parquet's dictionaries: for the
        month-long reads of a report, far less memory and time than 10 M strings.
        ``sort=False`` keeps the files' order (per host, by day) and skips a full sort.
        """
        schema = _schema_of(table)
        cols = list(schema) if columns is None else list(columns)
        unknown = [c for c in cols if c not in schema]
        if unknown:
            raise ValueError(f"{table}: unknown columns {unknown}")
        if isinstance(hosts, str):
            hosts = [hosts]
        lo, hi = _ns(to_utc(since)), _ns(to_utc(until))
        file_cols = [c for c in schema if c != "host" and (c in cols or c == "time")]
        dictionary = [c for c in categorical if c in cols]
        for attempt in range(_RETRIES):
            plan = self._plan(table, hosts, lo, hi)
            try:
                parts = []
                for host, paths in plan.items():
                    if paths:
                        t = _read_files(paths, file_cols, _SCHEMAS_ARROW[table], (lo, hi), dictionary)
                        if t.num_rows:
                            hcol = _repeat(host, t.num_rows, "host" in dictionary)
                            parts.append(t.append_column("host", hcol))
                break
            except (OSError, pa.ArrowException) as e:
                gone = [p for paths in plan.values() for p in paths if not os.path.exists(p)]
                if not gone or attempt == _RETRIES - 1:
                    raise StoreError(f"{self.path / table}: cannot read: {e}") from e
        return _to_frame(table, parts, cols, dictionary, sort)

    def collections(self, host: str | Iterable[str] | None = None, since: When | None = None,
                    until: When | None = None) -> pd.DataFrame:
        """The stored collections: a frame of (time, host), sorted by time."""
        return self.read(COLLECTIONS, hosts=host, since=since, until=until, columns=["time", "host"])

    def hosts(self) -> list[str]:
        """Every host with at least one stored collection, sorted."""
        with self._reading() as view:
            return self._hosts(COLLECTIONS, view)

    def latest_times(self, host: str | Iterable[str] | None = None) -> dict[str, pd.Timestamp]:
        """The time of each host's most recent collection."""
        hosts = [host] if isinstance(host, str) else host
        out = {}
        for _ in range(_RETRIES):
            with self._reading() as view:
                plan = {}
                for h in (self._hosts(COLLECTIONS, view) if hosts is None else sorted(set(hosts))):
                    days = view.subdirs(self.path / COLLECTIONS / f"host={escape_host(h)}", "date=")
                    for _, ddir in reversed(days):
                        named = [(r, p) for n, p in view.files(ddir) if (r := _file_range(n)) is not None]
                        if named:
                            top = max(r[1] for r, _ in named)
                            plan[h] = [p for r, p in named if r[1] == top]
                            break
            try:
                for h, paths in plan.items():
                    t = _read_files(paths, ["time"], _SCHEMAS_ARROW[COLLECTIONS], None)
                    out[h] = pd.Timestamp(pc.max(t.column("time")).as_py()).tz_convert("UTC")
                return out
            except (OSError, pa.ArrowException):
                continue
        raise StoreError(f"{self.path}: cannot read the latest collections (the store keeps changing)")

    def latest(self, table: str, host: str | Iterable[str] | None = None) -> pd.DataFrame:
        """Rows of `table` from each host's most recent collection (none for a host whose latest
        collection had no rows in `table`)."""
        parts = [self.read(table, hosts=h, since=t, until=t + pd.Timedelta(1, "ns"))
                 for h, t in sorted(self.latest_times(host).items())]
        parts = [p for p in parts if len(p)]
        if not parts:
            return _to_frame(table, [], list(_schema_of(table)))
        return pd.concat(parts, ignore_index=True).sort_values("time", kind="stable", ignore_index=True)

    def stats(self) -> pd.DataFrame:
        """Per table: files, rows (from the Parquet footers) and bytes on disk. Indexed by table."""
        for attempt in range(_RETRIES):
            with self._reading() as view:
                plan = {t: self._files_of(t, view) for t in STORE_TABLES}
            try:
                rows = [(t, len(paths), sum(_footer_rows(p) for p in paths),
                         sum(os.stat(p).st_size for p in paths)) for t, paths in plan.items()]
                break
            except (OSError, pa.ArrowException) as e:
                if attempt == _RETRIES - 1:
                    raise StoreError(f"{self.path}: cannot read file footers: {e}") from e
        frame = pd.DataFrame(rows, columns=["table", "files", "rows", "bytes"]).set_index("table")
        return frame.astype("int64")

    def _files_of(self, table: str, view: _View) -> list[str]:
        return [p for _, hdir in view.subdirs(self.path / table, "host=")
                for _, ddir in view.subdirs(hdir, "date=")
                for n, p in view.files(ddir) if _file_range(n) is not None]

    def summary(self) -> StoreSummary:
        """Stats per table, hosts and the first and last collection times (for ``store info``)."""
        stats = self.stats()
        hosts = self.hosts()
        first = last = None
        if hosts:
            with self._reading() as view:
                ranges = [r for p in self._files_of(COLLECTIONS, view)
                          if (r := _file_range(os.path.basename(p)))]
            if ranges:
                first = pd.Timestamp(min(r[0] for r in ranges), tz="UTC")
                last = max(self.latest_times().values())
        return StoreSummary(self.path, stats, hosts, first, last, len(self._journals()))

    # ----------------------------------------------------------------- checking

    def check(self, repair: bool = False) -> CheckResult:
        """Every entry of the table folders that readers could trip on: files the store did not
        write (``foreign``: other names, other schemas, folders) and files it cannot read
        (``corrupt``). Reads every file whole. With `repair`, each one is moved, under the writer
        lock, to ``<store>/.quarantine/<time>/`` at the same relative path; nothing else changes.
        """
        with self._reading() as view:
            entries = [e for t in STORE_TABLES for e in self._entries(t, view)]
        problems = []
        checked = 0
        for table, path, is_dir in entries:
            checked += not is_dir
            problem = _problem(table, path, is_dir)
            if problem is not None:
                problems.append(problem)
        if repair and problems:
            problems = self._quarantine(problems)
        return CheckResult(problems, checked)

    def _entries(self, table: str, view: _View) -> list[tuple[str, str, bool]]:
        """(table, path, is a folder) of what is in `table`'s folder where data files belong, and of
        anything else found on the way (a stray file beside the host= folders, say)."""
        out = []
        root = self.path / table
        for e in _scandir(root):
            if not (e.is_dir() and e.name.startswith("host=")):
                out.append((table, e.path, e.is_dir()))
                continue
            for d in _scandir(Path(e.path)):
                if not (d.is_dir() and _date_of(d.name) is not None and d.name.startswith("date=")):
                    out.append((table, d.path, d.is_dir()))
                    continue
                for name in view.names(Path(d.path)):
                    path = os.path.join(d.path, name)
                    if path in view.deleted or name in view.added.get(Path(d.path), {}):
                        continue        # a dead writer's change, as readers see it
                    out.append((table, path, os.path.isdir(path)))
        return out

    def _quarantine(self, problems: list[Problem]) -> list[Problem]:
        stamp = clock.now().strftime(STAMP)
        moved = []
        with self._writer_lock():
            for p in problems:
                src = Path(p.path)
                if not src.exists():
                    continue
                dst = self.path / QUARANTINE / stamp / src.relative_to(self.path)
                try:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(src, dst)
                    if self.sync:
                        _fsync_dir(src.parent)
                        _fsync_dir(dst.parent)
                except OSError as e:
                    raise StoreError(f"{src}: cannot move it to {dst}: {_reason(e)}") from e
                moved.append(Problem(p.path, p.kind, p.reason, str(dst)))
        return moved

    # ----------------------------------------------------------------- compaction

    def compact(self, before: date | datetime | str | None = None) -> CompactResult:
        """Merge each (table, host, date) partition's files into one, for dates before `before`
        (default: every date). Crash-safe; appends may run meanwhile."""
        limit = None if before is None else to_utc(before).date()
        with self._writer_lock():
            _step("compact-plan")
            parts = [ddir for t in STORE_TABLES for _, hdir in _View().subdirs(self.path / t, "host=")
                     for name, ddir in _View().subdirs(hdir, "date=")
                     if limit is None or _date_of(name) is None or _date_of(name) < limit]
        totals = [0, 0, 0, 0, 0]
        for ddir in parts:
            done = self._compact_partition(ddir)
            if done is not None:
                totals = [a + b for a, b in zip(totals, done, strict=True)]
        return CompactResult(*totals)

    def _compact_partition(self, ddir: Path) -> tuple[int, int, int, int, int] | None:
        table = ddir.relative_to(self.path).parts[0]
        # Only files the store wrote: a foreign one is left where it is (merging would delete it),
        # for `store check` to report.
        sources = [(n, p) for n, p in _View().files(ddir) if _DATA_NAME.match(n)]
        if len(sources) < 2:
            return None
        sources.sort(key=lambda s: (_file_range(s[0]), s[0]))
        paths = [p for _, p in sources]
        try:
            merged = _read_files(paths, None, _SCHEMAS_ARROW[table], None, skip_bad=False)
            size_before = sum(os.stat(p).st_size for p in paths)
        except (OSError, pa.ArrowException):
            if all(os.path.exists(p) for p in paths):
                # Never merge (and so delete) a file that cannot be read: leave the partition as
                # it is for `store check --repair`, and compact the others.
                for p in paths:
                    if not _readable(p):
                        warn_unreadable(p)
                return None
            return None  # another compaction got there first
        merged = merged.take(pc.sort_indices(merged, sort_keys=[("time", "ascending")]))  # stable
        data = _parquet_bytes(merged.replace_schema_metadata(None), ROW_GROUP_ROWS)
        ns = merged.column("time").to_numpy().astype("datetime64[ns]").view("int64")
        rel = ddir.relative_to(self.path)
        with self._writer_lock():
            if not all(os.path.exists(p) for p in paths):
                return None  # another compaction got there first
            name = _data_name(data, int(ns.min()), int(ns.max()), ddir)
            self._commit([(f"{rel}/{name}", data)], [f"{rel}/{n}" for n, _ in sources], "compact")
        return 1, len(paths), 1, size_before, len(data)


# --------------------------------------------------------------------------- helpers


def _problem(table: str, path: str, is_dir: bool) -> Problem | None:
    """What is wrong with one entry of a table folder, if anything (`Store.check`)."""
    name = os.path.basename(path)
    if is_dir:
        return Problem(path, "foreign", "a folder where the store keeps only host=/date= folders and "
                                        "its own files")
    if not name.endswith(".parquet"):
        return Problem(path, "foreign", "not a Parquet file of the store")
    if not _DATA_NAME.match(name):
        return Problem(path, "foreign", "not a file the store wrote (name)")
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException):
        return Problem(path, "corrupt", "not a readable Parquet file")
    want = _SCHEMAS_ARROW[table]
    if [(f.name, f.type) for f in schema] != [(f.name, f.type) for f in want]:
        return Problem(path, "foreign", f"not the {table} table's columns and types")
    if not _readable(path):
        return Problem(path, "corrupt", "not a readable Parquet file")
    return None


def _readable(path: str) -> bool:
    try:
        pq.read_table(path)
    except (OSError, pa.ArrowException):
        return False
    return True


def _footer_rows(path: str) -> int:
    """Rows in a file's Parquet footer; 0 with a warning for a file that exists but is unreadable."""
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException):
        if not os.path.exists(path):
            raise
        warn_unreadable(path)
        return 0


def _reason(e: OSError) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    return e.strerror or str(e)


def _ns(stamp: pd.Timestamp | None) -> int | None:
    return None if stamp is None else int(stamp.value)


def _date_of(name: str) -> date | None:
    try:
        return date.fromisoformat(name[5:])
    except ValueError:
        return None


def _schema_of(table: str) -> dict[str, str]:
    try:
        return STORE_SCHEMAS[table]
    except KeyError:
        raise ValueError(f"unknown table {table!r}; one of {', '.join(STORE_TABLES)}") from None


def _repeat(value: str, n: int, dictionary: bool = False) -> pa.Array:
    if dictionary:
        return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value]))
    return pa.array([value], pa.string()).take(pa.array(np.zeros(n, dtype=np.int32)))


def _read_files(paths: list[str], columns: list[str] | None, schema: pa.Schema,
                window: tuple[int | None, int | None] | None, dictionary: Sequence[str] = (),
                *, skip_bad: bool = True) -> pa.Table:
    """The rows of `paths` (in that order) with `columns`, optionally only times in [lo, hi);
    the `dictionary` columns dictionary-encoded as Parquet stores them.

    `skip_bad`: a file that exists but cannot be read (corrupt, truncated, not Parquet) is left
    out with a `StoreWarning` naming it, so one bad file does not stop every report; a file
    that is gone (a compaction removed it meanwhile) still raises, for the caller to retry.
    """
    try:
        return _read_dataset(paths, columns, schema, window, dictionary)
    except (OSError, pa.ArrowException):
        if not skip_bad or len(paths) == 0:
            raise
    tables = []
    for path in paths:
        try:
            tables.append(_read_dataset([path], columns, schema, window, dictionary))
        except (OSError, pa.ArrowException):
            if not os.path.exists(path):
                raise
            warn_unreadable(path)
    if not tables:
        return _read_dataset([], columns, schema, window, dictionary)
    return pa.concat_tables(tables, promote_options="default") if dictionary else pa.concat_tables(tables)


def warn_unreadable(path: str) -> None:
    """The one warning for a store file that cannot be read (shown once per file)."""
    warnings.warn(f"{path}: unreadable Parquet file skipped (run 'rdtadvisor store check --repair' to "
                  "quarantine it)", StoreWarning, stacklevel=3)


def _read_dataset(paths: list[str], columns: list[str] | None, schema: pa.Schema,
                  window: tuple[int | None, int | None] | None, dictionary: Sequence[str] = ()) -> pa.Table:
    fmt: Any = "parquet"
    if dictionary:
        fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=list(dictionary)))
        for name in dictionary:
            if name in schema.names:
                i = schema.get_field_index(name)
                schema = schema.set(i, schema.field(i).with_type(pa.dictionary(pa.int32(), pa.string())))
    dset = ds.dataset(list(paths), schema=schema, format=fmt)
    filt = None
    if window is not None:
        ts = pa.timestamp("ns", tz="UTC")
        for bound, op in zip(window, ("__ge__", "__lt__"), strict=True):
            if bound is not None:
                cond = getattr(ds.field("time"), op)(pa.scalar(bound, ts))
                filt = cond if filt is None else filt & cond
    return dset.to_table(columns=columns, filter=filt)


def _to_frame(table: str, parts: list[pa.Table], cols: list[str], dictionary: Sequence[str] = (),
              sort: bool = True) -> pd.DataFrame:
    schema = STORE_SCHEMAS[table]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="category" if c in dictionary else schema[c]) for c in cols})
    t = pa.concat_tables(parts, promote_options="default") if dictionary else pa.concat_tables(parts)
    if sort:
        order = np.argsort(t.column("time").to_numpy().astype("datetime64[ns]").view("int64"), kind="stable")
        t = t.take(pa.array(order))
    t = t.select(cols)
    if dictionary:
        t = t.unify_dictionaries()
    # Non-null numeric columns convert straight to numpy (the nullable detour doubles the cost
    # of a ten-million-row read); nullable ones keep their extension types.
    mapper = _PANDAS_TYPES.get if any(t.column(c).null_count for c in cols if c not in dictionary) \
        else _STRING_TYPES.get
    frame = t.to_pandas(types_mapper=mapper)
    return frame.astype({c: schema[c] for c in cols if c not in dictionary})


def _prepare(frames: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    unknown = [t for t in frames if t not in SCHEMAS]
    if unknown:
        raise ValueError(f"unknown tables {unknown}; one of {', '.join(TABLES)}")
    out = {}
    for t in TABLES:
        frame = frames.get(t)
        if frame is None:
            frame = pd.DataFrame({c: pd.Series(dtype=d) for c, d in SCHEMAS[t].items()})
        df = validate(t, frame).reset_index(drop=True)
        if df["time"].isna().any() or df["host"].isna().any() or (df["host"] == "").any():
            raise ValueError(f"{t}: every row needs a time and a non-empty host")
        out[t] = df
    return out


def _collection_counts(batch: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Index (host, time) of every collection in `batch`; columns rows_<table>."""
    cols = [f"rows_{t}" for t in batch]
    counts = [df.groupby([df["host"].astype(object), "time"], sort=False).size().rename(f"rows_{t}")
              for t, df in batch.items() if len(df)]
    if not counts:
        return pd.DataFrame(columns=cols, dtype="int64")
    frame = pd.concat(counts, axis=1).reindex(columns=cols).fillna(0).astype("int64")
    frame.index = frame.index.set_names(["host", "time"])
    return frame.sort_index()

