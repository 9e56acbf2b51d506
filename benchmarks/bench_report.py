"""Benchmark of `rdtadvisor report` on a month of history, side by side with DuckDB.

    python benchmarks/bench_report.py                 # 30 days x 1 min, 1 host, 2 sockets x 40 VMs
    python benchmarks/bench_report.py --days 2        # a quick look
    python benchmarks/bench_report.py --dir /var/tmp/bench-report   # keep the store between runs

The store holds 30 x 1440 collections of one 2-socket host with 40 VMs on each socket and
the three CMT metrics (one bandwidth reading each): 30 x 1440 x 80 x 3 = 10.4 M sample rows,
plus the settings/facts/domains tables, appended a day at a time and compacted (what a
nightly ``store compact`` leaves). Then, in one run:

1. ``rdtadvisor report --format json`` over the whole month, in a child process (its
   wall time and peak RSS, as cron would see them);
2. the same in-process, timing the read and the model separately;
3. DuckDB over the same Parquet files doing the same aggregations (`DUCKDB_STEPS`):
   per-collection figures (median of readings, remote = total - local clipped at 0), mask
   changes and latest masks from the settings, latest facts, the collections; per VM x socket
   p50/p95/max/mean/count and first/last; per socket the summed figures per collection, their
   percentiles and sustained peak; per VM the figures summed over its sockets; daily and
   bucket medians.

The targets: the report within 5 s and 2 GiB, and no slower than 1.5x DuckDB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rdtadvisor.store import Store
from rdtadvisor.store.frames import SCHEMAS

T0 = pd.Timestamp("2026-10-01T00:00:00Z")
HOST = "xen-bench01"
MIB = 1024**2


def build(path: Path, days: int, vms_per_socket: int = 40) -> int:
    """Append `days` of 1-minute collections (one append per day) and compact. Returns rows."""
    store = Store(path)
    rng = np.random.default_rng(7)
    n_vm = 2 * vms_per_socket
    socket = np.repeat(np.arange(2, dtype=np.int16), vms_per_socket)
    domid = np.arange(1, n_vm + 1, dtype=np.int32)
    names = np.array([f"vm-{i:03d}" for i in range(n_vm)], dtype=object)
    base_occ = rng.lognormal(np.log(0.6 * MIB), 1.0, n_vm)
    base_bw = rng.lognormal(np.log(200 * MIB), 1.2, n_vm)
    rows = 0
    for day in range(days):
        minutes = 1440
        times = T0 + pd.Timedelta(days=day) + pd.to_timedelta(np.arange(minutes), unit="min")
        diurnal = 1 + 0.5 * np.sin(np.arange(minutes) / 1440 * 2 * np.pi)
        occ = base_occ[None, :] * diurnal[:, None] * rng.lognormal(0, 0.1, (minutes, n_vm))
        bw = base_bw[None, :] * diurnal[:, None] * rng.lognormal(0, 0.3, (minutes, n_vm))
        local = bw * rng.uniform(0.7, 1.0, (minutes, n_vm))
        parts = []
        for metric, unit, values in (
            ("l3_occupancy", "B", occ),
            ("mem_bw_total", "B/s", bw),
            ("mem_bw_local", "B/s", local),
        ):
            n = minutes * n_vm
            parts.append(
                pd.DataFrame(
                    {
                        "time": np.repeat(times, n_vm),
                        "host": HOST,
                        "socket": np.tile(socket, minutes),
                        "domid": np.tile(domid, minutes),
                        "domain": np.tile(names, minutes),
                        "metric": metric,
                        "reading": np.zeros(n, dtype=np.int16),
                        "value": (values.ravel() // 1024 * 1024).astype(np.int64),
                        "unit": unit,
                    }
                )
            )
        samples = pd.concat(parts, ignore_index=True).astype(SCHEMAS["samples"])
        rows += len(samples)
        settings = pd.DataFrame(
            {
                "time": np.repeat(times, n_vm),
                "host": HOST,
                "socket": np.tile(socket, minutes),
                "domid": np.tile(domid, minutes),
                "domain": np.tile(names, minutes),
                "setting": "l3_cbm",
                "value": 0x7FF,
            }
        ).astype(SCHEMAS["settings"])
        facts = pd.DataFrame(
            {
                "time": np.repeat(times, 4),
                "host": HOST,
                "socket": pd.array(np.tile([0, 1, 0, 1], minutes), dtype="Int16"),
                "fact": np.tile(["l3_cache_bytes"] * 2 + ["l3_cbm_len"] * 2, minutes),
                "value": np.tile([30.25 * MIB, 30.25 * MIB, 11, 11], minutes),
                "text": None,
            }
        ).astype(SCHEMAS["facts"])
        store.append({"samples": samples, "settings": settings, "facts": facts})
    store.compact()
    return rows


# The report's aggregations, in DuckDB: each statement's result is fetched, as the report
# uses each of its results. (Theil-Sen slopes, classes and neighbour pairs are computed from
# the small daily and bucket results and are left out here; they cost rdtadvisor ~0.1 s.)
DUCKDB_STEPS = [
    # per-collection figures: median of the readings, remote = total - local clipped at 0
    """CREATE TEMP TABLE fig AS
       SELECT host, time, socket, domid, any_value(domain) AS domain,
              median(value) FILTER (WHERE metric = 'l3_occupancy') AS occ,
              median(value) FILTER (WHERE metric = 'mem_bw_total') AS bw,
              median(value) FILTER (WHERE metric = 'mem_bw_local') AS loc,
              count(*) FILTER (WHERE metric = 'mem_bw_total') AS readings
       FROM read_parquet('{root}/samples/**/*.parquet', hive_partitioning = true)
       GROUP BY host, time, socket, domid""",
    # mask changes (for settling) and the latest masks, from the settings table
    """CREATE TEMP TABLE changes AS
       SELECT DISTINCT host, socket, time FROM (
         SELECT host, socket, time, value,
                lag(value) OVER (PARTITION BY host, socket, domain, setting ORDER BY time) AS prev
         FROM read_parquet('{root}/settings/**/*.parquet', hive_partitioning = true)
         WHERE setting IN ('l3_cbm', 'l3_code_cbm', 'l3_data_cbm'))
       WHERE prev IS NOT NULL AND value IS NOT NULL AND value <> prev""",
    """SELECT host, socket, domain, setting, arg_max(value, time)
       FROM read_parquet('{root}/settings/**/*.parquet', hive_partitioning = true)
       GROUP BY ALL""",
    """SELECT host, socket, fact, arg_max(value, time)
       FROM read_parquet('{root}/facts/**/*.parquet', hive_partitioning = true) GROUP BY ALL""",
    """SELECT host, time FROM read_parquet('{root}/collections/**/*.parquet', hive_partitioning = true)""",
    """CREATE TEMP TABLE f2 AS SELECT *, greatest(bw - loc, 0) AS rem FROM fig""",
    # per VM x socket: percentiles, max, mean, counts, first/last
    """SELECT host, socket, domain, quantile_cont(occ, [0.5, 0.95]), max(occ), avg(occ), count(occ),
              quantile_cont(bw, [0.5, 0.95]), max(bw), avg(bw), count(bw),
              quantile_cont(loc, [0.5, 0.95]), max(loc), avg(loc),
              quantile_cont(rem, [0.5, 0.95]), max(rem), avg(rem),
              median(readings), min(time), max(time), arg_max(domid, time)
       FROM f2 GROUP BY host, socket, domain""",
    # per socket: summed figures per collection, their percentiles and sustained peak
    """CREATE TEMP TABLE tot AS SELECT host, socket, time, sum(occ) occ, sum(bw) bw, sum(loc) loc,
              sum(rem) rem FROM f2 GROUP BY host, socket, time""",
    """SELECT host, socket, quantile_cont(occ, [0.5, 0.95]), max(occ), avg(occ),
              quantile_cont(bw, [0.5, 0.95]), max(bw), avg(bw), quantile_cont(loc, [0.5, 0.95]),
              quantile_cont(rem, [0.5, 0.95]) FROM tot GROUP BY host, socket""",
    """SELECT host, socket, max(held) FROM (SELECT host, socket,
              min(bw) OVER (PARTITION BY host, socket ORDER BY time ROWS 2 PRECEDING) AS held FROM tot)
       GROUP BY host, socket""",
    # per VM over its sockets
    """SELECT host, domain, quantile_cont(occ, [0.5, 0.95]), max(occ), quantile_cont(bw, [0.5, 0.95]),
              max(bw) FROM (SELECT host, domain, time, sum(occ) occ, sum(bw) bw FROM f2 GROUP BY ALL)
       GROUP BY host, domain""",
    # daily medians (trend input) and bucket medians (charts, classes, neighbours)
    """SELECT host, socket, domain, date_trunc('day', time) d, median(occ), median(bw)
       FROM f2 GROUP BY ALL""",
    """SELECT host, socket, date_trunc('day', time) d, median(occ), median(bw) FROM tot GROUP BY ALL""",
    """SELECT host, socket, domain, time_bucket(INTERVAL '{bucket} seconds', time) b, median(occ),
              median(bw) FROM f2 GROUP BY ALL""",
]


# The core alone (per-collection figures and the VM x socket, socket and VM percentiles) as
# one query that DuckDB plans as a whole: the most favourable comparison for DuckDB.
DUCKDB_CORE = """
WITH fig AS (
  SELECT host, time, socket, domid, any_value(domain) AS domain,
         median(value) FILTER (WHERE metric = 'l3_occupancy') AS occ,
         median(value) FILTER (WHERE metric = 'mem_bw_total') AS bw,
         median(value) FILTER (WHERE metric = 'mem_bw_local') AS loc
  FROM read_parquet('{root}/samples/**/*.parquet', hive_partitioning = true)
  GROUP BY host, time, socket, domid),
f2 AS (SELECT *, greatest(bw - loc, 0) AS rem FROM fig),
vs AS (SELECT host, socket, domain, quantile_cont(occ, [0.5, 0.95]), max(occ), avg(occ),
         quantile_cont(bw, [0.5, 0.95]), max(bw), avg(bw), quantile_cont(loc, [0.5, 0.95]), max(loc),
         quantile_cont(rem, [0.5, 0.95]), max(rem) FROM f2 GROUP BY host, socket, domain),
tot AS (SELECT host, socket, time, sum(occ) occ, sum(bw) bw FROM f2 GROUP BY host, socket, time),
so AS (SELECT host, socket, quantile_cont(occ, [0.5, 0.95]), max(occ), quantile_cont(bw, [0.5, 0.95]),
         max(bw) FROM tot GROUP BY host, socket),
vm AS (SELECT host, domain, quantile_cont(occ, [0.5, 0.95]), quantile_cont(bw, [0.5, 0.95])
       FROM (SELECT host, domain, time, sum(occ) occ, sum(bw) bw FROM f2 GROUP BY ALL) GROUP BY ALL)
SELECT (SELECT count(*) FROM vs), (SELECT count(*) FROM so), (SELECT count(*) FROM vm)
"""


def duckdb_core_seconds(root: Path) -> float:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")
    t = time.perf_counter()
    con.execute(DUCKDB_CORE.format(root=root)).fetchall()
    return time.perf_counter() - t


def duckdb_seconds(root: Path, bucket_s: int) -> float:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")
    t = time.perf_counter()
    for step in DUCKDB_STEPS:
        con.execute(step.format(root=root, bucket=bucket_s)).fetchall()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--dir", type=Path, default=None, help="store folder to build (kept) or reuse")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench-report-")) / "store"
    if not (root / "samples").exists():
        t = time.perf_counter()
        rows = build(root, args.days)
        took = time.perf_counter() - t
        print(f"built {rows / 1e6:.2f} M sample rows ({args.days} days) in {took:.0f} s: {root}")
    since = (T0 - pd.Timedelta(days=1)).isoformat()

    # 1. the CLI as cron runs it: wall time and peak memory of the child
    cmd = [
        sys.executable,
        "-m",
        "rdtadvisor",
        "--store",
        str(root),
        "report",
        "--since",
        since,
        "--format",
        "json",
        "--output",
        str(root.parent / "report.json"),
    ]
    walls = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        walls.append(time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    report = json.loads((root.parent / "report.json").read_text())
    n_vms = sum(len(s["vms"]) for h in report["hosts"] for s in h["sockets"])
    print(
        f"rdtadvisor report (CLI, whole process): best {min(walls):.2f} s of {args.repeat}, "
        f"peak RSS {rss:.0f} MiB; {n_vms} VM x socket rows, {report['window']['collections']} collections"
    )

    # 2. in-process, read and model apart (the CLI's own functions)
    from rdtadvisor.advise.check import check
    from rdtadvisor.cli.report import latest_of, limits_of, load_usage
    from rdtadvisor.core.config import load_settings
    from rdtadvisor.report.build import build_report

    settings = load_settings(None, root)
    best = (float("inf"),) * 3
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        u, tables = load_usage(settings, [], since, None, None)
        t1 = time.perf_counter()
        build_report(u, checks=check(latest_of(tables)), limits=limits_of(settings))
        t2 = time.perf_counter()
        best = min(best, (t2 - t0, t1 - t0, t2 - t1))
    print(
        f"in-process: {best[0]:.2f} s = read and model {best[1]:.2f} s + findings and report {best[2]:.2f} s "
        f"({len(tables['samples']) / 1e6:.2f} M sample rows)"
    )

    # 3. DuckDB, the same aggregation over the same files
    duck = min(duckdb_seconds(root, round(u.bucket.total_seconds())) for _ in range(args.repeat))
    core = min(duckdb_core_seconds(root) for _ in range(args.repeat))
    print(
        f"DuckDB (2 threads) same aggregations: {duck:.2f} s; the core percentiles alone as one "
        f"query: {core:.2f} s (rdtadvisor in-process {best[0] / core:.2f}x that)"
    )
    print(
        f"ratio: report process {min(walls) / duck:.2f}x DuckDB; in-process {best[0] / duck:.2f}x "
        f"(target <= 1.5x); target wall <= 5 s, RSS <= 2048 MiB"
    )


if __name__ == "__main__":
    main()
