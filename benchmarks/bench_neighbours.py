"""Noisy-neighbour detection against simulated truth: rdtadvisor's detector vs OpenStack Watcher's.

    python benchmarks/bench_neighbours.py                  # about half a minute on 2 cores
    python benchmarks/bench_neighbours.py --keep /tmp/nb   # keep captures and store (reused next time)

What it does, on the fleet of ``benchmarks/neighbours.toml`` (8 one-socket hosts, 2 days at
5-minute steps, fixed seed, one story per host; read its comments):

1. **The real pipeline.** ``rdtadvisor simulate`` writes the captures, ``rdtadvisor collect
   --replay`` stores them, and the usage model is built as ``rdtadvisor report`` builds it
   (`rdtadvisor.cli.report.load_usage`, ``--since`` covering the whole run).
2. **Predictions.** rdtadvisor's: ``{(aggressor, victim)}`` of `Usage.pairs` (what
   `neighbours.find_pairs` found on each socket's bucketed series). Watcher's:
   `neighbours.watcher_pairs` (a VM whose LLC fell by > 35 % between two consecutive periods
   is a victim of every VM whose LLC rose by > 35 % in the same period), run twice: on the
   same bucketed series rdtadvisor sees (the model's bucket: 15 minutes for 2 days), and on
   the raw per-collection figures (5 minutes, nearer Watcher's own 100 s period at 300 s
   granularity). The better of the two by F1 at the main threshold is Watcher's score.
3. **Truth.** For every ordered pair (A, V) on one socket, the host's truth is simulated with
   and without A (`dataclasses.replace` of the host without A; same seed and times, so every
   other VM's load is unchanged) and V's harm(t) = speed_without_A(t) / speed_with_A(t) - 1.
   (A, V) is a **true** noisy-neighbour pair when the 95th percentile of harm over the run
   is >= `HARM` (10 %; also scored at 5 % and 20 %). The harm **varies** when its p95 - p5
   is >= `VARYING` (5 points): a steady harm is real, but a method looking for co-movement
   cannot see it, so recall is given overall and on the varying pairs.
   Domain-0 (which the simulator adds to every host, light but never idle) is a VM like any
   other, on both sides: in the truth, in rdtadvisor's and in Watcher's predictions.

Printed: a row per host (true pairs, TP/FP/FN of each method), totals (precision, recall,
recall on varying-harm pairs, F1) at 5/10/20 %, every true pair with its harm and who found
it, the evidence rdtadvisor gives for each of its true positives next to Watcher's (a flag),
rdtadvisor's false positives with their evidence, and the run time of each stage.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rdtadvisor.cli.output import text_table
from rdtadvisor.cli.report import load_usage
from rdtadvisor.core.config import load_settings
from rdtadvisor.model.neighbours import Pair, watcher_pairs
from rdtadvisor.model.usage import Usage
from rdtadvisor.sim import scenario as scenario_mod
from rdtadvisor.sim import truth as truth_mod

SCENARIO = Path(__file__).resolve().with_name("neighbours.toml")
HARM = 0.10  # a pair is a true noisy neighbour when p95 of V's harm from A is at least this
THRESHOLDS = (0.05, HARM, 0.20)  # sensitivity of the scores to the definition
VARYING = 0.05  # harm varies (visible to co-movement) when p95 - p5 >= this
MIB = 1024**2

PairKey = tuple[str, int, str, str]  # host, socket, aggressor, victim


@dataclasses.dataclass(frozen=True)
class Harm:
    host: str
    socket: int
    aggressor: str
    victim: str
    p5: float
    p50: float
    p95: float

    @property
    def key(self) -> PairKey:
        return (self.host, self.socket, self.aggressor, self.victim)

    @property
    def varying(self) -> bool:
        return self.p95 - self.p5 >= VARYING


# --- the pipeline ----------------------------------------------------------------------------


def run_pipeline(scenario_path: Path, root: Path, seed: int | None = None) -> tuple[Usage, dict[str, float]]:
    """simulate -> captures -> collect -> usage model; reuses ``root/store`` if it exists."""
    caps, store = root / "caps", root / "store"
    took: dict[str, float] = {}
    if not (store / "samples").exists():
        t = time.perf_counter()
        rdt = [sys.executable, "-m", "rdtadvisor"]
        simulate = [
            *rdt,
            "simulate",
            str(scenario_path),
            "--out",
            str(caps),
            "--force",
            "-q",
            *(["--seed", str(seed)] if seed is not None else []),
        ]
        subprocess.run(simulate, check=True)
        took["simulate (captures)"] = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run([*rdt, "--store", str(store), "collect", "--replay", str(caps), "-q"], check=True)
        took["collect --replay"] = time.perf_counter() - t
    sc = scenario_mod.load_scenario(scenario_path, seed=seed)
    since = (pd.Timestamp(sc.start) - pd.Timedelta(days=1)).isoformat()
    t = time.perf_counter()
    u, _ = load_usage(load_settings(None, store), [], since, None, None)
    took["read store + usage model"] = time.perf_counter() - t
    return u, took


def ground_truth(sc: scenario_mod.Scenario) -> list[Harm]:
    """Harm of every ordered same-socket pair: V's speed without A over V's speed with A, minus 1."""
    times = truth_mod.time_index(sc)
    origin = pd.Timestamp(sc.start).tz_convert("UTC")
    out = []
    for host in sc.hosts:
        base = truth_mod.simulate_host(host, times, origin, sc.seed)
        col = {v.name: j for j, v in enumerate(host.vms)}
        for a in host.vms:
            without = dataclasses.replace(host, vms=tuple(v for v in host.vms if v.name != a.name))
            alt = truth_mod.simulate_host(without, times, origin, sc.seed)
            for k, v in enumerate(without.vms):
                if v.socket != a.socket:
                    continue
                harm = alt.speed[:, k] / base.speed[:, col[v.name]] - 1
                p5, p50, p95 = np.percentile(harm, [5, 50, 95])
                out.append(Harm(host.name, a.socket, a.name, v.name, float(p5), float(p50), float(p95)))
    return out


def predictions(u: Usage) -> dict[str, dict[PairKey, Pair | None]]:
    """Each method's flagged pairs; rdtadvisor's with the `Pair` (its evidence)."""
    rd = {
        (host, socket, p.aggressor, p.victim): p for (host, socket), pairs in u.pairs.items() for p in pairs
    }
    bucketed: dict[PairKey, Pair | None] = {}
    for (host, socket), s in u.series.groupby(["host", "socket"], observed=True):
        bucketed |= dict.fromkeys(((str(host), int(socket), a, v) for a, v in watcher_pairs(s)), None)
    raw: dict[PairKey, Pair | None] = {}
    for c in u.cubes:
        long = c.to_long()
        for socket, s in long.groupby("socket", observed=True):
            raw |= dict.fromkeys(((c.host, int(socket), a, v) for a, v in watcher_pairs(s)), None)
    return {"rdtadvisor": rd, "watcher-bucketed": bucketed, "watcher-raw": raw}


# --- scoring ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    varying_tp: int = 0
    varying_true: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def varying_recall(self) -> float:
        return self.varying_tp / self.varying_true if self.varying_true else float("nan")

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0


def score(truth: list[Harm], flagged: set[PairKey], threshold: float, host: str | None = None) -> Score:
    s = Score()
    for h in truth:
        if host is not None and h.host != host:
            continue
        true, hit = h.p95 >= threshold, h.key in flagged
        s.tp += true and hit
        s.fp += hit and not true
        s.fn += true and not hit
        s.varying_true += true and h.varying
        s.varying_tp += true and h.varying and hit
    return s


def _pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.0f}%"


def _span(td: object) -> str:
    minutes = pd.Timedelta(td).total_seconds() / 60
    return f"{minutes / 1440:g} d" if minutes >= 1440 else f"{minutes:g} min"


def _mib(x: float | None) -> str:
    return "?" if x is None else f"{x / MIB:.1f}"


def _gbs(x: float | None) -> str:
    return "?" if x is None else f"{x / 1e9:.2f}"


def evidence(p: Pair) -> str:
    """One line of what rdtadvisor shows an operator for a pair."""
    e = p.evidence
    vo, vb, ab = e["victim_occupancy_bytes"], e["victim_bandwidth_bytes_s"], e["aggressor_bandwidth_bytes_s"]
    w = e["windows"][0] if e["windows"] else None
    worst = f"; worst {w['start'][5:16]}..{w['end'][11:16]} -{_pct(w['victim_occupancy_drop'])}" if w else ""
    return (
        f"{p.severity}: V occ {_mib(vo['quiet'])}->{_mib(vo['active'])} MiB (-{_pct(p.occupancy_drop)}), "
        f"V bw {_gbs(vb['quiet'])}->{_gbs(vb['active'])} GB/s ({p.bandwidth_change:+.0%}), "
        f"A bw {_gbs(ab['quiet'])}->{_gbs(ab['active'])} GB/s, rho {p.rho:+.2f}, "
        f"misses/byte {e['victim_misses_per_byte_change']:+.0%}, {e['events']} events "
        f"({e['events_with_drop_share']:.0%} with a drop){worst}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--keep",
        type=Path,
        default=None,
        metavar="DIR",
        help="write captures and store under DIR and keep them (an existing DIR/store is reused)",
    )
    ap.add_argument(
        "--scenario", type=Path, default=SCENARIO, help="scenario file [benchmarks/neighbours.toml]"
    )
    ap.add_argument(
        "--seed",
        type=int,
        default=None,
        help="another seed than the scenario's (an out-of-sample check of the rules)",
    )
    args = ap.parse_args(argv)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        return bench(args.scenario, args.keep, args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-neighbours-") as tmp:
        return bench(args.scenario, Path(tmp), args.seed)


def bench(scenario_path: Path, root: Path, seed: int | None = None) -> int:
    """Run, score and print everything (captures and store under `root`)."""
    started = time.perf_counter()
    u, took = run_pipeline(scenario_path, root, seed)
    sc = scenario_mod.load_scenario(scenario_path, seed=seed)
    t = time.perf_counter()
    truth = ground_truth(sc)
    took["truth (with/without each VM)"] = time.perf_counter() - t
    t = time.perf_counter()
    preds = predictions(u)
    took["detectors"] = time.perf_counter() - t
    flagged = {m: set(p) for m, p in preds.items()}

    print(
        f"scenario {sc.name}: {len(sc.hosts)} hosts, {_span(sc.duration)} at {_span(sc.step)} steps, "
        f"seed {sc.seed}; model bucket {_span(u.bucket)} (rdtadvisor and watcher-bucketed), raw step "
        f"{_span(u.step)} (watcher-raw)"
    )
    print(
        f"true pair: p95 of V's harm from A >= {HARM:.0%} (harm = speed without A / speed with A - 1); "
        f"varying: p95 - p5 >= {VARYING * 100:.0f} points; {len(truth)} ordered same-socket pairs\n"
    )

    # per host at the main threshold
    rows = []
    for host in sc.hosts:
        name = host.name
        true = [h for h in truth if h.host == name and h.p95 >= HARM]
        row = {"host": name, "vms": len(host.vms), "true": len(true), "varying": sum(h.varying for h in true)}
        for m in flagged:
            s = score(truth, flagged[m], HARM, name)
            row[m] = f"{s.tp}/{s.fp}/{s.fn}"
        rows.append(row)
    print(f"per host at {HARM:.0%} (TP/FP/FN):")
    print(text_table(rows), end="")

    # totals at each threshold
    best_watcher = max(("watcher-bucketed", "watcher-raw"), key=lambda m: score(truth, flagged[m], HARM).f1)
    rows = []
    for thr in THRESHOLDS:
        for m in flagged:
            s = score(truth, flagged[m], thr)
            rows.append(
                {
                    "threshold": f"{thr:.0%}",
                    "method": m,
                    "true": s.tp + s.fn,
                    "varying": s.varying_true,
                    "TP": s.tp,
                    "FP": s.fp,
                    "FN": s.fn,
                    "precision": _pct(s.precision),
                    "recall": _pct(s.recall),
                    "recall varying": _pct(s.varying_recall),
                    "F1": f"{s.f1:.2f}",
                }
            )
    print("\ntotals:")
    print(text_table(rows), end="")
    rd, w = score(truth, flagged["rdtadvisor"], HARM), score(truth, flagged[best_watcher], HARM)
    print(
        f"\nat {HARM:.0%}: rdtadvisor F1 {rd.f1:.2f} (precision {_pct(rd.precision)}, recall "
        f"{_pct(rd.recall)}, varying {_pct(rd.varying_recall)}); Watcher's better variant is "
        f"{best_watcher}: F1 {w.f1:.2f} (precision {_pct(w.precision)}, recall {_pct(w.recall)}, "
        f"varying {_pct(w.varying_recall)})"
    )

    # every true pair, who found it
    rows = []
    for h in sorted(truth, key=lambda h: (h.host, -h.p95)):
        if h.p95 < THRESHOLDS[0]:
            continue
        rows.append(
            {
                "host": h.host,
                "aggressor": h.aggressor,
                "victim": h.victim,
                "harm p5": _pct(h.p5),
                "p50": _pct(h.p50),
                "p95": _pct(h.p95),
                "varying": "yes" if h.varying else "-",
                **{m: "flag" if h.key in flagged[m] else "-" for m in flagged},
            }
        )
    print(f"\npairs with p95 harm >= {THRESHOLDS[0]:.0%} (true at {HARM:.0%} when p95 >= {HARM:.0%}):")
    print(text_table(rows), end="")

    # evidence: rdtadvisor's true positives, then its false positives
    harm_of = {h.key: h for h in truth}
    for title, want in (("true positives", True), ("false positives", False)):
        print(
            f"\nrdtadvisor {title} at {HARM:.0%}, with its evidence (Watcher gives a flag and nothing else):"
        )
        for key, p in sorted(preds["rdtadvisor"].items()):
            h = harm_of.get(key)
            if h is None or (h.p95 >= HARM) != want:
                continue
            who = ", ".join(m for m in ("watcher-bucketed", "watcher-raw") if key in flagged[m])
            who = who or "not flagged"
            print(f"  {key[0]} {p.aggressor} -> {p.victim} (true p95 harm {_pct(h.p95)}; Watcher: {who})")
            print(f"      {evidence(p)}")

    took["total"] = time.perf_counter() - started
    print("\nrun time: " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
