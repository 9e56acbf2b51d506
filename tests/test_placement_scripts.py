"""Placement plans an operator can run as they are, on hosts that behave like Xen.

The demo store's plans (`advise placement`, default and evacuation) are written as one script
per source host and run, each "on" its host, against a fake fleet (tests/fake_xen): an `xl`
that migrates through ``sh -c "exec ssh HOST xl migrate-receive"`` as xl_migrate.c does, and
refuses a domain name that already runs on the destination as libxl does, and an `ssh` that
stands in for the network. Host names that could reach that shell are refused where they
enter rdtadvisor.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from rdtadvisor.store import Store
from tests.clirun import run

FAKE = Path(__file__).resolve().parent / "fake_xen"
CONFIG = str(Path(__file__).resolve().parent.parent / "samples" / "demo-config.toml")
MIB = 2**20


def make_fleet(store_path: str, root: Path) -> Path:
    """A fake fleet holding every host's domains as the store's latest ``xl list`` shows them."""
    store = Store(store_path, create=False)
    domains = store.latest("domains")
    facts = store.latest("facts")
    names = facts[facts["fact"] == "hostname"].set_index("host")["text"].to_dict()
    targets = {}
    for host, g in domains.groupby("host", observed=True):
        host = str(host)
        (root / host).mkdir(parents=True)
        doms = [{"domid": int(r.domid), "name": str(r.domain), "memory_mib": int(r.memory_bytes) // MIB,
                 "vcpus": int(r.vcpus)} for r in g.itertuples()]
        state = {"hostname": names.get(host, host), "domains": doms, "next_domid": 1000}
        (root / host / "state.json").write_text(json.dumps(state))
        targets[host] = host
    (root / "targets.json").write_text(json.dumps(targets))
    return root


def on(host: str, fleet: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{FAKE}:{os.environ['PATH']}", "FAKE_XEN_FLEET": str(fleet),
           "FAKE_XEN_HOST": host}
    return subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=60)


def domains(fleet: Path) -> dict[str, list[dict]]:
    return {p.parent.name: json.loads(p.read_text())["domains"] for p in fleet.glob("*/state.json")}


def plan_and_scripts(store: str, tmp: Path, *extra: str) -> tuple[dict, dict[str, Path]]:
    r = run("--config", CONFIG, "--store", store, "advise", "placement", "--format", "json",
            "--script", str(tmp / "plan.sh"), *extra)
    assert r.exit_code in (0, 1), r.stderr
    result = json.loads(r.stdout)
    scripts = {m["from"]: tmp / f"plan.{m['from']}.sh" for m in result["migrations"]}
    if len(scripts) == 1:
        scripts = {src: tmp / "plan.sh" for src in scripts}
    return result, scripts


def run_plan(fleet: Path, scripts: dict[str, Path]) -> None:
    for source, script in scripts.items():
        done = on(source, fleet, "sh", str(script))
        assert done.returncode == 0, (source, done.stderr)


def check_landed(result: dict, before: dict, after: dict) -> None:
    where = {(h, d["name"]) for h, ds in after.items() for d in ds}
    for m in result["migrations"]:
        assert (m["to"], m["name"]) in where and (m["from"], m["name"]) not in where, m
    for h, ds in after.items():
        names = [d["name"] for d in ds]
        assert len(names) == len(set(names)), f"{h} runs two domains of one name"
    moved = sum(len(ds) for ds in after.values())
    assert moved == sum(len(ds) for ds in before.values())     # nothing lost, nothing doubled


def check_limits(result: dict) -> None:
    """Every limit, pooled and per socket, within its threshold after the moves; a host left
    unresolved no worse than before."""
    for host, figures in result["hosts"].items():
        for key, after in figures["after"].items():
            before = figures["before"].get(key)
            if not key.endswith("_share") or after is None:
                continue
            assert after <= max(1.0, before or 0.0) + 1e-6, (host, key, before, after)
            if before is not None and before <= 1.0 and host not in result["unresolved"]:
                assert after <= 1.0 + 1e-6, (host, key, before, after)


@pytest.mark.parametrize("evacuate", [(), ("--evacuate", "xen-icx-spare")], ids=["default", "evacuation"])
def test_the_demo_plans_run_on_hosts_that_behave_like_xen(demo_store, tmp_path, evacuate):
    fleet = make_fleet(demo_store, tmp_path / "fleet")
    result, scripts = plan_and_scripts(demo_store, tmp_path, *evacuate)
    assert result["migrations"], "the demo has overloaded hosts: a plan moves something"
    check_limits(result)
    before = domains(fleet)
    run_plan(fleet, scripts)
    check_landed(result, before, domains(fleet))
    if evacuate:
        left = {d["name"] for d in domains(fleet)["xen-icx-spare"]} - {"Domain-0"}
        assert ("xen-icx-spare" in result["unresolved"]) == bool(left)


def test_the_default_plan_says_where_each_vm_lands_and_moves_only_off_hosts_it_fixes(demo_store, tmp_path):
    result, _ = plan_and_scripts(demo_store, tmp_path)
    for m in result["migrations"]:
        assert m["to_socket"] is not None or m["to_sockets"] == "spread" or \
            result["hosts"][m["to"]]["after"].get("l3_socket0_share") is None
    sources = {m["from"] for m in result["migrations"]}
    for s in sources:     # each source it moves VMs off was over a limit, and is not any more
        before = result["hosts"][s]["before"]
        assert any(v is not None and v > 1.0 for k, v in before.items() if k.endswith("_share")), s
        assert s not in result["unresolved"]


def test_a_script_refuses_to_run_on_another_host_or_on_changed_domains(demo_store, tmp_path):
    fleet = make_fleet(demo_store, tmp_path / "fleet")
    result, scripts = plan_and_scripts(demo_store, tmp_path)
    source, script = next(iter(scripts.items()))
    other = next(h for h in domains(fleet) if h != source)
    before = domains(fleet)
    wrong = on(other, fleet, "sh", str(script))
    assert wrong.returncode == 1 and "nothing was migrated" in wrong.stderr
    assert f"not '{source}'" in wrong.stderr or "not '" in wrong.stderr
    # the planned domain id now names another domain (a reused id), or its memory changed
    m = next(x for x in result["migrations"] if x["from"] == source)
    state_file = fleet / source / "state.json"
    state = json.loads(state_file.read_text())
    dom = next(d for d in state["domains"] if d["domid"] == m["domid"])
    for field, value, words in (("name", m["name"] + "\u200b", "is now named"),
                                ("memory_mib", dom["memory_mib"] + 1, "MiB, not")):
        changed = json.loads(json.dumps(state))
        next(d for d in changed["domains"] if d["domid"] == m["domid"])[field] = value
        state_file.write_text(json.dumps(changed))
        refused = on(source, fleet, "sh", str(script))
        assert refused.returncode == 1 and words in refused.stderr
        assert "nothing was migrated" in refused.stderr
    state_file.write_text(json.dumps(state))
    assert domains(fleet) == before


def test_the_fake_xen_refuses_a_name_that_runs_on_the_destination(tmp_path):
    """The test double is faithful: Xen would refuse the plans the old solver made."""
    fleet = tmp_path / "fleet"
    for host, doms in (("a", [{"domid": 3, "name": "web-01", "memory_mib": 4096, "vcpus": 2}]),
                       ("b", [{"domid": 5, "name": "web-01", "memory_mib": 2048, "vcpus": 2}])):
        (fleet / host).mkdir(parents=True)
        (fleet / host / "state.json").write_text(json.dumps({"hostname": host, "domains": doms,
                                                             "next_domid": 10}))
    (fleet / "targets.json").write_text(json.dumps({"a": "a", "b": "b"}))
    refused = on("a", fleet, "xl", "migrate", "--", "3", "b")
    assert refused.returncode == 1 and "already in use" in refused.stderr
    assert [d["name"] for d in domains(fleet)["a"]] == ["web-01"]        # resumed at the sender


def test_xl_pastes_the_target_into_a_shell_so_host_names_are_checked_where_they_enter(demo_store, tmp_path):
    fleet = tmp_path / "fleet"
    (fleet / "a").mkdir(parents=True)
    (fleet / "a" / "state.json").write_text(json.dumps({"hostname": "a", "next_domid": 9, "domains": [
        {"domid": 3, "name": "vm", "memory_mib": 1024, "vcpus": 1}]}))
    (fleet / "targets.json").write_text("{}")
    pwned = tmp_path / "pwned"
    hostile = f"xen-dst$(touch${{IFS}}{pwned})"
    on("a", fleet, "xl", "migrate", "--", "3", hostile)
    assert pwned.exists()          # what Xen itself would do with such a name: rdtadvisor must not emit it

    config = tmp_path / "bad.toml"
    config.write_text(f'[[hosts]]\nname = "{hostile}"\n')
    r = run("--config", str(config), "--store", str(tmp_path / "s"), "collect")
    assert r.exit_code == 2 and "is not a host name or IP address" in r.stderr and r.stderr.count("\n") == 1
    config.write_text(f'[[hosts]]\nname = "xen01"\naddress = "{hostile}"\n')
    r = run("--config", str(config), "--store", str(tmp_path / "s"), "advise", "placement")
    assert r.exit_code == 2 and "address" in r.stderr and r.stdout == ""
    r = run("--store", str(tmp_path / "s"), "collect", "--host", hostile)
    assert r.exit_code == 2 and "--host" in r.stderr
    hosts = tmp_path / "hosts.txt"
    hosts.write_text(f"xen01\n{hostile}\n")
    r = run("--store", str(tmp_path / "s"), "collect", "--hosts-file", str(hosts))
    assert r.exit_code == 2 and "hosts.txt:2" in r.stderr


def test_a_replayed_capture_with_a_hostile_host_fails_that_host_only(tmp_path):
    from tests.clirun import run as cli

    caps = tmp_path / "caps"
    r = cli("simulate", str(Path(__file__).parent / "scenarios" / "small.toml"), "--out", str(caps),
            "--duration", "10m", "--quiet")
    assert r.exit_code == 0, r.stderr
    hosts = sorted(p.name for p in caps.iterdir())
    victim = next(caps.glob(f"{hosts[0]}/*/meta.json"))
    meta = json.loads(victim.read_text())
    meta["host"] = "xen-dst$(reboot)"
    victim.write_text(json.dumps(meta))
    r = cli("--store", str(tmp_path / "s"), "collect", "--replay", str(caps))
    assert r.exit_code == 1
    assert str(victim) in r.stderr and "is not a host name" in r.stderr
    stored = Store(tmp_path / "s", create=False).hosts()
    assert "xen-dst$(reboot)" not in stored and set(hosts) <= set(stored)
