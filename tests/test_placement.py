"""Specifications of the placement solver, its recommendations and `rdtadvisor advise placement`."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from rdtadvisor.advise.placement.fleet import Fleet, Host, Policy, Vm, violations
from rdtadvisor.advise.placement.recommend import recommendations
from rdtadvisor.advise.placement.solve import lower_bound, plan
from rdtadvisor.core.errors import ConfigError
from tests.clirun import run

MIB, GIB = 2**20, 2**30
CONFIG = str(Path(__file__).resolve().parent.parent / "samples" / "demo-config.toml")


def host(name: str, **kw) -> Host:
    base = {"l3_bytes": 30 * MIB, "bandwidth_bytes_s": 100e9, "memory_bytes": 512 * GIB, "cpus": 64}
    return Host(name, **{**base, **kw})


def vm(name: str, on: str, occ_mib: float, bw_gbs: float, mem_gib: float = 8, **kw) -> Vm:
    return Vm(name, on, occ_mib * MIB, bw_gbs * 1e9, mem_gib * GIB, 4, **kw)


def moves(f: Fleet, policy: Policy | None = None, **kw) -> dict[str, str]:
    a, s = plan(f, policy or Policy(), **kw)
    return {f.vms[v].name: f.hosts[s.assignment[v]].name for v in np.flatnonzero(s.assignment != a.current)}


def test_one_move_of_the_vm_that_covers_the_excess_in_every_dimension_with_least_memory():
    # a: L3 30 MiB x 0.9 = 27 MiB limit, holds 30; bandwidth 80 GB/s limit, holds 90. big or mid
    # alone would do; mid has less memory to copy; small alone covers neither excess.
    f = Fleet(
        [host("a"), host("b"), host("c")],
        [
            vm("big", "a", 20, 40, 32),
            vm("mid", "a", 8, 30, 16),
            vm("small", "a", 2, 20, 8),
            vm("x", "b", 20, 50),
        ],
    )
    out = moves(f)
    assert list(out) == ["mid"] and out["mid"] == "c"  # b would pass its L3 limit with mid


def test_a_host_a_hair_over_its_limit_is_left_alone_hysteresis():
    f = Fleet([host("a"), host("b")], [vm("v1", "a", 13.6, 10), vm("v2", "a", 13.6, 10)])  # 27.2 of 27 MiB
    assert moves(f) == {}
    assert moves(f, Policy(hysteresis=0.0)) != {}


def test_pinned_vms_never_move_and_the_next_best_choice_is_taken():
    f = Fleet([host("a"), host("b")], [vm("db", "a", 20, 40, pinned=True), vm("etl", "a", 9, 45)])
    assert moves(f) == {"etl": "b"}


def test_anti_affinity_splits_a_group_and_never_joins_it():
    f = Fleet(
        [host("a"), host("b"), host("c")],
        [
            vm("web1", "a", 1, 1, group="web"),
            vm("web2", "a", 1, 1, group="web"),
            vm("web3", "b", 1, 1, group="web"),
        ],
    )
    out = moves(f)
    assert len(out) == 1 and list(out.values()) == ["c"]


def test_evacuation_moves_every_vm_off_a_maintenance_host_with_priority_1():
    f = Fleet(
        [host("a", maintenance=True), host("b"), host("c")],
        [vm("v1", "a", 10, 20), vm("v2", "a", 10, 20), vm("w", "b", 10, 20)],
    )
    a, s = plan(f, Policy())
    result = recommendations(f, a, s)
    assert {m["name"] for m in result["migrations"]} == {"v1", "v2"}
    assert all(m["reason"] == "maintenance" and m["priority"] == 1 for m in result["migrations"])
    assert result["unresolved"] == []


def test_a_source_no_plan_can_fix_keeps_its_vms_and_destinations_stay_within_limits():
    # two of a's VMs must leave, the only other host has room for one: moving it fixes nothing
    f = Fleet(
        [host("a"), host("b")],
        [vm("v1", "a", 14, 10), vm("v2", "a", 14, 10), vm("v3", "a", 14, 10), vm("w", "b", 12, 10)],
    )
    for method in ("auto", "heuristic", "milp"):
        a, s = plan(f, Policy(), method=method)
        assert s.migrations == 0 and list(s.unresolved) == [0], method
        assert not violations(a, s.assignment)[1]


def test_max_migrations_gives_the_best_partial_plan_and_names_what_is_left():
    f = Fleet(
        [host("a"), host("b"), host("c"), host("d")],
        [vm("a1", "a", 25, 10), vm("a2", "a", 25, 10), vm("b1", "b", 25, 10), vm("b2", "b", 25, 10)],
    )
    _, s = plan(f, Policy(max_migrations=1))
    assert s.migrations == 1 and len(s.unresolved) == 1


def test_the_lower_bound_never_exceeds_a_plan_and_proves_optimality_when_met():
    rng = np.random.default_rng(3)
    for _ in range(30):
        hosts = [host(f"h{i}") for i in range(4)]
        vms = [
            vm(f"v{j}", f"h{rng.integers(0, 2)}", rng.uniform(1, 12), rng.uniform(1, 30)) for j in range(10)
        ]
        f = Fleet(hosts, vms)
        a, s = plan(f, Policy())
        src = violations(a, a.current, slack=Policy().hysteresis)
        assert lower_bound(a, src) <= s.migrations or len(s.unresolved)
        if s.optimal:
            assert s.migrations == s.lower_bound or s.method == "milp"


def test_plans_are_deterministic():
    rng = np.random.default_rng(5)
    hosts = [host(f"h{i}") for i in range(6)]
    vms = [vm(f"v{j}", f"h{rng.integers(0, 3)}", rng.uniform(1, 10), rng.uniform(1, 25)) for j in range(30)]
    f = Fleet(hosts, vms)
    first = plan(f, Policy())[1].assignment
    for method in ("auto", "auto", "heuristic"):
        again = plan(f, Policy(), method=method)[1]
        if method == "auto":
            assert np.array_equal(first, again.assignment)


def test_a_hostile_host_name_is_refused_before_any_plan_is_built():
    hostile = "xen-dst$(touch${IFS}/tmp/pwned)"
    f = Fleet([host("a"), host(hostile)], [vm("web", "a", 20, 10), vm("x", "a", 10, 10)])
    a, s = plan(f, Policy())
    with pytest.raises(ConfigError, match=r"placement host: 'xen-dst\$\(touch.*is not a host name"):
        recommendations(f, a, s)
    f = Fleet([host("a"), host("b", address="10.0.0.2;reboot")],
              [vm("web", "a", 20, 10), vm("x", "a", 10, 10)])
    with pytest.raises(ConfigError, match="placement host b address"):
        recommendations(f, *plan(f, Policy()))


def test_commands_name_the_domain_by_id_after_a_double_dash_and_reach_the_target_address():
    f = Fleet([host("a"), host("b", address="10.0.0.2")],
              [vm("-web $(reboot)", "a", 20, 10, domid=7), vm("-x", "a", 10, 10, 16)])
    a, s = plan(f, Policy())
    result = recommendations(f, a, s)
    (m,) = result["migrations"]
    assert shlex.split(m["command"]) == ["xl", "migrate", "--", "7", "10.0.0.2"]
    assert m["to"] == "b" and m["target"] == "10.0.0.2"
    # without a domid the name goes after "--", quoted, so it cannot be an option
    f = Fleet([host("a"), host("b")], [vm("-web $(reboot)", "a", 20, 10), vm("x", "a", 10, 10, 16)])
    (m,) = recommendations(f, *plan(f, Policy()))["migrations"]
    assert shlex.split(m["command"]) == ["xl", "migrate", "--", "-web $(reboot)", "b"]


def test_recommendation_contract():
    f = Fleet([host("a"), host("b")], [vm("etl", "a", 9, 45, aggressor=True), vm("db", "a", 20, 40)])
    a, s = plan(f, Policy())
    result = recommendations(f, a, s)
    assert set(result) >= {"migrations", "hosts", "unresolved", "unresolved_reasons", "solver", "commands"}
    (m,) = result["migrations"]
    assert set(m) >= {"name", "domid", "from", "to", "target", "reason", "priority", "memory_bytes",
                      "from_socket", "to_socket", "command"}
    assert m["reason"] == "noisy-neighbour" and 1 <= m["priority"] <= 5
    assert set(result["hosts"]["a"]) == {"before", "after", "hostname"}
    assert result["hosts"]["a"]["after"]["l3_share"] < result["hosts"]["a"]["before"]["l3_share"]
    assert set(result["solver"]) >= {"method", "seconds", "gap"}


@pytest.fixture(scope="module")
def placement(demo_store: str) -> dict:
    r = run(
        "--config",
        CONFIG,
        "--store",
        demo_store,
        "advise",
        "placement",
        "--since",
        "2026-11-19",
        "--format",
        "json",
    )
    assert r.exit_code in (0, 1), r.stderr
    return json.loads(r.stdout)


def test_the_demo_fleet_moves_the_streaming_vm_off_the_overloaded_legacy_host(placement):
    moved = {(m["name"], m["from"]) for m in placement["migrations"]}
    assert ("video-transcode", "xen-hsw-legacy") in moved
    assert all(m["to"] != m["from"] for m in placement["migrations"])
    assert placement["solver"]["gap"] is not None


def test_evacuate_from_the_cli_empties_the_host_and_writes_a_script(demo_store, tmp_path):
    out = tmp_path / "plan.sh"
    r = run(
        "--config",
        CONFIG,
        "--store",
        demo_store,
        "advise",
        "placement",
        "--since",
        "2026-11-19",
        "--evacuate",
        "xen-icx-spare",
        "--format",
        "json",
        "--script",
        str(out),
    )
    data = json.loads(r.stdout)
    leaving = [m for m in data["migrations"] if m["from"] == "xen-icx-spare"]
    assert leaving and all(m["reason"] == "maintenance" and m["priority"] == 1 for m in leaving)
    assert not any(m["to"] == "xen-icx-spare" for m in data["migrations"])
    sources = {m["from"] for m in data["migrations"]}
    for src in sources:
        script = out.with_name(f"plan.{src}.sh") if len(sources) > 1 else out
        commands = [line for line in script.read_text().splitlines() if line.startswith("xl migrate ")]
        assert commands == [m["command"] for m in data["migrations"] if m["from"] == src]
    assert set(data["unresolved_reasons"]) == set(data["unresolved"])
    assert run("--store", demo_store, "advise", "placement", "--evacuate", "nope").exit_code == 2


def test_fleet_headroom_counts_by_every_placement_limit_and_names_the_binding_one(demo_store):
    r = run(
        "--config",
        CONFIG,
        "--store",
        demo_store,
        "headroom",
        "--since",
        "2026-11-19",
        "--fleet",
        "--profile",
        "xen-sky01:web-03",
        "--format",
        "json",
    )
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    fits = {h["host"]: h for h in data["hosts"]}
    assert max(fits, key=lambda h: fits[h]["fit"] or 0) == "xen-icx-spare"
    assert all(h["limit"] in ("l3", "bandwidth", "memory", "vcpus") for h in data["hosts"])
    assert data["fleet_fit"] == sum(h["fit"] or 0 for h in data["hosts"])
    explicit = run(
        "--config",
        CONFIG,
        "--store",
        demo_store,
        "headroom",
        "--since",
        "2026-11-19",
        "--fleet",
        "--occupancy",
        "1MiB",
        "--bandwidth",
        "100MiB/s",
        "--memory",
        "600GiB",
        "--vcpus",
        "2",
        "--format",
        "json",
    )
    assert json.loads(explicit.stdout)["fleet_fit"] == 0  # no host has 600 GiB free


def test_a_hot_socket_makes_its_host_a_source_even_when_the_host_as_a_whole_is_fine():
    from rdtadvisor.advise.placement.fleet import Socket

    sockets = (Socket(15 * MIB, 50e9), Socket(15 * MIB, 50e9))
    hot = host("a", sockets=sockets)  # pooled: 30 MiB, 100 GB/s
    cool = host("b", sockets=sockets)
    vms = [
        vm("stream", "a", 2, 30, socket_demand=((2 * MIB, 30e9), (0.0, 0.0))),
        vm("db", "a", 6, 15, socket_demand=((6 * MIB, 15e9), (0.0, 0.0))),
        vm("web", "a", 4, 5, socket_demand=((0.0, 0.0), (4 * MIB, 5e9))),
    ]
    f = Fleet([hot, cool], vms)
    # pooled bandwidth 50 of 80 GB/s is fine; socket 0 carries 45 of its 40 GB/s limit
    out = moves(f)
    assert list(out) in (["stream"], ["db"]) and out[next(iter(out))] == "b"
    a, s = plan(f, Policy())
    result = recommendations(f, a, s)
    assert result["migrations"][0]["reason"] == "bandwidth-saturation"
    assert result["hosts"]["a"]["after"]["bandwidth_socket0_share"] <= 1.0


def test_the_what_if_engine_predicts_the_relief_of_the_saturated_socket(placement):
    clx = placement["hosts"]["xen-clx-bw"]
    assert clx["before"]["bandwidth_socket0_share"] > 1.0 >= clx["after"]["bandwidth_socket0_share"]
    predicted = clx["predicted"]
    assert predicted["after"]["bandwidth_bytes_s"] < predicted["before"]["bandwidth_bytes_s"]


def test_between_equally_balanced_destinations_the_one_with_free_ways_wins():
    f = Fleet(
        [host("a"), host("b", free_ways=0.2), host("c", free_ways=1.0)],
        [vm("big", "a", 20, 40, 32), vm("mid", "a", 9, 10)],
    )
    assert moves(f) == {"mid": "c"}
    f = Fleet(
        [host("a"), host("b", free_ways=1.0), host("c", free_ways=0.2)],
        [vm("big", "a", 20, 40, 32), vm("mid", "a", 9, 10)],
    )
    assert moves(f) == {"mid": "b"}


def test_free_ways_are_the_longest_run_no_partition_holds():
    import pandas as pd

    from rdtadvisor.advise.placement.inputs import _free_ways

    masks = pd.DataFrame(
        {
            "host": ["h"] * 3,
            "socket": [0] * 3,
            "domain": ["a", "b", "c"],
            "l3_cbm": [0x7FF, 0x003, 0x0F0],
            "l3_code_cbm": None,
            "l3_data_cbm": None,
        }
    )
    # 11 ways: 0x003 and 0x0F0 held, free runs are ways 2-3 (2) and 8-10 (3)
    assert _free_ways(masks, "h", {0: 11}) == pytest.approx(3 / 11)
    assert _free_ways(masks.iloc[:1], "h", {0: 11}) == 1.0


def test_between_equal_reliefs_the_less_important_vm_moves():
    for important in ("v1", "v2"):
        f = Fleet(
            [host("a"), host("b")],
            [
                vm("v1", "a", 14, 10, priority=1 if important == "v1" else 5),
                vm("v2", "a", 14, 10, priority=1 if important == "v2" else 5),
            ],
        )
        assert list(moves(f)) == ["v2" if important == "v1" else "v1"]
        assert list(moves(f, method="milp")) == ["v2" if important == "v1" else "v1"]


# --- names, sockets and moves that fix nothing ------------------------------------------------


def test_a_vm_never_moves_where_its_name_runs_and_two_of_one_name_never_meet():
    # a must shed a VM; b runs a web-01 already (Xen would refuse a second), c is free
    f = Fleet([host("a"), host("b"), host("c"), host("d")],
              [vm("web-01", "a", 20, 10), vm("x", "a", 9, 10), vm("web-01", "b", 1, 1),
               vm("web-01", "d", 20, 10), vm("y", "d", 9, 10)])
    for method in ("heuristic", "milp"):
        _a, s = plan(f, Policy(), method=method)
        got = {(f.vms[v].name, f.vms[v].host): f.hosts[s.assignment[v]].name for v in range(len(f.vms))}
        assert got[("web-01", "a")] != "b" and got[("web-01", "d")] != "b", method
        names_on = [(f.hosts[h].name, f.vms[v].name) for v, h in enumerate(s.assignment)]
        assert len(names_on) == len(set(names_on)), method
        assert not s.unresolved.size, method


def test_a_vm_may_not_go_where_a_vm_of_its_name_runs_even_one_that_leaves():
    # the scripts of different sources run in any order: swapping two web-01s would be refused
    f = Fleet([host("a"), host("b")],
              [vm("web-01", "a", 25, 10), vm("web-01", "b", 25, 10), vm("p", "a", 5, 1), vm("q", "b", 5, 1)])
    a, s = plan(f, Policy())
    moved_names = [f.vms[v].name for v in np.flatnonzero(s.assignment != a.current)]
    assert "web-01" not in moved_names


def two_socket_host(name: str, **kw) -> Host:
    from rdtadvisor.advise.placement.fleet import Socket

    sockets = (Socket(15 * MIB, 50e9, 256 * GIB), Socket(15 * MIB, 50e9, 256 * GIB))
    return host(name, sockets=sockets, **kw)


def test_libxl_puts_a_vm_on_the_node_with_fewest_vcpus_then_most_free_memory():
    from rdtadvisor.advise.placement.fleet import numa_landing

    free = np.array([[100.0, 100.0], [100.0, 300.0], [30.0, 300.0], [10.0, 20.0]]) * GIB
    vcpus = np.array([[8, 4], [4, 4], [2, 8], [0, 0]], dtype=float)
    land = numa_landing(np.array([40.0 * GIB]), free, vcpus, np.array([2, 2, 2, 2]))
    # fewest vCPUs; tie -> most free memory; the fewest-vCPU node lacks room -> the other;
    # no single node has room -> spread (-1)
    assert land.tolist() == [[1, 1, 1, -1]]


def test_a_destination_is_judged_on_the_socket_the_vm_lands_on():
    # b's socket 0 is nearly full of cache but has the fewest vCPUs, so libxl would put the
    # VM there; pooled, b has room. c's sockets both have room: the VM must go to c.
    f = Fleet(
        [two_socket_host("a"), two_socket_host("b"), two_socket_host("c")],
        [vm("big", "a", 12, 1, 8, socket_demand=((12 * MIB, 1e9), (0.0, 0.0)), home=0),
         vm("other", "a", 10, 1, 8, socket_demand=((10 * MIB, 1e9), (0.0, 0.0)), home=0),
         vm("full0", "b", 12, 1, 8, socket_demand=((12 * MIB, 1e9), (0.0, 0.0)), home=0),
         Vm("busy1", "b", 1 * MIB, 1e9, 8 * GIB, 32, socket_demand=((0.0, 0.0), (1 * MIB, 1e9)), home=1),
         vm("c0", "c", 2, 1, 8, socket_demand=((2 * MIB, 1e9), (0.0, 0.0)), home=0)],
    )
    a, s = plan(f, Policy())
    moved = np.flatnonzero(s.assignment != a.current)
    assert len(moved) == 1 and f.hosts[s.assignment[moved[0]]].name == "c"
    assert a.landing[moved[0], 1] == 0 and a.landing[moved[0], 2] == 1
    assert not violations(a, s.assignment, limit=s.limit).any()


def test_no_vm_moves_when_the_one_that_would_fix_its_host_may_go_nowhere():
    # a is over L3 because of "hog" alone (28 MiB, the limit 27); hog's anti-affinity group has
    # a member on every other host, so nothing fixes a: the web VMs stay, and the reason is named
    f = Fleet([host("a"), host("b"), host("c")],
              [vm("hog", "a", 28, 5, group="g"), vm("web1", "a", 1, 1), vm("web2", "a", 1, 1),
               vm("web3", "a", 1, 1), vm("g-b", "b", 1, 1, group="g"), vm("g-c", "c", 1, 1, group="g")])
    for method in ("auto", "heuristic", "milp"):
        _, s = plan(f, Policy(), method=method)
        assert s.migrations == 0 and [f.hosts[h].name for h in s.unresolved] == ["a"], method
    result = recommendations(f, *plan(f, Policy()))
    assert result["migrations"] == []
    assert result["unresolved_reasons"]["a"] == (
        "over its limits (l3 115%): what would have to leave may run nowhere else (hog: pools, "
        "anti-affinity, names); moving the others would not fix it")


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1", "1e300"])
def test_a_time_limit_that_is_not_a_number_of_seconds_is_a_usage_error(demo_store, value):
    r = run("--store", demo_store, "advise", "placement", "--time-limit", value)
    assert r.exit_code == 2 and "--time-limit" in r.stderr and "Traceback" not in r.stderr
