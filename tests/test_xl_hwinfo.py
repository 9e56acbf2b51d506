"""`xl psr-hwinfo` parser: every quirk in docs/xl-formats.md, render/parse round trips, robustness."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rdtadvisor import xl
from rdtadvisor.core.errors import ParseError, XlReportedError
from rdtadvisor.xl import hwinfo
from rdtadvisor.xl.hwinfo import (
    EMPTY_WARNING,
    L3_EMPTY_WARNING,
    MONITOR_TYPES,
    CatInfo,
    CmtInfo,
    HwInfo,
    MbaInfo,
)
from tests.damage import mutated
from tests.damage import parses_or_parse_error as _parses_or_parse_error
from tests.fake_xl.captures import HWINFO

FIXTURES = Path(__file__).parent / "fixtures" / "xl" / "psr-hwinfo"

# Xen 4.11+, 2 sockets, CMT on, CDP off, MBA linear, no L2 (RECONSTRUCTED).
FULL = HWINFO

L2_ONLY = """\
Cache Monitoring Technology (CMT):
Enabled         : 0
Cache Allocation Technology (CAT): L2
Socket ID       : 0
Maximum COS     : 3
CBM length      : 8
Default CBM     : 0xff
"""

CAT_46 = """\
Cache Allocation Technology (CAT):
Socket ID       : 0
L3 Cache        : 12288KB
Maximum COS     : 15
CBM length      : 12
Default CBM     : 0xfff
"""


def l3(socket, kib=25600, cdp=False, cos=15, cbm_len=20):
    return CatInfo(socket, kib * 1024, cdp, cos, cbm_len, (1 << cbm_len) - 1)


# --- the four section headers and their lines --------------------------------------------

def test_full_example():
    info = hwinfo.parse(FULL)
    assert info.cmt == CmtInfo(True, 175, MONITOR_TYPES)
    assert info.l3_cat == (l3(0), l3(1))
    assert info.l2_cat == ()
    assert info.mba == (MbaInfo(0, True, 7, 90), MbaInfo(1, True, 7, 90))
    assert info.warnings == ()


def test_l2_header_contains_colon_space_and_is_a_header_not_a_key():
    info = hwinfo.parse(L2_ONLY)
    assert info.l2_cat == (CatInfo(0, None, None, 3, 8, 0xff),)
    assert info.l3_cat == ()  # "Cache Allocation Technology (CAT): L2" is not the L3 header + a value
    assert info.warnings == ()


@pytest.mark.parametrize("header, attr", [
    ("Cache Monitoring Technology (CMT):", "cmt"),
    ("Cache Allocation Technology (CAT):", "l3_cat"),
    ("Cache Allocation Technology (CAT): L2", "l2_cat"),
    ("Memory Bandwidth Allocation (MBA):", "mba"),
])
def test_each_header_opens_its_section(header, attr):
    body = {"cmt": "Enabled         : 0\n",
            "l3_cat": "Socket ID       : 3\nL3 Cache        : 1024KB\nCDP Status      : Enabled\n"
                      "Maximum COS     : 7\nCBM length      : 4\nDefault CBM     : 0xf\n",
            "l2_cat": "Socket ID       : 3\nMaximum COS     : 7\nCBM length      : 4\n"
                      "Default CBM     : 0xf\n",
            "mba": "Socket ID               : 3\nLinear Mode             : Disabled\n"
                   "Maximum COS             : 7\nMaximum Throttling Value: 63\n"
                   "Default Throttling Value: 0\n"}[attr]
    info = hwinfo.parse(header + "\n" + body)
    others = {"cmt", "l3_cat", "l2_cat", "mba"} - {attr}
    assert getattr(info, attr)
    assert all(not getattr(info, o) for o in others)
    if attr != "cmt":
        assert getattr(info, attr)[0].socket == 3


def test_monitor_types_are_bare_words_in_printed_order():
    text = ("Cache Monitoring Technology (CMT):\nEnabled         : 1\nTotal RMID      : 63\n"
            "Supported monitor types:\nlocal-mem-bandwidth\ncache-occupancy\n")
    assert hwinfo.parse(text).cmt == CmtInfo(True, 63, ("local-mem-bandwidth", "cache-occupancy"))


def test_monitor_types_may_be_empty():
    text = ("Cache Monitoring Technology (CMT):\nEnabled         : 1\nTotal RMID      : 63\n"
            "Supported monitor types:\n")
    info = hwinfo.parse(text)
    assert info.cmt == CmtInfo(True, 63, ())
    assert info.warnings == ()


def test_key_padding_16_and_24_split_on_first_colon_and_trimmed():
    # MBA keys are padded to 24, the others to 16; any padding (or none) splits the same.
    text = ("Memory Bandwidth Allocation (MBA):\nSocket ID:0\nLinear Mode   :   Enabled  \n"
            "Maximum COS             : 7\nMaximum Throttling Value: 90\nDefault Throttling Value: 0\n")
    assert hwinfo.parse(text).mba == (MbaInfo(0, True, 7, 90),)
    assert hwinfo.parse(FULL).mba[1] == MbaInfo(1, True, 7, 90)


def test_l3_cache_is_kib_without_space():
    info = hwinfo.parse(CAT_46)
    assert info.l3_cat[0].cache_bytes == 12288 * 1024
    bad = CAT_46.replace("12288KB", "12288MB")
    with pytest.raises(ParseError, match="25600KB") as e:
        hwinfo.parse(bad, source="h.txt")
    assert e.value.lineno == 3 and e.value.source == "h.txt" and "12288MB" in e.value.line


def test_cdp_enabled_disabled_and_absent_on_46():
    assert hwinfo.parse(FULL.replace("Disabled", "Enabled", 1)).l3_cat[0].cdp is True
    assert hwinfo.parse(FULL).l3_cat[0].cdp is False
    assert hwinfo.parse(CAT_46).l3_cat[0].cdp is None
    with pytest.raises(ParseError, match="Enabled' or 'Disabled"):
        hwinfo.parse(FULL.replace("CDP Status      : Disabled", "CDP Status      : on", 1))


def test_cmt_disabled_has_no_total_rmid_and_no_warning():
    info = hwinfo.parse("Cache Monitoring Technology (CMT):\nEnabled         : 0\n")
    assert info.cmt == CmtInfo(False, None, ())
    assert info.warnings == ()


def test_cmt_enabled_without_total_rmid_warns():
    info = hwinfo.parse("Cache Monitoring Technology (CMT):\nEnabled         : 1\n")
    assert info.cmt == CmtInfo(True, None, ())
    assert "Total RMID" in info.warnings[0]


def test_absent_sections_are_empty():
    info = hwinfo.parse(CAT_46)
    assert info.cmt is None and info.l2_cat == () and info.mba == ()


def test_flags_cat_only_through_the_registry():
    info = xl.parse("xl psr-hwinfo --cat", CAT_46)
    assert isinstance(info, HwInfo) and info.cmt is None and len(info.l3_cat) == 1
    assert xl.parse("xl psr-hwinfo -a", CAT_46) == info


def test_non_contiguous_socket_ids_keep_printed_order():
    text = FULL.replace("Socket ID       : 1", "Socket ID       : 2").replace(
        "Socket ID               : 1", "Socket ID               : 2")
    info = hwinfo.parse(text)
    assert [c.socket for c in info.l3_cat] == [0, 2]
    assert [m.socket for m in info.mba] == [0, 2]


def test_many_sockets_without_blank_lines():
    blocks = "".join(f"Socket ID       : {s}\nMaximum COS     : 7\nCBM length      : 8\n"
                     "Default CBM     : 0xff\n" for s in range(8))
    info = hwinfo.parse("Cache Allocation Technology (CAT): L2\n" + blocks)
    assert [c.socket for c in info.l2_cat] == list(range(8))


def test_blank_lines_are_tolerated():
    assert hwinfo.parse(FULL.replace("\nCache Allocation", "\n\nCache Allocation")) == hwinfo.parse(FULL)


# --- failures and odd outputs -------------------------------------------------------------

def test_46_cat_failure_is_a_warning_not_a_crash():
    text = FULL.split("Cache Allocation")[0] + "Cache Allocation Technology (CAT):\n"
    info = hwinfo.parse(text)
    assert info.cmt is not None and info.l3_cat == ()
    assert info.warnings == (L3_EMPTY_WARNING,)


def test_46_cat_failure_with_stderr_mixed_in():
    text = ("Failed to get cat info\n" + FULL.split("Cache Allocation")[0]
            + "Cache Allocation Technology (CAT):\n")
    info = hwinfo.parse(text)
    assert info.warnings == ("xl: Failed to get cat info", L3_EMPTY_WARNING)


def test_error_lines_between_sections_become_warnings():
    text = FULL.replace("Memory Bandwidth", "Failed to get l3 cache size for socket:1\nMemory Bandwidth")
    info = hwinfo.parse(text)
    assert len(info.l3_cat) == 2 and len(info.mba) == 2
    assert info.warnings == ("xl: Failed to get l3 cache size for socket:1",)


@pytest.mark.parametrize("text, kind", [
    ("command not implemented\n", "command-not-implemented"),
    ("Failed to get cat info\n", "info-failed"),
    ("libxl: error: libxl_psr.c:110:libxl__psr_cat_log_err_msg: CAT is not supported in this system\n"
     "Failed to get cat info\n", "feature-unsupported"),
])
def test_xl_error_texts_as_the_only_output_raise_xl_reported_error(text, kind):
    with pytest.raises(XlReportedError) as e:
        hwinfo.parse(text, source="host1: xl psr-hwinfo")
    assert e.value.kind == kind
    assert e.value.lineno == 1 and e.value.line == text.splitlines()[0]
    assert "host1: xl psr-hwinfo" in str(e.value)


def test_usage_text_raises_at_once():
    text = "option `x' not supported.\nUsage: xl [-vtT] psr-hwinfo [options]\n\nShow hardware information\n"
    with pytest.raises(XlReportedError) as e:
        hwinfo.parse(text)
    assert e.value.kind == "usage"


@pytest.mark.parametrize("text", ["", "\n", "  \n\n"])
def test_empty_output_is_valid_with_a_warning(text):
    info = hwinfo.parse(text)
    assert info == HwInfo(None, (), (), (), (EMPTY_WARNING,))
    assert "empty output" in info.warnings[0]


@pytest.mark.parametrize("text, fragment", [
    ("hello world\n", "expected a section header"),
    ("Socket ID       : 0\n", "expected a section header"),
    ("Cache Monitoring Technology (CMT):\nEnabled         : yes\n", "0 or 1"),
    ("Cache Monitoring Technology (CMT):\n", "no 'Enabled' line"),
    ("Cache Monitoring Technology (CMT):\nEnabled         : 1\nTotal RMID      : -3\n", "unsigned"),
    ("Cache Monitoring Technology (CMT):\nEnabled         : 1\nTotal RMID      : 5\n"
     "Supported monitor types:\ncache occupancy!\n", "monitor type"),
    (FULL + FULL, "printed twice"),
    (CAT_46 + "Socket ID       : 0\nL3 Cache        : 1KB\nMaximum COS     : 1\nCBM length      : 1\n"
     "Default CBM     : 0x1\n", "socket 0 listed twice"),
    ("Cache Allocation Technology (CAT):\nMaximum COS     : 15\n", "before any 'Socket ID'"),
    (CAT_46.replace("Default CBM     : 0xfff\n", ""), "no 'Default CBM' line"),
    (CAT_46.replace("0xfff", "fff"), "hex mask"),
    (CAT_46 + "Maximum COS     : 15\n", "printed twice for one socket"),
    (CAT_46.replace("Maximum COS     : 15", "Maximum COS     = 15"), "key : value"),
])
def test_malformed_output_raises_parse_error_with_location(text, fragment):
    with pytest.raises(ParseError) as e:
        hwinfo.parse(text, source="cap.txt")
    assert fragment in str(e.value)
    assert "cap.txt" in str(e.value)
    assert not isinstance(e.value, XlReportedError)


def test_unknown_keys_types_and_sections_are_warnings():
    text = (FULL.replace("Maximum COS     : 15\n", "Cache Ways      : 20\nMaximum COS     : 15\n", 1)
            .replace("local-mem-bandwidth\n", "local-mem-bandwidth\nllc-misses\n")
            .replace("Memory Bandwidth Allocation", "Memory Bandwidth Monitoring (MBM):\nWidth : 62\n"
                                                    "Memory Bandwidth Allocation"))
    info = hwinfo.parse(text)
    assert info.cmt.monitor_types == (*MONITOR_TYPES, "llc-misses")
    assert info.l3_cat == (l3(0), l3(1)) and len(info.mba) == 2
    assert len(info.warnings) == 3
    assert "unknown monitor type 'llc-misses'" in info.warnings[0]
    assert "unknown key 'Cache Ways'" in info.warnings[1]
    assert "unknown section" in info.warnings[2]


def test_default_cbm_mismatch_warns():
    info = hwinfo.parse(CAT_46.replace("0xfff", "0x7ff"))
    assert info.l3_cat[0].default_cbm == 0x7ff
    assert "does not match CBM length 12" in info.warnings[0]


def test_crlf_line_endings_bytes_and_str():
    crlf = FULL.replace("\n", "\r\n")
    assert hwinfo.parse(crlf) == hwinfo.parse(FULL)
    assert hwinfo.parse(crlf.encode()) == hwinfo.parse(FULL)
    raw = (FIXTURES / "recon-4.11-crlf.txt").read_bytes()
    assert b"\r\n" in raw and hwinfo.parse(raw) == hwinfo.parse(FULL)


# --- records and JSON --------------------------------------------------------------------

def test_to_dict_contract():
    d = hwinfo.parse(FULL).to_dict()
    assert set(d) == {"cmt", "l3_cat", "l2_cat", "mba", "warnings"}
    assert d["cmt"] == {"enabled": True, "total_rmid": 175, "monitor_types": list(MONITOR_TYPES)}
    assert d["l3_cat"][1] == {"socket": 1, "cache_bytes": 26214400, "cdp": False, "cos_max": 15,
                              "cbm_len": 20, "default_cbm": "0xfffff"}
    assert d["mba"][0] == {"socket": 0, "linear": True, "cos_max": 7, "thrtl_max": 90}
    l2 = hwinfo.parse(L2_ONLY).to_dict()
    assert l2["l2_cat"] == [{"socket": 0, "cache_bytes": None, "cdp": None, "cos_max": 3, "cbm_len": 8,
                             "default_cbm": "0xff"}]
    assert l2["cmt"] == {"enabled": False, "total_rmid": None, "monitor_types": []}


def test_table_rows_have_uniform_keys():
    rows = hwinfo.parse(FULL).table_rows()
    assert [r["feature"] for r in rows] == ["cmt", "l3_cat", "l3_cat", "mba", "mba"]
    assert len({tuple(r) for r in rows}) == 1
    assert rows[0]["socket"] is None and rows[0]["monitor_types"] == ",".join(MONITOR_TYPES)
    assert rows[2]["socket"] == 1 and rows[2]["default_cbm"] == "0xfffff"


# --- render ------------------------------------------------------------------------------

# Xen version each golden case was printed by (SOURCES.md); cases with stderr mixed in or
# unknown lines cannot be printed back.
RENDER_VERSIONS = {
    "real-4.6-cmt-b128c388e9": (4, 6), "real-4.6-cat-f52fbcf747": (4, 6),
    "real-4.10-l2-only-cmt-disabled-451a0c39ba": (4, 10), "recon-4.11-two-sockets-mba": (4, 11),
    "recon-4.11-cdp-enabled": (4, 11), "recon-4.11-cmt-disabled": (4, 11),
    "recon-4.11-cat-without-cmt": (4, 11), "recon-4.11-empty-cat-absent": (4, 11),
    "recon-4.6-cat-failed": (4, 6), "recon-4.11-noncontiguous-sockets": (4, 22),
    "recon-4.10-l3-and-l2-two-sockets": (4, 10), "recon-4.11-crlf": (4, 11),
    "recon-4.11-mba-only-nonlinear": (4, 11), "recon-4.11-cmt-rmid-failed": (4, 11),
    "recon-4.7-cdp-one-socket": (4, 7),
}


@pytest.mark.parametrize("case", sorted(RENDER_VERSIONS))
def test_render_reproduces_golden_fixtures_byte_exactly(case):
    raw = (FIXTURES / f"{case}.txt").read_bytes()
    text = raw.decode().replace("\r\n", "\n")
    assert hwinfo.render(hwinfo.parse(raw), xen_version=RENDER_VERSIONS[case]) == text


def test_every_golden_case_is_classified():
    cases = {p.stem for p in FIXTURES.glob("*.txt")}
    not_rendered = {c for c in cases if c.startswith(("err-", "hypothetical-"))} | {
        "recon-4.6-cat-failed-stderr-mixed"}
    assert cases == set(RENDER_VERSIONS) | not_rendered


def test_render_zero_mask_like_c():
    info = HwInfo(None, (), (CatInfo(0, None, None, 1, 0, 0),), ())
    assert "Default CBM     : 0\n" in hwinfo.render(info)


@pytest.mark.parametrize("info, version, fragment", [
    (HwInfo(None, (), (CatInfo(0, None, None, 3, 8, 0xff),), ()), (4, 9), "L2 CAT"),
    (HwInfo(None, (), (), (MbaInfo(0, True, 7, 90),)), (4, 10), "MBA"),
    (HwInfo(None, (l3(0, cdp=True),), (), ()), (4, 6), "CDP"),
    (HwInfo(CmtInfo(False, None, ()), (), (), ()), (4, 5), "4.6"),
])
def test_render_refuses_what_that_xen_cannot_print(info, version, fragment):
    with pytest.raises(ValueError, match=fragment):
        hwinfo.render(info, xen_version=version)


def test_render_46_omits_cdp_line():
    info = HwInfo(None, (l3(0, cdp=None),), (), ())
    assert "CDP" not in hwinfo.render(info, xen_version=(4, 6))
    assert hwinfo.parse(hwinfo.render(info, xen_version=(4, 6))) == info


# --- properties --------------------------------------------------------------------------

U32 = st.integers(0, 2**32 - 1)
VERSIONS = [(4, 6), (4, 7), (4, 9), (4, 10), (4, 11), (4, 22)]


@st.composite
def hwinfos(draw) -> tuple[tuple[int, int], HwInfo]:
    version = draw(st.sampled_from(VERSIONS))
    cmt = draw(st.one_of(
        st.none(),
        st.just(CmtInfo(False, None, ())),
        st.builds(lambda r, t: CmtInfo(True, r, tuple(t)), U32,
                  st.lists(st.sampled_from(MONITOR_TYPES), unique=True))))
    sockets = st.lists(st.integers(0, 1023), unique=True, max_size=4)

    def cat(socket: int, level: int) -> CatInfo:
        n = draw(st.integers(1, 32))
        cdp = None if level == 2 or version < (4, 7) else draw(st.booleans())
        cache = draw(U32) * 1024 if level == 3 else None
        return CatInfo(socket, cache, cdp, draw(U32), n, (1 << n) - 1)

    l3_cat = tuple(cat(s, 3) for s in draw(sockets))
    l2_cat = tuple(cat(s, 2) for s in draw(sockets)) if version >= (4, 10) else ()
    mba = tuple(MbaInfo(s, draw(st.booleans()), draw(U32), draw(U32)) for s in draw(sockets)) \
        if version >= (4, 11) else ()
    return version, HwInfo(cmt, l3_cat, l2_cat, mba)


@settings(deadline=None, max_examples=200)
@given(hwinfos())
def test_render_then_parse_is_identity(case):
    version, info = case
    text = hwinfo.render(info, xen_version=version)
    expected = info
    if info.cmt is None and not (info.l3_cat or info.l2_cat or info.mba):
        expected = HwInfo(None, (), (), (), (EMPTY_WARNING,))
    assert hwinfo.parse(text) == expected
    assert hwinfo.parse(text.replace("\n", "\r\n").encode()) == expected
    assert hwinfo.render(hwinfo.parse(text), xen_version=version) == text


GOLDEN = [p.read_bytes() for p in sorted(FIXTURES.glob("*.txt"))]


@settings(deadline=None, max_examples=200)
@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1"))))
def test_garbage_parses_or_raises_parse_error(text):
    _parses_or_parse_error(hwinfo.parse, text)


@settings(deadline=None, max_examples=200)
@given(mutated(st.one_of(st.sampled_from(GOLDEN),
                         hwinfos().map(lambda c: hwinfo.render(c[1], xen_version=c[0]).encode()))))
def test_damaged_output_parses_or_raises_parse_error(data):
    _parses_or_parse_error(hwinfo.parse, data)
    _parses_or_parse_error(hwinfo.parse, data.decode("utf-8", "replace"))
