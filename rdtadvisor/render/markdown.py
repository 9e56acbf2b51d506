"""Markdown for the CLI's reports and plans: escaping untrusted text, and tables.

VM names are untrusted (any guest owner picks one): in Markdown they must not become markup,
links, raw HTML or an extra table column once rendered, so every cell and name goes through
`escape`.
"""

from __future__ import annotations

from collections.abc import Sequence

from rdtadvisor.core.text import printable

_SPECIAL = "\\`*_{}[]()<>#+!|~"


def escape(text: object) -> str:
    """``text`` with control characters as ``?`` and Markdown's special characters escaped."""
    out = printable(text)
    for ch in _SPECIAL:
        out = out.replace(ch, "\\" + ch)
    return out


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a pipe table; cells are written as given (escape them first)."""
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(r) + " |" for r in rows)]
