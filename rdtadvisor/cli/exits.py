"""The one exit-status table of every `rdtadvisor` command (docs/exit-codes.md).

Cron jobs branch on these, so they mean the same in every command: 1 is always "some hosts
or files failed, the rest was done", 2 always a usage or config error, 3 always "nothing to
work on", 4 and 5 always findings. `rdtadvisor.cli.main` maps errors onto them; commands
return the others. Every command's ``--help`` ends with `EPILOG` (`add_epilog`).
"""

from __future__ import annotations

from typing import Any

import click

EXIT_OK = 0            # everything asked was done, nothing at or above the threshold found
EXIT_PARTIAL = 1       # some hosts/captures/files failed (each named on stderr); the rest was done
EXIT_USAGE = 2         # bad option, argument, --host or config file; nothing was done
EXIT_DATA = 3          # no store, no history in the window, a missing input; nothing was done
EXIT_WARNING = 4       # the command ran and found problems at warning level
EXIT_CRITICAL = 5      # the command ran and found a critical problem
EXIT_INTERNAL = 70     # a bug (EX_SOFTWARE): the traceback is on stderr
EXIT_INTERRUPTED = 130  # Ctrl-C

TABLE: dict[int, str] = {
    EXIT_OK: "ok", EXIT_PARTIAL: "partial", EXIT_USAGE: "usage", EXIT_DATA: "no data",
    EXIT_WARNING: "warning", EXIT_CRITICAL: "critical", EXIT_INTERNAL: "internal error",
    EXIT_INTERRUPTED: "interrupted",
}

EPILOG = ("Exit status: 0 ok, 1 some hosts or files failed (named on stderr), 2 usage or config error, "
          "3 no data (store, window or input missing), 4 warnings found, 5 critical found, 70 internal "
          "error; see docs/exit-codes.md.")


class DataError(click.ClickException):
    """Nothing to work on (no history in the window, an unreadable input or output file): one
    line on stderr, exit `EXIT_DATA`."""

    exit_code = EXIT_DATA

    def show(self, file: Any = None) -> None:
        click.echo(f"rdtadvisor: error: {self.format_message()}", err=True)


def add_epilog(command: click.Command) -> None:
    """End `command`'s help, and every subcommand's, with the exit-status line."""
    command.epilog = f"{command.epilog}\n\n{EPILOG}" if command.epilog else EPILOG
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_epilog(sub)
