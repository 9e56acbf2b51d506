"""A solved placement as recommendations operators know from VMware DRS, and the JSON contract.

Each migration gets a reason code and a priority:

=========================  ======================================================  ==========
reason                     when                                                    priority
=========================  ======================================================  ==========
``maintenance``            its host is being evacuated (``--evacuate``)            1
``affinity``               it shares its host with a member of its group           1
``noisy-neighbour``        it is an aggressor on its host (usage model)            2-5
``l3-pressure``            its host's worst excess is L3 occupancy                 2-5
``bandwidth-saturation``   ... memory bandwidth                                    2-5
``memory`` / ``vcpus``     ... memory or vCPU overcommit                           2-5
=========================  ======================================================  ==========

The load-driven reason is the limit the VM relieves most (l3-pressure for a VM holding the hot
socket's cache, bandwidth-saturation for one streaming there); its priority follows the
source's excess over that limit:
>= 25% -> 2, >= 10% -> 3, >= 5% -> 4, else 5 (DRS: 1 mandatory ... 5 slight gain).

``{"migrations": [{"name", "domid", "from", "to", "target", "reason", "priority",
"memory_bytes", "from_socket", "to_socket", "to_sockets", "command"}], "hosts": {"<host>":
{"before": {...}, "after": {...}, "hostname"}}, "unresolved": [...], "unresolved_reasons":
{"<host>": "..."}, "solver": {"method", "seconds", "gap", "lower_bound", "optimal"},
"commands": [...], "notes": [...]}``:
per host, ``before``/``after`` give each dimension's load and its share of the limit
(``l3_bytes``, ``l3_share``, ``bandwidth_bytes_s``, ``bandwidth_share``, ``memory_bytes``,
``memory_share``, ``vcpus``, ``vcpus_share``; shares against the policy's thresholds, null
when the capacity is unknown; ``l3_socket0_share`` etc. per socket). The CLI adds
``predicted`` per host (``before``/``after`` occupancy and bandwidth from the what-if engine's
fitted miss curves, `rdtadvisor.advise.whatif`) where the history allows. ``target`` is what
the source reaches the destination by (its configured address, else its name). ``from_socket``
is the socket (NUMA node) the VM runs on now, ``to_socket`` the one libxl's placement would
give it on the destination (``to_sockets`` is ``"spread"`` when no single node has room; both
null on single-socket hosts). ``commands`` are ``xl migrate -- DOMID TARGET`` lines, one per
migration, to run on the source host (`migrate_argv`), every argument quoted with
`shlex.join`; ``hostname`` is what ``xl info`` calls the host, which its script checks.
"""

from __future__ import annotations

import shlex
from typing import Any

import numpy as np

from rdtadvisor.advise.placement.fleet import (
    DIMENSIONS,
    REASON_OF_DIMENSION,
    Arrays,
    Fleet,
    loads,
    loads_after,
)
from rdtadvisor.advise.placement.solve import Solution
from rdtadvisor.core.hostnames import check_host
from rdtadvisor.core.text import printable

_UNITS = {"l3": "l3_bytes", "bandwidth": "bandwidth_bytes_s", "memory": "memory_bytes", "vcpus": "vcpus"}


def migrate_argv(domid: int | None, name: str, target: str) -> list[str]:
    """``xl migrate -- DOMAIN TARGET``: the domain by id when known (a name may start with
    ``-``), ``--`` so nothing after it is taken for an option (xl's getopt honours it)."""
    return ["xl", "migrate", "--", str(domid) if domid is not None else name, target]


def recommendations(fleet: Fleet, a: Arrays, sol: Solution) -> dict[str, Any]:
    """The plan's JSON dict (see the module docstring).

    Raises ConfigError before building anything when a host name or address that a command
    would carry is not a host name or IP address (`rdtadvisor.core.hostnames`): xl pastes
    the target into a ``sh -c`` command line on the source host.
    """
    for h in fleet.hosts:
        check_host(h.name, "placement host")
        if h.address is not None:
            check_host(h.address, f"placement host {h.name} address")
    n_hosts = len(fleet.hosts)
    before = loads(a.demand, a.current, n_hosts)
    after = loads_after(a, sol.assignment)
    with np.errstate(divide="ignore", invalid="ignore"):
        excess = np.where(np.isfinite(a.capacity) & (a.capacity > 0), before / a.capacity - 1, 0.0)
    group_clash = np.zeros(len(fleet.vms), dtype=bool)
    for g in a.groups:
        counts = np.bincount(a.current[g], minlength=n_hosts)
        group_clash[g] = counts[a.current[g]] > 1
    migrations = []
    for v in np.flatnonzero(sol.assignment != a.current):
        vm = fleet.vms[v]
        src, dst = int(a.current[v]), int(sol.assignment[v])
        # the limit this VM relieves most (share of the excess it takes away), else the worst one
        with np.errstate(divide="ignore", invalid="ignore"):
            over = np.clip(excess[src], 0, None)
            relief = np.nan_to_num(np.minimum(a.demand[v] / a.capacity[src], over), nan=0.0)
        worst = int(np.argmax(relief)) if relief.max() > 0 else int(np.argmax(excess[src]))
        if fleet.hosts[src].maintenance:
            reason, priority = "maintenance", 1
        elif group_clash[v]:
            reason, priority = "affinity", 1
        else:
            dim = a.dims[worst].split("@")[0]  # l3@socket1 -> l3
            reason = "noisy-neighbour" if vm.aggressor else REASON_OF_DIMENSION[dim]
            x = float(excess[src, worst])
            priority = 2 if x >= 0.25 else 3 if x >= 0.10 else 4 if x >= 0.05 else 5
        target = fleet.hosts[dst].address or fleet.hosts[dst].name
        argv = migrate_argv(vm.domid, vm.name, target)
        land = int(a.landing[v, dst]) if a.landing is not None and a.n_sockets[dst] else None
        migrations.append(
            {
                "name": vm.name,
                "domid": vm.domid,
                "from": fleet.hosts[src].name,
                "to": fleet.hosts[dst].name,
                "target": target,
                "reason": reason,
                "priority": priority,
                "memory_bytes": int(vm.memory_bytes),
                # the NUMA node (socket index) it runs on now, and where libxl would put it
                "from_socket": vm.home if len(fleet.hosts[src].sockets) else None,
                "to_socket": None if land is None or land < 0 else land,
                "to_sockets": "spread" if land is not None and land < 0 else None,
                "command": shlex.join(argv),
            }
        )
    migrations.sort(key=lambda m: (m["priority"], m["from"], m["name"]))
    touched = sorted(
        {m["from"] for m in migrations}
        | {m["to"] for m in migrations}
        | {fleet.hosts[h].name for h in sol.sources}
    )
    hidx = fleet.host_index()
    hosts = {
        h: {
            "before": _figures(before[hidx[h]], a.capacity[hidx[h]], a.dims),
            "after": _figures(after[hidx[h]], a.capacity[hidx[h]], a.dims),
            "hostname": fleet.hosts[hidx[h]].hostname,
        }
        for h in touched
    }
    return {
        "migrations": migrations,
        "hosts": hosts,
        "unresolved": [fleet.hosts[h].name for h in sol.unresolved],
        "unresolved_reasons": {fleet.hosts[h].name: why_unresolved(fleet, a, sol, int(h), after[h])
                               for h in sol.unresolved},
        "solver": {
            "method": sol.method,
            "seconds": round(sol.seconds, 3),
            "gap": None if sol.gap is None else round(sol.gap, 4),
            "lower_bound": sol.lower_bound,
            "optimal": sol.optimal,
        },
        "commands": [m["command"] for m in migrations],
        "notes": list(fleet.notes),
    }


def why_unresolved(fleet: Fleet, a: Arrays, sol: Solution, h: int, load: np.ndarray) -> str:
    """One line: what keeps host `h` over its limits after the plan (`load`: its load then)."""
    limit = sol.limit[h] if sol.limit is not None else a.capacity[h]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = load / a.capacity[h]
    over = [d for d in range(len(a.dims)) if load[d] > limit[d] * (1 + 1e-9) + 1e-6]
    what = ", ".join(f"{a.dims[d].replace('@', ' ')} {share[d]:.0%}" for d in over if np.isfinite(share[d]))
    head = f"over its limits ({what})" if what else "over its limits"
    if sol.stuck is not None and sol.stuck[h]:
        return f"{head}: its pinned VMs and Domain-0 alone exceed them"
    still = np.flatnonzero((sol.assignment == h) & a.movable)
    if a.maintenance[h]:
        nowhere = [int(v) for v in still if not _may_go_anywhere(a, int(v))]
        rest = [int(v) for v in still if int(v) not in nowhere]
        parts = []
        if nowhere:
            parts.append(", ".join(printable(fleet.vms[v].name) for v in nowhere[:5])
                         + " may run on no other host (pools, anti-affinity, or its name runs there)")
        if rest:
            parts.append("no other host has room for " + ", ".join(printable(fleet.vms[v].name)
                                                                   for v in rest[:5]))
        return "being emptied, but " + "; ".join(parts)
    if not len(still):
        return head
    blocked = [int(v) for v in still if not _may_go_anywhere(a, int(v))]
    free = [int(v) for v in still if int(v) not in blocked]
    stuck_names = ", ".join(printable(fleet.vms[v].name) for v in blocked[:5])
    if not free:
        return f"{head}: none of its VMs may run elsewhere ({stuck_names}: pools, anti-affinity, names)"
    movable_load = a.demand[free].sum(axis=0)
    if any(load[d] - movable_load[d] > limit[d] * (1 + 1e-9) + 1e-6 for d in over):
        return (f"{head}: what would have to leave may run nowhere else ({stuck_names}: pools, "
                "anti-affinity, names); moving the others would not fix it")
    # the VMs that would relieve it most, by the dimension furthest over
    worst = max(over, key=lambda d: share[d] if np.isfinite(share[d]) else 0.0) if over else 0
    big = sorted(free, key=lambda v: -a.demand[v, worst])[:3]
    who = ", ".join(printable(fleet.vms[v].name) for v in big)
    return f"{head}: no other host has room for what would relieve it ({who})"


def _may_go_anywhere(a: Arrays, v: int) -> bool:
    """Whether some host other than its own may take VM `v` at all (load aside)."""
    ok = np.ones(len(a.maintenance), dtype=bool) if a.allowed is None else a.allowed[v].copy()
    ok &= ~a.maintenance
    ok[a.current[v]] = False
    for g in a.groups:
        if v in g:
            mates = g[g != v]
            ok[a.current[mates]] = False
    return bool(ok.any())


def _figures(load: np.ndarray, cap: np.ndarray, dims: tuple[str, ...] = DIMENSIONS) -> dict[str, Any]:
    """Pooled figures with their shares; per-socket shares as ``l3_socket0_share`` etc."""
    out: dict[str, Any] = {}
    for d, name in enumerate(dims):
        share = round(float(load[d] / cap[d]), 4) if np.isfinite(cap[d]) and cap[d] > 0 else None
        if "@" in name:
            if share is not None:
                out[f"{name.replace('@', '_')}_share"] = share
            continue
        out[_UNITS[name]] = round(float(load[d]), 1) if name != "vcpus" else int(load[d])
        out[f"{name}_share"] = share
    return out
