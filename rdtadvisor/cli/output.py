"""Shared output plumbing for CLI commands: JSON and aligned text tables."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rdtadvisor.core.errors import RdtError
from rdtadvisor.core.text import printable_lines

if TYPE_CHECKING:
    import pandas as pd


def dump_json(data: Any) -> str:
    """Stable JSON: two-space indent, keys in contract order, UTF-8 names kept readable."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def echo_text(text: str) -> None:
    """Print a text or Markdown rendering: untrusted names cannot drive the terminal
    (`rdtadvisor.core.text`)."""
    click.echo(printable_lines(text), nl=False)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as dicts for JSON, NaN as null (JSON has no NaN)."""
    return [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
            for r in frame.to_dict(orient="records")]


def text_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Left-aligned text columns; numbers right-aligned. Empty input prints '(no rows)'."""
    if not rows:
        return "(no rows)\n"
    cols = list(columns or rows[0].keys())
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    numeric = [all(isinstance(r.get(c), int | float) or r.get(c) is None for r in rows) for c in cols]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    return "\n".join([line(cols), line(["-" * w for w in widths]), *(line(r) for r in cells)]) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def format_option(choices: Sequence[str], default: str):
    return click.option("--format", "fmt", type=click.Choice(list(choices)), default=default,
                        show_default=True, help="Output format.")


def host_file_part(host: str) -> str:
    """`host` as part of a file name: letters, digits, ``.``, ``_`` and ``-`` kept, anything else
    (``/``, spaces, controls, other scripts) as ``_``, no leading ``-`` or ``.`` (a file name
    must not read as an option). When that changed the name, the start of the SHA-256 of the
    real one is appended, so that two hosts never share a file."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", host).lstrip("-.")
    if safe == host:
        return host
    digest = hashlib.sha256(host.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{safe or 'host'}-{digest}"


def script_paths(script_path: Path, hosts: Sequence[str]) -> dict[str, tuple[Path, Path]]:
    """Per host: (script, rollback script): FILE for a single host, else FILE.<host>.sh with the
    host made safe for a file name (`host_file_part`); the rollback is <that>.rollback.sh."""
    out = {}
    for host in hosts:
        path = script_path if len(hosts) == 1 else \
            script_path.with_name(f"{script_path.stem}.{host_file_part(host)}.sh")
        out[host] = (path, path.with_name(path.name.removesuffix(".sh") + ".rollback.sh"))
    return out


def write_scripts(path: Path, text: str, rollback: Path, undo: str) -> None:
    """Write a script and its rollback, both executable (0755), the rollback first: a plan
    must never land on disk without the way back. An OSError is an RdtError naming the file."""
    for target, body in ((rollback, undo), (path, text)):
        write_executable(target, body)
    click.echo(f"wrote {path} and {rollback}", err=True)


def write_executable(path: Path, text: str) -> None:
    """`write_atomic`, then mode 0755. An OSError is an RdtError naming the file."""
    write_atomic(path, text)
    try:
        path.chmod(0o755)
    except OSError as e:
        raise RdtError(f"{path}: cannot make executable: {e.strerror or e}") from e


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) so that a reader sees the old file or the new one,
    never a mix: write a temporary file in the same folder (same filesystem, so the rename
    is atomic), fsync it, ``os.replace`` it, fsync the folder.

    The temporary name starts with a dot and ends in ``.tmp`` (node_exporter only reads
    ``*.prom``, so it never picks it up); the file gets the mode a plain open() would give.
    Any OSError becomes an RdtError naming `path`, and the temporary file is removed.
    """
    folder = path.parent if str(path.parent) else Path(".")
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            # mkstemp makes 0600; node_exporter usually runs as another user, so give the
            # file the mode a plain open() would (0666 minus the umask).
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(f.fileno(), 0o666 & ~umask)
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        raise RdtError(f"{path}: cannot write: {e.strerror or e}") from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):  # the error that got us here is the one to report
                os.unlink(tmp)
