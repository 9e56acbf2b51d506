"""Scenario files, presets and profiles: loading, Xen's validation rules, replication, determinism."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from rdtadvisor.core.errors import ConfigError
from rdtadvisor.sim import model, presets, profiles, scenario, truth
from rdtadvisor.sim.scenario import load_scenario, parse_duration

SCENARIOS = Path(__file__).parent / "scenarios"
MIB = 1024**2
GIB = 1024**3


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return path


BASE = """
name = "t"
duration = "2h"
step = "10m"
seed = 1

[[hosts]]
name = "h1"
preset = "{preset}"
xen = "{xen}"
sockets = 2
{host}

[[hosts.vms]]
name = "a"
profile = "web"
socket = 0
{vm}
"""


def scenario_text(preset: str = "skylake-sp", xen: str = "4.19.1", host: str = "", vm: str = "",
                  tail: str = "") -> str:
    return BASE.format(preset=preset, xen=xen, host=host, vm=vm) + tail


# --------------------------------------------------------------------------- the example file


@pytest.fixture(scope="module")
def small() -> scenario.Scenario:
    return load_scenario(SCENARIOS / "small.toml")


def test_small_scenario_loads(small):
    assert small.name == "small" and small.seed == 3
    assert small.start == datetime(2026, 11, 20, tzinfo=UTC)
    assert small.duration == timedelta(hours=6) and small.step == timedelta(minutes=5)
    h1, h2 = small.hosts
    assert h1.xen_major_minor == (4, 19) and h1.preset.name == "skylake-sp-gold-6148"
    assert h2.sockets == (0, 2) and h2.cdp and h2.xen_major_minor == (4, 11)


def test_domain0_is_added_first_and_domids_are_unique(small):
    for host in small.hosts:
        assert host.vms[0].name == "Domain-0" and host.vms[0].domid == 0 and host.vms[0].profile == "dom0"
        domids = [v.domid for v in host.vms]
        assert domids == sorted(set(domids))


def test_count_replicates_with_suffixed_names_and_own_draws(small):
    webs = [v for v in small.hosts[0].vms if v.profile == "web"]
    assert [v.name for v in webs] == ["web-1", "web-2", "web-3"]
    assert [v.domid for v in webs] == [1, 2, 3]
    assert len({v.vm.curve.alpha for v in webs}) == 3          # each replica draws its own parameters
    assert all(v.cbm == 0x7F0 and v.socket == 0 for v in webs)


def test_vm_fields_are_normalised(small):
    h1, h2 = small.hosts
    by = {v.name: v for v in h1.vms}
    db = by["db"]
    assert db.cbm == 0x0FF and db.code_cbm is None and db.data_cbm is None
    assert db.mba_thrtl == 10                                    # Xen rounds 12 down (linear, thrtl_max 90)
    assert db.mask_changes == (scenario.MaskChange(timedelta(hours=2), 0x7FF),
                               scenario.MaskChange(timedelta(hours=4), None))
    assert not by["noisy"].attached and by["web-1"].attached
    assert [p.kind for p in by["noisy"].phases] == ["constant", "burst"]
    custom = by["custom"].vm
    assert custom.curve == model.Curve(alpha=0.5, ws_bytes=8 * MIB, floor=0.02)
    assert (custom.apki, custom.cpi0, custom.vcpus, custom.remote) == (6.0, 1.0, 2, 0.25)
    cdp_db = {v.name: v for v in h2.vms}["db"]
    assert (cdp_db.cbm, cdp_db.code_cbm, cdp_db.data_cbm) == (None, 0xC, 0x3)
    batch = {v.name: v for v in h2.vms}["batch"]
    assert (batch.cbm, batch.code_cbm, batch.data_cbm) == (None, 0x8, 0x8)   # cbm sets both halves


def test_masks_at_resolves_changes_and_defaults(small):
    db = {v.name: v for v in small.hosts[0].vms}["db"]
    ways = small.hosts[0].preset.ways
    assert db.masks_at(timedelta(0), ways).data == 0x0FF
    assert db.masks_at(timedelta(hours=2), ways).data == 0x7FF
    state = db.masks_at(timedelta(hours=5), ways)
    assert state.cbm is None and state.data == 0x7FF


def test_every_vm_has_a_profile_in_the_library(small):
    for host in small.hosts:
        for v in host.vms:
            assert v.profile in profiles.PROFILES or v.profile == "custom"
            assert v.memory_bytes > 0 and v.vm.vcpus >= 1


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(("text", "expected"), [
    ("2d", timedelta(days=2)), ("5m", timedelta(minutes=5)), ("1m", timedelta(minutes=1)),
    ("90s", timedelta(seconds=90)), ("12h", timedelta(hours=12)), ("1h30m", timedelta(minutes=90)),
    ("1w", timedelta(days=7)), ("0.5h", timedelta(minutes=30)),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "5x", "m5", "1h 30", "-5m", "5mm"])
def test_parse_duration_rejects(text):
    with pytest.raises(ConfigError, match="not a duration"):
        parse_duration(text)


# --------------------------------------------------------------------------- validation


INVALID = [
    # (what, scenario text, key named in the error, words in the reason)
    ("non-contiguous cbm", scenario_text(vm='cbm = "0x5"'), "hosts[0] (h1).vms[0] (a).cbm", "not contiguous"),
    ("cbm wider than the CBM", scenario_text(vm='cbm = "0xfff"'), "vms[0] (a).cbm", "above the 11-bit"),
    ("empty cbm", scenario_text(vm="cbm = 0"), ".cbm", "empty"),
    ("not hex", scenario_text(vm='cbm = "0xzz"'), ".cbm", "not a mask"),
    ("unknown VM key", scenario_text(vm="colour = 1"), "vms[0] (a).colour", "unknown key"),
    ("unknown top key", "sed = 1\n" + scenario_text(), "sed", "unknown key"),
    ("unknown preset", scenario_text(preset="pentium"), "hosts[0] (h1).preset", "known: "),
    ("unknown profile", scenario_text(vm="").replace('"web"', '"webb"'), ".profile", "unknown profile"),
    ("CDP on a part without it", scenario_text(preset="haswell-ep", host="cdp = true"), "hosts[0] (h1).cdp",
     "no CDP"),
    ("CDP before Xen 4.7", scenario_text(xen="4.6.6", host="cdp = true"), ".cdp", "4.7"),
    ("MBA before Xen 4.11", scenario_text(xen="4.10.4", host="mba = true"), ".mba", "4.11"),
    ("MBA on a part without it", scenario_text(preset="broadwell-ep", host="mba = true"), ".mba", "no MBA"),
    ("mba_thrtl with MBA off", scenario_text(vm="mba_thrtl = 10"), ".mba_thrtl", "MBA is off"),
    ("mba_thrtl too high", scenario_text(host="mba = true", vm="mba_thrtl = 100"), ".mba_thrtl", "rejected"),
    ("L2 CAT before Xen 4.10", scenario_text(preset="sapphire-rapids", xen="4.9.4", vm='l2_cbm = "0xf"'),
     ".l2_cbm", "4.10"),
    ("L2 CAT on a part without it", scenario_text(vm='l2_cbm = "0x3"'), ".l2_cbm", "L2 CAT"),
    ("code_cbm without CDP", scenario_text(vm='code_cbm = "0x3"'), ".code_cbm", "CDP"),
    ("cbm and code_cbm", scenario_text(host="cdp = true", vm='cbm = "0x3"\ncode_cbm = "0x3"'), ".cbm",
     "either"),
    ("CAT before Xen 4.6", scenario_text(xen="4.5.5", vm='cbm = "0x3"'), ".cbm", "4.6"),
    ("socket that does not exist", scenario_text().replace("socket = 0", "socket = 3"), ".socket",
     "does not exist"),
    ("duplicate domid", scenario_text(vm="domid = 7", tail='[[hosts.vms]]\nname = "b"\nprofile = "idle"\n'
                                                           "domid = 7\n"), "vms[1] (b).domid", "used twice"),
    ("duplicate name", scenario_text(tail='[[hosts.vms]]\nname = "a"\nprofile = "idle"\n'), "vms[1] (a).name",
     "duplicate"),
    ("domid 0 for a guest", scenario_text(vm="domid = 0"), ".name", "Domain-0"),
    ("count below 1", scenario_text(vm="count = 0"), ".count", "1-10000"),
    ("bad duration", scenario_text().replace('"2h"', '"2 hours"'), "duration", "not a duration"),
    ("wrong type", scenario_text(vm='vcpus = "four"'), ".vcpus", "expected an integer"),
    ("apki out of range", scenario_text(vm="apki = -1"), ".apki", "out of range"),
    ("custom curve without apki", scenario_text(vm="").replace('profile = "web"', 'curve = {alpha = 0.5, '
                                                                                  'ws = "8MiB"}'),
     ".apki", "required"),
    ("curve without ws", scenario_text(vm="").replace('profile = "web"', 'curve = {alpha = 0.5}\napki = 3'),
     ".curve.ws", "required"),
    ("bad size", scenario_text(vm='memory = "lots"'), ".memory", "not a size"),
    ("phase of unknown kind", scenario_text(tail='[[hosts.vms.phases]]\nkind = "weekly"\n'),
     "vms[0] (a).phases[0].kind", "unknown phase kind"),
    ("diurnal with low above high", scenario_text(tail='[[hosts.vms.phases]]\nkind = "diurnal"\nlow = 0.9\n'
                                                       "high = 0.5\n"), "phases[0]", "low"),
    ("bad peak", scenario_text(tail='[[hosts.vms.phases]]\nkind = "diurnal"\npeak = "2pm"\n'), ".peak",
     "HH:MM"),
    ("mask change without at", scenario_text(tail='[[hosts.vms.mask_changes]]\ncbm = "0x3"\n'),
     "mask_changes[0].at", "required"),
    ("mask change to a bad mask", scenario_text(tail='[[hosts.vms.mask_changes]]\nat = "1h"\ncbm = "0x9"\n'),
     "mask_changes[0].cbm", "not contiguous"),
    ("host memory too small", scenario_text(host='memory = "1GiB"'), "hosts[0] (h1).memory", "GiB"),
    ("attached on a part without CMT", scenario_text(preset="denverton", vm="attached = true"), ".attached",
     "no CMT"),
    ("no hosts", 'name = "x"\n', "hosts", "required"),
    ("step longer than duration", scenario_text().replace('"10m"', '"3h"'), "step", "no longer"),
    ("not TOML", "name = \n", None, "not valid TOML"),
]


@pytest.mark.parametrize(("what", "text", "key", "reason"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_scenarios_give_one_clear_error(tmp_path, what, text, key, reason):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    if key is not None:
        assert key in message, message
    assert reason in message, message
    assert "\n" not in message


def test_cos_exhaustion_is_rejected(tmp_path):
    vms = "".join(f'[[hosts.vms]]\nname = "v{i}"\nprofile = "idle"\nsocket = 0\ncbm = "{1 << i:#x}"\n'
                  for i in range(4))
    text = scenario_text(preset="tiny", host="cdp = true")
    text = text.replace('profile = "web"\nsocket = 0\n', 'profile = "idle"\nsocket = 1\n')
    with pytest.raises(ConfigError, match=r"hosts\[0\] \(h1\)\.vms: socket 0 needs 4 distinct COS.*has 3"):
        load_scenario(write(tmp_path, text + vms))
    # Identical masks share a COS, as in Xen: the same four VMs on two masks fit.
    same = vms.replace('"0x4"', '"0x1"').replace('"0x8"', '"0x2"')
    assert load_scenario(write(tmp_path, text + same))


def test_cos_exhaustion_after_a_mask_change(tmp_path):
    text = scenario_text(preset="tiny", host="cdp = true", vm='cbm = "0x1"')
    vms = "".join(f'[[hosts.vms]]\nname = "v{i}"\nprofile = "idle"\nsocket = 0\ncbm = "{m:#x}"\n'
                  for i, m in ((1, 0x2), (2, 0x4), (3, 0x1)))     # v3 shares a's COS until a moves
    change = '[[hosts.vms.mask_changes]]\nat = "1h"\ncbm = "0xc"\n'
    with pytest.raises(ConfigError, match=r"needs 4 distinct COS at \+1:00:00"):
        load_scenario(write(tmp_path, text + vms + change))


def test_more_attached_domains_than_rmids_is_allowed(tmp_path):
    """Xen fails the late psr-cmt-attach calls ("no free RMID available"); the renderer shows that."""
    vms = '[[hosts.vms]]\nname = "v{i}"\nprofile = "idle"\ncount = 7\n'
    sc = load_scenario(write(tmp_path, scenario_text(preset="tiny") + vms))
    assert sum(v.attached for v in sc.hosts[0].vms) == 9 > sc.hosts[0].preset.rmids
    detached = vms.replace("7\n", "7\nattached = false\n")
    ok = load_scenario(write(tmp_path, scenario_text(preset="tiny") + detached))
    assert sum(v.attached for v in ok.hosts[0].vms) == 2


def test_cdp_halves_the_cos_budget(tmp_path):
    for xen in ("4.9.4", "4.10.0"):       # cos_max >> 1 before 4.10, (cos_max - 1) >> 1 after: 15 -> 7
        text = scenario_text(preset="broadwell-ep", xen=xen, host="cdp = true")
        assert load_scenario(write(tmp_path, text)).hosts[0].cos_budget == 7
    assert load_scenario(write(tmp_path, scenario_text(preset="broadwell-ep"))).hosts[0].cos_budget == 15


def test_error_names_the_replicated_vm(tmp_path):
    text = scenario_text(vm="").replace('name = "a"\nprofile = "web"\nsocket = 0\n',
                                        'name = "w{i}"\ncount = 3\nprofile = "web"\nsocket = 5\n')
    with pytest.raises(ConfigError, match=r"vms\[0\] \(w\{i\}\)\.socket"):
        load_scenario(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read scenario"):
        load_scenario(tmp_path / "nope.toml")


# --------------------------------------------------------------------------- defaults, replication


def test_defaults_placement_and_name_templates(tmp_path):
    text = """
name = "d"
[[hosts]]
name = "h"
preset = "skylake-sp"
sockets = [1, 3]
[[hosts.vms]]
name = "db-{i:02d}"
count = 4
profile = "cache-sensitive-db"
vcpus = 4
"""
    sc = load_scenario(write(tmp_path, text))
    host = sc.hosts[0]
    assert sc.duration == timedelta(days=1) and sc.step == timedelta(minutes=5) and sc.seed == 0
    assert host.xen == "4.19.1" and not host.cdp and not host.mba
    assert [v.name for v in host.vms] == ["Domain-0", "db-01", "db-02", "db-03", "db-04"]
    assert [v.socket for v in host.vms[1:]] == [1, 3, 1, 3]        # least-loaded socket first
    assert host.vms[0].socket == 1
    assert host.memory_bytes >= sum(v.memory_bytes for v in host.vms)
    assert host.cos_budget == 15


def test_explicit_domids_are_kept_and_others_fill_around(tmp_path):
    text = scenario_text(vm="domid = 2", tail='[[hosts.vms]]\nname = "b"\nprofile = "idle"\ncount = 2\n')
    host = load_scenario(write(tmp_path, text)).hosts[0]
    assert {v.name: v.domid for v in host.vms} == {"Domain-0": 0, "a": 2, "b-1": 1, "b-2": 3}


def test_cdp_partial_mask_change_keeps_the_other_half(tmp_path):
    text = scenario_text(preset="tiny", host="cdp = true", vm='code_cbm = "0xc"\ndata_cbm = "0x3"',
                         tail='[[hosts.vms.mask_changes]]\nat = "30m"\ndata_cbm = "0x1"\n'
                              '[[hosts.vms.mask_changes]]\nat = "1h"\n')
    a = {v.name: v for v in load_scenario(write(tmp_path, text)).hosts[0].vms}["a"]
    assert a.mask_changes == (scenario.MaskChange(timedelta(minutes=30), None, 0xC, 0x1),
                              scenario.MaskChange(timedelta(hours=1), None, None, None))


# --------------------------------------------------------------------------- determinism


def test_same_file_same_scenario(small):
    again = load_scenario(SCENARIOS / "small.toml")
    assert again == small


def test_seed_override_changes_draws_but_not_the_layout(small):
    other = load_scenario(SCENARIOS / "small.toml", seed=4)
    assert other.seed == 4
    a, b = small.hosts[0].vms[1], other.hosts[0].vms[1]
    assert (a.name, a.domid, a.cbm) == (b.name, b.domid, b.cbm)
    assert a.vm != b.vm


def test_adding_a_host_or_a_vm_changes_no_other_vm(tmp_path):
    base = scenario_text(tail='[[hosts.vms]]\nname = "b"\nprofile = "batch"\n')
    more = base + '[[hosts.vms]]\nname = "c"\nprofile = "stream"\n' + """
[[hosts]]
name = "h0"
preset = "tiny"
[[hosts.vms]]
name = "a"
profile = "web"
"""
    one = load_scenario(write(tmp_path, base))
    two = load_scenario(write(tmp_path, more))
    for x, y in zip(one.hosts[0].vms, two.hosts[0].vms, strict=False):
        assert x == y
    # The same VM name on another host draws different parameters.
    assert two.hosts[1].vms[1].vm != two.hosts[0].vms[1].vm
    t1 = next(truth.simulate(one))
    t2 = next(truth.simulate(two))
    np.testing.assert_array_equal(t1.load, t2.load[:, : t1.load.shape[1]])


# --------------------------------------------------------------------------- mask-change segments


def test_segments_split_on_mask_changes_only():
    masks = np.array([[1, 3]] * 4 + [[1, 7]] * 3 + [[2, 7]] * 3, dtype=np.int64)
    wsf = np.ones((10, 2))
    assert truth._segments(masks, wsf, chunk=4) == [(0, 4), (4, 7), (7, 10)]


def test_segments_chunk_growth():
    masks = np.ones((12, 2), dtype=np.int64)
    wsf = np.ones((12, 2))
    wsf[:, 1] = np.linspace(1, 2, 12)
    segs = truth._segments(masks, wsf, chunk=4)
    assert segs == [(0, 4), (4, 8), (8, 12)]
    assert truth._segments(masks, np.ones((12, 2)), chunk=4) == [(0, 12)]


def test_truth_solves_once_per_segment(small):
    h1 = next(truth.simulate(small))
    # Socket 0: the db's mask changes at 2 h (0xff -> 0x7ff) and at 4 h back to the default, which is
    # 0x7ff too: 2 segments. Socket 1: no change, 1 segment.
    assert h1.solves == 2 + 1


# --------------------------------------------------------------------------- presets and profiles


def test_presets_cover_the_required_parts():
    for family in ("haswell-ep", "broadwell-ep", "skylake-sp", "cascade-lake-sp", "ice-lake-sp",
                   "sapphire-rapids", "denverton", "tiny"):
        p = presets.get(family)
        assert p.ways >= 4 and p.cos_max >= 3 and p.bw_bytes_s > 0 and p.sources
        sock = p.socket()
        assert sock.l3_bytes == p.l3_bytes and sock.ways == p.ways and sock.bw_bytes_s == p.bw_bytes_s
    assert presets.get("haswell-ep").ways == 20 and presets.get("broadwell-ep").ways == 20
    assert presets.get("skylake-sp").ways == 11
    assert presets.get("denverton").l2_ways and not presets.get("denverton").l3_cat
    assert presets.get("broadwell-ep").cdp_cos_max == 7


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="skylake-sp-gold-6148"):
        presets.get("k6-2")


def test_mbm_correction_follows_linux_table():
    # Linux's mbm_cf_table: x1.142857 above RMID 47 on parts with 56 RMIDs (7 slices).
    assert presets.mbm_correction(56) == (47, 1.142857)
    assert presets.mbm_correction(8 * 40) is None
    skx = presets.get("skylake-sp-gold-6152")
    assert (skx.rmids, skx.mbm_cf_threshold, skx.mbm_cf) == (175, 159, 1.454334)
    assert presets.get("ice-lake-sp").rmids == 255


@pytest.mark.parametrize("name", sorted(profiles.PROFILES))
def test_profiles_draw_valid_vms_deterministically(name):
    a = profiles.make_vm(name, "x", random.Random(5))
    b = profiles.make_vm(name, "x", random.Random(5))
    assert a == b and isinstance(a, model.Vm)
    assert a.curve.alpha >= 0 and 0 < a.curve.floor <= 1 and a.curve.ws_bytes > 0 and a.apki > 0
    ex = profiles.extras(name, random.Random(5))
    assert ex.memory_bytes >= GIB and ex.phases


def test_profile_shapes_differ_as_documented():
    rng = random.Random(0)
    stream = [profiles.make_vm("stream", "s", rng) for _ in range(20)]
    small = [profiles.make_vm("small", "s", rng) for _ in range(20)]
    db = [profiles.make_vm("cache-sensitive-db", "s", rng) for _ in range(20)]
    assert all(v.curve.alpha <= 0.05 and v.curve.ws_bytes >= GIB for v in stream)
    assert all(v.curve.ws_bytes <= 2 * MIB for v in small)
    assert all(12 * MIB <= v.curve.ws_bytes <= 40 * MIB and v.priority == 2 for v in db)


def test_make_vm_overrides():
    vm = profiles.make_vm("web", "w", random.Random(1), alpha=0.1, ws_bytes=3 * MIB, vcpus=16)
    assert vm.curve.alpha == 0.1 and vm.curve.ws_bytes == 3 * MIB and vm.vcpus == 16
    with pytest.raises(ConfigError, match="unknown VM parameter"):
        profiles.make_vm("web", "w", random.Random(1), colour="red")
    with pytest.raises(ConfigError, match="unknown workload profile"):
        profiles.make_vm("webby", "w", random.Random(1))


def test_sanitize_thrtl_matches_xen():
    skx = presets.get("skylake-sp")
    assert scenario.sanitize_thrtl(12, skx) == 10
    assert scenario.sanitize_thrtl(90, skx) == 90
    assert scenario.sanitize_thrtl(95, skx) == 90
    assert scenario.sanitize_thrtl(100, skx) is None
    nonlinear = presets.Preset(**{**skx.__dict__, "mba_linear": False})
    assert scenario.sanitize_thrtl(0xC, nonlinear) == 8


# --------------------------------------------------------------------------- documented examples


def test_the_documented_example_loads_and_simulates():
    import re
    import tomllib

    doc = (Path(__file__).parents[1] / "docs" / "simulator.md").read_text(encoding="utf-8")
    block = re.search(r"### Full example\n\n```toml\n(.*?)```", doc, re.S)
    assert block, "docs/simulator.md lost its full example"
    sc = scenario.parse_scenario(tomllib.loads(block.group(1)), source="docs/simulator.md")
    assert [h.name for h in sc.hosts] == ["xen01", "xen02"]
    jvm = sc.hosts[1].vms[1]
    assert (jvm.code_cbm, jvm.data_cbm) == (0xFF000, 0x00FFF)
    short = list(truth.simulate(sc, duration=timedelta(hours=1)))
    assert all(len(h.times) == 12 for h in short)


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.name)
def test_every_test_scenario_loads(path):
    assert load_scenario(path).hosts


@pytest.mark.parametrize("ways", [4, 11, 20])
def test_mask_error_accepts_exactly_the_contiguous_masks(ways):
    for m in range(1 << ways if ways <= 11 else 1 << 12):
        bits = bin(m)[2:]
        contiguous = m > 0 and set(bits.strip("0")) == {"1"}
        assert (scenario.mask_error(m, ways) is None) == (contiguous and m < (1 << ways)), hex(m)


def test_legacy_scenario_old_xen_and_unusual_parts():
    sc = load_scenario(SCENARIOS / "legacy.toml")
    assert sc.start == datetime(2026, 11, 21, 5, tzinfo=UTC)        # +01:00 converted to UTC
    hsw, atom, spr = sc.hosts
    assert [v.name for v in hsw.vms].count("Domain-0") == 1 and hsw.vms[0].cbm == 0xF
    assert hsw.cos_budget == 3 and not hsw.preset.mbm
    assert not any(v.attached for v in atom.vms) and all(v.l2_cbm == 0xF for v in atom.vms[1:])
    db, batch = spr.vms[1], spr.vms[2]
    assert spr.sockets == (1,) and spr.vms[0].socket == 1
    assert (db.l2_cbm, db.mba_thrtl, batch.mba_thrtl) == (0xFF00, 20, 50)
    assert batch.mask_changes[0] == scenario.MaskChange(timedelta(hours=1), None, 0x7000, 0x0001)
    truths = list(truth.simulate(sc))
    spr_truth = truths[2]
    assert spr_truth.masks[0, 2] == 0x7000 and spr_truth.masks[-1, 2] == 0x0001
    assert (spr_truth.code_masks[:, 2] == 0x7000).all()
    assert truths[0].code_masks is None


@pytest.mark.parametrize(("text", "value"), [("0x7f0", 0x7F0), ("0X7F0", 0x7F0), ("2032", 2032),
                                             ("03760", 0o3760), (2032, 2032), (" 0x3 ", 3)])
def test_masks_parse_as_xl_does(text, value):
    assert scenario.parse_mask(text) == value


@pytest.mark.parametrize("text", ["7f0", "0xg", "", "08", True, 1.5])
def test_bad_masks(text):
    with pytest.raises(ValueError):
        scenario.parse_mask(text)
