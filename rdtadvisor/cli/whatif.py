"""``rdtadvisor whatif``: what a CAT plan or a migration plan is expected to change.

    rdtadvisor whatif --plan plan.json
    rdtadvisor whatif --plan plan.json --format json --since 7d

Reads the history store (read-only), estimates every VM's miss curve from it
(`rdtadvisor.model.curvefit`), and solves the sharing equilibrium today and under the plan
(`rdtadvisor.advise.whatif`).

JSON shape (stable; all sizes in bytes, rates per second, ``null`` when unknown)::

    {"plan": "<file>",
     "sockets": [{"host", "socket", "as_of", "l3_bytes", "ways", "bw_capacity_bytes_s",
                  "bw_capacity_source": "config" | "facts" | "observed-peak" | "unknown",
                  "converged", "converged_share",
                  "totals": {"occupancy_bytes": FIGURE, "bandwidth_bytes_s": FIGURE,
                             "bw_utilisation": {"now", "predicted"}},
                  "vms": [{"domid", "name", "moved": null | "in" | "out",
                           "mask": {"now": "0x7ff" | null, "predicted": "0x7f0" | null},
                           "occupancy_bytes": FIGURE, "misses_per_s": FIGURE, "bandwidth_bytes_s": FIGURE,
                           "fit": {"r_misses_per_s", "alpha", "ws_bytes", "floor", "points",
                                   "coverage_bytes": [p5, p95], "quality", "kind", "reason"}}]}],
     "hosts": {"<host>": {"before": HOST, "after": HOST}},
     "migrations": [{"name", "domid", "from", "to", "from_sockets", "to_socket"}],
     "lacking_history": [{"host", "socket", "domid", "name", "quality", "reason"}],
     "notes": ["..."]}

    FIGURE = {"observed", "now", "predicted", "low", "high", "change_pct"}
      observed: today's measurement (median of the latest collections); now: the model
      today; predicted: the model under the plan; low/high: 90% band; change_pct:
      predicted vs now, in %.
    HOST = {"occupancy_bytes", "l3_bytes", "bandwidth_bytes_s", "bw_capacity_bytes_s", "vms"}
      summed over the host's sockets the plan touches.
"""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

from rdtadvisor.advise.planfile import load_plan
from rdtadvisor.advise.whatif import Figure, Prediction, predict
from rdtadvisor.cli.context import bandwidth_capacity, check_config_names, memory_traffic, settings_of
from rdtadvisor.cli.options import WHEN
from rdtadvisor.cli.output import dump_json, echo_text, text_table
from rdtadvisor.model.curvefit import MIB
from rdtadvisor.store import Store


@click.command("whatif")
@click.option("--plan", "plan_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Plan file (JSON): a CAT plan {\"plans\": [...]} and/or {\"migrations\": [...]}.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format (json: the stable shape in `rdtadvisor.cli.whatif`).")
@click.option("--since", type=WHEN, default=None,
              help="Only history from this time: ISO 8601 or 7d, 24h before now (default: all).")
@click.pass_context
def command(ctx: click.Context, plan_path: Path, fmt: str, since: pd.Timestamp | None) -> None:
    """Predict per VM and per socket what a CAT or migration plan changes.

    Curves come from the stored history (occupancy vs bandwidth/64 per VM), with a 90%
    band; VMs whose history is too thin to predict well are listed under "lacking history".
    """
    plan = load_plan(plan_path)
    settings = settings_of(ctx)
    store = Store(settings.store, create=False)
    check_config_names(store, ctx)
    hosts = plan.hosts
    history = {t: store.read(t, hosts=hosts, since=since) for t in ("samples", "settings", "facts")}
    # the config's bandwidth capacity, as report and advise cat use it (else facts or the peak seen)
    known = bandwidth_capacity(settings)
    capacity = {h: c for h in hosts if (c := known.of(h))}
    measured = memory_traffic(settings)     # no MBM: what scales the relative curves
    traffic = {h: t for h in hosts if (t := measured.of(h))}
    result = predict(history, plan, bw_capacity=capacity, traffic=traffic)
    if fmt == "json":
        click.echo(dump_json(result.to_json()), nl=False)
    else:
        echo_text(render_text(result))


def _mib(x: float) -> str:
    return f"{x / MIB:.1f}"


def _rate(x: float) -> str:
    """Bytes/s as MB/s (10^6, as bandwidth is usually quoted) with adaptive precision."""
    v = x / 1e6
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def _pct(f: Figure) -> str:
    ch = f.change_pct
    if ch is None:
        return "-"
    if ch == float("inf"):
        return "new"
    return f"{ch:+.0f}%"


def render_text(p: Prediction) -> str:
    """Per host/socket: a table of VMs now -> predicted with the band, totals, then lacking history."""
    out: list[str] = []
    for s in p.sockets:
        cap = (f"{_rate(s.bw_capacity)} MB/s ({s.bw_capacity_source})" if s.bw_capacity else "unknown")
        out.append(f"{s.host} socket {s.socket}  (L3 {_mib(s.l3_bytes)} MiB, {s.ways} ways; bandwidth "
                   f"capacity {cap}; history up to {s.as_of.isoformat()})\n")
        rows = []
        for v in s.vms:
            mask = f"{_hexs(v.mask_now)} -> {_hexs(v.mask_plan)}"
            o, b = v.occupancy, v.bandwidth
            rows.append({
                "domid": v.domid, "vm": v.name + _MOVED.get(v.moved or "", ""),
                "mask": mask,
                "occupancy MiB now -> predicted [band]":
                    f"{_mib(o.now)} -> {_mib(o.predicted)} [{_mib(o.low)}-{_mib(o.high)}]",
                "occ": _pct(o),
                "bandwidth MB/s now -> predicted [band]":
                    f"{_rate(b.now)} -> {_rate(b.predicted)} [{_rate(b.low)}-{_rate(b.high)}]",
                "bw": _pct(b),
                "fit": v.fit.quality,
            })
        o, b = s.occupancy, s.bandwidth
        rows.append({"domid": None, "vm": "total", "mask": "",
                     "occupancy MiB now -> predicted [band]":
                         f"{_mib(o.now)} -> {_mib(o.predicted)} of {_mib(s.l3_bytes)}",
                     "occ": _pct(o),
                     "bandwidth MB/s now -> predicted [band]":
                         f"{_rate(b.now)} -> {_rate(b.predicted)} [{_rate(b.low)}-{_rate(b.high)}]",
                     "bw": _pct(b), "fit": ""})
        table = text_table(rows)
        out.append("".join("  " + line + "\n" for line in table.splitlines()))
        if s.bw_capacity:
            lower = s.bw_capacity_source == "observed-peak"
            out.append(f"  bandwidth vs capacity: {100 * s.utilisation('now'):.0f}% -> "
                       f"{100 * s.utilisation('predicted'):.0f}%"
                       f"{' (capacity = the highest seen, a lower bound)' if lower else ''}\n")
        out.append("\n")
    for m in p.migrations:
        out.append(f"migration: {m['name']} (domid {m['domid']}) {m['from']} socket(s) "
                   f"{','.join(map(str, m['from_sockets']))} -> {m['to']} socket {m['to_socket']}\n")
    hosts = p.hosts()
    if p.migrations:
        for host, ba in hosts.items():
            b0, b1 = ba["before"], ba["after"]
            out.append(f"{host}: occupancy {_mib(b0['occupancy_bytes'])} -> "
                       f"{_mib(b1['occupancy_bytes'])} MiB "
                       f"of {_mib(b0['l3_bytes'])}; bandwidth {_rate(b0['bandwidth_bytes_s'])} -> "
                       f"{_rate(b1['bandwidth_bytes_s'])} MB/s; VMs {b0['vms']} -> {b1['vms']}\n")
        out.append("\n")
    if p.lacking_history:
        out.append("lacking history (predictions for these VMs are rough):\n")
        for x in p.lacking_history:
            where = f"{x.host} socket {x.socket}" if x.socket is not None else x.host
            ident = f"{x.name} (domid {x.domid})" if x.domid is not None else x.name
            out.append(f"  {where}: {ident}: {x.quality}: {x.reason}\n")
    for n in p.notes:
        out.append(f"note: {n}\n")
    return "".join(out)


_MOVED = {"in": " (moves in)", "out": " (moves out)"}


def _hexs(m: int | None) -> str:
    return "-" if m is None else f"{m:#x}"
