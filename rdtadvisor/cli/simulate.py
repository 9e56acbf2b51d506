"""`rdtadvisor simulate`: write the captures a simulated fleet would have given `collect --save-raw`."""

from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path

import click

from rdtadvisor.errors import ConfigError

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
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Processes (hosts run in parallel; the bytes do not depend on it). [one per CPU]")
@click.option("--no-quirks", is_flag=True,
              help="Print the truth as it is: no noise, quantisation, erratum, missing cells or lag "
                   "(xl's KiB truncation stays).")
@click.option("--force", is_flag=True,
              help="Write into a non-empty --out: the scenario's hosts' earlier captures there are replaced.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
def command(scenario_path: Path, out: Path, duration: str | None, step: str | None, seed: int | None,
            workers: int | None, no_quirks: bool, force: bool, quiet: bool) -> None:
    """Simulate a fleet and write the xl captures every host would have given.

    Each host's files are what `rdtadvisor collect` keeps on that host's Xen version,
    byte for byte, with Xen's measurement quirks (noisy 10 ms bandwidth, quantised
    occupancy, prefetch, the Skylake-SP MBM erratum, missing cells, overflows).
    The same scenario and seed always give the same bytes. Store them with:

        rdtadvisor collect --replay CAPTURES/

    Exit status: 0 written, 2 bad scenario or options.
    """
    from rdtadvisor.sim import measure, scenario

    sc = scenario.load_scenario(scenario_path, seed=seed)
    span = scenario.parse_duration(duration) if duration is not None else None
    every = scenario.parse_duration(step) if step is not None else None
    if every is not None and every.total_seconds() < 1:
        raise ConfigError(f"--step {step}: captures are named by the second; use 1s or more")
    total_span = span or sc.duration
    total_step = every or sc.step
    if total_step > total_span:
        raise ConfigError(f"--step {total_step} is longer than the duration {total_span}")
    _prepare(out, [h.name for h in sc.hosts], force)
    quirks = measure.Quirks.off() if no_quirks else None
    talk = not quiet and sys.stderr.isatty()
    t0 = time.monotonic()
    if talk:
        with click.progressbar(length=measure.fleet_captures(sc, duration=span, step=every),
                               label=f"simulating {sc.name}", file=sys.stderr,
                               item_show_func=lambda h: h) as bar:
            result = measure.write_fleet(sc, out, duration=span, step=every, seed=seed, workers=workers,
                                         quirks=quirks, on_progress=lambda host, n: bar.update(n, host))
    else:
        result = measure.write_fleet(sc, out, duration=span, step=every, seed=seed, workers=workers,
                                     quirks=quirks)
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
