"""`rdtadvisor collect`: collect RDT counters from hosts (or replay captures) into the store."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import click

from rdtadvisor.cli.context import settings_of
from rdtadvisor.cli.exits import EXIT_OK, EXIT_PARTIAL, DataError
from rdtadvisor.cli.options import Seconds
from rdtadvisor.core.config import MAX_TIMEOUT_SECONDS, HostConfig, resolve_hosts
from rdtadvisor.core.errors import ConfigError, StoreError
from rdtadvisor.core.text import from_raw
from rdtadvisor.sources import collect as collecting
from rdtadvisor.sources.capture import write_capture
from rdtadvisor.store import Store
from rdtadvisor.store.frames import frames_of

REPLAY_BATCH = 500  # captures per store append when replaying


@click.command("collect")
@click.option("--host", "host_names", multiple=True, metavar="HOST",
              help="Host to collect from over ssh (repeatable); a name from the config file or an "
                   "address. 'local' collects from this machine without ssh.")
@click.option("--hosts-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File with one host per line (# comments allowed).")
@click.option("--replay", type=click.Path(file_okay=False, path_type=Path),
              help="Store captures from this folder (<dir>/<host>/<UTC time>/) instead of running xl.")
@click.option("--save-raw", type=click.Path(file_okay=False, path_type=Path),
              help="Also keep every raw capture in this folder (the same layout --replay reads).")
@click.option("--readings", type=click.IntRange(1, 100), default=None,
              help="Bandwidth snapshots per collection (each is 10 ms). [config, else 3]")
@click.option("--count", type=click.IntRange(1), default=1, show_default=True,
              help="Collections to take, --interval seconds apart.")
@click.option("--interval", type=Seconds(0, 86_400), default=60.0, show_default=True,
              help="Seconds between the starts of successive collections (at most a day).")
@click.option("--timeout", type=Seconds(0.1, MAX_TIMEOUT_SECONDS), default=None,
              help="Seconds allowed per xl command (at most a day). [config, else 60]")
@click.option("--parallel", type=click.IntRange(1), default=None,
              help="Hosts collected at once. [config, else 64]")
@click.option("-v", "--verbose", is_flag=True, help="Print a summary even when not on a terminal.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary; errors still go to stderr.")
@click.pass_context
def command(ctx: click.Context, host_names: tuple[str, ...], hosts_file: Path | None, replay: Path | None,
            save_raw: Path | None, readings: int | None, count: int, interval: float, timeout: float | None,
            parallel: int | None, verbose: bool, quiet: bool) -> None:
    """Collect L3 occupancy, memory bandwidth, CAT/MBA settings and host facts into the store.

    Hosts come from --host, --hosts-file, else the config file's [[hosts]].
    On a terminal a progress bar and a summary are shown; from cron it is silent
    unless something fails.

    Exit status (docs/exit-codes.md): 0 every host collected, 1 some hosts failed (each named
    on stderr), 2 usage or config error, 3 a --replay folder that is missing or holds no
    captures.
    """
    settings = settings_of(ctx)
    talk = not quiet and (verbose or sys.stdout.isatty())
    store = Store(settings.store)
    if replay is not None:
        if host_names or hosts_file or save_raw:
            raise ConfigError("--replay reads captures; it cannot be combined with --host, "
                              "--hosts-file or --save-raw")
        ctx.exit(_replay(store, replay, talk, settings.max_output_bytes))
    hosts = resolve_hosts(settings, host_names, hosts_file)
    failed: set[str] = set()
    totals: Counter[str] = Counter()
    for i in range(count):
        started = time.monotonic()
        results = _collect_once(hosts, settings, readings, timeout, parallel, quiet)
        captures = []
        for r in results:
            if not r.ok or r.capture is None:
                failed.add(r.host)
                _err(f"{r.host}: {r.error}")
                continue
            if save_raw is not None:
                try:
                    write_capture(save_raw, r.capture)
                except StoreError as e:
                    failed.add(r.host)
                    _err(f"{r.host}: {e}")
            captures.append(r.capture)
        failed |= _store(store, captures, totals)
        if i + 1 < count:
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    if talk:
        _summary(store, totals, len(hosts), failed)
    ctx.exit(EXIT_PARTIAL if failed else EXIT_OK)


def _collect_once(hosts: list[HostConfig], settings, readings: int | None, timeout: float | None,
                  parallel: int | None, quiet: bool) -> list[collecting.HostResult]:
    kwargs = dict(readings=readings or settings.readings, timeout=timeout or settings.timeout,
                  parallel=parallel or settings.parallel)
    if quiet or not sys.stderr.isatty():
        return collecting.collect_fleet(hosts, **kwargs)
    with click.progressbar(length=len(hosts), label="collecting", file=sys.stderr,
                           item_show_func=lambda h: h) as bar:
        return collecting.collect_fleet(hosts, on_result=lambda r: bar.update(1, r.host), **kwargs)


def _replay(store: Store, root: Path, talk: bool, max_bytes: int) -> int:
    failed: set[str] = set()
    totals: Counter[str] = Counter()
    hosts: set[str] = set()
    batch = []
    for result in collecting.replay(root, max_bytes=max_bytes):
        hosts.add(result.host)
        if not result.ok or result.capture is None:
            failed.add(result.host)
            _err(f"{result.host}: {result.error}")
            continue
        batch.append(result.capture)
        if len(batch) >= REPLAY_BATCH:
            failed |= _store(store, batch, totals)
            batch = []
    failed |= _store(store, batch, totals)
    if not hosts:
        raise DataError(f"{root}: no captures found (expected <dir>/<host>/<YYYYMMDDTHHMMSSZ>/)")
    if talk:
        _summary(store, totals, len(hosts), failed)
    return EXIT_PARTIAL if failed else EXIT_OK


def _store(store: Store, captures: list, totals: Counter[str]) -> set[str]:
    """Append captures to the store; returns hosts with garbage in a capture file (named on stderr)."""
    if not captures:
        return set()
    try:
        frames = frames_of(captures)
    except Exception as e:  # something no parser foresaw: it must cost only its own host
        if len(captures) > 1:
            return set().union(*(_store(store, [c], totals) for c in captures))
        capture = captures[0]
        where = from_raw(str(capture.path)) if capture.path is not None else capture.stamp
        _err(f"{capture.host}: {where}: cannot read the capture ({type(e).__name__}: {from_raw(str(e))})")
        return {capture.host}
    events = frames["events"]
    bad = events[events["kind"] == "parse-error"]
    for host, message in zip(bad["host"], bad["message"], strict=True):
        _err(f"{host}: {message}")
    result = store.append(frames)
    totals.update({"collections": result.collections, "skipped": result.skipped,
                   "rows": result.total_rows})
    return set(bad["host"])


def _summary(store: Store, totals: Counter[str], n_hosts: int, failed: set[str]) -> None:
    click.echo(f"{n_hosts - len(failed)} of {n_hosts} hosts ok; stored {totals['collections']} collections "
               f"({totals['rows']} rows) in {store.path}"
               + (f"; {totals['skipped']} already stored" if totals["skipped"] else ""))


def _err(message: str) -> None:
    click.echo(f"rdtadvisor: {message}", err=True)
