"""Shapes and sizes nobody expected: one line naming the file and what was wrong, never a traceback.

* meta.json whose keys have the wrong shape: that capture's host fails, the others are stored;
* numbers that are not finite (or absurd) where options and the config file are parsed;
* xl output and capture files over ``[collect] max_output_bytes``;
* a corrupt or foreign Parquet file in the store: readers skip it with a warning naming it,
  ``store check`` finds it and ``store check --repair`` quarantines it, touching nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from rdtadvisor.core.config import DEFAULT_MAX_OUTPUT_BYTES, load_settings
from rdtadvisor.store import Store
from tests.clirun import run
from tests.fake_xl.captures import write_sample_capture
from tests.hostile import garbage
from tests.sshd import FAKE_XL_DIR

pytestmark = pytest.mark.bad_input


def lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.strip()]


# --- meta.json ------------------------------------------------------------------------------------

def _meta(capture: Path, change) -> Path:
    path = capture / "meta.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))
    return path


def _command(meta: dict, **entry) -> None:
    meta["commands"]["xl-list.txt"] = {"argv": ["xl", "list"], "exit_status": 0, "stderr": "",
                                       "started": "2026-11-26T10:47:00+00:00", "seconds": 0.01,
                                       "error": None, **entry}


@pytest.mark.parametrize(("change", "says"), [
    (lambda m: m.update(commands=["a"]), "'commands': must be an object of file name -> command, not a list"),
    (lambda m: m["commands"].update({"xl-list.txt": "a"}),
     "commands.\"xl-list.txt\": must be an object (argv, exit_status, stderr, ...), not a string"),
    (lambda m: _command(m, started="yesterday"), "commands.\"xl-list.txt\".started: not an ISO 8601 time: "
                                                 "'yesterday'"),
    (lambda m: _command(m, seconds="fast"), "commands.\"xl-list.txt\".seconds: must be a number of seconds "
                                            ">= 0, not 'fast'"),
    (lambda m: _command(m, seconds=float("nan")), "commands.\"xl-list.txt\".seconds: must be a number of "
                                                  "seconds >= 0, not nan"),
    (lambda m: _command(m, exit_status="0"), "commands.\"xl-list.txt\".exit_status: must be an integer or "
                                             "null, not '0'"),
    (lambda m: _command(m, argv="xl list"), "commands.\"xl-list.txt\".argv: must be a list of strings"),
    (lambda m: _command(m, stderr=["x"]), "commands.\"xl-list.txt\".stderr: must be a string or null"),
    (lambda m: m.update(host=5), "'host': must be a host name (a non-empty string), not 5"),
    (lambda m: m["commands"].update({"../../etc/passwd": {"argv": ["xl", "list"]}}),
     "commands.\"../../etc/passwd\": not a capture file name (NAME.txt in the capture folder)"),
])
def test_meta_json_shapes_fail_their_host_with_one_line_naming_file_and_key(tmp_path, change, says):
    root = tmp_path / "caps"
    write_sample_capture(root, "xen-good")
    bad = write_sample_capture(root, "xen-bad")
    meta = _meta(bad, change)
    store = tmp_path / "store"
    r = run("--store", str(store), "collect", "--replay", str(root))
    assert r.exit_code == 1, r.stderr
    assert lines(r.stderr) == [f"rdtadvisor: xen-bad: {meta}: {says}"]
    assert Store(store, create=False).hosts() == ["xen-good"]


# --- numbers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "says"), [
    (["--interval", "inf"], "--interval"), (["--interval", "1e300"], "--interval"),
    (["--interval", "nan"], "--interval"), (["--timeout", "nan"], "--timeout"),
    (["--timeout", "inf"], "--timeout"), (["--timeout", "1e300"], "--timeout"),
])
def test_collect_numbers_that_are_not_finite_are_usage_errors(tmp_path, args, says):
    r = run("--store", str(tmp_path / "store"), "collect", "--host", "local", "--count", "2", *args)
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    (line,) = lines(r.stderr)[-1:]
    assert says in line and args[1] in line, r.stderr
    assert not (tmp_path / "store").exists() or not Store(tmp_path / "store").hosts()


@pytest.mark.parametrize(("toml", "key"), [
    ("[collect]\ntimeout = inf\n", "'timeout'"), ("[collect]\ntimeout = nan\n", "'timeout'"),
    ("[ssh]\nconnect_timeout = inf\n", "'connect_timeout'"),
    ("[collect]\nmax_output_bytes = \"lots\"\n", "'max_output_bytes'"),
    ("[collect]\nmax_output_bytes = 0\n", "'max_output_bytes'"),
])
def test_config_numbers_that_are_not_finite_name_the_file_and_key(tmp_path, toml, key):
    config = tmp_path / "config.toml"
    config.write_text(toml)
    r = run("--config", str(config), "--store", str(tmp_path / "store"), "collect", "--host", "local")
    assert r.exit_code == 2
    (line,) = lines(r.stderr)
    assert line.startswith(f"rdtadvisor: error: {config}") and key in line, line


@pytest.mark.parametrize("value", ["inf", "nan", "1e300"])
def test_calibrate_durations_that_are_not_finite_are_usage_errors(demo_store, value):
    r = run("--store", demo_store, "calibrate", "--duration", value)
    assert r.exit_code == 2, r.stderr
    assert "--duration" in lines(r.stderr)[-1]


# --- sizes -----------------------------------------------------------------------------------------

def test_the_default_output_limit_is_documented_and_configurable(tmp_path):
    assert DEFAULT_MAX_OUTPUT_BYTES == 4 * 2**20
    config = tmp_path / "c.toml"
    config.write_text("")
    assert load_settings(config).max_output_bytes == DEFAULT_MAX_OUTPUT_BYTES
    config.write_text('[collect]\nmax_output_bytes = "64KiB"\n')
    assert load_settings(config).max_output_bytes == 64 * 1024
    from rdtadvisor.core import config as config_module
    assert "max_output_bytes = \"4MiB\"" in config_module.__doc__


def _limit(tmp_path: Path, limit: str = "64KiB") -> Path:
    config = tmp_path / "limit.toml"
    config.write_text(f'[collect]\nmax_output_bytes = "{limit}"\n')
    return config


def test_a_capture_file_over_the_limit_fails_its_host_in_one_line(tmp_path):
    root = tmp_path / "caps"
    write_sample_capture(root, "xen-good")
    big = write_sample_capture(root, "xen-big")
    table = big / "xl-psr-cmt-show-cache-occupancy.txt"
    table.write_bytes(table.read_bytes() + b"x" * 100_000)
    store = tmp_path / "store"
    r = run("--config", str(_limit(tmp_path)), "--store", str(store), "collect", "--replay", str(root))
    assert r.exit_code == 1
    assert lines(r.stderr) == [f"rdtadvisor: xen-big: {table}: {table.stat().st_size} bytes, over the limit "
                               "of 65536 for one xl output ([collect] max_output_bytes)"]
    assert Store(store, create=False).hosts() == ["xen-good"]


def test_xl_output_over_the_limit_is_refused_while_it_is_read(tmp_path, monkeypatch):
    capture = write_sample_capture(tmp_path / "caps", "local")
    (capture / "xl-list.txt").write_bytes((capture / "xl-list.txt").read_bytes() + garbage(size=200_000))
    monkeypatch.setenv("PATH", f"{FAKE_XL_DIR}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_XL_CAPTURES", str(capture))
    store = tmp_path / "store"
    r = run("--config", str(_limit(tmp_path)), "--store", str(store), "collect", "--host", "local")
    assert r.exit_code == 1
    assert lines(r.stderr) == ["rdtadvisor: local: 'xl list' printed more than 65536 bytes, the limit for "
                               "one xl output ([collect] max_output_bytes); refused"]


# --- the store ---------------------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "caps"
    for host in ("xen-a", "xen-b"):
        write_sample_capture(root, host)
    path = tmp_path / "store"
    assert run("--store", str(path), "collect", "--replay", str(root)).exit_code == 0
    return path


def _files(store: Path) -> dict[str, str]:
    """Every file outside the store's dot-folders, by relative path: its SHA-256."""
    files = [p for p in sorted(store.rglob("*")) if p.is_file()]
    return {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files if not p.relative_to(store).parts[0].startswith(".")}


def _one(store: Path, table: str, host: str) -> Path:
    (path,) = (store / table / f"host={host}").rglob("*.parquet")
    return path


def test_a_corrupt_parquet_file_is_skipped_by_readers_with_a_warning_naming_it(store):
    bad = _one(store, "samples", "xen-b")
    bad.write_bytes(bad.read_bytes()[:100])
    r = run("--store", str(store), "report", "--since", "30d", "--format", "json")
    assert r.exit_code == 0, r.stderr
    assert lines(r.stderr) == [f"rdtadvisor: warning: {bad}: unreadable Parquet file skipped "
                               "(run 'rdtadvisor store check --repair' to quarantine it)"]
    assert {h["host"] for h in json.loads(r.stdout)["hosts"]} >= {"xen-a"}
    info = run("--store", str(store), "store", "info")
    assert info.exit_code == 0 and str(bad) in info.stderr


def test_store_check_finds_and_repair_quarantines_only_the_bad_files(store):
    corrupt = _one(store, "samples", "xen-b")
    corrupt.write_bytes(garbage())
    folder = _one(store, "domains", "xen-a").parent
    stray = folder / "notes.txt"
    stray.write_text("not ours\n")
    foreign = folder / "export.parquet"
    pd.DataFrame({"x": [1, 2]}).to_parquet(foreign)
    before = _files(store)
    r = run("--store", str(store), "store", "check")
    assert r.exit_code == 4 and "Traceback" not in r.stderr    # problems found: docs/exit-codes.md
    found = [line for line in r.stdout.splitlines() if line.startswith(str(store))]
    assert sorted(found) == sorted([
        f"{corrupt}: corrupt: not a readable Parquet file",
        f"{stray}: foreign: not a Parquet file of the store",
        f"{foreign}: foreign: not a file the store wrote (name)"])
    assert _files(store) == before                          # check alone changes nothing
    r = run("--store", str(store), "store", "check", "--repair")
    assert r.exit_code == 4
    moved = {p.name for p in (store / ".quarantine").rglob("*") if p.is_file()}
    assert moved == {corrupt.name, "notes.txt", "export.parquet"}
    after = _files(store)
    assert after == {k: v for k, v in before.items()
                     if k not in {str(p.relative_to(store)) for p in (corrupt, stray, foreign)}}
    clean = run("--store", str(store), "store", "check")
    assert clean.exit_code == 0, clean.stdout
    report = run("--store", str(store), "report", "--since", "30d", "--format", "json")
    assert report.exit_code == 0 and lines(report.stderr) == []


def test_compaction_leaves_unreadable_and_foreign_files_alone(store):
    corrupt = _one(store, "samples", "xen-b")
    corrupt.write_bytes(garbage())
    folder = _one(store, "domains", "xen-a").parent
    foreign = folder / "export.parquet"
    pd.DataFrame({"x": [1, 2]}).to_parquet(foreign)
    # a second collection, so that every partition has two files to merge
    root = store.parent / "caps2"
    for host in ("xen-a", "xen-b"):
        write_sample_capture(root, host, "20261126T104800Z")
    assert run("--store", str(store), "collect", "--replay", str(root)).exit_code == 0
    r = run("--store", str(store), "store", "compact")
    assert r.exit_code == 0, r.stderr
    assert corrupt.read_bytes() == garbage() and foreign.exists()       # nothing lost
    assert len(list(corrupt.parent.glob("*.parquet"))) == 2               # that partition not merged
    assert len([p for p in folder.glob("*.parquet") if p != foreign]) == 1  # the others are
