"""How honest is `advise cat`'s predicted gain? Its 90 % band against the simulator's truth.

    python benchmarks/advice_band.py                               # the 23-scenario suite
    python benchmarks/advice_band.py benchmarks/advice_holdout.py  # the held-out mixes

For every scenario and history mode (default masks only; with a calibration sweep) it plans
the socket as `rdtadvisor.sim.advisors.advisor` does, then scores the chosen plan (or,
when the advisor declines, its best candidate) with the truth model. It prints the predicted
gain, the reported band and the true gain, then how many true gains of the plans it would
apply fell inside the band. A 90 % band should hold about 9 in 10 (strategy step 8, where
`MODEL_ERROR` was measured with this script). Last, per VM of those plans: how far each VM's
predicted speed change (the plan's ``predicted.per_vm``) is from its true one, and how often
it at least points the right way.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pandas as pd

from rdtadvisor.sim import advisors, harness, scoring, suite
from rdtadvisor.sim.model import score, solve


def scenarios(path: str | None) -> list[harness.SuiteScenario]:
    if path is None:
        return suite.scenarios()
    spec = importlib.util.spec_from_file_location("suite_file", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.scenarios()


def rows(scs: list[harness.SuiteScenario]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (scenario, history): the plan's predicted gain, band and true gain; and per VM of
    the plans applied: its predicted speed change (`VmAdvice.speed_change`) and the true one."""
    out, per_vm = [], []
    for sc in scs:
        for mode in ("default", "calibration"):
            socket, vms = sc.socket, sc.vms
            hist = scoring.observed_history(sc, mode)
            advice = advisors.advise_scenario_socket(socket, vms, hist, cos_budget=sc.cos_budget)
            if advice is None:                        # no MBM: the advisor cannot plan
                continue
            now = [v.mask_now for v in advice.vms]
            chosen = [c for c in advice.candidates if c.masks == advice.masks] or list(advice.candidates[:1])
            if not chosen:
                continue
            c = chosen[0]
            # the truth of today and of the plan, solved once for the socket's and each VM's figures
            st_now, st_plan = solve(socket, vms, now), solve(socket, vms, c.masks)
            base = score([(socket, vms, st_now)]).weighted_speedup
            true = score([(socket, vms, st_plan)]).weighted_speedup / base - 1
            out.append({"scenario": sc.name, "history": mode, "declined": advice.declined is not None,
                        "predicted": 100 * c.gain_mean, "low": 100 * c.gain_low, "high": 100 * c.gain_high,
                        "true": 100 * true})
            if advice.declined is None:                # then c is the plan
                speed = st_plan.speed / st_now.speed - 1
                per_vm += [{"scenario": sc.name, "history": mode, "vm": v.name, "kind": v.kind,
                            "predicted": 100 * v.speed_change, "true": 100 * float(t)}
                           for v, t in zip(advice.vms, speed, strict=True)]
    d = pd.DataFrame(out)
    d["inside"] = (d["true"] >= d["low"]) & (d["true"] <= d["high"])
    return d, pd.DataFrame(per_vm)


def main() -> None:
    d, vms = rows(scenarios(sys.argv[1] if len(sys.argv) > 1 else None))
    pd.set_option("display.width", 160)
    print(d.round(2).to_string(index=False))
    acted = d[~d["declined"]]
    for mode, g in acted.groupby("history"):
        print(f"{mode}: {int(g['inside'].sum())} of {len(g)} true gains inside the band")
    err = acted["predicted"] - acted["true"]
    print(f"all applied plans: {int(acted['inside'].sum())} of {len(acted)} inside; "
          f"mean error {err.mean():+.2f} points, mean |error| {err.abs().mean():.2f} points")
    if len(vms):
        e = (vms["predicted"] - vms["true"]).abs()
        moved = vms[vms["true"].abs() > 1.0]
        right = int((np.sign(moved["predicted"]) == np.sign(moved["true"])).sum())
        print(f"per VM of those plans ({len(vms)}): |predicted - true speed change| median {e.median():.1f}, "
              f"90th percentile {e.quantile(0.9):.1f} points; direction right for {right} of the "
              f"{len(moved)} that truly moved more than 1%")


if __name__ == "__main__":
    main()
