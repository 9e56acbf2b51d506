"""Time the exhaustive CAT optimum: 6 VMs, 4 COS, 11 ways (target: under 10 s).

    python benchmarks/bench_optimum.py              # 6 VMs, 4 COS, 11 ways, 3 seeded mixes
    python benchmarks/bench_optimum.py --vms 5 --cos 15 --ways 20 --mixes 1

Prints the layouts searched (disjoint family a and overlay family b of
`rdtadvisor.cache.layouts`), the time to enumerate them, the time of the batched solve
(`harness.optimum`, bound-pruned), and, for comparison, the disjoint family alone, the
search without pruning, and an estimate of one `model.solve` call per layout.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rdtadvisor.cache import layouts
from rdtadvisor.sim import harness, suite
from rdtadvisor.sim.model import solve


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vms", type=int, default=6)
    ap.add_argument("--cos", type=int, default=4)
    ap.add_argument("--ways", type=int, default=11)
    ap.add_argument("--mixes", type=int, default=3)
    args = ap.parse_args(argv)
    socket = {11: suite.SKX, 20: suite.BDW, 12: suite.BDWD, 15: suite.SPR}.get(args.ways, suite.SKX)
    if socket.ways != args.ways:
        raise SystemExit(f"no preset socket with {args.ways} ways")
    t = time.perf_counter()
    cands = layouts.enumerate_layouts(args.vms, args.ways, args.cos)
    t_enum = time.perf_counter() - t
    n_dis = int((cands.family == layouts.FAMILY_DISJOINT).sum())
    print(f"{args.vms} VMs, {args.cos} COS, {args.ways} ways: {len(cands):,} layouts "
          f"({n_dis:,} disjoint, {len(cands) - n_dis:,} overlay), enumerated in {t_enum:.2f} s")
    worst = 0.0
    for k in range(args.mixes):
        vms = suite.random_mix(np.random.default_rng(1000 + k), args.vms)
        alone = harness.alone_ips(socket, vms)
        t = time.perf_counter()
        layout, score = harness.optimum(socket, vms, args.cos, candidates=cands, alone=alone)
        t_all = time.perf_counter() - t
        t = time.perf_counter()
        harness.optimum(socket, vms, args.cos, overlapping=False, alone=alone)
        t_dis = time.perf_counter() - t
        found = harness.search(socket, vms, cands, alone=alone)
        t = time.perf_counter()
        full = harness.search(socket, vms, cands, alone=alone, prune=False)
        t_full = time.perf_counter() - t
        same = "same" if full.best() == found.best() else "DIFFERENT"
        worst = max(worst, t_all + t_enum)
        print(f"mix {k}: optimum {layout.hex()} ({layout.family}, {layout.cos_used} COS) "
              f"WS {score.weighted_speedup:.3f}; all layouts {t_all:.2f} s "
              f"({found.evaluated:,} solved, the rest pruned by the bound), disjoint only {t_dis:.2f} s, "
              f"without pruning {t_full:.2f} s ({same} optimum)")
    vms = suite.random_mix(np.random.default_rng(1000), args.vms)
    alone = harness.alone_ips(socket, vms)
    sample = cands.masks[:: max(1, len(cands) // 200)]
    t = time.perf_counter()
    for m in sample:
        solve(socket, vms, [int(x) for x in m], alone_ips=alone)
    per_call = (time.perf_counter() - t) / len(sample)
    print(f"one model.solve per layout instead: {per_call * 1e3:.2f} ms x {len(cands):,} = "
          f"{per_call * len(cands):.0f} s")
    print(f"slowest full search (enumeration + solve): {worst:.2f} s (target < 10 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
