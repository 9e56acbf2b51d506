"""Speed of `rdtadvisor advise cat` on its target size: a 2-socket host, 40 VMs, 20 ways, 15 COS.

    python benchmarks/bench_advise_cat.py [--repeat 5] [--keep DIR] [--no-mbm]

Simulates `benchmarks/cat40.toml` (6 h at 5-minute steps), collects it into a fresh store with
`rdtadvisor collect --replay`, then times:

* **in process**: `advise_cat` over the tables already read (the planning itself: curve fits,
  clustering, way splits, scoring on the posterior ensemble), best and median of ``--repeat``;
  also CPU seconds, which a busy machine does not inflate;
* **as a process**: the whole `rdtadvisor advise cat --format json` command (Python start,
  imports, reading the store, planning, output), median of 3.

Target: planning under 1 s. The quality of the plans is measured separately, by
`rdtadvisor bench-advice` (23 scenarios against the exhaustive optimum).

``--no-mbm``: the same VMs on a Haswell-EP host (`benchmarks/cat40-hsw.toml`: occupancy only,
4 COS), whose curves come from occupancy shares (`rdtadvisor.model.shares`), which need a sweep:
``rdtadvisor calibrate --duration 40h --hold 2`` is run on the 6 hours stored, the simulation
extended through it, collected, and `advise_cat` timed with the socket's memory traffic given
(``[report] memory_traffic``; a nominal 12 GB/s here: speed does not depend on it).
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
from rdtadvisor.model.capacity import BandwidthCapacity
from rdtadvisor.store import Store

HERE = Path(__file__).resolve().parent
TRAFFIC = 12e9      # --no-mbm: the socket's memory traffic as measured outside xl [B/s]


def rdt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rdtadvisor", *args], capture_output=True, text=True,
                          check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    ap.add_argument("--no-mbm", action="store_true",
                    help="the Haswell-EP host: occupancy only, after a sweep")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-cat40-"))
    work.mkdir(parents=True, exist_ok=True)
    caps, store = work / "caps", work / "store"
    scenario = HERE / ("cat40-hsw.toml" if args.no_mbm else "cat40.toml")
    config = work / "config.toml"
    config.write_text(f"[report]\nmemory_traffic = {int(TRAFFIC)}\n" if args.no_mbm else "")
    if not store.exists():
        rdt("simulate", str(scenario), "--out", str(caps), "--force")
        rdt("--store", str(store), "collect", "--replay", str(caps))
        if args.no_mbm:
            sweep = work / "sweep.json"
            sweep.write_text(rdt("--store", str(store), "calibrate", "--duration", "40h", "--hold", "2",
                                 "--format", "json").stdout)
            rdt("simulate", str(scenario), "--extend", "40h", "--apply", str(sweep),
                "--out", str(work / "swept"), "--force")
            rdt("--store", str(store), "collect", "--replay", str(work / "swept"))
    st = Store(store, create=False)
    tables = {t: st.read(t) for t in ("samples", "facts", "settings", "domains")}
    n = tables["samples"].groupby("socket")["domid"].nunique().to_dict()
    print(f"store {store}: {len(tables['samples']):,} sample rows, domains per socket {n}")
    traffic = BandwidthCapacity(TRAFFIC) if args.no_mbm else None
    walls, cpus = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        advice = advise_cat(tables, traffic=traffic)
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
        rdt("--config", str(config), "--store", str(store), "advise", "cat", "--format", "json")
        cli.append(time.perf_counter() - t0)
    print(f"rdtadvisor advise cat as a process: median {statistics.median(cli):.2f} s wall (3 runs)")


if __name__ == "__main__":
    main()
