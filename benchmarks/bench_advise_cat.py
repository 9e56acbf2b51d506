"""Speed of `rdtadvisor advise cat` on its issue-5 target: a 2-socket host, 40 VMs, 20 ways, 15 COS.

    python benchmarks/bench_advise_cat.py [--repeat 5] [--keep DIR]

Simulates `benchmarks/cat40.toml` (6 h at 5-minute steps), collects it into a fresh store with
`rdtadvisor collect --replay`, then times:

* **in process**: `advise_cat` over the tables already read (the planning itself: curve fits,
  clustering, way splits, scoring on the posterior ensemble), best and median of ``--repeat``;
  also CPU seconds, which a busy machine does not inflate;
* **as a process**: the whole `rdtadvisor advise cat --format json` command (Python start,
  imports, reading the store, planning, output), median of 3.

Target: planning under 1 s. The quality of the plans is measured separately, by
`rdtadvisor bench-advice` (23 scenarios against the exhaustive optimum).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rdtadvisor.advise.cat import advise_cat
from rdtadvisor.store import Store

HERE = Path(__file__).resolve().parent


def rdt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rdtadvisor", *args], capture_output=True, text=True,
                          check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-cat40-"))
    caps, store = work / "caps", work / "store"
    if not store.exists():
        rdt("simulate", str(HERE / "cat40.toml"), "--out", str(caps), "--force")
        rdt("--store", str(store), "collect", "--replay", str(caps))
    st = Store(store, create=False)
    tables = {t: st.read(t) for t in ("samples", "facts", "settings", "domains")}
    n = tables["samples"].groupby("socket")["domid"].nunique().to_dict()
    print(f"store {store}: {len(tables['samples']):,} sample rows, domains per socket {n}")
    walls, cpus = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        advice = advise_cat(tables)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    for p in advice.plans:
        print(f"  plan {p.host} socket {p.socket}: {p.predicted['weighted_speedup']:+.1%}, COS {p.cos_used}")
    for d in advice.declined:
        print(f"  declined {d['host']} socket {d['socket']}: {d['reason']}")
    print(f"advise_cat in process: best {min(walls):.2f} s, median {statistics.median(walls):.2f} s wall; "
          f"median {statistics.median(cpus):.2f} s CPU ({args.repeat} runs; target < 1 s)")
    cli = []
    for _ in range(3):
        t0 = time.perf_counter()
        rdt("--store", str(store), "advise", "cat", "--format", "json")
        cli.append(time.perf_counter() - t0)
    print(f"rdtadvisor advise cat as a process: median {statistics.median(cli):.2f} s wall (3 runs)")


if __name__ == "__main__":
    main()
