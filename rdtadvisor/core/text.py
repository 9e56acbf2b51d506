"""Text bound for a terminal: untrusted characters made visible and harmless.

VM names come from ``xl list`` and are chosen by whoever owns the guest. Printed raw, a name
holding ESC, another C0/C1 control, DEL or a bidi override could move the cursor, retitle
the window, hide the lines above it or reorder the rest of the line. Every text and Markdown
output of the CLI goes through `printable_lines`; a single name inside a comment or a cell
goes through `printable`. Each such character becomes ``?`` so that the reader sees that a
name was odd rather than a silently shortened name. (``rdtadvisor top`` drops them instead,
in `rdtadvisor.render.top.clean`, because its columns are fitted to the screen.)
"""

from __future__ import annotations


def printable(text: object) -> str:
    """``str(text)`` with every non-printable character (controls, bidi overrides, line
    breaks, tabs) as ``?``."""
    return "".join(c if c.isprintable() else "?" for c in str(text))


def printable_lines(text: str) -> str:
    """`printable` for a whole report: its own newlines are kept, nothing else."""
    return "\n".join(printable(line) for line in text.split("\n"))
