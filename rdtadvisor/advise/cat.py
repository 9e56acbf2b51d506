"""The CAT advisor end to end: stored history -> per-socket advice -> reviewable plans.

Pure over the store's tidy tables (`rdtadvisor.frames`): fit each VM's miss curve
(`rdtadvisor.curves`), plan each socket (`rdtadvisor.advise.strategy.plan_socket`), and turn
the advice into validated `rdtadvisor.plan.CatPlan`s with the exact `xl` commands of the
host's Xen version and their rollback. Sockets where acting is not worth it (gain under the
hysteresis or within the uncertainty), or cannot be judged (no CAT, CDP, no curves), are
listed in `CatAdvice.declined` with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from rdtadvisor import plan as planning
from rdtadvisor.advise.strategy import Policy, VmInput, plan_socket
from rdtadvisor.curves import fit_all
from rdtadvisor.plans import socket_facts


@dataclass(frozen=True)
class CatAdvice:
    """Plans for the sockets worth changing, and why the others are left alone."""

    plans: tuple[planning.CatPlan, ...]
    declined: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Issue 5's JSON contract ``{"plans": [...]}`` plus ``declined``: [{host, socket, reason}]."""
        return {**planning.plans_to_dict(self.plans), "declined": list(self.declined)}


def advise_cat(history: Mapping[str, pd.DataFrame], *, hosts: list[str] | None = None,
               policy: Policy | None = None) -> CatAdvice:
    """Advise L3 masks for every (host, socket) in `history` (the store's tables).

    Only domains seen with occupancy samples in the host's latest collection are planned;
    the others keep their masks. CDP sockets are declined: CMT/MBM cannot split code from
    data, so there is no evidence for code/data masks (cache-partitioning-algorithms.md §4.4).
    """
    policy = policy or Policy()
    samples, facts = history["samples"], history["facts"]
    settings = history.get("settings", pd.DataFrame(columns=["time", "host"]))
    if hosts:
        samples, facts = samples[samples["host"].isin(hosts)], facts[facts["host"].isin(hosts)]
        settings = settings[settings["host"].isin(hosts)]
    fits = fit_all(samples, facts, settings) if len(samples) else {}
    plans: list[planning.CatPlan] = []
    declined: list[dict[str, Any]] = []

    def decline(host: str, socket: int, reason: str) -> None:
        declined.append({"host": host, "socket": socket, "reason": reason})

    for (host, socket), sf in sorted(socket_facts(facts).items()):
        if sf.cbm_len is None or sf.l3_bytes is None:
            decline(host, socket, "no L3 CAT facts (psr-hwinfo shows no L3 CAT, or CMT is off)")
            continue
        if sf.cdp:
            decline(host, socket, "CDP is on: CMT/MBM cannot tell code from data, so no code/data "
                                  "masks are advised without that evidence")
            continue
        latest_t = settings.loc[settings["host"] == host, "time"].max() if len(settings) else None
        current, names = planning.socket_settings(
            settings[(settings["host"] == host) & (settings["time"] == latest_t)], host, socket)
        on_socket = samples[(samples["host"] == host) & (samples["socket"] == socket)]
        if on_socket.empty:
            decline(host, socket, "no occupancy samples on this socket")
            continue
        last = on_socket[on_socket["time"] == on_socket["time"].max()]
        domids = sorted(set(int(d) for d in last["domid"]) & set(current))
        items = [VmInput(d, str(names.get(d, d)), 1.0, fits[(host, socket, d)])
                 for d in domids if (host, socket, d) in fits]
        if len(items) < 2:
            no_bw = not on_socket["metric"].isin(["mem_bw_total"]).any()
            decline(host, socket, "no memory-bandwidth samples (no MBM on this CPU, or not collected): "
                                  "miss curves cannot be estimated" if no_bw else
                    "fewer than two monitored domains with a mask and a fitted curve to plan")
            continue
        budget = sf.cos_max if sf.cos_max is not None else 1
        advice = plan_socket(sf, items, {d: int(current[d]) for d in domids}, cos_budget=budget,
                             policy=policy)
        if advice.declined:
            decline(host, socket, advice.declined)
            continue
        version = planning.xen_version_of(facts, host) or (4, 22)
        changed = {v.domid: v.mask for v in advice.vms}
        predicted = {
            "weighted_speedup": round(advice.predicted_gain, 4),
            "per_vm": [{"domid": v.domid, "name": v.name, "kind": v.kind,
                        "speed_change": round(v.speed_change, 4)} for v in advice.vms],
            "uncertainty": [round(advice.uncertainty[0], 4), round(advice.uncertainty[1], 4)],
        }
        plans.append(planning.cat_plan(
            host, socket, version, {d: int(current[d]) for d in domids}, changed, cdp=False,
            cbm_len=sf.cbm_len, cos_budget=budget, l3_bytes=sf.l3_bytes, names=names,
            reasons={v.domid: v.reason for v in advice.vms}, predicted=predicted,
            min_bits=policy.min_bits))
    return CatAdvice(tuple(plans), tuple(declined))
