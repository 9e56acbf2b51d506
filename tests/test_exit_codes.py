"""One exit-status table for every command (rdtadvisor/cli/exits.py, docs/exit-codes.md).

Every command: its --help ends with the table's line; an unknown option is 2; a config file
that is not TOML is 2. Every command that reads the store: no store is 3. And the statuses
in between, each from a real run: 1 partial, 4 warnings, 5 critical, 70 a bug.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from rdtadvisor.cli import cli
from rdtadvisor.cli.exits import EPILOG, TABLE
from tests.clirun import run
from tests.fake_xl.captures import write_sample_capture

pytestmark = pytest.mark.bad_input
ROOT = Path(__file__).resolve().parents[1]


def leaf_commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out += leaf_commands(command, (*path, name))
        else:
            out.append((*path, name))
    return out


COMMANDS = leaf_commands()


def test_the_docs_table_is_the_codes_table():
    text = (ROOT / "docs" / "exit-codes.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\d+) \| ([a-z ]+) \|", text, re.MULTILINE))
    assert {int(k): v for k, v in rows.items()} == TABLE
    assert "docs/exit-codes.md" in EPILOG


def test_there_are_commands_to_check():
    assert {("collect",), ("report",), ("check",), ("advise", "cat"), ("store", "check")} <= set(COMMANDS)


@pytest.mark.parametrize("path", [(), *COMMANDS, ("advise",), ("store",), ("export",)],
                         ids=lambda p: " ".join(p) or "rdtadvisor")
def test_every_help_ends_with_the_exit_status_line(path):
    r = run(*path, "--help")
    assert r.exit_code == 0, r.stderr
    assert " ".join(EPILOG.split()) in " ".join(r.stdout.split()), r.stdout


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_an_unknown_option_is_a_usage_error_everywhere(path):
    r = run(*path, "--no-such-option")
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    assert "No such option" in r.stderr


@pytest.mark.parametrize("path", [("report",), ("headroom", "--occupancy", "1MiB"), ("check",),
                                  ("advise", "cat")],
                         ids=lambda p: p[0] if len(p) == 1 else " ".join(p[:2]))
def test_a_config_file_that_is_not_toml_is_a_usage_error(tmp_path, path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[collect\n")
    r = run("--config", str(bad), "--store", str(tmp_path), *path)
    assert r.exit_code == 2, r.stderr
    assert r.stderr.startswith(f"rdtadvisor: error: {bad}: not valid TOML")


STORE_READERS = [
    ("report",), ("headroom", "--occupancy", "1MiB"), ("check",), ("advise", "cat"), ("advise", "placement"),
    ("calibrate",), ("curves",), ("export", "prometheus", "--output", "x.prom"), ("top", "--once"),
    ("store", "info"), ("store", "show", "samples"), ("store", "check"), ("store", "compact"),
]


@pytest.mark.parametrize("path", STORE_READERS, ids=lambda p: " ".join(a for a in p if not a.startswith("-")))
def test_no_store_is_a_data_error_everywhere(tmp_path, path):
    missing = tmp_path / "no-store"
    r = run("--store", str(missing), *path)
    assert r.exit_code == 3, (r.exit_code, r.stderr)
    assert "Traceback" not in r.stderr and str(missing) in r.stderr
    assert not missing.exists()


def test_a_missing_replay_folder_is_a_data_error(tmp_path):
    r = run("--store", str(tmp_path / "s"), "collect", "--replay", str(tmp_path / "nope"))
    assert r.exit_code == 3
    assert r.stderr == f"rdtadvisor: error: {tmp_path / 'nope'}: no such capture folder\n"


def test_partial_and_findings(tmp_path, demo_store):
    # (report --fail-on's 4 and 5: tests/test_report_cli.py::test_fail_on_sets_the_exit_status_for_cron)
    root = tmp_path / "caps"
    write_sample_capture(root, "xen-good")
    (write_sample_capture(root, "xen-bad") / "xl-list.txt").write_bytes(b"\x00garbage\n")
    assert run("--store", str(tmp_path / "s"), "collect", "--replay", str(root)).exit_code == 1
    assert run("--store", demo_store, "check").exit_code == 4


def test_a_bug_is_status_70_with_its_traceback(tmp_path, monkeypatch):
    from rdtadvisor.store.parquet import Store

    def boom(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(Store, "summary", boom)
    run("--store", str(tmp_path / "s"), "collect", "--replay", str(ROOT / "samples" / "captures"))
    r = run("--store", str(tmp_path / "s"), "store", "info")
    assert r.exit_code == 70
    assert "Traceback" in r.stderr
    last = r.stderr.splitlines()[-1]
    assert last == "rdtadvisor: internal error (a bug, please report it): RuntimeError: boom"
