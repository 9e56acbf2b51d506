"""`rdtadvisor simulate`: write the captures a simulated fleet would have given `collect --save-raw`."""

from __future__ import annotations

import dataclasses
import re
import shutil
import sys
import time
from pathlib import Path

import click
import pandas as pd

from rdtadvisor.cli.options import WHEN
from rdtadvisor.core.errors import ConfigError
from rdtadvisor.core.text import printable

MAX_VMS_SHOWN = 8          # --apply: the VMs whose true speed changed most, per socket
_TIME_DIR = re.compile(r"^\.?\d{8}T\d{6}Z(?:\..*)?$")   # a capture folder, or write_capture's temp name


@click.command("simulate")
@click.argument("scenario_path", metavar="SCENARIO.toml", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the captures to (<out>/<host>/<UTC time>/, what collect --replay reads).")
@click.option("--duration", default=None, metavar="DURATION",
              help="Simulated time, e.g. 2d, 12h, 1h30m. [the scenario's]")
@click.option("--step", default=None, metavar="DURATION",
              help="Time between collections, e.g. 1m, 5m. [the scenario's]")
@click.option("--seed", type=int, default=None, help="Random seed. [the scenario's]")
@click.option("--start", type=WHEN, default=None, metavar="WHEN",
              help="When the run starts (ISO 8601, or a span before now such as 3d). [the scenario's "
                   "start; without one, the run ends at the start of yesterday, UTC]")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Processes (hosts run in parallel; the bytes do not depend on it). [one per CPU]")
@click.option("--no-quirks", is_flag=True,
              help="Print the truth as it is: no noise, quantisation, erratum, missing cells or lag "
                   "(xl's KiB truncation stays).")
@click.option("--force", is_flag=True,
              help="Write into a non-empty --out: the scenario's hosts' earlier captures there are replaced.")
@click.option("--extend", default=None, metavar="DURATION",
              help="Go on for DURATION after the scenario's run ends and write only that part "
                   "(store it after the run's own captures).")
@click.option("--apply", "plans", multiple=True, metavar="PLAN.json[@WHEN]",
              help="With --extend: run the xl commands of an `advise cat` or `calibrate` JSON on the "
                   "simulated hosts, from where the run ends (or @+6h after that, or @2026-11-22T06:00Z), "
                   "and print the simulator's true effect. Repeatable.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
def command(scenario_path: Path, out: Path, duration: str | None, step: str | None, seed: int | None,
            start: pd.Timestamp | None, workers: int | None, no_quirks: bool, force: bool,
            extend: str | None, plans: tuple[str, ...], quiet: bool) -> None:
    """Simulate a fleet and write the xl captures every host would have given.

    Each host's files are what `rdtadvisor collect` keeps on that host's Xen version,
    byte for byte, with Xen's measurement quirks (noisy 10 ms bandwidth, quantised
    occupancy, prefetch, the Skylake-SP MBM erratum, missing cells, overflows).
    The same scenario, seed and start always give the same bytes. A scenario without a
    start (like the demo) ends at the start of yesterday, so its history is recent on any
    date; pin it with --start to reproduce a run. Store the captures with:

        rdtadvisor collect --replay CAPTURES/

    To see a plan at work, extend the run and apply it where the run ends: the commands
    change the simulated masks as Xen would (refusing what Xen refuses), and the simulator's
    true weighted speedup with and without them is printed per socket (stderr), to set
    against what `advise cat` predicted:

        rdtadvisor advise cat --format json > plan.json
        rdtadvisor simulate fleet.toml --extend 12h --apply plan.json --out after/

    Exit status: 0 written, 2 bad scenario, options or plan.
    """
    from rdtadvisor.sim import measure, scenario

    sc = scenario.load_scenario(scenario_path, seed=seed)
    span = scenario.parse_duration(duration) if duration is not None else None
    every = scenario.parse_duration(step) if step is not None else None
    if every is not None and every.total_seconds() < 1:
        raise ConfigError(f"--step {step}: captures are named by the second; use 1s or more")
    total_span = span or sc.duration
    total_step = every or sc.step
    if start is not None:
        sc = dataclasses.replace(sc, start=start.to_pydatetime(), pinned=True)
    elif not sc.pinned:
        sc = dataclasses.replace(sc, start=scenario.recent_start(total_span))
    if total_step > total_span:
        raise ConfigError(f"--step {total_step} is longer than the duration {total_span}")
    since = None
    effects: list[dict] = []
    if extend is not None or plans:
        if extend is None:
            raise ConfigError("--apply needs --extend: how long to go on after the run's end, with the plan")
        more = scenario.parse_duration(extend)
        if more < total_step:
            raise ConfigError(f"--extend {extend} is shorter than one step ({total_step})")
        since = sc.start + total_span
        sc, effects = _apply(sc, plans, total_span, total_span + more, total_step, seed)
        span, total_span = total_span + more, total_span + more
    _prepare(out, [h.name for h in sc.hosts], force)
    quirks = measure.Quirks.off() if no_quirks else None
    talk = not quiet and sys.stderr.isatty()
    t0 = time.monotonic()
    if talk:
        with click.progressbar(length=measure.fleet_captures(sc, duration=span, step=every),
                               label=f"simulating {sc.name}", file=sys.stderr,
                               item_show_func=lambda h: h) as bar:
            result = measure.write_fleet(sc, out, duration=span, step=every, seed=seed, workers=workers,
                                         quirks=quirks, on_progress=lambda host, n: bar.update(n, host),
                                         since=since)
    else:
        result = measure.write_fleet(sc, out, duration=span, step=every, seed=seed, workers=workers,
                                     quirks=quirks, since=since)
    for e in effects:
        click.echo(f"simulator truth: {e['plan']}: {e['host']} socket {e['socket']}: weighted speedup "
                   f"{e['weighted_speedup']:.3f} with it, {e['weighted_speedup_without']:.3f} without "
                   f"({100 * e['gain']:+.1f}%), mean from its first command to the end", err=True)
        moved = sorted(((c, n) for n, c in e["per_vm"].items() if abs(c) >= 0.0005), key=lambda x: -abs(x[0]))
        if moved:
            shown = ", ".join(f"{printable(n)} {100 * c:+.1f}%" for c, n in moved[:MAX_VMS_SHOWN])
            more = f", and {len(moved) - MAX_VMS_SHOWN} more" if len(moved) > MAX_VMS_SHOWN else ""
            click.echo(f"  per VM (speed change, largest first): {shown}{more}", err=True)
    if not quiet:
        click.echo(f"wrote {result.captures} captures of {result.hosts} hosts ({result.files} files) "
                   f"to {out} in {time.monotonic() - t0:.1f} s; store them with: "
                   f"rdtadvisor collect --replay {out}", err=True)


def _prepare(out: Path, hosts: list[str], force: bool) -> None:
    """Refuse a non-empty `out` unless `force`; with it, clear the scenario's hosts' capture folders."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: not a folder")
    if not out.exists() or not any(out.iterdir()):
        return
    if not force:
        raise ConfigError(f"--out {out} is not empty; use --force to replace the scenario's hosts' captures "
                          "there, or choose an empty folder")
    for host in hosts:
        folder = out / host
        if not folder.is_dir():
            continue
        strangers = [p.name for p in folder.iterdir() if not (p.is_dir() and _TIME_DIR.match(p.name))]
        if strangers:
            names = ", ".join(sorted(strangers)[:3])
            raise ConfigError(f"--force: {folder} holds more than captures ({names}); not touching it")
        shutil.rmtree(folder)


def _apply(sc, plans: tuple[str, ...], end, total, step, seed: int | None):
    """`sc` with each ``--apply`` plan run from the run's `end` (or its @WHEN), and each
    plan's true effect (`rdtadvisor.sim.apply.apply_plans`)."""
    from rdtadvisor.sim import apply

    loaded = [_load_plan(spec, sc, end) for spec in plans]
    names = {h.name for h in sc.hosts}
    unknown = sorted({c.host for _, _, cmds in loaded for c in cmds} - names)
    if unknown:
        raise ConfigError(f"--apply: host {unknown[0]} is not in the scenario ({', '.join(sorted(names))})")
    for path, origin, cmds in loaded:
        last = origin + max(c.at for c in cmds)
        if last >= total:
            click.echo(f"rdtadvisor: --apply {path}: its last command comes {last - end} after the run's "
                       f"end, after the extension ({total - end}): what comes after is not simulated "
                       "(a longer --extend reaches it)", err=True)
    return apply.apply_plans(sc, loaded, total, step, sc.seed if seed is None else seed)


def _load_plan(spec: str, sc, end):
    """(path, origin, commands) of one ``--apply PLAN.json[@WHEN]``."""
    import json

    from rdtadvisor.core.timewindow import parse_when
    from rdtadvisor.sim import apply
    from rdtadvisor.sim.scenario import parse_duration

    head, _, tail = spec.rpartition("@")
    path, when = (head, tail) if head and re.match(r"\+|\d{4}-", tail) else (spec, "")
    origin = end
    if when.startswith("+"):
        origin = end + parse_duration(when[1:])
    elif when:
        origin = parse_when(when).to_pydatetime() - sc.start
        if origin.total_seconds() < 0:
            raise ConfigError(f"--apply {spec}: {when} is before the scenario's start")
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"--apply {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise ConfigError(f"--apply {path}: not JSON ({e})") from None
    cmds = apply.commands_of(doc, path)
    if not cmds:
        raise ConfigError(f"--apply {path}: the plan holds no command (it declined, or swept nothing)")
    return path, origin, cmds
