"""The history store survives SIGKILL at any moment and concurrent writers (real processes).

This file is also the writer those tests start and kill::

    python -m tests.test_store_crash loop STORE SEED            # random overlapping appends, forever
    python -m tests.test_store_crash ranges STORE SEED A B      # minutes [A, B) in random chunks, then exit
    python -m tests.test_store_crash append STORE SEED A B      # one append of minutes [A, B)
    python -m tests.test_store_crash compact STORE SEED

It prints ``ready`` once imported and the store is open. ``DIE_AT=step:n`` makes it
SIGKILL itself the n-th time the store reaches protocol step `step` (see
rdtadvisor.store.parquet._step); ``JITTER=seconds`` sleeps up to that long at every
step so that random kills land in the middle of writes; ``SYNC=1`` turns fsync on (a
killed process loses nothing from the page cache, so the crash tests do not need it).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from rdtadvisor.store import Store, parquet
from rdtadvisor.store.frames import SCHEMAS, TABLES

ROOT = Path(__file__).resolve().parent.parent
HOSTS = ["xen01", "xen/02 ü"]
T0 = pd.Timestamp("2024-05-01T23:30:00Z")
MINUTES = 60  # half an hour on each side of midnight: two date partitions


def frames_for(pairs: list[tuple[str, int]]) -> dict[str, pd.DataFrame]:
    """The frames of the collections (host, minute) in `pairs`; some collections lack some tables."""
    rows: dict[str, list[tuple]] = {t: [] for t in TABLES}
    for host, m in pairs:
        t = T0 + pd.Timedelta(minutes=m)
        for s in (0, 1):
            for d in (0, 3, 9):
                for k, metric in enumerate(("l3_occupancy", "mem_bw_total", "mem_bw_local")):
                    value = m * 1000 + s * 100 + d * 10 + k
                    rows["samples"].append((t, host, s, d, f"vm{d}", metric, 0, value, "B"))
            if m % 4 != 3:
                cbm = None if m % 5 == 0 else 0xFF0 + m
                rows["settings"].append((t, host, s, 0, "Domain-0", "l3_cbm", cbm))
        rows["facts"] += [(t, host, None, "xen_version", None, "4.17"), (t, host, 0, "l3_cache", 3e7, None)]
        rows["domains"] += [(t, host, d, f"vm{d}", 2**30 * (d + 1), 2, "-b----", 60.0 * m) for d in (0, 3, 9)]
        if m % 3 == 0:
            rows["events"].append((t, host, "xl psr-mba-show", "unsupported", f"minute {m} ü"))
    return {t: pd.DataFrame(r, columns=list(SCHEMAS[t])).astype(SCHEMAS[t]) if r else None
            for t, r in rows.items()}


def every(minutes: range = range(MINUTES), hosts: list[str] = HOSTS) -> list[tuple[str, int]]:
    return [(h, m) for m in minutes for h in hosts]


# --------------------------------------------------------------------------- the writer


def _writer(argv: list[str]) -> None:
    mode, path, seed = argv[0], argv[1], int(argv[2])
    rng = random.Random(seed)
    die_step, die_n = (os.environ.get("DIE_AT", "") + ":1").split(":")[:2]
    jitter = float(os.environ.get("JITTER", "0"))
    seen = {"n": 0}

    def checkpoint(name: str) -> None:
        if name == die_step:
            seen["n"] += 1
            if seen["n"] >= int(die_n):
                os.kill(os.getpid(), signal.SIGKILL)
        if jitter:
            time.sleep(rng.random() * jitter)

    parquet._checkpoint = checkpoint
    store = Store(path, sync=os.environ.get("SYNC") == "1")
    print("ready", flush=True)
    if mode == "loop":
        while True:
            start = rng.randrange(MINUTES)
            hosts = rng.choice([HOSTS, HOSTS[:1], HOSTS[1:]])
            store.append(frames_for(every(range(start, min(MINUTES, start + rng.randint(1, 6))), hosts)))
    elif mode == "ranges":
        minutes = list(range(int(argv[3]), int(argv[4])))
        rng.shuffle(minutes)
        while minutes:
            n = rng.randint(1, 4)
            chunk, minutes = minutes[:n], minutes[n:]
            store.append(frames_for(every(chunk)))
    elif mode == "append":
        store.append(frames_for(every(range(int(argv[3]), int(argv[4])))))
    elif mode == "compact":
        store.compact()
    print("done", flush=True)


if __name__ == "__main__":
    _writer(sys.argv[1:])
    sys.exit(0)


# --------------------------------------------------------------------------- the tests (pytest only below)

import pyarrow.dataset as ds  # noqa: E402
import pytest  # noqa: E402


def start(*args: object, ready: bool = True, **env: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tests.test_store_crash", *map(str, args)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if ready:
        line = proc.stdout.readline()
        assert line == "ready\n", (line, proc.stderr.read() if proc.stderr else "")
    return proc


def finish(proc: subprocess.Popen, *, killed: bool) -> None:
    out, err = proc.communicate(timeout=60)
    if killed:
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, out, err)
    else:
        assert proc.returncode == 0, err


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns), kind="stable", na_position="first").reset_index(drop=True)


def check(path: Path) -> set[tuple[str, int]]:
    """Open the store as the next writer would; every collection is complete, none is duplicated.

    Returns the (host, minute) collections stored.
    """
    store = Store(path, sync=False)
    assert list((path / ".journal").iterdir()) == [], "opening finishes or rolls back a dead writer's change"
    coll = store.read("collections")
    assert not coll.duplicated(["host", "time"]).any()
    minutes = (coll["time"] - T0) // pd.Timedelta(minutes=1)
    stored = list(zip(coll["host"], minutes.astype(int), strict=True))
    expected = frames_for(stored)
    for t in TABLES:
        want = expected[t]
        if want is None:
            want = pd.DataFrame(columns=list(SCHEMAS[t])).astype(SCHEMAS[t])
        got = store.read(t)
        pd.testing.assert_frame_equal(canonical(got), canonical(want), obj=t)
        assert ds.dataset(path / t, format="parquet", partitioning="hive").count_rows() == len(want), t
    return set(stored)


def fill(path: Path, pairs: list[tuple[str, int]]) -> None:
    store = Store(path, sync=False)
    for pair in pairs:
        store.append(frames_for([pair]))


# Each step of the protocol (see rdtadvisor.store.parquet); a kill at or after "commit"'s
# journal rename is rolled forward, a kill before it is rolled back.
APPEND_STEPS = [("locked:1", False), ("stage:3", False), ("commit:1", False), ("move:5", True),
                ("applied:1", True)]


@pytest.mark.parametrize(("die_at", "kept"), APPEND_STEPS)
def test_sigkill_at_each_step_of_an_append(tmp_path: Path, die_at: str, kept: bool) -> None:
    path = tmp_path / "s"
    fill(path, every(range(0, 4)))
    finish(start("append", path, 0, 2, 8, DIE_AT=die_at), killed=True)
    assert check(path) == set(every(range(0, 8 if kept else 4)))
    finish(start("append", path, 0, 0, MINUTES), killed=False)
    assert check(path) == set(every())


@pytest.mark.parametrize("die_at", ["stage:1", "move:1", "delete:3", "applied:2"])
def test_sigkill_at_each_step_of_a_compaction(tmp_path: Path, die_at: str) -> None:
    path = tmp_path / "s"
    fill(path, every(range(25, 35)))
    finish(start("compact", path, 0, DIE_AT=die_at), killed=True)
    assert check(path) == set(every(range(25, 35)))
    finish(start("compact", path, 0), killed=False)
    assert check(path) == set(every(range(25, 35)))
    assert all(len(list(d.iterdir())) == 1 for d in path.glob("*/host=*/date=*"))


def test_sigkill_while_recovering_from_a_previous_crash(tmp_path: Path) -> None:
    path = tmp_path / "s"
    finish(start("append", path, 0, 0, 10, DIE_AT="move:2"), killed=True)
    finish(start("append", path, 0, 10, 12, ready=False, DIE_AT="move:3"), killed=True)  # dies recovering
    assert check(path) == set(every(range(0, 10)))


def test_random_sigkills_while_appending(tmp_path: Path) -> None:
    path = tmp_path / "s"
    rng = random.Random(1)
    stored: set[tuple[str, int]] = set()
    for i in range(7):
        proc = start("loop", path, i, JITTER="0.004")
        time.sleep(rng.uniform(0.02, 0.5))
        proc.kill()
        finish(proc, killed=True)
        now = check(path)
        assert stored <= now  # nothing stored is ever lost
        stored = now
    assert stored
    finish(start("append", path, 0, 0, MINUTES), killed=False)
    assert check(path) == set(every())


def test_random_sigkills_while_compacting(tmp_path: Path) -> None:
    path = tmp_path / "s"
    fill(path, every(range(20, 40)))
    rng = random.Random(2)
    for i in range(4):
        fill(path, every(range(20 + i * 5, 25 + i * 5), ["new"]))
        proc = start("compact", path, i, JITTER="0.02")
        time.sleep(rng.uniform(0.0, 0.4))
        proc.kill()
        proc.communicate(timeout=60)  # it may have finished first: that is fine too
        assert check(path) == set(every(range(20, 40))) | set(every(range(20, 25 + i * 5), ["new"]))


def test_two_writers_at_once_store_every_collection_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "s"
    Store(path)
    a = start("ranges", path, 1, 0, 40, SYNC="1")
    b = start("ranges", path, 2, 20, MINUTES, SYNC="1")
    finish(a, killed=False)
    finish(b, killed=False)
    assert check(path) == set(every())
