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
from rdtadvisor.core.text import from_raw, is_text
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
_FILE_RE = re.compile(r"^[^/\\\x00.][^/\\\x00]*\.txt$")   # a plain file name in the capture folder


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


def read_capture(path: Path, host: str | None = None, *, max_bytes: int | None = None) -> Capture:
    """Read one capture folder. Without meta.json, argv come from the file names.

    Raises `ParseError` naming the folder for a bad folder name, and naming meta.json and the
    key for a meta.json that is not JSON or whose keys do not have the layout's shapes. A
    ``.txt`` file over `max_bytes` raises `ParseError` naming it, before it is read.
    """
    path = Path(path)
    where = from_raw(str(path))
    if not _TIME_RE.match(path.name):
        raise ParseError("capture folder name is not a UTF-8 time like 20261126T104700Z", source=where)
    meta_path = path / META
    meta = _read_meta(meta_path) if meta_path.exists() else {}
    commands = _commands(meta, from_raw(str(meta_path)))
    capture = Capture(host=host or meta.get("host") or path.parent.name, time=parse_time(path.name),
                      source=f"replay:{path}", path=path)
    names = sorted(p.name for p in path.iterdir() if p.suffix == ".txt" and not p.name.startswith("."))
    for name in sorted(set(names) | set(commands)):
        info = commands.get(name, {})
        argv = tuple(info.get("argv") or argv_for_file(name) or ())
        if not argv:
            raise ParseError("file is not part of the capture layout and meta.json has no argv for it",
                             source=from_raw(str(path / name)))
        parse_command(argv)  # validates; a ConfigError here names a broken meta.json entry
        file = path / name
        stdout = ""
        if file.exists():
            size = file.stat().st_size
            if max_bytes is not None and size > max_bytes:
                raise ParseError(f"{size} bytes, over the limit of {max_bytes} for one xl output "
                                 "([collect] max_output_bytes)", source=from_raw(str(file)))
            stdout = file.read_text(encoding="utf-8", errors="surrogateescape")
        started = info.get("started")
        capture.results[name] = CommandResult(
            argv=argv, stdout=stdout, stderr=info.get("stderr") or "",
            exit_status=info.get("exit_status", 0 if file.exists() else None),
            started=started, seconds=info.get("seconds") or 0.0, error=info.get("error"))
    return capture


def _read_meta(meta_path: Path) -> dict[str, Any]:
    source = from_raw(str(meta_path))
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ParseError(f"unreadable meta.json ({e})", source=source) from e
    if not isinstance(meta, dict):
        raise ParseError(f"must be a JSON object, not {_kind(meta)}", source=source)
    host = meta.get("host")
    if host is not None and not (isinstance(host, str) and host.strip() and is_text(host)):
        raise ParseError(f"'host': must be a host name (a non-empty string), not {_shown(host)}",
                         source=source)
    return meta


def _commands(meta: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """meta.json's "commands", every entry checked and typed (`started` a datetime, `seconds` a float)."""
    commands = meta.get("commands")
    if commands is None:
        return {}
    if not isinstance(commands, dict):
        raise ParseError(f"'commands': must be an object of file name -> command, not {_kind(commands)}",
                         source=source)
    out = {}
    for name, info in commands.items():
        at = f"commands.{json.dumps(name, ensure_ascii=False)}"
        if not _FILE_RE.match(name) or not is_text(name):
            raise ParseError(f"{at}: not a capture file name (NAME.txt in the capture folder)", source=source)
        if not isinstance(info, dict):
            raise ParseError(f"{at}: must be an object (argv, exit_status, stderr, ...), not {_kind(info)}",
                             source=source)
        entry = dict(info)
        argv = entry.get("argv")
        if argv is not None and not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)):
            raise ParseError(f"{at}.argv: must be a list of strings", source=source)
        status = entry.get("exit_status", 0)
        if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
            raise ParseError(f"{at}.exit_status: must be an integer or null, not {_shown(status)}",
                             source=source)
        for key in ("stderr", "error"):
            if entry.get(key) is not None and not isinstance(entry[key], str):
                raise ParseError(f"{at}.{key}: must be a string or null", source=source)
        started = entry.get("started")
        if started is not None:
            try:
                entry["started"] = datetime.fromisoformat(started)
            except (TypeError, ValueError):
                raise ParseError(f"{at}.started: not an ISO 8601 time: {_shown(started)}",
                                 source=source) from None
        seconds = entry.get("seconds")
        if seconds is not None:
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds < 1e9:
                raise ParseError(f"{at}.seconds: must be a number of seconds >= 0, not {_shown(seconds)}",
                                 source=source)
            entry["seconds"] = float(seconds)
        out[name] = entry
    return out


def _kind(value: Any) -> str:
    return {list: "a list", dict: "an object", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__)


def _shown(value: Any) -> str:
    return from_raw(repr(value)) if not isinstance(value, float) else repr(value)


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
