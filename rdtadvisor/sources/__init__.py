"""Where captures come from: the local `xl`, `xl` over ssh, or a folder of saved captures.

A *runner* runs one argv on one host and returns a `CommandResult`; the collector
(`rdtadvisor.collect`) drives runners and packs their results into a `Capture`.
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
