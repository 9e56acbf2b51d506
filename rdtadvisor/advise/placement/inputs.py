"""The placement problem from the usage model and the config.

Per host: L3 summed over its sockets (``psr-hwinfo``), memory bandwidth capacity summed over
its sockets only when the config gives it (an observed peak says nothing about how much more
a host can take), total memory and physical CPUs from ``xl info``. Per VM: its bandwidth p95
over the window summed over sockets (`Usage.vm`), memory and vCPUs from its latest ``xl
list`` row, whether it is a noisy-neighbour aggressor (`Usage.pairs`). Domain-0 never
migrates: it is pinned, its demand stays on its host.

A VM's **L3 need** is not its occupancy: a busy cache is always full, and a streaming VM holds
a big share precisely because it misses a lot. Per socket, by the usage model's class: a
cache-sensitive or light VM needs its p95 occupancy; a streaming VM one way (it gains nothing
from more: confined to one way by CAT it loses nothing); an idle VM nothing (its lines are
leftovers). Summed over sockets. L3 pressure is then the summed need against the L3.

**NUMA.** Each socket of a multi-socket host is taken as one NUMA node holding an equal share
of the host's memory (``xl info`` gives the total and the node count). A VM's home node is the
socket where it holds the most cache (its vCPUs run there, so its memory was placed there);
a VM holding none is taken as spread. Where a migrated VM lands is `fleet.numa_landing`.

A host whose sockets show occupancy but no bandwidth (no MBM, e.g. Haswell-EP) has no known
bandwidth load: bandwidth is not a constraint there, and the plan shows it as unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from rdtadvisor.advise.placement.fleet import Fleet, Host, Socket, Vm
from rdtadvisor.core.config import PlacementSettings
from rdtadvisor.model.capacity import latest_facts
from rdtadvisor.model.usage import Usage

DOM0 = "Domain-0"


def fleet_from_usage(
    u: Usage, facts: pd.DataFrame, settings: PlacementSettings, evacuate: Iterable[str] = (),
    addresses: Mapping[str, str] | None = None,
) -> Fleet:
    """A `Fleet` for the hosts and VMs of `u` (see the module docstring).

    `addresses`: what each host is reached by (the config's ``[[hosts]] address``), for the
    migrations' targets; a host without one is reached by its name.
    """
    notes: list[str] = []
    hostnames = _texts(facts, "hostname")
    leaving = set(settings.maintenance) | set(evacuate)
    host_facts = latest_facts(facts)
    hosts = []
    socket_ids: dict[str, list[int]] = {}
    for name, s in u.sockets.groupby("host", observed=True, sort=True):
        name = str(name)
        f = host_facts.get((name, None), {})
        configured = (s["bw_capacity_source"] == "config").all()
        mbm = bool((s["bw_total_bytes_s_n"].fillna(0) > 0).any()) if "bw_total_bytes_s_n" in s else True
        if not mbm:
            notes.append(f"{name}: no MBM (occupancy only): its bandwidth load is unknown, "
                         "so bandwidth is not a constraint there")
            configured = False
        elif not configured:
            notes.append(
                f"{name}: memory bandwidth capacity not configured ([report] bandwidth_capacity): "
                "bandwidth is not a constraint there"
            )
        if "total_memory_bytes" not in f or "nr_cpus" not in f:
            notes.append(f"{name}: no xl info figures (memory, CPUs): memory and vCPUs not constrained")
        order = s.sort_values("socket")
        node_memory = f.get("total_memory_bytes", np.inf) / max(len(order), 1)
        sockets = tuple(
            Socket(
                l3_bytes=float(r["l3_bytes"]) if pd.notna(r["l3_bytes"]) else np.inf,
                bandwidth_bytes_s=float(r["bw_capacity_bytes_s"])
                if configured and r["bw_capacity_source"] == "config"
                else None,
                memory_bytes=node_memory,
            )
            for r in order.to_dict("records")
        )
        socket_ids[name] = [int(x) for x in order["socket"]]
        hosts.append(
            Host(
                name=name,
                l3_bytes=float(np.nansum(s["l3_bytes"])) if s["l3_bytes"].notna().any() else np.inf,
                bandwidth_bytes_s=float(s["bw_capacity_bytes_s"].sum()) if configured else None,
                memory_bytes=f.get("total_memory_bytes", np.inf),
                cpus=int(f.get("nr_cpus", 1 << 30)),
                pool=settings.pools.get(name),
                maintenance=name in leaving,
                sockets=sockets if len(sockets) > 1 else (),
                free_ways=_free_ways(
                    u.masks, name, dict(zip(order["socket"], order["cbm_len"], strict=True))
                ),
                address=(addresses or {}).get(name),
                hostname=hostnames.get(name),
            )
        )
    unknown = leaving - {h.name for h in hosts}
    if unknown:
        notes.append(f"maintenance host(s) not in the window's history: {', '.join(sorted(unknown))}")
    aggressors = {(h, p.aggressor) for (h, _), pairs in u.pairs.items() for p in pairs}
    group_of = {name: f"group-{i}" for i, g in enumerate(settings.anti_affinity) for name in g}
    need = l3_need(u.vm_socket)
    per_socket = _per_socket(u.vm_socket)
    home = _home(u.vm_socket)
    vms = []
    for r in u.vm.to_dict("records"):
        name, host = str(r["domain"]), str(r["host"])
        occ, bw = need.get((host, name), np.nan), r["bw_total_bytes_s_p95"]
        vms.append(
            Vm(
                name=name,
                host=host,
                occupancy_bytes=0.0 if pd.isna(occ) else float(occ),
                bandwidth_bytes_s=0.0 if pd.isna(bw) else float(bw),
                memory_bytes=0.0 if pd.isna(r.get("memory_bytes")) else float(r["memory_bytes"]),
                vcpus=0 if pd.isna(r.get("vcpus")) else int(r["vcpus"]),
                domid=None if pd.isna(r.get("domid")) else int(r["domid"]),
                pinned=name in settings.pinned,
                priority=settings.priorities.get(name, 3),
                resident=name == DOM0,
                group=group_of.get(name),
                aggressor=(host, name) in aggressors,
                socket_demand=tuple(
                    per_socket.get((host, s, name), (0.0, 0.0)) for s in socket_ids.get(host, [])
                )
                if len(socket_ids.get(host, [])) > 1
                else (),
                home=socket_ids[host].index(home[(host, name)])
                if len(socket_ids.get(host, [])) > 1 and home.get((host, name)) in socket_ids[host]
                else None,
            )
        )
    return Fleet(hosts=hosts, vms=vms, notes=notes)


def _socket_need(vm_socket: pd.DataFrame) -> np.ndarray:
    """Each VM x socket row's L3 need [B] (see the module docstring)."""
    way = vm_socket["l3_bytes"] / vm_socket["cbm_len"].where(vm_socket["cbm_len"] > 0)
    occ = vm_socket["occupancy_bytes_p95"].fillna(0.0)
    return np.where(
        vm_socket["class"] == "idle",
        0.0,
        np.where(vm_socket["class"] == "streaming", np.minimum(occ, way.fillna(occ)), occ),
    )


def l3_need(vm_socket: pd.DataFrame) -> dict[tuple[str, str], float]:
    """(host, VM) -> its L3 need [B] summed over sockets (see the module docstring)."""
    if vm_socket.empty:
        return {}
    per_vm = pd.Series(
        _socket_need(vm_socket), index=pd.MultiIndex.from_frame(vm_socket[["host", "domain"]].astype(str))
    )
    return {k: float(v) for k, v in per_vm.groupby(level=[0, 1]).sum().items()}


def _per_socket(vm_socket: pd.DataFrame) -> dict[tuple[str, int, str], tuple[float, float]]:
    """(host, socket, VM) -> (L3 need [B], p95 bandwidth [B/s]) on that socket."""
    if vm_socket.empty:
        return {}
    need = _socket_need(vm_socket)
    bw = vm_socket["bw_total_bytes_s_p95"].fillna(0.0).to_numpy()
    return {
        (str(h), int(s), str(d)): (float(n), float(b))
        for h, s, d, n, b in zip(
            vm_socket["host"], vm_socket["socket"], vm_socket["domain"], need, bw, strict=True
        )
    }


def _texts(facts: pd.DataFrame, fact: str) -> dict[str, str]:
    """host -> the latest text of a host fact (``hostname``, ``xen_version``)."""
    if facts.empty or "text" not in facts:
        return {}
    f = facts[(facts["fact"] == fact) & facts["text"].notna()].sort_values("time", kind="stable")
    return {str(h): str(x) for h, x in zip(f["host"], f["text"], strict=True)}


def _home(vm_socket: pd.DataFrame) -> dict[tuple[str, str], int]:
    """(host, VM) -> the socket where it holds the most cache (none when it holds nothing)."""
    if vm_socket.empty:
        return {}
    occ = vm_socket[["host", "domain", "socket", "occupancy_bytes_p95"]].dropna()
    occ = occ[occ["occupancy_bytes_p95"] > 0]
    top = occ.sort_values(["occupancy_bytes_p95", "socket"], ascending=[False, True], kind="stable")
    top = top.drop_duplicates(["host", "domain"], keep="first")
    keys = zip(top["host"], top["domain"], top["socket"], strict=True)
    return {(str(h), str(d)): int(s) for h, d, s in keys}


def _free_ways(masks: pd.DataFrame, host: str, cbm_len: dict) -> float:
    """The smallest, over the host's sockets, longest run of ways no non-default L3 mask holds,
    as a share of the CBM length (1.0 when everything shares the default mask)."""
    shares = []
    for socket, n in cbm_len.items():
        if not n or pd.isna(n):
            continue
        n = int(n)
        full = (1 << n) - 1
        m = masks[(masks["host"] == host) & (masks["socket"] == socket)] if len(masks) else masks
        held = 0
        for col in ("l3_cbm", "l3_data_cbm"):
            if col in m:
                for v in m[col].dropna():
                    if int(v) != full:
                        held |= int(v)
        run = best = 0
        for bit in range(n):
            run = 0 if held >> bit & 1 else run + 1
            best = max(best, run)
        shares.append(best / n)
    return min(shares) if shares else 1.0
