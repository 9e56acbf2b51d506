"""`rdtadvisor attach`: attach CMT monitoring to every live domain that lacks it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from rdtadvisor.cli.context import settings_of
from rdtadvisor.cli.exits import EXIT_OK, EXIT_PARTIAL
from rdtadvisor.cli.output import echo_text
from rdtadvisor.core.config import resolve_hosts
from rdtadvisor.core.text import printable
from rdtadvisor.sources.attach import AttachResult, attach_host
from rdtadvisor.sources.collect import runner_for


@click.command("attach")
@click.option("--host", "host_names", multiple=True, metavar="HOST",
              help="Host to attach on (repeatable); 'local' for this machine.")
@click.option("--hosts-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File with one host per line.")
@click.option("--dry-run", is_flag=True, help="Only say which domains would be attached.")
@click.option("--timeout", type=click.FloatRange(0.1), default=None, help="Seconds per xl command.")
@click.pass_context
def command(ctx: click.Context, host_names: tuple[str, ...], hosts_file: Path | None, dry_run: bool,
            timeout: float | None) -> None:
    """Attach CMT to every running domain not yet attached (unattached ones are invisible).

    Reports RMID exhaustion with the domains left unmonitored. Exit status: 0 all
    live domains monitored, 1 some could not be (or a host failed), 2 usage error.
    """
    settings = settings_of(ctx)
    hosts = resolve_hosts(settings, host_names, hosts_file)
    t = timeout or settings.timeout

    def one(host):
        runner = runner_for(host)
        try:
            return attach_host(runner, timeout=t, dry_run=dry_run)
        finally:
            runner.close()

    with ThreadPoolExecutor(max_workers=min(settings.parallel, len(hosts))) as pool:
        results = list(pool.map(one, hosts))
    for r in results:
        _print(r, dry_run)
    ctx.exit(EXIT_OK if all(r.ok for r in results) else EXIT_PARTIAL)


def _print(r: AttachResult, dry_run: bool) -> None:
    if r.error:
        click.echo(f"rdtadvisor: {r.host}: {r.error}", err=True)
        return
    verb = "would attach" if dry_run else "attached"
    names = ", ".join(f"{name} ({domid})" for domid, name in r.attached) or "none"
    echo_text(f"{r.host}: {verb} {len(r.attached)}: {names}; {len(r.already)} already attached"
              + (f"; Total RMID {r.total_rmid}" if r.total_rmid is not None else "") + "\n")
    for domid, name, reason in r.failed:
        if reason == "no-free-rmid":
            left = [n for _, n in r.skipped]
            click.echo(f"rdtadvisor: {r.host}: RMIDs exhausted (Total RMID {r.total_rmid}, all in use): "
                       f"{printable(name)} ({domid}) and {len(left)} more stay unmonitored"
                       + (f": {printable(', '.join(left))}" if left else ""), err=True)
        else:
            click.echo(f"rdtadvisor: {r.host}: cannot attach {printable(name)} ({domid}): {reason}", err=True)
