"""The `rdtadvisor` command. Enter: arguments and the config; leave: output and an exit code.
A thin click group over the library.

Each subcommand lives in its own module here and is attached with
``main.add_command``. Errors are caught once, in `main`, and printed as one line.
Exit codes: one table for every command, `rdtadvisor.cli.exits` (docs/exit-codes.md).
"""

from __future__ import annotations

import sys
import traceback
import warnings
from pathlib import Path

import click

from rdtadvisor import __version__
from rdtadvisor.cli.context import _LazySettings
from rdtadvisor.cli.exits import EXIT_DATA, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, add_epilog
from rdtadvisor.core.errors import ConfigError, RdtError, StoreWarning


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rdtadvisor")
@click.option("--store", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="History store folder (default: $RDTADVISOR_STORE, the config file, "
                   "~/.local/share/rdtadvisor/store).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TOML config file (default: $RDTADVISOR_CONFIG or ~/.config/rdtadvisor/config.toml).")
@click.option("--strict", is_flag=True,
              help="A host or VM the config names (per-host and per-VM tables) that matches nothing in "
                   "the store is an error, not a warning.")
@click.pass_context
def cli(ctx: click.Context, store: Path | None, config_path: Path | None, strict: bool) -> None:
    """Turn Xen's Intel RDT counters (xl psr-*) into cache and bandwidth decisions."""
    # Settings load lazily: `parse` and `--help` must work even with a broken config file.
    ctx.obj = _LazySettings(config_path, store, strict)


def _attach_commands() -> None:
    from rdtadvisor.cli import advise, attach, bench_advice, check, collect, parse, simulate, store, whatif
    from rdtadvisor.cli import export as export_cli
    from rdtadvisor.cli import top as top_cli

    for module in (parse, collect, attach, store, check, advise, simulate, whatif, bench_advice):
        cli.add_command(module.command)
    cli.add_command(export_cli.command)
    cli.add_command(top_cli.command)
    from rdtadvisor.cli import headroom, report

    cli.add_command(report.command)
    cli.add_command(headroom.command)
    from rdtadvisor.cli import calibrate
    from rdtadvisor.cli import curves as curves_cli

    cli.add_command(calibrate.command)
    cli.add_command(curves_cli.command)
    add_epilog(cli)


_attach_commands()


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """Our own warnings (a skipped store file) as one line on stderr; others as Python shows them."""
    if issubclass(category, StoreWarning):
        click.echo(f"rdtadvisor: warning: {message}", err=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)  # type: ignore[arg-type]


_python_showwarning = warnings.showwarning


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, turning expected errors into one line and the exit
    status of `rdtadvisor.cli.exits` (docs/exit-codes.md)."""
    warnings.showwarning = _show_warning
    try:
        rv = cli.main(args=argv, prog_name="rdtadvisor", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.UsageError as e:
        e.show()
        sys.exit(EXIT_USAGE)
    except click.ClickException as e:   # DataError, a file click could not open
        e.show()
        sys.exit(EXIT_DATA)
    except ConfigError as e:
        click.echo(f"rdtadvisor: error: {e}", err=True)
        sys.exit(EXIT_USAGE)
    except RdtError as e:               # no store, unreadable input: nothing was done
        click.echo(f"rdtadvisor: error: {e}", err=True)
        sys.exit(EXIT_DATA)
    except BrokenPipeError:
        sys.exit(EXIT_OK)
    except Exception as e:  # a bug: keep the traceback for the report, end in one known status
        traceback.print_exc()
        click.echo(f"rdtadvisor: internal error (a bug, please report it): {type(e).__name__}: {e}", err=True)
        sys.exit(EXIT_INTERNAL)
    sys.exit(rv if isinstance(rv, int) else EXIT_OK)
