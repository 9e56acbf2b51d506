"""Text bound for a terminal: untrusted characters made visible and harmless.

VM names come from ``xl list`` and are chosen by whoever owns the guest. Printed raw, a name
holding ESC, another C0/C1 control, DEL or a bidi override could move the cursor, retitle
the window, hide the lines above it or reorder the rest of the line. Every text and Markdown
output of the CLI goes through `printable_lines`; a single name inside a comment or a cell
goes through `printable`. Each such character becomes ``?`` so that the reader sees that a
name was odd rather than a silently shortened name. (``rdtadvisor top`` drops them instead,
in `rdtadvisor.render.top.clean`, because its columns are fitted to the screen.)

Below: the one escaped form of bytes that are not UTF-8 (`from_bytes`, `from_raw`, `to_bytes`),
which names and texts from xl take everywhere past the parsers.
"""

from __future__ import annotations

import re


def printable(text: object) -> str:
    """``str(text)`` with every non-printable character (controls, bidi overrides, line
    breaks, tabs) as ``?``."""
    return "".join(c if c.isprintable() else "?" for c in str(text))


def printable_lines(text: str) -> str:
    """`printable` for a whole report: its own newlines are kept, nothing else."""
    return "\n".join(printable(line) for line in text.split("\n"))


# --- bytes that are not UTF-8 ------------------------------------------------------------
#
# xl prints domain names as the bytes the guest's owner chose; they need not be UTF-8. Every
# name and text that comes from xl is kept in ONE escaped form, everywhere (store, JSON, HTML,
# text, Prometheus, scripts' comments; docs/nomenclature.md, "Names that are not UTF-8"):
#
#   * valid UTF-8 is kept as it is (``café``, U+200B and all);
#   * a byte that is not part of valid UTF-8 is written ``\xNN`` (two lowercase hex digits);
#   * a backslash is written ``\\``, so that the form is reversible: `to_bytes` gives back
#     exactly the bytes xl printed (what generated scripts compare ``xl domname`` with).
#
# Raw text inside rdtadvisor (a command's stdout and stderr, a capture file's contents) is
# decoded with ``surrogateescape`` and turned into the escaped form by the parsers, once.

_RAW_SPECIAL = re.compile("[\\\\\udc80-\udcff]")
_ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2})")
_ANY_SURROGATE = re.compile("[\ud800-\udfff]")
_OTHER_SURROGATE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def _escape_one(m: re.Match[str]) -> str:
    c = m.group(0)
    return "\\\\" if c == "\\" else f"\\x{ord(c) - 0xDC00:02x}"


def raw_bytes(text: str | bytes | bytearray) -> bytes:
    """Raw text (decoded with ``surrogateescape``) back to the bytes it was read from."""
    if isinstance(text, bytes | bytearray):
        return bytes(text)
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no byte decoded to (from JSON, say)
        return b"".join(c.encode("utf-8", "surrogatepass" if _OTHER_SURROGATE.match(c) else "surrogateescape")
                        for c in text)


def from_raw(text: str) -> str:
    """Raw text (undecodable bytes as ``surrogateescape`` surrogates) in the escaped form."""
    if text.isascii() and "\\" not in text:
        return text
    if _OTHER_SURROGATE.search(text):
        text = raw_bytes(text).decode("utf-8", "surrogateescape")
    return _RAW_SPECIAL.sub(_escape_one, text)


def is_text(text: str) -> bool:
    """True unless `text` holds surrogates: bytes that were not UTF-8 (``surrogateescape``)."""
    return text.isascii() or not _ANY_SURROGATE.search(text)


def from_bytes(data: bytes | bytearray) -> str:
    """Bytes as printed in the escaped form: UTF-8 kept, ``\\\\`` for a backslash, ``\\xNN`` for
    a byte that is not UTF-8."""
    return from_raw(bytes(data).decode("utf-8", "surrogateescape"))


def to_raw(text: str) -> str:
    """An escaped text as raw text (``surrogateescape``): what xl printed, for renderers."""
    return to_bytes(text).decode("utf-8", "surrogateescape")


def to_bytes(text: str) -> bytes:
    """The exact bytes an escaped text stands for (the inverse of `from_bytes`). A backslash
    that starts neither ``\\\\`` nor ``\\xNN`` stands for itself."""
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(text):
        out += text[pos:m.start()].encode("utf-8", "surrogatepass")
        esc = m.group(1)
        out += b"\\" if esc == "\\" else bytes([int(esc[1:], 16)])
        pos = m.end()
    out += text[pos:].encode("utf-8", "surrogatepass")
    return bytes(out)
