"""Sources. Enter: hosts (this machine's `xl`, `xl` over ssh) or folders of saved captures;
leave: `Capture`s, the raw text, stderr and exit status of every command.

A *runner* runs one argv on one host and returns a `CommandResult`; the collector
(`rdtadvisor.sources.collect`) drives runners and packs their results into a `Capture`;
`attach` starts CMT monitoring of unmonitored domains.
Runners never raise for a failed command: failure is data (exit status, stderr,
`error`), so one bad host or command never stops the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rdtadvisor.sources.capture import Capture, CommandResult


class Runner(Protocol):
    """Runs xl commands on one host."""

    host: str

    def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        """Run `argv` (``("xl", "psr-hwinfo")``) and return what happened. Never raises for
        command failures, timeouts or unreachable hosts: `CommandResult.error` says why."""
        ...

    def close(self) -> None:
        """Release connections (ssh master); safe to call twice."""
        ...


__all__ = ["Capture", "CommandResult", "Runner"]
