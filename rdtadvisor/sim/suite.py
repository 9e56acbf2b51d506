"""The built-in advice suite: seeded socket scenarios every CAT advisor is scored on.

`scenarios()` returns the full suite (23 sockets, 3-8 VMs), `quick()` a 6-scenario subset
for tests and ``bench-advice --quick``. Each scenario is plain data (`SuiteScenario`): a
`Socket`, the VMs' hidden truth and the usable COS count. VM parameters are drawn from
ranges with the scenario's own seed, so one scenario can change without moving the others.

Sockets come from `rdtadvisor.sim.presets` (L3, ways, ``Maximum COS``, sustained bandwidth =
75% of channels x MT/s x 8 B, clock; each with its sources there), except the 12-way
Broadwell-D of KPart's testbed, which has no preset:

================================ ======== ==== ============ =========
part                             L3       ways sustained bw COS (Xen)
================================ ======== ==== ============ =========
Skylake-SP Gold 6148             27.5 MiB 11   96 GB/s      15
Broadwell-EP E5-2698 v4          50 MiB   20   58 GB/s      15
Haswell-EP E5-2699 v3            45 MiB   20   51 GB/s      3
Ice Lake-SP 8380                 60 MiB   12   154 GB/s     15
Sapphire Rapids 8480+            105 MiB  15   230 GB/s     15
Broadwell-D D-1540 (KPart)       12 MiB   12   25 GB/s      15
================================ ======== ==== ============ =========

(Broadwell-D: 12 MB, 12 partitions [src KPart README]; 2 x DDR4-2133 = 34 GB/s theoretical,
25 GB/s taken as sustained [derived, 75%]; 2.0 GHz [recalled].) Some scenarios take a
smaller COS budget on purpose, each saying why (CDP halving, COS kept back by policy), to
reproduce the "<= 4 COS" setting of the random mixes (``docs/algorithms.md``, "Judging advice").

VM archetypes (miss curve, `rdtadvisor.cache.curve.Curve`; Hartstein et al.: alpha 0.3-0.7):

* ``sensitive``: alpha 0.3-0.9, working set 4-40 MiB, 5-25 L3 accesses per kilo-instruction;
* ``streaming``: alpha 0.02, working set far beyond the L3 (misses do not fall), 20-60 APKI;
* ``small``: working set 0.5-2 MiB (fits in a way or two), 1-8 APKI — a victim, not a polluter;
* ``dom0``: Domain-0, small and quiet, but a domain like any other for the COS budget.

In scenarios whose socket has at most 6 VMs the optimum searches both layout families of
`rdtadvisor.cache.layouts`; the 8-VM COS-starved scenario searches family (a) only
(``overlapping=False``: family (b) is 2.2 million layouts there).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from rdtadvisor.cache.curve import Curve
from rdtadvisor.sim import presets
from rdtadvisor.sim.harness import SuiteScenario
from rdtadvisor.sim.model import MIB, Socket, Vm

SKX = presets.get("skylake-sp-gold-6148").socket()
BDW = presets.get("broadwell-ep-e5-2698-v4").socket()
HSW = presets.get("haswell-ep-e5-2699-v3").socket()
ICX = presets.get("ice-lake-sp-8380").socket()
SPR = presets.get("sapphire-rapids-8480").socket()
BDWD = Socket(l3_bytes=12 * MIB, ways=12, bw_bytes_s=25e9, freq_hz=2.0e9)


def sensitive(rng: np.random.Generator, name: str, *, ws_mib: tuple[float, float] = (4, 40),
              apki: tuple[float, float] = (5, 25), priority: float = 1.0, vcpus: int = 4) -> Vm:
    alpha = float(rng.uniform(0.3, 0.9))
    return Vm(name, Curve(alpha, float(rng.uniform(*ws_mib)) * MIB, floor=float(rng.uniform(0.01, 0.05))),
              apki=float(rng.uniform(*apki)), cpi0=float(rng.uniform(0.6, 1.2)), vcpus=vcpus,
              priority=priority, mlp=float(rng.uniform(1.5, 3.0)))


def streaming(rng: np.random.Generator, name: str, *, apki: tuple[float, float] = (20, 60),
              vcpus: int = 4, priority: float = 1.0) -> Vm:
    return Vm(name, Curve(0.02, 1024.0 * 1024 * MIB, floor=0.9), apki=float(rng.uniform(*apki)),
              cpi0=float(rng.uniform(0.8, 1.5)), vcpus=vcpus, priority=priority,
              mlp=float(rng.uniform(4.0, 8.0)), writeback=0.5)


def small(rng: np.random.Generator, name: str, *, vcpus: int = 2, priority: float = 1.0) -> Vm:
    return Vm(name, Curve(float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.5, 2.0)) * MIB,
                          floor=float(rng.uniform(0.01, 0.05))),
              apki=float(rng.uniform(1, 8)), cpi0=float(rng.uniform(0.6, 1.0)), vcpus=vcpus,
              priority=priority, mlp=float(rng.uniform(1.5, 2.5)))


def dom0(rng: np.random.Generator) -> Vm:
    return Vm("Domain-0", Curve(0.5, float(rng.uniform(0.5, 1.5)) * MIB), apki=float(rng.uniform(1, 3)),
              cpi0=1.0, vcpus=2, mlp=1.5)


def random_mix(rng: np.random.Generator, n: int) -> list[Vm]:
    """A random mix: each VM sensitive / streaming / small with probability 0.5 / 0.25 / 0.25."""
    kinds = rng.choice(3, size=n, p=[0.5, 0.25, 0.25])
    make = (sensitive, streaming, small)
    return [make[k](rng, f"{('db', 'stream', 'web')[k]}{i}") for i, k in enumerate(kinds)]


def _sc(name: str, socket: Socket, seed: int, build, cos_budget: int, description: str,
        tags: tuple[str, ...] = (), overlapping: bool = True) -> SuiteScenario:
    rng = np.random.default_rng(seed)
    return SuiteScenario(name=name, socket=socket, vms=tuple(build(rng)), cos_budget=cos_budget,
                         description=description, seed=seed, tags=tags, overlapping=overlapping)


def scenarios() -> list[SuiteScenario]:
    """The full suite, in a fixed order."""
    s: list[SuiteScenario] = [
        _sc("skx-stream-neighbour", SKX, 101,
            lambda r: [streaming(r, "stream"), sensitive(r, "db1"), sensitive(r, "db2"), sensitive(r, "db3"),
                       small(r, "web")],
            15, "a streaming VM next to three cache-sensitive ones and a small one", ("streaming",)),
        _sc("skx-two-streams-4cos", SKX, 102,
            lambda r: [streaming(r, "etl1"), streaming(r, "etl2"), sensitive(r, "db1"), sensitive(r, "db2"),
                       small(r, "web1"), small(r, "web2")],
            4, "two streaming VMs, 6 VMs, 4 COS left for guests by policy (the random mixes' setting)",
            ("streaming",)),
        _sc("skx-all-small", SKX, 103, lambda r: [small(r, f"web{i}") for i in range(6)],
            15, "six small-footprint VMs: nothing to gain, nothing must be lost", ("small",)),
        _sc("skx-bw-saturated", SKX, 104,
            lambda r: [streaming(r, "hpc1", apki=(50, 80), vcpus=8),
                       streaming(r, "hpc2", apki=(50, 80), vcpus=8),
                       sensitive(r, "db", apki=(15, 30)), sensitive(r, "cache", apki=(15, 30)),
                       small(r, "web")],
            15, "two heavy streams push the socket to its bandwidth limit", ("bandwidth", "streaming")),
        _sc("skx-sensitive-pairs", SKX, 105,
            lambda r: [sensitive(r, f"db{i}", ws_mib=(8, 24), apki=(10, 25)) for i in range(4)],
            15, "four cache-sensitive VMs whose working sets together exceed the L3", ("sensitive",)),
        _sc("skx-priorities", SKX, 106,
            lambda r: [sensitive(r, "oltp", ws_mib=(10, 25), priority=3.0), streaming(r, "backup"),
                       sensitive(r, "analytics"), small(r, "web1"), small(r, "web2")],
            15, "a priority-3 OLTP VM, a backup stream and three best-effort VMs", ("priority", "streaming")),
        _sc("skx-dom0-4cos", SKX, 107,
            lambda r: [dom0(r), streaming(r, "stream"), sensitive(r, "db1"), sensitive(r, "db2"),
                       small(r, "web1"), small(r, "web2")],
            4, "Domain-0 plus five guests; every domain counts against 4 COS", ("dom0", "streaming")),
        _sc("skx-cos-starved-7", SKX, 108,
            lambda r: [streaming(r, "stream"), *[sensitive(r, f"db{i}") for i in range(3)],
                       *[small(r, f"web{i}") for i in range(3)]],
            3, "seven VMs, 3 COS left for guests (policy keeps the rest for I/O and Domain-0 classes)",
            ("cos-starved", "streaming")),
        _sc("skx-remote-memory", SKX, 109,
            lambda r: [replace(sensitive(r, "db-remote"), remote=0.6), streaming(r, "stream"),
                       sensitive(r, "db")],
            15, "three VMs, one with most of its memory on the other node", ("numa", "streaming")),
    ]
    s += [_sc(f"skx-mix-{k}", SKX, 200 + k, lambda r: random_mix(r, 6), 4,
              "random mix: 6 VMs, 11 ways, 4 COS", ("mix",)) for k in range(5)]
    s += [
        _sc("bdw-stream-neighbour", BDW, 301,
            lambda r: [streaming(r, "stream"), sensitive(r, "db1", ws_mib=(10, 50)),
                       sensitive(r, "db2", ws_mib=(10, 50)), small(r, "web")],
            15, "20-way Broadwell-EP: a stream and two big cache-sensitive VMs", ("streaming",)),
        _sc("bdw-big-sensitive", BDW, 302,
            lambda r: [sensitive(r, f"db{i}", ws_mib=(20, 50)) for i in range(4)] + [small(r, "web")],
            15, "four VMs with 20-50 MiB working sets on 50 MiB", ("sensitive",)),
        _sc("bdw-bw-saturated-4cos", BDW, 303,
            lambda r: [streaming(r, "hpc1", vcpus=8), streaming(r, "hpc2", vcpus=8),
                       sensitive(r, "db1"), sensitive(r, "db2"), small(r, "web")],
            4, "58 GB/s socket saturated by two streams, 4 COS by policy", ("bandwidth", "streaming")),
        _sc("bdwd-kpart", BDWD, 401,
            lambda r: [streaming(r, "stream"), sensitive(r, "a", ws_mib=(2, 10)),
                       sensitive(r, "b", ws_mib=(2, 10)), sensitive(r, "c", ws_mib=(2, 10)),
                       small(r, "web1"), small(r, "web2")],
            15, "KPart's 12-way Broadwell-D: 6 VMs on 12 MiB", ("streaming",)),
        _sc("bdwd-cdp-3vm", BDWD, 402,
            lambda r: [streaming(r, "stream", apki=(10, 30)), sensitive(r, "db", ws_mib=(2, 10)),
                       small(r, "web")],
            7, "three VMs, CDP on: 15 COS halve to 7", ("streaming", "cdp")),
        _sc("icx-mixed", ICX, 501,
            lambda r: [streaming(r, "stream"), *[sensitive(r, f"db{i}", ws_mib=(10, 60)) for i in range(3)],
                       small(r, "web1"), small(r, "web2")],
            15, "Ice Lake-SP, 12 ways of 5 MiB: 6 VMs", ("streaming",)),
        _sc("spr-mixed", SPR, 601,
            lambda r: [streaming(r, "stream"), *[sensitive(r, f"db{i}", ws_mib=(20, 100)) for i in range(3)],
                       small(r, "web")],
            15, "Sapphire Rapids, 15 ways of 7 MiB: 5 VMs", ("streaming",)),
        _sc("hsw-cos-starved-8", HSW, 701,
            lambda r: [streaming(r, "stream1"), streaming(r, "stream2"),
                       *[sensitive(r, f"db{i}") for i in range(3)], *[small(r, f"web{i}") for i in range(3)]],
            3, "Haswell-EP E5 v3: 4 COS (3 usable), 8 VMs", ("cos-starved", "streaming"), overlapping=False),
        _sc("hsw-cos-starved-5", HSW, 702,
            lambda r: [streaming(r, "stream"), *[sensitive(r, f"db{i}") for i in range(2)],
                       small(r, "web1"), small(r, "web2")],
            3, "Haswell-EP E5 v3: 3 usable COS, 5 VMs", ("cos-starved", "streaming")),
    ]
    return s


QUICK = ("skx-stream-neighbour", "skx-all-small", "skx-sensitive-pairs", "skx-remote-memory",
         "bdwd-cdp-3vm", "hsw-cos-starved-5")


def quick() -> list[SuiteScenario]:
    """A small subset (few VMs, small searches) for tests and ``--quick``."""
    return [s for s in scenarios() if s.name in QUICK]


BUILTIN = {"default": scenarios, "quick": quick}
