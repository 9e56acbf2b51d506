"""``rdtadvisor curves``: every VM's estimated L3 miss curve, and how sure it is.

    rdtadvisor curves
    rdtadvisor curves --host xen-sky01 --format csv

The curves `advise cat` plans with (`rdtadvisor.model.curves.fit_all` over the stored history):
per VM its class, the fit's quality, the exponent with its 90 % band, the knee, the
occupancies the history covered, and its misses per second predicted holding one way, half
the ways and the whole L3 (best estimate and 90 % band). Without MBM (Haswell-EP) the curves
come from occupancy shares after a calibration sweep (`rdtadvisor.model.shares`), marked
``relative``: their misses/s carry one unknown scale per socket. Curves the history could not
measure (class priors, or flat-looking fits from shared periods only) are listed at the end
with the command that measures them (`rdtadvisor calibrate`). Exit status 0, or 2 for an
unknown ``--host`` (docs/exit-codes.md).

JSON shape (stable): ``{"curves": [{column: value}]}`` with the columns of
`rdtadvisor.model.curvefit.TABLE_COLUMNS` (NaN as null); CSV: the same columns.
"""

from __future__ import annotations

import math
from typing import Any

import click
import pandas as pd

from rdtadvisor.cli.context import open_store
from rdtadvisor.cli.options import WHEN
from rdtadvisor.cli.output import dump_json, echo_text, format_option, records, text_table
from rdtadvisor.model.capacity import socket_facts
from rdtadvisor.model.curvefit import IDLE_BW, MIB, fit_table
from rdtadvisor.model.curves import fit_all
from rdtadvisor.model.shares import occupancy_only
from rdtadvisor.render import markdown


@click.command("curves")
@click.option("--host", "hosts", multiple=True,
              help="Only this host (repeatable; default: every stored host).")
@click.option("--since", type=WHEN, default=None,
              help="History from this time: ISO 8601 or 7d, 24h before now.")
@format_option(["text", "json", "csv", "markdown"], "text")
@click.pass_context
def command(ctx: click.Context, hosts: tuple[str, ...], since: pd.Timestamp | None, fmt: str) -> None:
    """Each VM's estimated L3 miss curve: class, fit quality, exponent and knee with their
    uncertainty, and misses/s holding 1 way, half the ways and the whole L3."""
    store, wanted = open_store(ctx, hosts)
    history = {t: store.read(t, hosts=wanted, since=since) for t in ("samples", "facts", "settings")}
    samples, facts = history["samples"], history["facts"]
    fits = fit_all(samples, facts, history["settings"]) if len(samples) else {}
    sizes = {k: (sf.l3_bytes, sf.ways) for k, sf in socket_facts(facts).items() if sf.l3_bytes and sf.ways}
    table = fit_table(fits, sizes=sizes, names=_names(samples))
    for host in _without_mbm(samples):
        click.echo(f"rdtadvisor: {host}: no memory-bandwidth samples (no MBM on this CPU, or not collected): "
                   "curves come from occupancy shares, in relative units, once a calibration sweep has "
                   "varied the pools (rdtadvisor calibrate)", err=True)
    if fmt == "json":
        click.echo(dump_json({"curves": records(table)}), nl=False)
    elif fmt == "csv":
        click.echo(table.to_csv(index=False), nl=False)
    else:
        echo_text(render_text(table, markdown=fmt == "markdown"))


def _without_mbm(samples: pd.DataFrame) -> list[str]:
    """Hosts with occupancy samples but no total-bandwidth samples (Haswell-EP has no MBM)."""
    return sorted({host for host, _socket in occupancy_only(samples)})


def _names(samples: pd.DataFrame) -> dict[tuple[str, int], str]:
    """(host, domid) -> the domain's latest name."""
    if samples.empty:
        return {}
    last = samples.sort_values("time", kind="stable").drop_duplicates(["host", "domid"], keep="last")
    rows = zip(last["host"], last["domid"], last["domain"], strict=True)
    return {(str(h), int(d)): str(n) for h, d, n in rows if pd.notna(n)}


def _rate(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    if x >= 1e5:
        return f"{x / 1e6:.1f}M"
    return f"{x / 1e3:.0f}k" if x >= 1e3 else f"{x:.0f}"


def render_text(table: pd.DataFrame, *, markdown: bool = False) -> str:
    """The table for a terminal (or Markdown), then the curves that need a calibration."""
    rows = []
    for r in table.to_dict("records"):
        rows.append({
            "host": r["host"], "socket": r["socket"], "domid": r["domid"], "domain": r["domain"] or "-",
            "kind": r["kind"],
            "quality": ", ".join([r["quality"], *(["unmeasured"] if not r["measured"] else []),
                                  *(["relative"] if _flag(r.get("relative")) else [])]),
            "alpha [90%]": f"{r['alpha']:.2f} [{r['alpha_lo']:.2f}-{r['alpha_hi']:.2f}]",
            "knee MiB": _knee(r),
            "seen MiB": f"{r['occupancy_p5_bytes'] / MIB:.1f}-{r['occupancy_p95_bytes'] / MIB:.1f}",
            "misses/s 1 way": _band(r, "1way"), "half": _band(r, "half"), "all ways": _band(r, "all"),
        })
    out = _markdown(rows) if markdown else text_table(rows)
    if any(_flag(x) for x in table.get("relative", ())):
        out += ("\nrelative: no MBM on that CPU; the curve comes from occupancy shares "
                "(rdtadvisor.model.shares) and its misses/s are in relative units, "
                "one unknown scale per socket.\n")
    todo = table[~table["measured"] & (table["bandwidth_bytes_s"] >= IDLE_BW)]
    if len(todo):
        who = ", ".join(f"{h}/{s}:{d if d else i}" for h, s, d, i in
                        zip(todo["host"], todo["socket"], todo["domain"], todo["domid"], strict=True))
        out += (f"\n{len(todo)} curve(s) not measured (class priors, or flat-looking from shared periods "
                f"only): {who}. `rdtadvisor calibrate` schedules a sweep that measures them"
                f"{' (Domain-0 only when named with --vm)' if (todo['domid'] == 0).any() else ''}.\n")
    return out


def _flag(x: Any) -> bool:
    """A boolean cell that may be missing (None or NaN: False)."""
    return x is not None and x == x and bool(x)


def _knee(r: dict[str, Any]) -> str:
    knee = r["knee_bytes"]
    if r["quality"] == "fallback" and r["kind"] != "small":
        return "-"             # a class prior's knee is the L3 size, not something seen
    return f"{knee / MIB:.1f}" if math.isfinite(knee) else "none seen"


def _band(r: dict[str, Any], at: str) -> str:
    best, lo, hi = r[f"misses_{at}"], r[f"misses_{at}_lo"], r[f"misses_{at}_hi"]
    return f"{_rate(best)} [{_rate(lo)}-{_rate(hi)}]" if math.isfinite(best) else "-"


def _markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)\n"
    cols = list(rows[0])
    return "\n".join(markdown.table(cols, [[markdown.escape(r[c]) for c in cols] for r in rows])) + "\n"
