"""xl's documented error texts, recognised wherever they turn up.

xl writes errors to stderr (``docs/xl-formats.md``, "Conventions every command shares");
captures made with ``2>&1`` mix them into stdout. `classify` maps one message to a stable ``kind`` so the
collector, the parsers and the reports speak about failures the same way.
Texts differ by Xen version (4.11 added the ``L3 CAT:``-style feature prefix
and dropped strerror); the patterns below accept every version's wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rdtadvisor.core.errors import XlReportedError

# (kind, pattern). Order matters: the first match wins, specific before generic.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern)) for kind, pattern in (
        ("command-not-implemented", r"command not implemented"),
        ("cmt-disabled", r"CMT is disabled in the system|CMT is not supported in this system"),
        ("monitor-type-unsupported", r"Monitor type '[^']*' is not supported in the system"),
        ("no-free-rmid", r"no free RMID available"),
        ("already-attached", r"CMT is already attached to this domain"),
        ("not-attached", r"CMT is not attached to this domain"),
        ("no-free-cos", r"no free COS available"),
        ("l3-size-unavailable", r"Failed to get (?:system )?l3 cache size for socket:\s*\d+"),
        ("feature-unsupported",
         r"(?:CAT|L3 CAT|L2 CAT|CDP|MBA):? is not (?:supported in this system|enabled on the socket)"),
        ("counter-overflow", r"event counter overflowed"),
        ("sample-failed", r"failed to get monitoring data"),
        ("invalid-domain", r"is an invalid domain identifier|invalid domain ID"
                           r"|^Error: Domain '.*' does not exist"),
        ("info-failed", r"Failed to get (?:L3 |L2 )?(?:cat )?info"),
        ("domain-list-failed", r"Failed to get domain (?:list|info)|libxl_list_domain failed"
                               r"|libxl_domain_info failed"),
        ("hostinfo-failed", r"libxl_(?:physinfo|get_version_info|get_numainfo|get_cpu_topology"
                            r"|get_pci_topology) failed|get_scheduler sysctl failed"),
        ("sockets-failed", r"Failed getting (?:available sockets|physinfo)"),
        ("rmid-failed", r"Failed to get max RMID value"),
        ("invalid-value", r"Invalid input or some internal values are not expected|unknown error: Invalid"),
        ("usage", r"^Usage: xl |requires at least \d+ argument|option `.' not supported"
                  r"|Input lvl \d+ is wrong"),
        ("libxl-error", r"^libxl: error: |^xc: error: "),
        ("libxl-warning", r"^libxl: warning: "),
    )
)


@dataclass(frozen=True, slots=True)
class Failure:
    """One recognised xl/libxl error message."""

    kind: str
    message: str


def classify(line: str) -> Failure | None:
    """Return the `Failure` a line of xl output reports, or None if it is not an error text."""
    text = line.strip()
    for kind, pattern in _PATTERNS:
        if pattern.search(text):
            return Failure(kind, _strip_libxl_prefix(text))
    return None


def classify_all(stderr: str) -> list[Failure]:
    """Every recognised failure in a stderr capture, in order."""
    return [f for f in (classify(line) for line in stderr.splitlines()) if f is not None]


def _strip_libxl_prefix(text: str) -> str:
    # "libxl: error: libxl_psr.c:71:fn: msg" -> "msg"; file:line:function change between
    # versions and mean nothing to an operator.
    m = re.match(r"^libxl: error: [^:]+:\d+:[^:]+: (.*)$", text)
    return m.group(1) if m else text


def reported(failure: Failure, *, source: str, lineno: int | None = None, line: str | None = None,
             detail: str = "") -> XlReportedError:
    """The error a parser raises when xl's own error text is the whole answer."""
    return XlReportedError(f"xl reported {failure.kind}: {failure.message}{detail}", kind=failure.kind,
                           source=source, lineno=lineno, line=line)


def no_output(*, source: str, detail: str = "") -> XlReportedError:
    """The error a parser raises for an empty stdout (a stderr-only failure)."""
    return XlReportedError(f"no output: xl printed nothing on stdout (its stderr says why{detail})",
                           kind="no-output", source=source)
