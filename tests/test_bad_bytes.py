"""Bytes xl prints that are not UTF-8: one escaped form everywhere, and garbage costs only its host.

A VM named ``caf\\xe9-prima`` (one Latin-1 byte) is stored, reported and exported as
``caf\\\\xe9-prima`` (rdtadvisor.core.text); `to_bytes` gives back the bytes xl printed.
Binary garbage in a capture file fails that host with one line naming the file; the other
hosts are stored and the exit status is 1. Collected over a real loopback sshd too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rdtadvisor import xl
from rdtadvisor.core.text import from_bytes, from_raw, is_text, to_bytes
from rdtadvisor.store import Store
from tests.clirun import run
from tests.fake_xl.captures import write_sample_capture
from tests.hostile import LATIN1, LATIN1_STORED, garbage, latin1_capture, rename_vm

pytestmark = pytest.mark.bad_input


@pytest.mark.parametrize(("data", "stored"), [
    (b"caf\xe9-prima", "caf\\xe9-prima"),
    ("café\u200b".encode(), "café\u200b"),                  # valid UTF-8 stays, invisible or not
    (b"a\\b", "a\\\\b"),                                     # a backslash is doubled: reversible
    (b"caf\\xe9-prima", "caf\\\\xe9-prima"),                 # ... so this is not the Latin-1 name
    (b"\xed\xa0\x80", "\\xed\\xa0\\x80"),                    # an encoded surrogate is not UTF-8
])
def test_the_escaped_form(data, stored):
    assert from_bytes(data) == stored
    assert to_bytes(stored) == data
    assert from_raw(data.decode("utf-8", "surrogateescape")) == stored
    stored.encode("utf-8")                                     # what Parquet and JSON need


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_round_trip_and_become_valid_text(data):
    text = from_bytes(data)
    assert to_bytes(text) == data
    assert is_text(text)
    text.encode("utf-8")


SAMPLE = write_sample_capture  # (root, host) -> capture folder


@pytest.fixture
def captures(tmp_path: Path) -> Path:
    root = tmp_path / "caps"
    SAMPLE(root, "xen-good")
    latin1_capture(root, "xen-latin1")
    return root


@pytest.mark.parametrize("file", ["xl-list.txt", "xl-psr-cmt-show-cache-occupancy.txt", "xl-psr-cat-show.txt",
                                  "xl-psr-mba-show.txt", "xl-psr-cmt-show-total-mem-bandwidth.1.txt"])
def test_every_parser_keeps_the_latin1_name_escaped(captures, file):
    path = next((captures / "xen-latin1").iterdir()) / file
    command = {"xl-list.txt": "xl list", "xl-psr-cat-show.txt": "xl psr-cat-show",
               "xl-psr-mba-show.txt": "xl psr-mba-show"}.get(file) or \
        f"xl psr-cmt-show {file.removeprefix('xl-psr-cmt-show-').split('.')[0]}"
    data = path.read_bytes()
    # as bytes (a file) and as raw text (a runner decodes with surrogateescape): the same record
    for given_ in (data, data.decode("utf-8", "surrogateescape")):
        record = xl.parse(command, given_, source=str(path)).to_dict()
        names = json.dumps(record, ensure_ascii=False)
        assert LATIN1_STORED.replace("\\", "\\\\") in names, names   # JSON escapes the backslash
        assert "\ufffd" not in names


def test_replay_stores_and_reports_the_name_as_escaped(captures, tmp_path):
    store = tmp_path / "store"
    r = run("--store", str(store), "collect", "--replay", str(captures))
    assert r.exit_code == 0, r.stderr
    s = Store(store, create=False)
    assert s.hosts() == ["xen-good", "xen-latin1"]
    for table in ("domains", "samples", "settings"):
        names = set(s.read(table, hosts="xen-latin1")["domain"])
        assert LATIN1_STORED in names, (table, names)
    report = run("--store", str(store), "report", "--since", "30d", "--format", "json")
    assert report.exit_code == 0, report.stderr
    assert LATIN1_STORED in {vm["name"] for h in json.loads(report.stdout)["hosts"] for vm in h["vms"]}
    html = run("--store", str(store), "report", "--since", "30d", "--format", "html")
    assert html.exit_code == 0 and LATIN1_STORED in html.stdout
    shown = run("--store", str(store), "store", "show", "domains", "--format", "csv")
    assert f"{LATIN1_STORED}," in shown.stdout


def test_parse_shows_the_escaped_name(captures):
    path = next((captures / "xen-latin1").iterdir()) / "xl-list.txt"
    r = run("parse", "--command", "xl list", str(path))
    assert r.exit_code == 0, r.stderr
    assert LATIN1_STORED in [d["name"] for d in json.loads(r.stdout)["domains"]]


@pytest.mark.parametrize("file", ["xl-psr-cmt-show-cache-occupancy.txt", "xl-list.txt", "xl-psr-cat-show.txt",
                                  "xl-info.txt"])
def test_binary_garbage_fails_only_its_host_with_one_line_naming_the_file(captures, tmp_path, file):
    bad = SAMPLE(captures, "xen-garbage")
    (bad / file).write_bytes(garbage())
    store = tmp_path / "store"
    r = run("--store", str(store), "collect", "--replay", str(captures))
    assert r.exit_code == 1, r.stderr
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"rdtadvisor: xen-garbage: {bad / file}:"), lines
    s = Store(store, create=False)
    assert {"xen-good", "xen-latin1"} <= set(s.hosts())
    assert LATIN1_STORED in set(s.read("domains", hosts="xen-latin1")["domain"])


def test_a_host_folder_that_is_not_utf8_fails_alone(captures, tmp_path):
    odd = captures / "xen-\udce9"      # the byte 0xe9 in the folder name (os.fsencode)
    shutil.copytree(next(captures.iterdir()), odd)
    store = tmp_path / "store"
    r = run("--store", str(store), "collect", "--replay", str(captures))
    assert r.exit_code == 1
    assert [line for line in r.stderr.splitlines() if line] == [
        f"rdtadvisor: xen-\\xe9: {captures}/xen-\\xe9: the host folder's name is not UTF-8 text; rename it"]
    assert Store(store, create=False).hosts() == ["xen-good", "xen-latin1"]


@pytest.mark.sshd
def test_over_ssh_the_latin1_host_is_stored_and_saved_byte_for_byte(tmp_path, sshd_factory):
    source = tmp_path / "source"
    good = SAMPLE(source, "xen-good")
    odd = latin1_capture(source, "xen-latin1")
    rename_vm(odd, b"guest-db02", b"db\\prod")          # a backslash, too
    addresses = {"xen-good": "127.0.0.2", "xen-latin1": "127.0.0.3"}
    hostmap = tmp_path / "hostmap.json"
    hostmap.write_text(json.dumps({a: h for h, a in addresses.items()}))
    server = sshd_factory(addresses=tuple(addresses.values()),
                          env={"FAKE_XL_CAPTURES": str(source), "FAKE_XL_HOSTMAP": str(hostmap)})
    opts = server.ssh_options()
    config = tmp_path / "config.toml"
    config.write_text("\n".join([
        "[collect]", "timeout = 30", "readings = 1", "[ssh]", f'user = "{opts.user}"', f"port = {opts.port}",
        f'identity = "{opts.identity}"', "options = [" + ", ".join(json.dumps(o) for o in opts.options) + "]",
        *(f'[[hosts]]\nname = "{h}"\naddress = "{a}"' for h, a in addresses.items())]) + "\n")
    store, raw = tmp_path / "store", tmp_path / "raw"
    r = run("--store", str(store), "--config", str(config), "collect", "--save-raw", str(raw))
    assert r.exit_code == 0, r.stderr
    (saved,) = (raw / "xen-latin1").iterdir()
    for name in ("xl-list.txt", "xl-psr-cmt-show-cache-occupancy.txt", "xl-psr-cat-show.txt"):
        assert (saved / name).read_bytes() == (odd / name).read_bytes(), name
    s = Store(store, create=False)
    assert set(s.read("domains", hosts="xen-latin1")["domain"]) == {"Domain-0", LATIN1_STORED, "db\\\\prod"}
    assert to_bytes(LATIN1_STORED) == LATIN1
    assert s.hosts() == ["xen-good", "xen-latin1"] and good.exists()
