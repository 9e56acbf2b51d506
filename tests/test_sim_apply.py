"""`simulate --extend --apply`: a plan's xl commands run on the simulated hosts as Xen runs them.

The loop an operator follows on the demo: calibrate, run the sweep, collect, advise, apply the
plan, collect again. Here the simulator stands in for the Xen hosts: it must accept what Xen
accepts, refuse what Xen refuses (with the plan file, host and command named), and say how
much the plan truly changed.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from rdtadvisor.core.errors import ConfigError
from rdtadvisor.sim import apply
from rdtadvisor.sim.scenario import parse_scenario
from rdtadvisor.store import Store
from tests.clirun import run

FLEET = """
name = "apply"
start = 2026-11-20T00:00:00Z
duration = "8h"
step = "5m"
seed = 5

[[hosts]]
name = "sky"
preset = "skylake-sp"
xen = "4.19.1"
sockets = 1

[[hosts.vms]]
name = "db"
profile = "cache-sensitive-db"

[[hosts.vms]]
name = "etl"
profile = "stream"

[[hosts.vms]]
name = "web-{i}"
count = 2
profile = "web"

[[hosts]]
name = "old"
preset = "broadwell-ep"
xen = "4.8.5"
sockets = 2
cdp = true

[[hosts.vms]]
name = "app"
profile = "web"
"""


def host(name: str):
    sc = parse_scenario(tomllib.loads(FLEET))
    return next(h for h in sc.hosts if h.name == name)


def cmd(*argv: str, at: float = 0.0, host_name: str = "sky") -> apply.TimedCommand:
    return apply.TimedCommand(host_name, timedelta(seconds=at), ("xl", *argv), "plan.json")


def l3(h, name: str, offset: timedelta):
    vm = next(v for v in h.vms if v.name == name)
    return vm.masks_at(offset, h.preset.ways)


def test_a_plan_changes_the_masks_from_its_offset_on():
    sky = host("sky")
    db = next(v for v in sky.vms if v.name == "db").domid
    eight = timedelta(hours=8)
    new = apply.apply_commands(sky, [cmd("psr-cat-set", "-s", "0", str(db), "0x7f0", at=600)], eight)
    assert l3(new, "db", eight).data == 0x7ff                  # before: the default
    assert l3(new, "db", timedelta(hours=8, minutes=10)).cbm == 0x7f0
    # by name too, as xl takes it; the all-ones mask is the default again (COS 0)
    back = apply.apply_commands(new, [cmd("psr-cat-set", "db", "0x7ff", at=3600)], eight)
    assert l3(back, "db", timedelta(hours=10)).cbm is None


@pytest.mark.parametrize("argv, why", [
    (("psr-cat-set", "1", "0x505"), "not contiguous"),
    (("psr-cat-set", "1", "0x0"), "empty mask"),
    (("psr-cat-set", "1", "0xfff"), "bits above the 11-bit CBM"),
    (("psr-cat-set", "77", "0x7"), "no domain 77"),
    (("psr-cat-set", "-s", "3", "1", "0x7"), "no socket 3"),
    (("psr-cat-set", "-d", "1", "0x7"), "need CDP on"),
    (("psr-cat-cbm-set", "1", "0x7"), "Xen 4.19's xl has psr-cat-set"),
    (("psr-cat-set", "-l", "2", "1", "0x7"), "L2 CAT changes are not simulated"),
    (("psr-mba-set", "1", "50"), "only psr-cat-set is simulated"),
])
def test_what_xen_refuses_is_refused_naming_the_plan_host_and_command(argv, why):
    with pytest.raises(ConfigError) as e:
        apply.apply_commands(host("sky"), [cmd(*argv)], timedelta(0))
    assert str(e.value).startswith(f"plan.json: sky: xl {' '.join(argv)}: ") and why in str(e.value)


def test_every_command_must_leave_a_free_cos_as_on_xen():
    sky = host("sky")
    budget = sky.cos_budget
    ids = [v.domid for v in sky.vms]
    # one distinct mask per VM fits while the socket has COS for them
    masks = [1 << k for k in range(len(ids))]
    sets = [cmd("psr-cat-set", str(d), hex(m)) for d, m in zip(ids, masks, strict=True)]
    ok = apply.apply_commands(sky, sets, timedelta(0))
    assert {l3(ok, v.name, timedelta(0)).cbm for v in ok.vms} == set(masks)
    tight = replace(sky, preset=replace(sky.preset, cos_max=2))
    with pytest.raises(ConfigError, match=r"no free COS available \(socket 0 has 2\)"):
        apply.apply_commands(tight, sets, timedelta(0))
    assert budget > 2


def test_cdp_halves_and_the_old_syntax_on_an_old_xen():
    old = host("old")
    app = next(v for v in old.vms if v.name == "app")
    new = apply.apply_commands(old, [
        apply.TimedCommand("old", timedelta(0), ("xl", "psr-cat-cbm-set", "-s", str(app.socket), "-c",
                                                 str(app.domid), "0xf"), "p"),
        apply.TimedCommand("old", timedelta(0), ("xl", "psr-cat-cbm-set", "-d", str(app.domid), "0xff0"),
                           "p"),
    ], timedelta(0))
    m = l3(new, "app", timedelta(0))
    assert (m.code_cbm, m.data_cbm, m.data) == (0xF, 0xFF0, 0xFF0)
    # a set for the other socket is that socket's COS: the VM (which runs on its own) keeps its masks
    other = 1 - app.socket
    same = apply.apply_commands(new, [apply.TimedCommand("old", timedelta(1), (
        "xl", "psr-cat-cbm-set", "-s", str(other), str(app.domid), "0x3"), "p")], timedelta(0))
    assert l3(same, "app", timedelta(hours=1)).data == 0xFF0


def test_commands_of_reads_advise_and_calibrate_json_and_nothing_else():
    advise = {"plans": [{"host": "sky", "commands": [{"argv": ["xl", "psr-cat-set", "1", "0x7"]}]}]}
    assert apply.commands_of(advise, "a.json") == [
        apply.TimedCommand("sky", timedelta(0), ("xl", "psr-cat-set", "1", "0x7"), "a.json")]
    sweep = {"hosts": [{"host": "sky", "sockets": [{"vms": [{
        "levels": [{"offset_s": 0, "argv": [["xl", "psr-cat-set", "1", "0x600"]]},
                   {"offset_s": 600, "argv": [["xl", "psr-cat-set", "1", "0x400"]]}],
        "restore_offset_s": 1200, "restore_argv": [["xl", "psr-cat-set", "1", "0x7ff"]]}]}]}]}
    got = apply.commands_of(sweep, "s.json")
    assert [(c.at.total_seconds(), c.argv[-1]) for c in got] == [(0, "0x600"), (600, "0x400"),
                                                                  (1200, "0x7ff")]
    not_argv = {"plans": [{"host": "sky", "commands": [{"argv": "xl psr-cat-set"}]}]}
    for bad in ({"migrations": []}, [], not_argv):
        with pytest.raises(ConfigError, match=r"^x\.json: "):
            apply.commands_of(bad, "x.json")


def curves(store: str) -> dict[str, dict]:
    r = run("--store", store, "curves", "--host", "sky", "--format", "json")
    return {c["domain"]: c for c in json.loads(r.stdout)["curves"] if c["socket"] == 0}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("apply")
    (d / "fleet.toml").write_text(FLEET)
    assert run("simulate", str(d / "fleet.toml"), "--out", str(d / "caps"), "-q").exit_code == 0
    assert run("--store", str(d / "store"), "collect", "--replay", str(d / "caps")).exit_code == 0
    return d


def test_the_calibrate_then_advise_loop_runs_on_the_simulated_fleet(fleet):
    d, store = fleet, str(fleet / "store")
    r = run("--store", store, "calibrate", "--host", "sky", "--duration", "12h", "--format", "json")
    assert r.exit_code == 0, r.stderr
    (d / "sweep.json").write_text(r.stdout)
    swept = {v["name"] for s in json.loads(r.stdout)["hosts"][0]["sockets"] for v in s["vms"]}
    assert "db" in swept
    before = curves(store)
    r = run("simulate", str(d / "fleet.toml"), "--extend", "12h", "--apply", str(d / "sweep.json"),
            "--out", str(d / "sweep-caps"), "-q")
    assert r.exit_code == 0, r.stderr
    assert f"simulator truth: {d / 'sweep.json'}: sky socket 0: weighted speedup" in r.stderr
    # only the extension is written: it starts where the stored run ended
    stamps = sorted(p.name for p in (d / "sweep-caps" / "sky").iterdir())
    assert stamps[0] == "20261120T080000Z" and len(stamps) == 12 * 12
    assert run("--store", store, "collect", "--replay", str(d / "sweep-caps")).exit_code == 0
    settings = Store(store).read("settings", hosts=["sky"])
    seen = set(settings[settings["setting"] == "l3_cbm"]["value"].dropna().astype(int))
    assert {0x7fc, 0x7c0, 0x600, 0x400} <= seen            # the sweep's levels (9, 5, 2, 1 of 11 ways)
    after = curves(store)
    assert after["db"]["quality"] in ("good", "fair") and after["db"]["points"] > before["db"]["points"]


def test_an_advised_plan_applied_in_the_simulator_reports_its_true_effect(fleet):
    d = fleet
    plan = {"plans": [{"host": "sky", "commands": [
        {"argv": ["xl", "psr-cat-set", "-s", "0", "2", "0x1"]}]}]}          # confine the streamer to 1 way
    (d / "confine.json").write_text(json.dumps(plan))
    etl = next(v for v in host("sky").vms if v.name == "etl")
    assert etl.domid == 2
    r = run("simulate", str(d / "fleet.toml"), "--extend", "4h", "--apply", f"{d / 'confine.json'}@+1h",
            "--out", str(d / "after"), "-q")
    assert r.exit_code == 0, r.stderr
    line = next(x for x in r.stderr.splitlines()
                if x.startswith(f"simulator truth: {d / 'confine.json'}: sky socket 0"))
    gain = float(line.split("(")[1].split("%")[0])
    assert gain > 1.0                      # a streamer fenced off a cache-sensitive DB helps
    # and per VM, largest change first: who gained, and what the confined streamer paid
    lines = r.stderr.splitlines()
    per_vm = lines[lines.index(line) + 1]
    assert per_vm.startswith("  per VM (speed change, largest first): ")
    changes = dict(x.rsplit(" ", 1) for x in per_vm.split(": ", 1)[1].split(", "))
    assert "etl" in changes and max(float(v.rstrip("%")) for v in changes.values()) > gain
    # two plans, one after the other: each one's effect is against the run with the ones before it
    (d / "undo.json").write_text(json.dumps({"plans": [{"host": "sky", "commands": [
        {"argv": ["xl", "psr-cat-set", "-s", "0", "2", "0x7ff"]}]}]}))
    r = run("simulate", str(d / "fleet.toml"), "--extend", "4h", "--apply", f"{d / 'confine.json'}@+1h",
            "--apply", f"{d / 'undo.json'}@2026-11-20T11:00:00Z", "--out", str(d / "twice"), "-q")
    assert r.exit_code == 0, r.stderr
    undo = next(x for x in r.stderr.splitlines() if x.startswith(f"simulator truth: {d / 'undo.json'}: sky"))
    assert float(undo.split("(")[1].split("%")[0]) < -1.0     # releasing the streamer undoes the gain
    (d / "bad.json").write_text(json.dumps({"plans": [{"host": "sky", "commands": [
        {"argv": ["xl", "psr-cat-set", "2", "0x5"]}]}]}))
    r = run("simulate", str(d / "fleet.toml"), "--extend", "1h", "--apply", str(d / "bad.json"),
            "--out", str(d / "bad"), "-q")
    assert r.exit_code == 2
    assert f"{d / 'bad.json'}: sky: xl psr-cat-set 2 0x5: 0x5 is not contiguous" in r.stderr
    r = run("simulate", str(d / "fleet.toml"), "--extend", "2h", "--apply", f"{d / 'undo.json'}@+3h",
            "--out", str(d / "late"), "-q")
    assert r.exit_code == 0 and "its last command comes 3:00:00 after the run's end" in r.stderr
    r = run("simulate", str(d / "fleet.toml"), "--apply", str(d / "confine.json"), "--out", str(d / "x"),
            "-q")
    assert r.exit_code == 2 and "--apply needs --extend" in r.stderr
    (d / "nohost.json").write_text(json.dumps({"plans": [{"host": "elsewhere", "commands": [
        {"argv": ["xl", "psr-cat-set", "2", "0x1"]}]}]}))
    r = run("simulate", str(d / "fleet.toml"), "--extend", "1h", "--apply", str(d / "nohost.json"),
            "--out", str(d / "y"), "-q")
    assert r.exit_code == 2 and "host elsewhere is not in the scenario" in r.stderr
