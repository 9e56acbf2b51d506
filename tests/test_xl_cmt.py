"""`xl psr-cmt-show`: every quirk of docs/xl-formats.md (psr-cmt-show, pitfalls), as specifications."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rdtadvisor.core.errors import ParseError, XlReportedError
from rdtadvisor.xl import cmt
from tests.damage import escaped, mutated, parses_or_parse_error

OCC = (
    "Total RMID: 175\n"
    "Name                                        ID        Socket 0        Socket 1\n"
    "Total L3 Cache Size                                   25600 KB        25600 KB\n"
    "Domain-0                                     0         1792 KB          224 KB\n"
    "guest-web01                                  3         9984 KB            0 KB\n"
)


def rows(table: cmt.CmtTable) -> list[tuple[int, str, int, int]]:
    return [(r["domid"], r["name"], r["socket"], r["value"]) for r in table.to_dict()["rows"]]


def test_occupancy_is_converted_from_kib_to_bytes():
    t = cmt.parse(OCC, "cache-occupancy")
    assert t.total_rmid == 175
    assert t.sockets == (0, 1)
    assert t.l3_cache_bytes == {0: 25600 * 1024, 1: 25600 * 1024}
    assert rows(t) == [(0, "Domain-0", 0, 1792 * 1024), (0, "Domain-0", 1, 224 * 1024),
                       (3, "guest-web01", 0, 9984 * 1024), (3, "guest-web01", 1, 0)]
    assert t.warnings == ()


def test_bandwidth_is_kib_per_second_and_has_no_l3_line():
    text = ("Total RMID: 175\n"
            "Name                                        ID        Socket 0        Socket 1\n"
            "Domain-0                                     0     183250 KB/s       1024 KB/s\n")
    t = cmt.parse(text, "total-mem-bandwidth")
    assert rows(t) == [(0, "Domain-0", 0, 183250 * 1024), (0, "Domain-0", 1, 1024 * 1024)]
    assert "l3_cache_bytes" not in t.to_dict()
    assert t.unit == "B/s"


def test_bandwidth_metric_comes_from_the_command_line_not_the_text():
    text = ("Total RMID: 7\nName                                        ID        Socket 0\n"
            "vm                                           1         10 KB/s\n")
    assert cmt.parse(text, "local-mem-bandwidth").to_dict()["metric"] == "local-mem-bandwidth"
    assert cmt.parse(text, "total-mem-bandwidth").to_dict()["metric"] == "total-mem-bandwidth"


def test_row_with_a_missing_socket_cell_keeps_no_values_and_names_the_domain():
    text = OCC + "guest-db02                                   7         4096 KB\n"
    t = cmt.parse(text, "cache-occupancy")
    assert [r for r in rows(t) if r[0] == 7] == []
    assert len(t.warnings) == 1 and "'guest-db02'" in t.warnings[0] and "1 of 2" in t.warnings[0]


def test_names_longer_than_40_chars_shift_the_columns():
    name = "a-very-long-domain-name-that-exceeds-forty-chars"
    text = OCC + f"{name}    12           64 KB          128 KB\n"
    t = cmt.parse(text, "cache-occupancy")
    assert rows(t)[-2:] == [(12, name, 0, 64 * 1024), (12, name, 1, 128 * 1024)]


def test_names_with_spaces_digits_and_null():
    text = OCC + "%-40s %5d%13u KB%13u KB\n" % ("db 5 KB prod", 8, 1, 2) + "%-40s %5d%13u KB%13u KB\n" % (
        "(null)", 99, 3, 4)
    t = cmt.parse(text, "cache-occupancy")
    assert (8, "db 5 KB prod", 0, 1024) in rows(t)
    assert (99, "(null)", 1, 4096) in rows(t)


def test_utf8_names_are_padded_by_bytes_as_printf_does():
    name = "vm-é€"  # 8 bytes, 5 characters: printf pads to 40 bytes
    line = name.encode() + b" " * (40 - len(name.encode())) + b" %5d%13u KB\n" % (4, 5)
    text = b"Total RMID: 3\n" + b"%-40s %5s%14s %d\n" % (b"Name", b"ID", b"Socket", 0) + line
    t = cmt.parse(text, "cache-occupancy")
    assert rows(t) == [(4, name, 0, 5 * 1024)]


def test_non_contiguous_sockets_are_kept_in_header_order():
    text = ("Total RMID: 71\n"
            "Name                                        ID        Socket 0        Socket 2\n"
            "vm                                           1         10 KB/s         20 KB/s\n")
    t = cmt.parse(text, "total-mem-bandwidth")
    assert t.sockets == (0, 2)
    assert rows(t) == [(1, "vm", 0, 10240), (1, "vm", 2, 20480)]


def test_socket_ids_of_ten_and_more_widen_only_the_header():
    header = "%-40s %5s" % ("Name", "ID") + "".join("%14s %d" % ("Socket", s) for s in (9, 10))
    text = f"Total RMID: 7\n{header}\n" + "%-40s %5d%11u KB/s%11u KB/s\n" % ("vm", 1, 5, 6)
    assert rows(cmt.parse(text, "total-mem-bandwidth")) == [(1, "vm", 9, 5120), (1, "vm", 10, 6144)]


def test_empty_table_is_a_valid_answer():
    # Nothing attached (or the named domain is not attached): headers only, exit 0.
    text = OCC.split("Domain-0")[0]
    t = cmt.parse(text, "cache-occupancy")
    assert len(t) == 0 and t.to_dict()["rows"] == []


def test_xen_45_occupancy_has_the_same_layout():
    text = ("Total RMID: 63\n"
            "Name                                        ID        Socket 0\n"
            "Total L3 Cache Size                                   15360 KB\n"
            "Domain-0                                     0          896 KB\n")
    t = cmt.parse(text, "cache-occupancy")
    assert rows(t) == [(0, "Domain-0", 0, 896 * 1024)]


def test_error_lines_mixed_in_by_2_and_1_become_warnings():
    text = OCC + ("libxl: error: libxl_psr.c:338:libxl_psr_cmt_get_sample: "
                  "Domain 7:failed to get monitoring data\n")
    t = cmt.parse(text, "cache-occupancy")
    assert any("failed to get monitoring data" in w for w in t.warnings)


@pytest.mark.parametrize(("text", "kind"), [
    ("CMT is disabled in the system\n", "cmt-disabled"),
    ("Monitor type 'total_mem_count' is not supported in the system\n", "monitor-type-unsupported"),
    ("", "no-output"),
])
def test_error_only_output_is_a_reported_error(text, kind):
    with pytest.raises(XlReportedError) as e:
        cmt.parse(text, "total-mem-bandwidth", source="cap/x.txt")
    assert e.value.kind == kind
    assert "cap/x.txt" in str(e.value)


@pytest.mark.parametrize(("text", "lineno"), [
    ("hello world\n", 1),
    ("Total RMID: 5\nnot a header\n", 2),
    (OCC + "garbage line without an id\n", 6),
    (OCC + "%-40s %5d%13u KB%13u KB%13u KB\n" % ("x", 1, 1, 2, 3), 6),  # more cells than sockets
])
def test_garbage_raises_one_located_error(text, lineno):
    with pytest.raises(ParseError) as e:
        cmt.parse(text, "cache-occupancy", source="f.txt")
    assert e.value.lineno == lineno
    assert str(e.value).startswith(f"f.txt:{lineno}: ")


def test_truncated_after_total_rmid():
    with pytest.raises(ParseError, match="truncated"):
        cmt.parse("Total RMID: 5\n", "cache-occupancy")


# --- properties -----------------------------------------------------------------------------

names = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x24F, blacklist_characters="\x7f"),
                min_size=1, max_size=60).map(str.strip).filter(bool).map(escaped)


@st.composite
def tables(draw):
    metric = draw(st.sampled_from(["cache-occupancy", "total-mem-bandwidth", "local-mem-bandwidth"]))
    sockets = tuple(sorted(draw(st.sets(st.integers(0, 15), min_size=1, max_size=4))))
    n = draw(st.integers(0, 12))
    ids = draw(st.lists(st.integers(0, 32751), min_size=n, max_size=n, unique=True))
    domain_names = draw(st.lists(names, min_size=n, max_size=n))
    # Below the cell width (%13u, %11u) so a space always separates cells, as on real hosts.
    top = 10**12 - 1 if metric == "cache-occupancy" else 10**10 - 1
    kib = np.array(draw(st.lists(st.lists(st.integers(0, top), min_size=len(sockets), max_size=len(sockets)),
                                 min_size=n, max_size=n)), dtype=np.int64).reshape(n, len(sockets))
    complete = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    values = kib * 1024
    values[~complete] = 0  # the parser keeps no values for ambiguous rows
    l3 = {s: draw(st.integers(1, 10**6)) * 1024 for s in sockets} if metric == "cache-occupancy" else {}
    return cmt.CmtTable(metric, draw(st.integers(0, 255)), sockets, l3, np.array(ids, dtype=np.int64),
                        domain_names, values, complete)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_render_then_parse_round_trips(table):
    back = cmt.parse(cmt.render(table), table.metric)
    assert back.sockets == table.sockets
    assert back.total_rmid == table.total_rmid
    assert back.l3_cache_bytes == table.l3_cache_bytes
    assert list(back.domids) == list(table.domids)
    assert back.name_list() == table.name_list()
    assert (back.complete == table.complete).all()
    assert (back.values == table.values).all()
    assert len(back.warnings) == int((~table.complete).sum())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400), st.sampled_from(["cache-occupancy", "total-mem-bandwidth"]))
def test_random_text_parses_or_raises_parse_error(text, metric):
    with contextlib.suppress(ParseError):
        cmt.parse(text, metric)


@settings(max_examples=300, deadline=None)
@given(tables(), st.data())
def test_mutated_tables_parse_or_raise_parse_error(table, data):
    text = data.draw(mutated(st.just(cmt.render(table).encode())))
    parses_or_parse_error(cmt.parse, text, metric=table.metric)
