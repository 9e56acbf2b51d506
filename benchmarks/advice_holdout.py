"""A held-out CAT suite: random mixes the advisor was never tuned on (seeds 900+).

    rdtadvisor bench-advice --suite benchmarks/advice_holdout.py

The built-in suite (`rdtadvisor.sim.suite`) was used while developing `advise cat`, so its
figures may flatter thresholds chosen on it (the prefetch test's stall bound, the draws,
the levels scored). These 16 scenarios are drawn the same way (the suite's random mixes: each VM
cache-sensitive / streaming / small with probability 0.5 / 0.25 / 0.25) on three platforms
with other seeds, and judged the same way: % of the exhaustive optimum, and how often a plan
is worse than doing nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rdtadvisor.sim import suite
from rdtadvisor.sim.harness import SuiteScenario


def scenarios() -> list[SuiteScenario]:
    """16 seeded random mixes: 8 on Skylake-SP (6 VMs, 4 COS), 4 on Broadwell-EP (5 VMs, 4 COS),
    4 on Ice Lake-SP (7 VMs, 6 COS)."""
    out = []
    for k, (name, socket, n, cos) in enumerate(
            [("skx", suite.SKX, 6, 4)] * 8 + [("bdw", suite.BDW, 5, 4)] * 4 + [("icx", suite.ICX, 7, 6)] * 4):
        seed = 900 + k
        rng = np.random.default_rng(seed)
        vms = tuple(suite.random_mix(rng, n))
        out.append(SuiteScenario(name=f"holdout-{name}-{k}", socket=socket, vms=vms, cos_budget=cos,
                                 description="held-out random mix", seed=seed, tags=("mix",)))
    return out
