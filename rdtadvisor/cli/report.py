"""``rdtadvisor report``: the usage model over a window of history, for people and for cron.

    rdtadvisor report                              # last 7 days, every host, text
    rdtadvisor report --host xen01 --since 24h --hours 09-17 --format markdown
    rdtadvisor report --format html --output weekly.html
    rdtadvisor report --format json --output today.json --diff yesterday.json --fail-on warning

Exit status (docs/exit-codes.md): 0 ok (or no ``--fail-on``), 4 a warning with ``--fail-on
warning``, 5 a critical finding with ``--fail-on``, 2 a usage or config error (a bad option,
an unknown ``--host``), 3 a data error (no history in the window, unreadable store or previous
report). The JSON is the contract of ``docs/report.md``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import pandas as pd

from rdtadvisor.advise.check import check
from rdtadvisor.cli.context import bandwidth_capacity, check_config_names, settings_of
from rdtadvisor.cli.exits import EXIT_CRITICAL, EXIT_OK, EXIT_WARNING, DataError
from rdtadvisor.cli.output import dump_json, write_atomic
from rdtadvisor.core import clock
from rdtadvisor.core.config import Settings
from rdtadvisor.core.errors import ConfigError, RdtError
from rdtadvisor.core.timewindow import parse_when
from rdtadvisor.model.figures import parse_hours
from rdtadvisor.model.usage import Limits, NoHistory, Usage, Window, usage
from rdtadvisor.report.build import build_report
from rdtadvisor.report.diff import diff_reports
from rdtadvisor.store import Store

SAMPLE_COLUMNS = ["time", "host", "socket", "domid", "domain", "metric", "reading", "value"]


def usage_error(message: str) -> click.UsageError:
    """A usage error (exit 2, `rdtadvisor.cli.exits`)."""
    return click.UsageError(message)


def window_options(f: Any) -> Any:
    """--host/--since/--until/--hours, shared by report and headroom."""
    for opt in reversed(
        [
            click.option("--host", "hosts", multiple=True, help="Only this host (repeatable; default: all)."),
            click.option(
                "--since",
                default="7d",
                show_default=True,
                help="Start of the window: a span before now (24h, 7d) or ISO 8601.",
            ),
            click.option("--until", default=None, help="End of the window (default: now)."),
            click.option(
                "--hours",
                default=None,
                help="Only these hours of each day, e.g. 09-17 (in the "
                "config's [report] timezone, default UTC).",
            ),
        ]
    ):
        f = opt(f)
    return f


def limits_of(settings: Settings) -> Limits:
    r = settings.report
    return Limits(
        bandwidth=bandwidth_capacity(settings),
        l3_threshold=r.l3_threshold,
        bandwidth_threshold=r.bandwidth_threshold,
    )


def load_usage(
    settings: Settings, hosts: Sequence[str], since: str, until: str | None, hours: str | None
) -> tuple[Usage, dict[str, pd.DataFrame]]:
    """Read the window's tables from the store and build the usage model (DataError if empty)."""
    try:
        lo = parse_when(since)
        hi = parse_when(until) if until else None
        hour_range = parse_hours(hours) if hours else None
    except ValueError as e:
        raise usage_error(str(e)) from None
    try:
        store = Store(settings.store, create=False)
        check_config_names(store)
        known = store.hosts()
        unknown = [h for h in hosts if h not in known]
        if unknown:
            raise usage_error(
                f"{settings.store}: host(s) not in the store: {', '.join(unknown)} "
                f"(known: {', '.join(known) or 'none'})"
            )
        wanted = list(hosts) or known
        # Categorical names and no sort: the model builds its cubes from any row order.
        tables = {
            "samples": store.read(
                "samples",
                hosts=wanted,
                since=lo,
                until=hi,
                columns=SAMPLE_COLUMNS,
                categorical=("host", "domain", "metric"),
                sort=False,
            )
        }
        for t, names in (("settings", ("host", "domain", "setting")), ("facts", ("host", "fact")),
                         ("domains", ("host", "domain", "state")), ("events", ("host", "command", "kind"))):
            # settings: millions of rows a month; every reader of it is order-independent
            tables[t] = store.read(t, hosts=wanted, since=lo, until=hi, categorical=names,
                                   sort=t != "settings")
        tables["collections"] = store.collections(wanted, since=lo, until=hi)
    except ConfigError:
        raise                                   # --strict config names: a usage error (2)
    except RdtError as e:
        raise DataError(str(e)) from None
    if tables["samples"].empty:
        raise DataError(
            f"{settings.store}: no samples between {lo:%Y-%m-%d %H:%M} and "
            f"{'now' if hi is None else f'{hi:%Y-%m-%d %H:%M}'} UTC"
            + (f" for {', '.join(hosts)}" if hosts else "")
            + older_history(store, wanted, lo, hi)
        )
    window = Window(since=lo, until=hi, hours=hour_range, tz=settings.report.timezone)
    try:
        return usage(tables, window, limits_of(settings)), tables
    except NoHistory as e:
        where = f" (hours {hours} {settings.report.timezone})" if hours else ""
        raise DataError(f"{settings.store}: {e}{where}") from None


def older_history(store: Store, hosts: Sequence[str], lo: pd.Timestamp, hi: pd.Timestamp | None) -> str:
    """For an empty window: where the history is, and the --since that covers it (same length)."""
    try:
        latest = store.latest_times(list(hosts) or None)
    except RdtError:
        return ""
    older = {h: t for h, t in latest.items() if t < lo}
    if not older:
        return " (try a longer --since)"
    host, newest = max(older.items(), key=lambda kv: kv[1])
    span = (clock.now() if hi is None else hi) - lo        # the window's length, kept
    cover = (newest - max(span, pd.Timedelta(0))).floor("D") if hi is None else newest.floor("D")
    until = f" --until {newest + pd.Timedelta(minutes=1):%Y-%m-%dT%H:%M}Z" if hi is not None else ""
    return (f"; the newest collection is {newest:%Y-%m-%d %H:%M} UTC ({host}): "
            f"--since {cover:%Y-%m-%d}{until} covers it")


def latest_of(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each host's latest collection within the window, table by table (for the mask checks)."""
    last = tables["collections"].groupby("host", observed=True)["time"].max()
    out = {}
    for t in ("settings", "facts", "samples", "domains"):
        df = tables[t]
        out[t] = df[df["time"] == df["host"].map(last)] if len(df) else df
    return out


@click.command("report")
@window_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "csv", "markdown", "html"]),
    default="text",
    show_default=True,
    help="Output format (json: the contract of docs/report.md).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file (atomically) instead of standard output.",
)
@click.option(
    "--fail-on",
    type=click.Choice(["warning", "critical"]),
    default=None,
    help="Exit 4 on a warning (if 'warning') and 5 on a critical finding (docs/exit-codes.md).",
)
@click.option(
    "--diff",
    "previous",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A previous JSON report: add what changed since it.",
)
@click.option("--series/--no-series", default=None, help="Include time series (default: only for html).")
@click.pass_context
def command(
    ctx: click.Context,
    hosts: tuple[str, ...],
    since: str,
    until: str | None,
    hours: str | None,
    fmt: str,
    output: Path | None,
    fail_on: str | None,
    previous: Path | None,
    series: bool | None,
) -> int:
    """Per host, socket and VM: L3 occupancy, bandwidth, classes, noisy neighbours, data quality."""
    settings = settings_of(ctx)
    prev = _read_previous(previous) if previous else None
    u, tables = load_usage(settings, hosts, since, until, hours)
    report = build_report(
        u,
        checks=check(latest_of(tables)),
        limits=limits_of(settings),
        series=series if series is not None else fmt == "html",
        hours=hours,
    )
    if prev is not None:
        report["diff"] = diff_reports(prev, report)
    write_output(render(report, fmt), output)
    return exit_status(report, fail_on)


def render(report: dict[str, Any], fmt: str) -> str:
    """The report in `fmt`."""
    if fmt == "json":
        return dump_json(report)
    if fmt == "html":
        from rdtadvisor.render.report_html import render_html

        return render_html(report)
    from rdtadvisor.render import report_text

    return {
        "text": report_text.render_text,
        "markdown": report_text.render_markdown,
        "csv": report_text.render_csv,
    }[fmt](report)


def exit_status(report: dict[str, Any], fail_on: str | None) -> int:
    """0 unless `fail_on` is set and the report has a finding at or above it (4 warning, 5 critical)."""
    if fail_on is None:
        return EXIT_OK
    counts = report["summary"]["findings"]
    if counts["critical"]:
        return EXIT_CRITICAL
    if fail_on == "warning" and counts["warning"]:
        return EXIT_WARNING
    return EXIT_OK


def write_output(text: str, output: Path | None) -> None:
    """Standard output, or `output` replaced atomically (a cron job's reader never sees half a file)."""
    if output is None or str(output) == "-":
        click.echo(text, nl=False)
        return
    try:
        write_atomic(output, text)
    except RdtError as e:
        raise DataError(str(e)) from None      # exit 3: nowhere to put the report


def _read_previous(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(f"{path}: cannot read the previous report: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a JSON report: {e}") from None
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("rdtadvisor.report/"):
        raise DataError(f"{path}: not an rdtadvisor report (no 'schema': 'rdtadvisor.report/1')")
    return data
