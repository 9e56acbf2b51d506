"""`rdtadvisor advise cat`: the L3 masks each socket should have, with commands and rollback."""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

from rdtadvisor.cli.context import bandwidth_capacity, memory_traffic, open_store, settings_of
from rdtadvisor.cli.options import WHEN, Seconds
from rdtadvisor.cli.output import dump_json, echo_text, script_paths, write_executable, write_scripts
from rdtadvisor.cli.report import older_history
from rdtadvisor.render import markdown as md

NO_CAT = "the store has no sockets with L3 CAT"     # why there is nothing to advise, usually
command = click.Group("advise", help="Advice from the stored history: CAT masks and VM placement.")


@command.command("cat")
@click.option("--host", "hosts", multiple=True, help="Only this host (repeatable).")
@click.option("--since", type=WHEN, default=None,
              help="History from this time: ISO 8601 or 7d, 24h before now.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True, help="Output format (json: the plan contract, docs/plan.md).")
@click.option("--script", "script_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a POSIX shell script per host to run on it (FILE, or FILE.<host>.sh "
                   "for several hosts, the host's name made safe for a file name) and its rollback "
                   "(.rollback.sh).")
@click.option("--min-bits", type=click.IntRange(min=1), default=None,
              help="Fewest ways in any mask, every host (overrides [cat] min_bits of the config).")
@click.option("--reserved-ways", type=click.IntRange(min=0), default=None,
              help="Ways kept out of every mask at the low end, every host (overrides [cat] reserved_ways).")
@click.option("--no-overlap", is_flag=True, default=False,
              help="Disjoint runs only: no overlapping masks, no VM left at the default mask "
                   "(overrides [cat] overlap).")
@click.pass_context
def cat_command(ctx: click.Context, hosts: tuple[str, ...], since: pd.Timestamp | None, fmt: str,
                script_path: Path | None, min_bits: int | None, reserved_ways: int | None,
                no_overlap: bool) -> None:
    """Recommend CAT masks per host and socket, by marginal utility of estimated miss curves.

    Follows the config's [cat] policy (priorities or tiers, guaranteed MiB per VM, reserved
    and Domain-0 ways, the fewest bits per mask, overlap). Declines (and says why) where the
    predicted gain is under the hysteresis (2%) or within its uncertainty, or the policy
    cannot be met. CDP sockets get code = data masks. Nothing is applied: review the plan,
    then run the script on the host.
    """
    from rdtadvisor.advise.cat import advise_cat
    from rdtadvisor.render.script import rollbacks_by_host, scripts_by_host

    settings = settings_of(ctx)
    cat = settings.cat.override(min_bits=min_bits, reserved_ways=reserved_ways,
                                overlap=False if no_overlap else None)
    store, _known = open_store(ctx, hosts)         # an unknown --host is a usage error
    names = list(hosts) or None
    tables = ("samples", "facts", "settings", "domains")     # domains: the vCPUs from xl list
    history = {t: store.read(t, hosts=names, since=since) for t in tables}
    advice = advise_cat(history, hosts=names, cat=cat, bandwidth=bandwidth_capacity(settings),
                        traffic=memory_traffic(settings))
    if fmt == "json":
        click.echo(dump_json(advice.to_dict()), nl=False)
    else:
        nothing = (NO_CAT if len(history["facts"]) else "no stored history" if since is None else
                   f"no stored history since {since:%Y-%m-%d %H:%M} UTC"
                   + older_history(store, names or [], since, None))
        echo_text(_text(advice, markdown=fmt == "markdown", nothing=nothing))
    if script_path is not None and advice.plans:
        apply, undo = scripts_by_host(advice.plans), rollbacks_by_host(advice.plans)
        for host, (path, back) in script_paths(script_path, list(apply)).items():
            write_scripts(path, apply[host], back, undo[host])


def _text(advice, *, markdown: bool, nothing: str = NO_CAT) -> str:
    out: list[str] = []
    head = "### " if markdown else ""
    for p in advice.plans:
        gain = p.predicted.get("weighted_speedup", 0.0)
        low, high = (p.predicted.get("uncertainty") or [None, None])[:2]
        band = f" [{low:+.1%} .. {high:+.1%}]" if low is not None else ""
        sure = p.predicted.get("confidence")
        # the band adds the model's error; the decision tests the curves' draws: say both
        sure_s = f" (a gain in {sure:.0%} of the curves' draws)" if sure is not None else ""
        out.append(f"{head}{p.host} socket {p.socket}: predicted weighted speedup {gain:+.1%}{band}{sure_s}, "
                   f"COS {p.cos_used} of {p.cos_budget}")
        # each VM's predicted speed change: who gains and who pays for it
        speed = {v["domid"]: v["speed_change"] for v in p.predicted.get("per_vm") or []}
        shown = [_mask_text(a) for a in p.assignments]
        width = max([8, *(len(m) for m in shown)])
        if markdown:
            out += ["", "| domid | name | mask | ways | speed | reason |", "|---|---|---|---|---|---|"]
        else:
            out += [f"  {'domid':>5}  {'name':<40}  {'mask':<{width}} {'ways':>7}  {'speed':>7}  reason",
                    f"  {'-' * 5}  {'-' * 40}  {'-' * width} {'-' * 7}  {'-' * 7}  {'-' * 6}"]
        for a, mask_s in zip(p.assignments, shown, strict=True):
            change = f"{speed[a.domid]:+.1%}" if a.domid in speed else "?"
            if markdown:
                name, reason = md.escape(a.name), md.escape(a.reason)
                out.append(f"| {a.domid} | {name} | `{mask_s}` | {a.ways} | {change} | {reason} |")
            else:
                ways = f"{a.ways:>2} way{'s' if a.ways != 1 else ' '}"
                row = f"  {a.domid:>5}  {a.name!s:<40}  {mask_s:<{width}} {ways}  {change:>7}"
                out.append(f"{row}  {a.reason}")
        out.append("")
        for note in p.predicted.get("notes") or []:
            out.append(f"note: {md.escape(note)}" if markdown else f"  note: {note}")
        if p.predicted.get("notes"):
            out.append("")
        for s in p.steps:
            out.append(("    " if markdown else "  $ ") + " ".join(s.argv))
        out.append("")
    for d in advice.declined:
        reason = md.escape(d["reason"]) if markdown else d["reason"]
        out.append(f"{d['host']} socket {d['socket']}: no change: {reason}")
    if not advice.plans and not advice.declined:
        out.append(f"nothing to advise: {nothing}")
    return "\n".join(out).rstrip() + "\n"


def _mask_text(a) -> str:
    """``0x7f0``; under CDP ``0x7f0 (code=data)`` or ``code 0x3/data 0x7f0``."""
    if a.cbm is not None:
        return hex(a.cbm)
    if a.code_cbm == a.data_cbm:
        return f"{a.data_cbm:#x} (code=data)"
    return f"code {a.code_cbm:#x}/data {a.data_cbm:#x}"


@command.command("placement")
@click.option("--host", "hosts", multiple=True, help="Only these hosts take part (repeatable; default: all).")
@click.option("--since", default="7d", show_default=True, help="History window: 7d, 24h or ISO 8601.")
@click.option("--evacuate", multiple=True, help="Empty this host (maintenance; repeatable).")
@click.option("--method", type=click.Choice(["auto", "milp", "heuristic"]), default="auto", show_default=True,
              help="auto: the heuristic, then the HiGHS model when the lower bound cannot prove it optimal.")
@click.option("--time-limit", type=Seconds(0.1, 3600), default=50.0, show_default=True,
              help="Solver seconds.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True, help="Output format (json: the contract in docs/plan.md).")
@click.option("--script", "script_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the migrations as reviewable POSIX scripts, one per source host "
                   "(PATH, or PATH's name with .HOST.sh per source when there are several).")
@click.pass_context
def placement_command(ctx: click.Context, hosts: tuple[str, ...], since: str, evacuate: tuple[str, ...],
                      method: str, time_limit: float, fmt: str, script_path: Path | None) -> int:
    """Which VMs to live-migrate where, so no host stays over its L3, bandwidth, memory or vCPU limits.

    Fewest migrations first, then least memory to copy; destinations keep balanced headroom,
    judged per socket where libxl's NUMA placement would put each VM. A migration is only
    proposed when it helps fix a host (or empties an --evacuate host). Each source host gets
    its own script (xl migrate runs on the source), which checks the host and every domain
    before migrating. Exit status 0 when every overloaded host is resolved, 1 when some are
    not (each named with the reason).
    """
    from rdtadvisor.advise.placement.fleet import Policy
    from rdtadvisor.advise.placement.inputs import fleet_from_usage
    from rdtadvisor.advise.placement.recommend import recommendations
    from rdtadvisor.advise.placement.solve import plan
    from rdtadvisor.cli.report import limits_of, load_usage
    from rdtadvisor.render.migration_script import scripts_by_source

    settings = settings_of(ctx)
    u, tables = load_usage(settings, hosts, since, None, None)
    missing = [h for h in evacuate if h not in set(u.sockets["host"].astype(str))]
    if missing:
        raise click.UsageError(f"--evacuate: host(s) not in the history: {', '.join(missing)}")
    addresses = {h.name: h.address for h in settings.hosts if h.address}
    fleet = fleet_from_usage(u, tables["facts"], settings.placement, evacuate, addresses)
    limits = limits_of(settings)
    p = settings.placement
    policy = Policy(l3_threshold=limits.l3_threshold, bandwidth_threshold=limits.bandwidth_threshold,
                    vcpu_overcommit=p.vcpu_overcommit, memory_headroom=p.memory_headroom,
                    max_migrations=p.max_migrations)
    arrays, solution = plan(fleet, policy, method=method, time_limit=time_limit)
    result = recommendations(fleet, arrays, solution)     # refuses a host name that is not one
    _predict(result, settings, tables)
    if fmt == "json":
        click.echo(dump_json(result), nl=False)
    else:
        echo_text(_placement_text(result, markdown=fmt == "markdown"))
    if script_path is not None:
        scripts = scripts_by_source(result)
        for source, (path, _) in script_paths(script_path, list(scripts)).items():
            write_executable(path, scripts[source])
            click.echo(f"wrote {path} (run it on {source})", err=True)
        if not scripts:
            click.echo("no migration: no script written", err=True)
    return 1 if result["unresolved"] else 0


def _predict(result: dict, settings, tables: dict) -> None:
    """Add the what-if engine's predicted occupancy and bandwidth of every touched host (from the
    VMs' fitted miss curves: a moved VM re-settles in its new cache) as ``predicted``; a host
    the history cannot model is named in the notes, with why."""
    if not result["migrations"]:
        return
    from rdtadvisor.advise.planfile import Migration, PlanFile
    from rdtadvisor.advise.whatif import predict_migrations
    from rdtadvisor.core.errors import RdtError

    history = {t: tables[t] for t in ("samples", "settings", "facts")}   # the window already read
    capacity = dict(settings.report.host_bandwidth_capacity) or None
    measured = memory_traffic(settings)
    hosts = {m[k] for m in result["migrations"] for k in ("from", "to")}
    traffic = {h: t for h in hosts if (t := measured.of(h))}
    plan = PlanFile("advise placement", (), tuple(
        Migration(m["name"], m["domid"], m["from"], m["to"], f"$.migrations[{i}]", m.get("to_socket"))
        for i, m in enumerate(result["migrations"])))
    try:
        prediction = predict_migrations(history, plan, bw_capacity=capacity, traffic=traffic)
    except RdtError as e:
        result["notes"].append(f"no what-if prediction: {e}")
        return
    for h, why in prediction.unpredicted.items():
        result["notes"].append(f"{h}: occupancy and bandwidth after the moves not predicted: {why}")
    for h, figures in prediction.hosts().items():
        if h in result["hosts"]:
            result["hosts"][h]["predicted"] = figures


def _placement_text(result: dict, *, markdown: bool) -> str:
    """The plan for people: migrations, loads before -> after per limit, commands per source,
    what stays unresolved and why; Markdown renders the same as tables."""
    from rdtadvisor.cli.output import text_table
    from rdtadvisor.render import markdown as md

    def share(x: float | None) -> str:
        return "unknown" if x is None else f"{x:.0%}"

    def lands(m: dict) -> str:
        if m.get("to_socket") is not None:
            return f"socket {m['to_socket']}"
        return "spread" if m.get("to_sockets") == "spread" else "-"

    def block(rows: list[dict]) -> str:
        if not markdown:
            return text_table(rows)
        cols = list(rows[0])
        return "\n".join(md.table(cols, [[md.escape(r[c]) for c in cols] for r in rows])) + "\n"

    out = []
    s = result["solver"]
    n = len(result["migrations"])
    head = "## " if markdown else ""
    out.append(f"{head}{n} migration(s); solver {s['method']} in {s['seconds']:.2f} s, lower bound "
               f"{s['lower_bound']}, gap {s['gap']:.1%}" + (" (optimal)" if s["optimal"] else "") + "\n")
    if n:
        rows = [{"prio": m["priority"], "vm": m["name"], "from": m["from"], "to": m["to"],
                 "lands on": lands(m), "reason": m["reason"],
                 "memory GiB": round(m["memory_bytes"] / 2**30, 1)} for m in result["migrations"]]
        out.append("\n" + block(rows))
    hrows = []
    for h, ba in result["hosts"].items():
        for key, b in ba["before"].items():
            if not key.endswith("_share") or key.startswith("memory_socket"):
                continue
            a = ba["after"].get(key)
            dim = key.removesuffix("_share").replace("_socket", " socket ")
            if b is None and a is None and not dim.startswith("bandwidth"):
                continue        # not constrained there (no capacity known)
            hrows.append({"host": h, "limit": dim, "before": share(b), "after": share(a)})
    if hrows:
        out.append(f"\n{head}load as a share of each limit, before -> after\n\n" + block(hrows))
    by_source: dict[str, list[str]] = {}
    for m in result["migrations"]:
        by_source.setdefault(m["from"], []).append(m["command"])
    for src, commands in by_source.items():
        fence = "```" if markdown else ""
        out.append(f"\n{head}on {md.escape(src) if markdown else src}:\n"
                   + (f"{fence}sh\n" if markdown else "")
                   + "".join(f"{c}\n" for c in commands) + (f"{fence}\n" if markdown else ""))
    reasons = result.get("unresolved_reasons", {})
    for h in result["unresolved"]:
        out.append(f"\nunresolved: {h}: {reasons.get(h, 'no plan within the constraints fixes it')}\n")
    for note in result["notes"]:
        out.append(f"note: {note}\n")
    return "".join(out)
