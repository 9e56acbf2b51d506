"""Benchmark of the placement solver: against the exact optimum, at fleet scale, and against Watcher.

    python benchmarks/bench_placement.py                      # everything (a few minutes)
    python benchmarks/bench_placement.py --small 50 --large 1000x10000 --time-limit 20   # a quick look
    python benchmarks/bench_placement.py --large ""            # only the small fleets and determinism

Three parts, on fleets from `rdtadvisor.sim.placement_fleets.synthetic_fleet`:

(a) **small**: `--small` random fleets of 2-5 hosts and up to 20 VMs (seeds 0, 1, ...; pins,
    anti-affinity pairs, now and then a maintenance host). `plan` is compared with
    `exhaustive` (the optimum by enumeration, up to `--max-moves` migrations): the target is
    the same number of migrations every time, with every source resolved and the rules kept
    (`exhaustive.check`). Every mismatch is printed with its seed.
(b) **large**: each `--large` fleet (hosts x VMs, 10 % of hosts overloaded): `plan`'s time,
    method, migrations, lower bound, gap and unresolved hosts, next to `watcher_first_fit`
    (largest memory first, and largest L3 first): sources left violating, hosts it newly
    overloads (Watcher does not look at cache or bandwidth), migrations.
(c) **determinism**: `plan` twice on the same input must give the same assignment (a small
    fleet, and the first large one).
(d) **hard**: each `--hard` fleet, 90 % full with 40 % of hosts overloaded and 8 pools (seeds
    0-2): the solver must stay within its time limit and near the bound (target: gap <= 1 %).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rdtadvisor.advise.placement.fleet import Arrays, Fleet, Policy, violations
from rdtadvisor.advise.placement.solve import plan
from rdtadvisor.sim.placement_baselines import watcher_first_fit
from rdtadvisor.sim.placement_fleets import synthetic_fleet
from rdtadvisor.sim.placement_oracle import check, exhaustive


def small_fleet(seed: int) -> Fleet:
    """The `seed`-th small fleet: 2-5 hosts, 2 x hosts to 20 VMs, a varied mix."""
    rng = np.random.default_rng(seed)
    n_hosts = int(rng.integers(2, 6))
    return synthetic_fleet(
        n_hosts,
        int(rng.integers(2 * n_hosts, 21)),
        seed=seed,
        overloaded=0.4,
        fill=float(rng.uniform(0.4, 0.75)),
        pinned=0.1,
        anti_affinity=0.2,
        maintenance=int(rng.random() < 0.1),
        pools=int(rng.random() < 0.2) * 2,
    )


def part_small(n: int, policy: Policy, max_moves: int, time_limit: float) -> int:
    """(a): returns the number of mismatches."""
    print(f"(a) {n} small fleets: plan vs exhaustive (optimum up to {max_moves} migrations)")
    same = beyond = proven = 0
    bad: list[str] = []
    t_plan = t_exh = 0.0
    sizes: dict[int, int] = {}
    for seed in range(n):
        fleet = small_fleet(seed)
        t0 = time.perf_counter()
        a, sol = plan(fleet, policy, time_limit=time_limit)
        t_plan += time.perf_counter() - t0
        t0 = time.perf_counter()
        x = exhaustive(a, policy, max_moves=max_moves)
        t_exh += time.perf_counter() - t0
        got = int((sol.assignment != a.current).sum())
        broken = check(a, policy, sol.assignment)
        where = f"seed {seed:3d} ({len(fleet.hosts)} hosts, {len(fleet.vms):2d} VMs)"
        if x is None:
            if len(sol.unresolved) == 0 and got <= max_moves:
                bad.append(
                    f"{where}: oracle finds no plan within {max_moves}, plan moves {got} and resolves all"
                )
            else:
                beyond += 1
                # beyond the search: a full plan meeting the lower bound is still provably optimal
                proven += int(len(sol.unresolved) == 0 and got == sol.lower_bound)
            continue
        best = int((x != a.current).sum())
        sizes[best] = sizes.get(best, 0) + 1
        if got == best and not broken and len(sol.unresolved) == 0:
            same += 1
        else:
            bad.append(
                f"{where}: optimum {best}, plan {got} ({sol.method}), unresolved "
                f"{sol.unresolved.tolist()}, lower bound {sol.lower_bound}; "
                f"{'; '.join(broken) or 'rules kept'}"
            )
    solved = n - beyond
    print(
        f"    same migrations as the optimum: {same}/{solved}   "
        f"(optimum beyond {max_moves} or infeasible: {beyond})"
    )
    print(
        f"    of those {beyond}: {proven} fully resolved by plan with migrations = lower bound (so optimal); "
        f"{beyond - proven} with no full plan within {max_moves} moves (plan names what stays over)"
    )
    print("    optimum sizes: " + ", ".join(f"{k} moves x{v}" for k, v in sorted(sizes.items())))
    print(f"    time: plan {t_plan:.2f} s, exhaustive {t_exh:.2f} s in all")
    for line in bad:
        print("    MISMATCH " + line)
    return len(bad)


def rules(a: Arrays, policy: Policy, assignment: np.ndarray) -> tuple[int, int, int]:
    """(sources left violating, hosts newly violating, migrations) of an assignment."""
    src = violations(a, a.current, slack=policy.hysteresis)
    after = violations(a, assignment)
    return int((src & after).sum()), int((~src & after).sum()), int((assignment != a.current).sum())


def part_large(sizes: list[tuple[int, int]], policy: Policy, time_limit: float, *, hard: bool = False,
               seeds: tuple[int, ...] = (1,)) -> None:
    kind = ("hard fleets: 90 % full, 40 % of hosts overloaded, 8 pools" if hard
            else "large fleets (10 % of hosts overloaded)")
    print(f"\n({'d' if hard else 'b'}) {kind}, time limit {time_limit:g} s")
    head = (
        f"    {'fleet':>12} {'method':>18} {'seconds':>8} {'migr.':>6} {'bound':>6} {'gap':>6} "
        f"{'sources':>7} {'left':>5} {'new':>5}"
    )
    print(head)
    print("    " + "-" * (len(head) - 4))
    for (n_hosts, n_vms), seed in ((s, seed) for s in sizes for seed in seeds):
        t0 = time.perf_counter()
        extra = {"overloaded": 0.4, "fill": 0.9, "pools": 8} if hard else {}
        fleet = synthetic_fleet(n_hosts, n_vms, seed=seed, **extra)
        built = time.perf_counter() - t0
        a, sol = plan(fleet, policy, time_limit=time_limit)
        left, new, n = rules(a, policy, sol.assignment)
        name = f"{n_hosts}x{n_vms}" + (f"/s{seed}" if hard else "")
        gap = "-" if sol.gap is None else f"{sol.gap:.1%}"
        print(
            f"    {name:>12} {'plan/' + sol.method:>18} {sol.seconds:8.2f} {n:6d} {sol.lower_bound:6d} "
            f"{gap:>6} {len(sol.sources):7d} {left:5d} {new:5d}"
        )
        for order in ("memory", "l3"):
            t0 = time.perf_counter()
            w = watcher_first_fit(a, policy, order=order)
            dt = time.perf_counter() - t0
            left, new, n = rules(a, policy, w)
            print(
                f"    {'':>12} {'watcher/' + order:>18} {dt:8.2f} {n:6d} {'':>6} {'':>6} "
                f"{len(sol.sources):7d} {left:5d} {new:5d}"
            )
        unresolved = sol.unresolved.tolist()
        print(
            f"    {'':>12} (fleet built in {built:.2f} s; plan unresolved hosts: {unresolved[:10]}"
            f"{' ...' if len(unresolved) > 10 else ''}; optimal: {sol.optimal})"
        )
    print("    left: sources still violating; new: other hosts violating afterwards (rules of `violations`)")


def part_determinism(policy: Policy, large: tuple[int, int] | None, time_limit: float) -> bool:
    print("\n(c) determinism: the same input twice")
    ok = True
    cases = [("small seed 7", small_fleet(7))]
    if large is not None:
        cases.append((f"{large[0]}x{large[1]}", synthetic_fleet(*large, seed=1)))
    for name, fleet in cases:
        _, one = plan(fleet, policy, time_limit=time_limit)
        _, two = plan(fleet, policy, time_limit=time_limit)
        same = np.array_equal(one.assignment, two.assignment)
        ok &= same
        print(
            f"    {name:>14}: {'same assignment' if same else 'DIFFERENT assignments'} "
            f"({one.method}, {one.seconds:.2f} s / {two.seconds:.2f} s)"
        )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=200, help="number of small fleets (a)")
    parser.add_argument("--max-moves", type=int, default=5, help="the oracle's search depth (a)")
    parser.add_argument("--large", default="1000x20000,1000x10000", help="hosts x VMs, comma-separated (b)")
    parser.add_argument("--hard", default="1000x20000", help="hard fleets, hosts x VMs, comma-separated (d)")
    parser.add_argument("--time-limit", type=float, default=50.0, help="plan's time limit [s]")
    args = parser.parse_args()
    policy = Policy()
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.large.split(",") if s.strip()]
    bad = part_small(args.small, policy, args.max_moves, args.time_limit) if args.small else 0
    if sizes:
        part_large(sizes, policy, args.time_limit)
    hard = [tuple(int(x) for x in s.split("x")) for s in args.hard.split(",") if s.strip()]
    if hard:
        part_large(hard, policy, args.time_limit, hard=True, seeds=(0, 1, 2))
    same = part_determinism(policy, sizes[0] if sizes else None, args.time_limit)
    return 1 if bad or not same else 0


if __name__ == "__main__":
    sys.exit(main())
