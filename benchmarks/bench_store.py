"""Benchmark of the history store: a day of 1-minute collections from a fleet.

    python benchmarks/bench_store.py            # 20 hosts x 30 VMs x 2 sockets x 3 metrics, 1 day
    python benchmarks/bench_store.py --quick    # 5 hosts, 1 hour: a few seconds
    python benchmarks/bench_store.py --minutes 1440 --sync-minutes 60 --dir /var/tmp/bench

What it does, printing each figure:

1. appends the realistic way, one `Store.append` per minute holding all hosts'
   collections: the first ``--sync-minutes`` with fsync on (what cron does), the
   rest with fsync off (the same files, less waiting on the disk; the crash safety
   against killed processes is the same), unless ``--bulk-rest`` appends them in one go;
2. one bulk append of a whole extra day (all hosts, 1440 minutes, in a single call);
3. reads one host's last hour and one host's whole day, and the latest collection of
   every host, before and after compaction;
4. compacts, and reports files and bytes on disk before and after.

Frames are built with numpy (a one-minute template whose time column is replaced).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rdtadvisor.store import Store
from rdtadvisor.store.frames import SCHEMAS

T0 = pd.Timestamp("2024-05-01T00:00:00Z")
METRICS = [("l3_occupancy", "B"), ("mem_bw_total", "B/s"), ("mem_bw_local", "B/s")]


def template(hosts: int, vms: int, sockets: int = 2) -> dict[str, pd.DataFrame]:
    """One minute's frames for the whole fleet (time to be filled in)."""
    names = np.array([f"xen{h:02d}.example.org" for h in range(hosts)], dtype=object)
    h, v, s, m = (a.ravel() for a in np.meshgrid(np.arange(hosts), np.arange(vms), np.arange(sockets),
                                                 np.arange(len(METRICS)), indexing="ij"))
    rng = np.random.default_rng(0)
    samples = pd.DataFrame({
        "time": T0, "host": names[h], "socket": s, "domid": v + 1,
        "domain": np.array([f"vm{i:03d}" for i in range(vms)], dtype=object)[v],
        "metric": np.array([x for x, _ in METRICS], dtype=object)[m], "reading": 0,
        "value": rng.integers(0, 2**33, len(h)), "unit": np.array([u for _, u in METRICS], dtype=object)[m]})
    hd, vd = (a.ravel() for a in np.meshgrid(np.arange(hosts), np.arange(vms), indexing="ij"))
    domains = pd.DataFrame({"time": T0, "host": names[hd], "domid": vd + 1,
                            "domain": np.array([f"vm{i:03d}" for i in range(vms)], dtype=object)[vd],
                            "memory_bytes": 2**32, "vcpus": 4, "state": "-b----"})
    hs, ss = (a.ravel() for a in np.meshgrid(np.arange(hosts), np.arange(sockets), indexing="ij"))
    settings = pd.DataFrame({"time": T0, "host": names[hs], "socket": ss, "domid": 0, "domain": "Domain-0",
                             "setting": "l3_cbm", "value": 0xFFFFF})
    facts = pd.DataFrame({"time": T0, "host": names[hs], "socket": ss, "fact": "l3_cache_bytes",
                          "value": 3.0e7, "text": None})
    frames = {"samples": samples, "domains": domains, "settings": settings, "facts": facts}
    return {t: f[list(SCHEMAS[t])].astype(SCHEMAS[t]) for t, f in frames.items()}


def noise(n: int, seed: int) -> np.ndarray:
    """What changes from one minute to the next: about 20 random bits per counter reading."""
    return np.random.default_rng(seed).integers(0, 2**20, n)


def minute(tpl: dict[str, pd.DataFrame], i: int) -> dict[str, pd.DataFrame]:
    t = T0 + pd.Timedelta(minutes=i)
    out = {}
    for name, frame in tpl.items():
        f = frame.copy(deep=False)
        f["time"] = t
        if name == "samples":
            f["value"] = frame["value"].to_numpy() + noise(len(f), i)
        out[name] = f
    return out


def minutes(tpl: dict[str, pd.DataFrame], first: int, count: int) -> dict[str, pd.DataFrame]:
    """`count` minutes from `first` in one frame per table, built with numpy."""
    out = {}
    for name, frame in tpl.items():
        rep = frame.loc[np.tile(np.arange(len(frame)), count)].reset_index(drop=True)
        offsets = np.repeat(np.arange(first, first + count, dtype="int64"), len(frame)) * 60 * 10**9
        rep["time"] = pd.to_datetime(T0.value + offsets, utc=True)
        if name == "samples":
            rep["value"] = rep["value"].to_numpy() + noise(len(rep), first)
        out[name] = rep
    return out


def disk(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*.parquet")]
    return len(files), sum(p.stat().st_size for p in files)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 hosts x 10 VMs, 1 hour: a few seconds")
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--vms", type=int, default=30)
    ap.add_argument("--minutes", type=int, default=1440, help="minutes appended one by one")
    ap.add_argument("--sync-minutes", type=int, default=30, help="of those, how many with fsync on")
    ap.add_argument("--bulk-rest", action="store_true",
                    help="append the minutes after --sync-minutes in one call instead of one per minute")
    ap.add_argument("--dir", type=Path, default=None, help="where to build the store (default: a temp dir)")
    args = ap.parse_args()
    if args.quick:
        args.hosts, args.vms, args.minutes, args.sync_minutes = 5, 10, 60, 10
    base = Path(tempfile.mkdtemp(prefix="bench-store-", dir=args.dir))
    try:
        run(args, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run(args: argparse.Namespace, base: Path) -> None:
    tpl = template(args.hosts, args.vms)
    per_minute = {t: len(f) for t, f in tpl.items()}
    print(f"fleet: {args.hosts} hosts x {args.vms} VMs; rows per minute {per_minute}")
    print(f"day: {args.minutes} minutes = {per_minute['samples'] * args.minutes:,} sample rows")
    path = base / "store"
    synced, fast = Store(path, sync=True), Store(path, sync=False)

    n_sync = min(args.sync_minutes, args.minutes)
    frames = [minute(tpl, i) for i in range(n_sync)]
    secs, _ = timed(lambda: [synced.append(f) for f in frames])
    print(f"append, one call per minute, fsync on:  {n_sync} minutes in {secs:.2f} s "
          f"= {1000 * secs / max(n_sync, 1):.0f} ms per append "
          f"(a day of them: {secs / max(n_sync, 1) * 1440 / 60:.1f} min)")
    rest = args.minutes - n_sync
    if rest and args.bulk_rest:
        secs, _ = timed(lambda: fast.append(minutes(tpl, n_sync, rest)))
        print(f"append, the other {rest} minutes in one call: {secs:.2f} s")
    elif rest:
        t = time.perf_counter()
        for i in range(n_sync, args.minutes):
            fast.append(minute(tpl, i))
        secs = time.perf_counter() - t
        print(f"append, one call per minute, fsync off: {rest} minutes in {secs:.2f} s "
              f"= {1000 * secs / rest:.0f} ms per append")
    files, size = disk(path)
    print(f"on disk after the day: {files:,} files, {size / 2**20:.1f} MiB "
          f"({size / max(files, 1) / 1024:.1f} KiB per file)")

    host = f"xen{args.hosts - 1:02d}.example.org"
    end = T0 + pd.Timedelta(minutes=args.minutes)
    reads = {"last hour": (end - pd.Timedelta(hours=1), end), "whole day": (T0, end)}

    def read_all(label: str) -> None:
        for what, (lo, hi) in reads.items():
            secs, df = timed(lambda lo=lo, hi=hi: fast.read("samples", hosts=host, since=lo, until=hi))
            print(f"read one host's {what} {label}: {len(df):,} rows in {1000 * secs:.0f} ms")
        secs, df = timed(lambda: fast.latest("samples"))
        print(f"latest collection of every host {label}: {len(df):,} rows in {1000 * secs:.0f} ms")

    read_all("before compaction")
    secs, res = timed(lambda: synced.compact())
    print(f"compact: {res.partitions} partitions, {res.files_before:,} files -> {res.files_after}, "
          f"{res.bytes_before / 2**20:.1f} MiB -> {res.bytes_after / 2**20:.1f} MiB in {secs:.2f} s")
    read_all("after compaction")
    files, size = disk(path)
    samples = fast.stats().loc["samples"]
    print(f"on disk after compaction: {files:,} files, {size / 2**20:.1f} MiB; "
          f"samples {samples['rows']:,} rows in {samples['bytes'] / 2**20:.1f} MiB "
          f"= {samples['bytes'] / max(samples['rows'], 1):.2f} bytes per row")
    secs, again = timed(lambda: synced.append(minute(tpl, args.minutes - 1)))
    print(f"re-append of a stored minute (all skipped): {1000 * secs:.0f} ms, skipped {again.skipped}")

    bulk = Store(base / "bulk", sync=True)
    day = minutes(tpl, 0, 1440 if not args.quick else args.minutes)
    secs, res = timed(lambda: bulk.append(day))
    print(f"bulk append of {len(day['samples']) // per_minute['samples']} minutes in one call, fsync on: "
          f"{res.total_rows:,} rows, {res.files} files in {secs:.2f} s")
    files, size = disk(base / "bulk")
    print(f"bulk store on disk: {files} files, {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
