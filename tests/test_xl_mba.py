"""`xl psr-mba-show` parser: number bases, quirks, xl's error texts, and round trips with `render`."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rdtadvisor import xl
from rdtadvisor.core.errors import ParseError, XlReportedError
from rdtadvisor.xl import failures, mba
from rdtadvisor.xl.mba import MbaDomain, MbaSocket, MbaTable
from tests.damage import escaped, mutated, parses_or_parse_error
from tests.golden import FIXTURES

HM = "   ID                     NAME           THRTL\n"
# RECONSTRUCTED from xl's printf formats (docs/xl-formats.md, psr-mba-show)
LINEAR = ("Socket ID       : 0\nDefault THRTL   : 0\n" + HM
          + "    0                 Domain-0               0\n"
          + "    3              guest-web01              10\n")
NONLINEAR = ("Socket ID       : 0\nDefault THRTL   : 0\n" + HM
             + "    0                 Domain-0               0\n"
             + "    3              guest-web01             0x8\n"
             + "    4              guest-web02            0x40\n")


def block(socket: int, rows: str = "") -> str:
    return "%-16s: %u\n" % ("Socket ID", socket) + "%-16s: %u\n" % ("Default THRTL", 0) + HM + rows


def row(domid: int, name: str, cell: str) -> str:
    return "%5d%25s%16s\n" % (domid, name, cell)


# --- the documented examples and the number base --------------------------------------------

def test_linear_example_is_decimal():
    t = mba.parse(LINEAR)
    domains = (MbaDomain(0, "Domain-0", 0), MbaDomain(3, "guest-web01", 10))
    assert t == MbaTable((MbaSocket(0, 0, domains),), True)
    assert mba.render(t, linear=True) == LINEAR


def test_nonlinear_example_is_hex_and_zero_has_no_prefix():
    t = mba.parse(NONLINEAR)
    assert t.linear is False
    assert [d.thrtl for d in t.sockets[0].domains] == [0, 8, 64]
    assert mba.render(t, linear=False) == NONLINEAR


def test_given_mode_is_kept():
    assert mba.parse(LINEAR, linear=True).linear is True
    assert mba.parse(NONLINEAR, linear=False).linear is False


def test_unprefixed_token_in_hex_mode_must_be_zero():
    # '10' next to '0x8' is neither base consistently: xl never prints that
    with pytest.raises(ParseError, match="THRTL '10' is not hex") as info:
        mba.parse(block(0, row(3, "a", "10") + row(4, "b", "0x8")), source="m.txt")
    assert info.value.lineno == 4 and info.value.line == row(3, "a", "10").rstrip("\n")


def test_linear_true_with_hex_token_is_rejected():
    with pytest.raises(ParseError, match="hex THRTL in a table read as linear") as info:
        mba.parse(NONLINEAR, linear=True)
    assert info.value.lineno == 5


def test_linear_false_with_decimal_token_is_rejected():
    with pytest.raises(ParseError, match="THRTL '10' is not hex"):
        mba.parse(LINEAR, linear=False)


@pytest.mark.parametrize("linear", [None, True, False])
def test_only_zeros_reads_the_same_either_way(linear):
    text = block(0, row(0, "Domain-0", "0") + row(3, "guest-web01", "0") + row(4, "guest-web02", "error"))
    t = mba.parse(text, linear=linear)
    assert t.linear is linear
    assert [d.thrtl for d in t.sockets[0].domains] == [0, 0, None]
    assert mba.render(t, linear=True) == mba.render(t, linear=False) == text


def test_base_is_inferred_across_sockets():
    # socket 0 only zeros, socket 2 tells the base: hex
    t = mba.parse(block(0, row(0, "Domain-0", "0")) + block(2, row(0, "Domain-0", "0x10")))
    assert t.linear is False and t.sockets[1].domains[0].thrtl == 16
    assert [s.socket for s in t.sockets] == [0, 2]


# --- rows -------------------------------------------------------------------------------------

def test_long_name_null_name_spaces_and_error():
    rows = ("   12a-very-long-domain-name-that-exceeds            0x40\n"
            + row(7, "(null)", "error") + row(9, "noisy neighbour", "0x2"))
    t = mba.parse(block(1, rows))
    assert t.sockets[0].domains == (MbaDomain(12, "a-very-long-domain-name-that-exceeds", 64),
                                    MbaDomain(7, "(null)", None), MbaDomain(9, "noisy neighbour", 2))
    assert t.warnings == (
        "socket 1: domain '(null)' (id 7): xl could not read the THRTL and printed 'error'",)


def test_multi_socket_no_blank_lines_and_empty_tables():
    text = block(0) + block(1, row(0, "Domain-0", "20")) + block(3)
    t = mba.parse(text)
    assert [(s.socket, len(s.domains)) for s in t.sockets] == [(0, 0), (1, 1), (3, 0)]
    assert mba.render(t, linear=True) == text


def test_row_without_a_value_is_an_error_for_mba():
    # only Xen 4.6 CAT printed value-less rows; MBA (4.11+) always prints a cell
    with pytest.raises(ParseError, match="does not end in 1 value"):
        mba.parse(block(0, "    3              guest-web01\n"))


@pytest.mark.parametrize("as_bytes", [False, True])
def test_crlf(as_bytes):
    text = NONLINEAR.replace("\n", "\r\n")
    assert mba.parse(text.encode() if as_bytes else text) == mba.parse(NONLINEAR)


# --- wrong formats, truncation, xl's error texts ------------------------------------------------

@pytest.mark.parametrize("text, lineno, fragment", [
    ("Socket ID       : 0\n", 1, "truncated: the block of socket 0 ends before 'Default THRTL'"),
    (block(0)[:-len(HM)], 2, "truncated"),
    ("Socket ID       : 0\nDefault CBM     : 0xff\n", 2, "this is psr-cat-show output"),
    ("Socket ID       : 0\nL3 Cache        : 25600KB\n", 2, "this is psr-cat-show output"),
    ("Socket ID       : 0\nDefault THRTL   : x\n" + HM, 2, "'Default THRTL' is not a number"),
    (block(0).replace("THRTL\n", "CBM\n").replace("        CBM", "          CBM"), 3,
     "unexpected value columns 'CBM'"),
    (block(0, row(3, "web", "0xzz")), 4, "does not end in 1 value"),
    (block(0, "hello\n"), 4, "not a line of psr-mba-show output"),
])
def test_garbage_raises_parse_error_with_line(text, lineno, fragment):
    with pytest.raises(ParseError) as info:
        mba.parse(text, source="m.txt")
    assert type(info.value) is ParseError
    assert fragment in str(info.value)
    assert info.value.lineno == lineno and info.value.source == "m.txt"
    assert info.value.line == text.splitlines()[lineno - 1]


@pytest.mark.parametrize("text", [
    "Failed to get info",
    "Failed to get domain list for value display",
    "libxl: error: libxl_psr.c:123:libxl__psr_alloc_log_err_msg: MBA: is not supported in this system",
    "command not implemented",
])
def test_xl_error_text_as_the_only_output(text):
    with pytest.raises(XlReportedError) as info:
        mba.parse(text + "\n", source="e.txt")
    failure = failures.classify(text)
    assert failure is not None and info.value.kind == failure.kind
    assert info.value.lineno == 1 and "e.txt" in str(info.value)


@pytest.mark.parametrize("text", ["", "\n\n", " \r\n"])
def test_empty_input_is_no_output(text):
    with pytest.raises(XlReportedError) as info:
        mba.parse(text)
    assert info.value.kind == "no-output"


def test_stderr_next_to_complete_data_becomes_a_warning():
    t = mba.parse("Failed to get domain list for value display\n" + block(0))
    assert t.warnings == ("xl: Failed to get domain list for value display",)


@pytest.mark.parametrize("case", sorted((FIXTURES / "psr-mba-show").glob("*.json")), ids=lambda p: p.stem)
def test_fixtures_render_back_byte_exact(case):
    raw = case.with_suffix(".txt").read_bytes()
    table = mba.parse(raw)
    assert mba.render(table, linear=bool(table.linear)).encode() == raw.replace(b"\r\n", b"\n")


# --- contracts ----------------------------------------------------------------------------------

def test_to_dict_contract_and_table_rows():
    t = mba.parse(NONLINEAR + block(1, row(7, "(null)", "error")))
    d = t.to_dict()
    assert set(d) == {"sockets", "linear", "warnings"}
    assert d["linear"] is False
    assert d["sockets"][1] == {"socket": 1, "default_thrtl": 0,
                               "domains": [{"domid": 7, "name": "(null)", "thrtl": None}]}
    json.dumps(d)
    assert t.table_rows()[1] == {"socket": 0, "default_thrtl": 0, "linear": False, "domid": 3,
                                 "name": "guest-web01", "thrtl": 8}
    assert len(t.table_rows()) == 4


def test_registry():
    t = xl.parse("xl psr-mba-show", LINEAR, source="r.txt")
    assert isinstance(t, MbaTable) and t.linear is True


# --- properties ---------------------------------------------------------------------------------

NAME_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00")
names = (st.one_of(st.text(NAME_CHARS, min_size=1, max_size=45),
                   st.sampled_from(["(null)", "Domain-0", "a-very-long-domain-name-that-exceeds", "my vm 2"]))
         .filter(lambda s: s == s.strip(" ")).map(escaped))


@st.composite
def mba_tables(draw) -> MbaTable:
    linear = draw(st.booleans())
    # Xen stores at most thrtl_max (< 100); wider values still fit the 16-character cell.
    if linear:
        value = st.one_of(st.integers(0, 100), st.integers(0, 10**15 - 1))
    else:
        value = st.one_of(st.just(0), st.integers(0, 31).map(lambda b: 1 << b), st.integers(0, 2**52 - 1))
    sockets = []
    for sid in draw(st.lists(st.integers(0, 1023), min_size=1, max_size=4, unique=True)):
        rows = draw(st.lists(st.tuples(st.integers(0, 32751), names), max_size=6))
        domains = tuple(MbaDomain(domid, name, draw(st.one_of(st.none(), value))) for domid, name in rows)
        sockets.append(MbaSocket(sid, 0, domains))
    return MbaTable(tuple(sockets), linear)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mba_tables(), st.booleans())
def test_render_then_parse_round_trips(table, crlf):
    text = mba.render(table, linear=bool(table.linear))
    if crlf:
        text = text.replace("\n", "\r\n")
    errors = sum(d.thrtl is None for s in table.sockets for d in s.domains)
    told = mba.parse(text, linear=table.linear, source="prop.txt")
    assert dataclasses.replace(told, warnings=()) == table
    assert len(told.warnings) == errors
    # inferred: the same values; the mode itself unless the table is only zeros and errors
    inferred = mba.parse(text)
    assert inferred.sockets == table.sockets
    readable = any(d.thrtl for s in table.sockets for d in s.domains)
    assert inferred.linear is (table.linear if readable else None)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), st.binary()), st.sampled_from([None, True, False]))
def test_random_text_parses_or_raises_parse_error(text, linear):
    parses_or_parse_error(mba.parse, text, linear=linear)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mba_tables(), st.data())
def test_mutated_tables_parse_or_raise_parse_error(table, data):
    text = data.draw(mutated(st.just(mba.render(table, linear=bool(table.linear)).encode())))
    parses_or_parse_error(mba.parse, text, linear=data.draw(st.sampled_from([None, True, False])))
