"""Markdown outputs render as tables in a Markdown viewer and escape only what Markdown needs;
text tables have a header row."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rdtadvisor.render.markdown import escape
from tests.clirun import run

CONFIG = str(Path(__file__).resolve().parent.parent / "samples" / "demo-config.toml")
SEPARATOR = re.compile(r"^\|(?: *:?-{3,}:? *\|)+$")


def cells(line: str) -> list[str]:
    """A GFM table row's cells: split on the pipes no backslash escapes."""
    assert line.startswith("|") and line.endswith("|"), line
    return re.split(r"(?<!\\)\|", line[1:-1])


def tables(text: str) -> list[list[str]]:
    """Every run of consecutive lines starting with '|'."""
    out: list[list[str]] = []
    run_: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            run_.append(line)
        elif run_:
            out.append(run_)
            run_ = []
    return out


def assert_gfm_tables(text: str) -> int:
    """Each table: a header row, the separator row, rows with the header's column count, and a
    blank line (or the start) before it, which GFM needs to see a table after a paragraph."""
    found = tables(text)
    lines = text.splitlines()
    for t in found:
        header, sep, *rows = t
        n = len(cells(header))
        assert SEPARATOR.match(sep) and len(cells(sep)) == n, sep
        for row in rows:
            assert len(cells(row)) == n, row
        at = lines.index(header)
        assert at == 0 or lines[at - 1] == "", f"no blank line before {header!r}"
    return len(found)


@pytest.mark.parametrize("args", [
    ("report", "--since", "2026-11-19"),
    ("check",),
    ("advise", "cat"),
    ("curves",),
], ids=" ".join)
def test_markdown_is_gfm_tables_without_needless_backslashes(demo_store, args):
    r = run("--config", CONFIG, "--store", demo_store, *args, "--format", "markdown")
    assert r.exit_code in (0, 4), r.stderr          # 4: check's findings (docs/exit-codes.md)
    assert assert_gfm_tables(r.stdout) >= 1
    # the demo's names and messages hold nothing Markdown would read as markup
    assert "\\" not in r.stdout


def test_advise_cat_markdown_has_a_plan_table(demo_store):
    r = run("--config", CONFIG, "--store", demo_store, "advise", "cat", "--format", "markdown")
    assert "| domid | name | mask | ways | speed | reason |" in r.stdout


@pytest.mark.parametrize("text", [
    "(19.0 GiB/s vs 5.2 GiB/s)", "+153% per byte", "web_01 and db_primary_2", "0.50 [0.22-0.77]",
    "2 way(s) (0x3)", "#1 - a.b! {x} >y", "`rdtadvisor calibrate`", "a & b", "x]: y",
])
def test_ordinary_text_is_not_escaped(text):
    assert escape(text) == text


@pytest.mark.parametrize(("text", "escaped"), [
    ("a|b", "a\\|b"),                                      # a new column
    ("a\\b", "a\\\\b"),                                    # it would escape what follows
    ("<img src=x onerror=alert(1)>", "\\<img src=x onerror=alert(1)>"),    # raw HTML
    ("<http://evil.example>", "\\<http://evil.example>"),                   # an autolink
    ("[click](http://evil.example)", "[click\\](http://evil.example)"),     # a link
    ("![x](y.png)", "![x\\](y.png)"),                                       # an image
    ("[a][ref]", "[a\\][ref]"),                                             # a reference link
    ("&lt;script&gt;", "\\&lt;script\\&gt;"),                               # entities
    ("*bold* ~~gone~~", "\\*bold\\* \\~\\~gone\\~\\~"),                     # emphasis, strikethrough
    ("_x_ __init__ a_", "\\_x\\_ \\_\\_init\\_\\_ a\\_"),                   # '_' at a word's edge
    ("vm\x1b[2J", "vm?[2J"),                                               # control characters
])
def test_markup_in_untrusted_text_is_escaped(text, escaped):
    assert escape(text) == escaped


def test_the_table_of_a_hostile_name_keeps_its_columns():
    from rdtadvisor.render.markdown import table
    lines = table(["name", "x"], [[escape("a|b\\|c"), "1"]])
    assert_gfm_tables("\n".join(lines))


def test_advise_cat_text_table_has_a_header(demo_store):
    r = run("--config", CONFIG, "--store", demo_store, "advise", "cat")
    lines = r.stdout.splitlines()
    rows = [i for i, line in enumerate(lines) if re.match(r"^ +\d+  \S", line)]
    assert rows, r.stdout
    # every block of VM rows follows a header line and a rule of dashes
    for i in rows:
        if not re.match(r"^ +\d+  \S", lines[i - 1]):
            assert lines[i - 2].split() == ["domid", "name", "mask", "ways", "speed", "reason"], lines[i - 2]
            assert set(lines[i - 1].replace(" ", "")) == {"-"}, lines[i - 1]
