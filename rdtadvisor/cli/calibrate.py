"""`rdtadvisor calibrate`: a time-boxed schedule of temporary masks that measures VMs' miss curves."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from rdtadvisor.cli.context import open_store, settings_of
from rdtadvisor.cli.options import WHEN
from rdtadvisor.cli.output import dump_json, echo_text, script_paths, text_table, write_scripts
from rdtadvisor.core.timewindow import parse_span

if TYPE_CHECKING:
    import pandas as pd

    from rdtadvisor.advise.calibrate import CalibrationPlan


MAX_SECONDS = 30 * 86_400  # --duration, --interval: longer is a typo (or inf)


def _seconds(text: str, option: str) -> int:
    """``2h`` / ``30m`` / ``90s`` (or a bare number of seconds) -> seconds; UsageError otherwise."""
    t = text.strip()
    try:
        value = float(t)
    except ValueError:
        span = parse_span(t)
        if span is None or "ago" in t.lower():
            raise click.UsageError(f"{option} {text!r}: not a duration (try 90s, 30m or 2h)") from None
        value = span.total_seconds()
    if not 0 < value <= MAX_SECONDS:   # False for nan
        raise click.UsageError(f"{option} {text!r}: must be positive, and at most 30 days")
    return round(value)


@click.command("calibrate")
@click.option("--host", "hosts", multiple=True,
              help="Only this host (repeatable; default: every stored host).")
@click.option("--vm", "vms", multiple=True,
              help="Sweep this domain (by name; repeatable). Default: every monitored domain whose fitted "
                   "curve is not good, highest bandwidth first (Domain-0 only when named).")
@click.option("--duration", default="2h", show_default=True,
              help="Time box: sweeps that would end later are left out (90s, 30m, 2h).")
@click.option("--hold", type=click.IntRange(min=1), default=10, show_default=True,
              help="Collections each level is held.")
@click.option("--interval", default=None,
              help="The collector's interval (60s, 5m). Default: the median gap between the host's "
                   "stored collections.")
@click.option("--since", type=WHEN, default=None,
              help="History from this time: ISO 8601 or 7d, 24h before now (default: all stored history).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format.")
@click.option("--script", "script_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a POSIX shell script per host that runs the sweep on it (FILE, or "
                   "FILE.<host>.sh for several hosts, the host's name made safe for a file name) and its "
                   "rollback (.rollback.sh).")
@click.pass_context
def command(ctx: click.Context, hosts: tuple[str, ...], vms: tuple[str, ...], duration: str, hold: int,
            interval: str | None, since: pd.Timestamp | None, fmt: str, script_path: Path | None) -> None:
    """Schedule temporary L3 masks that measure the miss curves of VMs lacking history.

    Each chosen VM gets 3/4, 1/2, 1/4, ... of the ways (narrowing: of its own run, from 1/2),
    each level held --hold collections; one VM per socket at a time, sockets in parallel.
    On a socket where every domain is at the default mask (private sweep) the VM gets the
    top k ways alone and every other domain is confined to the low W-k ways meanwhile; on
    a partitioned socket (narrowing sweep) the VM's mask shrinks inside its own run. Then
    every setting goes back. Nothing is applied here: review the schedule, run the script
    on the host while the collector keeps running, then run `rdtadvisor advise cat`.
    """
    from rdtadvisor.advise.calibrate import plan_calibration
    from rdtadvisor.render.calibration_script import scripts_by_host

    time_box = _seconds(duration, "--duration")
    interval_s = _seconds(interval, "--interval") if interval is not None else None
    store, names = open_store(ctx, hosts)
    history = {t: store.read(t, hosts=names, since=since) for t in ("samples", "facts", "settings")}
    # the config's [cat] min_bits: no level or fence narrower than any host's minimum
    cat = settings_of(ctx).cat
    min_bits = max([cat.min_bits, *(int(o["min_bits"]) for o in cat.hosts.values() if "min_bits" in o)])
    plan = plan_calibration(history, hosts=names, vms=vms, duration_s=time_box, hold=hold,
                            interval_s=interval_s, min_bits=min_bits)
    if fmt == "json":
        click.echo(dump_json(plan.to_dict()), nl=False)
    else:
        echo_text(_text(plan))
    if script_path is None:
        return
    paths = script_paths(script_path, [h.host for h in plan.hosts if h.sweeps])
    scripts = scripts_by_host(plan, {h: back.name for h, (_p, back) in paths.items()})
    for host, (apply, undo) in scripts.items():
        path, back = paths[host]
        write_scripts(path, apply, back, undo)
    if not scripts:
        click.echo("no script written: nothing to sweep", err=True)


def _clock(seconds: int) -> str:
    h, rest = divmod(int(seconds), 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


def _text(plan: CalibrationPlan) -> str:
    out: list[str] = []
    for h in plan.hosts:
        n = len(h.sweeps)
        out.append(f"{h.host}: {n} VM sweep(s), {_clock(h.duration_s)} of the {_clock(h.time_box_s)} "
                   f"time box; each level held {h.hold} x {h.interval_s} s = {h.hold_s} s")
        for s in h.sockets:
            out.append(f"  socket {s.socket}: {s.design} sweep, COS {s.cos_used} of {s.cos_budget} in use "
                       "today"
                       + (", CDP: each level sets code and data together, the restore each half as it was"
                          if s.cdp else ""))
            out.append(f"    {s.design_reason}")
            if s.design == "private":
                # The cost of a private sweep falls on the neighbours: say it where it is read.
                others = len(s.touched) - 1
                out.append(f"    during a level of k ways the {others} other domain(s) are confined to the "
                           f"low {s.cbm_len}-k ways: they run with less cache for that time")
            rows = [{"domid": w.domid, "vm": w.name if w.name is not None else "-",
                     "levels (ways)": ", ".join(str(lv.ways) for lv in w.levels),
                     **({"others (ways)": ", ".join(str(int(lv.fence).bit_count()) for lv in w.levels
                                                    if lv.fence is not None)}
                        if s.design == "private" else {}),
                     "start": _clock(w.start_s), "duration": _clock(w.duration_s),
                     "why": _short(w.why)} for w in s.sweeps]
            out += ["    " + line for line in text_table(rows).splitlines()]
        # One line per (socket, reason): on a multi-socket host every domain is listed on every
        # socket, and is idle on all but the one it runs on.
        groups: dict[tuple[int | None, str], list[str]] = {}
        for k in h.skipped:
            who = f"{k.name if k.name is not None else '-'} ({k.domid})" if k.domid is not None else ""
            groups.setdefault((k.socket, k.reason), []).append(who)
        for (socket, reason), who in groups.items():
            where = "host" if socket is None else f"socket {socket}"
            named = [w for w in who if w]
            out.append(f"  skipped {where}{' ' + ', '.join(named) if named else ''}: {reason}")
        if not h.sweeps:
            out.append("  nothing to sweep on this host")
        out.append("")
    if not plan.hosts:
        out.append("nothing to calibrate: the store holds no host")
    return "\n".join(out).rstrip() + "\n"


def _short(why: str, width: int = 70) -> str:
    return why if len(why) <= width else why[: width - 3] + "..."
