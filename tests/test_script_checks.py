"""Scripts act only on what was checked: exact name bytes, the plan's masks, what the apply found.

The apply, rollback, sweep and sweep-rollback scripts run under /bin/sh against the fake Xen
of tests/cat_xl.py (``xl domname``, ``xl psr-cat-show`` in Xen's format, ``xl psr-cat-set``):

* a domain check compares the exact bytes ``xl domname`` prints: ``web`` and ``web`` + U+200B
  are two domains; a Latin-1 name (kept as ``caf\\xe9-prima``) matches its bytes;
* the apply refuses when a mask on a planned socket is not the plan's "before" (naming the
  domain, socket, expected and found masks), and the rollback refuses when one is not what
  the apply left: it restores what the apply found, never plan-time masks over a newer change.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rdtadvisor.advise import calibrate as cal
from rdtadvisor.advise.plan import CatPlan, cat_plan
from rdtadvisor.cache import cbm
from rdtadvisor.render.calibration_script import calibration_rollback_script, calibration_script
from rdtadvisor.render.script import rollback_script, script
from tests import cat_xl
from tests.test_calibrate import Dom, only_host, tables

pytestmark = pytest.mark.bad_input

SH = "/bin/sh"
CURRENT = {0: 0x7ff, 5: 0x7f0, 7: 0x3, 9: 0x7ff}
TARGET = {0: 0x1, 5: 0x7f0, 7: 0x6, 9: 0x7f8}
NAMES = {0: "Domain-0", 5: "db-primary", 7: "stream", 9: "web"}
READS = ("domname", "psr-cat-show")


def plan_for(names: dict[int, str], current=CURRENT, target=TARGET, version=(4, 19), cdp=False,
             cbm_len=11) -> CatPlan:
    return cat_plan("xen-sky01", 0, version, current, target, cdp=cdp, cbm_len=cbm_len, cos_budget=15,
                    l3_bytes=28160 * 1024, names=names)


@pytest.fixture
def xen(tmp_path: Path):
    """setup(masks, names, cdp) / sh(text) / masks() / sets(): the fake Xen and its state."""
    env = cat_xl.install(tmp_path)

    def setup(masks: dict[int, object], names: dict[int, str], cdp: bool = False, cbm_len: int = 11) -> None:
        state = {"names": {str(d): n for d, n in names.items()}, "sets": 0, "fail_at": None, "budget": 15,
                 "cbm_len": cbm_len, "cdp": [0] if cdp else [],
                 "masks": {f"0:{d}": list(cbm.normalise(m)) for d, m in masks.items()}}
        # names are raw bytes to Xen: JSON keeps surrogateescape surrogates as \udcXX
        (tmp_path / "state.json").write_text(json.dumps(state))
        (tmp_path / "log").write_text("")

    def sh(text: str) -> subprocess.CompletedProcess:
        path = tmp_path / "run.sh"
        path.write_text(text, encoding="utf-8")
        return subprocess.run([SH, str(path)], env=env, capture_output=True, text=True, errors="replace",
                              timeout=30)

    def masks() -> dict[int, tuple[int, int]]:
        state = json.loads((tmp_path / "state.json").read_text())["masks"]
        return {int(k.split(":")[1]): tuple(v) for k, v in state.items()}

    def sets() -> list[list[str]]:
        log = [json.loads(x) for x in (tmp_path / "log").read_text().splitlines()]
        return [x for x in log if x[0] not in READS]

    return setup, sh, masks, sets


def pairs(masks: dict[int, int]) -> dict[int, tuple[int, int]]:
    return {d: cbm.normalise(m) for d, m in masks.items()}


# --- names, byte for byte ----------------------------------------------------------------------------

@pytest.mark.parametrize(("planned", "now"), [
    ("web\u200b", "web"), ("web", "web\u200b"),               # U+200B: invisible, still a byte sequence
    ("caf\\xe9-prima", "caf\\xe9-prima"),                    # the Latin-1 name vs one spelt with a backslash
], ids=["lost-u200b", "gained-u200b", "latin1-vs-backslash"])
def test_a_name_that_differs_in_any_byte_is_another_domain(xen, planned, now):
    setup, sh, masks, sets = xen
    plan = plan_for({**NAMES, 9: planned})                       # planned: as the store keeps it
    for text in (script([plan]), rollback_script([plan])):
        setup(CURRENT, {**NAMES, 9: now})                         # now: as xl domname prints it
        r = sh(text)
        assert r.returncode == 1, r.stderr
        assert "domain id 9 is now named" in r.stderr and r.stderr.endswith("nothing was changed\n")
        assert sets() == [] and masks() == pairs(CURRENT)


def test_a_latin1_name_matches_the_bytes_xl_prints(xen):
    setup, sh, masks, _sets = xen
    plan = plan_for({**NAMES, 9: "caf\\xe9-prima"})               # how the store keeps b"caf\xe9-prima"
    setup(CURRENT, {**NAMES, 9: b"caf\xe9-prima".decode("utf-8", "surrogateescape")})
    r = sh(script([plan]))
    assert r.returncode == 0, r.stderr
    assert masks() == pairs(TARGET)
    assert "expect_domain 9 'caf\\351-prima'" in script([plan])       # readable, one line, exact


# --- masks: the apply's "before", the rollback's "after" -----------------------------------------------

def test_the_apply_refuses_a_mask_changed_since_planning(xen):
    setup, sh, masks, sets = xen
    plan = plan_for(NAMES)
    drifted = {**CURRENT, 7: 0x7}                                   # someone widened stream meanwhile
    setup(drifted, NAMES)
    r = sh(script([plan]))
    assert r.returncode == 1
    assert r.stderr == ('rdtadvisor: domid 7 "stream" on socket 0: expected mask 0x3, found 0x7; '
                        "nothing was changed\n")
    assert sets() == [] and masks() == pairs(drifted)


def test_the_rollback_restores_what_the_apply_found_never_plan_time_masks_over_a_newer_change(xen):
    setup, sh, masks, sets = xen
    plan = plan_for(NAMES)
    # 1. the apply ran on the plan's "before": the rollback puts back exactly what it found
    setup(CURRENT, NAMES)
    assert sh(script([plan])).returncode == 0
    assert sh(rollback_script([plan])).returncode == 0
    assert masks() == pairs(CURRENT)
    # 2. a mask changed before the apply: the apply refuses, and so does the rollback (the
    #    masks are not what an apply left), so the plan-time 0x3 does not replace today's 0x7
    setup({**CURRENT, 7: 0x7}, NAMES)
    assert sh(script([plan])).returncode == 1
    r = sh(rollback_script([plan]))
    assert r.returncode == 1
    # (it names the first domain not as the apply leaves it: Domain-0, planned down to 0x1)
    assert r.stderr == ('rdtadvisor: domid 0 "Domain-0" on socket 0: expected mask 0x1, found 0x7ff; '
                        "nothing was changed\n")
    assert masks() == pairs({**CURRENT, 7: 0x7}) and sets() == []
    # 3. after the apply, someone re-set web: the rollback refuses to overwrite that decision
    setup(CURRENT, NAMES)
    assert sh(script([plan])).returncode == 0
    after = {**TARGET, 9: 0x7fc}
    setup(after, NAMES)
    r = sh(rollback_script([plan]))
    assert r.returncode == 1 and "domid 9 \"web\" on socket 0: expected mask 0x7f8, found 0x7fc" in r.stderr
    assert masks() == pairs(after)


def test_cdp_masks_are_checked_code_and_data(xen):
    setup, sh, masks, _sets = xen
    current, target = {1: (0xf, 0xffff0), 2: (0xfffff, 0xfffff)}, {1: (0xff, 0xfff00)}
    plan = plan_for({1: "jvm", 2: "db"}, current=current, target=target, version=(4, 14), cdp=True,
                    cbm_len=20)
    setup({**current, 1: (0xf, 0xfff00)}, {1: "jvm", 2: "db"}, cdp=True, cbm_len=20)
    r = sh(script([plan]))
    assert r.returncode == 1
    assert 'domid 1 "jvm" on socket 0: expected mask 0xf 0xffff0, found 0xf 0xfff00' in r.stderr
    setup(current, {1: "jvm", 2: "db"}, cdp=True, cbm_len=20)
    assert sh(script([plan])).returncode == 0
    assert masks()[1] == (0xff, 0xfff00)


def test_xen_before_4_10_reads_the_masks_without_a_level(xen, tmp_path):
    setup, sh, _masks, sets = xen
    plan = plan_for(NAMES, version=(4, 8))
    setup(CURRENT, NAMES)
    r = sh(script([plan]))
    assert r.returncode == 0, r.stderr
    log = [json.loads(x) for x in (tmp_path / "log").read_text().splitlines()]
    assert ["psr-cat-show", "7"] in log and all(c[0] != "psr-cat-show" or "-l" not in c for c in log)
    assert sets()[0][0] == "psr-cat-cbm-set"


# --- calibration sweeps --------------------------------------------------------------------------------

SWEEP_DOMS = [Dom(1, "web\u200b", bw=4e9), Dom(2, "db", bw=3e9)]


def test_a_sweep_checks_exact_names_and_its_original_masks(xen):
    setup, sh, masks, sets = xen
    h = only_host(cal.plan_calibration(tables(SWEEP_DOMS, cbm_len=4), hold=1, interval_s=1))
    setup({1: 0xf, 2: 0xf}, {1: "web", 2: "db"}, cbm_len=4)          # domid 1 lost its U+200B
    r = sh(calibration_script(h))
    assert r.returncode == 1 and "domain id 1 is now named 'web', not 'web\u200b'" in r.stderr
    assert sets() == []
    setup({1: 0xf, 2: 0x3}, {1: "web\u200b", 2: "db"}, cbm_len=4)     # db narrowed since the schedule
    r = sh(calibration_script(h))
    assert r.returncode == 1 and 'domid 2 "db" on socket 0: expected mask 0xf, found 0x3' in r.stderr
    assert sets() == [] and masks() == pairs({1: 0xf, 2: 0x3})
    # (a sweep from its original masks runs to the end: tests/test_calibrate.py)


def test_the_sweep_rollback_skips_an_id_whose_name_differs_in_one_byte(xen):
    setup, sh, masks, _sets = xen
    h = only_host(cal.plan_calibration(tables(SWEEP_DOMS, cbm_len=4), hold=1, interval_s=1))
    setup({1: 0x1, 2: 0x3}, {1: "web", 2: "db"}, cbm_len=4)
    r = sh(calibration_rollback_script(h))
    assert r.returncode == 1
    assert "socket 0 domid 1: the id is gone or names another domain now" in r.stderr
    assert masks()[1] == (0x1, 0x1) and masks()[2] == (0xf, 0xf)
