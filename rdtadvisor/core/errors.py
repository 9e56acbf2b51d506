"""The exception family. The CLI catches `RdtError` once and prints one line."""

from __future__ import annotations


class RdtError(Exception):
    """Base class of every error rdtadvisor raises on purpose."""


class ParseError(RdtError):
    """Text that is not the format we expected.

    Carries where it happened (`source`, 1-based `lineno`), the offending `line`
    and a short `reason`, so the message alone lets a user find the problem.
    """

    def __init__(self, reason: str, *, source: str = "<stdin>", lineno: int | None = None,
                 line: str | None = None) -> None:
        self.reason = reason
        self.source = source
        self.lineno = lineno
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.source if self.lineno is None else f"{self.source}:{self.lineno}"
        text = "" if self.line is None else f": {self.line[:120]!r}"
        return f"{where}: {self.reason}{text}"


class XlReportedError(ParseError):
    """The text is one of xl's documented error messages rather than data.

    `kind` is a stable machine name for the failure (see `rdtadvisor.xl.failures`).
    """

    def __init__(self, reason: str, *, kind: str, source: str = "<stdin>", lineno: int | None = None,
                 line: str | None = None) -> None:
        self.kind = kind
        super().__init__(reason, source=source, lineno=lineno, line=line)


class SourceError(RdtError):
    """A host could not be reached or a command could not be run on it."""

    def __init__(self, host: str, reason: str, argv: tuple[str, ...] | None = None) -> None:
        self.host = host
        self.reason = reason
        self.argv = argv
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.host}: {self.reason}"


class StoreError(RdtError):
    """The history store could not be read or written."""


class StoreWarning(UserWarning):
    """Something in the store was skipped (an unreadable file); the CLI prints it as one line."""


class ConfigError(RdtError):
    """A bad config file, option or hosts file (exit status 2 in the CLI)."""


class PlanError(RdtError, ValueError):
    """A plan that Xen would reject (invalid mask, over the COS budget) or that is inconsistent.

    An `RdtError`, so the CLI prints it as one line (exit 1); a `ValueError` for library callers.
    """
