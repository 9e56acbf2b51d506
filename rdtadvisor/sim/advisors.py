"""rdtadvisor's own CAT advisor as the scoring harness calls it (`rdtadvisor.sim.harness.Advisor`).

The harness hands over a simulated socket, its VMs and the collector's tables of them; this
adapter fits the curves from those tables and plans the socket as ``advise cat`` would
(`rdtadvisor.advise.strategy.plan_socket`), with the socket's bandwidth configured.
"""

from __future__ import annotations

import pandas as pd

from rdtadvisor.advise.strategy import FAMILY, TRAFFIC_FACT, Policy, SocketAdvice, VmInput, plan_socket
from rdtadvisor.cache.layouts import Layout, full_mask, valid
from rdtadvisor.model.capacity import SocketFacts


def advisor(socket, vms, history, *, cos_budget: int, mode: str) -> Layout:
    """`rdtadvisor.sim.harness.Advisor`: fit curves from ``history``, then `plan_socket`.

    Declines (today's masks, normally the default) when some VM has no curve, as the
    reference advisor does.
    """
    del mode
    advice = advise_scenario_socket(socket, vms, history, cos_budget=cos_budget)
    if advice is None:
        return Layout((full_mask(socket.ways),) * len(vms), socket.ways, FAMILY)
    return advice.layout()


def advise_scenario_socket(socket, vms, history, *, cos_budget: int) -> SocketAdvice | None:
    """`plan_socket` on a simulated socket (`rdtadvisor.sim.model.Socket`, its `Vm`s) from the
    collector's tables of it, as ``advise cat`` would plan it with the socket's bandwidth
    configured; None when some VM has no curve (no MBM, or never seen)."""
    from rdtadvisor.sim.fitted import fitted_curves

    W = socket.ways
    fits = fitted_curves(socket, vms, history)
    if any(f is None for f in fits):
        return None
    now = _current_masks(history, vms, W)
    facts = SocketFacts(float(socket.l3_bytes), W, False, full_mask(W), None)
    busy = _busy_by_name(history)
    items = [VmInput(i, v.name, v.priority, f, v.vcpus, busy.get(v.name, 1.0))
             for i, (v, f) in enumerate(zip(vms, fits, strict=True))]
    policy = Policy(latency_ns=socket.latency_ns, bw_capacity=socket.bw_bytes_s,
                    traffic=_traffic_fact(history))
    return plan_socket(facts, items, dict(enumerate(now)), cos_budget=cos_budget, policy=policy)


def _traffic_fact(history) -> float | None:
    """The socket's memory traffic the operator measured outside xl, when the history carries it
    (``rdtadvisor.sim.history.observe(operator=True)``: the harness's no-MBM scenarios)."""
    facts = history.get("facts") if history else None
    if facts is None or facts.empty:
        return None
    row = facts[facts["fact"] == TRAFFIC_FACT]
    return float(row["value"].iloc[-1]) if len(row) else None


def _busy_by_name(history) -> dict[str, float]:
    """Each domain's busy fraction (`rdtadvisor.model.busy`) by name, from the history's ``xl list``."""
    from rdtadvisor.model.busy import busy_fractions

    domains = history.get("domains") if history else None
    if domains is None or domains.empty:
        return {}
    names = domains.drop_duplicates(["host", "domid"], keep="last")
    name_of = {(str(h), int(d)): str(n) for h, d, n in zip(names["host"], names["domid"], names["domain"],
                                                           strict=True)}
    return {name_of[k]: v for k, v in busy_fractions(domains).items() if k in name_of}


def _current_masks(history, vms, ways: int) -> list[int]:
    """Each VM's latest stored L3 mask (the default when none)."""
    full = full_mask(ways)
    st = history.get("settings") if history else None
    if st is None or len(st) == 0:
        return [full] * len(vms)
    st = st[st["setting"].isin(["l3_cbm", "l3_data_cbm"]) & st["value"].notna()]
    st = st.sort_values("time", kind="stable").drop_duplicates("domain", keep="last")
    latest = dict(zip(st["domain"].astype(str), st["value"], strict=True))
    out = []
    for v in vms:
        m = latest.get(v.name)
        out.append(int(m) if m is not None and not pd.isna(m) and valid(int(m), ways) else full)
    return out
