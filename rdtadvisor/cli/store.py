"""``rdtadvisor store``: look into the history store and keep it compact.

    rdtadvisor store info
    rdtadvisor store show samples --host xen01 --since 24h --format csv
    rdtadvisor store compact --before 2024-05-01
    rdtadvisor store check [--repair]
"""

from __future__ import annotations

import click
import pandas as pd

from rdtadvisor.cli.context import settings_of
from rdtadvisor.cli.exits import EXIT_OK, EXIT_WARNING
from rdtadvisor.cli.options import WHEN
from rdtadvisor.cli.output import echo_text
from rdtadvisor.model.inventory import host_inventory
from rdtadvisor.store import STORE_TABLES, Store

command = click.Group("store", help="Inspect the history store and compact it (run `compact` nightly).")


def _store(ctx: click.Context, *, create: bool = False) -> Store:
    return Store(settings_of(ctx).store, create=create)


@command.command("info")
@click.pass_context
def info(ctx: click.Context) -> None:
    """Hosts (latest collection of each), files, rows and bytes per table, the time range stored."""
    store = _store(ctx)
    s = store.summary()
    click.echo(f"store: {s.path}")
    span = "-" if s.first is None else f"{s.first.isoformat()} .. {s.last.isoformat()}"
    click.echo(f"collections: {span}\n")
    hosts = host_inventory(store.read("collections"), store.read("facts"), store.read("domains"),
                           store.read("samples", columns=["time", "host", "domid", "metric"]))
    if len(hosts):
        click.echo(hosts.astype(object).where(hosts.notna(), "-").to_string(index=False) + "\n")
    click.echo(s.stats.to_string())
    if s.pending_journals:
        click.echo(f"pending changes: {s.pending_journals} (the next append or compact completes them)")


@command.command("compact")
@click.option("--before", type=WHEN, default=None,
              help="Only dates before this one (ISO date or span like 1d; default: every date).")
@click.pass_context
def compact(ctx: click.Context, before: pd.Timestamp | None) -> None:
    """Merge each host's many small files per day and table into one."""
    r = _store(ctx).compact(before=before)
    click.echo(f"compacted {r.partitions} partitions: {r.files_before} files ({r.bytes_before:,} bytes) "
               f"-> {r.files_after} ({r.bytes_after:,} bytes)")


@command.command("check")
@click.option("--repair", is_flag=True,
              help="Move each corrupt or foreign file to <store>/.quarantine/<time>/ (nothing else changes).")
@click.pass_context
def check(ctx: click.Context, repair: bool) -> int:
    """Find files in the store that readers could trip on: corrupt (unreadable) ones, and foreign
    ones the store did not write (other names, other columns, stray folders). Reads every file.

    One line per problem on stdout. Readers already skip unreadable files with a warning;
    --repair quarantines them so that the warnings stop, and changes nothing else.
    Exit status 0 when the store is clean, 4 when problems were found (moved or not).
    """
    store = _store(ctx)
    result = store.check(repair=repair)
    for p in result.problems:
        moved = f"; moved to {p.moved_to}" if p.moved_to else ""
        click.echo(f"{p.path}: {p.kind}: {p.reason}{moved}")
    n = len(result.problems)
    what = "quarantined" if repair and n else "found"
    click.echo(f"{n} problem(s) {what} in {result.files} file(s) checked")
    return EXIT_WARNING if n else EXIT_OK


@command.command("show")
@click.argument("table", type=click.Choice(STORE_TABLES))
@click.option("--host", "hosts", multiple=True, help="Only this host (repeatable).")
@click.option("--since", type=WHEN, default=None, help="From this time: ISO 8601 or 90m, 24h, 7d before now.")
@click.option("--until", type=WHEN, default=None, help="Before this time (same forms as --since).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True, help="json: one object per line.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the N most recent rows.")
@click.pass_context
def show(ctx: click.Context, table: str, hosts: tuple[str, ...], since: pd.Timestamp | None,
         until: pd.Timestamp | None, fmt: str, limit: int | None) -> None:
    """Print the stored rows of TABLE, oldest first."""
    frame = _store(ctx).read(table, hosts=hosts or None, since=since, until=until)
    if limit is not None:
        frame = frame.tail(limit)
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        if len(frame):
            text = frame.to_json(orient="records", lines=True, date_format="iso", date_unit="ns",
                                 force_ascii=False)
            click.echo(text.rstrip("\n"))
    elif frame.empty:
        click.echo("(no rows)")
    else:
        echo_text(frame.to_string(index=False) + "\n")
