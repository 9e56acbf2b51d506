"""The CAT advisor end to end: stored history -> per-socket advice -> reviewable plans.

Pure over the store's tidy tables (`rdtadvisor.store.frames`): fit each VM's miss curve
(`rdtadvisor.model.curvefit`), plan each socket (`rdtadvisor.advise.strategy.plan_socket`), and turn
the advice into validated `rdtadvisor.advise.plan.CatPlan`s with the exact `xl` commands of the
host's Xen version and their rollback. Sockets where acting is not worth it (gain under the
hysteresis or within the uncertainty), cannot be judged (no CAT, no curves), or cannot meet
the operator's policy, are listed in `CatAdvice.declined` with the reason.

**Policy** (`rdtadvisor.core.config.CatSettings`, the config file's ``[cat]``): per host
(``[cat.hosts."HOST"]`` applied) a `strategy.Policy` with ``min_bits``, ``reserved_ways``,
``overlap``, ``hysteresis``, ``max_slowdown`` (the fair-share floor) and the guarantees
``min_mib`` by VM name, Domain-0's being ``dom0_ways`` x the socket's way size (or its own
``min_mib``, whichever is larger); each VM's weight in the weighted speedup is its
``priority`` or its tier's weight (default 1), its vCPUs come from the ``domains`` table
(``xl list``) when the history has it (else 2). A guarantee is a *private* run (the strategy
never pools, overlays or overlaps it; a plan that would is declined). Sockets whose
guarantees cannot fit (more ways or COS than there are, a guaranteed VM without a curve) are
declined, naming the VMs and the MiB asked against the MiB available.

**CDP** sockets are planned like the others: CMT/MBM cannot tell code from data, so a
VM's capacity is modelled as one mask (today's is the data half of its setting), the
budget is ``cos_max`` (Xen already halved it), and every target is ``(m, m)``: code and
data get the same mask, written as ``code_cbm``/``data_cbm`` with Xen's CDP syntax (one
plain set when today's halves are equal, else ``-c`` and ``-d``). Each reason and the
plan's ``predicted["notes"]`` say so.

**Bandwidth** (``bandwidth``: the config's ``[report] bandwidth_capacity``, per socket): when
the operator gives it, the strategy models memory latency rising with the socket's load
(``L0 / (1 - U)``), so freeing a saturated bus counts. Only when the figures are plausible:
if the VMs' median MBM bandwidths add up to more than the capacity (`MBM_PLAUSIBLE`), the
figures are inflated (Skylake-SP/Cascade Lake's MBM erratum over-reports high RMIDs by up to
45 %, and Xen does not correct it) or the capacity is set too low; the socket is then planned
without latency feedback and the output says why. Without a capacity there is none either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from math import ceil
from typing import Any

import pandas as pd

from rdtadvisor.advise import plan as planning
from rdtadvisor.advise.calibrate import left_level, left_message
from rdtadvisor.advise.strategy import Policy, SocketAdvice, VmInput, plan_socket
from rdtadvisor.cache import cbm as cbmlib
from rdtadvisor.core.config import DOM0_NAME, CatSettings
from rdtadvisor.core.errors import PlanError
from rdtadvisor.model.busy import busy_fractions
from rdtadvisor.model.capacity import BandwidthCapacity, SocketFacts, socket_facts
from rdtadvisor.model.curvefit import MIB
from rdtadvisor.model.curves import fit_all
from rdtadvisor.model.masks import socket_settings, xen_version_of

DEFAULT_VCPUS = 2
CDP_NOTE = "CDP: code and data get the same mask (CMT/MBM cannot split them)"
NO_MBM_NOTE = ("no MBM on this CPU: the curves are relative, read from how the domains share the cache "
               "(occupancy shares, `rdtadvisor curves`), and sized by the memory traffic measured outside xl "
               "([report] memory_traffic)")
MBM_PLAUSIBLE = 1.0   # summed median MBM over the configured capacity beyond which no bus carries it


@dataclass(frozen=True)
class CatAdvice:
    """Plans for the sockets worth changing, and why the others are left alone."""

    plans: tuple[planning.CatPlan, ...]
    declined: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The plan JSON contract (``docs/plan.md``): ``plans`` plus ``declined`` [{host, socket, reason}]."""
        return {**planning.plans_to_dict(self.plans), "declined": list(self.declined)}


def advise_cat(history: Mapping[str, pd.DataFrame], *, hosts: list[str] | None = None,
               cat: CatSettings | None = None, policy: Policy | None = None,
               bandwidth: BandwidthCapacity | None = None,
               traffic: BandwidthCapacity | None = None) -> CatAdvice:
    """Advise L3 masks for every (host, socket) in `history` (the store's tables).

    ``cat``: the operator's policy (the config's ``[cat]``; module docstring); None keeps
    ``policy``'s own min_bits, reserved ways, overlap, hysteresis and guarantees, every VM
    at priority 1. ``policy``: the model constants (and, without ``cat``, the policy);
    default `Policy()`. Only domains seen with occupancy samples in the host's latest
    collection are planned; the others keep their masks (and the COS they hold).
    ``bandwidth``: the sockets' memory bandwidth (module docstring); None: no latency feedback.
    ``traffic``: the sockets' memory traffic measured outside xl (``[report] memory_traffic``):
    what sizes the relative curves of a CPU without MBM; without it such a socket is declined.
    """
    base = policy or Policy()
    samples, facts = history["samples"], history["facts"]
    settings = history.get("settings", pd.DataFrame(columns=["time", "host"]))
    domains = history.get("domains")
    if hosts:
        samples, facts = samples[samples["host"].isin(hosts)], facts[facts["host"].isin(hosts)]
        settings = settings[settings["host"].isin(hosts)]
    fits = fit_all(samples, facts, settings) if len(samples) else {}
    vcpus = _vcpus(domains)
    busy = busy_fractions(domains)
    plans: list[planning.CatPlan] = []
    declined: list[dict[str, Any]] = []

    def decline(host: str, socket: int, reason: str) -> None:
        declined.append({"host": host, "socket": socket, "reason": reason})

    for (host, socket), sf in sorted(socket_facts(facts).items()):
        if sf.cbm_len is None or sf.l3_bytes is None:
            decline(host, socket, "no L3 CAT facts (psr-hwinfo shows no L3 CAT, or CMT is off)")
            continue
        rules = cat.for_host(host) if cat is not None else None
        pol = base if rules is None else replace(
            base, min_bits=rules.min_bits, reserved_ways=rules.reserved_ways, overlap=rules.overlap,
            hysteresis=rules.hysteresis, max_slowdown=rules.max_slowdown, min_mib=rules.min_mib())
        W, wb = sf.cbm_len, sf.l3_bytes / sf.cbm_len
        if rules is not None and rules.dom0_ways > 0:
            dom0 = max(rules.dom0_ways * wb / MIB, pol.min_mib.get(DOM0_NAME, 0.0))
            pol = replace(pol, min_mib={**pol.min_mib, DOM0_NAME: dom0})
        why = _policy_misfit(pol, W, wb)
        if why:
            decline(host, socket, why)
            continue
        latest_t = settings.loc[settings["host"] == host, "time"].max() if len(settings) else None
        current, names = socket_settings(
            settings[(settings["host"] == host) & (settings["time"] == latest_t)], host, socket)
        left = left_level(current, W)
        if left is not None:     # today's masks are a killed sweep's, not a baseline to plan from
            decline(host, socket, left_message(*left, names, len(current) - 1, W))
            continue
        on_socket = samples[(samples["host"] == host) & (samples["socket"] == socket)]
        if on_socket.empty:
            decline(host, socket, "no occupancy samples on this socket")
            continue
        last = on_socket[on_socket["time"] == on_socket["time"].max()]
        domids = sorted(set(int(d) for d in last["domid"]) & set(current))
        items = [VmInput(d, str(names.get(d, d)), _priority(rules, str(names.get(d, d))),
                         fits[(host, socket, d)], vcpus.get((host, d), DEFAULT_VCPUS),
                         busy.get((host, d), 1.0))
                 for d in domids if (host, socket, d) in fits]
        if len(items) < 2:
            no_bw = not on_socket["metric"].isin(["mem_bw_total"]).any()
            decline(host, socket, "no memory-bandwidth samples (no MBM on this CPU, or not collected): "
                                  "curves come from occupancy shares only once a calibration sweep has "
                                  "varied the pools (rdtadvisor calibrate)" if no_bw else
                    "fewer than two monitored domains with a mask and a fitted curve to plan")
            continue
        planned = {v.domid for v in items}
        unplanned = {d: m for d, m in current.items() if d not in planned}
        # the strategy models one mask per VM: under CDP, the data half (what occupancy mostly is)
        now = {v.domid: cbmlib.normalise(current[v.domid])[1] for v in items}
        held = cbmlib.cos_needed(unplanned.values(), W)
        budget = (sf.cos_max if sf.cos_max is not None else 1) - held
        why = _guarantee_misfit(pol, items, names, unplanned, W, wb, budget)
        if why:
            decline(host, socket, why)
            continue
        pol, feedback = _with_bandwidth(pol, items, bandwidth.of(host) if bandwidth else None)
        if traffic is not None and traffic.of(host):
            pol = replace(pol, traffic=traffic.of(host))
        advice = plan_socket(sf, items, now, cos_budget=budget, policy=pol)
        notes: list[str] = [feedback] if feedback else []
        if advice.declined:
            decline(host, socket, advice.declined + (f"; {feedback}" if feedback else ""))
            continue
        broken = _shared_guarantees(advice, pol, wb)
        if broken:     # the strategy keeps guaranteed runs private; this guards the contract
            decline(host, socket, f"no layout found that keeps the guaranteed run of {', '.join(broken)} "
                                  "private")
            continue
        if held:
            notes.append(f"{held} COS held by domains not planned (no curve): {_who(unplanned, names, W)} "
                         "keep their masks")
        notes += _unplanned_overlaps(advice, pol, unplanned, names)
        if sf.cdp:
            notes.append(CDP_NOTE)
        if any(v.fit.relative for v in items):
            notes.append(NO_MBM_NOTE)
        version = xen_version_of(facts, host) or (4, 22)
        changed: dict[int, cbmlib.Mask] = {v.domid: (v.mask, v.mask) if sf.cdp else v.mask
                                           for v in advice.vms}
        predicted = {
            "weighted_speedup": round(advice.predicted_gain, 4),
            "per_vm": [{"domid": v.domid, "name": v.name, "kind": v.kind,
                        "speed_change": round(v.speed_change, 4)} for v in advice.vms],
            "uncertainty": [round(advice.uncertainty[0], 4), round(advice.uncertainty[1], 4)],
            "confidence": round(advice.confidence, 3),
            **({"notes": notes} if notes else {}),
        }
        reasons = {v.domid: _reason(v.reason, v.name, rules, pol, sf) for v in advice.vms}
        try:
            plans.append(planning.cat_plan(
                host, socket, version, current, changed, cdp=sf.cdp, cbm_len=W, cos_budget=budget + held,
                l3_bytes=sf.l3_bytes, names=names, reasons=reasons, predicted=predicted,
                min_bits=pol.min_bits))
        except PlanError as e:
            decline(host, socket, f"the advised masks cannot be reached with xl: {e}")
    return CatAdvice(tuple(plans), tuple(declined))


def _with_bandwidth(pol: Policy, items: Sequence[VmInput],
                    capacity: float | None) -> tuple[Policy, str | None]:
    """``pol`` with the socket's bandwidth ``capacity`` [B/s] when the MBM figures are plausible
    against it, else unchanged and the note saying why latency feedback is off."""
    if not capacity:
        return pol, None
    used = sum(v.fit.median_bandwidth for v in items if not v.fit.relative)   # relative: no MBM to check
    if used > MBM_PLAUSIBLE * capacity:
        return pol, (f"latency feedback off: the VMs' median MBM bandwidths add up to {used / capacity:.0%} "
                     f"of the configured {capacity / 1e9:.1f} GB/s per socket, more than a bus carries "
                     "(MBM erratum on Skylake-SP/Cascade Lake high RMIDs, or the capacity is set too low)")
    return replace(pol, bw_capacity=float(capacity)), None


def _vcpus(domains: pd.DataFrame | None) -> dict[tuple[str, int], int]:
    """(host, domid) -> vCPUs in the host's latest ``xl list`` (the ``domains`` table)."""
    if domains is None or not len(domains) or "vcpus" not in domains:
        return {}
    d = domains[domains["vcpus"].notna()]
    d = d[d["time"] == d.groupby("host")["time"].transform("max")]
    return {(str(h), int(i)): max(int(v), 1)
            for h, i, v in zip(d["host"], d["domid"], d["vcpus"], strict=True)}


def _priority(rules: CatSettings | None, name: str) -> float:
    return 1.0 if rules is None else rules.priority_of(name)


def _ways_for(mib: float, wb: float, min_bits: int) -> int:
    """Ways a guarantee of ``mib`` needs, as the strategy counts them."""
    return max(min_bits, ceil(mib * MIB / wb - 1e-9))


def _mib(nbytes: float) -> str:
    return f"{nbytes / MIB:.4g} MiB"


def _policy_misfit(pol: Policy, W: int, wb: float) -> str | None:
    """Why the policy alone cannot be met on a W-way socket, or None."""
    if pol.reserved_ways >= W:
        return (f"reserved_ways = {pol.reserved_ways} leaves no way of the {W}-way CBM for any mask "
                "(policy [cat])")
    if pol.min_bits > W - pol.reserved_ways:
        return (f"min_bits = {pol.min_bits} is more than the {W - pol.reserved_ways} way(s) left after "
                f"{pol.reserved_ways} reserved (policy [cat])")
    return None


def _guarantee_misfit(pol: Policy, items: Sequence[VmInput], names: Mapping[int, str],
                      unplanned: Mapping[int, cbmlib.Mask], W: int, wb: float, budget: int) -> str | None:
    """Why the guarantees cannot be met on this socket (naming the VMs, MiB asked vs available), or None."""
    planned = {v.name for v in items}
    missing = sorted({names[d] for d in unplanned if names.get(d) in pol.min_mib} - planned)
    if missing:
        return (f"guaranteed VM(s) {', '.join(f'{n} ({pol.min_mib[n]:g} MiB)' for n in missing)} cannot be "
                "planned: no occupancy samples or no fitted curve in the latest collection "
                "(is it attached for monitoring? rdtadvisor attach)")
    if budget < 1:
        return "no COS left for a plan: domains that are not planned hold all of them"
    g = [v for v in items if pol.min_mib.get(v.name, 0.0) > 0]
    if not g:
        return None
    avail = W - pol.reserved_ways
    ways = {v.name: _ways_for(pol.min_mib[v.name], wb, pol.min_bits) for v in g}
    others = pol.min_bits if len(g) < len(items) else 0
    need = sum(ways.values()) + others
    if need > avail:
        asked = ", ".join(f"{n} {pol.min_mib[n]:g} MiB ({w} way{'s' * (w != 1)})" for n, w in ways.items())
        rest = f" + {others} way(s) for the other VMs (min_bits)" if others else ""
        return (f"the guarantees do not fit: {asked}{rest} = {need} ways ({_mib(need * wb)}) asked, "
                f"{avail} ways ({_mib(avail * wb)}) available ({W} ways of {_mib(wb)}, "
                f"{pol.reserved_ways} reserved)")
    cos = len(g) + (1 if others else 0)
    if cos > budget:
        return (f"the guarantees do not fit the COS budget: {', '.join(ways)} each need a COS of "
                f"their own{' and the other VMs one more' if others else ''} ({cos}), {budget} available")
    return None


def _shared_guarantees(advice: SocketAdvice, pol: Policy, wb: float) -> list[str]:
    """Guaranteed VMs of a plan whose private ways (not in any other planned VM's mask) are too few."""
    out = []
    for v in advice.vms:
        mib = pol.min_mib.get(v.name, 0.0)
        if mib <= 0:
            continue
        others = 0
        for o in advice.vms:
            if o.domid != v.domid:
                others |= o.mask
        if cbmlib.ways_of(v.mask & ~others) < _ways_for(mib, wb, pol.min_bits):
            out.append(v.name)
    return out


def _unplanned_overlaps(advice: SocketAdvice, pol: Policy, unplanned: Mapping[int, cbmlib.Mask],
                        names: Mapping[int, str]) -> list[str]:
    """Notes for the domains not planned whose masks overlap a guaranteed VM's run."""
    runs = [v for v in advice.vms if pol.min_mib.get(v.name, 0.0) > 0]
    out = []
    for d, m in sorted(unplanned.items()):
        code, data = cbmlib.normalise(m)
        hit = [v.name for v in runs if (code | data) & v.mask]
        if hit:
            out.append(f"{names.get(d, d)} (domid {d}, not planned: no curve) keeps "
                       f"{_show(code, data)}, which overlaps the guaranteed run of "
                       f"{', '.join(hit)}")
    return out


def _show(code: int, data: int) -> str:
    return hex(data) if code == data else f"code {code:#x}/data {data:#x}"


def _who(unplanned: Mapping[int, cbmlib.Mask], names: Mapping[int, str], W: int) -> str:
    full = cbmlib.full(W)
    return ", ".join(f"{names.get(d, d)} (domid {d})" for d, m in sorted(unplanned.items())
                     if cbmlib.normalise(m) != (full, full))


def _reason(reason: str, name: str, rules: CatSettings | None, pol: Policy,
            sf: SocketFacts) -> str:
    """The strategy's reason, plus the policy behind it (guarantee, tier or priority) and CDP."""
    extra: list[str] = []
    mib = pol.min_mib.get(name, 0.0)
    if mib > 0:
        dom0_ways = rules.dom0_ways if rules is not None and name == DOM0_NAME else 0
        extra.append(f"guaranteed {mib:.4g} MiB" + (f" (dom0_ways = {dom0_ways})" if dom0_ways else ""))
    if rules is not None and name in rules.vms:
        vm = rules.vms[name]
        if vm.tier is not None:
            extra.append(f"tier {vm.tier} (priority {rules.priority_of(name):g})")
        elif vm.priority is not None:
            extra.append(f"priority {vm.priority:g}")
    if sf.cdp:
        extra.append(CDP_NOTE)
    return "; ".join([reason, *extra])
