"""`rdtadvisor calibrate` (issue 5): the sweep's shape, the schedule, its JSON, the CLI, and the
generated scripts run for real with /bin/sh against a stub ``xl`` that applies the masks to a
JSON state (so "the original masks are back" is checked on the state, not on the text)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

from rdtadvisor import frames
from rdtadvisor.advise import calibrate as cal
from rdtadvisor.errors import ConfigError
from rdtadvisor.render.calibration_script import calibration_rollback_script, calibration_script
from rdtadvisor.sim import history, suite
from rdtadvisor.store import Store
from tests.clirun import run

SH = "/bin/sh"
MIB = 2**20
T0 = pd.Timestamp("2026-03-01T00:00:00Z")


# --- a synthetic host's tables -------------------------------------------------------------------

@dataclass
class Dom:
    domid: int
    name: str
    mask: int | tuple[int, int] | None = None      # None: the default (all ways)
    bw: float = 2e9                                # B/s on its socket (0: idle)
    socket: int = 0
    monitored: bool = True


def tables(doms: list[Dom], *, host: str = "xen01", cbm_len: int = 11, cos_max: int = 15, cdp: bool = False,
           xen: str = "4.19.1", n: int = 20, interval: int = 60, sockets: tuple[int, ...] = (0,),
           mbm: bool = True, cat_sockets: tuple[int, ...] | None = None) -> dict[str, pd.DataFrame]:
    """``n`` collections ``interval`` s apart; constant occupancy, so every curve is a fallback."""
    full = (1 << cbm_len) - 1
    cat_sockets = sockets if cat_sockets is None else cat_sockets
    times = [T0 + pd.Timedelta(seconds=interval * i) for i in range(n)]
    samples, settings, facts = [], [], []
    for t in times:
        facts.append(dict(time=t, host=host, socket=None, fact="xen_version", value=None, text=xen))
        for s in sockets:
            if s in cat_sockets:
                for fact, v in (("l3_cache_bytes", 32 * MIB), ("l3_cbm_len", cbm_len),
                                ("l3_cos_max", cos_max), ("l3_cdp", float(cdp)), ("l3_default_cbm", full)):
                    facts.append(dict(time=t, host=host, socket=s, fact=fact, value=v, text=None))
            for d in doms:
                here = d.socket == s
                if d.monitored:
                    samples.append(dict(time=t, host=host, socket=s, domid=d.domid, domain=d.name,
                                        metric="l3_occupancy", reading=0, value=4 * MIB if here else 0,
                                        unit="B"))
                    if mbm:
                        samples.append(dict(time=t, host=host, socket=s, domid=d.domid, domain=d.name,
                                            metric="mem_bw_total", reading=0, value=int(d.bw) if here else 0,
                                            unit="B/s"))
                if s not in cat_sockets:
                    continue
                m = d.mask if (d.mask is not None and here) else full
                code, data = m if isinstance(m, tuple) else (m, m)
                pairs = (("l3_code_cbm", code), ("l3_data_cbm", data)) if cdp else (("l3_cbm", data),)
                for setting, v in pairs:
                    settings.append(dict(time=t, host=host, socket=s, domid=d.domid, domain=d.name,
                                         setting=setting, value=v))
    out = {"samples": pd.DataFrame(samples), "settings": pd.DataFrame(settings), "facts": pd.DataFrame(facts)}
    return {k: frames.validate(k, v) if len(v) else frames.empty(k) for k, v in out.items()}


def merge(*parts: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {k: pd.concat([p[k] for p in parts], ignore_index=True) for k in parts[0]}


def only_host(plan: cal.CalibrationPlan) -> cal.HostCalibration:
    assert len(plan.hosts) == 1
    return plan.hosts[0]


def reasons(h: cal.HostCalibration) -> dict[int | None, str]:
    return {k.domid: k.reason for k in h.skipped}


# --- the sweep's shape ---------------------------------------------------------------------------

def test_levels_halve_the_current_width_down_to_the_floor():
    assert cal.levels(11) == [5, 2, 1]
    assert cal.levels(12) == [6, 3, 1]
    assert cal.levels(20) == [10, 5, 2, 1]
    assert cal.levels(2) == [1]
    assert cal.levels(1) == []
    assert cal.levels(12, min_bits=2) == [6, 3]
    assert cal.levels(16, min_bits=0) == [8, 4, 2, 1]


def test_levels_stay_inside_the_vms_own_run():
    assert cal.sweep_masks(0x7f0) == [(3, 0x70), (1, 0x10)]        # 7 ways from bit 4
    assert cal.sweep_masks(0x7ff) == [(5, 0x1f), (2, 0x3), (1, 0x1)]
    with pytest.raises(ValueError):
        cal.sweep_masks(0x505)


def test_timeline_is_the_simulators_calibration_schedule():
    full = (1 << 11) - 1
    assert cal.timeline([full, 0x7f0], hold_s=180, start_s=300) == [
        (0, 300, 0x1f), (0, 480, 0x3), (0, 660, 0x1), (0, 840, None),
        (1, 840, 0x70), (1, 1020, 0x10), (1, 1200, None)]
    sim = history.calibration_schedule(3, 12, start_step=7, hold=4, step_s=60)
    ours = cal.timeline([(1 << 12) - 1] * 3, hold_s=4 * 60, start_s=7 * 60)
    assert [(i, int(at.total_seconds()), m) for i, at, m in sim] == ours
    assert history.calibration_steps(3, 12, hold=4) == 3 * len(cal.levels(12)) * 4


# --- the schedule ----------------------------------------------------------------------------------

def test_vms_lacking_a_curve_are_swept_by_bandwidth_one_at_a_time_each_level_held():
    doms = [Dom(0, "Domain-0", bw=5e8), Dom(3, "small", bw=3e8), Dom(5, "big", bw=4e9),
            Dom(7, "part", mask=0x7f0, bw=1e9), Dom(9, "sleepy", bw=0), Dom(11, "ghost", monitored=False)]
    h = only_host(cal.plan_calibration(tables(doms), hold=2))
    assert h.interval_s == 60 and h.hold_s == 120                # learnt from the stored collections
    (s,) = h.sockets
    assert [w.name for w in s.sweeps] == ["big", "part", "small"]
    big, part, small = s.sweeps
    assert [(lv.offset_s, lv.ways, lv.mask) for lv in big.levels] == [(0, 5, 0x1f), (120, 2, 0x3),
                                                                      (240, 1, 0x1)]
    assert big.restore_offset_s == 360
    assert big.restore_argv == (("xl", "psr-cat-set", "-s", "0", "5", "0x7ff"),)
    # inside its own partition, starting when the previous VM is restored
    assert [(lv.offset_s, lv.mask) for lv in part.levels] == [(360, 0x70), (480, 0x10)]
    assert part.restore_argv == (("xl", "psr-cat-set", "-s", "0", "7", "0x7f0"),)
    assert small.start_s == 600 and h.duration_s == s.duration_s == 960
    assert all(lv.argv == ("xl", "psr-cat-set", "-s", "0", str(w.domid), hex(lv.mask))
               for w in s.sweeps for lv in w.levels)
    why = reasons(h)
    assert "Domain-0 is swept only when named" in why[0]
    assert why[9].startswith("idle")
    assert "not monitored" in why[11]
    assert big.why.startswith("curve fallback")


def test_sockets_run_concurrently_and_the_host_lasts_as_long_as_the_longest():
    doms = [Dom(1, "a", socket=0), Dom(2, "b", socket=0), Dom(3, "c", socket=1)]
    h = only_host(cal.plan_calibration(tables(doms, sockets=(0, 1)), hold=1))
    by_socket = {s.socket: [w.name for w in s.sweeps] for s in h.sockets}
    assert by_socket == {0: ["a", "b"], 1: ["c"]}                   # each VM only where it runs
    assert [w.start_s for w in h.sockets[1].sweeps] == [0]
    assert h.duration_s == h.sockets[0].duration_s == 2 * 3 * 60
    assert "idle" in next(k.reason for k in h.skipped if k.socket == 1 and k.domid == 1)


def test_the_interval_given_wins_and_an_unknown_one_names_the_host():
    doms = [Dom(1, "a")]
    h = only_host(cal.plan_calibration(tables(doms, interval=300), hold=3, interval_s=30))
    assert h.interval_s == 30 and h.hold_s == 90
    with pytest.raises(ConfigError, match=r"xen07: fewer than two stored collections.*--interval"):
        cal.plan_calibration(tables(doms, host="xen07", n=1))
    assert only_host(cal.plan_calibration(tables(doms, host="xen07", n=1), interval_s=60)).sweeps


def test_the_time_box_leaves_out_the_vms_that_would_end_after_it():
    doms = [Dom(1, "a", bw=3e9), Dom(2, "b", bw=2e9), Dom(3, "c", bw=1e9, mask=0x3)]
    # 10 x 60 s per level: a and b need 30 min each, c (2 ways: one level) 10 min
    h = only_host(cal.plan_calibration(tables(doms), duration_s=45 * 60))
    assert [w.name for w in h.sweeps] == ["a", "c"]
    assert reasons(h)[2] == "beyond the time box (needs 30 min)"
    assert h.duration_s == 40 * 60 <= h.time_box_s
    h = only_host(cal.plan_calibration(tables(doms), duration_s=5 * 60))
    assert not h.sweeps and not h.sockets
    assert "no VM's sweep fits the time box of 5 min" in reasons(h)[None]


def test_a_socket_whose_cos_are_all_taken_is_skipped_with_the_reason():
    # budget 2, used 2 by two shared settings: a level would need a third COS
    doms = [Dom(1, "a", mask=0x7), Dom(2, "b", mask=0x7), Dom(3, "c", mask=0x78), Dom(4, "d", mask=0x78)]
    h = only_host(cal.plan_calibration(tables(doms, cos_max=2)))
    assert not h.sockets
    (k,) = h.skipped
    assert k.socket == 0 and k.domid is None
    assert k.reason.startswith("no free COS: today's 2 distinct settings use all 2 COS")
    # one more COS and the sweep fits; or a domain alone in its COS (Xen re-uses it in place)
    assert only_host(cal.plan_calibration(tables(doms, cos_max=3))).sweeps
    alone = [*doms, Dom(5, "e", mask=0x780, bw=1e8)]
    h = only_host(cal.plan_calibration(tables(alone, cos_max=3)))
    assert [w.name for w in h.sweeps] == ["e"]
    assert all(reasons(h)[d].startswith("no free COS") for d in (1, 2, 3, 4))


def test_cdp_sets_both_halves_together_and_restores_each_half_as_it_was():
    doms = [Dom(5, "jvm", mask=(0xf00, 0x0ff)), Dom(6, "web", mask=(0xff0, 0xff0))]
    h = only_host(cal.plan_calibration(tables(doms, cdp=True, cbm_len=12, cos_max=7), hold=1))
    jvm, web = h.sweeps
    assert [lv.argv for lv in jvm.levels] == [("xl", "psr-cat-set", "-s", "0", "5", m)
                                              for m in ("0xf", "0x3", "0x1")]
    assert jvm.restore_argv == (("xl", "psr-cat-set", "-s", "0", "-c", "5", "0xf00"),
                                ("xl", "psr-cat-set", "-s", "0", "-d", "5", "0xff"))
    assert [lv.mask for lv in web.levels] == [0xf0, 0x30, 0x10]      # inside the data run, from bit 4
    assert web.restore_argv == (("xl", "psr-cat-set", "-s", "0", "6", "0xff0"),)   # equal halves: one set
    assert jvm.to_dict()["original"] == {"code_cbm": "0xf00", "data_cbm": "0xff"}
    # Xen 4.7-4.9 spells it psr-cat-cbm-set
    old = only_host(cal.plan_calibration(tables(doms, cdp=True, cbm_len=12, cos_max=7, xen="4.9.2")))
    assert old.sweeps[0].levels[0].argv[:2] == ("xl", "psr-cat-cbm-set")
    assert old.sweeps[0].restore_argv[0] == ("xl", "psr-cat-cbm-set", "-s", "0", "-c", "5", "0xf00")


def test_named_vms_are_swept_in_the_order_given_domain0_included():
    doms = [Dom(0, "Domain-0", bw=5e8), Dom(1, "a", bw=3e9), Dom(2, "b", bw=1e9), Dom(3, "quiet", bw=0)]
    h = only_host(cal.plan_calibration(tables(doms), vms=["b", "Domain-0", "quiet"]))
    assert [w.name for w in h.sweeps] == ["b", "Domain-0"]
    assert h.sweeps[0].why.startswith("named with --vm")
    assert reasons(h)[3].startswith("idle")
    assert 1 not in reasons(h)                                       # not named: not mentioned
    with pytest.raises(ConfigError, match="no domain named 'nope'"):
        cal.plan_calibration(tables(doms), vms=["nope"])


def test_sockets_without_cat_or_mbm_and_hosts_without_cat_are_skipped():
    h = only_host(cal.plan_calibration(tables([Dom(1, "a")], sockets=(0, 1), cat_sockets=(1,))))
    assert reasons(h)[None].startswith("no L3 CAT facts")
    assert [s.socket for s in h.sockets] == [] and "idle" in reasons(h)[1]
    h = only_host(cal.plan_calibration(tables([Dom(1, "a")], mbm=False)))
    assert not h.sockets and reasons(h)[None].startswith("no MBM bandwidth samples")
    h = only_host(cal.plan_calibration(tables([Dom(1, "a")], xen="4.5.5")))
    assert not h.sockets and "has no CAT" in reasons(h)[None]
    named = only_host(cal.plan_calibration(tables([Dom(1, "a")], xen="4.5.5"), vms=["a"]))
    assert "has no CAT" in reasons(named)[None]           # found there, skipped with the reason
    (k,) = h.skipped
    assert k.socket is None


def test_a_one_way_vm_has_nothing_narrower_and_bad_arguments_are_refused():
    h = only_host(cal.plan_calibration(tables([Dom(1, "a", mask=0x8)])))
    assert "has 1 way(s): nothing narrower" in reasons(h)[1]
    with pytest.raises(ConfigError, match="hold"):
        cal.plan_calibration(tables([Dom(1, "a")]), hold=0)
    with pytest.raises(ConfigError, match="without history: xen99"):
        cal.plan_calibration(tables([Dom(1, "a")]), hosts=["xen99"])


def test_json_has_the_contract_shape():
    doms = [Dom(1, "a", bw=3e9), Dom(2, "b", mask=0x8), Dom(4, "c", mask=(0x3, 0xc))]
    doc = json.loads(json.dumps(cal.plan_calibration(
        merge(tables(doms[:2]), tables(doms[2:], host="xen02", cdp=True, cbm_len=4))).to_dict()))
    assert [h["host"] for h in doc["hosts"]] == ["xen01", "xen02"]
    h = doc["hosts"][0]
    assert {"host", "interval_s", "duration_s", "sockets", "skipped"} <= set(h)
    (s,) = h["sockets"]
    assert s["socket"] == 0
    (vm,) = s["vms"]
    assert {"domid", "name", "why", "levels", "restore_argv"} <= set(vm)
    assert vm["levels"][0] == {"offset_s": 0, "ways": 5, "mask": "0x1f",
                               "argv": ["xl", "psr-cat-set", "-s", "0", "1", "0x1f"]}
    assert vm["restore_argv"] == [["xl", "psr-cat-set", "-s", "0", "1", "0x7ff"]]
    assert {"socket": 0, "domid": 2, "name": "b", "reason": h["skipped"][0]["reason"]} in h["skipped"]
    assert h["duration_s"] == 3 * 600
    cdp_vm = doc["hosts"][1]["sockets"][0]["vms"][0]
    assert cdp_vm["levels"][0]["mask"] == "0x4" and len(cdp_vm["restore_argv"]) == 2


# --- the CLI on a simulated host -----------------------------------------------------------------

@cache
def simulated(mode: str) -> dict[str, pd.DataFrame]:
    sc = next(s for s in suite.scenarios() if s.name == "skx-stream-neighbour")
    return history.observe(sc, mode, seed=sc.seed, hours=2)


@pytest.fixture
def sim_store(tmp_path: Path) -> str:
    Store(tmp_path / "s").append(simulated("default"))
    return str(tmp_path / "s")


def test_cli_text_json_and_scripts_on_a_simulated_host(sim_store, tmp_path):
    r = run("--store", sim_store, "calibrate", "--duration", "2h")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("skx-stream-neighbour: 4 VM sweep(s), 2:00:00 of the 2:00:00 time box; "
                               "each level held 10 x 60 s = 600 s")
    table = [x.split() for x in lines if x.strip()[:1].isdigit()]
    assert [row[1] for row in table] == ["stream", "db2", "db1", "db3"]     # by bandwidth
    assert table[0][2:5] == ["5,", "2,", "1"]
    assert "skipped socket 0 web (5): beyond the time box (needs 30 min)" in r.stdout
    doc = json.loads(run("--store", sim_store, "calibrate", "--duration", "90m", "--hold", "5",
                         "--format", "json").stdout)
    h = doc["hosts"][0]
    assert h["interval_s"] == 60 and h["duration_s"] == 5 * 15 * 60
    out = tmp_path / "sweep.sh"
    r = run("--store", sim_store, "calibrate", "--vm", "db1", "--interval", "2m", "--script", str(out))
    assert r.exit_code == 0, r.stderr
    back = tmp_path / "sweep.rollback.sh"
    assert f"wrote {out} and {back}" in r.stderr
    for path in (out, back):
        assert os.stat(path).st_mode & 0o777 == 0o755
        assert subprocess.run([SH, "-n", str(path)], capture_output=True).returncode == 0
    text = out.read_text()
    assert text.startswith("#!/bin/sh\n") and "\nset -eu\n" in text and "sweep.rollback.sh" in text
    assert "expect_domain 2 db1" in text and "pause 1200" in text


def test_cli_writes_one_script_pair_per_host_and_groups_skipped_domains(tmp_path):
    doms = [Dom(1, "a", socket=0), Dom(2, "b", socket=0), Dom(3, "c", socket=1)]
    Store(tmp_path / "s").append(merge(tables(doms, sockets=(0, 1)), tables(doms[:1], host="xen02")))
    out = tmp_path / "sweep.sh"
    r = run("--store", str(tmp_path / "s"), "calibrate", "--hold", "1", "--script", str(out))
    assert r.exit_code == 0, r.stderr
    assert "  skipped socket 1 a (1), b (2): idle (0.00 MB/s)" in r.stdout     # one line for both
    for host in ("xen01", "xen02"):
        for name in (f"sweep.{host}.sh", f"sweep.{host}.rollback.sh"):
            assert subprocess.run([SH, "-n", str(tmp_path / name)], capture_output=True).returncode == 0
    assert "expect_domain 3 c" in (tmp_path / "sweep.xen01.sh").read_text()
    assert "expect_domain 3 c" not in (tmp_path / "sweep.xen02.sh").read_text()
    assert not out.exists()


def test_good_curves_are_not_swept_again():
    h = only_host(cal.plan_calibration(simulated("calibration")))
    assert [w.name for w in h.sweeps] == ["db3"]                   # fair
    assert {d for d, why in reasons(h).items() if why == "its curve is already good"} == {1, 2, 3}


@pytest.mark.parametrize("args, message", [
    (["--duration", "soon"], "--duration 'soon': not a duration"),
    (["--interval", "-5"], "must be positive"),
    (["--host", "nowhere"], "host(s) not in the store: nowhere"),
    (["--vm", "nobody"], "no domain named 'nobody'"),
])
def test_cli_errors_are_one_line_and_exit_2(sim_store, args, message):
    r = run("--store", sim_store, "calibrate", *args)
    assert r.exit_code == 2 and message in r.stderr
    assert "Traceback" not in r.stderr and sum(message in x for x in r.stderr.splitlines()) == 1


# --- the scripts, run for real ---------------------------------------------------------------------

STUB_XL = textwrap.dedent("""\
    import json, os, sys
    args = sys.argv[1:]
    with open(os.environ["XL_LOG"], "a") as f:
        f.write(json.dumps(args) + "\\n")
    path = os.environ["XL_STATE"]
    st = json.load(open(path))
    if args[0] == "domname":
        name = st["names"].get(args[1])
        if name is None:
            sys.stderr.write("Can't get domain name of domain id '%s'\\n" % args[1])
            sys.exit(1)
        sys.stdout.write(name + "\\n")
        sys.exit(0)
    assert args[0] in ("psr-cat-set", "psr-cat-cbm-set"), args
    if " ".join(args) in st["fail"]:
        sys.stderr.write("libxl: error: L3 CAT: Invalid input or some internal values are not expected\\n")
        sys.exit(253)
    rest, sock, half = args[1:], None, None
    while rest[0].startswith("-"):
        if rest[0] == "-s":
            sock, rest = rest[1], rest[2:]
        else:
            half, rest = rest[0], rest[1:]
    dom, mask = rest
    code, data = st["masks"][sock + ":" + dom]
    m = int(mask, 16)
    st["masks"][sock + ":" + dom] = [m, data] if half == "-c" else [code, m] if half == "-d" else [m, m]
    json.dump(st, open(path, "w"))
""")


@pytest.fixture
def host_sh(tmp_path: Path):
    """(setup(doms, sockets), run(text) -> CompletedProcess, start(text) -> Popen, state(), log())."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "xl").write_text(f"#!{sys.executable}\n" + STUB_XL)
    (bin_dir / "xl").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "XL_LOG": str(tmp_path / "log"),
           "XL_STATE": str(tmp_path / "state.json")}

    def setup(doms: list[Dom], sockets: tuple[int, ...], cbm_len: int, fail: tuple[str, ...] = ()) -> None:
        full = (1 << cbm_len) - 1
        masks = {}
        for s in sockets:
            for d in doms:
                m = d.mask if (d.mask is not None and d.socket == s) else full
                masks[f"{s}:{d.domid}"] = list(m) if isinstance(m, tuple) else [m, m]
        (tmp_path / "state.json").write_text(json.dumps({"names": {str(d.domid): d.name for d in doms},
                                                         "masks": masks, "fail": list(fail)}))
        (tmp_path / "log").write_text("")

    def write(text: str, name: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    def run_sh(text: str, name: str = "run.sh") -> subprocess.CompletedProcess:
        return subprocess.run([SH, str(write(text, name))], env=env, capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)

    def start(text: str) -> subprocess.Popen:
        return subprocess.Popen([SH, str(write(text, "run.sh"))], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=tmp_path)

    def state() -> dict[str, list[int]]:
        return json.loads((tmp_path / "state.json").read_text())["masks"]

    def log() -> list[list[str]]:
        return [json.loads(x) for x in (tmp_path / "log").read_text().splitlines()]

    return setup, run_sh, start, state, log


# two sockets, CDP; b's code and data differ and its data run (2 ways) starts at bit 2: cbm_len 4,
# so a and c have levels of 2 and 1 ways, b one level of 1 way
SCRIPT_DOMS = [Dom(1, "a", bw=3e9, socket=0), Dom(2, "b", mask=(0x3, 0xc), bw=2e9, socket=0),
               Dom(3, "c", bw=1e9, socket=1)]


def script_host(hold: int = 1, doms: list[Dom] = SCRIPT_DOMS) -> cal.HostCalibration:
    return only_host(cal.plan_calibration(tables(doms, sockets=(0, 1), cdp=True, cbm_len=4, cos_max=3),
                                          hold=hold, interval_s=1))


def test_the_script_runs_the_merged_timeline_and_leaves_the_original_masks(host_sh):
    setup, run_sh, _start, state, log = host_sh
    h = script_host()
    text, undo = calibration_script(h), calibration_rollback_script(h)
    for t in (text, undo):
        assert t.startswith("#!/bin/sh\n") and "\nset -eu\n" in t
        assert subprocess.run([SH, "-n"], input=t, text=True, capture_output=True).returncode == 0
    setup(SCRIPT_DOMS, (0, 1), 4)
    before = state()
    r = run_sh(text)
    assert r.returncode == 0, r.stderr
    calls = [" ".join(c) for c in log()]
    assert calls == [
        "domname 1", "domname 2", "domname 3",
        "psr-cat-set -s 0 1 0x3", "psr-cat-set -s 1 3 0x3",                  # t=0: both sockets start
        "psr-cat-set -s 0 1 0x1", "psr-cat-set -s 1 3 0x1",                  # t=1
        "psr-cat-set -s 0 1 0xf", "psr-cat-set -s 1 3 0xf",                  # t=2: restores first...
        "psr-cat-set -s 0 2 0x4",                                            # ...then b, in its data run
        "psr-cat-set -s 0 -c 2 0x3", "psr-cat-set -s 0 -d 2 0xc"]            # t=3: each half as it was
    assert state() == before
    stamps = [x for x in r.stderr.splitlines() if " rdtadvisor: socket " in x]
    assert len(stamps) == 8 and all(x[:4].isdigit() and x[10] == "T" and x[19] == "Z" for x in stamps)
    # the standalone rollback restores every swept domain (a no-op now) after checking its id
    r = run_sh(undo, "undo.sh")
    assert r.returncode == 0, r.stderr
    assert state() == before


def test_sigterm_in_the_middle_of_a_level_restores_the_masks(host_sh):
    setup, _run_sh, start, state, log = host_sh
    setup(SCRIPT_DOMS, (0, 1), 4)
    before = state()
    proc = start(calibration_script(script_host(hold=30)))       # 30 s levels: the signal lands in a pause
    try:
        for _ in range(400):
            if sum(c[0] == "psr-cat-set" for c in log()) == 2 or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert [c[0] for c in log()][-2:] == ["psr-cat-set", "psr-cat-set"]
        time.sleep(0.3)                                           # both set: now in `pause 30`
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143
    calls = [" ".join(c) for c in log()]
    assert calls[-4:] == ["psr-cat-set -s 0 1 0x3", "psr-cat-set -s 1 3 0x3",
                          "psr-cat-set -s 0 1 0xf", "psr-cat-set -s 1 3 0xf"]   # only the narrowed ones
    assert state() == before
    assert "restoring socket 0 domid 1" in err and "could not restore" not in err


def test_a_failing_restore_is_reported_and_the_others_still_run(host_sh):
    setup, run_sh, _start, state, log = host_sh
    setup(SCRIPT_DOMS, (0, 1), 4, fail=("psr-cat-set -s 0 1 0xf",))
    r = run_sh(calibration_script(script_host()))
    # set -e stops the sweep at the failed restore; the rollback retries it, reports it, and
    # still restores the other narrowed domain
    assert r.returncode == 253
    assert "could not restore socket 0 domid 1: xl psr-cat-set -s 0 1 0xf" in r.stderr
    calls = [" ".join(c) for c in log()]
    assert calls[-3:] == ["psr-cat-set -s 0 1 0xf", "psr-cat-set -s 0 1 0xf", "psr-cat-set -s 1 3 0xf"]
    assert state()["1:3"] == [0xf, 0xf] and state()["0:1"] == [0x1, 0x1]


def test_the_rollback_script_skips_a_domain_whose_id_now_names_another(host_sh):
    setup, run_sh, _start, _state, log = host_sh
    h = script_host()
    setup([Dom(1, "someone-else"), *SCRIPT_DOMS[1:]], (0, 1), 4)
    r = run_sh(calibration_rollback_script(h), "undo.sh")
    assert r.returncode == 1
    assert "socket 0 domid 1: the id is gone or names another domain now" in r.stderr
    assert not any(c[0] == "psr-cat-set" and c[-2] == "1" for c in log())
    assert {" ".join(c) for c in log() if c[0] == "psr-cat-set"} == {
        "psr-cat-set -s 0 -c 2 0x3", "psr-cat-set -s 0 -d 2 0xc", "psr-cat-set -s 1 3 0xf"}


def test_hostile_names_never_reach_a_command_line(host_sh, tmp_path):
    setup, run_sh, _start, state, _log = host_sh
    canary = tmp_path / "pwned"
    nasty = [f"w'; touch {canary}; '", f"$(touch {canary})", f"x\n touch {canary}\n# ", f"`touch {canary}`"]
    doms = [Dom(i + 1, name, bw=(4 - i) * 1e9) for i, name in enumerate(nasty)]
    h = only_host(cal.plan_calibration(tables(doms, cbm_len=2), hold=1, interval_s=1))
    assert len(h.sweeps) == 4
    setup(doms, (0,), 2)
    for text, name in ((calibration_script(h), "run.sh"), (calibration_rollback_script(h), "undo.sh")):
        assert subprocess.run([SH, "-n"], input=text, text=True, capture_output=True).returncode == 0
        for line in text.splitlines():
            for bad in nasty:
                if bad in line and not line.lstrip().startswith("#"):
                    # else only as the single-quoted word of a domain check
                    check = line.removeprefix("if ").removesuffix("; then")
                    assert shlex.split(check)[0] in ("expect_domain", "same_domain"), line
                    assert shlex.split(check)[2] == bad, line
        assert all(not line.lstrip().startswith("touch") for line in text.splitlines())
        assert "name has control characters" in text
        r = run_sh(text, name)
        assert r.returncode == 0, r.stderr
    assert not canary.exists()
    assert state() == {f"0:{d.domid}": [3, 3] for d in doms}
