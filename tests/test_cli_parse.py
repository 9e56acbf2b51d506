"""`rdtadvisor parse`: the command line decides the format; JSON is the contract; errors are one line."""

from __future__ import annotations

import json

import pytest

from rdtadvisor import __version__
from rdtadvisor.cli import cli
from tests.clirun import run
from tests.golden import FIXTURES

CMT = FIXTURES / "psr-cmt-show"


def test_version_and_help_on_every_command():
    assert run("--version").stdout.strip() == f"rdtadvisor, version {__version__}"
    top = run("--help")
    assert top.exit_code == 0
    assert {"parse", "collect", "attach", "store"} <= set(cli.commands)
    for name, command in cli.commands.items():
        assert name in top.stdout
        assert command.help, f"{name} has no help text"
        sub = run(name, "--help")
        assert sub.exit_code == 0 and "Usage:" in sub.stdout, name
        for subname in getattr(command, "commands", {}):
            assert run(name, subname, "--help").exit_code == 0, f"{name} {subname}"


def test_parse_prints_the_json_contract(tmp_path):
    r = run("parse", "--command", "xl psr-cmt-show total-mem-bandwidth",
            str(CMT / "total-mem-bandwidth--two-sockets.txt"))
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["metric"] == "total-mem-bandwidth"
    assert data["rows"][0] == {"domid": 0, "name": "Domain-0", "socket": 0, "value": 183250 * 1024}


def test_the_command_line_decides_total_versus_local():
    path = str(CMT / "total-mem-bandwidth--two-sockets.txt")
    r = run("parse", "--command", "xl psr-cmt-show local-mem-bandwidth", path)
    assert json.loads(r.stdout)["metric"] == "local-mem-bandwidth"


def test_parse_table_format_and_warnings_on_stderr():
    r = run("parse", "--command", "xl psr-cmt-show cache-occupancy", "--format", "table",
            str(CMT / "cache-occupancy--missing-socket-cell.txt"))
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["domid", "name", "socket", "value", "unit"]
    assert "guest-web01" in r.stdout and "guest-db02" not in r.stdout
    assert "guest-db02" in r.stderr and "cannot tell which socket" in r.stderr


def test_parse_reads_stdin():
    text = (CMT / "cache-occupancy--xen-4.5.txt").read_text()
    r = run("parse", "--command", "xl psr-cmt-show cache_occupancy", "-", input=text)
    assert r.exit_code == 0 and json.loads(r.stdout)["command"] == "xl psr-cmt-show cache_occupancy"


def test_garbage_is_one_line_naming_file_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("Total RMID: 3\nthis is not a header\n")
    r = run("parse", "--command", "xl psr-cmt-show cache-occupancy", str(bad))
    assert r.exit_code == 3                                   # no data: docs/exit-codes.md
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1
    assert r.stderr.startswith(f"rdtadvisor: error: {bad}:2: ")


@pytest.mark.parametrize("command_line", ["xl psr-cmt-show cache", "xl vcpu-list", "xl psr-cat-show -l 7"])
def test_bad_command_lines_are_usage_errors(command_line, tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("")
    r = run("parse", "--command", command_line, str(f))
    assert r.exit_code == 2
    assert r.stderr.startswith("rdtadvisor: error: ")


def test_missing_file_is_a_usage_error():
    r = run("parse", "--command", "xl info", "/nonexistent/file.txt")
    assert r.exit_code == 2 and "does not exist" in r.stderr
