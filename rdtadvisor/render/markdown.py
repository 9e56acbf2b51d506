"""Markdown for the CLI's reports and plans: escaping untrusted text, and tables.

VM names are untrusted (any guest owner picks one): in Markdown they must not become links,
raw HTML, emphasis or an extra table column once rendered, so every cell and name goes
through `escape`. It escapes only what could do that inside a line (the text never starts
one), so ordinary text such as ``(19.0 GiB/s)`` or ``+153%`` stays as it is:

* ``\\`` (it would escape what follows) and ``|`` (a new table column), always;
* ``<`` (raw HTML, autolinks) and ``&`` before an entity name (``&lt;``);
* ``]`` before ``(`` or ``[``, which is what turns a bracket into a link or an image;
* ``*`` and ``~`` (emphasis, strikethrough), always; ``_`` only where it could open or close
  emphasis: not between two letters or digits (``web_01`` stays).

Backticks are left alone: the messages quote commands in them (`rdtadvisor calibrate`), and
a code span is the most inert markup there is (nothing inside it is interpreted).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rdtadvisor.core.text import printable

_ALWAYS = re.compile(r"[\\|<*~]|&(?=#?[0-9A-Za-z]+;)|\](?=[(\[])")
_UNDERSCORES = re.compile(r"_+")


def escape(text: object) -> str:
    """``text`` with control characters as ``?`` and the characters that would turn it into
    Markdown markup escaped (module docstring); for text inside a line, e.g. a table cell."""
    out = _ALWAYS.sub(lambda m: "\\" + m.group(0), printable(text))
    return _UNDERSCORES.sub(_underscores, out)


def _underscores(m: re.Match[str]) -> str:
    # GFM: a run of '_' between two alphanumerics neither opens nor closes emphasis
    s, i, j = m.string, m.start(), m.end()
    inside = i > 0 and j < len(s) and s[i - 1].isalnum() and s[j].isalnum()
    return m.group(0) if inside else "\\_" * (j - i)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a pipe table; cells are written as given (escape them first)."""
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(r) + " |" for r in rows)]
