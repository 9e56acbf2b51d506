"""``rdtadvisor headroom``: how many more VMs like one you know fit on each host.

    rdtadvisor headroom --profile db-orders               # an existing VM's p95 (any host)
    rdtadvisor headroom --profile xen01:db-orders         # ... that VM on that host
    rdtadvisor headroom --occupancy 8MiB --bandwidth 2GiB/s --format json

The rule and its caveats are in `rdtadvisor.model.headroom`; thresholds come from the
config's ``[report]`` table (l3_threshold 0.9, bandwidth_threshold 0.8 by default).
Exit status (docs/exit-codes.md): 0, 2 for a usage or config error, 3 for a data error.
"""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

from rdtadvisor.cli.context import settings_of
from rdtadvisor.cli.exits import DataError
from rdtadvisor.cli.output import dump_json, text_table
from rdtadvisor.cli.report import load_usage, usage_error, window_options, write_output
from rdtadvisor.core.text import printable_lines
from rdtadvisor.core.units import format_bytes, parse_size
from rdtadvisor.model.headroom import Profile, host_headroom, socket_headroom
from rdtadvisor.model.usage import Usage


@click.command("headroom")
@window_options
@click.option("--profile", default=None, help="An existing VM (NAME or HOST:NAME) whose p95 is the profile.")
@click.option("--occupancy", default=None, help="L3 occupancy of one more VM, e.g. 8MiB.")
@click.option("--bandwidth", default=None, help="Memory bandwidth of one more VM, e.g. 2GiB/s.")
@click.option("--memory", default=None, help="With --fleet: memory of one more VM, e.g. 8GiB.")
@click.option("--vcpus", type=int, default=None, help="With --fleet: vCPUs of one more VM.")
@click.option(
    "--fleet",
    "fleet_mode",
    is_flag=True,
    help="Count by every placement limit (L3 need, bandwidth, memory, vCPUs; [placement] config).",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.pass_context
def command(
    ctx: click.Context,
    hosts: tuple[str, ...],
    since: str,
    until: str | None,
    hours: str | None,
    profile: str | None,
    occupancy: str | None,
    bandwidth: str | None,
    memory: str | None,
    vcpus: int | None,
    fleet_mode: bool,
    fmt: str,
    output: Path | None,
) -> int:
    """How many more VMs of a profile fit per socket and host before L3 or bandwidth passes its threshold."""
    if (profile is None) == (occupancy is None and bandwidth is None):
        raise usage_error("give either --profile VM or --occupancy/--bandwidth")
    settings = settings_of(ctx)
    u, tables = load_usage(settings, hosts, since, until, hours)
    if fleet_mode:
        write_output(_fleet(u, tables, settings, profile, occupancy, bandwidth, memory, vcpus, fmt), output)
        return 0
    prof = _profile(u, profile) if profile else _explicit(occupancy, bandwidth)
    sockets = u.sockets.copy()
    # An observed peak is a floor, not a capacity: judging against it would always say "full".
    sockets.loc[sockets["bw_capacity_source"] != "config", "bw_capacity_bytes_s"] = float("nan")
    per_socket = socket_headroom(
        sockets.rename(
            columns={"occupancy_bytes_p95": "occupancy_p95", "bw_total_bytes_s_p95": "bandwidth_p95"}
        ),
        prof,
        l3_threshold=settings.report.l3_threshold,
        bandwidth_threshold=settings.report.bandwidth_threshold,
    )
    per_host = host_headroom(per_socket)
    data = {
        "profile": {
            "name": prof.name,
            "occupancy_bytes": prof.occupancy_bytes,
            "bandwidth_bytes_s": prof.bandwidth_bytes_s,
        },
        "thresholds": {"l3": settings.report.l3_threshold, "bandwidth": settings.report.bandwidth_threshold},
        "hosts": [
            {
                "host": str(h["host"]),
                "fit": _int(h["fit"]),
                "limit": h["limit"],
                "sockets": [
                    {
                        "socket": int(s["socket"]),
                        "fit": _int(s["fit"]),
                        "fit_l3": _int(s["fit_l3"]),
                        "fit_bandwidth": _int(s["fit_bandwidth"]),
                        "limit": s["limit"],
                        "bandwidth_capacity_source": str(s["bw_capacity_source"]),
                    }
                    for s in per_socket[per_socket["host"] == h["host"]].to_dict("records")
                ],
            }
            for h in per_host.to_dict("records")
        ],
    }
    data["fleet_fit"] = sum(h["fit"] or 0 for h in data["hosts"])
    if fmt == "json":
        text = dump_json(data)
    else:
        rows = [
            {
                "host": h["host"],
                "socket": s["socket"],
                "fits": s["fit"],
                "by L3": s["fit_l3"],
                "by bandwidth": s["fit_bandwidth"],
                "limit": s["limit"],
                "capacity": s["bandwidth_capacity_source"],
            }
            for h in data["hosts"]
            for s in h["sockets"]
        ]
        text = printable_lines(
            f"Profile {prof.name}: {format_bytes(prof.occupancy_bytes)} L3, "
            f"{format_bytes(prof.bandwidth_bytes_s, rate=True)} memory bandwidth; thresholds L3 "
            f"{settings.report.l3_threshold:.0%}, bandwidth {settings.report.bandwidth_threshold:.0%}\n"
            + text_table(rows)
            + "".join(
                f"{h['host']}: {h['fit'] if h['fit'] is not None else '?'} more ({h['limit']})\n"
                for h in data["hosts"]
            )
            + f"fleet: {data['fleet_fit']} more\n"
        )
    write_output(text, output)
    return 0


def _profile(u: Usage, spec: str) -> Profile:
    host, _, name = spec.rpartition(":")
    vm = u.vm[(u.vm["domain"] == name) & ((u.vm["host"] == host) if host else True)]
    if vm.empty:
        raise DataError(f"no VM {spec!r} in the window's history")
    if vm["host"].nunique() > 1:
        raise DataError(
            f"VM {name!r} is on several hosts ({', '.join(sorted(vm['host'].astype(str)))}): "
            "say which with HOST:NAME"
        )
    row = vm.iloc[0]
    occ, bw = row["occupancy_bytes_p95"], row["bw_total_bytes_s_p95"]
    return Profile(
        occupancy_bytes=0.0 if pd.isna(occ) else float(occ),
        bandwidth_bytes_s=0.0 if pd.isna(bw) else float(bw),
        name=f"{row['host']}:{name} (p95)",
    )


def _fleet(
    u: Usage,
    tables: dict,
    settings,
    profile: str | None,
    occupancy: str | None,
    bandwidth: str | None,
    memory: str | None,
    vcpus: int | None,
    fmt: str,
) -> str:
    """``--fleet``: the placement model's limits, per host and for the fleet."""
    import numpy as np

    from rdtadvisor.advise.placement.fleet import Policy
    from rdtadvisor.advise.placement.headroom import fleet_headroom
    from rdtadvisor.advise.placement.inputs import fleet_from_usage

    fleet = fleet_from_usage(u, tables["facts"], settings.placement)
    if profile:
        host, _, name = profile.rpartition(":")
        match = [v for v in fleet.vms if v.name == name and (not host or v.host == host)]
        if len(match) != 1:
            raise DataError(f"no single VM {profile!r} in the window's history (use HOST:NAME)")
        v = match[0]
        demand = np.array([v.occupancy_bytes, v.bandwidth_bytes_s, v.memory_bytes, v.vcpus], dtype=float)
        label = f"{v.host}:{v.name} (p95 L3 need and bandwidth, its memory and vCPUs)"
    else:
        try:
            demand = np.array(
                [
                    parse_size(occupancy) if occupancy else 0.0,
                    parse_size(bandwidth) if bandwidth else 0.0,
                    parse_size(memory) if memory else 0.0,
                    float(vcpus or 0),
                ]
            )
        except ValueError as e:
            raise usage_error(str(e)) from None
        label = "given"
    p, r = settings.placement, settings.report
    policy = Policy(
        l3_threshold=r.l3_threshold,
        bandwidth_threshold=r.bandwidth_threshold,
        vcpu_overcommit=p.vcpu_overcommit,
        memory_headroom=p.memory_headroom,
    )
    rows = fleet_headroom(fleet, policy, demand)
    data = {
        "profile": {
            "name": label,
            "l3_bytes": demand[0],
            "bandwidth_bytes_s": demand[1],
            "memory_bytes": demand[2],
            "vcpus": int(demand[3]),
        },
        "hosts": rows,
        "fleet_fit": sum(r["fit"] or 0 for r in rows),
        "notes": fleet.notes,
    }
    if fmt == "json":
        return dump_json(data)
    return printable_lines(
        f"Profile {label}\n"
        + text_table(rows)
        + f"fleet: {data['fleet_fit']} more\n"
        + "".join(f"note: {n}\n" for n in fleet.notes)
    )


def _explicit(occupancy: str | None, bandwidth: str | None) -> Profile:
    try:
        occ = parse_size(occupancy) if occupancy else 0.0
        bw = parse_size(bandwidth) if bandwidth else 0.0
    except ValueError as e:
        raise usage_error(str(e)) from None
    if occ <= 0 and bw <= 0:
        raise usage_error("--occupancy and --bandwidth cannot both be zero")
    return Profile(occupancy_bytes=occ, bandwidth_bytes_s=bw, name="given")


def _int(x: object) -> int | None:
    return None if x is None or pd.isna(x) else int(x)
