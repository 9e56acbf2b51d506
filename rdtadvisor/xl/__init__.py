"""The xl language. Enter: the text an `xl` command printed; leave: plain records. One
parser module per command, behind one `parse()`.

========================  ==========================  =====================
command                   module                      record
========================  ==========================  =====================
``xl psr-hwinfo``         `rdtadvisor.xl.hwinfo`      ``HwInfo``
``xl psr-cmt-show T``     `rdtadvisor.xl.cmt`         ``CmtTable``
``xl psr-cat-show [-l]``  `rdtadvisor.xl.cat`         ``CatTable``
``xl psr-mba-show``       `rdtadvisor.xl.mba`         ``MbaTable``
``xl list``               `rdtadvisor.xl.domains`     ``DomainList``
``xl info``               `rdtadvisor.xl.hostinfo`    ``HostInfo``
========================  ==========================  =====================

Every record has ``to_dict()`` (the JSON contract in its module docstring) and
``table_rows()`` (flat rows for ``--format table``). Parsers are pure: text in,
record out, `rdtadvisor.core.errors.ParseError` on anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from rdtadvisor.xl.commands import XlCommand, parse_command


class Record(Protocol):
    def to_dict(self) -> dict[str, Any]: ...
    def table_rows(self) -> list[dict[str, Any]]: ...


def parse(command: XlCommand | str | Sequence[str], text: str | bytes, *, source: str = "<stdin>") -> Record:
    """Parse the stdout of `command` (as typed, e.g. ``"xl psr-cat-show -l 2"``): bytes, or raw text
    decoded with ``surrogateescape``. Names and texts come back in `rdtadvisor.core.text`'s escaped form."""
    cmd = command if isinstance(command, XlCommand) else parse_command(command)
    # Imported here so a broken parser module cannot stop the others from loading.
    if cmd.name == "psr-cmt-show":
        from rdtadvisor.xl import cmt
        assert cmd.metric is not None
        return cmt.parse(text, cmd.metric, source=source, command=str(cmd))
    if cmd.name == "psr-cat-show":
        from rdtadvisor.xl import cat
        return cat.parse(text, level=cmd.level, source=source)
    if cmd.name == "psr-hwinfo":
        from rdtadvisor.xl import hwinfo
        return hwinfo.parse(text, source=source)
    if cmd.name == "psr-mba-show":
        from rdtadvisor.xl import mba
        return mba.parse(text, source=source)
    if cmd.name == "list":
        from rdtadvisor.xl import domains
        return domains.parse(text, source=source)
    if cmd.name == "info":
        from rdtadvisor.xl import hostinfo
        return hostinfo.parse(text, source=source)
    raise AssertionError(cmd.name)  # parse_command only returns parsed commands


__all__ = ["Record", "XlCommand", "parse", "parse_command"]
