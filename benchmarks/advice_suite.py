"""The CAT advice suite: >= 20 seeded socket scenarios, scored by the harness.

    python benchmarks/advice_suite.py              # the full suite: summary table (about a minute or two)
    python benchmarks/advice_suite.py --quick      # 6 small scenarios
    python benchmarks/advice_suite.py --per-scenario

The scenarios are data, kept in the package (`rdtadvisor.sim.suite`) so that
``rdtadvisor bench-advice`` works from an installed package; this file re-exports them
(``rdtadvisor bench-advice --suite benchmarks/advice_suite.py`` reads `scenarios()` here)
and prints: no CAT, equal split, UCP
lookahead, the exhaustive optimum with one private COS per VM (budget ignored),
and the exhaustive optimum within the COS budget with sharing (disjoint only, and with the
overlapping family), each as mean/worst weighted speedup vs no CAT, the share of
scenarios worse than no CAT, and % of the budgeted optimum.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rdtadvisor.cli.output import text_table
from rdtadvisor.sim import scoring, suite
from rdtadvisor.sim.harness import SuiteScenario


def scenarios() -> list[SuiteScenario]:
    """The full built-in suite (see `rdtadvisor.sim.suite`)."""
    return suite.scenarios()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only the quick subset")
    ap.add_argument("--per-scenario", action="store_true", help="also print every scenario's rows")
    args = ap.parse_args(argv)
    scs = suite.quick() if args.quick else scenarios()
    started = time.perf_counter()
    results = scoring.run_suite(scs, progress=lambda name: print(f"  {name}", file=sys.stderr, flush=True))
    elapsed = time.perf_counter() - started
    if args.per_scenario:
        print(text_table(scoring.scenario_table(results)))
    print(text_table(scoring.summary_table(scoring.summarise(results))))
    print(f"{len(scs)} scenarios, {results['n_vms'].min()}-{results['n_vms'].max()} VMs, in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
