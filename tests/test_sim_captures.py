"""The measurement model: simulated truth -> byte-exact xl captures -> the collector's tables.

Hand-made `HostTruth`s (random occupancy/bandwidth, known masks) make every expectation exact;
the last tests run the real scenario -> truth -> captures -> `collect --replay` chain.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from rdtadvisor.cli import cli
from rdtadvisor.cli.simulate import command as simulate_command
from rdtadvisor.core.units import KIB, MIB
from rdtadvisor.sim import measure, model, presets
from rdtadvisor.sim.measure import Quirks
from rdtadvisor.sim.scenario import HostSpec, MaskChange, VmSpec, parse_scenario
from rdtadvisor.sim.truth import HostTruth
from rdtadvisor.sources.capture import read_capture, write_capture
from rdtadvisor.store.frames import capture_frames
from rdtadvisor.xl import cmt, domains
from tests.clirun import run

START = datetime(2026, 11, 20, tzinfo=UTC)


# --- builders -------------------------------------------------------------------------------

def vm(name: str, domid: int, socket: int = 0, *, attached: bool = True, cbm: int | None = None,
       code: int | None = None, data: int | None = None, l2: int | None = None, thrtl: int | None = None,
       changes: tuple[MaskChange, ...] = (), vcpus: int = 2) -> VmSpec:
    inner = model.Vm(name, model.Curve(0.5, 8 * MIB), apki=5.0, vcpus=vcpus)
    return VmSpec(name=name, domid=domid, socket=socket, profile="web", vm=inner,
                  memory_bytes=(domid + 2) * 1024 * MIB, cbm=cbm, code_cbm=code, data_cbm=data, l2_cbm=l2,
                  mba_thrtl=thrtl, attached=attached, phases=(), mask_changes=changes)


def host(preset: str = "tiny", xen: str = "4.19.1", sockets: tuple[int, ...] = (0, 1), *, cdp: bool = False,
         mba: bool = True, vms: list[VmSpec] | None = None, name: str = "h1") -> HostSpec:
    vms = vms or [vm("Domain-0", 0), vm("web-1", 1), vm("db-2", 2, socket=sockets[-1]),
                  vm("idle-3", 3, attached=False)]
    return HostSpec(name=name, xen=xen, preset=presets.get(preset), sockets=sockets, cdp=cdp, mba=mba,
                    vms=tuple(vms), memory_bytes=256 * 1024 * MIB)


def truth(h: HostSpec, T: int = 12, step_s: int = 60, seed: int = 0, masks: np.ndarray | None = None,
          occupancy: np.ndarray | None = None, bandwidth: np.ndarray | None = None) -> HostTruth:
    rng = np.random.default_rng(seed)
    n = len(h.vms)
    times = pd.date_range(START, periods=T, freq=f"{step_s}s")
    occ = rng.uniform(0, h.preset.l3_bytes / n, (T, n)) if occupancy is None else occupancy
    bw = rng.uniform(1e6, 3e9, (T, n)) if bandwidth is None else bandwidth
    full = (1 << h.preset.ways) - 1
    masks = np.full((T, n), full, dtype=np.int64) if masks is None else masks
    return HostTruth(host=h, times=times, occupancy=occ, bandwidth=bw, local_bandwidth=bw * 0.75,
                     misses=bw / 64, speed=np.ones((T, n)), load=rng.uniform(0, 1, (T, n)), masks=masks,
                     utilisation={s: np.zeros(T) for s in h.sockets})


def frames_of(captures: list) -> dict[str, pd.DataFrame]:
    parts = [capture_frames(c) for c in captures]
    return {k: pd.concat([p[k] for p in parts], ignore_index=True) for k in parts[0]}


def samples(frames: dict, metric: str) -> pd.DataFrame:
    s = frames["samples"]
    return s[s["metric"] == metric]


def texts(captures: list) -> list[tuple[str, str, str, int | None]]:
    return [(name, r.stdout, r.stderr, r.exit_status)
            for c in captures for name, r in sorted(c.results.items())]


# --- the fast printers are the project's renderers ------------------------------------------

NAMES = ["Domain-0", "web-1", "a-very-long-domain-name-that-exceeds-forty-chars", "naïve-ünïcode-name",
         "100%-busy", "x" * 40]


@pytest.mark.parametrize("metric", ["cache-occupancy", "total-mem-bandwidth"])
def test_cmt_template_is_byte_identical_to_cmt_render(metric: str) -> None:
    rng = np.random.default_rng(1)
    ids = list(range(len(NAMES)))
    tpl = measure.CmtTemplate(metric, 175, (0, 1), 28160 * KIB, NAMES, ids)
    for _ in range(20):
        kib = rng.integers(0, 10**9, (len(NAMES), 2))
        l3 = {0: 28160 * KIB, 1: 28160 * KIB} if metric == "cache-occupancy" else {}
        table = cmt.CmtTable(metric, 175, (0, 1), l3, np.array(ids), NAMES, kib * KIB,
                             np.ones(len(NAMES), dtype=bool))
        assert tpl.render(kib) == cmt.render(table)
        # A failed cell: xl prints the other socket's value only (cmt.render drops the last one).
        fail = np.zeros_like(kib)
        fail[2, 0] = 1
        shifted = kib.copy()
        shifted[2] = [kib[2, 1], 0]
        complete = np.ones(len(NAMES), dtype=bool)
        complete[2] = False
        table = replace(table, values=shifted * KIB, complete=complete)
        assert tpl.render(kib, fail) == cmt.render(table)


def test_list_template_is_byte_identical_to_domains_render() -> None:
    rng = np.random.default_rng(2)
    rows = [(name, i, (i + 1) * 3000 * MIB + 12345, i + 1) for i, name in enumerate(NAMES)]
    tpl = measure.ListTemplate(rows)
    for _ in range(20):
        cpu = measure._c_float(rng.uniform(0, 1e8, len(rows))).tolist()
        states = [("r-----", "-b----")[int(b)] for b in rng.integers(0, 2, len(rows))]
        listing = domains.DomainList(tuple(domains.Domain(d, n, m, v, s, c) for (n, d, m, v), s, c
                                           in zip(rows, states, cpu, strict=True)))
        assert tpl.render(states, cpu) == domains.render(listing)


# --- parse back -----------------------------------------------------------------------------

def test_without_quirks_captures_parse_back_to_the_truth_within_kib_truncation() -> None:
    h = host()
    tr = truth(h)
    frames = frames_of(list(measure.host_captures(tr, seed=3, quirks=Quirks.off())))
    assert frames["events"].empty
    vms = list(h.vms)
    for metric, values, bandwidth in (("l3_occupancy", tr.occupancy, False),
                                      ("mem_bw_total", tr.bandwidth, True),
                                      ("mem_bw_local", tr.local_bandwidth, True)):
        got = samples(frames, metric)
        assert set(got["reading"]) == ({0, 1, 2} if bandwidth else {0})
        for j, v in enumerate(vms):
            rows = got[got["domid"] == v.domid]
            if not v.attached:
                assert rows.empty
                continue
            home = rows[rows["socket"] == v.socket].sort_values(["time", "reading"])
            expect = np.repeat(np.floor(values[:, j]).astype(np.int64) // KIB * KIB, 3 if bandwidth else 1)
            assert home["value"].tolist() == expect.tolist()
            assert (rows[rows["socket"] != v.socket]["value"] == 0).all()
    settings = frames["settings"]
    assert set(settings["setting"]) == {"l3_cbm", "l2_cbm", "mba_thrtl"}
    assert (settings[settings["setting"] == "l3_cbm"]["value"] == 0xF).all()
    listed = frames["domains"]
    assert len(listed) == len(vms) * len(tr.times)
    assert listed.groupby("domid")["memory_bytes"].first().to_dict() == {v.domid: v.memory_bytes for v in vms}


def test_quantisation_keeps_every_figure_within_one_counter_unit() -> None:
    h = host("skylake-sp")
    tr = truth(h, T=30, seed=5)
    m = measure.measure(tr, seed=1, quirks=Quirks.exact())
    frames = frames_of(list(measure.render_captures(m)))
    unit = h.preset.upscale_bytes
    vms = list(h.vms)
    occ = samples(frames, "l3_occupancy")
    tot = samples(frames, "mem_bw_total")
    for j, v in enumerate(vms):
        if not v.attached:
            continue
        mine = occ[(occ["domid"] == v.domid) & (occ["socket"] == v.socket)]
        got = mine.sort_values("time")["value"].to_numpy()
        assert np.all(got <= tr.occupancy[:, j]) and np.all(got > tr.occupancy[:, j] - unit - KIB)
        assert np.all(got % unit == 0)                   # whole upscaling units (56 KiB: whole KiB too)
        bw = tot[(tot["domid"] == v.domid) & (tot["socket"] == v.socket)].sort_values(["time", "reading"])
        got = bw["value"].to_numpy().reshape(-1, 3)
        step = unit * 1e9 / measure.WINDOW_NS            # one counter unit per 10 ms window [B/s]
        assert np.all(got <= tr.bandwidth[:, j, None]) and np.all(got > tr.bandwidth[:, j, None] - step - KIB)


def test_with_noise_the_median_reading_is_in_the_noise_band() -> None:
    h = host("skylake-sp", vms=[vm("Domain-0", 0)] + [vm(f"vm-{i}", i, socket=i % 2) for i in range(1, 8)])
    T = 250
    bw = np.tile(np.linspace(50e6, 5e9, 8), (T, 1))
    tr = truth(h, T=T, bandwidth=bw)
    q = replace(Quirks(), overflow_rate=0.0, missing_rate=0.0)
    m = measure.measure(tr, seed=11, quirks=q)
    rows = []
    for cap in measure.render_captures(m):   # the collector's parser, without the frame building (speed)
        for name, result in cap.results.items():
            if "total-mem-bandwidth" in name:
                table = cmt.parse(result.stdout, "total-mem-bandwidth")
                for i, domid in enumerate(table.domids.tolist()):
                    rows += [(domid, sock, int(table.values[i, j])) for j, sock in enumerate(table.sockets)]
    tot = pd.DataFrame(rows, columns=["domid", "socket", "value"])
    sigma = q.bandwidth_sigma
    for j, v in enumerate(h.vms):
        i = int(np.flatnonzero(m.order == j)[0])
        counted = bw[0, j] * m.prefetch[i] * m.erratum[i]
        got = tot[(tot["domid"] == v.domid) & (tot["socket"] == v.socket)]["value"].to_numpy()
        assert len(got) == 3 * T
        ratio = np.median(got) / counted
        median = math.exp(-sigma**2 / 2)                 # lognormal with mean 1
        assert abs(ratio - median) < 0.06, (v.name, ratio)
        assert abs(np.mean(got) / counted - 1) < 0.06
        # Each reading is its own draw: the three readings of one collection differ.
        per_step = got.reshape(T, 3)
        assert (per_step[:, 0] != per_step[:, 1]).mean() > 0.9
    assert m.prefetch.min() >= 1.0 and m.prefetch.max() <= 1.3


# --- determinism ----------------------------------------------------------------------------

def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    h = host("skylake-sp")
    tr = truth(h, T=20)
    a = list(measure.host_captures(tr, seed=42))
    b = list(measure.host_captures(tr, seed=42))
    c = list(measure.host_captures(tr, seed=43))
    assert texts(a) == texts(b)
    assert texts(a) != texts(c)
    for root, caps in (("a", a), ("b", b)):
        for cap in caps:
            write_capture(tmp_path / root, cap)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files_a
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files_a)


def test_switching_one_quirk_off_leaves_the_others_draws_alone() -> None:
    tr = truth(host("skylake-sp"), T=10)
    a = measure.measure(tr, seed=5)
    b = measure.measure(tr, seed=5, quirks=replace(Quirks(), missing_rate=0.0, overflow_rate=0.0))
    assert np.array_equal(a.total, b.total) and np.array_equal(a.occupancy, b.occupancy)


# --- visibility -----------------------------------------------------------------------------

def test_unattached_domains_are_absent_from_cmt_but_listed_elsewhere() -> None:
    caps = list(measure.host_captures(truth(host()), seed=1))
    for cap in caps:
        for name, result in cap.results.items():
            if "cmt-show" in name:
                assert "idle-3" not in result.stdout and "web-1" in result.stdout
            elif name in ("xl-list.txt", "xl-psr-cat-show.txt", "xl-psr-mba-show.txt"):
                assert "idle-3" in result.stdout


def test_rmids_run_out_at_total_rmid() -> None:
    # tiny: Total RMID 7. Nine attached domains: the last two (by domid) get no RMID.
    h = host(vms=[vm("Domain-0", 0)] + [vm(f"vm-{i}", i) for i in range(1, 9)])
    cap = next(measure.host_captures(truth(h, T=1), seed=1, quirks=Quirks.off()))
    table = cmt.parse(cap.results["xl-psr-cmt-show-cache-occupancy.txt"].stdout, "cache-occupancy")
    assert table.total_rmid == 7 and table.domids.tolist() == list(range(7))


# --- Xen versions ---------------------------------------------------------------------------

BW = ["xl-psr-cmt-show-total-mem-bandwidth.txt", "xl-psr-cmt-show-local-mem-bandwidth.txt",
      "xl-psr-cmt-show-total-mem-bandwidth.1.txt", "xl-psr-cmt-show-local-mem-bandwidth.1.txt",
      "xl-psr-cmt-show-total-mem-bandwidth.2.txt", "xl-psr-cmt-show-local-mem-bandwidth.2.txt"]
BASE = ["xl-info.txt", "xl-list.txt"]
OCC = ["xl-psr-cmt-show-cache-occupancy.txt"]


@pytest.mark.parametrize(("xen", "preset", "mba", "files", "hw_status"), [
    ("4.5.5", "skylake-sp", False, BASE + OCC, None),
    ("4.6.6", "skylake-sp", False, [*BASE, "xl-psr-hwinfo.txt", *OCC, *BW, "xl-psr-cat-show.txt"], 0),
    ("4.10.4", "skylake-sp", False, [*BASE, "xl-psr-hwinfo.txt", *OCC, *BW, "xl-psr-cat-show.txt"], 253),
    ("4.10.4", "sapphire-rapids", False,
     [*BASE, "xl-psr-hwinfo.txt", *OCC, *BW, "xl-psr-cat-show.txt", "xl-psr-cat-show-l2.txt"], 0),
    ("4.11.4", "skylake-sp", True,
     [*BASE, "xl-psr-hwinfo.txt", *OCC, *BW, "xl-psr-cat-show.txt", "xl-psr-mba-show.txt"], 0),
    ("4.19.1", "broadwell-ep", False, [*BASE, "xl-psr-hwinfo.txt", *OCC, *BW, "xl-psr-cat-show.txt"], 253),
    ("4.19.1", "haswell-ep", False, [*BASE, "xl-psr-hwinfo.txt", *OCC, "xl-psr-cat-show.txt"], 253),
    ("4.19.1", "denverton", False, [*BASE, "xl-psr-hwinfo.txt", "xl-psr-cat-show-l2.txt"], 253),
])
def test_the_xen_version_and_the_part_decide_the_files(xen: str, preset: str, mba: bool, files: list[str],
                                                        hw_status: int | None) -> None:
    h = host(preset, xen, sockets=(0,), mba=mba, vms=[vm("Domain-0", 0), vm("web-1", 1)])
    caps = list(measure.host_captures(truth(h, T=3), seed=1, quirks=Quirks.off()))
    assert sorted(caps[0].results) == sorted(files)
    if hw_status is not None:
        assert caps[0].results["xl-psr-hwinfo.txt"].exit_status == hw_status
    if xen.startswith("4.5"):
        assert caps[0].results[OCC[0]].argv == ("xl", "psr-cmt-show", "cache_occupancy")
    frames = frames_of(caps)
    assert not (frames["events"]["kind"] == "parse-error").any()
    assert frames["facts"].loc[frames["facts"]["fact"] == "xen_version", "text"].iloc[0] == xen


def test_cdp_host_shows_code_and_data_masks_and_halved_cos() -> None:
    full = (1 << 20) - 1
    vms = [vm("Domain-0", 0), vm("jvm-1", 1, code=0xF, data=0xFFFF0), vm("jvm-2", 2)]
    h = host("broadwell-ep", "4.14.6", cdp=True, mba=False, vms=vms)
    T = 4
    masks = np.array([[full, 0xFFFF0, full]] * T, dtype=np.int64)
    code = np.array([[full, 0xF, full]] * T, dtype=np.int64)
    tr = replace(truth(h, T=T, masks=masks), code_masks=code)
    frames = frames_of(list(measure.host_captures(tr, seed=1, quirks=Quirks.off())))
    s = frames["settings"]
    jvm = s[s["domid"] == 1].set_index("setting")["value"].groupby(level=0).first().to_dict()
    assert jvm == {"l3_code_cbm": 0xF, "l3_data_cbm": 0xFFFF0}
    facts = frames["facts"]
    assert facts.loc[facts["fact"] == "l3_cos_max", "value"].iloc[0] == (15 - 1) >> 1
    assert facts.loc[facts["fact"] == "l3_cdp", "value"].iloc[0] == 1


def test_mask_changes_show_in_cat_show_and_mba_throttles_as_xen_stores_them() -> None:
    vms = [vm("Domain-0", 0), vm("db-1", 1, thrtl=37), vm("web-2", 2)]
    h = host("skylake-sp", vms=vms)
    T = 6
    full = (1 << 11) - 1
    masks = np.full((T, 3), full, dtype=np.int64)
    masks[3:, 1] = 0x7F0
    frames = frames_of(list(measure.host_captures(truth(h, T=T, masks=masks), seed=1, quirks=Quirks.off())))
    s = frames["settings"]
    db = s[(s["domid"] == 1) & (s["setting"] == "l3_cbm")].groupby("time")["value"].first().tolist()
    assert db == [full] * 3 + [0x7F0] * 3
    assert (s[(s["domid"] == 1) & (s["setting"] == "mba_thrtl")]["value"] == 30).all()  # 37 - 37 % 10


# --- quirks ---------------------------------------------------------------------------------

def test_missing_cells_and_overflows_drop_cells_and_say_so_on_stderr() -> None:
    h = host("skylake-sp", "4.19.1")
    q = replace(Quirks.off(), missing_rate=0.05, overflow_rate=0.05)
    caps = list(measure.host_captures(truth(h, T=40), seed=2, quirks=q))
    stderr = "".join(r.stderr for c in caps for r in c.results.values())
    assert "event counter overflowed\n" in stderr
    assert "Domain 1:failed to get monitoring data" in stderr
    assert "Domain 0:" not in stderr and ": failed to get monitoring data" in stderr  # dom0: no prefix
    events = frames_of(caps)["events"]
    assert {"counter-overflow", "sample-failed", "parse-warning"} <= set(events["kind"])
    for c in caps:
        for r in c.results.values():
            assert r.exit_status == 0 or r.argv[1] == "psr-hwinfo"
    old = list(measure.host_captures(truth(host("skylake-sp", "4.6.6", mba=False), T=40), seed=2, quirks=q))
    old_err = "".join(r.stderr for c in old for r in c.results.values())
    assert "failed to get monitoring data" in old_err and "Domain 1:" not in old_err  # prefix since 4.9


def test_mbm_erratum_divides_high_rmids_by_the_correction_factor() -> None:
    # tiny: RMIDs above 3 are mis-counted by 1/1.25 (Linux multiplies by cf; Xen does not).
    vms = [vm("Domain-0", 0)] + [vm(f"vm-{i}", i) for i in range(1, 6)]
    h = host(vms=vms)
    bw = np.full((4, 6), 1e9)
    tr = truth(h, T=4, bandwidth=bw)
    m = measure.measure(tr, seed=1, quirks=replace(Quirks.off(), mbm_erratum=True))
    assert m.rmid.tolist() == [1, 2, 3, 4, 5, 6]
    assert np.allclose(m.erratum, [1, 1, 1, 1 / 1.25, 1 / 1.25, 1 / 1.25])
    got = m.total[0, 0, :, 0]
    assert np.allclose(got[:3], 1e9, rtol=1e-6) and np.allclose(got[3:], 0.8e9, rtol=1e-6)
    off = measure.measure(tr, seed=1, quirks=Quirks.off())
    assert np.allclose(off.total[0, 0, :, 0], 1e9, rtol=1e-6)


def test_occupancy_drains_after_a_shrink_with_the_documented_time_constant() -> None:
    vms = [vm("Domain-0", 0), vm("db-1", 1), vm("web-2", 2)]
    h = host("skylake-sp", vms=vms, sockets=(0,))
    T, full = 20, (1 << 11) - 1
    occ = np.full((T, 3), 1.0 * MIB)
    occ[:, 1] = 20 * MIB
    occ[5:, 1] = 4 * MIB                       # the shrink at step 5 lowers the equilibrium
    masks = np.full((T, 3), full, dtype=np.int64)
    masks[5:, 1] = 0x3
    tau = 180.0
    q = replace(Quirks.off(), occupancy_lag_s=tau)
    m = measure.measure(truth(h, T=T, masks=masks, occupancy=occ), seed=1, quirks=q)
    got = m.occupancy[:, 1, 0]
    assert np.all(got[:5] == 20 * MIB)
    expect = 4 * MIB + 16 * MIB * np.exp(-60.0 * np.arange(1, 6) / tau)
    assert np.allclose(got[5:10], expect, rtol=1e-6)
    assert got[-1] < 4 * MIB + 0.2 * MIB
    assert np.all(m.occupancy[:, :, 0].sum(axis=1) <= h.preset.l3_bytes)
    growth = measure.measure(truth(h, T=T, masks=masks, occupancy=occ[::-1].copy()), seed=1, quirks=q)
    assert np.array_equal(growth.occupancy[:, 1, 0], occ[::-1, 1].astype(np.int64))  # growth is immediate


def test_vms_show_a_little_on_their_other_socket() -> None:
    h = host("skylake-sp")
    tr = truth(h, T=30, occupancy=np.full((30, 4), 8.0 * MIB))
    m = measure.measure(tr, seed=1)
    web = int(np.flatnonzero(np.array([v.name for v in h.vms])[m.order] == "web-1")[0])
    other = m.occupancy[:, web, 1]
    assert other.max() > 0 and other.mean() < 0.05 * 8 * MIB
    assert 0 < m.total[:, :, web, 1].mean() < 0.02 * m.total[:, :, web, 0].mean()


# --- end to end -----------------------------------------------------------------------------

TINY = """
name = "tiny-fleet"
start = 2026-11-20T00:00:00Z
duration = "30m"
step = "10m"
seed = 3

[[hosts]]
name = "xen-a"
preset = "skylake-sp"
xen = "4.19.1"
mba = true
  [[hosts.vms]]
  name = "db"
  profile = "cache-sensitive-db"
  socket = 0
  [[hosts.vms]]
  name = "noisy"
  profile = "noisy"
  socket = 0
    [[hosts.vms.phases]]
    kind = "burst"
    every = "20m"
    length = "5m"
  [[hosts.vms]]
  name = "quiet"
  profile = "idle"
  attached = false

[[hosts]]
name = "xen-b"
preset = "broadwell-ep"
xen = "4.14.6"
cdp = true
  [[hosts.vms]]
  name = "jvm"
  profile = "web"
  code_cbm = "0xf"
  data_cbm = "0xffff0"

[[hosts]]
name = "xen-c"
preset = "haswell-ep"
xen = "4.5.5"
sockets = 1
  [[hosts.vms]]
  name = "old"
  profile = "batch"
"""


@pytest.fixture
def tiny_scenario(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture
def registered():
    """`simulate` is a command of the real CLI group."""
    assert "simulate" in cli.commands


def test_simulate_writes_captures_that_collect_replay_stores(tiny_scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "captures"
    result = CliRunner().invoke(simulate_command, [str(tiny_scenario), "--out", str(out)])
    assert result.exit_code == 0, result.output
    hosts = sorted(p.name for p in out.iterdir())
    assert hosts == ["xen-a", "xen-b", "xen-c"]
    assert all(len(list((out / h).iterdir())) == 3 for h in hosts)          # 30m / 10m
    cap = read_capture(sorted((out / "xen-a").iterdir())[0])
    assert "quiet" not in cap.results["xl-psr-cmt-show-cache-occupancy.txt"].stdout
    assert "quiet" in cap.results["xl-list.txt"].stdout
    legacy = sorted(p.name for p in sorted((out / "xen-c").iterdir())[0].iterdir())
    assert legacy == ["meta.json", "xl-info.txt", "xl-list.txt", "xl-psr-cmt-show-cache-occupancy.txt"]
    store = tmp_path / "store"
    stored = run("--store", str(store), "collect", "--replay", str(out))
    assert stored.exit_code == 0, stored.stderr
    again = tmp_path / "again"
    result = CliRunner().invoke(simulate_command, [str(tiny_scenario), "--out", str(again), "-q"])
    assert result.exit_code == 0
    for f in (p for p in out.rglob("*") if p.is_file()):
        assert f.read_bytes() == (again / f.relative_to(out)).read_bytes()


def test_simulate_overrides_and_parallel_workers_give_the_same_bytes(tiny_scenario: Path,
                                                                     tmp_path: Path) -> None:
    from rdtadvisor.sim.scenario import load_scenario

    sc = load_scenario(tiny_scenario, seed=9)
    one = measure.write_fleet(sc, tmp_path / "one", duration=timedelta(minutes=20), step=timedelta(minutes=5),
                              workers=1)
    two = measure.write_fleet(sc, tmp_path / "two", duration=timedelta(minutes=20), step=timedelta(minutes=5),
                              workers=2)
    assert one.captures == two.captures == 3 * 4 and two.workers == 2
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert all((tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes() for f in files)
    result = CliRunner().invoke(simulate_command, [str(tiny_scenario), "--out", str(tmp_path / "cli"),
                                                   "--duration", "20m", "--step", "5m", "--seed", "9", "-q"])
    assert result.exit_code == 0, result.output
    assert all((tmp_path / "one" / f).read_bytes() == (tmp_path / "cli" / f).read_bytes() for f in files)
    result = CliRunner().invoke(simulate_command, [str(tiny_scenario), "--out", str(tmp_path / "plain"),
                                                   "--no-quirks", "--workers", "1", "-q"])
    assert result.exit_code == 0, result.output
    metas = [read_capture(p) for p in sorted((tmp_path / "plain" / "xen-a").iterdir())]
    assert all(not r.stderr for c in metas for n, r in c.results.items() if "cmt-show" in n)


def test_simulate_refuses_a_non_empty_folder_unless_forced(tiny_scenario: Path, tmp_path: Path,
                                                           registered: None) -> None:
    out = tmp_path / "captures"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused = run("simulate", str(tiny_scenario), "--out", str(out), "-q")
    assert refused.exit_code == 2 and "not empty" in refused.stderr
    assert run("simulate", str(tiny_scenario), "--out", str(out), "-q", "--force").exit_code == 0
    assert run("simulate", str(tiny_scenario), "--out", str(out), "-q", "--force").exit_code == 0  # replaces
    assert (out / "notes.txt").read_text() == "mine"
    assert len(list((out / "xen-a").iterdir())) == 3


def test_simulate_bad_scenario_is_a_config_error(tmp_path: Path, registered: None) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[hosts]]\nname = "h"\npreset = "pentium-4"\n')
    result = run("simulate", str(bad), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "pentium-4" in result.stderr
    result = run("simulate", str(bad.with_name("missing.toml")), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2


def test_demo_fleet_is_valid_and_tells_its_stories() -> None:
    import tomllib

    path = Path(__file__).resolve().parents[1] / "samples" / "demo-fleet.toml"
    sc = parse_scenario(tomllib.loads(path.read_text()), source=str(path))
    assert len(sc.hosts) == 6 and sc.duration == timedelta(days=2) and sc.step == timedelta(minutes=5)
    assert all(8 <= len(h.vms) <= 30 for h in sc.hosts)
    versions = {h.xen_major_minor for h in sc.hosts}
    assert any(v >= (4, 19) for v in versions)
    assert any(h.xen_major_minor == (4, 14) and h.cdp for h in sc.hosts)
    assert any(h.xen_major_minor == (4, 11) and h.mba for h in sc.hosts)
    assert sum(not v.attached for h in sc.hosts for v in h.vms) >= 1
    assert any(v.mask_changes for h in sc.hosts for v in h.vms)
    profiles = {v.profile for h in sc.hosts for v in h.vms}
    assert {"noisy", "stream", "cache-sensitive-db"} <= profiles
