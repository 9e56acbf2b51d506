"""`xl list` parser: right-anchored rows, long/odd names, state flags, round trips, robustness."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rdtadvisor import xl
from rdtadvisor.core.errors import ParseError, XlReportedError
from rdtadvisor.core.units import MIB
from rdtadvisor.xl import domains
from rdtadvisor.xl.domains import HEADER, Domain, DomainList
from tests.damage import escaped, mutated
from tests.damage import parses_or_parse_error as _parses_or_parse_error

FIXTURES = Path(__file__).parent / "fixtures" / "xl" / "list"
H = HEADER + "\n"


def row(name: str, domid: int, mib: int, vcpus: int, state: str, secs: float) -> str:
    """What C's "%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f\\n" prints (pads by bytes)."""
    return name + " " * max(0, 40 - len(name.encode())) + " %5d %5d %5d     %s  %8.1f\n" % (
        domid, mib, vcpus, state, secs)


BASIC = H + row("Domain-0", 0, 4096, 8, "r-----", 5231.7) + row("web01", 3, 8192, 4, "-b----", 1234.5)


def test_header_has_tabs_and_basic_rows():
    assert HEADER == "Name                                        ID   Mem VCPUs\tState\tTime(s)"
    listing = domains.parse(BASIC)
    assert listing.domains == (Domain(0, "Domain-0", 4096 * MIB, 8, "r-----", 5231.7),
                               Domain(3, "web01", 8192 * MIB, 4, "-b----", 1234.5))
    assert listing.warnings == ()
    assert xl.parse("xl list", BASIC) == listing


def test_row_layout_matches_c_format():
    line = row("Domain-0", 0, 750, 4, "r-----", 11794.3)
    assert line == "Domain-0                                     0   750     4     r-----   11794.3\n"


@pytest.mark.parametrize("name", [
    "a" * 40,                                          # exactly fills %-40s: one space left
    "tenant-42-analytics-batch-worker-long-name-01",   # longer: every column shifts right
    "my test vm",                                      # spaces inside
    "vm 2024",                                         # ends with digits after a space
    "x 1 2 3 r----- 1.0",                             # looks like a row itself
    "café-vm",                                         # UTF-8: padded by bytes, not characters
    "日本語のドメイン名がとても長い場合のテスト",        # > 40 bytes, < 40 characters
])
def test_names_are_parsed_from_the_right(name):
    listing = domains.parse(H + row(name, 12, 1024, 2, "-b----", 77.0))
    assert listing.domains[0] == Domain(12, name, 1024 * MIB, 2, "-b----", 77.0)


def test_null_name_is_kept_with_a_warning():
    listing = domains.parse(H + row("(null)", 14, 256, 1, "--p---", 0.0))
    assert listing.domains[0].name == "(null)"
    assert listing.warnings == ("domain 14 has no name (xl printed '(null)')",)


@pytest.mark.parametrize("state", ["r-----", "-b----", "--p---", "---s--", "---sr-", "---ss-", "---sc-",
                                   "---sw-", "---sS-", "---s?-", "-----d", "rbpscd", "----c-"])
def test_every_state_flag(state):
    d = domains.parse(H + row("g", 5, 1, 1, state, 0.1)).domains[0]
    assert d.state == state
    assert d.running == (state[0] == "r") and d.shutdown == (state[3] == "s") and d.dying == (state[5] == "d")


@pytest.mark.parametrize("state", ["x-----", "------x", "-----", "--b---", "r b---"])
def test_bad_state_is_a_parse_error(state):
    with pytest.raises(ParseError, match="xl list row"):
        domains.parse(H + "guest" + " " * 35 + "     5     1     1     " + state + "       0.1\n")


def test_memory_mib_to_bytes_and_time_float():
    d = domains.parse(H + row("big", 28, 65536, 64, "r-----", 123456789.0)).domains[0]
    assert d.memory_bytes == 68_719_476_736 and d.cpu_seconds == 123456789.0 and d.vcpus == 64


def test_single_domain_listing():
    listing = xl.parse("xl list Domain-0", H + row("Domain-0", 0, 4096, 8, "r-----", 1.0))
    assert len(listing) == 1


def test_header_only_is_an_empty_listing():
    assert domains.parse(H) == DomainList(())


def test_crlf_and_expanded_tabs():
    assert domains.parse(BASIC.replace("\n", "\r\n")) == domains.parse(BASIC)
    assert domains.parse(BASIC.replace("\n", "\r\n").encode()) == domains.parse(BASIC)
    assert domains.parse(BASIC.expandtabs(8)) == domains.parse(BASIC)
    raw = (FIXTURES / "recon-crlf.txt").read_bytes()
    assert b"\r\n" in raw and domains.parse(raw) == domains.parse(BASIC)


def test_duplicate_domid_warns():
    listing = domains.parse(BASIC + row("again", 3, 1, 1, "-b----", 0.0))
    assert len(listing) == 3 and "listed twice" in listing.warnings[0]


def test_error_text_after_header_is_a_warning():
    listing = domains.parse(BASIC + "libxl: error: libxl_domain.c:1:libxl_domid_to_name: boom\n")
    assert len(listing) == 2 and listing.warnings == ("xl: boom",)


def test_empty_output_is_xl_reported_no_output():
    with pytest.raises(XlReportedError) as e:
        domains.parse("", source="h: xl list")
    assert e.value.kind == "no-output" and "h: xl list" in str(e.value)


def test_only_a_known_error_text_is_xl_reported():
    with pytest.raises(XlReportedError) as e:
        domains.parse("libxl: error: libxl.c:5:libxl_list_domain: getting domain info list: "
                      "Permission denied\n")
    assert e.value.kind == "libxl-error" and e.value.lineno == 1


@pytest.mark.parametrize("text, fragment, lineno", [
    ("hello\n", "is this xl list output?", 1),
    (H.replace("\n", "   UUID                            Reason-Code\tSecurity Label\n"), "extra columns", 1),
    (H.replace("\n", "  Claimed\n"), "extra columns", 1),
    (BASIC + "web02        ", "xl list row", 4),
    (BASIC + "web02                                        4  1024     1     -b----\n", "xl list row", 4),
    (BASIC.replace("1234.5", "12x4.5"), "xl list row", 3),
    (BASIC.replace(" 8192 ", " -192 "), "xl list row", 3),
    ("libxl_list_domain failed.\n", "libxl_list_domain failed", 1),
])
def test_malformed_output_raises_parse_error(text, fragment, lineno):
    with pytest.raises(ParseError) as e:
        domains.parse(text, source="cap.txt")
    assert fragment in str(e.value) and "cap.txt" in str(e.value)
    assert e.value.lineno == lineno


def test_to_dict_and_table_rows():
    d = domains.parse(BASIC).to_dict()
    assert d == {"domains": [
        {"domid": 0, "name": "Domain-0", "memory_bytes": 4294967296, "vcpus": 8, "state": "r-----",
         "cpu_seconds": 5231.7},
        {"domid": 3, "name": "web01", "memory_bytes": 8589934592, "vcpus": 4, "state": "-b----",
         "cpu_seconds": 1234.5}], "warnings": []}
    assert domains.parse(BASIC).table_rows() == d["domains"]


RENDERABLE = ["recon-basic", "recon-long-names-spaces-null", "recon-shutdown-states", "recon-single-domain",
              "recon-crlf"]


@pytest.mark.parametrize("case", RENDERABLE)
def test_render_reproduces_golden_fixtures_byte_exactly(case):
    raw = (FIXTURES / f"{case}.txt").read_bytes()
    assert domains.render(domains.parse(raw)) == raw.decode().replace("\r\n", "\n")


def test_every_golden_case_is_classified():
    cases = {p.stem for p in FIXTURES.glob("*.txt")}
    not_rendered = {c for c in cases if c.startswith("err-")} | {"recon-header-tabs-expanded"}
    assert cases == set(RENDERABLE) | not_rendered


def test_render_rejects_bad_state():
    with pytest.raises(ValueError, match="six xl list flags"):
        domains.render(DomainList((Domain(1, "x", 0, 1, "running", 0.0),)))


# --- properties --------------------------------------------------------------------------

NAME_CHARS = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
names = (st.text(NAME_CHARS, min_size=1, max_size=60).filter(lambda s: s == s.strip() and s != "(null)")
         .map(escaped))
states = st.tuples(*(st.sampled_from("-" + f) if len(f) == 1 else st.sampled_from(f)
                     for f in domains.STATE_FLAGS)).map("".join)


@st.composite
def domain_lists(draw) -> DomainList:
    ids = draw(st.lists(st.integers(0, 32767), unique=True, max_size=8))
    return DomainList(tuple(
        Domain(i, draw(names), draw(st.integers(0, 2**40)) * MIB, draw(st.integers(0, 4096)), draw(states),
               draw(st.integers(0, 10**11)) / 10)
        for i in ids))


@settings(deadline=None, max_examples=200)
@given(domain_lists())
def test_render_then_parse_is_identity(listing):
    text = domains.render(listing)
    assert domains.parse(text) == listing
    assert domains.parse(text.replace("\n", "\r\n").encode()) == listing
    assert domains.render(domains.parse(text)) == text


@settings(deadline=None, max_examples=200)
@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1")), st.text().map(lambda t: H + t)))
def test_garbage_parses_or_raises_parse_error(text):
    _parses_or_parse_error(domains.parse, text)


GOLDEN = [p.read_bytes() for p in sorted(FIXTURES.glob("*.txt"))]


@settings(deadline=None, max_examples=200)
@given(mutated(st.one_of(st.sampled_from(GOLDEN), domain_lists().map(lambda d: domains.render(d).encode()))))
def test_damaged_output_parses_or_raises_parse_error(data):
    _parses_or_parse_error(domains.parse, data)
    _parses_or_parse_error(domains.parse, data.decode("utf-8", "replace"))
