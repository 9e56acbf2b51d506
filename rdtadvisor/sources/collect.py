"""Collection: run the xl commands on hosts, keep what they printed, turn it into history.

``sources -> Capture -> frames -> store``. One `HostResult` per host; a host that
fails becomes a value with an `error`, never an exception that stops the fleet.
"""

from __future__ import annotations

import shlex
import time as _time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from rdtadvisor.core import clock
from rdtadvisor.core.config import HostConfig
from rdtadvisor.core.errors import ConfigError, ParseError, RdtError, SourceError
from rdtadvisor.core.hostnames import check_host
from rdtadvisor.core.text import from_raw, is_text
from rdtadvisor.sources import Runner
from rdtadvisor.sources.capture import Capture, CommandResult, find_captures, read_capture
from rdtadvisor.xl import hostinfo, hwinfo
from rdtadvisor.xl.commands import BANDWIDTH_METRICS, capture_name, collection_commands

HUNG_AFTER = 2  # commands in a row that time out before a host counts as not answering


@dataclass
class HostResult:
    """The outcome of collecting (or replaying) one host once."""

    host: str
    capture: Capture | None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def runner_for(host: HostConfig) -> Runner:
    """The runner that reaches `host`: the local xl, or xl over the system ssh client."""
    if host.local:
        from rdtadvisor.sources.local import LocalRunner
        return LocalRunner(host)
    from rdtadvisor.sources.ssh import SshRunner
    return SshRunner(host)


def collect_host(runner: Runner, *, readings: int = 3, timeout: float = 60.0) -> Capture:
    """Run one collection on `runner`'s host and return the raw `Capture`.

    `xl info` comes first: it tells the Xen version, which decides the commands
    (4.5 has no psr-hwinfo and spells ``cache_occupancy``; L2 CAT needs 4.10, MBA 4.11).
    `xl psr-hwinfo` then tells which features exist, so absent ones are not asked for.
    Bandwidth is read `readings` times (each figure is one 10 ms snapshot).
    Raises `SourceError` if the host cannot be reached, stops answering (`HUNG_AFTER` commands
    in a row time out) or gave nothing at all (`gave_nothing`): such a host is failed, not
    stored empty.
    """
    started = clock.now_datetime().replace(microsecond=0)
    capture = Capture(host=runner.host, time=started, source=type(runner).__name__)
    timeouts = 0

    def run(argv: tuple[str, ...], reading: int = 0) -> CommandResult:
        nonlocal timeouts
        result = runner.run(argv, timeout)
        if result.error is not None and not result.error.startswith("timed out"):
            raise SourceError(runner.host, result.error, argv)
        capture.results[capture_name(argv, reading)] = result
        timeouts = timeouts + 1 if result.error is not None else 0
        if timeouts >= HUNG_AFTER:
            raise SourceError(runner.host, f"{timeouts} xl commands in a row {result.error}: "
                              "the host does not answer", argv)
        return result

    info = run(("xl", "info"))
    version = _xen_version(info)
    hw = None
    plan = collection_commands(version, readings)[1:]
    seen: dict[str, int] = {}
    for argv in plan:
        if hw is not None and not _wanted(argv, hw):
            continue
        key = " ".join(argv)
        reading = seen.get(key, 0)
        seen[key] = reading + 1
        result = run(argv, reading)
        if argv[1] == "psr-hwinfo":
            hw = _hwinfo(result)
    nothing = gave_nothing(capture)
    if nothing is not None:
        raise SourceError(runner.host, nothing)
    return capture


def gave_nothing(capture: Capture, *, replay: bool = False) -> str | None:
    """Why `capture` holds nothing worth storing (no command printed anything), else None."""
    results = list(capture.results.values())
    if any(r.stdout.strip() for r in results):
        return None
    if not results:
        return "no xl command was run"
    if all(r.error is not None and r.error.startswith("timed out") for r in results):
        return f"every xl command timed out ({results[0].error})"
    nothing = "every capture file is empty" if replay else "no xl command printed anything"
    first = next((r for r in results if r.error is not None or r.exit_status != 0), None)
    if first is None:
        return nothing
    if first.error is not None:
        why = first.error
    else:
        said = [line.strip() for line in first.stderr.splitlines() if line.strip()]
        why = f"exited {first.exit_status}" + (f": {said[-1]}" if said else " with no message")
    return f"{nothing}; '{shlex.join(first.argv)}' {why}"


def collect_fleet(hosts: list[HostConfig], *, readings: int = 3, timeout: float = 60.0, parallel: int = 64,
                  make_runner: Callable[[HostConfig], Runner] = runner_for,
                  on_result: Callable[[HostResult], None] | None = None) -> list[HostResult]:
    """Collect every host, at most `parallel` at a time; results in the order of `hosts`.

    A slow host only holds its own worker; a dead one costs its ssh ConnectTimeout.
    """
    names = [h.name for h in hosts]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"host listed twice: {', '.join(dupes)}")

    def one(host: HostConfig) -> HostResult:
        t0 = _time.monotonic()
        runner = None
        try:
            runner = make_runner(host)
            capture = collect_host(runner, readings=readings, timeout=timeout)
            return HostResult(host.name, capture, None, _time.monotonic() - t0)
        except SourceError as e:  # its reason may quote ssh's or sudo's raw stderr
            return HostResult(host.name, None, from_raw(e.reason), _time.monotonic() - t0)
        except Exception as e:  # one broken host must never stop the fleet
            return HostResult(host.name, None, from_raw(f"internal error: {type(e).__name__}: {e}"),
                              _time.monotonic() - t0)
        finally:
            if runner is not None:
                runner.close()

    results: dict[str, HostResult] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(hosts) or 1))) as pool:
        futures = [pool.submit(one, h) for h in hosts]
        for future in as_completed(futures):
            result = future.result()
            results[result.host] = result
            if on_result is not None:
                on_result(result)
    return [results[n] for n in names]


def replay(root: Path, hosts: Iterable[str] | None = None, *, max_bytes: int | None = None,
           ) -> Iterator[HostResult]:
    """Read every capture under `root` (``<root>/<host>/<time>/``), oldest first per host.

    A capture folder that cannot be read (a file over `max_bytes`, a broken meta.json, all
    files empty) yields a failed `HostResult` naming it.
    """
    wanted = set(hosts) if hosts else None
    for path in find_captures(root):
        host = path.parent.name
        if wanted is not None and host not in wanted:
            continue
        if not is_text(host):  # host names are text (they name folders, partitions, config tables)
            yield HostResult(from_raw(host), None, f"{from_raw(str(path.parent))}: the host folder's name is "
                             "not UTF-8 text; rename it")
            continue
        try:
            capture = read_capture(path, max_bytes=max_bytes)
            check_host(capture.host, from_raw(str(path / "meta.json") if (path / "meta.json").exists()
                                              else str(path)))
            nothing = gave_nothing(capture)
            if nothing is not None:
                yield HostResult(host, None, f"{from_raw(str(path))}: {gave_nothing(capture, replay=True)}")
                continue
            yield HostResult(host, capture, None)
        except (RdtError, OSError) as e:
            # A ParseError names its file already (escaped); others may quote raw paths.
            yield HostResult(host, None, str(e) if isinstance(e, ParseError) else from_raw(f"{path}: {e}"))


def _xen_version(info: CommandResult) -> tuple[int, int] | None:
    if not info.ok:
        return None
    try:
        return hostinfo.parse(info.stdout, source="xl info").xen_major_minor
    except (ParseError, ValueError):
        return None


def _hwinfo(result: CommandResult) -> hwinfo.HwInfo | None:
    # psr-hwinfo's exit status reflects only its last section (docs/xl-formats.md): judge by stdout.
    try:
        return hwinfo.parse(result.stdout, source="xl psr-hwinfo")
    except ParseError:
        return None


def _wanted(argv: tuple[str, ...], hw: hwinfo.HwInfo) -> bool:
    """Skip commands for features psr-hwinfo says the host does not have."""
    cmd = argv[1]
    if cmd == "psr-cmt-show":
        if hw.cmt is None or not hw.cmt.enabled:
            return False
        metric = argv[2]
        return metric not in BANDWIDTH_METRICS or not hw.cmt.monitor_types or metric in hw.cmt.monitor_types
    if cmd == "psr-cat-show":
        return bool(hw.l2_cat) if "2" in argv[2:] else bool(hw.l3_cat)
    if cmd == "psr-mba-show":
        return bool(hw.mba)
    return True
