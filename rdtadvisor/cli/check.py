"""``rdtadvisor check``: flag today's CAT masks that are invalid, wasteful or unused.

    rdtadvisor check
    rdtadvisor check --host xen-sky01 --format json
    rdtadvisor check --format markdown       # two tables: the sockets checked, the findings

Reads each host's latest collection from the store (read-only) and runs
`rdtadvisor.advise.check.check` (the rules and thresholds are documented there).
Exit status (docs/exit-codes.md): 0 nothing found, 4 findings (warnings), 2 usage or config
error (for example an unknown ``--host``), 3 no store.

JSON shape (stable)::

    {"findings": [{"host", "socket", "kind", "domid", "domain", "message", "evidence": {key: number}}],
     "checked": [{"host", "socket", "time", "cbm_len", "cdp", "cos_used", "cos_budget"}],
     "notes": ["..."]}
"""

from __future__ import annotations

import click

from rdtadvisor.advise.check import CheckReport, SocketSummary, check
from rdtadvisor.cli.context import open_store
from rdtadvisor.cli.exits import EXIT_OK, EXIT_WARNING
from rdtadvisor.cli.output import dump_json, echo_text
from rdtadvisor.render import markdown


@click.command("check")
@click.option("--host", "hosts", multiple=True,
              help="Only this host (repeatable; default: every stored host).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True, help="Output format (json: the stable shape in `rdtadvisor.cli.check`).")
@click.pass_context
def command(ctx: click.Context, hosts: tuple[str, ...], fmt: str) -> int:
    """Flag today's CAT masks that are invalid, overlap a streaming VM, are unused, or leave dom0 polluting.

    Exit status 0 when nothing is found, 4 when there are findings, 3 without a store.
    """
    store, wanted = open_store(ctx, hosts)
    tables = {t: store.latest(t, wanted) for t in ("settings", "facts", "samples", "domains")}
    report = check(tables)
    if fmt == "json":
        click.echo(dump_json(report.to_dict()), nl=False)
    else:
        echo_text(render_markdown(report) if fmt == "markdown" else render_text(report))
    return EXIT_WARNING if report.findings else EXIT_OK


def _cos(s: SocketSummary) -> str:
    return (f"COS {s.cos_used} of {s.cos_budget}" if s.cos_budget is not None
            else f"COS {s.cos_used} (budget unknown)")


def render_text(report: CheckReport) -> str:
    out = []
    for s in report.checked:
        cos = _cos(s)
        length = f"{s.cbm_len}-bit CBM" if s.cbm_len else "CBM length unknown"
        out.append(f"{s.host} socket {s.socket} ({s.time.isoformat()}): {length}"
                   f"{', CDP' if s.cdp else ''}, {cos}\n")
        for f in report.findings:
            if (f.host, f.socket) == (s.host, s.socket):
                out.append(f"  {f.kind}: {f.message}\n")
    seen = {(s.host, s.socket) for s in report.checked}
    for f in report.findings:
        if (f.host, f.socket) not in seen:
            out.append(f"{f.host} socket {f.socket}: {f.kind}: {f.message}\n")
    for n in report.notes:
        out.append(f"note: {n}\n")
    out.append(f"{len(report.findings)} finding(s) on {len(report.checked)} socket(s)\n")
    return "".join(out)


def render_markdown(report: CheckReport) -> str:
    """The sockets checked and the findings as two pipe tables; names and messages escaped."""
    esc = markdown.escape
    sockets = [[esc(s.host), str(s.socket), s.time.isoformat(), str(s.cbm_len or "?"),
                "yes" if s.cdp else "no", _cos(s).removeprefix("COS "),
                str(sum((f.host, f.socket) == (s.host, s.socket) for f in report.findings))]
               for s in report.checked]
    findings = [[esc(f.host), str(f.socket), f.kind, esc(f.domain if f.domain is not None else "-"),
                 esc(f.message)] for f in report.findings]
    columns = ["host", "socket", "collection", "CBM bits", "CDP", "COS used", "findings"]
    out = ["## Sockets checked", "", *markdown.table(columns, sockets), "", "## Findings", ""]
    out += (markdown.table(["host", "socket", "finding", "domain", "detail"], findings) if findings
            else ["No findings."])
    if report.notes:
        out += ["", *(f"- note: {esc(n)}" for n in report.notes)]
    out += ["", f"{len(report.findings)} finding(s) on {len(report.checked)} socket(s)"]
    return "\n".join(out) + "\n"
