"""Fleet collection over real ssh: wall time of `collect_fleet` for N hosts against 1 host.

Run: ``python benchmarks/bench_fleet.py [--hosts 50] [--delay 0.5] [--parallel N]``.

Loopback sshds (tests/sshd.py; one per 16 addresses, sshd's listen-socket limit) listen
on 127.0.0.2 ... 127.0.0.(N+1); each address is a host whose fake xl (tests/fake_xl/xl)
replays its own capture and sleeps `--delay` seconds per call, like a slow xl on a busy
dom0. Every host gets a real ssh connection
(with multiplexing, as in production) and the ~12 commands of a collection.

Prints the wall time for 1 host, for all N hosts, their ratio (target: at most 3x) and
the spread of per-host times. On a small machine the ratio is bounded by CPU: each xl
call costs an ssh mux client, an sshd session, a shell and a Python start.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rdtadvisor.sources.collect import collect_fleet
from tests.fake_xl.captures import write_sample_capture
from tests.sshd import server_for, start_sshd_fleet

TARGET_RATIO = 3.0


def run(hosts, *, parallel: int, readings: int) -> tuple[float, list]:
    t0 = time.monotonic()
    results = collect_fleet(hosts, readings=readings, timeout=60, parallel=parallel)
    wall = time.monotonic() - t0
    failed = [f"{r.host}: {r.error}" for r in results if not r.ok]
    if failed:
        raise SystemExit("collection failed:\n  " + "\n  ".join(failed))
    return wall, results


def spread(results) -> str:
    secs = sorted(r.seconds for r in results)
    return f"per host min {secs[0]:.2f} s, median {statistics.median(secs):.2f} s, max {secs[-1]:.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--delay", type=float, default=0.5, help="seconds the fake xl sleeps per call")
    ap.add_argument("--parallel", type=int, default=None, help="hosts at once (default: all of them)")
    ap.add_argument("--readings", type=int, default=3)
    args = ap.parse_args()
    if not 1 <= args.hosts <= 250:
        ap.error("--hosts must be 1..250 (one 127.0.0.x address each)")
    parallel = args.parallel or args.hosts

    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        root = Path(tmp)
        names = [f"bench{i:03d}" for i in range(args.hosts)]
        addresses = [f"127.0.0.{i + 2}" for i in range(args.hosts)]
        for name in names:
            write_sample_capture(root / "captures", name)
        hostmap = root / "hostmap.json"
        hostmap.write_text(json.dumps(dict(zip(addresses, names, strict=True))))
        servers = start_sshd_fleet(root, addresses, env={
            "FAKE_XL_CAPTURES": str(root / "captures"), "FAKE_XL_HOSTMAP": str(hostmap),
            "FAKE_XL_DELAY": str(args.delay), "FAKE_XL_STATE": str(root / "state")})
        try:
            hosts = [server_for(servers, a).host(n, a) for n, a in zip(names, addresses, strict=True)]
            cpu0 = os.times()
            one, one_results = run(hosts[:1], parallel=1, readings=args.readings)
            calls = len(one_results[0].capture.results)
            many, many_results = run(hosts, parallel=parallel, readings=args.readings)
            cpu1 = os.times()
        finally:
            for server in servers:
                server.stop()

    ratio = many / one
    print(f"fleet collection over ssh: fake xl sleeps {args.delay:g} s per call, {calls} calls per host, "
          f"{len(servers)} sshd, {os.cpu_count()} CPUs")
    print(f"  1 host:            {one:6.2f} s")
    print(f"  {args.hosts} hosts ({parallel} at once): {many:6.2f} s  ({spread(many_results)})")
    verdict = "ok" if ratio <= TARGET_RATIO else "MISSED"
    print(f"  ratio:             {ratio:6.2f}x  (target <= {TARGET_RATIO:g}x: {verdict})")
    print(f"  serial estimate:   {one * args.hosts:6.2f} s  (speed-up {one * args.hosts / many:.1f}x)")
    children = (cpu1.children_user + cpu1.children_system) - (cpu0.children_user + cpu0.children_system)
    print(f"  CPU: this process {cpu1.user + cpu1.system - cpu0.user - cpu0.system:.1f} s, "
          f"ssh clients {children:.1f} s (sshd and the remote side are not counted)")


if __name__ == "__main__":
    main()
