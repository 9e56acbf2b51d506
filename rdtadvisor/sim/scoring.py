"""The suite: every advisor and baseline scored on a list of `SuiteScenario` (`run_suite`), and
the tables ``rdtadvisor bench-advice`` prints (`summarise`, `scenario_table`, `summary_table`).

Plans are scored on the truth (`rdtadvisor.sim.harness`); advisors see only the collector's
tables of each scenario (`observed_history`, from `rdtadvisor.sim.history`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from rdtadvisor.cache import layouts
from rdtadvisor.cache.layouts import Layout
from rdtadvisor.sim import baselines
from rdtadvisor.sim.harness import (
    HISTORY_MODES,
    NOISE_MARGIN,
    Advisor,
    History,
    SuiteScenario,
    alone_ips,
    best_index,
    evaluate,
    evaluate_batch,
    search,
)
from rdtadvisor.sim.history import observe, preset_for

#: Plan labels in table order (advisors follow, then the optima).
NO_CAT, EQUAL, LOOKAHEAD = "no partitioning", "equal split", "UCP lookahead"
OPT_PER_VM, OPT_DISJOINT, OPT = "optimum per-VM COS", "optimum disjoint", "optimum"


def observed_history(scenario: SuiteScenario, mode: str) -> History:
    """What an advisor sees: the collector's tables for 6 h of the scenario's socket in history
    ``mode`` (`rdtadvisor.sim.history.observe`, seeded with the scenario's seed), and on a part
    without MBM the socket's memory traffic as the operator measures it outside xl."""
    return observe(scenario, mode, seed=scenario.seed, operator=True)


def run_suite(scenarios: Sequence[SuiteScenario], advisors: Mapping[str, Advisor] | None = None, *,
              history_modes: Sequence[str] = HISTORY_MODES,
              history: Callable[[SuiteScenario, str], History] | None = observed_history,
              overlapping: bool = True, per_vm_optimum: bool = True,
              progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """True outcomes of every plan on every scenario: one row per (scenario, plan, history).

    Plans: `NO_CAT` (every VM at the default mask), `EQUAL` and `LOOKAHEAD`
    (`rdtadvisor.sim.baselines`, UCP on the true curves, within the COS budget), each
    advisor (once per history mode; its history from ``history(scenario, mode)``, by default
    `observed_history`; ``None`` if no factory is given), `OPT_PER_VM` (best
    one-private-run-per-VM layout, budget ignored: what one COS per VM would reach; skipped
    when n > ways), `OPT_DISJOINT`
    (best of family a) and `OPT` (best of families a + b within the budget: the yardstick).

    Columns: scenario, plan, history ("-" for plans that do not read history), mbm (whether
    the scenario's CPU has MBM: without it only a calibration sweep shows a curve, a relative
    one, `rdtadvisor.model.shares`), n_vms, ways,
    cos_budget, cos_used, valid, masks, weighted_speedup, worst_slowdown, unfairness,
    over_threshold, vs_no_cat (WS / WS of no partitioning), pct_of_optimum (100 WS / WS of
    `OPT`). An advisor layout that Xen would reject (a bad mask, or more COS than the
    budget) is marked ``valid = False`` and scored as what the host keeps: no partitioning.
    """
    advisors = dict(advisors or {})
    rows: list[dict[str, Any]] = []
    for sc in scenarios:
        if progress:
            progress(sc.name)
        rows.extend(_scenario_rows(sc, advisors, history_modes, history, overlapping and sc.overlapping,
                                   per_vm_optimum))
    return pd.DataFrame(rows, columns=SUITE_COLUMNS)


SUITE_COLUMNS = ["scenario", "plan", "history", "mbm", "n_vms", "ways", "cos_budget", "cos_used", "valid",
                 "masks", "weighted_speedup", "worst_slowdown", "unfairness", "over_threshold", "vs_no_cat",
                 "pct_of_optimum"]


def _scenario_rows(sc: SuiteScenario, advisors: Mapping[str, Advisor], modes: Sequence[str],
                   history: Callable[[SuiteScenario, str], History] | None, overlapping: bool,
                   per_vm_optimum: bool) -> list[dict[str, Any]]:
    socket, vms, n, W = sc.socket, list(sc.vms), len(sc.vms), sc.socket.ways
    a = alone_ips(socket, vms)
    plans: list[tuple[str, str, Layout, bool]] = []
    plans.append((NO_CAT, "-", Layout.default(n, W), True))
    plans.append((EQUAL, "-", baselines.equal_split(n, W, sc.cos_budget), True))
    curves = baselines.true_miss_curves(socket, vms)
    plans.append((LOOKAHEAD, "-", baselines.ucp_lookahead(socket, vms, sc.cos_budget, curves=curves), True))
    info = sc.vm_info()
    # One history per mode, shared by every advisor (each costs a simulation and a parse).
    hists = {mode: history(sc, mode) if history is not None else None for mode in modes} if advisors else {}
    for name, advisor in advisors.items():
        for mode in modes:
            layout = advisor(socket, info, hists[mode], cos_budget=sc.cos_budget, mode=mode)
            ok = (isinstance(layout, Layout) and len(layout.masks) == n and layout.ways == W
                  and layout.is_valid(sc.cos_budget))
            plans.append((name, mode, layout, ok))
    cands = layouts.enumerate_layouts(n, W, sc.cos_budget, overlapping=overlapping)
    found = search(socket, vms, cands, alone=a)
    if per_vm_optimum and n <= W:
        pv = layouts.per_vm(n, W)
        pv_scores = evaluate_batch(socket, vms, pv, alone=a)
        best_pv = best_index(pv_scores.weighted_speedup, pv.cos_used(), pv_scores.converged)
        plans.append((OPT_PER_VM, "-", pv[best_pv], True))
    plans.append((OPT_DISJOINT, "-", cands[found.best(cands.family == layouts.FAMILY_DISJOINT)], True))
    plans.append((OPT, "-", cands[found.best()], True))

    mbm = bool(preset_for(socket).mbm)
    out = []
    for plan, mode, layout, ok in plans:
        scored = layout if ok else Layout.default(n, W)
        s = evaluate(socket, vms, scored, alone=a)
        out.append({"scenario": sc.name, "plan": plan, "history": mode, "mbm": mbm, "n_vms": n, "ways": W,
                    "cos_budget": sc.cos_budget,
                    "cos_used": layout.cos_used if isinstance(layout, Layout) else -1, "valid": ok,
                    "masks": layout.hex() if isinstance(layout, Layout) else repr(layout),
                    "weighted_speedup": s.weighted_speedup, "worst_slowdown": s.worst_slowdown,
                    "unfairness": s.unfairness, "over_threshold": s.over_threshold})
    base = out[0]["weighted_speedup"]
    best = out[-1]["weighted_speedup"]
    for r in out:
        r["vs_no_cat"] = r["weighted_speedup"] / base
        r["pct_of_optimum"] = 100.0 * r["weighted_speedup"] / best
    return out


def summarise(results: pd.DataFrame, *, margin: float = NOISE_MARGIN) -> pd.DataFrame:
    """One row per (plan, history): what ``rdtadvisor bench-advice`` prints (``docs/results.md``).

    Columns: plan, history, scenarios, mean_pct_of_optimum, mean_pct_of_optimum_mbm (over the
    scenarios whose CPU has MBM, where a history can show miss curves at all; NaN if none),
    worst_pct_of_optimum,
    mean_vs_no_cat, worst_vs_no_cat, worse_than_nothing (share of scenarios whose weighted
    speedup is below no partitioning by more than ``margin``, relative), invalid (advisor
    layouts Xen would reject), mean_worst_slowdown, over_threshold (sockets over their
    bandwidth threshold, summed).
    """
    rows = []
    order = list(dict.fromkeys(zip(results["plan"], results["history"], strict=True)))
    for plan, hist in order:
        g = results[(results["plan"] == plan) & (results["history"] == hist)]
        rows.append({
            "plan": plan, "history": hist, "scenarios": len(g),
            "mean_pct_of_optimum": float(g["pct_of_optimum"].mean()),
            "mean_pct_of_optimum_mbm": float(g.loc[g["mbm"].astype(bool), "pct_of_optimum"].mean()),
            "worst_pct_of_optimum": float(g["pct_of_optimum"].min()),
            "mean_vs_no_cat": float(g["vs_no_cat"].mean()),
            "worst_vs_no_cat": float(g["vs_no_cat"].min()),
            "worse_than_nothing": float((g["vs_no_cat"] < 1.0 - margin).mean()),
            "invalid": int((~g["valid"].astype(bool)).sum()),
            "mean_worst_slowdown": float(g["worst_slowdown"].mean()),
            "over_threshold": int(g["over_threshold"].sum()),
        })
    return pd.DataFrame(rows)


def scenario_table(results: pd.DataFrame) -> list[dict[str, Any]]:
    """`run_suite` rows for a text table: rounded, short column names."""
    return [{"scenario": r.scenario, "plan": r.plan, "history": r.history,
             "cos": f"{r.cos_used}/{r.cos_budget}", "masks": r.masks + ("" if r.valid else " (rejected)"),
             "WS": round(r.weighted_speedup, 3), "vs none": round(r.vs_no_cat, 3),
             "% opt": round(r.pct_of_optimum, 1), "worst slow": round(r.worst_slowdown, 3),
             "unfair": round(r.unfairness, 3), "over bw": int(r.over_threshold)}
            for r in results.itertuples()]


def summary_table(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """`summarise` rows for a text table."""
    return [{"plan": r.plan, "history": r.history, "scenarios": r.scenarios,
             "mean % opt": round(r.mean_pct_of_optimum, 1),
             "with MBM": None if np.isnan(r.mean_pct_of_optimum_mbm) else round(r.mean_pct_of_optimum_mbm, 1),
             "worst % opt": round(r.worst_pct_of_optimum, 1),
             "mean vs none": round(r.mean_vs_no_cat, 3), "worst vs none": round(r.worst_vs_no_cat, 3),
             "worse than none": f"{100 * r.worse_than_nothing:.0f}%", "invalid": r.invalid}
            for r in summary.itertuples()]
