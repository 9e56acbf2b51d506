"""The usage model on a fleet-shaped store, phase by phase: what `load_usage` spends where.

    python benchmarks/bench_usage.py                           # 1,000 hosts x 20,000 VMs
    python benchmarks/bench_usage.py --hosts 200 --vms 4000 --dir /var/tmp/e2e

The store is `bench_placement_e2e`'s (built once into --dir and shared with it: 2 sockets,
6 collections per host, 3 bandwidth readings, names repeating across hosts). In one process:

1. `rdtadvisor.cli.report.load_usage` as ``advise placement`` calls it, best of --repeat:
   wall and CPU seconds of reading the store and of the model (`rdtadvisor.model.usage.usage`);
2. once more under cProfile, the model's steps (cumulative seconds; the profiler inflates
   Python-heavy steps, so read these as shares, and 1. as the figures).

The step functions are looked up by name, so the same script measures older code (copy it
into that tree's benchmarks/): steps a version does not have show 0.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_placement_e2e import NOW, build

# (step, [(file ending, function)]): callers first, so nothing is counted twice
STEPS = [
    ("read the store", [("store/parquet.py", "read")]),
    ("cubes (samples -> per-host arrays)", [("model/cube.py", "cubes")]),
    ("per-host figures", [("model/usage.py", "_host_parts")]),
    ("frames (joining hosts)", [("model/usage.py", "_concat"), ("model/usage.py", "_frame"),
                                ("model/usage.py", "_series_frame")]),
    ("capacity", [("model/capacity.py", "socket_capacity")]),
    ("socket figures", [("model/usage.py", "_sockets")]),
    ("classes", [("model/usage.py", "_vm_socket")]),
    ("neighbours", [("model/neighbours.py", "find_pairs"), ("model/usage.py", "_pairs")]),
    ("hosts, unmonitored", [("model/usage.py", "_hosts"), ("model/usage.py", "_unmonitored")]),
]
MODEL = ("model/usage.py", "usage")


def cumulative(stats: pstats.Stats, wanted: list[tuple[str, str]]) -> float:
    """Summed cumulative seconds of the functions named in `wanted`."""
    total = 0.0
    for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        if any(filename.endswith(end) and func == name for end, name in wanted):
            total += ct
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--vms", type=int, default=20000)
    ap.add_argument("--dir", type=Path, default=None, help="keep the store here (built once)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="bench-usage-"))
    store = base / f"store-{args.hosts}x{args.vms}"
    if not store.exists():
        t0 = time.perf_counter()
        build(store, args.hosts, args.vms)
        print(f"built {store} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    os.environ["RDTADVISOR_NOW"] = NOW

    import rdtadvisor.cli.report as report
    from rdtadvisor.core.config import load_settings

    settings = load_settings(None, store)
    model = report.usage
    spent: list[tuple[float, float]] = []

    def timed(*a, **k):  # the model alone, inside load_usage
        w, c = time.perf_counter(), time.process_time()
        out = model(*a, **k)
        spent.append((time.perf_counter() - w, time.process_time() - c))
        return out

    report.usage = timed
    best = None
    for _ in range(args.repeat):
        spent.clear()
        w, c = time.perf_counter(), time.process_time()
        u, _ = report.load_usage(settings, [], "2026-11-22", None, None)
        total = (time.perf_counter() - w, time.process_time() - c)
        run = (total, (total[0] - spent[0][0], total[1] - spent[0][1]), spent[0])
        best = run if best is None or run[0][1] < best[0][1] else best
    report.usage = model
    assert best is not None
    print(f"{args.hosts} hosts x {args.vms} VMs ({len(u.vm_socket)} VM x socket rows, "
          f"{len(u.pairs)} sockets), load_usage best of {args.repeat}:")
    print("| phase | wall s | CPU s |\n|---|---|---|")
    for name, (w, c) in zip(("load_usage", "read the store", "usage model"), best, strict=True):
        print(f"| {name} | {w:.2f} | {c:.2f} |")

    prof = cProfile.Profile()
    prof.enable()
    report.load_usage(settings, [], "2026-11-22", None, None)
    prof.disable()
    stats = pstats.Stats(prof)
    model_s = cumulative(stats, [MODEL])
    print("\nunder cProfile (cumulative s):\n| step | s |\n|---|---|")
    listed = 0.0
    for name, wanted in STEPS:
        s = cumulative(stats, wanted)
        listed += s if name != "read the store" else 0.0
        print(f"| {name} | {s:.2f} |")
    print(f"| other model steps | {model_s - listed:.2f} |")
    print(f"| usage model, all | {model_s:.2f} |")


if __name__ == "__main__":
    main()
