"""Collection end to end on this machine: the real runner and CLI against a fake `xl` replaying samples.

The fake xl (tests/fake_xl/xl) stands in for the hypervisor only; everything else is real:
subprocesses, the capture layout, the parsers, the Parquet store and the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from rdtadvisor.core.config import HostConfig
from rdtadvisor.sources.capture import find_captures, read_capture
from rdtadvisor.sources.collect import collect_host, replay
from rdtadvisor.sources.local import LocalRunner
from rdtadvisor.store import Store
from rdtadvisor.store.frames import capture_frames
from tests.clirun import run

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
FAKE_DIR = Path(__file__).resolve().parent / "fake_xl"


def newest(host: str) -> Path:
    return find_captures(SAMPLES / "captures" / host)[-1]


@pytest.fixture
def fake_env(monkeypatch, tmp_path):
    """Make `xl` on PATH the fake one, replaying `host`'s newest sample capture."""
    def use(capture: Path) -> Path:
        monkeypatch.setenv("PATH", f"{FAKE_DIR}:{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_XL_CAPTURES", str(capture))
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        monkeypatch.setenv("FAKE_XL_STATE", str(state))
        return state
    return use


def calls(state: Path) -> list[list[str]]:
    """The xl argv (without "xl") of every call the fake received, in order."""
    logs = [line for f in state.glob("*/calls.jsonl") for line in f.read_text().splitlines()]
    return [json.loads(line)["argv"][1:] for line in logs]


@pytest.mark.parametrize(("host", "expected"), [
    ("xen-legacy45", {"xl-info.txt", "xl-list.txt", "xl-psr-cmt-show-cache-occupancy.txt"}),
    ("xen-atom-l2", {"xl-info.txt", "xl-list.txt", "xl-psr-hwinfo.txt", "xl-psr-cat-show-l2.txt"}),
    ("xen-old46", {"xl-info.txt", "xl-list.txt", "xl-psr-hwinfo.txt", "xl-psr-cmt-show-cache-occupancy.txt",
                   "xl-psr-cat-show.txt"} | {f"xl-psr-cmt-show-{m}{s}.txt" for m in
                                             ("total-mem-bandwidth", "local-mem-bandwidth")
                                             for s in ("", ".1", ".2")}),
])
def test_commands_follow_the_xen_version_and_the_features_hwinfo_reports(fake_env, host, expected):
    state = fake_env(newest(host))
    capture = collect_host(LocalRunner(HostConfig(host, local=True)), readings=3, timeout=20)
    assert set(capture.results) == expected
    ran = calls(state)
    assert ran[0] == ["info"]  # the version decides everything else
    if host == "xen-legacy45":
        assert ["psr-cmt-show", "cache_occupancy"] in ran  # 4.5 spelling


def test_a_live_collection_stores_what_replaying_the_same_capture_stores(fake_env, tmp_path):
    source = newest("xen-sky01")
    fake_env(source)
    live = collect_host(LocalRunner(HostConfig("xen-sky01", local=True)), readings=3, timeout=20)
    replayed = read_capture(source)
    for name, result in replayed.results.items():
        assert live.results[name].stdout == result.stdout, name
        assert live.results[name].exit_status == result.exit_status, name
    a, b = capture_frames(live), capture_frames(replayed)
    for table in ("samples", "settings", "domains"):
        cols = [c for c in a[table].columns if c != "time"]
        pd.testing.assert_frame_equal(a[table][cols], b[table][cols])


def test_stored_values_are_the_printed_kib_times_1024(tmp_path):
    r = run("--store", str(tmp_path / "s"), "collect", "--replay", str(SAMPLES / "captures"))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""  # not a terminal: silent, like cron wants
    s = Store(tmp_path / "s").read("samples", hosts=["xen-sky01"])
    first = s[(s.time == s.time.min()) & (s.domain == "db-primary") & (s.metric == "l3_occupancy")]
    cap = SAMPLES / "captures" / "xen-sky01" / "20261123T090000Z"
    text = (cap / "xl-psr-cmt-show-cache-occupancy.txt").read_text()
    row = next(line for line in text.splitlines() if line.startswith("db-primary"))
    kib = [int(tok) for tok in row.split()[2::2]]
    assert sorted(first.value) == sorted(k * 1024 for k in kib)
    assert set(first.unit) == {"B"}
    bw = s[(s.metric == "mem_bw_total") & (s.time == s.time.min())]
    assert sorted(bw.reading.unique()) == [0, 1, 2]  # every 10 ms snapshot kept


def test_replaying_twice_stores_nothing_new(tmp_path):
    store = str(tmp_path / "s")
    first = run("--store", store, "collect", "--replay", str(SAMPLES / "captures"), "-v")
    sizes = {t: len(Store(tmp_path / "s").read(t)) for t in ("samples", "settings", "facts", "domains")}
    again = run("--store", store, "collect", "--replay", str(SAMPLES / "captures"), "-v")
    assert "stored 11 collections" in first.stdout
    assert "stored 0 collections (0 rows)" in again.stdout and "11 already stored" in again.stdout
    assert sizes == {t: len(Store(tmp_path / "s").read(t)) for t in sizes}
    assert all(sizes.values())


def test_bad_captures_name_the_file_and_line_and_keep_the_rest(tmp_path):
    store = tmp_path / "s"
    r = run("--store", str(store), "collect", "--replay", str(SAMPLES / "failures"))
    assert r.exit_code == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 3, r.stderr
    assert any("xen-garbage" in x and "xl-psr-cmt-show-cache-occupancy.txt:1:" in x for x in lines)
    assert any("xen-truncated" in x and "xl-psr-cmt-show-total-mem-bandwidth.txt:8:" in x for x in lines)
    assert any("xen-badmeta" in x and "meta.json" in x for x in lines)
    hosts = set(Store(store).read("samples").host)
    assert {"xen-garbage", "xen-truncated"} <= hosts  # their other files were stored
    events = Store(store).read("events", hosts=["xen-nocmt"])
    assert {"truncated", "l3-size-unavailable"} <= set(events.kind)


def test_local_collect_from_the_cli_saves_raw_and_counts(fake_env, tmp_path):
    fake_env(newest("xen-sky01"))
    raw = tmp_path / "raw"
    r = run("--store", str(tmp_path / "s"), "collect", "--host", "local", "--save-raw", str(raw),
            "--count", "2", "--interval", "1", "--readings", "2", "-v")
    assert r.exit_code == 0, r.stderr
    saved = find_captures(raw)
    assert len(saved) == 2 and {p.parent.name for p in saved} == {"local"}
    assert "xl-psr-cmt-show-total-mem-bandwidth.1.txt" in {p.name for p in saved[0].iterdir()}
    assert "stored 2 collections" in r.stdout


def test_no_hosts_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    r = run("--store", str(tmp_path / "s"), "collect")
    assert r.exit_code == 2 and "no hosts" in r.stderr


def test_replay_of_an_empty_folder_is_a_data_error(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("--store", str(tmp_path / "s"), "collect", "--replay", str(tmp_path / "empty"))
    assert r.exit_code == 3 and "no captures found" in r.stderr


def test_replay_reads_every_capture_in_time_order():
    results = list(replay(SAMPLES / "captures"))
    assert all(r.ok for r in results)
    sky = [r.capture.time for r in results if r.host == "xen-sky01"]
    assert sky == sorted(sky) and len(sky) == 3


# --- attach -----------------------------------------------------------------------------------

@pytest.fixture
def half_attached(tmp_path):
    """xen-sky01's capture with only Domain-0 attached (the others invisible to psr-cmt-show)."""
    src = newest("xen-sky01")
    dst = tmp_path / "cap" / "xen-sky01" / src.name
    shutil.copytree(src, dst)
    occ = dst / "xl-psr-cmt-show-cache-occupancy.txt"
    occ.write_text("".join(occ.read_text().splitlines(keepends=True)[:4]))
    return dst


def test_attach_attaches_every_live_unattached_domain(fake_env, half_attached):
    state = fake_env(half_attached)
    r = run("attach", "--host", "local")
    assert r.exit_code == 0, r.stderr
    assert "attached 5:" in r.stdout and "1 already attached" in r.stdout
    attached = [a for a in calls(state) if a[0] == "psr-cmt-attach"]
    assert [a[1] for a in attached] == ["3", "5", "7", "9", "11"]  # by domid, never by name


def test_attach_reports_rmid_exhaustion_naming_the_unmonitored(fake_env, half_attached, monkeypatch):
    fake_env(half_attached)
    monkeypatch.setenv("FAKE_XL_RMIDS", "2")
    r = run("attach", "--host", "local")
    assert r.exit_code == 1
    assert "attached 2:" in r.stdout
    assert "RMIDs exhausted" in r.stderr
    assert "stream-batch-07 (7) and 2 more stay unmonitored" in r.stderr
    assert "build agent 3" in r.stderr


def test_attach_dry_run_changes_nothing(fake_env, half_attached):
    state = fake_env(half_attached)
    r = run("attach", "--host", "local", "--dry-run")
    assert r.exit_code == 0 and "would attach 5" in r.stdout
    assert not [a for a in calls(state) if a[0] == "psr-cmt-attach"]


def test_xl_quirks_in_the_samples_end_up_as_facts_and_events(tmp_path):
    store = tmp_path / "s"
    assert run("--store", str(store), "collect", "--replay", str(SAMPLES / "captures")).exit_code == 0
    s = Store(store)
    facts = s.read("facts", hosts=["xen-bdw-cdp"])
    # psr-hwinfo exited 253 (no MBA: the status is the last section's) yet its output counts.
    cdp = facts[(facts.fact == "l3_cdp")]
    assert len(cdp) and set(cdp.value) == {1.0}
    assert set(facts.loc[facts.fact == "l3_cos_max", "value"]) == {7.0}  # already halved by CDP
    events = s.read("events", hosts=["xen-sky01"])
    assert {"counter-overflow", "sample-failed", "parse-warning"} <= set(events.kind)
    legacy = s.read("facts", hosts=["xen-legacy45"])
    assert set(legacy.loc[legacy.fact == "l3_cache_bytes", "value"]) == {20480 * 1024}  # 4.5: from cmt
    settings = s.read("settings", hosts=["xen-bdw-cdp"])
    assert {"l3_code_cbm", "l3_data_cbm"} == set(settings.setting)
    assert set(s.read("settings", hosts=["xen-atom-l2"]).setting) == {"l2_cbm"}
    mba = s.read("settings", hosts=["xen-sky01"])
    assert set(mba.loc[(mba.setting == "mba_thrtl") & (mba.domain == "stream-batch-07"), "value"]) == {20}


def test_store_info_shows_each_host_from_its_latest_collection(tmp_path):
    store = str(tmp_path / "s")
    run("--store", store, "collect", "--replay", str(SAMPLES / "captures"))
    r = run("--store", store, "store", "info")
    assert r.exit_code == 0, r.stderr
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()
            if line.strip().startswith("xen-")}
    assert rows["xen-sky01"][1:8] == ["4.19.1", "2", "27.5", "cmt,cat,mba", "6", "6", "3"]
    assert rows["xen-bdw-cdp"][4] == "cmt,cat,cdp"
    assert rows["xen-atom-l2"][3:5] == ["-", "l2cat"]
