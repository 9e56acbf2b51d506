"""Socket blocks: the tokenizer shared by `xl psr-cat-show` and `xl psr-mba-show`.

Both commands print one block per socket through ``psr_print_socket`` and
``psr_print_one_domain_val(_type)`` (``docs/xl-formats.md``, psr-cat-show and psr-mba-show;
the same on 4.6 ... today)::

    printf("%-16s: %u\\n", "Socket ID", id);
    printf("%-16s: %uKB\\n", "L3 Cache", kib);              psr-cat-show at level 3 only
    printf("%-16s: %#llx\\n", "Default CBM", cbm);         or "Default THRTL" for MBA
    printf("%5s%25s%16s[%16s]\\n", "ID", "NAME", col...);   CBM | CBM (code) CBM (data) | THRTL
    per domain:  printf("%5d%25s", domid, name);  then per column a 16-wide cell;  printf("\\n");

Blocks follow each other with no blank line. This module is the first stage (jc's
``universal.py``): it cuts the text into `Block`s of *string* cells, each with its line
number; `rdtadvisor.xl.cat` and `rdtadvisor.xl.mba` type the cells.

Quirks handled here:

* A name of 25 or more bytes collides with the ID (``   12a-very-long-...``): the ID is
  always ``line[0:5]``, each value cell the 16 bytes sliced from the *right* end, the
  name whatever lies between, less the left padding. ``%25s`` pads by bytes, so slicing
  is done on bytes. Names are taken not to start with a space (a wider-than-25 name
  field that does means the row does not line up: `ParseError`).
* Xen 4.6 prints nothing at all for a value it could not read: the row is just
  ``%5d%25s`` (`Row.cells` is None when the caller allows that). Such a row is told from
  a full one by its last 16 bytes not being a value cell; a long name whose last 16 bytes
  read like one (``<spaces>0xff``) is ambiguous and is taken as a cell.
* xl's error texts (``Failed to get info`` ...; see `rdtadvisor.xl.failures`) may be the
  whole output, or be mixed in by ``2>&1`` captures, where stderr usually comes *first*
  because stdout is buffered. Alone they raise `XlReportedError`; next to complete data
  they become warnings.
* A block that stops before its table header is truncated. At level 3 that is what xl
  prints when it cannot read the L3 size (it needs CMT); the caller passes that hint.
* CRLF line endings; blank lines anywhere are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rdtadvisor.core.errors import ParseError, XlReportedError
from rdtadvisor.core.text import from_bytes, raw_bytes, to_bytes
from rdtadvisor.xl import failures

ID_W, NAME_W, CELL_W = 5, 25, 16          # %5d, %25s, %16s
ROW_MIN = ID_W + NAME_W                   # a row is never shorter: %25s pads

KNOWN_KEYS = ("Socket ID", "L3 Cache", "Default CBM", "Default THRTL")
# Key words are separated by single spaces, so matching stays linear on long lines.
_KEY = re.compile(rb"^([A-Za-z][A-Za-z0-9()]*(?: [A-Za-z0-9()]+)*) *: *(.*)$")
_SOCKET_ID = re.compile(rb"^[0-9]+$")
_HEADER = re.compile(rb"^ *ID +NAME((?: +[A-Za-z()]+)*) *$")
_HEADER_TITLE = re.compile(rb"CBM \((?:code|data)\)|[A-Za-z()]+")
_ID_FIELD = re.compile(rb"^ *[0-9]+$")
# One value cell: right-aligned in 16 bytes. Values never fill the width (CBMs are at most
# 32 bits, 10 characters with 0x), so at least one space leads.
_CELL = re.compile(rb"^ +(error|0x[0-9A-Fa-f]+|[0-9]+)$")


@dataclass(frozen=True)
class KeyLine:
    """A ``Key : value`` line of a block, value as printed."""

    value: str
    lineno: int
    line: str


@dataclass(frozen=True)
class Row:
    """One domain row. `cells` are the stripped value tokens (``error``, ``0x1f``, ``0``, ``10``),
    in header order; None when the row printed no value at all (Xen 4.6)."""

    lineno: int
    line: str
    domid: int
    name: str
    cells: tuple[str, ...] | None


@dataclass(frozen=True)
class Block:
    """One socket block: its ``Socket ID``, the other key lines, header titles and rows."""

    socket: int
    lineno: int
    keys: Mapping[str, KeyLine]
    columns: tuple[str, ...]
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Blocks:
    """What `tokenize` found: the blocks in printed order, and xl error lines seen next to them."""

    blocks: tuple[Block, ...]
    warnings: tuple[str, ...]


@dataclass
class _Open:
    """A block being read."""

    socket: int
    lineno: int
    last_lineno: int
    last_line: str
    keys: dict[str, KeyLine]
    columns: tuple[str, ...] | None = None
    rows: list[Row] | None = None


def tokenize(text: str | bytes, *, keys: Sequence[str], headers: Sequence[tuple[str, ...]],
             source: str, command: str, allow_missing: bool = False,
             missing_hints: Mapping[str, str] | None = None,
             unexpected_hints: Mapping[str, str] | None = None,
             kind_hints: Mapping[str, str] | None = None) -> Blocks:
    """Cut `text` into socket blocks.

    Parameters
    ----------
    keys : the key lines each block has after ``Socket ID``, in order
        (``("L3 Cache", "Default CBM")``).
    headers : the accepted header titles, e.g. ``[("CBM",), ("CBM (code)", "CBM (data)")]``.
    command : the command name, for messages (``psr-cat-show``).
    allow_missing : accept rows with no value cell (Xen 4.6 CAT).
    missing_hints : key -> sentence added when a block is truncated where that key was due.
    unexpected_hints : key -> sentence added when that key turns up out of place.
    kind_hints : failure kind -> sentence added when xl's own error text is the answer.

    Raises `XlReportedError` when the output is (or ends in) xl's error text, and
    `ParseError` for anything else that is not this format.
    """
    lines = _lines(text)
    if not any(line.strip() for line in lines):
        raise failures.no_output(source=source, detail=f"; is this {command} output?")
    missing_hints = missing_hints or {}
    unexpected_hints = unexpected_hints or {}
    kind_hints = kind_hints or {}

    def fail(reason: str, lineno: int, line: str) -> ParseError:
        return ParseError(reason, source=source, lineno=lineno, line=line)

    blocks: list[Block] = []
    errors: list[tuple[int, str, failures.Failure]] = []
    seen: set[int] = set()
    cur: _Open | None = None

    def close(block: _Open) -> None:
        if block.columns is None:
            expected = ([*keys, None])[len(block.keys) - 1]
            what = f"'{expected}'" if expected else "the 'ID NAME ...' table header"
            reason = f"truncated: the block of socket {block.socket} ends before {what}"
            hint = missing_hints.get(expected or "")
            if errors:
                lineno, line, failure = _main_failure(errors)
                raise XlReportedError(f"{reason}; xl reported {failure.kind}: {failure.message}"
                                      + _sentence(hint or kind_hints.get(failure.kind)),
                                      kind=failure.kind, source=source, lineno=lineno, line=line)
            raise fail(reason + _sentence(hint), block.last_lineno, block.last_line)
        blocks.append(Block(block.socket, block.lineno, dict(block.keys), block.columns,
                            tuple(block.rows or ())))

    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        line = _s(raw)
        key = _KEY.match(raw)
        if key and _s(key.group(1)) in KNOWN_KEYS:
            name, value = _s(key.group(1)), _s(key.group(2).rstrip(b" "))
            if name == "Socket ID":
                if cur is not None:
                    close(cur)
                if not _SOCKET_ID.match(key.group(2).rstrip(b" ")):
                    raise fail("'Socket ID' is not a number", lineno, line)
                socket = int(value)
                if socket in seen:
                    raise fail(f"socket {socket} is printed twice", lineno, line)
                seen.add(socket)
                cur = _Open(socket, lineno, lineno, line, {"Socket ID": KeyLine(value, lineno, line)})
                continue
            if cur is None:
                raise fail(f"'{name}' line before any 'Socket ID' line"
                           + _sentence(unexpected_hints.get(name)), lineno, line)
            if cur.columns is not None:
                raise fail(f"'{name}' line after the table header of socket {cur.socket}; expected a "
                           "domain row or the next 'Socket ID'" + _sentence(unexpected_hints.get(name)),
                           lineno, line)
            due = len(cur.keys) - 1
            if due >= len(keys) or keys[due] != name:
                expected = f"'{keys[due]}'" if due < len(keys) else "the 'ID NAME ...' table header"
                raise fail(f"expected {expected}, got a '{name}' line"
                           + _sentence(unexpected_hints.get(name)), lineno, line)
            cur.keys[name] = KeyLine(value, lineno, line)
            cur.last_lineno, cur.last_line = lineno, line
            continue

        header = _HEADER.match(raw)
        if header:
            if cur is None:
                raise fail("table header before any 'Socket ID' line", lineno, line)
            if cur.columns is not None:
                raise fail(f"second table header in the block of socket {cur.socket}", lineno, line)
            if len(cur.keys) - 1 < len(keys):
                due = keys[len(cur.keys) - 1]
                raise fail(f"table header before the '{due}' line" + _sentence(missing_hints.get(due)),
                           lineno, line)
            columns = tuple(_s(t) for t in _HEADER_TITLE.findall(header.group(1)))
            if columns not in headers:
                accepted = " or ".join(repr(" ".join(h)) for h in headers)
                raise fail(f"unexpected value columns {' '.join(columns)!r} for {command} "
                           f"(expected {accepted})", lineno, line)
            cur.columns, cur.rows = columns, []
            continue

        if _ID_FIELD.match(raw[:ID_W]):
            if cur is None or cur.columns is None or cur.rows is None:
                raise fail("domain row before the table header", lineno, line)
            cur.rows.append(_row(raw, lineno, line, len(cur.columns), allow_missing, fail))
            continue

        failure = failures.classify(line)
        if failure is None:
            raise fail(f"not a line of {command} output", lineno, line)
        if failure.kind == "usage":  # the help text follows; nothing else will parse
            raise XlReportedError(f"xl reported usage: {failure.message}", kind="usage", source=source,
                                  lineno=lineno, line=line)
        errors.append((lineno, line, failure))

    if cur is not None:
        close(cur)
    if not blocks:
        lineno, line, failure = _main_failure(errors)
        others = [f.message for _, _, f in errors if f is not failure]
        also = f" (also: {'; '.join(others)})" if others else ""
        raise failures.reported(failure, source=source, lineno=lineno, line=line,
                                detail=also + _sentence(kind_hints.get(failure.kind)))
    return Blocks(tuple(blocks), tuple(f"xl: {f.message}" for _, _, f in errors))


def _row(raw: bytes, lineno: int, line: str, k: int, allow_missing: bool,
         fail: Callable[[str, int, str], ParseError]) -> Row:
    """``%5d%25s`` then `k` 16-byte cells, sliced from the right (long names shift the cells)."""
    if len(raw) < ROW_MIN:
        raise fail(f"domain row shorter than the {ROW_MIN} bytes of '%5d%25s' (cut off?)", lineno, line)
    domid = int(raw[:ID_W])
    no_cells = f"domain row does not end in {k} value cell(s) of {CELL_W} characters"
    end = len(raw) - CELL_W * k
    cells: tuple[str, ...] | None = None
    if end >= ROW_MIN:
        found = [_CELL.match(raw[i:i + CELL_W]) for i in range(end, len(raw), CELL_W)]
        if all(found):
            cells = tuple(_s(m.group(1)) for m in found if m)
    if cells is None:
        if not allow_missing or _CELL.match(raw[-CELL_W:]):
            raise fail(no_cells, lineno, line)
        end = len(raw)  # Xen 4.6: nothing printed after the name
    field = raw[ID_W:end]
    # %25s pads on the left up to 25 bytes only: a wider field is all name, and names do not
    # start with a space, so a wide field that does is a row that does not line up.
    if len(field) > NAME_W and field.startswith(b" "):
        raise fail(no_cells if cells is None else
                   f"domain row does not line up with '%5d%25s' and {k} cell(s) of {CELL_W} characters",
                   lineno, line)
    return Row(lineno, line, domid, _s(field.lstrip(b" ")), cells)


def _main_failure(errors: list[tuple[int, str, failures.Failure]]) -> tuple[int, str, failures.Failure]:
    """The failure to report: xl's own summary line (the last one not from libxl), else the first."""
    own = [e for e in errors if not e[1].lstrip().startswith("libxl:")]
    return own[-1] if own else errors[0]


def _lines(text: str | bytes) -> list[bytes]:
    data = raw_bytes(text)
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def _sentence(hint: str | None) -> str:
    return f" ({hint})" if hint else ""


def _s(raw: bytes) -> str:
    return from_bytes(raw)  # the escaped form of rdtadvisor.core.text


def pad(name: str, width: int = NAME_W) -> str:
    """C's ``%25s``: right-align `name` (escaped form) in `width` *bytes*, as xl prints it (raw)."""
    raw = to_bytes(name)
    return " " * max(0, width - len(raw)) + raw.decode("utf-8", "surrogateescape")


def hex_cell(value: int) -> str:
    """C's ``%#llx``: ``0x1f``, but plain ``0`` for zero."""
    return "%#x" % value if value else "0"
