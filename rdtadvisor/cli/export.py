"""``rdtadvisor export``: the store's latest figures in formats other tools read.

    rdtadvisor export prometheus --output /var/lib/prometheus/node-exporter/rdtadvisor.prom
    rdtadvisor export prometheus --host xen-sky01            # to stdout

``prometheus`` writes the text exposition format (`rdtadvisor.render.prometheus`) for the
node_exporter textfile collector. The file is replaced atomically (a temporary file in the
same folder, fsync, rename): node_exporter reads the folder at any moment and must never
see half a file. Run it after each ``collect`` (cron, a systemd timer).

Exit status (docs/exit-codes.md): 0 written; 3 the store is empty or the file cannot be
written; 2 usage or config error (an unknown ``--host``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click
import pandas as pd

from rdtadvisor.cli.context import bandwidth_capacity, open_store, settings_of
from rdtadvisor.cli.output import write_atomic
from rdtadvisor.core.errors import RdtError
from rdtadvisor.core.timewindow import parse_when
from rdtadvisor.model.capacity import BandwidthCapacity, socket_capacity, socket_totals
from rdtadvisor.model.figures import empty_figures, per_collection
from rdtadvisor.render.prometheus import render_prometheus
from rdtadvisor.store import Store

SNAPSHOT_TABLES = ("samples", "facts", "settings")


def latest_snapshot(store: Store, hosts: Sequence[str]
                    ) -> tuple[dict[str, pd.Timestamp], dict[str, pd.DataFrame]]:
    """Each host's latest collection time and the rows of `SNAPSHOT_TABLES` at that time.

    The times are read once and every table is read at them, so a ``collect`` appending
    meanwhile cannot mix two collections in one snapshot (``Store.latest`` per table would
    look the time up again for each table).
    """
    times = store.latest_times(hosts) if hosts else {}
    tables = {}
    for table in SNAPSHOT_TABLES:
        parts = [store.read(table, hosts=h, since=t, until=t + pd.Timedelta(1, "ns"))
                 for h, t in sorted(times.items())]
        parts = [p for p in parts if len(p)]
        tables[table] = (pd.concat(parts, ignore_index=True) if parts
                         else store.read(table, hosts=[], since=None))
    return times, tables


@click.group("export")
def command() -> None:
    """Write the store's latest figures for other tools (Prometheus)."""


@command.command("prometheus")
@click.option("--host", "hosts", multiple=True,
              help="Only this host (repeatable; default: every stored host).")
@click.option("--output", "-o", default="-", show_default=True, metavar="FILE",
              help="File to replace atomically (e.g. node_exporter's textfile folder/rdtadvisor.prom); "
                   "'-' is stdout.")
@click.option("--since", default="7d", show_default=True, metavar="WHEN",
              help="History for the observed-peak bandwidth capacity of sockets with no configured "
                   "capacity: a span before each host's latest collection (7d) or an ISO time.")
@click.pass_context
def prometheus(ctx: click.Context, hosts: tuple[str, ...], output: str, since: str) -> None:
    """Each host's latest figures in the Prometheus text format (node_exporter textfile collector).

    Per VM and socket: L3 occupancy and total/local/remote memory bandwidth. Per socket: L3
    size, sums, bandwidth capacity (config or observed peak), COS used and budget. Per host:
    RMIDs used and available, and the time of the latest collection (alert on its age).
    """
    try:
        parse_when(since)  # a typo is a usage error before any store work
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--since") from None
    configured = bandwidth_capacity(settings_of(ctx))
    store, wanted = open_store(ctx, hosts)
    times, tables = latest_snapshot(store, wanted)
    if not times:
        raise RdtError(f"{store.path}: no collections in the store; run `rdtadvisor collect` first")
    starts = {h: parse_when(since, now=t) for h, t in times.items()}
    figures = per_collection(tables["samples"])
    history = _history(store, starts, configured)
    # The latest collection counts towards the peak even when --since is later than it.
    both = [f for f in (history, figures) if len(f)]
    totals = socket_totals(pd.concat(both, ignore_index=True)
                           .drop_duplicates(["host", "time", "socket", "domid"], keep="last")
                           if len(both) > 1 else figures if len(figures) else history)
    capacity = socket_capacity(figures, tables["facts"], tables["settings"], configured, totals=totals)
    text = render_prometheus(figures, capacity,
                             stale={h: t.timestamp() for h, t in times.items()})
    if output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomic(Path(output), text)


def _history(store: Store, starts: dict[str, pd.Timestamp], configured: BandwidthCapacity) -> pd.DataFrame:
    """Total-bandwidth figures since `starts` of the hosts whose capacity is not configured:
    the observed peak is the only use of history, and a week of samples is the expensive read."""
    parts = []
    for host, start in sorted(starts.items()):
        if configured.of(host):
            continue
        samples = store.read("samples", hosts=host, since=start)
        # Only the total bandwidth feeds the peak: skip the median of everything else.
        figures = per_collection(samples[(samples["metric"] == "mem_bw_total").to_numpy()])
        if len(figures):
            parts.append(figures)
    return pd.concat(parts, ignore_index=True) if parts else empty_figures()
