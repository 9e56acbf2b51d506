"""`rdtadvisor whatif`: plans, predictions against the truth model, and the command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from rdtadvisor.advise import planfile, whatif
from rdtadvisor.cache import cbm
from rdtadvisor.cli.whatif import command
from rdtadvisor.core.config import Settings
from rdtadvisor.core.errors import ConfigError
from rdtadvisor.sim import model
from tests.clirun import run
from tests.test_curves import SOCKET, VMS, merge, synth_history

MIB = 1024**2
SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "captures"
FULL = (1 << SOCKET.ways) - 1


def cat_plan(host: str, socket: int, masks: dict[int, int]) -> planfile.PlanFile:
    return planfile.parse_plan({"plans": [{"host": host, "socket": socket, "level": 3, "assignments": [
        {"domid": d, "cbm": f"{m:#x}"} for d, m in masks.items()]}]}, source="plan.json")


# --- plan files ------------------------------------------------------------------------------

def write(tmp_path: Path, data: object, name: str = "plan.json") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


GOOD = {"plans": [{"host": "h", "socket": 0, "level": 3, "cos_budget": 15, "assignments": [
    {"domid": 5, "name": "db", "cos": 1, "cbm": "0x7f0", "ways": 7, "reason": "x"},
    {"domid": 7, "name": "batch", "cbm": 3}]}],
    "migrations": [{"name": "batch", "domid": 7, "from": "h", "to": "g", "reason": "l3-pressure",
                    "priority": 2}]}


def test_plan_parses_both_contracts(tmp_path: Path) -> None:
    p = planfile.load_plan(write(tmp_path, GOOD))
    assert p.cat[0].assignments[0].cbm == 0x7f0 and p.cat[0].assignments[1].cbm == 3
    assert p.cat[0].assignments[0].path == "$.plans[0].assignments[0]"
    assert p.migrations[0].source == "h" and p.migrations[0].destination == "g"
    assert p.hosts == ["h", "g"]


@pytest.mark.parametrize(("data", "where", "words"), [
    ("{\"plans\": [", "plan.json:1:", "not valid JSON"),
    ([], "$", "expected an object"),
    ({"other": 1}, "$", "'plans'"),
    ({"plans": [{"socket": 0, "assignments": [{"domid": 1, "cbm": 1}]}]}, "$.plans[0].host", "missing"),
    ({"plans": [{"host": "h", "socket": "0", "assignments": [{"domid": 1, "cbm": 1}]}]},
     "$.plans[0].socket", "integer"),
    ({"plans": [{"host": "h", "socket": 0, "level": 2, "assignments": [{"domid": 1, "cbm": 1}]}]},
     "$.plans[0].level", "level 3"),
    ({"plans": [{"host": "h", "socket": 0, "assignments": []}]}, "$.plans[0].assignments", "non-empty"),
    ({"plans": [{"host": "h", "socket": 0, "assignments": [{"domid": 1, "cbm": "0xzz"}]}]},
     "$.plans[0].assignments[0].cbm", "not a mask"),
    ({"plans": [{"host": "h", "socket": 0, "assignments": [{"domid": 1, "cbm": 0}]}]},
     "$.plans[0].assignments[0].cbm", "empty"),
    ({"plans": [{"host": "h", "socket": 0, "assignments": [{"domid": 1}]}]},
     "$.plans[0].assignments[0]", "needs 'cbm'"),
    ({"plans": [{"host": "h", "socket": 0, "assignments": [{"cbm": 1}]}]},
     "$.plans[0].assignments[0]", "'domid' or a 'name'"),
    ({"plans": [{"host": "h", "socket": 0, "assignments": [{"domid": 1, "cbm": 1}, {"domid": 1, "cbm": 2}]}]},
     "$.plans[0].assignments[1]", "already assigned"),
    ({"migrations": [{"name": "x", "from": "a"}]}, "$.migrations[0].to", "missing"),
    ({"migrations": [{"name": "x", "from": "a", "to": "a"}]}, "$.migrations[0].to", "stay"),
    ({"migrations": {"name": "x"}}, "$.migrations", "expected a list"),
])
def test_bad_plans_name_file_and_path(tmp_path: Path, data: object, where: str, words: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as e:
        planfile.load_plan(path)
    msg = str(e.value)
    assert str(path) in msg and where in msg and words in msg, msg


def test_unreadable_plan(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read plan"):
        planfile.load_plan(tmp_path / "nope.json")


def test_contiguous() -> None:
    assert cbm.is_contiguous(0x7f0) and cbm.is_contiguous(1) and cbm.is_contiguous(0x7ff)
    assert not cbm.is_contiguous(0x5) and not cbm.is_contiguous(0)
    assert not cbm.is_contiguous(0x701)


_json = st.recursive(st.none() | st.booleans() | st.integers(-5, 5000) | st.floats(allow_nan=False)
                     | st.sampled_from(["0x7f0", "0x5", "h", "", "x"]),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                         st.sampled_from(["plans", "migrations", "host", "socket", "level", "assignments",
                                          "domid", "name", "cbm", "code_cbm", "data_cbm", "from", "to"]),
                         inner, max_size=5), max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(_json)
def test_any_json_is_a_plan_or_a_config_error(data: object) -> None:
    try:
        p = planfile.parse_plan(data, source="fuzz.json")
    except ConfigError as e:
        assert str(e).startswith("fuzz.json: $")
    else:
        assert isinstance(p, planfile.PlanFile)


@pytest.fixture(scope="module")
def today() -> object:
    """A socket with varied-mask history; today every VM shares every way."""
    return synth_history(steps=200, seed=3, final_masks={})


@pytest.mark.parametrize(("assignment", "words"), [
    ({"domid": 1, "cbm": "0x5"}, "not contiguous"),
    ({"domid": 1, "cbm": "0xfff"}, "wider than the 11-bit CBM"),
    ({"domid": 1, "code_cbm": "0x3", "data_cbm": "0xc"}, "CDP is off"),
])
def test_masks_checked_against_stored_facts(today, assignment: dict, words: str) -> None:
    plan = planfile.parse_plan({"plans": [{"host": "synth01", "socket": 0, "assignments": [assignment]}]},
                            source="p.json")
    with pytest.raises(ConfigError) as e:
        whatif.predict_cat(today.frames, plan)
    assert "p.json: $.plans[0].assignments[0]" in str(e.value) and words in str(e.value)


def test_unknown_host_in_plan(today) -> None:
    with pytest.raises(ConfigError, match=r"p.json: \$.plans\[0\]: host 'nowhere' is not in the store"):
        whatif.predict_cat(today.frames, planfile.parse_plan(
            {"plans": [{"host": "nowhere", "socket": 0, "assignments": [{"domid": 1, "cbm": 1}]}]},
            source="p.json"))


# --- CAT predictions against the truth model --------------------------------------------------

PLAN_MASKS = {1: 0x7fc, 2: 0x3, 3: 0x7fc, 4: 0x7fc}      # confine the streaming VM to 2 ways


def truth(masks: list[int], vms=VMS, socket=SOCKET) -> model.SocketState:
    return model.solve(socket, vms, masks, alone_ips=np.ones(len(vms)))


def test_cat_prediction_within_band_of_truth(today) -> None:
    p = whatif.predict_cat(today.frames, cat_plan("synth01", 0, PLAN_MASKS))
    [s] = p.sockets
    t = truth([PLAN_MASKS[d] for d in (1, 2, 3, 4)])
    assert [v.domid for v in s.vms] == [1, 2, 3, 4]
    for i, v in enumerate(s.vms):
        occ, miss = v.occupancy, v.misses
        assert occ.low <= t.occupancy[i] * 1.02, (v.name, occ)
        assert t.occupancy[i] <= occ.high * 1.02 + 64 * 1024, (v.name, occ)
        true_miss = t.bandwidth[i] / 64
        assert miss.low <= true_miss <= miss.high, (v.name, miss, true_miss)
    db, stream = s.vms[0], s.vms[1]
    assert db.occupancy.predicted > 1.4 * db.occupancy.now          # the streaming VM no longer crowds it
    assert db.misses.change_pct < -10
    assert stream.occupancy.predicted == pytest.approx(2 * SOCKET.way_bytes, rel=0.01)
    assert s.occupancy.predicted <= SOCKET.l3_bytes * (1 + 1e-9)
    assert s.converged


def test_noop_plan_changes_nothing(today) -> None:
    p = whatif.predict_cat(today.frames, cat_plan("synth01", 0, {1: FULL, 2: FULL}))
    for v in p.sockets[0].vms:
        assert v.occupancy.predicted == pytest.approx(v.occupancy.now)
        assert v.misses.predicted == pytest.approx(v.misses.now)
        assert v.misses.now == pytest.approx(v.misses.observed, rel=0.02)   # anchored to today


def test_lacking_history_lists_fallbacks_with_reason(today) -> None:
    p = whatif.predict_cat(today.frames, cat_plan("synth01", 0, PLAN_MASKS))
    lacking = {x.domid: x for x in p.lacking_history}
    assert 3 in lacking                                # "small": always at its working set
    assert lacking[3].quality == "fallback" and "no slope visible" in lacking[3].reason
    assert 1 not in lacking and 2 not in lacking


def test_unseen_vm_in_plan_is_noted(today) -> None:
    p = whatif.predict_cat(today.frames, cat_plan("synth01", 0, {1: 0x7fc, 99: 0x3}))
    assert any("domid 99" in n for n in p.notes)
    assert any(x.domid == 99 for x in p.lacking_history)


def test_json_shape(today) -> None:
    j = whatif.predict_cat(today.frames, cat_plan("synth01", 0, PLAN_MASKS)).to_json()
    json.dumps(j)
    assert set(j) == {"plan", "sockets", "hosts", "migrations", "lacking_history", "notes", "unpredicted"}
    s = j["sockets"][0]
    assert {"host", "socket", "l3_bytes", "ways", "bw_capacity_bytes_s", "bw_capacity_source", "totals",
            "vms"} <= set(s)
    v = s["vms"][1]
    assert v["mask"] == {"now": "0x7ff", "predicted": "0x3"}
    assert set(v["occupancy_bytes"]) == {"observed", "now", "predicted", "low", "high", "change_pct"}
    assert v["fit"]["quality"] in ("good", "fair", "low", "fallback")
    assert j["hosts"]["synth01"]["after"]["l3_bytes"] == SOCKET.l3_bytes


# --- migrations ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fleet() -> dict[str, pd.DataFrame]:
    """busy01: db, stream, web (varied history); quiet01: two sockets, socket 0 busy, socket 1 light."""
    a = synth_history(vms=[VMS[0], VMS[1], VMS[3]], steps=150, seed=4, host="busy01", domids=[1, 2, 3],
                      final_masks={})
    web2 = model.Vm("web2", model.Curve(alpha=0.4, ws_bytes=30 * MIB), apki=10, vcpus=4)
    b0 = synth_history(vms=[web2, VMS[1]], steps=150, seed=5, host="quiet01", sock_id=0, domids=[10, 11],
                       final_masks={})
    b1 = synth_history(vms=[VMS[2]], steps=150, seed=6, host="quiet01", sock_id=1, domids=[12],
                       final_masks={}, vary_masks=False)
    return merge(a, b0, b1)


def migration_plan(**kw) -> planfile.PlanFile:
    m = {"name": "stream", "domid": 2, "from": "busy01", "to": "quiet01", **kw}
    return planfile.parse_plan({"migrations": [m]}, source="moves.json")


def test_migration_removes_and_adds_demand(fleet) -> None:
    p = whatif.predict_migrations(fleet, migration_plan())
    assert p.migrations == [{"name": "stream", "domid": 2, "from": "busy01", "to": "quiet01",
                             "from_sockets": [0], "to_socket": 1}]     # socket 1 has the headroom
    src = next(s for s in p.sockets if s.host == "busy01")
    dst = next(s for s in p.sockets if s.host == "quiet01")
    out = next(v for v in src.vms if v.domid == 2)
    came = next(v for v in dst.vms if v.domid == 2)
    assert out.moved == "out" and out.misses.predicted == 0 and out.mask_plan is None
    assert came.moved == "in" and came.mask_now is None and came.mask_plan == FULL
    # a streaming VM misses as much wherever it runs
    assert came.misses.predicted == pytest.approx(out.misses.now, rel=0.1)
    assert src.bandwidth.predicted < src.bandwidth.now - 0.8 * out.bandwidth.now
    assert dst.bandwidth.predicted == pytest.approx(dst.bandwidth.now + came.bandwidth.predicted, rel=0.05)
    # the others on the source get its cache back
    for v in src.vms:
        if v.moved is None:
            assert v.occupancy.predicted > v.occupancy.now
    hosts = p.hosts()
    assert hosts["busy01"]["after"]["vms"] == hosts["busy01"]["before"]["vms"] - 1
    assert hosts["quiet01"]["after"]["vms"] == hosts["quiet01"]["before"]["vms"] + 1
    assert src.bw_capacity_source == "observed-peak" and src.bw_capacity >= src.bandwidth.now * 0.99


def test_migration_truth(fleet) -> None:
    """The source socket after the move is the truth model without the VM."""
    p = whatif.predict_migrations(fleet, migration_plan())
    src = next(s for s in p.sockets if s.host == "busy01")
    t = truth([FULL, FULL], vms=[VMS[0], VMS[3]])
    for v, i in ((src.vms[0], 0), (src.vms[2], 1)):
        assert v.occupancy.low <= t.occupancy[i] * 1.02 and t.occupancy[i] <= v.occupancy.high * 1.02, v
        assert v.misses.low <= t.bandwidth[i] / 64 <= v.misses.high, v


def test_migration_bandwidth_capacity_from_caller(fleet) -> None:
    p = whatif.predict(fleet, migration_plan(), bw_capacity={"quiet01": 50e9})
    dst = next(s for s in p.sockets if s.host == "quiet01")
    assert dst.bw_capacity == 50e9 and dst.bw_capacity_source == "config"


def test_a_vm_not_on_its_source_is_an_error(fleet) -> None:
    with pytest.raises(whatif.PredictionError, match="not among the VMs"):
        whatif.predict_migrations(fleet, migration_plan(domid=42, name="ghost"))


def test_a_destination_without_history_is_named_and_the_source_still_predicted(fleet) -> None:
    p = whatif.predict_migrations(fleet, migration_plan(to="mars"))
    assert p.unpredicted == {"mars": "no samples in the store"}
    assert "mars: not predicted: no samples in the store" in p.notes
    source = migration_plan().migrations[0].source
    assert {s.host for s in p.sockets} == {source}        # the relief of the source is predicted
    assert any(v.moved == "out" for s in p.sockets for v in s.vms)


def test_equilibrium_conserves_and_respects_masks() -> None:
    rng = np.random.default_rng(0)
    n, e = 4, 8
    own = model.mask_matrix([0x7fc, 0x3, 0x7fc, 0x7ff], 11).astype(float)
    cap, miss, ok = whatif.equilibrium(np.log(rng.uniform(1e6, 1e8, (e, n))), rng.uniform(0, 0.8, (e, n)),
                                       np.full((e, n), np.inf), np.zeros((e, n)), own, SOCKET.way_bytes)
    assert ok.all()
    assert np.all(cap.sum(axis=1) <= SOCKET.l3_bytes * (1 + 1e-9))
    assert np.all(cap[:, 1] <= 4 * SOCKET.way_bytes * (1 + 1e-9))   # 0x3 plus its share of ways 0-1 only
    assert np.all(miss > 0)


# --- the command -----------------------------------------------------------------------------

class _Obj:
    def __init__(self, store: Path) -> None:
        self.settings = Settings(store=store)

    def get(self) -> Settings:
        return self.settings


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    s = tmp_path_factory.mktemp("store") / "s"
    r = run("--store", str(s), "collect", "--replay", str(SAMPLES))
    assert r.exit_code == 0, r.stderr
    return s


def invoke(store: Path, *args: str):
    return CliRunner().invoke(command, list(args), obj=_Obj(store))


SKY_PLAN = {"plans": [{"host": "xen-sky01", "socket": 0, "level": 3, "assignments": [
    {"domid": 5, "name": "db-primary", "cbm": "0x7fc"},
    {"domid": 7, "name": "stream-batch-07", "cbm": "0x1"}]}]}


def test_cli_text_on_sample_captures(sample_store: Path, tmp_path: Path) -> None:
    r = invoke(sample_store, "--plan", str(write(tmp_path, SKY_PLAN)))
    assert r.exit_code == 0, r.output
    out = r.output
    assert "xen-sky01 socket 0" in out and "27.5 MiB, 11 ways" in out
    assert "db-primary" in out and "0x7f0 -> 0x7fc" in out and "0x3 -> 0x1" in out
    assert "lacking history" in out and "only 3 usable points" in out
    assert "observed-peak" in out
    assert "total" in out


def test_cli_json_on_sample_captures(sample_store: Path, tmp_path: Path) -> None:
    r = invoke(sample_store, "--plan", str(write(tmp_path, SKY_PLAN)), "--format", "json")
    assert r.exit_code == 0, r.output
    j = json.loads(r.output)
    [s] = j["sockets"]
    assert (s["host"], s["socket"], s["ways"]) == ("xen-sky01", 0, 11)
    vms = {v["name"]: v for v in s["vms"]}
    assert vms["stream-batch-07"]["mask"] == {"now": "0x3", "predicted": "0x1"}
    st = vms["stream-batch-07"]["occupancy_bytes"]
    assert st["predicted"] <= s["l3_bytes"] / 11 * 1.0001 < st["now"]     # confined to one way
    db = vms["db-primary"]["occupancy_bytes"]
    assert db["low"] <= db["predicted"] <= db["high"]
    assert s["totals"]["occupancy_bytes"]["predicted"] <= s["l3_bytes"] * (1 + 1e-9)
    # the samples hold 3 collections: every VM lacks history, and says why
    assert {x["name"] for x in j["lacking_history"]} >= {"db-primary", "stream-batch-07"}
    assert all(x["reason"] for x in j["lacking_history"])


def test_cli_bad_plan(sample_store: Path, tmp_path: Path) -> None:
    bad = {"plans": [{"host": "xen-sky01", "socket": 0, "assignments": [{"domid": 5, "cbm": "0x5"}]}]}
    path = write(tmp_path, bad)
    r = invoke(sample_store, "--plan", str(path))
    assert isinstance(r.exception, ConfigError)
    assert str(path) in str(r.exception) and "$.plans[0].assignments[0].cbm" in str(r.exception)


def test_cli_through_main(sample_store: Path, tmp_path: Path) -> None:
    """Exit codes through the real entry point."""
    r = run("--store", str(sample_store), "whatif", "--plan", str(write(tmp_path, SKY_PLAN)))
    assert r.exit_code == 0, r.stderr
    bad = write(tmp_path, {"plans": [{"host": "xen-sky01", "socket": 0,
                                      "assignments": [{"domid": 5, "cbm": "0xfff"}]}]}, "bad.json")
    r = run("--store", str(sample_store), "whatif", "--plan", str(bad))
    assert r.exit_code == 2 and "bad.json: $.plans[0].assignments[0].cbm" in r.stderr
    r = run("--store", str(tmp_path / "nostore"), "whatif", "--plan", str(write(tmp_path, SKY_PLAN)))
    assert r.exit_code == 3 and "no history store" in r.stderr


def test_cli_takes_the_bandwidth_capacity_from_the_config(sample_store: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[report.hosts."xen-sky01"]\nbandwidth_capacity = 50000000000\n')
    plan = write(tmp_path, SKY_PLAN)
    r = run("--config", str(config), "--store", str(sample_store), "whatif", "--plan", str(plan),
            "--format", "json")
    assert r.exit_code == 0, r.stderr
    [s] = json.loads(r.stdout)["sockets"]
    assert (s["bw_capacity_bytes_s"], s["bw_capacity_source"]) == (50e9, "config")


def test_prediction_is_deterministic(today) -> None:
    plan = cat_plan("synth01", 0, PLAN_MASKS)
    first = whatif.predict_cat(today.frames, plan).to_json()
    assert whatif.predict_cat(today.frames, plan).to_json() == first


def test_cli_since(sample_store: Path, tmp_path: Path) -> None:
    plan = str(write(tmp_path, SKY_PLAN))
    r = invoke(sample_store, "--plan", plan, "--since", "not-a-time")
    assert r.exit_code == 2 and "--since" in r.output
    r = invoke(sample_store, "--plan", plan, "--since", "2026-11-23T09:05:00Z", "--format", "json")
    assert r.exit_code == 0, r.output
    j = json.loads(r.output)
    assert all(v["fit"]["points"] <= 2 for v in j["sockets"][0]["vms"])


def test_cos_budget_note(today) -> None:
    facts = today.frames["facts"].copy()
    facts.loc[facts["fact"] == "l3_cos_max", "value"] = 2.0        # COS 0-2 only
    frames = {**today.frames, "facts": facts}
    p = whatif.predict_cat(frames, cat_plan("synth01", 0, {1: 0x7fc, 2: 0x3, 3: 0x1fc}))
    assert any("no free COS" in n for n in p.notes)
    p = whatif.predict_cat(frames, cat_plan("synth01", 0, {1: 0x7fc, 2: 0x3}))
    assert not any("no free COS" in n for n in p.notes)


def test_cdp_plan_on_sample_captures(sample_store: Path) -> None:
    from rdtadvisor.store import Store

    store = Store(sample_store, create=False)
    history = {t: store.read(t, hosts="xen-bdw-cdp") for t in ("samples", "settings", "facts")}
    plan = planfile.parse_plan({"plans": [{"host": "xen-bdw-cdp", "socket": 0, "assignments": [
        {"domid": 1, "code_cbm": "0x3", "data_cbm": "0xffffc"}]}]}, source="cdp.json")
    p = whatif.predict_cat(history, plan)
    jvm = next(v for v in p.sockets[0].vms if v.domid == 1)
    assert jvm.mask_now == 0xffff0 and jvm.mask_plan == 0xffffc      # the data half is what is modelled
    assert jvm.occupancy.predicted > jvm.occupancy.now


def test_host_without_cat_facts(sample_store: Path, tmp_path: Path) -> None:
    plan = {"plans": [{"host": "xen-legacy45", "socket": 0, "assignments": [{"domid": 1, "cbm": "0x3"}]}]}
    r = invoke(sample_store, "--plan", str(write(tmp_path, plan)))
    assert isinstance(r.exception, ConfigError) and "CBM length unknown" in str(r.exception)
