"""Plans (rdtadvisor.advise.plan) and their shell scripts (rdtadvisor.render.script).

Properties over random hosts: every mask in every step passes Xen's check, every state on
the way fits the COS budget, and rollback restores exactly today's masks. The scripts are
checked with the real /bin/sh (``sh -n``) and run against a fake ``xl`` (tests/cat_xl.py) that applies Xen's
rules for ``psr-cat-set`` (contiguous CBM within the length, identical settings share a COS,
``no free COS available``, ``-c``/``-d`` under CDP) to a JSON state file.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rdtadvisor.advise.plan import CatPlan, PlanError, build_steps, cat_plan, plans_from_dict, plans_to_dict
from rdtadvisor.advise.planfile import parse_plan
from rdtadvisor.cache import cbm
from rdtadvisor.model.masks import socket_settings, xen_version_of
from rdtadvisor.render.script import rollback_script, script, scripts_by_host
from tests import cat_xl

SH = "/bin/sh"
EVIL = "x; rm -rf / $(reboot)"
READS = ("domname", "psr-cat-show")     # the scripts' checks: xl calls that change nothing


# --- a model of Xen for the argv of a step ---------------------------------------------------

def apply_argv(state: dict[int, tuple[int, int]], argv: tuple[str, ...], *, cbm_len: int, cdp: bool,
               budget: int, version: tuple[int, int]) -> None:
    """Apply one xl psr-cat-set argv to state (domid -> (code, data)) as Xen would, or fail."""
    assert argv[0] == "xl"
    assert argv[1] == ("psr-cat-set" if version >= (4, 10) else "psr-cat-cbm-set")
    args = list(argv[2:])
    assert args[:2] == ["-s", "0"], argv
    args = args[2:]
    half = None
    if args[0] in ("-c", "-d"):
        assert cdp, "Xen rejects -c/-d without CDP"
        half, args = args[0], args[1:]
    domid, mask_text = args
    assert mask_text.startswith("0x"), "xl reads a leading 0 as octal: masks must be hex"
    mask = int(mask_text, 16)
    assert cbm.is_valid(mask, cbm_len), f"Xen rejects {mask_text} on a {cbm_len}-bit CBM"
    d = int(domid)
    code, data = state[d]
    state[d] = (mask, data) if half == "-c" else (code, mask) if half == "-d" else (mask, mask)
    used = cbm.cos_needed(state.values(), cbm_len)
    assert used <= budget, f"no free COS available: {used} > {budget} after {shlex.join(argv)}"


@st.composite
def hosts(draw):
    cbm_len = draw(st.integers(4, 20))
    cdp = draw(st.booleans())
    version = draw(st.sampled_from([(4, 7), (4, 9), (4, 10), (4, 14), (4, 19)] if cdp
                                   else [(4, 6), (4, 9), (4, 10), (4, 19)]))
    n = draw(st.integers(1, 7))
    domids = draw(st.lists(st.integers(0, 200), min_size=n, max_size=n, unique=True))
    full = cbm.full(cbm_len)

    def mask():
        return st.one_of(st.just(full), st.integers(0, cbm_len - 1).flatmap(
            lambda s: st.integers(1, cbm_len - s).map(lambda w: cbm.contiguous(s, w))))

    def setting():
        if cdp:
            return st.one_of(mask(), st.tuples(mask(), mask()))
        return mask()

    current = {d: draw(setting()) for d in domids}
    # targets from the layout function: way counts, reserved ways, optional shared run
    low = draw(st.integers(0, 2))
    high = draw(st.integers(0, 2))
    room = cbm_len - low - high
    k = draw(st.integers(1, max(1, min(4, room))))
    counts = draw(st.lists(st.integers(1, max(1, room // k)), min_size=k, max_size=k))
    assume(sum(counts) <= room)
    masks = cbm.layout(counts, cbm_len, reserved_low=low, reserved_high=high)
    choices = [*masks, full]
    if cdp:
        choices += [(a, b) for a in masks[:2] for b in masks[:2]]
    changed = draw(st.lists(st.sampled_from(domids), unique=True))
    target = {d: draw(st.sampled_from(choices)) for d in changed}
    slack = draw(st.integers(-1, 3))
    return cbm_len, cdp, version, current, target, slack


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(hosts())
def test_steps_are_valid_fit_the_budget_and_roll_back_exactly(h):
    cbm_len, cdp, version, current, target, slack = h
    goal = {d: cbm.normalise(m) for d, m in current.items()}
    goal.update({d: cbm.normalise(m) for d, m in target.items()})
    now = {d: cbm.normalise(m) for d, m in current.items()}
    # Xen never lets today's masks exceed the budget; the target may.
    budget = max(1, cbm.cos_needed(now.values(), cbm_len), cbm.cos_needed(goal.values(), cbm_len) + slack)
    try:
        steps = build_steps("h", 0, version, current, target, cdp, cbm_len=cbm_len, cos_budget=budget)
    except PlanError as e:
        final = cbm.cos_needed(goal.values(), cbm_len)
        if final > budget:
            assert "COS but only" in str(e)
            return
        # Only the code/data split can make a fitting target unreachable one command at a time.
        assert cdp and "no order of single xl commands" in str(e), str(e)
        assert final >= budget - 1, f"CDP transition refused with {budget - final} spare COS: {e}"
        return
    state = dict(now)
    for s in steps:
        apply_argv(state, s.argv, cbm_len=cbm_len, cdp=cdp, budget=budget, version=version)
    assert state == goal
    assert all(s.domid in target for s in steps), "only domains whose mask changes get steps"
    for s in reversed(steps):
        apply_argv(state, s.undo, cbm_len=cbm_len, cdp=cdp, budget=budget, version=version)
    assert state == now
    # the plan file reads back to the same steps (and passes the argv check of from_dict)
    plan = CatPlan("h", 0, budget, cbm.cos_needed(goal.values(), cbm_len), (), steps)
    assert plans_from_dict(json.loads(json.dumps(plans_to_dict([plan])))) == [plan]


def test_resets_that_free_a_cos_come_first():
    # budget 2, both used: db moves to a new mask only after batch's COS is freed
    steps = build_steps("h", 0, (4, 19), {0: 0x7ff, 5: 0x7f0, 7: 0x3}, {5: 0x7c0, 7: 0x7ff, 0: 0x1},
                        False, cbm_len=11, cos_budget=2, names={5: "db"})
    assert [(s.kind, s.argv) for s in steps] == [
        ("cat-reset", ("xl", "psr-cat-set", "-s", "0", "7", "0x7ff")),
        ("cat-set", ("xl", "psr-cat-set", "-s", "0", "5", "0x7c0")),
        ("cat-set", ("xl", "psr-cat-set", "-s", "0", "0", "0x1"))]
    assert steps[0].undo == ("xl", "psr-cat-set", "-s", "0", "7", "0x3")
    assert steps[1].domain == "db" and steps[1].reason == "mask 0x7f0 -> 0x7c0"


def test_a_domain_is_parked_when_no_order_fits():
    # budget 1: A and B share 0xf0; both move to 0x0f. Moving either alone needs a second COS.
    steps = build_steps("h", 0, (4, 19), {1: 0xf0, 2: 0xf0}, {1: 0x0f, 2: 0x0f}, False,
                        cbm_len=8, cos_budget=1)
    assert [s.argv[-2:] for s in steps] == [("1", "0xff"), ("2", "0xf"), ("1", "0xf")]
    assert steps[0].kind == "cat-reset" and "parked" in steps[0].reason


def test_known_limit_cdp_pair_shared_with_no_spare_cos_is_refused_clearly():
    # Xen could do it (plain-reset one domain, then move the other in place), but that reset's
    # undo would need two commands (-c and -d), so one Step could not undo it.
    with pytest.raises(PlanError, match="no order of single xl commands stays within 1 COS"):
        build_steps("h", 0, (4, 19), {1: (0x3e000, 0x100), 2: (0x3e000, 0x100)}, {1: 0x7c00, 2: 0x7c00},
                    True, cbm_len=19, cos_budget=1)


def test_old_xen_syntax_and_cdp_halves():
    steps = build_steps("h", 1, (4, 8), {3: (0xf, 0xffff0)}, {3: (0xff, 0xfff00)}, True,
                        cbm_len=20, cos_budget=7)
    assert [s.argv for s in steps] == [("xl", "psr-cat-cbm-set", "-s", "1", "-c", "3", "0xff"),
                                       ("xl", "psr-cat-cbm-set", "-s", "1", "-d", "3", "0xfff00")]
    assert [s.undo for s in steps] == [("xl", "psr-cat-cbm-set", "-s", "1", "-c", "3", "0xf"),
                                       ("xl", "psr-cat-cbm-set", "-s", "1", "-d", "3", "0xffff0")]
    plain = build_steps("h", 0, (4, 19), {3: 0xfffff}, {3: 0xff}, True, cbm_len=20, cos_budget=7)
    assert plain[0].argv == ("xl", "psr-cat-set", "-s", "0", "3", "0xff")     # both halves at once


@pytest.mark.parametrize(("target", "kwargs", "message"), [
    ({5: 0x5}, {}, "not one contiguous run"),
    ({5: 0x800}, {}, "beyond the 11-bit CBM"),
    ({5: 0}, {}, "empty mask"),
    ({5: 0x1}, {"min_bits": 2}, "fewer than the minimum of 2"),
    ({5: (0x3, 0xc)}, {}, "CDP is off"),
    ({9: 0x3}, {}, "domid 9 is not on the socket"),
    ({0: 0x1, 5: 0x2, 7: 0x4}, {"cos_budget": 2}, "needs 3 COS but only 2"),
])
def test_plan_errors(target, kwargs, message):
    args = {"cbm_len": 11, "cos_budget": 15, **kwargs}
    with pytest.raises(PlanError, match=message.replace("(", r"\(")):
        build_steps("h", 0, (4, 19), {0: 0x7ff, 5: 0x7f0, 7: 0x3}, target, False, **args)
    with pytest.raises(PlanError, match="today's"):
        build_steps("h", 0, (4, 19), {0: 0x7ff, 5: 0x1f00}, {5: 0x3}, False, cbm_len=11, cos_budget=15)
    with pytest.raises(PlanError, match="no CAT"):
        build_steps("h", 0, (4, 5), {5: 0x7f0}, {5: 0x3}, False, cbm_len=11, cos_budget=15)


def sky_plan(names=None) -> CatPlan:
    return cat_plan("xen-sky01", 0, (4, 19), {0: 0x7ff, 5: 0x7f0, 7: 0x3, 9: 0x7ff},
                    {0: 0x1, 5: 0x7f0, 7: 0x6, 9: 0x7f8}, cdp=False, cbm_len=11, cos_budget=15,
                    l3_bytes=28160 * 1024, names=names or {0: "Domain-0", 5: "db-primary", 7: EVIL, 9: "web"},
                    reasons={7: "streaming: confined to 2 ways"}, evidence={7: {"bandwidth_bytes_s": 5.9e9}},
                    predicted={"weighted_speedup": 1.12, "per_vm": [{"domid": 5, "speedup": 1.2}],
                               "uncertainty": 0.03})


def test_json_contract_round_trips_and_whatif_reads_it():
    plan = sky_plan()
    doc = json.loads(json.dumps(plans_to_dict([plan])))
    entry = doc["plans"][0]
    assert list(entry) == ["host", "socket", "level", "cos_budget", "cos_used", "assignments", "predicted",
                           "commands", "rollback"]
    assert entry["level"] == 3 and entry["cos_budget"] == 15 and entry["cos_used"] == 4
    a7 = next(a for a in entry["assignments"] if a["domid"] == 7)
    assert a7 == {"domid": 7, "name": EVIL, "cos": 2, "cbm": "0x6", "ways": 2,
                  "bytes": 2 * 28160 * 1024 / 11, "reason": "streaming: confined to 2 ways"}
    assert entry["predicted"]["weighted_speedup"] == 1.12
    # in-place changes (7 is the only user of 0x3) before those that take a new COS
    assert [c["shell"] for c in entry["commands"]] == [
        "xl psr-cat-set -s 0 7 0x6", "xl psr-cat-set -s 0 0 0x1", "xl psr-cat-set -s 0 9 0x7f8"]
    assert [c["shell"] for c in entry["rollback"]] == [
        "xl psr-cat-set -s 0 9 0x7ff", "xl psr-cat-set -s 0 0 0x7ff", "xl psr-cat-set -s 0 7 0x3"]
    assert entry["commands"][0]["evidence"] == {"bandwidth_bytes_s": 5.9e9}
    assert entry["commands"][0]["reason"] == "streaming: confined to 2 ways"
    assert plans_from_dict(doc) == [plan]
    read = parse_plan(doc)                                   # `whatif --plan` reads the same file
    assert [(a.domid, a.cbm) for a in read.cat[0].assignments] == [(0, 1), (5, 0x7f0), (7, 6), (9, 0x7f8)]
    cdp = cat_plan("b", 1, (4, 14), {1: (0xf, 0xffff0)}, {1: (0xff, 0xfff00)}, cdp=True, cbm_len=20,
                   cos_budget=7, l3_bytes=55 * 2**20)
    doc = json.loads(json.dumps(plans_to_dict([cdp])))
    assert doc["plans"][0]["assignments"][0]["code_cbm"] == "0xff"
    assert parse_plan(doc).cat[0].assignments[0].data_cbm == 0xfff00
    assert plans_from_dict(doc) == [cdp]


@pytest.mark.parametrize(("key", "index", "argv", "message"), [
    ("commands", 0, ["rm", "-rf", "/"], "not an xl CAT command of this plan"),
    ("commands", 0, ["xl", "psr-cat-set", "-s", "0", "7", "0x6", "; reboot"], "not an xl CAT command"),
    ("commands", 0, ["xl", "psr-cat-set", "-s", "1", "7", "0x6"], "not an xl CAT command"),     # other socket
    ("rollback", 2, ["xl", "psr-cat-set", "-s", "0", "9", "0x3"], "not an xl CAT command"),     # other domid
    ("rollback", 0, "xl psr-cat-set -s 0 9 0x7ff", "argv must be a list of strings"),
])
def test_plan_files_read_back_accept_only_xl_cat_commands(key, index, argv, message):
    doc = json.loads(json.dumps(plans_to_dict([sky_plan()])))
    doc["plans"][0][key][index]["argv"] = argv
    with pytest.raises(PlanError, match=message):
        plans_from_dict(doc)


# --- scripts -------------------------------------------------------------------------------------

@pytest.fixture
def xl_env(tmp_path: Path):
    env = cat_xl.install(tmp_path)

    def setup(plans: list[CatPlan], current: dict[int, int], names: dict[int, str], fail_at=None,
              budget=15, cbm_len=11):
        masks = {f"{p.socket}:{d}": list(cbm.normalise(m)) for p in plans for d, m in current.items()}
        state = {"names": {str(d): n for d, n in names.items()}, "masks": masks, "sets": 0,
                 "fail_at": fail_at, "cbm_len": cbm_len, "budget": budget}
        (tmp_path / "state.json").write_text(json.dumps(state))
        (tmp_path / "log").write_text("")

    def run(text: str) -> subprocess.CompletedProcess:
        path = tmp_path / "run.sh"
        path.write_text(text)
        return subprocess.run([SH, str(path)], env=env, capture_output=True, text=True, timeout=20,
                              cwd=tmp_path)

    def state() -> dict:
        return json.loads((tmp_path / "state.json").read_text())["masks"]

    def log() -> list[list[str]]:
        return [json.loads(x) for x in (tmp_path / "log").read_text().splitlines()]

    return setup, run, state, log


CURRENT = {0: 0x7ff, 5: 0x7f0, 7: 0x3, 9: 0x7ff}
NAMES = {0: "Domain-0", 5: "db-primary", 7: EVIL, 9: "web"}


def test_script_passes_sh_n_and_applies_then_rolls_back(xl_env):
    setup, run, state, log = xl_env
    plan = sky_plan()
    text, undo = script([plan]), rollback_script([plan])
    for t in (text, undo):
        assert t.startswith("#!/bin/sh\n") and "\nset -eu\n" in t
        assert subprocess.run([SH, "-n"], input=t, text=True, capture_output=True).returncode == 0
    setup([plan], CURRENT, NAMES)
    r = run(text)
    assert r.returncode == 0, r.stderr
    sets = [x for x in log() if x[0] not in READS]
    assert sets == [list(s.argv[1:]) for s in plan.steps]
    assert state() == {"0:0": [1, 1], "0:5": [0x7f0] * 2, "0:7": [6, 6], "0:9": [0x7f8] * 2}
    r = run(undo)
    assert r.returncode == 0, r.stderr
    assert state() == {f"0:{d}": [m, m] for d, m in CURRENT.items()}


def test_a_failed_step_undoes_the_ones_already_run(xl_env):
    setup, run, state, _log = xl_env
    plan = sky_plan()
    setup([plan], CURRENT, NAMES, fail_at=3)
    r = run(script([plan]))
    assert r.returncode == 253
    assert "stopped after 2 of 3 command(s); undoing them" in r.stderr
    assert state() == {f"0:{d}": [m, m] for d, m in CURRENT.items()}


def test_a_reused_domid_stops_the_script_before_any_change(xl_env):
    setup, run, _state, log = xl_env
    plan = sky_plan()
    setup([plan], CURRENT, {**NAMES, 9: "someone-else"})
    r = run(script([plan]))
    assert r.returncode == 1
    assert "domain id 9 is now named 'someone-else', not 'web'; nothing was changed" in r.stderr
    assert all(x[0] in READS for x in log())
    setup([plan], CURRENT, {d: n for d, n in NAMES.items() if d != 7})
    r = run(rollback_script([plan]))
    assert r.returncode == 1 and "domain id 7 no longer exists" in r.stderr


def test_untrusted_names_never_reach_the_shell_unquoted(xl_env, tmp_path):
    setup, run, _state, _log = xl_env
    canary = tmp_path / "pwned"
    nasty = {0: f"w'; touch {canary}; '", 5: "db", 7: f"$(touch {canary})", 9: f"w\n touch {canary}\n# "}
    plan = sky_plan(names=nasty)
    for text in (script([plan]), rollback_script([plan])):
        for domid in (0, 7):
            name = nasty[domid]
            for line in text.splitlines():
                if name in line:    # in a comment, or a single-quoted word of a check
                    words = shlex.split(line) if not line.startswith("# ") else []
                    assert line.startswith("# ") or words[:3] == ["expect_domain", str(domid), name] or (
                        words[0] == "expect_masks" and words[5] == f'domid {domid} "{name}"'), line
        assert subprocess.run([SH, "-n"], input=text, text=True, capture_output=True).returncode == 0
        # a name with newlines is checked too, byte for byte, on one line (octal escapes)
        assert shlex.join(["expect_domain", "9", f"w\\012 touch {canary}\\012# "]) in text.splitlines()
        assert all(not line.startswith(" touch") for line in text.splitlines())
    setup([plan], CURRENT, nasty)
    r = run(script([plan]))
    assert r.returncode == 0, r.stderr
    r = run(rollback_script([plan]))
    assert r.returncode == 0, r.stderr
    assert not canary.exists()
    # the classic one: only ever in a comment (escaped) or as a single-quoted word
    text = script([sky_plan()])
    for line in text.splitlines():
        if EVIL in line:
            assert line.startswith("#") or line in (shlex.join(["expect_domain", "7", EVIL]), shlex.join(
                ["expect_masks", "3", "0", "7", "0x3", f'domid 7 "{EVIL}"']))
    assert all(s.argv[-2] == str(s.domid) for s in sky_plan().steps)


@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=30))
def test_any_name_gives_a_script_sh_accepts(name):
    plan = sky_plan(names={0: "Domain-0", 5: name, 7: name + "'", 9: "w"})
    for text in (script([plan]), rollback_script([plan])):
        assert subprocess.run([SH, "-n"], input=text, text=True, capture_output=True).returncode == 0
        for line in text.splitlines():
            if line.startswith("# "):
                continue
            if line.startswith("expect_domain "):
                assert len(shlex.split(line)) == 3


def test_scripts_are_per_host():
    a = sky_plan()
    b = cat_plan("xen-bdw-cdp", 0, (4, 14), {1: (0xf, 0xffff0)}, {1: (0xff, 0xfff00)}, cdp=True, cbm_len=20,
                 cos_budget=7, l3_bytes=55 * 2**20, names={1: "jvm"})
    with pytest.raises(ValueError, match="scripts_by_host"):
        script([a, b])
    both = scripts_by_host([a, b])
    assert list(both) == ["xen-sky01", "xen-bdw-cdp"]
    assert "xl psr-cat-set -s 0 -c 1 0xff\n" in both["xen-bdw-cdp"]
    assert "# Host: \"xen-bdw-cdp\"" in both["xen-bdw-cdp"]
    nothing = cat_plan("h", 0, (4, 19), {1: 0x3}, {1: 0x3}, cdp=False, cbm_len=11, cos_budget=15,
                       l3_bytes=1.0)
    assert nothing.steps == () and "Nothing to change" in script([nothing])


def test_todays_settings_and_xen_version_from_the_store(tmp_path):
    from rdtadvisor.store import Store
    from tests.clirun import run

    s = str(tmp_path / "store")
    assert run("--store", s, "collect", "--replay", "samples/captures").exit_code == 0
    store = Store(s, create=False)
    settings_ = store.latest("settings", ["xen-sky01", "xen-bdw-cdp"])
    facts = store.latest("facts", ["xen-sky01", "xen-bdw-cdp"])
    current, names = socket_settings(settings_, "xen-sky01", 1)
    assert current == {0: 0x7ff, 3: 0x7ff, 5: 0x7f0, 7: 0x3, 9: 0x7ff, 11: 0x7ff}
    assert names[5] == "db-primary" and names[11] == "build agent 3"
    current, _ = socket_settings(settings_, "xen-bdw-cdp", 0)
    assert current[1] == (0xf, 0xffff0) and current[0] == (0xfffff, 0xfffff)
    assert xen_version_of(facts, "xen-sky01") == (4, 19)
    assert xen_version_of(facts, "xen-bdw-cdp") == (4, 14)
    assert xen_version_of(facts, "nope") is None
    # a plan from today's state, as the advisor's glue will build it
    sky, sky_names = socket_settings(settings_, "xen-sky01", 1)
    plan = cat_plan("xen-sky01", 1, (4, 19), sky, {0: 0x1}, cdp=False, cbm_len=11, cos_budget=15,
                    l3_bytes=28160 * 1024, names=sky_names)
    assert [(s.shell, s.domain) for s in plan.steps] == [("xl psr-cat-set -s 1 0 0x1", "Domain-0")]


def test_without_xl_on_path_the_script_changes_nothing(tmp_path):
    path = tmp_path / "apply.sh"
    path.write_text(script([sky_plan()]))
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    r = subprocess.run([SH, str(path)], env={"PATH": str(empty)}, capture_output=True, text=True, timeout=20)
    assert r.returncode == 1
    assert r.stderr == "rdtadvisor: xl not found in PATH: run this on the Xen host (dom0) as root\n"


def test_a_parked_plan_runs_within_the_budget_on_the_fake_xen(xl_env):
    setup, run, state, log = xl_env
    current, names = {1: 0xf0, 2: 0xf0}, {1: "a", 2: "b"}
    plan = cat_plan("h", 0, (4, 19), current, {1: 0x0f, 2: 0x0f}, cdp=False, cbm_len=8, cos_budget=1,
                    l3_bytes=8 * MIB_, names=names)
    setup([plan], current, names, budget=1, cbm_len=8)
    # the naive order (1 then 2 straight to 0x0f) would need 2 COS: the fake Xen refuses that
    naive = "\n".join(["#!/bin/sh", "set -eu", "xl psr-cat-set -s 0 1 0xf", "xl psr-cat-set -s 0 2 0xf", ""])
    r = run(naive)
    assert r.returncode == 253 and "no free COS available" in r.stderr
    setup([plan], current, names, budget=1, cbm_len=8)
    r = run(script([plan]))
    assert r.returncode == 0, r.stderr
    assert state() == {"0:1": [0xf, 0xf], "0:2": [0xf, 0xf]}
    r = run(rollback_script([plan]))
    assert r.returncode == 0, r.stderr
    assert state() == {"0:1": [0xf0, 0xf0], "0:2": [0xf0, 0xf0]}
    assert [x[-2:] for x in log() if x[0] not in READS][-3:] == [["1", "0xff"], ["2", "0xf0"], ["1", "0xf0"]]


MIB_ = 2**20
