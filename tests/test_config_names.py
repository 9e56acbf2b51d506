"""Config typos: a host or VM named in the config that matches nothing in the store.

``[cat.vms."db-ordrs"]`` silently lost the gold tier and ``[report.hosts."xen-sky02"]`` its
capacity. Now each such name is a warning on stderr naming the file, the table and the
closest name in the store; ``--strict`` (a global option) makes it an error (exit 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clirun import run
from tests.fake_xl.captures import write_sample_capture
from tests.hostile import rename_vm

pytestmark = pytest.mark.bad_input

TYPOS = """\
[report.hosts."xen-sky02"]
bandwidth_capacity = "60GiB/s"

[cat.vms."db-ordrs"]
tier = "gold"

[cat.hosts."xen-sky1"]
reserved_ways = 1

[placement]
pinned = ["etl-brust"]
pools = { "xen-clx-bww" = "gold" }
"""


def warnings_of(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("rdtadvisor: warning: ")]


@pytest.fixture
def typos(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(TYPOS)
    return path


def expected(config: Path) -> list[str]:
    return [
        f"rdtadvisor: warning: {config} [report.hosts.\"xen-sky02\"]: no host named 'xen-sky02' in the "
        "store; did you mean 'xen-sky01'?",
        f"rdtadvisor: warning: {config} [cat.vms.\"db-ordrs\"]: no VM named 'db-ordrs' in the store; "
        "did you mean 'db-orders'?",
        f"rdtadvisor: warning: {config} [cat.hosts.\"xen-sky1\"]: no host named 'xen-sky1' in the store; "
        "did you mean 'xen-sky01'?",
        f"rdtadvisor: warning: {config} [placement] pinned: no VM named 'etl-brust' in the store; "
        "did you mean 'etl-burst'?",
        f"rdtadvisor: warning: {config} [placement] pools: no host named 'xen-clx-bww' in the store; "
        "did you mean 'xen-clx-bw'?",
    ]


# report and headroom reach the store through load_usage, check and advise cat through open_store:
# one command of each way is enough.
@pytest.mark.parametrize("command", [("report", "--format", "json"), ("check",)],
                         ids=lambda c: c[0])
def test_each_name_that_matches_nothing_is_one_warning_with_the_closest_match(demo_store, typos, command):
    r = run("--config", str(typos), "--store", demo_store, *command)
    assert r.exit_code in (0, 4), r.stderr                         # the command still ran
    assert warnings_of(r.stderr) == expected(typos)


def test_strict_makes_them_an_error(demo_store, typos):
    r = run("--strict", "--config", str(typos), "--store", demo_store, "report", "--format", "json")
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr.splitlines()[0] == expected(typos)[0].replace("warning:", "error:", 1)
    assert len(r.stderr.splitlines()) == len(expected(typos))      # every typo named, then nothing else


def test_names_that_match_give_no_warning(demo_store, tmp_path):
    config = tmp_path / "ok.toml"
    config.write_text('[cat.vms."db-orders"]\ntier = "gold"\n[report.hosts."xen-sky01"]\n'
                      'bandwidth_capacity = "60GiB/s"\n[placement]\npinned = ["etl-burst"]\n')
    r = run("--strict", "--config", str(config), "--store", demo_store, "report", "--format", "json")
    assert r.exit_code == 0, r.stderr
    assert r.stderr == ""
    assert json.loads(r.stdout)["hosts"]


def test_a_vm_of_older_history_is_in_the_store(tmp_path):
    root = tmp_path / "caps"
    older = write_sample_capture(root, "xen-a", "20261120T000000Z")
    rename_vm(older, b"guest-db02", b"retired-vm")           # gone from the latest collection
    write_sample_capture(root, "xen-a", "20261123T000000Z")
    store = tmp_path / "store"
    assert run("--store", str(store), "collect", "--replay", str(root)).exit_code == 0
    config = tmp_path / "c.toml"
    config.write_text('[cat.vms."retired-vm"]\ntier = "gold"\n[cat.vms."guest-db2"]\ntier = "gold"\n')
    r = run("--config", str(config), "--store", str(store), "check")
    assert warnings_of(r.stderr) == [
        f"rdtadvisor: warning: {config} [cat.vms.\"guest-db2\"]: no VM named 'guest-db2' in the store; "
        "did you mean 'guest-db02'?"]
