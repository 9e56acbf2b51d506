"""``rdtadvisor top``: a live terminal view of each host's latest figures per socket and VM.

    rdtadvisor top                          # redraw every 5 s until Ctrl-C
    rdtadvisor top --host xen-sky01 --sort bandwidth --limit 20
    rdtadvisor top --once > snapshot.txt    # one frame (automatic when stdout is not a tty)

Meant to run next to ``rdtadvisor collect --count N --interval 60s`` appending to the same
store: every redraw re-reads each host's latest collection. Store reads take the store's
lock shared, for milliseconds, so they never block or break a writer; the figures are those
of collections already committed.

A host is flagged STALE when its latest collection is older than 3 times its usual
collection step (the median gap between its recent collections, never less than
``--interval``): it is the collector's rhythm, not the redraw's, that says when data
should have arrived.

Exit status (docs/exit-codes.md): 0 (Ctrl-C included); 3 the store cannot be read; 2 usage or
config error.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Sequence

import click
import pandas as pd

from rdtadvisor.cli.context import open_store
from rdtadvisor.cli.export import latest_snapshot
from rdtadvisor.core import clock
from rdtadvisor.core.errors import RdtError
from rdtadvisor.model.capacity import socket_capacity
from rdtadvisor.model.figures import collection_step, per_collection
from rdtadvisor.render.top import SORTS, fit, render_top, top_rows
from rdtadvisor.store import Store

STALE_STEPS = 3
_HOME, _ERASE_LINE, _ERASE_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"


@click.command("top")
@click.option("--host", "hosts", multiple=True,
              help="Only this host (repeatable; default: every stored host, new ones included).")
@click.option("--sort", type=click.Choice(SORTS), default="occupancy", show_default=True,
              help="Largest L3 occupancy or total bandwidth first, or by VM name.")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Show the first N rows only. [all that fit the terminal]")
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              metavar="SECONDS", help="Re-read the store and redraw this often.")
@click.option("--once", is_flag=True, help="Print one frame and exit (the default when stdout is not a tty).")
@click.pass_context
def command(ctx: click.Context, hosts: tuple[str, ...], sort: str, limit: int | None,
            interval: float, once: bool) -> None:
    """Live view of the latest L3 occupancy and memory bandwidth per host, socket and VM.

    The header gives each host's latest collection time and age; STALE marks a host whose
    collector seems to have stopped. Ctrl-C quits.
    """
    store, _ = open_store(ctx, hosts)
    tty = sys.stdout.isatty()
    live = tty and not once
    try:
        while True:
            size = shutil.get_terminal_size((120, 24))
            try:
                frame = build_frame(store, hosts, sort, limit, interval, size.columns)
            except RdtError as e:
                if not live:
                    raise
                # A transient read error must not end a live view: show it, try again next tick.
                frame = f"rdtadvisor top: {e}\n"
            if live:
                # Overwrite in place (home, erase each line's rest, erase below) rather than
                # clearing first: no flicker. Lines past the screen would scroll it and break
                # the next redraw, so the frame is cut to the terminal's height.
                # Lines longer than the screen would wrap, with the same effect: cut them too.
                lines = [fit(ln, size.columns).rstrip() for ln in frame.splitlines()[:max(1, size.lines - 1)]]
                sys.stdout.write(_HOME + "".join(f"{ln}{_ERASE_LINE}\n" for ln in lines) + _ERASE_BELOW)
            else:
                sys.stdout.write(frame)
            sys.stdout.flush()
            if not live:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        # Ctrl-C is how a live view ends: a normal exit, not click's "Aborted!" (130).
        return


def build_frame(store: Store, hosts: Sequence[str], sort: str, limit: int | None, interval: float,
                width: int, now: pd.Timestamp | None = None) -> str:
    """One frame from the store as it is now: `hosts` (default: every stored host)."""
    wanted = list(hosts) or store.hosts()
    times, tables = latest_snapshot(store, wanted)
    figures = per_collection(tables["samples"])
    capacity = socket_capacity(figures, tables["facts"], tables["settings"])
    rows = top_rows(figures, capacity, sort, limit)
    stale = {h: STALE_STEPS * max(_step(store, h, t), pd.Timedelta(seconds=interval))
             for h, t in times.items()}
    now = clock.now() if now is None else now
    return render_top(rows, {h: times.get(h) for h in wanted}, now, width, stale_after=stale)


def _step(store: Store, host: str, latest: pd.Timestamp) -> pd.Timedelta:
    """The host's usual collection step: the median gap of its collections of the last day
    before `latest` (one minute when it has only one)."""
    recent = store.collections(host, since=latest - pd.Timedelta(days=1))
    return collection_step(recent["time"])
