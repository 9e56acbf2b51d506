"""The report: the usage model turned into the plain dict of ``docs/report.md``.

`build_report(usage, checks)` is pure: a `Usage` (and the mask checks of the latest
collection) in, a JSON-ready dict out. Findings are ranked critical > warning > info, then
by score. Every renderer (text, Markdown, CSV, HTML) reads only this dict.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from rdtadvisor.advise.check import CheckReport
from rdtadvisor.core import clock
from rdtadvisor.core.units import format_bytes
from rdtadvisor.model.usage import Limits, Usage

SCHEMA = "rdtadvisor.report/1"
SEVERITIES = ("critical", "warning", "info")
_CHECK_SEVERITY = {
    "invalid-mask": "critical",
    "cos-exhausted": "warning",
    "cos-nearly-exhausted": "info",
    "calibration-left": "warning",
    "dom0-default": "info",
    "overlaps-streaming": "warning",
    "unused-mask": "info",
}
TREND_WARNING_DAYS, TREND_CRITICAL_DAYS = 30, 7
SATURATION_CRITICAL = 0.95  # socket p95 bandwidth / configured capacity
FLAT_TOP_SHARE = 0.2  # observed peak: share of collections within 5% of it
FLAT_TOP_MIN_SAMPLES = 36  # ... over at least this many collections (3 h at 5 min)


def build_report(
    u: Usage,
    *,
    checks: CheckReport | None = None,
    limits: Limits | None = None,
    series: bool = False,
    generated: pd.Timestamp | None = None,
    hours: str | None = None,
) -> dict[str, Any]:
    """The report dict (see ``docs/report.md``)."""
    generated = generated or clock.now()
    limits = limits or Limits()
    hosts = [_host(u, h) for h in u.hosts.to_dict("records")]
    findings = _findings(u, hosts, checks, limits)
    findings.sort(
        key=lambda f: (
            SEVERITIES.index(f["severity"]),
            -f["score"],
            f["kind"],
            f["host"],
            -1 if f["socket"] is None else f["socket"],
            f["vms"],
        )
    )
    counts = {s: sum(f["severity"] == s for f in findings) for s in SEVERITIES}
    status = next((s for s in ("critical", "warning") if counts[s]), "ok")
    times = u.collections["time"]
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "generated": _iso(generated),
        "window": {
            "since": _iso(u.window.since or (times.min() if len(times) else None)),
            "until": _iso(u.window.until or (times.max() if len(times) else None)),
            "hours": hours,
            "tz": u.window.tz,
            "collections": len(u.collections),
            "step_s": round(u.step.total_seconds()),
        },
        "status": status,
        "summary": {
            "hosts": len(hosts),
            "sockets": sum(len(h["sockets"]) for h in hosts),
            "vms": sum(len(h["vms"]) for h in hosts),
            "findings": counts,
        },
        "hosts": hosts,
        "findings": findings,
    }
    if series:
        report["series"] = _series(u)
    return report


# --- hosts, sockets, VMs -----------------------------------------------------------------------


def _host(u: Usage, h: dict) -> dict[str, Any]:
    host = h["host"]
    socks = u.sockets[u.sockets["host"] == host]
    vms = u.vm_socket[u.vm_socket["host"] == host]
    rmid = socks.iloc[0] if len(socks) else None
    expected, seen = int(h["collections"]), int(h["seen"])
    coverage = seen / expected if expected else 0.0
    low = int((vms["confidence"] == "low").sum())
    notes = []
    if h["occupancy_over_l3"]:
        notes.append(
            f"{h['occupancy_over_l3']} socket readings summed above the L3 size (CMT upscaling "
            "factor and RMID reuse): occupancy figures there are over-counts"
        )
    if h["overflows"]:
        notes.append(f"{h['overflows']} bandwidth readings lost to counter overflow (xl retried and gave up)")
    if low:
        notes.append(f"{low} VM figure(s) with low confidence (few samples or low coverage)")
    if h["settling_samples"]:
        notes.append(f"{h['settling_samples']} occupancy figures taken while masks settled were left out")
    settling = u.settling[u.settling["host"] == host] if len(u.settling) else u.settling
    dropped = int(h["rows_dropped"])
    return {
        "host": host,
        "xen_version": h["xen_version"],
        "collections": expected,
        "first": _iso(h["first"]),
        "last": _iso(h["last"]),
        "rmid": {
            "used": _int(rmid["rmid_used"]) if rmid is not None else None,
            "total": _int(rmid["rmid_total"]) if rmid is not None else None,
        },
        "unmonitored": u.unmonitored.get(host, []),
        "sockets": [_socket(u, s, vms[vms["socket"] == s["socket"]]) for s in socks.to_dict("records")],
        "vms": [_vm_total(v) for v in u.vm[u.vm["host"] == host].to_dict("records")],
        "quality": {
            "expected": expected,
            "seen": seen,
            "coverage": round(coverage, 4),
            "rows_dropped": dropped,
            "error_cells": int(h["sample_failures"]),
            "overflows": int(h["overflows"]),
            "occupancy_over_l3": int(h["occupancy_over_l3"]),
            "settling": [
                {
                    "socket": int(r["socket"]),
                    "since": _iso(r["since"]),
                    "until": _iso(r["until"]),
                    "reason": "mask change",
                }
                for r in settling.to_dict("records")
            ],
            "confidence": "high" if coverage >= 0.9 and not low else "medium" if coverage >= 0.5 else "low",
            "notes": notes,
        },
    }


def _socket(u: Usage, s: dict, vms: pd.DataFrame) -> dict[str, Any]:
    masks = u.masks[(u.masks["host"] == s["host"]) & (u.masks["socket"] == s["socket"])]
    groups: dict[str, list[str]] = {}
    cbm_of: dict[str, str] = {}
    for m in masks.to_dict("records"):
        key = _mask_text(m)
        if key is None:
            continue
        groups.setdefault(key, []).append(str(m["domain"]))
        cbm_of[str(m["domain"])] = key
    vm_rows = sorted(
        vms.to_dict("records"), key=lambda v: (-_num(v["occupancy_bytes_p95"]), str(v["domain"]))
    )
    return {
        "socket": int(s["socket"]),
        "l3_bytes": _int(s["l3_bytes"]),
        "occupancy_bytes": _q(s, "occupancy_bytes"),
        "occupancy_share": _q(s, "share", sep="_"),
        "bandwidth_bytes_s": _q(s, "bw_total_bytes_s"),
        "bandwidth_capacity_bytes_s": _num_or_none(s["bw_capacity_bytes_s"]),
        "bandwidth_capacity_source": str(s["bw_capacity_source"]),
        "bandwidth_utilisation": _q(s, "utilisation", sep="_"),
        "near_capacity_share": _round(s.get("near_capacity_share"), 4),
        "samples": _int(s.get("bw_total_bytes_s_n")),
        "trend": {
            "occupancy_bytes_per_day": _round(s["occupancy_bytes_per_day"]),
            "bandwidth_bytes_s_per_day": _round(s["bw_total_bytes_s_per_day"]),
            "days_to_limit": _round(s["days_to_limit"], 1),
            "limit": "bandwidth threshold x configured capacity"
            if s["bw_capacity_source"] == "config"
            else None,
        },
        "cos": {"used": _int(s["cos_used"]), "available": _int(s["cos_budget"]), "cdp": bool(s["cdp"])},
        "masks": [{"cbm": k, "ways": _ways(k), "domains": sorted(v)} for k, v in sorted(groups.items())],
        "vms": [_vm(v, cbm_of.get(str(v["domain"]))) for v in vm_rows],
    }


def _vm(v: dict, cbm: str | None) -> dict[str, Any]:
    return {
        "name": str(v["domain"]),
        "domid": _int(v["domid"]),
        "class": v["class"],
        "evidence": v["evidence"],
        "class_confidence": v["class_confidence"],
        "cbm": cbm,
        "occupancy_bytes": {**_q(v, "occupancy_bytes"), "mean": _round(v["occupancy_bytes_mean"])},
        "occupancy_share": _q(v, "share", sep="_"),
        "bandwidth_bytes_s": _q(v, "bw_total_bytes_s"),
        "local_bandwidth_bytes_s": _q(v, "bw_local_bytes_s"),
        "remote_bandwidth_bytes_s": _q(v, "bw_remote_bytes_s"),
        "trend": {
            "occupancy_bytes_per_day": _round(v["occupancy_bytes_per_day"]),
            "bandwidth_bytes_s_per_day": _round(v["bw_total_bytes_s_per_day"]),
            "days_to_limit": _round(v["days_to_limit"], 1),
            "limit": "socket bandwidth threshold" if _num_or_none(v["days_to_limit"]) is not None else None,
        },
        "quality": {
            "samples": int(v["samples"]),
            "expected": int(v["expected"]),
            "coverage": round(float(v["coverage"]), 4),
            "rows_dropped": int(v["rows_dropped"]),
            "readings": _round(v["readings"], 1),
            "confidence": v["confidence"],
        },
    }


def _vm_total(v: dict) -> dict[str, Any]:
    return {
        "name": str(v["domain"]),
        "domid": _int(v["domid"]),
        "sockets": list(v["sockets"]),
        "occupancy_bytes": _q(v, "occupancy_bytes"),
        "bandwidth_bytes_s": _q(v, "bw_total_bytes_s"),
        "memory_bytes": _int(v.get("memory_bytes")),
        "vcpus": _int(v.get("vcpus")),
    }


# --- findings ---------------------------------------------------------------------------------


def _finding(
    severity: str,
    kind: str,
    host: str,
    socket: int | None,
    vms: list[str],
    score: float,
    summary: str,
    evidence: dict,
) -> dict[str, Any]:
    return {
        "severity": severity,
        "kind": kind,
        "host": host,
        "socket": socket,
        "vms": vms,
        "score": round(float(min(max(score, 0.0), 1.0)), 3),
        "summary": summary,
        "evidence": evidence,
    }


def _findings(u: Usage, hosts: list[dict], checks: CheckReport | None, limits: Limits) -> list[dict]:
    out: list[dict] = []
    for (host, socket), pairs in u.pairs.items():
        for p in pairs:
            ev = p.evidence
            out.append(
                _finding(
                    p.severity,
                    "noisy-neighbour",
                    host,
                    socket,
                    [p.aggressor, p.victim],
                    p.score,
                    f"{p.aggressor} evicts {p.victim} on socket {socket}: in {ev['events']} bursts of "
                    f"{p.aggressor} ({_rate(ev['aggressor_bandwidth_bytes_s']['active'])} vs "
                    f"{_rate(ev['aggressor_bandwidth_bytes_s']['quiet'])}), {p.victim} holds "
                    f"{p.occupancy_drop:.0%} less L3 than just before and after, and misses "
                    f"{ev['victim_misses_per_byte_change']:+.0%} per byte it still holds"
                    + (
                        f" (bandwidth {p.bandwidth_change:+.0%})"
                        if math.isfinite(p.bandwidth_change)
                        else ""
                    ),
                    {**ev, "aggressor": p.aggressor, "victim": p.victim},
                )
            )
    for h in hosts:
        host = h["host"]
        for s in h["sockets"]:
            out += _socket_findings(host, s, limits)
        if h["unmonitored"]:
            out.append(
                _finding(
                    "warning",
                    "unmonitored",
                    host,
                    None,
                    list(h["unmonitored"]),
                    0.5,
                    f"{len(h['unmonitored'])} running domain(s) have no CMT figures (never attached "
                    f"with psr-cmt-attach, or no free RMID): {', '.join(h['unmonitored'])}",
                    {"domains": list(h["unmonitored"])},
                )
            )
        used, total = h["rmid"]["used"], h["rmid"]["total"]
        if used is not None and total and used >= 0.9 * total:
            out.append(
                _finding(
                    "warning",
                    "rmid-exhaustion",
                    host,
                    None,
                    [],
                    used / total,
                    f"{used} of {total} RMIDs in use: new domains may stay unmonitored",
                    {"used": used, "total": total},
                )
            )
        q = h["quality"]
        if q["coverage"] < 0.9:
            sev = "warning" if q["coverage"] < 0.5 else "info"
            out.append(
                _finding(
                    sev,
                    "data-quality",
                    host,
                    None,
                    [],
                    1 - q["coverage"],
                    f"{q['seen']} of {q['expected']} collections have figures ({q['coverage']:.0%})",
                    {"expected": q["expected"], "seen": q["seen"]},
                )
            )
        if q["notes"]:
            out.append(
                _finding(
                    "info",
                    "data-quality",
                    host,
                    None,
                    [],
                    0.1,
                    "; ".join(q["notes"]),
                    {k: q[k] for k in ("rows_dropped", "error_cells", "overflows", "occupancy_over_l3")},
                )
            )
    for c in checks.findings if checks else ():
        sev = _CHECK_SEVERITY.get(c.kind, "info")
        out.append(
            _finding(
                sev,
                c.kind,
                c.host,
                c.socket,
                [c.domain] if c.domain else [],
                0.5 if sev != "info" else 0.2,
                c.message,
                dict(c.evidence),
            )
        )
    return out


def _socket_findings(host: str, s: dict, limits: Limits) -> list[dict]:
    out = []
    sock = s["socket"]
    util = s["bandwidth_utilisation"]["p95"]
    source = s["bandwidth_capacity_source"]
    cap = s["bandwidth_capacity_bytes_s"]
    if source == "config" and util is not None:
        if util >= SATURATION_CRITICAL or util >= limits.bandwidth_threshold:
            sev = "critical" if util >= SATURATION_CRITICAL else "warning"
            top = sorted(s["vms"], key=lambda v: -(v["bandwidth_bytes_s"]["p95"] or 0))[:3]
            out.append(
                _finding(
                    sev,
                    "bandwidth-saturation",
                    host,
                    sock,
                    [v["name"] for v in top],
                    util,
                    f"socket {sock} memory bandwidth p95 {_rate(s['bandwidth_bytes_s']['p95'])} is "
                    f"{util:.0%} of its {_rate(cap)} capacity; biggest users "
                    + ", ".join(f"{v['name']} {_rate(v['bandwidth_bytes_s']['p95'])}" for v in top),
                    {
                        "utilisation": s["bandwidth_utilisation"],
                        "capacity_bytes_s": cap,
                        "threshold": limits.bandwidth_threshold,
                    },
                )
            )
    elif (source == "observed-peak" and (s.get("near_capacity_share") or 0) >= FLAT_TOP_SHARE
          and (s.get("samples") or 0) >= FLAT_TOP_MIN_SAMPLES):
        out.append(
            _finding(
                "warning",
                "bandwidth-saturation",
                host,
                sock,
                [],
                s["near_capacity_share"],
                f"socket {sock} spends {s['near_capacity_share']:.0%} of the time within 5% of its "
                f"highest sustained bandwidth ({_rate(cap)}): a flat top suggests saturation; "
                "set [report] bandwidth_capacity to judge it",
                {"near_capacity_share": s["near_capacity_share"], "observed_peak_bytes_s": cap},
            )
        )
    share = s["occupancy_share"]["p50"]
    classes: dict[str, list[dict]] = {}
    for v in s["vms"]:
        classes.setdefault(v["class"], []).append(v)
    if share is not None and share >= 0.9 and classes.get("streaming") and classes.get("cache-sensitive"):
        streamers = classes["streaming"]
        held = sum((v["occupancy_share"]["p50"] or 0) for v in streamers)
        sensitive = [v["name"] for v in classes["cache-sensitive"] if v["class_confidence"] != "low"]
        if sensitive and held >= 0.2:
            out.append(
                _finding(
                    "warning",
                    "l3-pressure",
                    host,
                    sock,
                    [v["name"] for v in streamers] + sensitive,
                    held,
                    f"socket {sock}'s L3 is full ({share:.0%} at p50) and streaming "
                    f"{', '.join(v['name'] for v in streamers)} {'hold' if len(streamers) > 1 else 'holds'} "
                    f"{held:.0%} of it while "
                    f"cache-sensitive {', '.join(sensitive)} compete for the rest: a partition "
                    "(rdtadvisor advise cat) would protect them",
                    {"occupancy_share": s["occupancy_share"], "streaming_share_p50": round(held, 3)},
                )
            )
    days = s["trend"]["days_to_limit"]
    if days is not None and days < TREND_WARNING_DAYS:
        sev = "critical" if days < TREND_CRITICAL_DAYS else "warning"
        out.append(
            _finding(
                sev,
                "trend",
                host,
                sock,
                [],
                1 - days / TREND_WARNING_DAYS,
                f"socket {sock} bandwidth grows {_rate(s['trend']['bandwidth_bytes_s_per_day'])} per "
                f"day: it passes {limits.bandwidth_threshold:.0%} of capacity in {days:.0f} days",
                dict(s["trend"]),
            )
        )
    return out


# --- series ----------------------------------------------------------------------------------


def _series(u: Usage) -> dict[str, Any]:
    hosts = []
    for host, hs in u.series.groupby("host", observed=True, sort=True):
        socks = []
        for socket, ss in hs.groupby("socket", observed=True, sort=True):
            times = pd.DatetimeIndex(sorted(ss["time"].unique()))
            occ = ss.pivot_table(
                index="time", columns="domain", values="occupancy_bytes", observed=True, dropna=False
            ).reindex(times)
            bw = ss.pivot_table(
                index="time", columns="domain", values="bw_total_bytes_s", observed=True, dropna=False
            ).reindex(times)
            socks.append(
                {
                    "socket": int(socket),
                    "times": [_iso(t) for t in times],
                    "occupancy_bytes": {str(c): _list(occ[c]) for c in occ.columns},
                    "bandwidth_bytes_s": {str(c): _list(bw[c]) for c in bw.columns},
                }
            )
        hosts.append({"host": str(host), "sockets": socks})
    return {"bucket_s": round(u.bucket.total_seconds()), "hosts": hosts}


# --- small helpers ----------------------------------------------------------------------------


def _q(row: dict, prefix: str, sep: str = "_") -> dict[str, float | None]:
    return {
        q: _round(row.get(f"{prefix}{sep}{q}"), 4 if prefix in ("share", "utilisation") else 0)
        for q in ("p50", "p95", "max")
    }


def _list(s: pd.Series) -> list[float | None]:
    return [
        None if not np.isfinite(x) else round(float(x)) for x in s.to_numpy(dtype="float64", na_value=np.nan)
    ]


def _num(x: Any) -> float:
    v = _num_or_none(x)
    return v if v is not None else -1.0


def _num_or_none(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _round(x: Any, digits: int = 0) -> float | None:
    v = _num_or_none(x)
    if v is None:
        return None
    return round(v, digits) if digits else float(round(v))


def _int(x: Any) -> int | None:
    v = _num_or_none(x)
    return None if v is None else int(v)


def _iso(t: Any) -> str | None:
    if t is None or (isinstance(t, float) and math.isnan(t)) or t is pd.NaT:
        return None
    return pd.Timestamp(t).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _rate(x: float | None) -> str:
    return "?" if x is None else format_bytes(x, rate=True)


def _mask_text(m: dict) -> str | None:
    if pd.notna(m.get("l3_cbm")):
        return f"{int(m['l3_cbm']):#x}"
    if pd.notna(m.get("l3_code_cbm")) and pd.notna(m.get("l3_data_cbm")):
        return f"code {int(m['l3_code_cbm']):#x} data {int(m['l3_data_cbm']):#x}"
    return None


def _ways(text: str) -> int:
    return max(bin(int(part, 16)).count("1") for part in text.split() if part.startswith("0x"))
