"""`rdtadvisor calibrate`: the sweep's shape, the schedule, its JSON, the CLI, and the
generated scripts run for real with /bin/sh against a stub ``xl`` that applies the masks to a
JSON state (so "the original masks are back" is checked on the state, not on the text)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

from rdtadvisor.advise import calibrate as cal
from rdtadvisor.advise.cat import advise_cat
from rdtadvisor.cache import cbm
from rdtadvisor.cli.output import host_file_part
from rdtadvisor.core.errors import ConfigError
from rdtadvisor.render.calibration_script import calibration_rollback_script, calibration_script
from rdtadvisor.sim import history, suite
from rdtadvisor.store import Store, frames
from tests import cat_xl
from tests.clirun import run
from tests.test_plan_script import apply_argv

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


def test_narrowing_timeline_sweeps_each_vm_inside_its_run_then_restores_it():
    full = (1 << 11) - 1
    assert cal.timeline([full, 0x7f0], hold_s=180, start_s=300) == [
        (0, 300, 0x1f), (0, 480, 0x3), (0, 660, 0x1), (0, 840, None),
        (1, 840, 0x70), (1, 1020, 0x10), (1, 1200, None)]


def test_private_timeline_gives_the_swept_vm_the_top_ways_and_fences_the_others_low():
    plan = cal.private_timeline(3, 11, hold_s=180, start_s=300, swept=[2, 0])
    # 2 VMs x 4 levels (9, 5, 2, 1 ways), then one final restore
    assert [at for at, _l in plan] == [300 + 180 * i for i in range(9)]

    def fence(k: int) -> int:
        return (1 << (11 - k)) - 1

    def top(k: int) -> int:
        return ((1 << k) - 1) << (11 - k)

    expected = ([[fence(k), fence(k), top(k)] for k in (9, 5, 2, 1)]
                + [[top(k), fence(k), fence(k)] for k in (9, 5, 2, 1)])
    assert [layout for _at, layout in plan[:-1]] == expected
    assert plan[-1][1] == [None, None, None]                       # everyone back at the end
    for _at, layout in plan[:-1]:
        (swept,) = [m for m in layout if m >> 10 & 1]              # the one holding the top way
        assert swept | layout[1] == (1 << 11) - 1 and swept & layout[1] == 0
    assert cal.private_timeline(2, 11, hold_s=60) == cal.private_timeline(2, 11, hold_s=60, swept=[0, 1])
    assert cal.private_timeline(2, 11, hold_s=60, swept=[]) == []


def test_private_levels_start_at_three_quarters_of_the_ways():
    # a knee or plateau above half the L3 is seen only from a level wider than half
    assert cal.private_levels(11) == [9, 5, 2, 1]
    assert cal.private_levels(20) == [15, 10, 5, 2, 1]
    assert cal.private_levels(12) == [9, 6, 3, 1]
    assert cal.private_levels(7) == [3, 1]                         # tiny CBMs: halving only


def test_private_levels_keep_the_fence_at_least_min_bits_wide():
    assert cal.private_levels(11, min_bits=3) == [8, 5]            # the wide level shrinks to fit
    assert cal.private_levels(20, min_bits=2) == [15, 10, 5, 2]
    assert cal.private_levels(4, min_bits=2) == [2]
    assert cal.private_levels(3, min_bits=2) == []                 # levels(3, 2) is empty already
    assert cal.private_levels(2) == [1]                            # 1 way each side
    for ways in range(2, 33):
        for min_bits in (1, 2, 3):
            for k in cal.private_levels(ways, min_bits):
                assert k >= min_bits and ways - k >= min_bits
            plan = cal.private_timeline(4, ways, hold_s=1, min_bits=min_bits)
            for _at, layout in plan[:-1]:
                assert all(m is not None and cbm.is_valid(m, ways, min_bits) for m in layout)


def test_the_simulators_calibration_schedule_is_the_private_timeline():
    sim = history.calibration_schedule(3, 12, start_step=7, hold=4, step_s=60, swept=range(2))
    ours = cal.private_timeline(3, 12, hold_s=4 * 60, start_s=7 * 60, swept=[0, 1])
    assert [(int(at.total_seconds()), layout) for at, layout in sim] == ours
    assert history.calibration_steps(2, 12, hold=4) == 2 * len(cal.private_levels(12)) * 4
    # the simulated host: every domain (the idle Domain-0 too) follows the timeline
    sc = next(s for s in suite.scenarios() if s.name == "skx-stream-neighbour")
    host = history.host_spec(sc, "calibration", seed=0)
    W = sc.socket.ways
    allowed = ({(1 << (W - k)) - 1 for k in cal.private_levels(W)}
               | {((1 << k) - 1) << (W - k) for k in cal.private_levels(W)})
    assert {v.name for v in host.vms} == {v.name for v in sc.vms} | {"Domain-0"}
    for v in host.vms:
        masks = [c.cbm for c in v.mask_changes]
        assert masks[-1] is None and set(masks[:-1]) <= allowed
        assert len({c.at for c in v.mask_changes}) == len(masks)


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
    assert all(lv.argv == (("xl", "psr-cat-set", "-s", "0", str(w.domid), hex(lv.mask)),) and lv.fence is None
               for w in s.sweeps for lv in w.levels)
    # "part" has a partition of its own: no fencing, each VM narrowed inside its run
    assert s.design == "narrow" and s.design_reason.startswith("partitioned today (1 domain(s)")
    assert [t.domid for t in s.touched] == [5, 7, 3]                 # only the swept VMs
    why = reasons(h)
    assert "Domain-0 is swept only when named" in why[0]
    assert why[9].startswith("idle")
    assert "not monitored" in why[11]
    assert big.why.startswith("curve fallback")


def test_an_all_default_socket_gets_a_private_sweep_every_other_domain_fenced():
    doms = [Dom(0, "Domain-0", bw=5e8), Dom(3, "small", bw=3e8), Dom(5, "big", bw=4e9),
            Dom(9, "sleepy", bw=0), Dom(11, "ghost", monitored=False)]
    h = only_host(cal.plan_calibration(tables(doms), hold=2))
    (s,) = h.sockets
    assert s.design == "private" and "every domain is at the default mask today" in s.design_reason
    assert [w.name for w in s.sweeps] == ["big", "small"]          # same choice and order as narrowing
    big, small = s.sweeps
    assert [(lv.offset_s, lv.ways, lv.mask, lv.fence) for lv in big.levels] == [
        (0, 9, 0x7fc, 0x3), (120, 5, 0x7c0, 0x3f), (240, 2, 0x600, 0x1ff), (360, 1, 0x400, 0x3ff)]
    # one VM's last level goes straight to the next one's first; one final restore of everyone
    assert big.restore_offset_s == small.start_s == 480 and big.restore_argv == ()
    assert small.restore_offset_s == h.duration_s == 960
    xl = ("xl", "psr-cat-set", "-s", "0")
    first = big.levels[0]
    fence = [(*xl, str(d), "0x3") for d in (0, 3, 9, 11)]
    assert sorted(first.argv) == sorted([(*xl, "5", "0x7fc"), *fence])
    assert set(small.levels[0].domids) == {0, 3, 5, 9, 11}         # big joins the fence
    assert sorted(small.restore_argv) == sorted((*xl, str(d), "0x7ff") for d in (0, 3, 5, 9, 11))
    # every domain is touched, and each is restored by its own reset
    assert {t.domid: t.restore_argv for t in s.touched} == {d: ((*xl, str(d), "0x7ff"),)
                                                            for d in (0, 3, 5, 9, 11)}
    doc = json.loads(json.dumps(h.to_dict()))["sockets"][0]
    assert doc["design"] == "private" and len(doc["touched"]) == 5
    assert doc["vms"][0]["levels"][0]["fence"] == "0x3"
    assert sorted(map(tuple, doc["vms"][0]["levels"][0]["argv"])) == sorted(first.argv)


def test_a_partitioned_socket_or_an_unreadable_mask_or_one_cos_falls_back_to_narrowing():
    doms = [Dom(1, "a", bw=3e9), Dom(2, "b", bw=2e9)]
    assert only_host(cal.plan_calibration(tables(doms))).sockets[0].design == "private"
    (s,) = only_host(cal.plan_calibration(tables([*doms, Dom(3, "c", mask=0x7f0, bw=0)]))).sockets
    assert s.design == "narrow" and "partitioned today" in s.design_reason and "domid 3" in s.design_reason
    assert all(lv.fence is None and len(lv.argv) == 1 for w in s.sweeps for lv in w.levels)
    # xl printed "error" for c's mask: c cannot be fenced
    t = tables([*doms, Dom(3, "c", bw=0)])
    t["settings"].loc[t["settings"]["domid"] == 3, "value"] = None
    (s,) = only_host(cal.plan_calibration(t)).sockets
    assert s.design == "narrow" and "could not read the mask of domid(s) 3" in s.design_reason
    assert 3 not in {d for w in s.sweeps for lv in w.levels for d in lv.domids}
    (s,) = only_host(cal.plan_calibration(tables(doms, cos_max=1))).sockets
    assert s.design == "narrow" and s.design_reason.startswith("cos_max is 1: a private level needs 2 COS")


def replay(h: cal.HostCalibration, socket: int, start: dict[int, tuple[int, int]], *, cbm_len: int,
           budget: int) -> list[dict[int, tuple[int, int]]]:
    """Run a socket's commands in time order through a model of Xen's rules (`apply_argv`, which checks
    each mask and the COS count after every single command); returns the state after each step."""
    (s,) = [x for x in h.sockets if x.socket == socket]
    events = sorted([(lv.offset_s, 1, lv.argv) for w in s.sweeps for lv in w.levels]
                    + [(w.restore_offset_s, 0, w.restore_argv) for w in s.sweeps if w.restore_argv])
    state, out = dict(start), []
    for _at, _kind, argv in events:
        for a in argv:
            assert a[3] == str(socket)
            apply_argv(state, (*a[:3], "0", *a[4:]), cbm_len=cbm_len, cdp=s.cdp, budget=budget,
                       version=h.xen_version or (4, 19))
        out.append(dict(state))
    return out


@pytest.mark.parametrize("cdp", [False, True])
@pytest.mark.parametrize("budget", [2, 3, 15])
def test_every_state_of_a_private_sweep_fits_the_cos_budget_and_ends_where_it_began(cdp, budget):
    doms = [Dom(0, "Domain-0", bw=5e8), *(Dom(d, f"vm{d}", bw=d * 1e9) for d in range(1, 6))]
    h = only_host(cal.plan_calibration(tables(doms, cos_max=budget, cdp=cdp), hold=1, vms=["vm2", "vm5"]))
    (s,) = h.sockets
    assert s.design == "private" and [w.name for w in s.sweeps] == ["vm2", "vm5"]
    full = (0x7ff, 0x7ff)
    states = replay(h, 0, {d.domid: full for d in doms}, cbm_len=11, budget=budget)
    levels = [(w.domid, lv) for w in s.sweeps for lv in w.levels]
    assert len(states) == len(levels) + 1
    for state, (vm, lv) in zip(states, levels, strict=False):    # each level's layout, exactly
        assert state == {d: (lv.mask, lv.mask) if d == vm else (lv.fence, lv.fence) for d in state}
    assert states[-1] == {d.domid: full for d in doms}


def test_the_narrowing_fallback_fits_the_budget_and_restores_cdp_halves_exactly():
    doms = [Dom(5, "jvm", mask=(0xf00, 0x0ff)), Dom(6, "web", mask=(0xff0, 0xff0)), Dom(7, "idle", bw=0)]
    h = only_host(cal.plan_calibration(tables(doms, cdp=True, cbm_len=12, cos_max=3), hold=1))
    assert h.sockets[0].design == "narrow"
    start = {5: (0xf00, 0x0ff), 6: (0xff0, 0xff0), 7: (0xfff, 0xfff)}
    states = replay(h, 0, start, cbm_len=12, budget=3)
    assert states[-1] == start


def test_sockets_run_concurrently_and_the_host_lasts_as_long_as_the_longest():
    doms = [Dom(1, "a", socket=0), Dom(2, "b", socket=0), Dom(3, "c", socket=1)]
    h = only_host(cal.plan_calibration(tables(doms, sockets=(0, 1)), hold=1))
    by_socket = {s.socket: [w.name for w in s.sweeps] for s in h.sockets}
    assert by_socket == {0: ["a", "b"], 1: ["c"]}                   # each VM only where it runs
    assert [w.start_s for w in h.sockets[1].sweeps] == [0]
    assert h.duration_s == h.sockets[0].duration_s == 2 * 4 * 60   # 2 VMs x 4 levels (9, 5, 2, 1 ways)
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
    assert [lv.argv for lv in jvm.levels] == [(("xl", "psr-cat-set", "-s", "0", "5", m),)
                                              for m in ("0xf", "0x3", "0x1")]
    assert jvm.restore_argv == (("xl", "psr-cat-set", "-s", "0", "-c", "5", "0xf00"),
                                ("xl", "psr-cat-set", "-s", "0", "-d", "5", "0xff"))
    assert [lv.mask for lv in web.levels] == [0xf0, 0x30, 0x10]      # inside the data run, from bit 4
    assert web.restore_argv == (("xl", "psr-cat-set", "-s", "0", "6", "0xff0"),)   # equal halves: one set
    assert jvm.to_dict()["original"] == {"code_cbm": "0xf00", "data_cbm": "0xff"}
    # Xen 4.7-4.9 spells it psr-cat-cbm-set
    old = only_host(cal.plan_calibration(tables(doms, cdp=True, cbm_len=12, cos_max=7, xen="4.9.2")))
    assert old.sweeps[0].levels[0].argv[0][:2] == ("xl", "psr-cat-cbm-set")
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


def test_sockets_without_cat_or_monitoring_and_hosts_without_cat_are_skipped():
    h = only_host(cal.plan_calibration(tables([Dom(1, "a")], sockets=(0, 1), cat_sockets=(1,))))
    assert reasons(h)[None].startswith("no L3 CAT facts")
    assert [s.socket for s in h.sockets] == [] and "idle" in reasons(h)[1]
    h = only_host(cal.plan_calibration(tables([Dom(1, "a", monitored=False)])))
    assert not h.sockets and reasons(h)[None].startswith("no CMT or MBM samples")
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
    assert vm["levels"][0] == {"offset_s": 0, "ways": 5, "mask": "0x1f", "fence": None,
                               "argv": [["xl", "psr-cat-set", "-s", "0", "1", "0x1f"]]}
    assert vm["restore_argv"] == [["xl", "psr-cat-set", "-s", "0", "1", "0x7ff"]]
    assert s["design"] == "narrow" and s["design_reason"].startswith("partitioned today")
    assert s["touched"] == [{"domid": 1, "name": "a", "original": {"cbm": "0x7ff"},
                             "restore_argv": vm["restore_argv"]}]
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
    assert lines[0].startswith("skx-stream-neighbour: 3 VM sweep(s), 2:00:00 of the 2:00:00 time box; "
                               "each level held 10 x 60 s = 600 s")
    table = [x.split() for x in lines if x.strip()[:1].isdigit()]
    assert [row[1] for row in table] == ["stream", "db2", "db1"]     # by bandwidth
    assert table[0][2:6] == ["9,", "5,", "2,", "1"]
    assert "skipped socket 0 db3 (4), web (5): beyond the time box (needs 40 min)" in r.stdout
    doc = json.loads(run("--store", sim_store, "calibrate", "--duration", "90m", "--hold", "5",
                         "--format", "json").stdout)
    h = doc["hosts"][0]
    assert h["interval_s"] == 60 and h["duration_s"] == 4 * 4 * 5 * 60      # 4 VMs x 4 levels x 5 min
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


def test_cli_follows_the_configs_cat_min_bits(sim_store, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[cat]\nmin_bits = 1\n[cat.hosts."elsewhere"]\nmin_bits = 3\n')
    r = run("--config", str(config), "--store", sim_store, "calibrate", "--format", "json")
    doc = json.loads(r.stdout)
    widths = [lv["ways"] for h in doc["hosts"] for s in h["sockets"] for v in s["vms"] for lv in v["levels"]]
    assert widths and min(widths) >= 3          # no host's minimum is undercut


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
    # 8 hours: the private sweep ends (every mask restored) before the last collection
    sc = next(s for s in suite.scenarios() if s.name == "skx-stream-neighbour")
    h = only_host(cal.plan_calibration(history.observe(sc, "calibration", seed=sc.seed, hours=8)))
    assert {d for d, why in reasons(h).items() if why == "its curve is already good"} == {1, 2, 3, 4}
    # web's working set (0.6 MB) fits in its smallest level: no slope to see, whatever the sweep
    assert [w.name for w in h.sweeps] == ["web"]
    assert h.sweeps[0].why.startswith(("curve fallback", "curve low"))


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

@pytest.fixture
def host_sh(tmp_path: Path):
    """(setup(doms, sockets), run(text) -> CompletedProcess, start(text) -> Popen, state(), log())."""
    env = cat_xl.install(tmp_path)

    def setup(doms: list[Dom], sockets: tuple[int, ...], cbm_len: int, fail: tuple[str, ...] = (),
              budget: int = 3, cdp: bool = False) -> None:
        full = (1 << cbm_len) - 1
        masks = {}
        for s in sockets:
            for d in doms:
                m = d.mask if (d.mask is not None and d.socket == s) else full
                masks[f"{s}:{d.domid}"] = list(m) if isinstance(m, tuple) else [m, m]
        (tmp_path / "state.json").write_text(json.dumps({"names": {str(d.domid): d.name for d in doms},
                                                         "masks": masks, "fail": list(fail),
                                                         "cbm_len": cbm_len, "budget": budget,
                                                         "cdp": list(sockets) if cdp else []}))
        (tmp_path / "log").write_text("")

    def write(text: str, name: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    def run_sh(text: str, name: str = "run.sh") -> subprocess.CompletedProcess:
        return subprocess.run([SH, str(write(text, name))], env=env, capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)

    def start(text: str) -> subprocess.Popen:
        # Its own process group: a test may SIGKILL the shell and its `sleep` together.
        return subprocess.Popen([SH, str(write(text, "run.sh"))], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True)

    def state() -> dict[str, list[int]]:
        return json.loads((tmp_path / "state.json").read_text())["masks"]

    def log() -> list[list[str]]:
        return [json.loads(x) for x in (tmp_path / "log").read_text().splitlines()]

    return setup, run_sh, start, state, log


# two sockets, CDP, 3 COS; b's code and data differ and its data run (2 ways) starts at bit 2
# (cbm_len 4): socket 0 is partitioned, so a (levels of 2 and 1 ways) and b (one level of 1 way)
# are narrowed; on socket 1 everyone is at the default, so c gets a private sweep (the top 2,
# then the top 1 way) with a and b fenced into the low 2, then 3 ways
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
    setup(SCRIPT_DOMS, (0, 1), 4, cdp=True)
    before = state()
    r = run_sh(text)
    assert r.returncode == 0, r.stderr
    calls = [" ".join(c) for c in log()]
    assert calls == [
        "domname 1", "domname 2", "domname 3",                               # the checks change nothing
        *(f"psr-cat-show -l 3 {d}" for d in (1, 2, 1, 2, 3)),                # socket 0: a, b; socket 1
        "psr-cat-set -s 0 1 0x3",                                            # t=0: both sockets start
        "psr-cat-set -s 1 1 0x3", "psr-cat-set -s 1 2 0x3", "psr-cat-set -s 1 3 0xc",
        "psr-cat-set -s 0 1 0x1",                                            # t=1
        "psr-cat-set -s 1 3 0x8", "psr-cat-set -s 1 1 0x7", "psr-cat-set -s 1 2 0x7",
        "psr-cat-set -s 0 1 0xf",                                            # t=2: restores first...
        "psr-cat-set -s 1 1 0xf", "psr-cat-set -s 1 2 0xf", "psr-cat-set -s 1 3 0xf",
        "psr-cat-set -s 0 2 0x4",                                            # ...then b, in its data run
        "psr-cat-set -s 0 -c 2 0x3", "psr-cat-set -s 0 -d 2 0xc"]            # t=3: each half as it was
    assert state() == before
    stamps = [x for x in r.stderr.splitlines() if " rdtadvisor: socket " in x]
    assert len(stamps) == 8 and all(x[:4].isdigit() and x[10] == "T" and x[19] == "Z" for x in stamps)
    # the standalone rollback restores every touched domain (a no-op now) after checking its id
    r = run_sh(undo, "undo.sh")
    assert r.returncode == 0, r.stderr
    assert state() == before
    assert {" ".join(c) for c in log()[len(calls):] if c[0] == "psr-cat-set"} == {
        "psr-cat-set -s 0 1 0xf", "psr-cat-set -s 0 -c 2 0x3", "psr-cat-set -s 0 -d 2 0xc",
        "psr-cat-set -s 1 1 0xf", "psr-cat-set -s 1 2 0xf", "psr-cat-set -s 1 3 0xf"}


def test_sigterm_in_the_middle_of_a_level_restores_the_masks(host_sh):
    setup, _run_sh, start, state, log = host_sh
    setup(SCRIPT_DOMS, (0, 1), 4, cdp=True)
    before = state()
    proc = start(calibration_script(script_host(hold=30)))       # 30 s levels: the signal lands in a pause
    try:
        for _ in range(400):
            if sum(c[0] == "psr-cat-set" for c in log()) == 4 or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert sum(c[0] == "psr-cat-set" for c in log()) == 4
        time.sleep(0.3)                                           # all set: now in `pause 30`
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143
    calls = [" ".join(c) for c in log()]
    assert calls[-4:] == ["psr-cat-set -s 0 1 0xf", "psr-cat-set -s 1 1 0xf", "psr-cat-set -s 1 2 0xf",
                          "psr-cat-set -s 1 3 0xf"]        # the changed ones, fenced ones too, once
    assert "psr-cat-set -s 0 2 0x4" not in calls                  # b was not changed yet: left alone
    assert state() == before
    assert "restoring socket 1 domid 2" in err and "could not restore" not in err


def test_a_failing_restore_is_reported_and_the_others_still_run(host_sh):
    setup, run_sh, _start, state, log = host_sh
    setup(SCRIPT_DOMS, (0, 1), 4, fail=("psr-cat-set -s 0 1 0xf",), cdp=True)
    r = run_sh(calibration_script(script_host()))
    # set -e stops the sweep at the failed restore; the rollback retries it, reports it, and
    assert r.returncode == 253
    assert "could not restore socket 0 domid 1: xl psr-cat-set -s 0 1 0xf" in r.stderr
    calls = [" ".join(c) for c in log()]
    # still restores the other changed domains (here the private socket's, fenced ones included)
    assert calls[-5:] == ["psr-cat-set -s 0 1 0xf", "psr-cat-set -s 0 1 0xf", "psr-cat-set -s 1 1 0xf",
                          "psr-cat-set -s 1 2 0xf", "psr-cat-set -s 1 3 0xf"]
    assert calls.count("psr-cat-set -s 0 1 0xf") == 2
    assert all(state()[f"1:{d}"] == [0xf, 0xf] for d in (1, 2, 3)) and state()["0:1"] == [0x1, 0x1]


def test_after_a_sigkill_mid_sweep_the_rollback_script_restores_every_touched_domain(host_sh):
    setup, run_sh, start, state, log = host_sh
    setup(SCRIPT_DOMS, (0, 1), 4, cdp=True)
    before = state()
    h = script_host(hold=30)
    proc = start(calibration_script(h))
    try:
        for _ in range(400):
            if sum(c[0] == "psr-cat-set" for c in log()) == 4 or proc.poll() is not None:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGKILL)                       # no trap runs: the masks stay changed
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert state() != before and state()["1:1"] == [0x3, 0x3]      # a fenced on the private socket
    r = run_sh(calibration_rollback_script(h), "undo.sh")
    assert r.returncode == 0, r.stderr
    assert state() == before


def test_the_rollback_script_skips_a_domain_whose_id_now_names_another(host_sh):
    setup, run_sh, _start, _state, log = host_sh
    h = script_host()
    setup([Dom(1, "someone-else"), *SCRIPT_DOMS[1:]], (0, 1), 4, cdp=True)
    r = run_sh(calibration_rollback_script(h), "undo.sh")
    assert r.returncode == 1
    assert "socket 0 domid 1: the id is gone or names another domain now" in r.stderr
    assert "socket 1 domid 1: the id is gone or names another domain now" in r.stderr
    assert not any(c[0] == "psr-cat-set" and c[-2] == "1" for c in log())
    assert {" ".join(c) for c in log() if c[0] == "psr-cat-set"} == {
        "psr-cat-set -s 0 -c 2 0x3", "psr-cat-set -s 0 -d 2 0xc", "psr-cat-set -s 1 2 0xf",
        "psr-cat-set -s 1 3 0xf"}


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
                    # else only as a single-quoted word of a domain or mask check
                    words = shlex.split(line.removeprefix("if ").removesuffix("; then"))
                    assert words[0] in ("expect_domain", "same_domain", "expect_masks"), line
                    assert (f'"{bad}"' in words[5]) if words[0] == "expect_masks" else words[2] == bad, line
        assert all(not line.lstrip().startswith("touch") for line in text.splitlines())
        # the name with newlines is checked too, byte for byte, on one line
        assert f"x\\012 touch {canary}\\012# " in text
        r = run_sh(text, name)
        assert r.returncode == 0, r.stderr
    assert not canary.exists()
    assert state() == {f"0:{d.domid}": [3, 3] for d in doms}


def test_a_sweep_killed_mid_level_is_not_taken_for_the_original_masks():
    # history cut 3 minutes into the first level, as if the script was SIGKILLed there: the
    # latest masks are the sweep's, so a new sweep (and its rollback) would start from them
    sc = next(s for s in suite.scenarios() if s.name == "skx-stream-neighbour")
    hist = history.observe(sc, "calibration", seed=sc.seed)
    l3 = hist["settings"][hist["settings"]["setting"] == "l3_cbm"]
    cut = l3.loc[l3["value"] != l3["value"].max(), "time"].min() + pd.Timedelta(minutes=3)
    killed = {k: v[v["time"] <= cut] for k, v in hist.items()}
    (host,) = cal.plan_calibration(killed).hosts
    assert not host.sockets
    (skip,) = host.skipped
    assert skip.socket == 0
    assert "calibration sweep left in place (stream alone in the top 9 ways" in skip.reason
    assert cal.left_level(socket_settings_of(killed), sc.socket.ways) == (1, 9)
    # nor does advise cat plan from them (its rollback would restore the fence)
    advice = advise_cat(killed)
    assert not advice.plans and "calibration sweep left in place" in advice.declined[0]["reason"]


def socket_settings_of(tables) -> dict[int, int]:
    st = tables["settings"]
    latest = st[(st["time"] == st["time"].max()) & (st["setting"] == "l3_cbm")]
    return {int(d): int(v) for d, v in zip(latest["domid"], latest["value"], strict=True)}


def test_a_left_sweep_is_recognised_at_every_level_any_min_bits_gives():
    # the wide first level is 9 of 11 ways, or 8 when min_bits = 3 keeps the fence 3 wide
    for k in (9, 8, 5, 2, 1):
        top, low = ((1 << k) - 1) << (11 - k), (1 << (11 - k)) - 1
        assert cal.left_level({0: low, 4: top, 7: low}, 11) == (4, k)
    assert cal.left_level({0: 0x7, 4: 0x7f0, 7: 0x7}, 11) is None         # not one complementary pair
    assert cal.left_level({0: 0x1f, 4: 0x7e0, 7: 0x1f}, 11) is None       # 6 ways: no sweep level


def test_cli_an_unwritable_script_is_one_line_naming_the_file(sim_store, tmp_path):
    missing = tmp_path / "no-such-dir" / "sweep.sh"
    r = run("--store", sim_store, "calibrate", "--script", str(missing))
    assert r.exit_code == 3 and "private sweep" in r.stdout
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"rdtadvisor: error: {missing.parent}/sweep.rollback.sh: cannot write")


def test_without_mbm_the_sweep_is_private_and_read_from_occupancy_shares():
    # Haswell-EP: occupancy only. A private sweep fences the others into pools of different
    # sizes, which is what shows a curve in occupancy shares (`rdtadvisor.model.shares`)
    doms = [Dom(1, "a"), Dom(2, "b")]
    h = only_host(cal.plan_calibration(tables(doms, mbm=False)))
    (sock,) = h.sockets
    assert {w.name for w in sock.sweeps} == {"a", "b"}
    assert all("occupancy shares" in w.why for w in sock.sweeps)
    # a narrowing sweep would leave every domain in one pool: declined, with the reason
    parted = tables([Dom(1, "a", mask=0x0ff), Dom(2, "b", mask=0x700)], mbm=False)
    h = only_host(cal.plan_calibration(parted))
    assert not h.sockets and reasons(h)[None].startswith("no MBM: only a private sweep")


@pytest.mark.bad_input
def test_sweep_script_file_names_are_safe_whatever_the_host_names(tmp_path):
    store = Store(tmp_path / "s")
    hosts = ["rack/01", "-evil"]
    for host in hosts:
        store.append({t: df.assign(host=host) for t, df in simulated("default").items()})
    out = tmp_path / "out" / "sweep.sh"
    out.parent.mkdir()
    r = run("--store", str(tmp_path / "s"), "calibrate", "--script", str(out))
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(
        f"sweep.{host_file_part(h)}{end}" for h in hosts for end in (".sh", ".rollback.sh"))
    assert all(not p.name.startswith("-") and "/" not in p.name for p in out.parent.iterdir())
