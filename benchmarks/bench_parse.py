"""Parse throughput of `xl psr-cmt-show` text against pandas.read_csv on the same data as CSV.

Run: ``python benchmarks/bench_parse.py [--rows N] [--repeat R]``. Prints MB/s (of each
reader's own input) and rows/s, best of R runs. Target: at least as fast as read_csv.
Real tables hold at most a few hundred rows per host; the large table makes the
per-byte cost visible (a fleet replay parses millions of rows).
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import pandas as pd

from rdtadvisor.xl import cmt


def make_table(rows: int, sockets: int = 2, long_every: int = 50, seed: int = 1) -> cmt.CmtTable:
    rng = np.random.default_rng(seed)
    names = [f"tenant-{i % 997}-vm-{i}" if i % long_every else f"a-very-long-tenant-name-{i}-" + "x" * 20
             for i in range(rows)]
    values = rng.integers(0, 40_000, size=(rows, sockets), dtype=np.int64) * 1024
    l3 = dict.fromkeys(range(sockets), 25600 * 1024)
    return cmt.CmtTable("cache-occupancy", 255, tuple(range(sockets)), l3,
                        np.arange(rows, dtype=np.int64) % 32752, names, values, np.ones(rows, dtype=bool))


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    table = make_table(args.rows)
    text = cmt.render(table).encode()
    frame = pd.DataFrame({"name": table.name_list(), "domid": table.domids,
                          **{f"socket{j}": table.values[:, j] // 1024 for j in range(table.values.shape[1])}})
    csv = frame.to_csv(index=False).encode()

    parsed = cmt.parse(text, "cache-occupancy")
    assert (parsed.values == table.values).all() and parsed.name_list() == table.name_list()

    t_xl = best(lambda: cmt.parse(text, "cache-occupancy"), args.repeat)
    t_csv = best(lambda: pd.read_csv(io.BytesIO(csv)), args.repeat)
    print(f"rows: {args.rows:,}  xl text: {len(text) / 1e6:.1f} MB  csv: {len(csv) / 1e6:.1f} MB")
    print(f"rdtadvisor cmt.parse : {t_xl * 1e3:8.1f} ms  {len(text) / t_xl / 1e6:7.1f} MB/s  "
          f"{args.rows / t_xl / 1e6:5.2f} M rows/s")
    print(f"pandas.read_csv      : {t_csv * 1e3:8.1f} ms  {len(csv) / t_csv / 1e6:7.1f} MB/s  "
          f"{args.rows / t_csv / 1e6:5.2f} M rows/s")
    print(f"speed ratio (rows/s, parse / read_csv): {t_csv / t_xl:.2f}x")


if __name__ == "__main__":
    main()
