"""`rdtadvisor parse`: parse one captured stdout file of an xl command."""

from __future__ import annotations

from pathlib import Path

import click

from rdtadvisor import xl
from rdtadvisor.cli.output import dump_json, echo_text, format_option, text_table
from rdtadvisor.core.errors import ParseError


@click.command("parse")
@click.option("--command", "command_line", required=True, metavar='"XL COMMAND LINE"',
              help='The xl command that printed FILE, as typed: "xl psr-cat-show -l 2", '
                   '"xl psr-cmt-show total-mem-bandwidth". It decides the format.')
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path))
@format_option(("json", "table"), "json")
def command(command_line: str, file: Path, fmt: str) -> None:
    """Parse FILE (one captured stdout of an xl psr-* command; - for stdin) and print it.

    JSON is the stable contract: sizes in bytes, rates in bytes/s (Xen prints KiB).
    Exit status 3 with one line on stderr if FILE is not that command's output.
    """
    cmd = xl.parse_command(command_line)
    source = "<stdin>" if str(file) == "-" else str(file)
    try:
        data = click.get_binary_stream("stdin").read() if str(file) == "-" else file.read_bytes()
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror}", source=source) from e
    # Bytes as they are: names that are not UTF-8 come out in core.text's escaped form.
    record = xl.parse(cmd, data, source=source)
    if fmt == "json":
        click.echo(dump_json(record.to_dict()), nl=False)
    else:
        echo_text(text_table(record.table_rows()))
        for warning in record.to_dict().get("warnings", []):
            click.echo(f"warning: {source}: {warning}", err=True)
