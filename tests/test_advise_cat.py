"""`rdtadvisor advise cat`: history in, valid reviewable plans (or a reasoned "no change") out."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from rdtadvisor.advise.cat import CDP_NOTE, advise_cat
from rdtadvisor.cache import cbm
from rdtadvisor.cache.layouts import full_mask
from rdtadvisor.cli.output import host_file_part
from rdtadvisor.core.config import CatSettings, CatVm
from rdtadvisor.core.units import MIB
from rdtadvisor.model.masks import socket_settings
from rdtadvisor.sim import harness, model, suite
from rdtadvisor.sim.history import observe
from rdtadvisor.store import Store
from tests import cat_xl
from tests.clirun import run
from tests.test_plan_script import apply_argv

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "captures"


@pytest.fixture(scope="module")
def neighbour():
    sc = next(s for s in suite.scenarios() if s.name == "skx-stream-neighbour")
    return sc, {mode: observe(sc, mode, seed=sc.seed) for mode in ("default", "calibration")}


def test_with_calibration_history_the_streaming_vm_is_confined(neighbour):
    sc, hist = neighbour
    advice = advise_cat(hist["calibration"])
    assert len(advice.plans) == 1 and not advice.declined
    plan = advice.plans[0]
    assert plan.predicted["weighted_speedup"] >= 0.02
    assert 0.7 <= plan.predicted["confidence"] <= 1.0      # what the decision tested: most draws gain
    masks = {a.name: a.cbm for a in plan.assignments}
    assert all(cbm.is_valid(m, sc.socket.ways) for m in masks.values())
    assert plan.cos_used <= plan.cos_budget
    assert cbm.ways_of(masks["stream"]) <= 2
    for step in plan.steps:  # exact xl syntax of Xen 4.19, by domid, one socket
        assert step.argv[:4] == ("xl", "psr-cat-set", "-s", "0") and step.argv[4].isdigit()
        assert step.undo[:4] == ("xl", "psr-cat-set", "-s", "0")
    doc = advice.to_dict()
    assert set(doc["plans"][0]) >= {"host", "socket", "level", "cos_budget", "cos_used", "assignments",
                                    "predicted", "commands", "rollback"}


def test_with_default_mask_history_the_streamer_is_confined_and_the_truth_agrees(neighbour):
    # Default masks all along: the curves are guesses, but the streamer misses faster than demand
    # misses can (prefetching) and the others' flat-looking curves are known to be biased, so
    # confining it is a safe bet; the simulator's truth says the plan is a real gain.
    sc, hist = neighbour
    (plan,) = advise_cat(hist["default"]).plans
    masks = masks_of(plan)
    assert cbm.ways_of(masks["stream"]) <= 2
    by_name = {v.name: i for i, v in enumerate(sc.vms)}
    layout = [full_mask(sc.socket.ways)] * len(sc.vms)
    for name, m in masks.items():
        if name in by_name:
            layout[by_name[name]] = m
    none = harness.evaluate(sc.socket, list(sc.vms), [full_mask(sc.socket.ways)] * len(sc.vms))
    assert harness.evaluate(sc.socket, list(sc.vms), layout).weighted_speedup > 1.03 * none.weighted_speedup


def test_a_decline_for_want_of_measured_curves_points_to_calibrate():
    sc = next(s for s in suite.scenarios() if s.name == "skx-sensitive-pairs")
    advice = advise_cat(observe(sc, "default", seed=sc.seed))
    assert not advice.plans
    reason = advice.declined[0]["reason"]
    assert "hysteresis" in reason or "uncertain" in reason
    # default masks leave the curves unmeasured: the reason points to the sweep that measures them
    assert "no measured curve" in reason and "rdtadvisor calibrate" in reason


def test_cli_on_the_samples_declines_with_reasons(tmp_path):
    store = str(tmp_path / "s")
    assert run("--store", store, "collect", "--replay", str(SAMPLES)).exit_code == 0
    r = run("--store", store, "advise", "cat", "--format", "json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    reasons = {(d["host"], d["socket"]): d["reason"] for d in doc["declined"]}
    # the CDP host is judged on its curves like any other (here: too little to gain)
    assert "hysteresis" in reasons[("xen-bdw-cdp", 0)] or "uncertainty" in reasons[("xen-bdw-cdp", 0)]
    assert "no L3 CAT" in reasons[("xen-legacy45", 0)]
    assert all(isinstance(p, dict) for p in doc["plans"])


def test_cli_writes_a_script_and_its_rollback_that_sh_accepts(neighbour, tmp_path):
    _, hist = neighbour
    Store(tmp_path / "s").append(hist["calibration"])
    out = tmp_path / "apply.sh"
    r = run("--store", str(tmp_path / "s"), "advise", "cat", "--script", str(out))
    assert r.exit_code == 0, r.stderr
    assert "psr-cat-set" in r.stdout and "predicted weighted speedup +" in r.stdout
    assert re.search(r"\(a gain in \d+% of the curves' draws\)", r.stdout)
    back = tmp_path / "apply.rollback.sh"
    for script in (out, back):
        assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
    assert "set -eu" in out.read_text() and "xl psr-cat-set" in back.read_text()
    md = run("--store", str(tmp_path / "s"), "advise", "cat", "--format", "markdown")
    assert "| domid | name | mask | ways | speed | reason |" in md.stdout
    # each VM's row shows the speed change the JSON predicts for it
    doc = json.loads(run("--store", str(tmp_path / "s"), "advise", "cat", "--format", "json").stdout)
    (plan,) = doc["plans"]
    for vm in plan["predicted"]["per_vm"]:
        row = next(x for x in r.stdout.splitlines() if x.split()[:2] == [str(vm["domid"]), vm["name"]])
        assert f"{vm['speed_change']:+.1%}" in row.split()


def test_cli_names_an_unknown_host_and_an_unwritable_script_in_one_line(neighbour, tmp_path):
    _, hist = neighbour
    Store(tmp_path / "s").append(hist["calibration"])
    r = run("--store", str(tmp_path / "s"), "advise", "cat", "--host", "xen-nope")
    assert r.exit_code == 2
    assert r.stderr.strip() == ("rdtadvisor: error: host(s) not in the store: xen-nope "
                                "(known: skx-stream-neighbour)")
    missing = tmp_path / "no-such-dir" / "apply.sh"
    r = run("--store", str(tmp_path / "s"), "advise", "cat", "--script", str(missing))
    assert r.exit_code == 3 and "psr-cat-set" in r.stdout          # the plan is still shown
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"rdtadvisor: error: {missing.parent}/apply.rollback.sh: cannot write")
    # the rollback is written first: an apply script never lands without its way back
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "apply.rollback.sh").mkdir()                              # a folder where the file goes
    r = run("--store", str(tmp_path / "s"), "advise", "cat", "--script", str(ro / "apply.sh"))
    assert r.exit_code == 3 and "apply.rollback.sh: cannot write" in r.stderr
    assert not (ro / "apply.sh").exists()


def test_cli_since_a_bad_time_is_a_usage_error_and_an_empty_window_says_so(neighbour, tmp_path):
    _, hist = neighbour
    Store(tmp_path / "s").append(hist["default"])
    for command in (["advise", "cat"], ["curves"], ["calibrate"]):
        r = run("--store", str(tmp_path / "s"), *command, "--since", "last tuesday")
        assert r.exit_code == 2, (command, r.stderr)
        assert "Invalid value for '--since': 'last tuesday': not a time" in r.stderr
        assert "Traceback" not in r.stderr
    r = run("--store", str(tmp_path / "s"), "advise", "cat", "--since", "2099-01-01")
    assert r.exit_code == 0
    assert r.stdout == ("nothing to advise: no stored history since 2099-01-01 00:00 UTC; the newest "
                        "collection is 2026-11-20 05:59 UTC (skx-stream-neighbour): "
                        "--since 2026-11-20 covers it\n")


# --- the operator's policy ([cat] in the config file) ------------------------------------------

def history_of(name: str, hours: float = 6.0) -> dict:
    sc = next(s for s in suite.scenarios() if s.name == name)
    return observe(sc, "calibration", seed=sc.seed, hours=hours)


def masks_of(plan) -> dict[str, int]:
    """name -> the (data) mask each assignment sets."""
    return {a.name: a.cbm if a.cbm is not None else a.data_cbm for a in plan.assignments}


def others_union(plan, name: str) -> int:
    out = 0
    for n, m in masks_of(plan).items():
        if n != name:
            out |= m
    return out


def speed_change(plan, name: str) -> float:
    return next(v["speed_change"] for v in plan.predicted["per_vm"] if v["name"] == name)


def test_a_gold_tier_vm_gets_at_least_the_ways_it_had_and_gains_more():
    hist = history_of("skx-mix-4")            # db5: one of three cache-sensitive VMs, marked gold
    # no fair-share floor here: it would cap what a priority may take from the others
    plain = advise_cat(hist, cat=CatSettings(max_slowdown=1.0))
    gold = advise_cat(hist, cat=CatSettings(max_slowdown=1.0, vms={"db5": CatVm(tier="gold")}))
    assert len(plain.plans) == len(gold.plans) == 1
    before, after = plain.plans[0], gold.plans[0]
    assert masks_of(after) != masks_of(before)
    # weighted 4x, the strategy trades others' speed for db5's: predicted, and in the truth
    assert speed_change(after, "db5") > speed_change(before, "db5")
    sc = next(s for s in suite.scenarios() if s.name == "skx-mix-4")
    names = [v.name for v in sc.vms]

    def true_speed(plan) -> float:
        masks = [masks_of(plan).get(n, full_mask(sc.socket.ways)) for n in names]
        return float(model.solve(sc.socket, sc.vms, masks).speed[names.index("db5")])
    assert true_speed(after) > true_speed(before)
    reason = next(a.reason for a in after.assignments if a.name == "db5")
    assert "tier gold (priority 4)" in reason


def test_a_priority_weight_works_like_a_tier():
    hist = history_of("skx-priorities")
    tier = advise_cat(hist, cat=CatSettings(vms={"oltp": CatVm(tier="gold")}))
    weight = advise_cat(hist, cat=CatSettings(vms={"oltp": CatVm(priority=4.0)}))
    assert masks_of(tier.plans[0]) == masks_of(weight.plans[0])


def test_a_guarantee_is_a_private_run_of_at_least_the_mib_asked(neighbour):
    _, hist = neighbour
    free = advise_cat(hist["calibration"], cat=CatSettings())
    shared = masks_of(free.plans[0])["db1"] & ~others_union(free.plans[0], "db1")
    assert cbm.ways_of(shared) == 0                               # without the guarantee: shared
    advice = advise_cat(hist["calibration"], cat=CatSettings(vms={"db1": CatVm(min_mib=10)}))
    (plan,) = advice.plans
    a = next(a for a in plan.assignments if a.name == "db1")
    assert a.bytes >= 10 * MIB and a.ways * (27.5 * MIB / 11) >= 10 * MIB
    assert a.cbm & others_union(plan, "db1") == 0                 # nobody else in its ways
    assert "guaranteed 10 MiB" in a.reason
    assert all(cbm.is_valid(m, 11) for m in masks_of(plan).values())


def test_reserved_ways_appear_in_no_emitted_mask(neighbour):
    _, hist = neighbour
    (plan,) = advise_cat(hist["calibration"], cat=CatSettings(reserved_ways=2)).plans
    assert all(m & 0b11 == 0 for m in masks_of(plan).values())
    for step in plan.steps:
        assert int(step.argv[-1], 16) & 0b11 == 0, step.shell
    # the lowest usable way is used: the reservation is exactly the low end
    assert any(m & 0b100 for m in masks_of(plan).values())


def test_dom0_ways_gives_domain0_a_private_run(neighbour):
    _, hist = neighbour
    free = advise_cat(hist["calibration"], cat=CatSettings())
    assert masks_of(free.plans[0])["Domain-0"] == 0x7ff                     # at the default without it
    (plan,) = advise_cat(hist["calibration"], cat=CatSettings(dom0_ways=2)).plans
    dom0 = masks_of(plan)["Domain-0"]
    assert cbm.ways_of(dom0) >= 2 and cbm.is_contiguous(dom0)
    assert dom0 & others_union(plan, "Domain-0") == 0
    reason = next(a.reason for a in plan.assignments if a.name == "Domain-0")
    assert "guaranteed 5 MiB (dom0_ways = 2)" in reason


def test_min_bits_holds_in_every_mask(neighbour):
    _, hist = neighbour
    (plan,) = advise_cat(hist["calibration"], cat=CatSettings(min_bits=2, overlap=False)).plans
    masks = masks_of(plan)
    assert all(cbm.ways_of(m) >= 2 for m in masks.values())
    assert cbm.ways_of(masks_of(advise_cat(hist["calibration"]).plans[0])["stream"]) == 1   # 1 without


@pytest.mark.parametrize(("cat", "words"), [
    (CatSettings(vms={"db1": CatVm(min_mib=30)}),
     ["guarantees do not fit", "db1 30 MiB (12 ways)", "27.5 MiB) available"]),
    (CatSettings(vms={"db1": CatVm(min_mib=15), "db2": CatVm(min_mib=12.5)}),
     ["db1 15 MiB (6 ways), db2 12.5 MiB (5 ways) + 1 way(s) for the other VMs", "12 ways (30 MiB) asked"]),
    (CatSettings(reserved_ways=11), ["reserved_ways = 11 leaves no way of the 11-way CBM"]),
    (CatSettings(reserved_ways=10, min_bits=2), ["min_bits = 2 is more than the 1 way(s) left"]),
    (CatSettings(vms={"no-such-vm": CatVm(min_mib=100)},
                 hosts={"skx-stream-neighbour": {"reserved_ways": 11}}), ["reserved_ways = 11"]),
])
def test_a_policy_that_cannot_fit_declines_the_socket_saying_why(neighbour, cat, words):
    _, hist = neighbour
    advice = advise_cat(hist["calibration"], cat=cat)
    assert not advice.plans
    (d,) = advice.declined
    assert all(w in d["reason"] for w in words), d["reason"]


def test_a_guarantee_on_another_host_is_ignored(neighbour):
    _, hist = neighbour
    advice = advise_cat(hist["calibration"], cat=CatSettings(vms={"no-such-vm": CatVm(min_mib=100)}))
    assert len(advice.plans) == 1


# --- CDP: code and data get the same mask --------------------------------------------------------

@pytest.fixture(scope="module")
def cdp_history():
    """3 h of the CDP scenario; the streaming VM's setting today is code 0x3 / data 0xfff (so the plan
    must use -c/-d: a plain set from a split setting is never emitted)."""
    hist = history_of("bdwd-cdp-3vm", hours=3.0)
    st = hist["settings"].copy()
    last = (st["time"] == st["time"].max()) & (st["domain"] == "stream") & (st["setting"] == "l3_code_cbm")
    st.loc[last, "value"] = 0x3
    return {**hist, "settings": st}


def today_of(hist) -> dict[int, tuple[int, int]]:
    st = hist["settings"]
    current, _ = socket_settings(st[st["time"] == st["time"].max()], "bdwd-cdp-3vm", 0)
    return {d: cbm.normalise(m) for d, m in current.items()}


def test_cdp_socket_is_planned_with_code_equal_to_data(cdp_history):
    advice = advise_cat(cdp_history, cat=CatSettings())
    assert not advice.declined
    (plan,) = advice.plans
    assert plan.cos_budget == 7                                  # Xen's halved cos_max
    doc = plan.to_dict()
    for a in doc["assignments"]:
        assert "cbm" not in a and a["code_cbm"] == a["data_cbm"]
        assert "CDP: code and data get the same mask (CMT/MBM cannot split them)" in a["reason"]
    assert CDP_NOTE in plan.predicted["notes"]
    assert cbm.ways_of(masks_of(plan)["stream"]) <= 3
    # the steps are what Xen accepts from today's state, within the budget, and end at the target
    state = today_of(cdp_history)
    for step in plan.steps:
        apply_argv(state, step.argv, cbm_len=12, cdp=True, budget=7, version=(4, 19))
    assert state == {**today_of(cdp_history), **{a.domid: (a.code_cbm, a.data_cbm) for a in plan.assignments}}
    stream = [s.argv for s in plan.steps if s.domid == 1]
    assert {a[4] for a in stream} == {"-c", "-d"}                # from a split setting: one per half
    for step in reversed(plan.steps):
        apply_argv(state, step.undo, cbm_len=12, cdp=True, budget=7, version=(4, 19))
    assert state == today_of(cdp_history)


def test_cdp_with_guarantees_and_reserved_ways(cdp_history):
    (plan,) = advise_cat(cdp_history, cat=CatSettings(dom0_ways=1, reserved_ways=1)).plans
    masks = masks_of(plan)
    assert all(a.code_cbm == a.data_cbm for a in plan.assignments)
    assert all(m & 1 == 0 for m in masks.values())
    assert masks["Domain-0"] & others_union(plan, "Domain-0") == 0 and cbm.ways_of(masks["Domain-0"]) >= 1


@pytest.fixture
def fake_xen(tmp_path):
    """A fake xl applying Xen's rules (tests/cat_xl.py) to a JSON state."""
    env = cat_xl.install(tmp_path)

    def setup(masks: dict[int, tuple[int, int]], names: dict[int, str], budget: int, cbm_len: int,
              cdp: bool = False) -> None:
        state = {"names": {str(d): n for d, n in names.items()}, "sets": 0, "fail_at": None,
                 "masks": {f"0:{d}": list(m) for d, m in masks.items()}, "cbm_len": cbm_len, "budget": budget,
                 "cdp": [0] if cdp else []}
        (tmp_path / "state.json").write_text(json.dumps(state))

    def sh(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run(["/bin/sh", str(path)], env=env, capture_output=True, text=True, timeout=20)

    def state() -> dict[int, tuple[int, int]]:
        masks = json.loads((tmp_path / "state.json").read_text())["masks"]
        return {int(k.split(":")[1]): tuple(v) for k, v in masks.items()}

    return setup, sh, state


def test_cli_plans_a_cdp_host_end_to_end(cdp_history, tmp_path, fake_xen):
    store = tmp_path / "s"
    Store(store).append(cdp_history)
    config = tmp_path / "c.toml"
    config.write_text("[cat]\nhysteresis = 0.02\n")
    out = tmp_path / "apply.sh"
    r = run("--config", str(config), "--store", str(store), "advise", "cat", "--format", "json",
            "--script", str(out))
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    (plan,) = doc["plans"]
    assert all(a["code_cbm"] == a["data_cbm"] and "cbm" not in a for a in plan["assignments"])
    assert CDP_NOTE in plan["predicted"]["notes"]
    today = today_of(cdp_history)
    state = dict(today)
    for c in plan["commands"]:
        apply_argv(state, tuple(c["argv"]), cbm_len=12, cdp=True, budget=plan["cos_budget"], version=(4, 19))
    target = {a["domid"]: (int(a["code_cbm"], 16), int(a["data_cbm"], 16)) for a in plan["assignments"]}
    assert state == {**today, **target}
    assert "xl psr-cat-set -s 0 -c 1 " in out.read_text() and "xl psr-cat-set -s 0 -d 1 " in out.read_text()
    # the script and its rollback run against a fake Xen that enforces its rules
    setup, sh, xen_state = fake_xen
    names = {0: "Domain-0", 1: "stream", 2: "db", 3: "web"}
    setup(today, names, budget=7, cbm_len=12, cdp=True)
    done = sh(out)
    assert done.returncode == 0, done.stderr
    assert xen_state() == {**today, **target}
    back = sh(tmp_path / "apply.rollback.sh")
    assert back.returncode == 0, back.stderr
    assert xen_state() == today
    text = run("--config", str(config), "--store", str(store), "advise", "cat")
    assert "(code=data)" in text.stdout and "note: CDP: code and data get the same mask" in text.stdout


def test_cli_options_override_the_config(neighbour, tmp_path):
    _, hist = neighbour
    store = tmp_path / "s"
    Store(store).append(hist["calibration"])
    config = tmp_path / "c.toml"
    config.write_text('[cat]\nmin_bits = 1\nreserved_ways = 0\n[cat.hosts."skx-stream-neighbour"]\n'
                      "reserved_ways = 0\noverlap = true\n")
    r = run("--config", str(config), "--store", str(store), "advise", "cat", "--format", "json",
            "--min-bits", "2", "--reserved-ways", "1", "--no-overlap")
    assert r.exit_code == 0, r.stderr
    (plan,) = json.loads(r.stdout)["plans"]
    masks = [int(a["cbm"], 16) for a in plan["assignments"]]
    assert all(m & 1 == 0 and cbm.ways_of(m) >= 2 for m in masks)
    assert all(a & b == 0 for i, a in enumerate(set(masks)) for b in list(set(masks))[i + 1:])   # disjoint
    bad = run("--config", str(config), "--store", str(store), "advise", "cat", "--min-bits", "0")
    assert bad.exit_code == 2


def test_a_guaranteed_streaming_vm_is_not_pooled_with_the_other_streams():
    hist = history_of("skx-two-streams-4cos")
    plain = advise_cat(hist, cat=CatSettings(overlap=False))
    assert masks_of(plain.plans[0])["etl1"] == masks_of(plain.plans[0])["etl2"]     # pooled without
    (plan,) = advise_cat(hist, cat=CatSettings(overlap=False, vms={"etl1": CatVm(min_mib=2.5)})).plans
    assert masks_of(plan)["etl1"] & others_union(plan, "etl1") == 0
    assert any(a.name == "etl1" and "guaranteed 2.5 MiB" in a.reason for a in plan.assignments)


# --- the socket's memory bandwidth ([report] bandwidth_capacity) ------------------------------

def truth_gain(sc, plan) -> float:
    """The simulator's true weighted speedup of a JSON plan over no partitioning."""
    by_name = {v.name: i for i, v in enumerate(sc.vms)}
    layout = [full_mask(sc.socket.ways)] * len(sc.vms)
    for a in plan["assignments"]:
        if a["name"] in by_name:
            layout[by_name[a["name"]]] = int(a["cbm"], 16)
    none = harness.evaluate(sc.socket, list(sc.vms), [full_mask(sc.socket.ways)] * len(sc.vms))
    return harness.evaluate(sc.socket, list(sc.vms), layout).weighted_speedup / none.weighted_speedup - 1


def test_a_configured_bandwidth_capacity_lets_the_plan_relieve_a_saturated_bus(tmp_path):
    # Two HPC streamers saturate the bus. With the capacity known the advisor sees that every miss
    # the others save also shortens everyone's queue, and its prediction includes that relief:
    # the truth falls inside its band. Without it the plan is judged at the unloaded latency: it
    # still confines the streamers (the measured bandwidth shows how hard the VMs stall) but
    # predicts far less than the truth.
    sc = next(s for s in suite.scenarios() if s.name == "skx-bw-saturated")
    store = tmp_path / "s"
    Store(store).append(observe(sc, "default", seed=sc.seed))
    gains, bands = {}, {}
    for name, capacity in (("none", None), ("right", sc.socket.bw_bytes_s)):
        config = tmp_path / f"{name}.toml"
        config.write_text("" if capacity is None else f"[report]\nbandwidth_capacity = {int(capacity)}\n")
        r = run("--config", str(config), "--store", str(store), "advise", "cat", "--format", "json")
        assert r.exit_code == 0, r.stderr
        (plan,) = json.loads(r.stdout)["plans"]
        gains[name], bands[name] = truth_gain(sc, plan), plan["predicted"]["uncertainty"]
    assert gains["right"] >= 0.3 and gains["none"] >= 0.3, gains
    assert bands["right"][0] <= gains["right"] <= bands["right"][1], (gains, bands)
    assert bands["none"][1] < gains["none"], (gains, bands)


def test_mbm_adding_up_to_more_than_the_bus_turns_latency_feedback_off_saying_why(tmp_path):
    sc = next(s for s in suite.scenarios() if s.name == "skx-bw-saturated")
    hist = observe(sc, "default", seed=sc.seed)
    store = tmp_path / "s"
    Store(store).append(hist)
    config = tmp_path / "c.toml"
    config.write_text(f'[report.hosts."{sc.name}"]\nbandwidth_capacity = 5000000000\n')   # 5 GB/s: too low
    r = run("--config", str(config), "--store", str(store), "advise", "cat", "--format", "json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    said = [n for p in doc["plans"] for n in p["predicted"].get("notes", [])]
    said += [d["reason"] for d in doc["declined"]]
    assert any("latency feedback off" in s and "of the configured 5.0 GB/s" in s for s in said), said
    # and the masks are the ones planned without a capacity
    plain = json.loads(run("--store", str(store), "advise", "cat", "--format", "json").stdout)
    assert [json_masks(p) for p in doc["plans"]] == [json_masks(p) for p in plain["plans"]]


def json_masks(plan: dict) -> dict[str, str]:
    return {a["name"]: a["cbm"] for a in plan["assignments"]}


def test_a_host_without_mbm_is_planned_from_occupancy_shares_after_a_sweep(tmp_path):
    # Haswell-EP shows occupancy only. With default masks only there is no curve to plan with,
    # and the decline points to calibrate. After a sweep the curves are relative: without the
    # socket's memory traffic (measured outside xl) the decline says so; with it in the config,
    # the plan confines the streamer, says what it assumed, and the truth gains inside its band.
    sc = next(s for s in suite.scenarios() if s.name == "hsw-cos-starved-5")
    default, swept = tmp_path / "default", tmp_path / "swept"
    Store(default).append(observe(sc, "default", seed=sc.seed))
    hist = observe(sc, "calibration", seed=sc.seed, operator=True)
    traffic = float(hist["facts"].loc[hist["facts"]["fact"] == "memory_traffic", "value"].iloc[0])
    Store(swept).append({**hist, "facts": hist["facts"][hist["facts"]["fact"] != "memory_traffic"]})
    config = tmp_path / "c.toml"
    config.write_text(f'[report.hosts."{sc.name}"]\nmemory_traffic = {int(traffic)}\n')

    def advise(store: Path, *extra: str) -> dict:
        r = run(*extra, "--store", str(store), "advise", "cat", "--format", "json")
        assert r.exit_code == 0, r.stderr
        return json.loads(r.stdout)

    doc = advise(default)
    assert not doc["plans"] and "calibrate" in doc["declined"][0]["reason"]
    doc = advise(swept)
    assert not doc["plans"] and "memory_traffic" in doc["declined"][0]["reason"]
    (plan,) = advise(swept, "--config", str(config))["plans"]
    assert any("no MBM on this CPU" in n for n in plan["predicted"]["notes"])
    stream = next(a for a in plan["assignments"] if a["name"] == "stream")
    others = [a["ways"] for a in plan["assignments"] if a["name"] in {v.name for v in sc.vms} - {"stream"}]
    assert stream["ways"] < min(others) and "insertions (no MBM)" in stream["reason"]
    low, high = plan["predicted"]["uncertainty"]
    assert low <= truth_gain(sc, plan) <= high and truth_gain(sc, plan) > 0.02
    text = run("--config", str(config), "--store", str(swept), "advise", "cat").stdout
    assert "note: no MBM on this CPU" in text
    # whatif reads the same relative curves: the confined streamer holds less, and without the
    # traffic it says what to set
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps({"plans": [plan]}))
    r = run("--config", str(config), "--store", str(swept), "whatif", "--plan", str(plan_file),
            "--format", "json")
    assert r.exit_code == 0, r.stderr
    (sock,) = json.loads(r.stdout)["sockets"]
    occ = next(v for v in sock["vms"] if v["name"] == "stream")["occupancy_bytes"]
    assert occ["predicted"] < 0.5 * occ["now"]
    r = run("--store", str(swept), "whatif", "--plan", str(plan_file))
    assert r.exit_code == 3 and "memory_traffic" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.bad_input
def test_script_file_names_are_safe_whatever_the_host_names(neighbour, tmp_path):
    # Host names come from the config: '/' and a leading '-' must not make file names (it crashed
    # with "ValueError: Invalid name"), and two hosts must never share a script.
    _, hist = neighbour
    store = Store(tmp_path / "s")
    hosts = ["rack/01", "-evil"]
    for host in hosts:
        store.append({t: df.assign(host=host) for t, df in hist["calibration"].items()})
    out = tmp_path / "out" / "apply.sh"
    out.parent.mkdir()
    r = run("--store", str(tmp_path / "s"), "advise", "cat", "--script", str(out))
    assert r.exit_code == 0, r.stderr
    written = sorted(p.name for p in out.parent.iterdir())
    assert len(written) == 4
    assert all(re.fullmatch(r"apply\.[A-Za-z0-9_][A-Za-z0-9._-]*\.sh", n) for n in written), written
    assert sorted(n for n in written if not n.endswith(".rollback.sh")) == sorted(
        f"apply.{host_file_part(h)}.sh" for h in hosts)
    for host in hosts:
        text = (out.parent / f"apply.{host_file_part(host)}.sh").read_text()
        assert f'# Host: "{host}"' in text                        # the script says which host it is for
