"""Held-out CAT mixes for CPUs without MBM (Haswell-EP: occupancy only).

    rdtadvisor bench-advice --suite benchmarks/advice_holdout_nombm.py

The built-in suite has two Haswell-EP scenarios, on which the relative curves from occupancy
shares (`rdtadvisor.model.shares`) were developed. `scenarios()` draws 10 others (seeds 990+) on the
same part (20 ways, 45 MiB, 3 usable COS): 6 random mixes as in the suite (each VM cache-sensitive /
streaming / small with probability 0.5 / 0.25 / 0.25, so some have no streamer), and 4 with no
streaming VM at all, where the flattest VM is a cache user and must not be confined as if it
streamed. `development()` holds the 20 mixes drawn the same way (seeds 950+ and 970+) that the
estimator's guards were fixed on (stale lines after a fence, the anchor's working set, no knee
below what a VM filled alone, the gauge's width, the operator's traffic): their figures are no
longer held out. `scenarios()` was scored once, after.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rdtadvisor.sim import suite
from rdtadvisor.sim.harness import SuiteScenario


def _mixes(first_seed: int, prefix: str) -> list[SuiteScenario]:
    out = []
    for k in range(10):
        seed = first_seed + k
        rng = np.random.default_rng(seed)
        if k < 6:
            vms, what = suite.random_mix(rng, 5 + k % 2), "held-out random mix"
        else:
            n_db = 2 + k % 2
            vms = [suite.sensitive(rng, f"db{i}") for i in range(n_db)] + \
                  [suite.small(rng, f"web{i}") for i in range(2)]
            what = "held-out mix without a streaming VM"
        out.append(SuiteScenario(name=f"{prefix}-{k}", socket=suite.HSW, vms=tuple(vms), cos_budget=3,
                                 description=what, seed=seed, tags=("mix", "no-mbm"),
                                 overlapping=len(vms) <= 5))
    return out


def scenarios() -> list[SuiteScenario]:
    """10 held-out Haswell-EP mixes (seeds 990+): 6 random (5-6 VMs), 4 without a streamer."""
    return _mixes(990, "holdout-hsw")


def development() -> list[SuiteScenario]:
    """The 20 mixes (seeds 950+, 970+) the estimator was fixed on (see the module docstring)."""
    return _mixes(950, "dev-hsw") + _mixes(970, "dev-hsw-b")
