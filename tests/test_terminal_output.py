"""Guest-chosen VM names cannot drive the operator's terminal.

A guest owner picks the name ``xl list`` prints. Every text and Markdown output of the CLI
shows each non-printable character of a name (ESC, BEL, other controls, bidi overrides) as
``?``, so the name stays visible and the terminal is left alone.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from rdtadvisor.core.text import printable, printable_lines
from rdtadvisor.sim import suite
from rdtadvisor.sim.history import observe
from rdtadvisor.store import Store
from tests.clirun import run

# retitles the window, clears the screen, reverses the rest of the line
STREAM = "stream\x1b]0;pwned\x07"
DB = "db1\x1b[2J\u202e"


def test_printable_replaces_every_non_printable_character():
    assert printable(STREAM) == "stream?]0;pwned?"
    assert printable(DB) == "db1?[2J?"
    assert printable("a\tb\nc\x9bd\x7f") == "a?b?c?d?"
    assert printable_lines("one\x1b[1m\ntwo\n") == "one?[1m\ntwo\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """skx-stream-neighbour after a calibration sweep, its streamer and one database renamed."""
    sc = next(s for s in suite.scenarios() if s.name == "skx-stream-neighbour")
    names = {"stream": STREAM, "db1": DB}
    sc = replace(sc, vms=tuple(replace(v, name=names.get(v.name, v.name)) for v in sc.vms))
    path = tmp_path_factory.mktemp("evil") / "store"
    Store(path).append(observe(sc, "calibration", seed=sc.seed))
    return str(path)


@pytest.mark.parametrize("args", [
    ("curves",), ("curves", "--format", "markdown"),
    ("advise", "cat"), ("advise", "cat", "--format", "markdown"),
    ("calibrate",),
    ("report", "--since", "2026-11-19"), ("report", "--since", "2026-11-19", "--format", "markdown"),
    ("store", "show", "domains", "--limit", "20"),
], ids=" ".join)
def test_text_outputs_show_odd_names_without_their_control_characters(store, args):
    r = run("--store", store, *args)
    assert r.exit_code in (0, 1), r.stderr
    out = r.stdout + r.stderr
    odd = [c for c in out if not c.isprintable() and c != "\n"]
    assert not odd
    # the names are still shown, their odd characters as '?'
    assert "pwned?" in out or "db1?[2J?" in out or "db1?\\[2J?" in out


def test_check_text_is_printable(store):
    # no finding on this history, so no name: it only must not pass one through raw
    r = run("--store", store, "check")
    assert r.exit_code == 0 and all(c.isprintable() or c == "\n" for c in r.stdout + r.stderr)
