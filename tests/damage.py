"""Damaged captures for property tests: what ssh cut-offs, bad disks and wrong files do to xl output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from rdtadvisor.core.errors import ParseError
from rdtadvisor.core.text import from_bytes


def escaped(name: str) -> str:
    """What a parser makes of `name` printed as UTF-8: rdtadvisor.core.text's escaped form
    (backslashes doubled), the form records hold and renderers take."""
    return from_bytes(name.encode("utf-8"))


def parses_or_parse_error(parse: Callable[..., Any], data: Any, **kwargs: Any) -> None:
    """`parse` either succeeds or raises ParseError naming the source; anything else fails the test."""
    try:
        parse(data, source="fuzz", **kwargs)
    except ParseError as e:  # XlReportedError is a ParseError
        assert "fuzz" in str(e)


@st.composite
def mutated(draw, texts: st.SearchStrategy[bytes]) -> bytes:
    """Valid output damaged as captures get damaged: cut, lines swapped/dropped/doubled, bytes flipped."""
    data = draw(texts)
    lines = data.split(b"\n")
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["truncate", "swap", "drop", "double", "flip", "insert"]))
        if how == "truncate":
            data = b"\n".join(lines)
            lines = data[: draw(st.integers(0, len(data)))].split(b"\n")
        elif how in ("swap", "drop", "double") and lines:
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if how == "swap":
                lines[i], lines[j] = lines[j], lines[i]
            elif how == "drop":
                del lines[i]
            else:
                lines.insert(j, lines[i])
        elif how == "flip":
            blob = bytearray(b"\n".join(lines))
            if blob:
                blob[draw(st.integers(0, len(blob) - 1))] = draw(st.integers(0, 255))
            lines = bytes(blob).split(b"\n")
        else:
            lines.insert(draw(st.integers(0, len(lines))), draw(st.binary(max_size=30)))
    return b"\n".join(lines)
