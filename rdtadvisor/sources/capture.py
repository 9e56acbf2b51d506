"""The capture layout: raw `xl` output as it was printed, kept on disk.

Samples, ``collect --replay`` and ``collect --save-raw`` all use it::

    <dir>/<host>/<UTC time YYYYMMDDTHHMMSSZ>/
        xl-info.txt  xl-list.txt  xl-psr-hwinfo.txt
        xl-psr-cmt-show-cache-occupancy.txt
        xl-psr-cmt-show-total-mem-bandwidth.txt   (.1.txt, .2.txt: repeated readings)
        xl-psr-cmt-show-local-mem-bandwidth.txt   (.1.txt, .2.txt)
        xl-psr-cat-show.txt  xl-psr-cat-show-l2.txt  xl-psr-mba-show.txt
        meta.json   {"host", "time", "source", "commands": {file: {"argv", "exit_status",
                      "stderr", "started", "seconds", "error"}}}

Each ``.txt`` holds stdout only, byte for byte. Missing optional files are fine. A
folder is written under a dot-prefixed temporary name and renamed into place, so a
reader never sees half a capture.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rdtadvisor.core.errors import ParseError, StoreError
from rdtadvisor.xl.commands import parse_command

TIME_FORMAT = "%Y%m%dT%H%M%SZ"
_TIME_RE = re.compile(r"^\d{8}T\d{6}Z$")
META = "meta.json"
# File name -> argv, for captures without meta.json (hand-made samples).
_DEFAULT_ARGV = {
    "xl-info.txt": ("xl", "info"),
    "xl-list.txt": ("xl", "list"),
    "xl-psr-hwinfo.txt": ("xl", "psr-hwinfo"),
    "xl-psr-cmt-show-cache-occupancy.txt": ("xl", "psr-cmt-show", "cache-occupancy"),
    "xl-psr-cmt-show-total-mem-bandwidth.txt": ("xl", "psr-cmt-show", "total-mem-bandwidth"),
    "xl-psr-cmt-show-local-mem-bandwidth.txt": ("xl", "psr-cmt-show", "local-mem-bandwidth"),
    "xl-psr-cat-show.txt": ("xl", "psr-cat-show"),
    "xl-psr-cat-show-l2.txt": ("xl", "psr-cat-show", "-l", "2"),
    "xl-psr-mba-show.txt": ("xl", "psr-mba-show"),
}
_READING_RE = re.compile(r"^(?P<base>.+?)\.(?P<n>\d+)\.txt$")


@dataclass
class CommandResult:
    """What running one xl command produced. `exit_status` None: it never finished (see `error`)."""

    argv: tuple[str, ...]
    stdout: str = ""
    stderr: str = ""
    exit_status: int | None = 0
    started: datetime | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.exit_status == 0


@dataclass
class Capture:
    """One collection from one host: every command's result, keyed by capture file name."""

    host: str
    time: datetime
    results: dict[str, CommandResult] = field(default_factory=dict)
    source: str = "local"
    path: Path | None = None

    @property
    def stamp(self) -> str:
        return format_time(self.time)


def format_time(t: datetime) -> str:
    """UTC time as the capture folder name, e.g. ``20261126T104700Z``."""
    return t.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(stamp: str) -> datetime:
    """Inverse of `format_time`."""
    return datetime.strptime(stamp, TIME_FORMAT).replace(tzinfo=UTC)


def argv_for_file(name: str) -> tuple[str, ...] | None:
    """The xl argv a capture file name stands for (``None`` if the name is not in the layout)."""
    m = _READING_RE.match(name)
    base = f"{m.group('base')}.txt" if m else name
    return _DEFAULT_ARGV.get(base)


def reading_of(name: str) -> int:
    """``...bandwidth.2.txt`` -> 2; the first reading has no suffix -> 0."""
    m = _READING_RE.match(name)
    return int(m.group("n")) if m else 0


def write_capture(root: Path, capture: Capture) -> Path:
    """Write `capture` to ``root/<host>/<time>/`` atomically; returns the folder.

    Captures are immutable: if a folder for the same host and second already exists
    this raises `StoreError` rather than overwrite it.
    """
    host_dir = Path(root) / _safe_host(capture.host)
    final = host_dir / capture.stamp
    if final.exists():
        raise StoreError(f"{final}: a capture for {capture.host} at {capture.stamp} already exists")
    try:
        host_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{capture.stamp}.", dir=host_dir))
        meta: dict[str, Any] = {"host": capture.host, "time": capture.stamp, "source": capture.source,
                                "commands": {}}
        for name, result in capture.results.items():
            (tmp / name).write_text(result.stdout, encoding="utf-8", errors="surrogateescape")
            meta["commands"][name] = {
                "argv": list(result.argv), "exit_status": result.exit_status, "stderr": result.stderr,
                "started": None if result.started is None else result.started.isoformat(),
                "seconds": round(result.seconds, 4), "error": result.error,
            }
        # Compact: indent would switch json to its pure-Python encoder, the main cost of
        # writing a simulated fleet's hundreds of thousands of captures.
        (tmp / META).write_text(json.dumps(meta, sort_keys=True, separators=(",", ":")) + "\n",
                                encoding="utf-8")
        os.rename(tmp, final)
    except OSError as e:
        shutil.rmtree(locals().get("tmp", host_dir / ".none"), ignore_errors=True)
        raise StoreError(f"{final}: cannot save raw capture: {e.strerror or e}") from e
    capture.path = final
    return final


def read_capture(path: Path, host: str | None = None) -> Capture:
    """Read one capture folder. Without meta.json, argv come from the file names.

    Raises `ParseError` naming the folder for a bad folder name or a broken meta.json.
    """
    path = Path(path)
    if not _TIME_RE.match(path.name):
        raise ParseError("capture folder name is not a UTC time like 20261126T104700Z", source=str(path))
    meta: dict[str, Any] = {}
    meta_path = path / META
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as e:
            raise ParseError(f"unreadable meta.json ({e})", source=str(meta_path)) from e
    commands = meta.get("commands") or {}
    capture = Capture(host=host or meta.get("host") or path.parent.name, time=parse_time(path.name),
                      source=f"replay:{path}", path=path)
    names = sorted(p.name for p in path.iterdir() if p.suffix == ".txt" and not p.name.startswith("."))
    for name in sorted(set(names) | set(commands)):
        info = commands.get(name, {})
        argv = tuple(info.get("argv") or argv_for_file(name) or ())
        if not argv:
            raise ParseError("file is not part of the capture layout and meta.json has no argv for it",
                             source=str(path / name))
        parse_command(argv)  # validates; a ConfigError here names a broken meta.json entry
        file = path / name
        stdout = file.read_text(encoding="utf-8", errors="surrogateescape") if file.exists() else ""
        started = info.get("started")
        capture.results[name] = CommandResult(
            argv=argv, stdout=stdout, stderr=info.get("stderr") or "",
            exit_status=info.get("exit_status", 0 if file.exists() else None),
            started=datetime.fromisoformat(started) if started else None,
            seconds=float(info.get("seconds") or 0.0), error=info.get("error"))
    return capture


def find_captures(root: Path) -> list[Path]:
    """Every capture folder under `root` (``root/<host>/<time>/``, or `root` itself), sorted."""
    root = Path(root)
    if _TIME_RE.match(root.name):
        return [root]
    if not root.is_dir():
        raise StoreError(f"{root}: no such capture folder")
    found = [p for p in root.glob("*/*") if p.is_dir() and _TIME_RE.match(p.name)
             and not p.parent.name.startswith(".")]
    if not found and any(_TIME_RE.match(p.name) for p in root.iterdir() if p.is_dir()):
        found = [p for p in root.iterdir() if p.is_dir() and _TIME_RE.match(p.name)]  # root is a host dir
    return sorted(found, key=lambda p: (p.parent.name, p.name))


def _safe_host(host: str) -> str:
    # Host names come from config files and users: never let one escape the capture root.
    if not host or host in (".", "..") or "/" in host or "\0" in host:
        raise StoreError(f"host name {host!r} cannot be used as a folder name")
    return host
