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

``{"migrations": [{"name", "domid", "from", "to", "reason", "priority", "memory_bytes",
"command"}], "hosts": {"<host>": {"before": {...}, "after": {...}}}, "unresolved": [...],
"solver": {"method", "seconds", "gap", "lower_bound", "optimal"}, "commands": [...]}``:
per host, ``before``/``after`` give each dimension's load and its share of the limit
(``l3_bytes``, ``l3_share``, ``bandwidth_bytes_s``, ``bandwidth_share``, ``memory_bytes``,
``memory_share``, ``vcpus``, ``vcpus_share``; shares against the policy's thresholds, null
when the capacity is unknown; ``l3_socket0_share`` etc. per socket). The CLI adds
``predicted`` per host (``before``/``after`` occupancy and bandwidth from the what-if engine's
fitted miss curves, `rdtadvisor.advise.whatif`) where the history allows. ``commands`` are ``xl
migrate`` lines, one per migration, to run on the source host, every argument quoted with
`shlex.join`.
"""

from __future__ import annotations

import shlex
from typing import Any

import numpy as np

from rdtadvisor.advise.placement.fleet import DIMENSIONS, REASON_OF_DIMENSION, Arrays, Fleet, loads
from rdtadvisor.advise.placement.solve import Solution
from rdtadvisor.core.text import printable

_UNITS = {"l3": "l3_bytes", "bandwidth": "bandwidth_bytes_s", "memory": "memory_bytes", "vcpus": "vcpus"}


def recommendations(fleet: Fleet, a: Arrays, sol: Solution) -> dict[str, Any]:
    """The plan's JSON dict (see the module docstring)."""
    n_hosts = len(fleet.hosts)
    before = loads(a.demand, a.current, n_hosts)
    after = loads(a.demand, sol.assignment, n_hosts)
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
        argv = ["xl", "migrate", vm.name, fleet.hosts[dst].name]
        migrations.append(
            {
                "name": vm.name,
                "domid": vm.domid,
                "from": fleet.hosts[src].name,
                "to": fleet.hosts[dst].name,
                "reason": reason,
                "priority": priority,
                "memory_bytes": int(vm.memory_bytes),
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
        }
        for h in touched
    }
    return {
        "migrations": migrations,
        "hosts": hosts,
        "unresolved": [fleet.hosts[h].name for h in sol.unresolved],
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


def script(plan: dict[str, Any]) -> str:
    """A reviewable POSIX script of the migrations, grouped by source host (run each part there)."""
    lines = [
        "#!/bin/sh",
        "# rdtadvisor placement plan: live-migrate these VMs (xl migrate runs on the source",
        "# host, as root). Review first; each line is one migration, highest priority first.",
        "set -eu",
        "",
    ]
    by_source: dict[str, list[dict[str, Any]]] = {}
    for m in plan["migrations"]:
        by_source.setdefault(m["from"], []).append(m)
    for src, ms in sorted(by_source.items()):
        lines.append(f"# --- on {_comment(src)} ---")
        for m in ms:
            lines.append(
                f"# priority {m['priority']}, {m['reason']}: {_comment(m['name'])} -> {_comment(m['to'])}"
            )
            lines.append(m["command"])
        lines.append("")
    if plan["unresolved"]:
        lines.append(
            "# still over their limits after this plan: " + ", ".join(_comment(h) for h in plan["unresolved"])
        )
    return "\n".join(lines) + "\n"


def _comment(text: str) -> str:
    """A name inside a # comment: no newline or control character may end the comment."""
    return printable(text)
