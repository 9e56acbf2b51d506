"""End to end: `rdtadvisor advise placement` on a fleet-sized store, as a process.

    python benchmarks/bench_placement_e2e.py                       # 1,000 hosts x 20,000 VMs
    python benchmarks/bench_placement_e2e.py --hosts 200 --vms 3000
    python benchmarks/bench_placement_e2e.py --dir /var/tmp/e2e    # keep the store between runs

The store is what ``collect`` writes for 2-socket hosts (Skylake-SP-like: 11 ways, 30.25 MiB
per socket, 512 GiB in 2 NUMA nodes, 64 CPUs): 6 collections per host at 5-minute steps, per
VM and socket one occupancy reading and 3 total and 3 local bandwidth readings, its mask,
the host's ``xl info`` and ``psr-hwinfo`` facts (host name included) and its ``xl list``.
VM names repeat across hosts (``web-001`` runs on many), as in real fleets. A tenth of the
hosts are over their L3 limit on one socket, and a tenth of those over their bandwidth too.

It runs the command in a child process (wall time, peak RSS) with the config's bandwidth
capacity, then checks the plan: every migration's destination runs no VM of its name, and
every limit holds per socket after the moves. The target: under 60 s end to end.
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

MIB, GIB = 2**20, 2**30
T0 = pd.Timestamp("2026-11-23T00:00:00Z")
NOW = "2026-11-24T00:00:00Z"
L3 = 30.25 * MIB
WAYS = 11
BW_CAPACITY = 100e9


def build(path: Path, n_hosts: int, n_vms: int, collections: int = 6, seed: int = 7) -> None:
    """Write the store (see the module docstring), a batch of hosts per append."""
    rng = np.random.default_rng(seed)
    store = Store(path)
    per_host = n_vms // n_hosts
    times = T0 + pd.to_timedelta(np.arange(collections) * 5, unit="min")
    batch = 50
    for first in range(0, n_hosts, batch):
        hosts = range(first, min(first + batch, n_hosts))
        samples, settings, facts, domains = [], [], [], []
        for h in hosts:
            host = f"xen{h:04d}"
            n = per_host
            socket = (np.arange(n) % 2).astype(np.int16)
            domid = np.arange(1, n + 1, dtype=np.int32)
            names = np.array([f"{('web', 'db', 'batch', 'svc')[i % 4]}-{(h * 7 + i) % 400:03d}"
                              for i in range(n)], dtype=object)
            # occupancy per socket fills 55% of the L3; an overloaded host's socket 0 holds 105%
            hot = h % 10 == 3
            share = rng.dirichlet(np.ones(n // 2 + 1))[:-1]
            occ = np.empty(n)
            for s in (0, 1):
                idx = np.flatnonzero(socket == s)
                fill = 1.05 if (hot and s == 0) else 0.55
                occ[idx] = rng.permutation(share)[: len(idx)] * fill * L3 / max(share.sum(), 1e-9)
            bw = rng.lognormal(np.log(1.5e9), 1.0, n)
            if hot and h % 100 == 3:
                bw[socket == 0] *= 90e9 / max(bw[socket == 0].sum(), 1.0)
            mem = rng.choice([4, 8, 16, 32], n) * GIB
            vcpus = rng.choice([2, 4, 8], n)
            for t in times:
                jitter = rng.lognormal(0, 0.05, (3, n))
                rows = [("l3_occupancy", 0, occ * jitter[0] // 1024 * 1024, "B")]
                for r in range(3):
                    rows.append(("mem_bw_total", r, bw * jitter[1] * rng.lognormal(0, 0.2, n), "B/s"))
                    rows.append(("mem_bw_local", r, bw * jitter[2] * 0.9, "B/s"))
                for metric, reading, values, unit in rows:
                    samples.append(pd.DataFrame({"time": t, "host": host, "socket": socket, "domid": domid,
                                                 "domain": names, "metric": metric, "reading": reading,
                                                 "value": np.asarray(values, dtype=np.int64), "unit": unit}))
                settings.append(pd.DataFrame({"time": t, "host": host, "socket": socket, "domid": domid,
                                              "domain": names, "setting": "l3_cbm",
                                              "value": (1 << WAYS) - 1}))
                host_facts = [("nr_cpus", None, 64.0, None), ("nr_nodes", None, 2.0, None),
                              ("sockets", None, 2.0, None), ("total_memory_bytes", None, 512.0 * GIB, None),
                              ("hostname", None, None, host), ("xen_version", None, None, "4.19.1")]
                for s in (0, 1):
                    host_facts += [("l3_cache_bytes", s, L3, None), ("l3_cbm_len", s, float(WAYS), None),
                                   ("l3_cos_max", s, 15.0, None), ("cmt_enabled", None, 1.0, None)]
                facts.append(pd.DataFrame({"time": t, "host": host,
                                           "socket": pd.array([f[1] for f in host_facts], dtype="Int16"),
                                           "fact": [f[0] for f in host_facts],
                                           "value": pd.array([f[2] for f in host_facts], dtype="Float64"),
                                           "text": [f[3] for f in host_facts]}))
                domains.append(pd.DataFrame({"time": t, "host": host,
                                             "domid": np.r_[0, domid].astype(np.int32),
                                             "domain": np.r_[["Domain-0"], names],
                                             "memory_bytes": np.r_[8 * GIB, mem].astype(np.int64),
                                             "vcpus": np.r_[8, vcpus].astype(np.int32), "state": "-b----",
                                             "cpu_seconds": 100.0}))
        frames = {"samples": samples, "settings": settings, "facts": facts, "domains": domains}
        store.append({k: pd.concat(v, ignore_index=True).astype(SCHEMAS[k]) for k, v in frames.items()})
    store.compact()


def run(store: Path, config: Path) -> tuple[float, float, dict, int]:
    """The command as a child process: (wall s, peak RSS MiB, plan, exit status)."""
    env = {"RDTADVISOR_NOW": NOW, "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "rdtadvisor", "--config", str(config), "--store", str(store),
                          "advise", "placement", "--since", "2026-11-22", "--format", "json"],
                         capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if out.returncode not in (0, 1):
        raise SystemExit(f"advise placement failed ({out.returncode}): {out.stderr.strip()[-400:]}")
    return wall, peak, json.loads(out.stdout), out.returncode


def check(plan: dict, store: Path) -> tuple[int, int]:
    """(name clashes, limits broken) in the plan."""
    latest = Store(store, create=False).latest("domains")
    names = {(str(h), str(d)) for h, d in zip(latest["host"], latest["domain"], strict=True)}
    clashes = sum((m["to"], m["name"]) in names for m in plan["migrations"])
    broken = 0
    for _host, fig in plan["hosts"].items():
        for key, after in fig["after"].items():
            before = fig["before"].get(key)
            if key.endswith("_share") and after is not None and after > max(1.0, before or 0) + 1e-6:
                broken += 1
    return clashes, broken


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--vms", type=int, default=20000)
    ap.add_argument("--dir", type=Path, default=None, help="keep the store here (built once)")
    args = ap.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="bench-placement-e2e-"))
    store = base / f"store-{args.hosts}x{args.vms}"
    if not store.exists():
        t0 = time.perf_counter()
        build(store, args.hosts, args.vms)
        print(f"built {store} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    config = base / "config.toml"
    config.write_text(f"[report]\nbandwidth_capacity = \"{BW_CAPACITY / 1e9:.0f}GB/s\"\n")
    wall, peak, plan, status = run(store, config)
    clashes, broken = check(plan, store)
    s = plan["solver"]
    print(f"{args.hosts} hosts x {args.vms} VMs, 6 collections: advise placement {wall:.1f} s as a process, "
          f"peak RSS {peak:.0f} MiB, exit {status}")
    print(f"  {len(plan['migrations'])} migrations ({s['method']}, solver {s['seconds']:.2f} s, lower bound "
          f"{s['lower_bound']}, gap {s['gap']:.1%}), unresolved {len(plan['unresolved'])}; "
          f"name clashes {clashes}, limits broken {broken}")


if __name__ == "__main__":
    main()
