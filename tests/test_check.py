"""`rdtadvisor check` (rdtadvisor.advise.check + rdtadvisor.cli.check): end to end on the sample fleet,
and rule by rule on hand-built frames."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rdtadvisor.advise.check import Thresholds, check
from rdtadvisor.store.frames import validate
from tests.clirun import run

T = pd.Timestamp("2026-11-23T09:10:00Z")
KIB, MIB = 1024, 2**20


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    s = str(tmp_path_factory.mktemp("check") / "store")
    r = run("--store", s, "collect", "--replay", "samples/captures")
    assert r.exit_code == 0, r.stderr
    return s


def test_sample_fleet_findings_make_sense(store):
    r = run("--store", store, "check", "--host", "xen-sky01", "--format", "json")
    assert r.exit_code == 4, r.stderr                         # findings: docs/exit-codes.md
    doc = json.loads(r.stdout)
    got = [(f["socket"], f["kind"], f["domid"]) for f in doc["findings"]]
    # dom0 at 0x7ff pollutes db-primary's 0x7f0; the analytics VM (default mask, 3+ MiB held)
    # shares ways 0-1 with stream-batch-07 (0x3); db-primary (0x7f0) does not overlap 0x3.
    assert got == [(0, "dom0-default", 0), (0, "overlaps-streaming", 9),
                   (1, "dom0-default", 0), (1, "overlaps-streaming", 9)]
    over = doc["findings"][1]
    assert over["evidence"]["streaming_domid"] == 7 and over["evidence"]["shared_ways"] == 2
    assert over["evidence"]["streaming_bandwidth_share"] > 0.4
    assert "stream-batch-07 (domid 7) at 0x3" in over["message"]
    summary = [(c["socket"], c["cbm_len"], c["cos_used"], c["cos_budget"], c["cdp"]) for c in doc["checked"]]
    assert summary == [(0, 11, 2, 15, False), (1, 11, 2, 15, False)]
    text = run("--store", store, "check", "--host", "xen-sky01")
    assert text.exit_code == 4
    assert text.stdout.splitlines()[0] == \
        "xen-sky01 socket 0 (2026-11-23T09:10:00+00:00): 11-bit CBM, COS 2 of 15"
    assert text.stdout.endswith("4 finding(s) on 2 socket(s)\n")


def test_whole_fleet_and_exit_codes(store):
    r = run("--store", store, "check", "--format", "json")
    assert r.exit_code == 4
    doc = json.loads(r.stdout)
    cdp = [c for c in doc["checked"] if c["host"] == "xen-bdw-cdp"]
    assert [(c["cdp"], c["cos_used"], c["cos_budget"], c["cbm_len"]) for c in cdp] == [(True, 1, 7, 20)] * 2
    assert not [f for f in doc["findings"] if f["kind"] == "invalid-mask"]
    assert "xen-atom-l2: no L3 CAT masks in its latest collection: nothing to check" in doc["notes"]
    r = run("--store", store, "check", "--host", "xen-atom-l2")
    assert (r.exit_code, r.stdout.splitlines()[-1]) == (0, "0 finding(s) on 0 socket(s)")
    r = run("--store", store, "check", "--host", "nope")
    assert r.exit_code == 2
    assert r.stderr.startswith("rdtadvisor: error: host(s) not in the store: nope (known: xen-atom-l2")
    assert run("--store", store, "check", "--format", "yaml").exit_code == 2


# --- hand-built frames ---------------------------------------------------------------------------

def tables(masks, *, cbm_len=11, cos_max=15, l3=27.5 * MIB, usage=None, states=None, cdp=False,
           default_cbm=None, host="h"):
    """masks: {domid: mask or (code, data)}; usage: {domid: (occupancy B, bandwidth B/s)}."""
    srows = []
    for d, m in masks.items():
        pairs = [("l3_code_cbm", m[0]), ("l3_data_cbm", m[1])] if isinstance(m, tuple) else [("l3_cbm", m)]
        srows += [(T, host, 0, d, f"vm{d}", s, v) for s, v in pairs]
    settings = pd.DataFrame(srows, columns=["time", "host", "socket", "domid", "domain", "setting", "value"])
    frows = [(T, host, 0, name, float(v), None) for name, v in (
        ("l3_cbm_len", cbm_len), ("l3_cos_max", cos_max), ("l3_cache_bytes", l3), ("l3_cdp", cdp),
        ("l3_default_cbm", default_cbm or (1 << cbm_len) - 1))]
    facts = pd.DataFrame(frows, columns=["time", "host", "socket", "fact", "value", "text"])
    xrows = []
    for d, (o, b) in (usage or {}).items():
        xrows.append((T, host, 0, d, f"vm{d}", "l3_occupancy", 0, int(o), "B"))
        xrows += [(T, host, 0, d, f"vm{d}", "mem_bw_total", i, int(b), "B/s") for i in range(3)]
    samples = pd.DataFrame(xrows, columns=["time", "host", "socket", "domid", "domain", "metric", "reading",
                                           "value", "unit"])
    states = states if states is not None else {d: "-b----" for d in masks}
    drows = [(T, host, d, f"vm{d}", 1024 * MIB, 2, s, 100.0) for d, s in states.items()]
    domains = pd.DataFrame(drows, columns=["time", "host", "domid", "domain", "memory_bytes", "vcpus",
                                           "state", "cpu_seconds"])
    return {"settings": validate("settings", settings), "facts": validate("facts", facts),
            "samples": validate("samples", samples), "domains": validate("domains", domains)}


def kinds(report):
    return [(f.kind, f.domid) for f in report.findings]


def test_invalid_masks_name_the_facts_that_disagree():
    r = check(tables({0: 0x7ff, 5: 0x1f0, 7: 0x5}, cbm_len=8, default_cbm=0x7ff))
    assert kinds(r) == [("invalid-mask", 0), ("invalid-mask", 5), ("invalid-mask", 7)]
    assert "0x7ff is invalid on a 8-bit CBM (psr-hwinfo's CBM length): bits beyond the 8-bit CBM" in \
        r.findings[0].message
    assert "psr-cat-show's default CBM 0x7ff says 11 bits" in r.findings[0].message
    assert "not one contiguous run" in r.findings[2].message
    assert r.notes == ("h socket 0: invalid masks: the other checks were skipped",)
    cdp = check(tables({1: (0xf, 0xf0f0)}, cbm_len=20, cdp=True))
    assert kinds(cdp) == [("invalid-mask", 1)] and "l3_data_cbm 0xf0f0" in cdp.findings[0].message


def test_cos_budget_exhausted_and_nearly():
    masks = {1: 0x1, 2: 0x2, 3: 0x4, 4: 0x4}
    assert ("cos-exhausted", None) in kinds(check(tables(masks, cos_max=3)))
    assert ("cos-nearly-exhausted", None) in kinds(check(tables(masks, cos_max=4)))
    assert not [k for k in kinds(check(tables(masks, cos_max=5))) if k[0].startswith("cos")]
    # CDP: pairs count, not masks; hwinfo's cos_max is already halved
    r = check(tables({1: (0x3, 0xc), 2: (0x3, 0x30), 3: 0xfffff}, cbm_len=20, cdp=True, cos_max=2))
    assert kinds(r) == [("cos-exhausted", None)]
    assert "2 distinct non-default code/data pairs use all 2 COS" in r.findings[0].message


def test_dom0_at_default_only_matters_when_others_are_partitioned():
    assert kinds(check(tables({0: 0x7ff, 5: 0x7ff}))) == []
    r = check(tables({0: 0x7ff, 5: 0x7f0, 6: 0x7ff}))
    assert kinds(r) == [("dom0-default", 0)]
    assert "1 other domain(s) are at the default too" in r.findings[0].message
    assert kinds(check(tables({0: 0x1, 5: 0x7f0}))) == []


def test_streaming_overlap_rule_and_its_figures():
    usage = {0: (1 * MIB, 50e6), 5: (12 * MIB, 800e6), 7: (6 * MIB, 6e9), 9: (0.5 * MIB, 20e6)}
    # the streamer at the default overlaps db's mask; vm9 holds less than one way (2.5 MiB): not sensitive
    r = check(tables({0: 0x1, 5: 0x7fe, 7: 0x7ff, 9: 0x7fe}, usage=usage))
    assert kinds(r) == [("overlaps-streaming", 5)]
    f = r.findings[0]
    assert f.evidence["shared_ways"] == 10 and f.evidence["streaming_domid"] == 7
    assert f.evidence["streaming_bandwidth_share"] == pytest.approx(6e9 / 6.87e9)
    assert "vm7 (domid 7) at 0x7ff: 6.00 GB/s = 87% of the socket's bandwidth" in f.message
    # confined to its own ways: nothing to say
    assert kinds(check(tables({0: 0x1, 5: 0x7f0, 7: 0xe, 9: 0x7f0}, usage=usage))) == []
    # conservative: below 2 GB/s, or a small share of the socket, or not intense per byte: not streaming
    for changed in ({7: (6 * MIB, 1.5e9)}, {5: (12 * MIB, 20e9)}, {7: (40 * MIB, 6e9)}):
        assert kinds(check(tables({0: 0x1, 5: 0x7fe, 7: 0x7ff}, usage={**usage, **changed}))) == [], changed
    stricter = Thresholds(streaming_share=0.9)
    assert kinds(check(tables({0: 0x1, 5: 0x7fe, 7: 0x7ff}, usage=usage), stricter)) == []


def test_unused_masks():
    usage = {0: (1 * MIB, 50e6), 5: (12 * MIB, 800e6), 6: (0, 0), 7: (3 * MIB, 9e6)}
    states = {0: "r-----", 5: "-b----", 6: "-b----", 7: "---s--"}
    r = check(tables({0: 0x1, 5: 0x7f0, 6: 0xe, 7: 0x600, 8: 0x600}, usage=usage, states=states))
    assert kinds(r) == [("unused-mask", 6), ("unused-mask", 7), ("unused-mask", 8)]
    assert "vm6 (domid 6) holds a COS for 0xe but is idle on this socket (0 KiB held, 0.00 MB/s)" in \
        r.findings[0].message
    assert "state ---s--" in r.findings[1].message and "not in xl list" in r.findings[2].message
    # a mask shared with an active domain costs nothing extra: not flagged
    r = check(tables({0: 0x1, 5: 0xe, 6: 0xe}, usage=usage, states=states))
    assert kinds(r) == []


def test_without_samples_only_the_mask_checks_run():
    t = tables({0: 0x7ff, 5: 0x7f0})
    r = check(t)
    assert kinds(r) == [("dom0-default", 0)]
    assert r.notes == ("h socket 0: no occupancy/bandwidth samples: streaming and unused-mask checks "
                       "skipped",)
    assert r.to_dict()["checked"] == [{"host": "h", "socket": 0, "time": T.isoformat(), "cbm_len": 11,
                                       "cdp": False, "cos_used": 1, "cos_budget": 15}]


def test_without_mbm_the_streaming_check_says_it_was_skipped():
    # Haswell-EP: occupancy only. A streamer cannot be told by its bandwidth: say so, not nothing
    usage = {0: (1 * MIB, 50e6), 5: (12 * MIB, 800e6), 7: (6 * MIB, 6e9)}
    t = tables({0: 0x1, 5: 0x7fe, 7: 0x7ff}, usage=usage)
    t["samples"] = t["samples"][t["samples"]["metric"] != "mem_bw_total"]
    r = check(t)
    assert kinds(r) == []
    assert r.notes == ("h socket 0: no bandwidth samples (no MBM on this CPU, or not collected): "
                       "streaming-overlap check skipped",)


def test_a_calibration_level_left_in_place_is_flagged():
    # vm5 alone in the top 5 of 11 ways, everyone else fenced into the low 6: a killed sweep
    r = check(tables({0: 0x3f, 5: 0x7c0, 6: 0x3f, 7: 0x3f}))
    assert kinds(r) == [("calibration-left", 5)]
    msg = r.findings[0].message
    assert "vm5 alone in the top 5 ways, 3 other domain(s) fenced into the low 6" in msg
    assert ".rollback.sh" in msg
    # not a sweep: a VM confined at the bottom (advise cat's layouts), or a domain left at the default
    assert kinds(check(tables({0: 0x7fe, 5: 0x1, 6: 0x7fe}))) == []
    assert "calibration-left" not in [k for k, _ in kinds(check(tables({0: 0x3f, 5: 0x7c0, 6: 0x7ff})))]
