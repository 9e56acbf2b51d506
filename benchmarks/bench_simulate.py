"""`rdtadvisor simulate` speed: truth only, truth + rendering, truth + rendering + writing captures.

Run: ``python benchmarks/bench_simulate.py [--only demo|target] [--workers N] [--dir /dev/shm] [--keep DIR]``.

Two fleets:

* **demo**: ``samples/demo-fleet.toml`` as shipped (6 hosts, 8-17 VMs, 2 days at 5-minute steps,
  3,456 captures);
* **target**: the demo fleet with every host padded to 30 domains with web
  VMs, 2 days at 1-minute steps (6 x 2,880 = 17,280 captures, ~200,000 files). Target: under
  30 s on the 2-core machines.

For each it prints (a) the truth model alone (`truth.simulate`, one process), (b) truth +
rendering (`measure.write_fleet(write=False)`) and (c) the full run writing the capture layout
(`write_capture`) to a temporary folder, with the time split into truth / rendering / writing
(summed over hosts: with N worker processes the wall time is about the sum / N).
The file system matters: ``--dir /dev/shm`` (tmpfs) separates our CPU time from the disk's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import tomllib
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rdtadvisor.sim import measure, scenario, truth

DEMO = Path(__file__).resolve().parents[1] / "samples" / "demo-fleet.toml"
TARGET_S = 30.0


def fleets() -> dict[str, tuple[scenario.Scenario, timedelta]]:
    data = tomllib.loads(DEMO.read_text())
    demo = scenario.parse_scenario(data, source=str(DEMO))
    for host in data["hosts"]:
        n = 1 + sum(v.get("count", 1) for v in host["vms"])   # + Domain-0
        if n < 30:
            host["vms"].append({"name": "pad-{i:02d}", "count": 30 - n, "profile": "web"})
    target = scenario.parse_scenario(data, source=f"{DEMO} padded to 30 domains a host")
    return {"demo": (demo, demo.step), "target": (target, timedelta(minutes=1))}


def bench(name: str, sc: scenario.Scenario, step: timedelta, workers: int | None, keep: Path | None,
          tmp: Path | None) -> None:
    n_vms = sorted(len(h.vms) for h in sc.hosts)
    steps = len(truth.time_index(sc, step=step))
    print(f"\n{name}: {len(sc.hosts)} hosts, {n_vms[0]}-{n_vms[-1]} domains, {steps} steps of {step} "
          f"= {steps * len(sc.hosts)} captures")
    t0 = time.perf_counter()
    for _ in truth.simulate(sc, step=step):
        pass
    print(f"  (a) truth only, 1 process:         {time.perf_counter() - t0:6.1f} s")

    r = measure.write_fleet(sc, None, step=step, workers=workers, write=False)
    print(f"  (b) truth + rendering, {r.workers} proc:      {r.wall:6.1f} s wall "
          f"(truth {r.seconds_truth:.1f} s + render {r.seconds_render:.1f} s summed over hosts)")

    out = keep or Path(tempfile.mkdtemp(prefix="bench-simulate-", dir=tmp))
    try:
        r = measure.write_fleet(sc, out, step=step, workers=workers)
        rate = r.files / max(r.seconds_write, 1e-9)
        print(f"  (c) truth + rendering + writing, {r.workers} proc: {r.wall:6.1f} s wall "
              f"(truth {r.seconds_truth:.1f} + render {r.seconds_render:.1f} + write {r.seconds_write:.1f} s "
              f"summed; {r.files} files, {rate:,.0f} files/s)")
        share = r.seconds_write / max(r.seconds_truth + r.seconds_render + r.seconds_write, 1e-9)
        print(f"      writing is {share:.0%} of the work" + ("  <- writing small files dominates"
                                                         if share > 0.5 else ""))
        if name == "target":
            verdict = "OK" if r.wall < TARGET_S else "OVER"
            print(f"      target {TARGET_S:.0f} s: {verdict} ({os.cpu_count()} CPUs)")
    finally:
        if keep is None:
            shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("demo", "target"))
    ap.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU)")
    ap.add_argument("--keep", type=Path, default=None, help="write the captures here and keep them")
    ap.add_argument("--dir", type=Path, default=None,
                    help="where to write the temporary captures (/dev/shm leaves the disk out)")
    args = ap.parse_args()
    for name, (sc, step) in fleets().items():
        if args.only in (None, name):
            bench(name, sc, step, args.workers, args.keep / name if args.keep else None, args.dir)


if __name__ == "__main__":
    main()
