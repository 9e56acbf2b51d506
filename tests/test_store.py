"""The history store (rdtadvisor.store): what it promises, as tests.

Crash and concurrency behaviour with real processes is in test_store_crash.py.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from datetime import date
from pathlib import Path

import click
import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rdtadvisor.core.errors import StoreError
from rdtadvisor.core.timewindow import parse_when, to_utc
from rdtadvisor.store import COLLECTIONS, Store, escape_host, parquet
from rdtadvisor.store.frames import SCHEMAS, TABLES

T0 = pd.Timestamp("2024-05-01T23:57:00.250Z")  # crosses midnight after 3 minutes; sub-second times
HOSTS = ["xen01", "xen/02 ü%=#?", "."]


def collection(host: str, i: int) -> dict[str, pd.DataFrame]:
    """One collection of `host` at minute `i`: every table, every dtype, nulls and unicode.

    events is empty for odd `i` and settings for i % 3 == 2: collections may lack a table.
    """
    t = T0 + pd.Timedelta(minutes=i)
    doms = [(0, "Domain-0"), (7, "vm-ü ✓"), (12, None)]
    rows = [(s, d, n, m, r, 2**40 + 1000 * i + 10 * s + r, u)
            for s in (0, 1) for d, n in doms
            for m, u, readings in (("l3_occupancy", "B", 1), ("mem_bw_total", "B/s", 2),
                                   ("mem_bw_local", "B/s", 2))
            for r in range(readings)]
    samples = pd.DataFrame(rows, columns=["socket", "domid", "domain", "metric", "reading", "value", "unit"])
    samples.insert(0, "host", host)
    samples.insert(0, "time", t)
    settings_ = pd.DataFrame({"time": t, "host": host, "socket": [0, 0, 1], "domid": [0, 7, 7],
                              "domain": ["Domain-0", "vm-ü ✓", "vm-ü ✓"],
                              "setting": ["l3_cbm", "l3_cbm", "mba_thrtl"],
                              "value": pd.array([0xFFFFF, None, 10 + i], dtype="Int64")})
    if i % 3 == 2:
        settings_ = settings_.iloc[0:0]
    facts = pd.DataFrame({"time": t, "host": host, "socket": pd.array([None, 0, 1], dtype="Int16"),
                          "fact": ["xen_version", "l3_cache", "l3_cache"],
                          "value": pd.array([None, 2.5e7 + i, 1.5], dtype="Float64"),
                          "text": ["4.17 ü", None, ""]})
    domains = pd.DataFrame({"time": t, "host": host, "domid": [0, 7, 12],
                            "domain": ["Domain-0", "vm-ü ✓", None], "memory_bytes": [2**33, 2**31 + i, 0],
                            "vcpus": [4, 2, 1],
                            "state": ["r-----", "-b----", None],
                            "cpu_seconds": pd.array([1204911.9, 3.5 + i, None], dtype="Float64")})
    events = pd.DataFrame({"time": t, "host": host, "command": ["xl psr-mba-show", None],
                           "kind": ["unsupported", "note"], "message": ["MBA is not supported ✗", None]})
    if i % 2:
        events = events.iloc[0:0]
    tables = {"samples": samples, "settings": settings_, "facts": facts, "domains": domains, "events": events}
    return {k: v.astype(SCHEMAS[k]) for k, v in tables.items()}


def batch(hosts: list[str], minutes: range | list[int]) -> dict[str, pd.DataFrame]:
    parts = [collection(h, i) for i in minutes for h in hosts]
    return {t: pd.concat([p[t] for p in parts], ignore_index=True) if parts else None for t in TABLES}


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` in an order that does not depend on how rows were appended."""
    keys = [c for c in frame.columns]
    return frame.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)


def assert_store_holds(store: Store, expected: dict[str, pd.DataFrame]) -> None:
    for t in TABLES:
        got = store.read(t)
        assert list(got.dtypes.astype(str)) == list(SCHEMAS[t].values()), t
        assert got["time"].is_monotonic_increasing, t
        pd.testing.assert_frame_equal(canonical(got), canonical(expected[t].astype(SCHEMAS[t])), obj=t)


def files(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under `root`."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store", sync=False)


# --------------------------------------------------------------------------- round trip


def test_every_table_round_trips_with_its_dtypes_nulls_and_unicode(store: Store) -> None:
    frames = batch(HOSTS, range(6))
    result = store.append(frames)
    assert result.collections == 18 and result.skipped == 0
    assert result.rows == {t: len(frames[t]) for t in TABLES}
    assert_store_holds(store, frames)


def test_rows_of_one_collection_keep_their_order(store: Store) -> None:
    frames = batch(["xen01"], [0])
    store.append(frames)
    pd.testing.assert_frame_equal(store.read("samples"), frames["samples"])


def test_layout_is_hive_partitioned_by_escaped_host_and_utc_date(store: Store) -> None:
    store.append(batch(["xen/02 ü%=#?"], [0, 3]))  # 23:57 and 00:00 the next day
    host_dir = store.path / "samples" / f"host={escape_host('xen/02 ü%=#?')}"
    assert host_dir.name == "host=xen%2F02%20%C3%BC%25%3D%23%3F"
    assert sorted(p.name for p in host_dir.iterdir()) == ["date=2024-05-01", "date=2024-05-02"]
    (first,) = (host_dir / "date=2024-05-01").iterdir()
    assert first.name.startswith("20240501T235700Z-20240501T235700Z-") and first.suffix == ".parquet"
    assert "host" not in ds.dataset(first).schema.names
    assert json.loads((store.path / "STORE.json").read_text()) == {"format": "rdtadvisor-store", "version": 1}


def test_query_by_host_and_half_open_time_window(store: Store) -> None:
    store.append(batch(HOSTS, range(6)))
    t = T0 + pd.Timedelta(minutes=2)
    got = store.read("domains", hosts="xen01", since=t, until=t + pd.Timedelta(minutes=2))
    assert set(got["host"]) == {"xen01"}
    assert sorted(set(got["time"])) == [t, t + pd.Timedelta(minutes=1)]
    got = store.read("domains", hosts=["xen01", "."], since=t.to_pydatetime())
    assert set(got["host"]) == {"xen01", "."} and got["time"].min() == t and len(set(got["time"])) == 4
    got = store.read("facts", since=date(2024, 5, 2))  # a date is its midnight UTC
    assert got["time"].min() == pd.Timestamp("2024-05-02T00:00:00.250Z")
    assert store.read("samples", hosts="nobody").empty
    naive = store.read("events", until=pd.Timestamp("2024-05-01 23:58"))  # naive times are UTC
    assert set(naive["time"]) == {T0}


def test_window_edges_are_exact_to_the_nanosecond(store: Store) -> None:
    store.append(batch(["xen01"], range(4)))  # times at .250 s: file names round down to the second
    t = T0 + pd.Timedelta(minutes=2)
    ns = pd.Timedelta(1, "ns")
    assert set(store.collections(since=t)["time"]) == {t, t + pd.Timedelta(minutes=1)}
    assert set(store.collections(since=t + ns)["time"]) == {t + pd.Timedelta(minutes=1)}
    assert set(store.collections(until=t)["time"]) == {T0, T0 + pd.Timedelta(minutes=1)}
    assert set(store.collections(since=t, until=t + ns)["time"]) == {t}
    assert store.read("samples", since=t - pd.Timedelta("0.2s"), until=t).empty


def test_columns_subset(store: Store) -> None:
    store.append(batch(["xen01"], range(2)))
    got = store.read("samples", columns=["value", "host"])
    assert list(got.columns) == ["value", "host"] and got["value"].dtype == "int64"
    with pytest.raises(ValueError, match="unknown columns"):
        store.read("samples", columns=["nope"])
    with pytest.raises(ValueError, match="unknown table"):
        store.read("nope")


def test_hosts_collections_latest_and_stats(store: Store) -> None:
    store.append(batch(HOSTS, range(4)))
    store.append(batch(["xen01"], [9]))
    assert store.hosts() == sorted(HOSTS)
    coll = store.collections(host="xen01")
    assert list(coll.columns) == ["time", "host"] and len(coll) == 5
    three, nine = T0 + pd.Timedelta(minutes=3), T0 + pd.Timedelta(minutes=9)
    assert store.latest_times() == {".": three, "xen/02 ü%=#?": three, "xen01": nine}
    latest = store.latest("domains")
    assert latest.groupby("host")["time"].max().to_dict() == store.latest_times()
    assert len(latest) == 9
    assert store.latest("events", host="xen01").empty  # minute 9 had no events
    counts = store.read(COLLECTIONS)
    assert counts["rows_samples"].sum() == len(store.read("samples"))
    stats = store.stats()
    assert stats.loc["samples", "rows"] == len(store.read("samples"))
    assert stats.loc["collections", "rows"] == 13 and (stats["bytes"] > 0).any()


# --------------------------------------------------------------------------- standard readers


def read_with_pandas(root: Path, table: str) -> pd.DataFrame:
    return pd.read_parquet(root / table, dtype_backend="numpy_nullable")


def read_with_duckdb(root: Path, table: str) -> pd.DataFrame:
    query = f"select * from read_parquet('{root}/{table}/**/*.parquet', hive_partitioning=true)"
    return duckdb.sql(query).df()


def read_with_pyarrow(root: Path, table: str) -> pd.DataFrame:
    return ds.dataset(root / table, format="parquet", partitioning="hive").to_table().to_pandas()


def comparable(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    frame = frame[list(SCHEMAS[table])].copy()
    frame["host"] = frame["host"].astype(str)
    if frame["time"].dt.tz is None:  # duckdb hands back UTC wall time
        frame["time"] = frame["time"].dt.tz_localize("UTC")
    frame["time"] = frame["time"].astype("datetime64[ns, UTC]")
    return canonical(frame.astype({c: t for c, t in SCHEMAS[table].items() if c != "time"}))


@pytest.mark.parametrize("reader", [read_with_pandas, read_with_duckdb, read_with_pyarrow])
def test_standard_tools_read_the_store_directly(store: Store, reader, monkeypatch) -> None:
    store.append(batch(HOSTS, range(5)))
    # A writer that died before committing leaves staged files; nobody must see them.
    monkeypatch.setattr(parquet, "_checkpoint", _die_at("commit"))
    with pytest.raises(_Died):
        store.append(batch(HOSTS, range(5, 8)))
    monkeypatch.setattr(parquet, "_checkpoint", None)
    assert any((store.path / ".journal").iterdir())
    for t in TABLES:
        got = reader(store.path, t)
        assert "date" in got.columns
        pd.testing.assert_frame_equal(comparable(got, t), canonical(store.read(t)), obj=t)
    assert len(store.read("samples")) == len(batch(HOSTS, range(5))["samples"])


def test_a_new_empty_store_is_readable_by_standard_tools_too(store: Store) -> None:
    for t in TABLES:
        assert read_with_pandas(store.path, t).empty
        assert store.read(t).empty and list(store.read(t).columns) == list(SCHEMAS[t])


# --------------------------------------------------------------------------- idempotence


def test_appending_the_same_frames_twice_stores_them_once(store: Store) -> None:
    frames = batch(HOSTS, range(4))
    store.append(frames)
    before = files(store.path)
    again = store.append(frames)
    assert again.collections == 0 and again.skipped == 12 and again.total_rows == 0
    assert files(store.path) == before
    assert_store_holds(store, frames)


def test_overlapping_batches_store_the_exact_union(store: Store) -> None:
    first = store.append(batch(HOSTS, range(0, 6)))
    second = store.append(batch(HOSTS[:2], range(3, 9)))
    assert (first.collections, second.collections, second.skipped) == (18, 6, 6)
    assert second.rows["samples"] == len(batch(HOSTS[:2], range(6, 9))["samples"])
    union = [batch(HOSTS, range(0, 6)), batch(HOSTS[:2], range(6, 9))]
    expected = {t: pd.concat([b[t] for b in union]) for t in TABLES}
    assert_store_holds(store, expected)


def test_collections_without_rows_in_some_tables_are_still_skipped(store: Store) -> None:
    only_facts = {"facts": batch(["xen01"], [0])["facts"]}
    assert store.append(only_facts).collections == 1
    again = store.append(batch(["xen01"], [0]))  # the full collection now: already stored
    assert again.skipped == 1 and again.total_rows == 0
    assert store.read("samples").empty
    assert store.read(COLLECTIONS)[[f"rows_{t}" for t in TABLES]].iloc[0].tolist() == [0, 0, 3, 0, 0]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(HOSTS), st.integers(0, 6), st.integers(1, 4)),
                min_size=1, max_size=5))
def test_any_sequence_of_overlapping_appends_stores_the_union(chunks: list[tuple[str, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "s", sync=False)
        wanted: set[tuple[str, int]] = set()
        for host, start, n in chunks:
            hosts = sorted({host, "xen01"})
            store.append(batch(hosts, range(start, start + n)))
            wanted |= {(h, i) for h in hosts for i in range(start, start + n)}
            if start % 2:
                store.compact()
        parts = [collection(h, i) for h, i in sorted(wanted)]
        assert_store_holds(store, {t: pd.concat([p[t] for p in parts]) for t in TABLES})


def test_bad_frames_are_rejected_before_anything_is_written(store: Store) -> None:
    with pytest.raises(ValueError, match="missing columns"):
        store.append({"samples": pd.DataFrame({"time": [T0]})})
    with pytest.raises(ValueError, match="unknown tables"):
        store.append({"sample": batch(["xen01"], [0])["samples"]})
    bad = batch(["xen01"], [0])
    bad["facts"].loc[0, "host"] = None
    with pytest.raises(ValueError, match="non-empty host"):
        store.append(bad)
    assert store.hosts() == [] and store.append({}).collections == 0


# --------------------------------------------------------------------------- failures


class _Died(BaseException):
    """Stands for SIGKILL in-process: not an OSError, so the store cleans nothing up."""


def _die_at(step: str, after: int = 0):
    seen = {"n": 0}

    def hook(name: str) -> None:
        if name == step:
            seen["n"] += 1
            if seen["n"] > after:
                raise _Died(step)
    return hook


def test_disk_full_changes_nothing(store: Store, monkeypatch) -> None:
    store.append(batch(HOSTS, range(3)))
    before = files(store.path)
    real, calls = parquet._write_file, {"n": 0}

    def full_after_two(path, data, sync):
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data, sync)

    monkeypatch.setattr(parquet, "_write_file", full_after_two)
    with pytest.raises(StoreError, match=r"store: disk full; nothing was changed$"):
        store.append(batch(HOSTS, range(2, 6)))
    assert files(store.path) == before
    assert list((store.path / ".journal").iterdir()) == []
    monkeypatch.setattr(parquet, "_write_file", real)
    assert_store_holds(store, batch(HOSTS, range(3)))
    assert store.append(batch(HOSTS, range(2, 6))).collections == 9


def test_disk_full_while_writing_the_journal_changes_nothing(store: Store, monkeypatch) -> None:
    store.append(batch(["xen01"], range(2)))
    before = files(store.path)
    real = parquet._write_file

    def full_for_json(path, data, sync):
        if str(path).endswith(".json"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data, sync)

    monkeypatch.setattr(parquet, "_write_file", full_for_json)
    with pytest.raises(StoreError, match="disk full; nothing was changed"):
        store.append(batch(["xen01"], range(2, 4)))
    assert files(store.path) == before


def test_a_writer_dying_after_commit_is_completed_and_readers_never_see_half(tmp_path, monkeypatch) -> None:
    store = Store(tmp_path / "s", sync=False)
    store.append(batch(HOSTS, range(2)))
    monkeypatch.setattr(parquet, "_checkpoint", _die_at("move", after=3))  # 3 of 18 files moved
    with pytest.raises(_Died):
        store.append(batch(HOSTS, range(2, 4)))
    monkeypatch.setattr(parquet, "_checkpoint", None)
    expected = batch(HOSTS, range(4))
    assert_store_holds(store, expected)  # the reader applies the committed journal in its view
    reopened = Store(tmp_path / "s")  # opening finishes the job
    assert list((tmp_path / "s" / ".journal").iterdir()) == []
    assert_store_holds(reopened, expected)
    for t in TABLES:
        assert len(read_with_pyarrow(reopened.path, t)) == len(expected[t])


def test_a_writer_dying_before_commit_leaves_nothing(tmp_path, monkeypatch) -> None:
    store = Store(tmp_path / "s", sync=False)
    store.append(batch(HOSTS, range(2)))
    before = files(store.path / "samples")
    monkeypatch.setattr(parquet, "_checkpoint", _die_at("stage", after=4))
    with pytest.raises(_Died):
        store.append(batch(HOSTS, range(2, 4)))
    monkeypatch.setattr(parquet, "_checkpoint", None)
    assert_store_holds(store, batch(HOSTS, range(2)))
    store.append(batch(HOSTS, range(2, 4)))  # recovery rolls the dead one back, then this one goes in
    assert_store_holds(store, batch(HOSTS, range(4)))
    assert before.items() <= files(store.path / "samples").items()


def test_store_path_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match=r"file: not a folder"):
        Store(tmp_path / "file")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not empty and not a history store"):
        Store(tmp_path / "busy")
    with pytest.raises(StoreError, match="no history store here"):
        Store(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()
    Store(tmp_path / "new" / "deeper")
    (tmp_path / "new" / "deeper" / "STORE.json").write_text('{"format": "rdtadvisor-store", "version": 99}')
    with pytest.raises(StoreError, match="newer than this rdtadvisor"):
        Store(tmp_path / "new" / "deeper")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_store(tmp_path: Path) -> None:
    s = Store(tmp_path / "ro", sync=False)
    s.append(batch(["xen01"], [0]))
    os.chmod(tmp_path / "ro", 0o555)
    try:
        ro = Store(tmp_path / "ro")
        assert len(ro.read("samples")) > 0
        with pytest.raises(StoreError, match="not writable"):
            ro.append(batch(["xen01"], [1]))
    finally:
        os.chmod(tmp_path / "ro", 0o755)


# --------------------------------------------------------------------------- compaction


def test_compaction_merges_each_partition_and_changes_no_row(store: Store) -> None:
    for i in range(6):
        store.append(batch(HOSTS, [i]))
    before = {t: store.read(t) for t in (*TABLES, COLLECTIONS)}
    result = store.compact()
    assert result.partitions > 0 and result.files_before > result.files_after
    for t, frame in before.items():
        pd.testing.assert_frame_equal(store.read(t), frame, obj=t)
        for part in (store.path / t).glob("host=*/date=*"):
            assert len(list(part.iterdir())) == 1
    assert store.compact().partitions == 0
    store.append(batch(HOSTS, [5, 6]))  # appending after compaction still deduplicates
    assert store.read(COLLECTIONS)["time"].nunique() == 7
    assert len(read_with_duckdb(store.path, "samples")) == len(store.read("samples"))


def test_compaction_before_a_date_leaves_later_partitions(store: Store) -> None:
    for i in range(6):
        store.append(batch(["xen01"], [i]))  # minutes 0-2 on May 1st, 3-5 on May 2nd
    store.compact(before=date(2024, 5, 2))
    base = store.path / "samples" / "host=xen01"
    assert len(list((base / "date=2024-05-01").iterdir())) == 1
    assert len(list((base / "date=2024-05-02").iterdir())) == 3


def test_half_done_compaction_shows_no_duplicates_and_is_finished_on_open(tmp_path, monkeypatch) -> None:
    store = Store(tmp_path / "s", sync=False)
    for i in range(4):
        store.append(batch(HOSTS, [i]))
    expected = {t: store.read(t) for t in TABLES}
    monkeypatch.setattr(parquet, "_checkpoint", _die_at("delete", after=1))  # target in, one source gone
    with pytest.raises(_Died):
        store.compact()
    monkeypatch.setattr(parquet, "_checkpoint", None)
    for t in TABLES:
        pd.testing.assert_frame_equal(store.read(t), expected[t], obj=t)
    Store(tmp_path / "s")
    for t in TABLES:
        pd.testing.assert_frame_equal(store.read(t), expected[t], obj=t)
        assert len(read_with_pyarrow(store.path, t)) == len(expected[t])


# --------------------------------------------------------------------------- times and CLI


def test_parse_when() -> None:
    now = pd.Timestamp("2024-05-02T12:00Z")
    assert parse_when("24h", now=now) == pd.Timestamp("2024-05-01T12:00Z")
    assert parse_when("90m", now=now) == pd.Timestamp("2024-05-02T10:30Z")
    assert parse_when("7d ago", now=now) == pd.Timestamp("2024-04-25T12:00Z")
    assert parse_when("1.5h", now=now) == pd.Timestamp("2024-05-02T10:30Z")
    assert parse_when("now", now=now) == now
    assert parse_when("2024-05-01") == pd.Timestamp("2024-05-01T00:00Z")
    assert parse_when("2024-05-01T12:00+02:00") == pd.Timestamp("2024-05-01T10:00Z")
    assert to_utc(date(2024, 5, 1)) == pd.Timestamp("2024-05-01T00:00Z")
    for bad in ("yesterday", "5 parsecs", "", "12"):
        with pytest.raises(ValueError, match="not a time"):
            parse_when(bad)


def _cli(path: Path):
    from rdtadvisor.cli.store import command

    class _Settings:
        store = path

    class _Lazy:
        def get(self):
            return _Settings()

    root = click.Group("rdtadvisor")
    root.add_command(command)
    runner = CliRunner()
    return lambda *args: runner.invoke(root, ["store", *args], obj=_Lazy(), catch_exceptions=False)


def test_cli_info_show_compact(store: Store) -> None:
    store.append(batch(HOSTS, range(3)))
    run = _cli(store.path)
    out = run("info")
    assert out.exit_code == 0, out.output
    assert "samples" in out.output and "xen/02 ü%=#?" in out.output and "2024-05-01T23:57:00" in out.output
    out = run("show", "domains", "--host", "xen01", "--format", "csv", "--since", "2024-05-01T23:58:00Z")
    assert out.exit_code == 0 and out.output.splitlines()[0] == ",".join(SCHEMAS["domains"])
    assert len(out.output.splitlines()) == 1 + 2 * 3
    out = run("show", "events", "--format", "json", "--limit", "1")
    assert [json.loads(line)["host"] for line in out.output.splitlines()] == ["xen01"]
    assert run("show", "samples", "--since", "1h").output.strip() == "(no rows)"  # 2024 is long ago
    assert run("show", "samples", "--since", "soon").exit_code == 2
    out = run("compact", "--before", "2024-05-02")
    assert out.exit_code == 0 and out.output.startswith("compacted ")


def test_cli_does_not_create_a_missing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no history store here"):
        _cli(tmp_path / "none")("info")


def test_many_processes_creating_the_same_new_store_at_once_all_succeed(tmp_path):
    # Two cron collects starting together on a brand-new store: neither may see the other's
    # half-made store as "not empty and not a history store".
    import multiprocessing

    target = tmp_path / "new-store"
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(8) as pool:
        results = pool.map(_open_store, [str(target)] * 32)
    assert results == ["ok"] * 32
    assert (target / "STORE.json").is_file()


def _open_store(path: str) -> str:
    try:
        Store(path)
        return "ok"
    except StoreError as e:
        return str(e)
