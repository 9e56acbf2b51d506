"""``rdtadvisor check``: what is wrong with today's CAT masks (pure: frames in, findings out).

Input: the tables of **one collection per host** (normally each host's latest:
``Store.latest``): ``settings``, ``facts``, ``samples`` and ``domains`` (`rdtadvisor.store.frames`).
Per (host, socket), L3 (and L2 for validity), it reports `Finding`s of these kinds:

``invalid-mask``
    A mask Xen would reject on this socket (``cat_check_cbm``: empty, not one contiguous
    run, or bits at or above the CBM length). Xen never stores one, so this means the CBM
    length the store has (``l3_cbm_len`` from ``psr-hwinfo``, else the bit length of
    ``psr-cat-show``'s default CBM) and the settings disagree: a stale fact, another host's
    facts, or a parser problem. Any plan for that socket would be built on wrong facts.
``cos-exhausted`` / ``cos-nearly-exhausted``
    Distinct non-default settings in use (``cos_used``; under CDP code/data pairs) against
    the budget (``l3_cos_max``, already halved by Xen under CDP): no free COS means the next
    distinct mask fails with ``no free COS available``; one free COS is "nearly".
    On Xen 4.10+ L2 CAT and MBA settings share the COS ids, so the real use can be higher.
``dom0-default``
    Domain-0 left at the default mask while other domains on the socket have non-default
    masks: a domain at COS 0 can fill every way, so it pollutes every "private" partition
    (``docs/algorithms.md``, "Layouts"). Other domains at the default are counted
    in the message.
``overlaps-streaming``
    A cache-sensitive domain's mask shares ways with a streaming domain's mask: the streamer
    evicts its lines there and gains little from them. Conservative rule, on the collection's
    medians (bandwidth: median of the repeated ``mem_bw_total`` snapshots); a domain is
    **streaming** when all three hold:

    1. bandwidth >= ``streaming_bw`` (default 2 GB/s: `rdtadvisor.model.curvefit.STREAMING_BW_PRIOR`,
       the figure that suggests streaming when no miss curve is known);
    2. bandwidth >= ``streaming_share`` (40%) of all domains' bandwidth on the socket;
    3. bandwidth per byte of L3 held >= ``streaming_intensity`` (2x) the socket's
       (summed bandwidth / summed occupancy): it misses far more per byte it holds than the
       rest, i.e. the cache it holds does it little good.

    A domain is **cache-sensitive** when it is not streaming, is not idle (bandwidth >=
    1 MB/s), and holds at least one way's worth of L3 (``l3_bytes / cbm_len``). Under CDP
    the data masks are compared (occupancy is mostly data). The finding names the figures.
``calibration-left``
    The masks are exactly a level of a `rdtadvisor calibrate` private sweep (one domain alone
    in the top ``k`` ways, every other domain fenced into the low ``W - k``;
    `rdtadvisor.advise.calibrate.left_level`): a sweep whose script was killed before it
    restored the masks. The fenced domains run with fewer ways until its ``.rollback.sh`` runs.
``unused-mask``
    A non-default setting whose COS serves nobody: every domain holding it is absent from
    ``xl list``, shut down, crashed or dying, or idle on this socket (occupancy <= 64 KiB and
    bandwidth < 1 MB/s). Resetting those domains to the default frees the COS.

Sockets without samples get only the checks that need none; `CheckReport.notes` says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from rdtadvisor.advise.calibrate import left_level, left_message
from rdtadvisor.cache import cbm as cbmlib
from rdtadvisor.model.curvefit import IDLE_BW, STREAMING_BW_PRIOR
from rdtadvisor.model.masks import socket_settings

KINDS = ("invalid-mask", "cos-exhausted", "cos-nearly-exhausted", "calibration-left", "dom0-default",
         "overlaps-streaming", "unused-mask")
GONE_STATES = frozenset("scd")          # xl list state flags: shutdown, crashed, dying


@dataclass(frozen=True)
class Thresholds:
    """The figures behind the streaming, sensitive and idle rules (see the module docstring)."""

    streaming_bw: float = STREAMING_BW_PRIOR     # B/s
    streaming_share: float = 0.4                 # of the socket's summed bandwidth
    streaming_intensity: float = 2.0             # x the socket's bandwidth per byte held
    idle_bw: float = IDLE_BW                     # B/s
    idle_occupancy: float = 64 * 1024            # B
    cos_free_warn: int = 1                       # free COS at or below this: nearly exhausted


@dataclass(frozen=True)
class Finding:
    host: str
    socket: int
    kind: str                          # one of KINDS
    domid: int | None
    domain: str | None
    message: str
    evidence: Mapping[str, float] = field(default_factory=dict)   # unit in the key

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "socket": self.socket, "kind": self.kind, "domid": self.domid,
                "domain": self.domain, "message": self.message, "evidence": dict(self.evidence)}


@dataclass(frozen=True)
class SocketSummary:
    host: str
    socket: int
    time: pd.Timestamp
    cbm_len: int | None
    cdp: bool
    cos_used: int | None
    cos_budget: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "socket": self.socket, "time": self.time.isoformat(),
                "cbm_len": self.cbm_len, "cdp": self.cdp, "cos_used": self.cos_used,
                "cos_budget": self.cos_budget}


@dataclass(frozen=True)
class CheckReport:
    findings: tuple[Finding, ...]
    checked: tuple[SocketSummary, ...]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"findings": [f.to_dict() for f in self.findings],
                "checked": [c.to_dict() for c in self.checked], "notes": list(self.notes)}


def check(tables: Mapping[str, pd.DataFrame], thresholds: Thresholds = Thresholds()) -> CheckReport:
    """Findings for every (host, socket) with L3 CAT settings in ``tables`` (one collection per host)."""
    settings = tables["settings"]
    facts = tables.get("facts")
    samples = tables.get("samples")
    domains = tables.get("domains")
    findings: list[Finding] = []
    checked: list[SocketSummary] = []
    notes: list[str] = []
    l3 = settings[settings["setting"].isin(["l3_cbm", "l3_code_cbm", "l3_data_cbm"])]
    for (host, socket), rows in l3.groupby(["host", "socket"], sort=True):
        host, socket = str(host), int(socket)
        f = _socket_facts(facts, host, socket)
        time = pd.Timestamp(rows["time"].max())
        cbm_len = f.get("l3_cbm_len")
        source = "psr-hwinfo's CBM length"
        if cbm_len is None and f.get("l3_default_cbm"):
            cbm_len, source = int(f["l3_default_cbm"]).bit_length(), "psr-cat-show's default CBM"
        cdp = bool(f.get("l3_cdp", 0)) or bool(rows["setting"].isin(["l3_code_cbm", "l3_data_cbm"]).any())
        budget = int(f["l3_cos_max"]) if f.get("l3_cos_max") is not None else None
        names = dict(zip(rows["domid"].astype(int), rows["domain"].astype(object), strict=True))
        pairs = _pairs(rows)
        if cbm_len is None:
            notes.append(f"{host} socket {socket}: CBM length unknown (no psr-hwinfo or default CBM "
                         "stored): masks not checked")
            checked.append(SocketSummary(host, socket, time, None, cdp, None, budget))
            continue
        cbm_len = int(cbm_len)
        default = cbmlib.full(cbm_len)
        found = _invalid(host, socket, rows, cbm_len, source, f)
        findings += found
        used = cbmlib.cos_needed(pairs.values(), cbm_len)
        checked.append(SocketSummary(host, socket, time, cbm_len, cdp, used, budget))
        if found:
            notes.append(f"{host} socket {socket}: invalid masks: the other checks were skipped")
            continue
        if budget is not None:
            findings += _cos(host, socket, used, budget, cdp, thresholds)
        findings += _left(host, socket, pairs, names, cbm_len)
        findings += _dom0(host, socket, pairs, names, default)
        occ, bw = _usage(samples, host, socket)
        if not occ and not bw:
            notes.append(f"{host} socket {socket}: no occupancy/bandwidth samples: streaming and "
                         "unused-mask checks skipped")
        elif not bw:
            notes.append(f"{host} socket {socket}: no bandwidth samples (no MBM on this CPU, or not "
                         "collected): streaming-overlap check skipped")
        else:
            l3_bytes = f.get("l3_cache_bytes")
            findings += _streaming(host, socket, pairs, names, occ, bw, cbm_len, l3_bytes, thresholds)
        findings += _unused(host, socket, pairs, names, occ, bw, default,
                            _states(domains, host), bool(occ or bw), thresholds)
    for (host, socket), rows in settings[settings["setting"] == "l2_cbm"].groupby(["host", "socket"]):
        f = _socket_facts(facts, str(host), int(socket))
        n = f.get("l2_cbm_len") or (int(f["l2_default_cbm"]).bit_length()
                                    if f.get("l2_default_cbm") else None)
        if n:
            findings += _invalid(str(host), int(socket), rows, int(n), "psr-hwinfo's L2 CBM length", f)
    hosts = set(settings["host"].astype(str))
    if facts is not None:
        hosts |= set(facts["host"].astype(str))
    for h in sorted(hosts - {c.host for c in checked}):
        notes.append(f"{h}: no L3 CAT masks in its latest collection: nothing to check")
    order = {k: i for i, k in enumerate(KINDS)}
    findings.sort(key=lambda x: (x.host, x.socket, order[x.kind], -1 if x.domid is None else x.domid))
    return CheckReport(tuple(findings), tuple(checked), tuple(notes))


# --- helpers ------------------------------------------------------------------------------------

def _socket_facts(facts: pd.DataFrame | None, host: str, socket: int) -> dict[str, float]:
    if facts is None or not len(facts):
        return {}
    f = facts[(facts["host"] == host) & (facts["socket"] == socket) & facts["value"].notna()]
    f = f.sort_values("time", kind="stable").drop_duplicates("fact", keep="last")
    return {str(k): float(v) for k, v in zip(f["fact"], f["value"], strict=True)}


def _pairs(rows: pd.DataFrame) -> dict[int, tuple[int, int]]:
    """domid -> (code, data) for domains whose masks were read (xl printed no 'error')."""
    host, socket = str(rows["host"].iloc[0]), int(rows["socket"].iloc[0])
    current, _ = socket_settings(rows, host, socket)
    return {d: cbmlib.normalise(m) for d, m in current.items()}


def _who(domid: int | None, name: Any) -> str:
    if domid is None:
        return ""
    return f"{name} (domid {domid})" if isinstance(name, str) else f"domid {domid}"


def _invalid(host: str, socket: int, rows: pd.DataFrame, cbm_len: int, source: str,
             f: Mapping[str, float]) -> list[Finding]:
    out = []
    cols = (rows["domid"], rows["domain"], rows["setting"], rows["value"])
    for d, name, setting, v in zip(*cols, strict=True):
        if pd.isna(v):
            continue
        why = cbmlib.why_invalid(int(v), cbm_len)
        if why:
            extra = ""
            default = f.get("l2_default_cbm" if setting == "l2_cbm" else "l3_default_cbm")
            if default and int(default).bit_length() != cbm_len:
                bits = int(default).bit_length()
                extra = f"; psr-cat-show's default CBM {int(default):#x} says {bits} bits"
            out.append(Finding(host, socket, "invalid-mask", int(d), _name(name),
                               f"{_who(int(d), _name(name))}: {setting} {int(v):#x} is invalid on a "
                               f"{cbm_len}-bit CBM ({source}): {why}{extra}. Xen would reject it, so "
                               "the stored facts and settings disagree",
                               {"mask": float(int(v)), "cbm_len_bits": float(cbm_len)}))
    return out


def _name(x: Any) -> str | None:
    return None if x is None or x is pd.NA or (isinstance(x, float) and pd.isna(x)) else str(x)


def _cos(host: str, socket: int, used: int, budget: int, cdp: bool, t: Thresholds) -> list[Finding]:
    free = budget - used
    what = "code/data pairs" if cdp else "masks"
    ev = {"cos_used": float(used), "cos_budget": float(budget)}
    if free <= 0:
        return [Finding(host, socket, "cos-exhausted", None, None,
                        f"{used} distinct non-default {what} use all {budget} COS: the next distinct "
                        "mask fails with 'no free COS available'", ev)]
    if free <= t.cos_free_warn:
        return [Finding(host, socket, "cos-nearly-exhausted", None, None,
                        f"{used} distinct non-default {what} of {budget} COS: {free} left", ev)]
    return []


def _left(host: str, socket: int, pairs: Mapping[int, tuple[int, int]], names: Mapping[int, Any],
          cbm_len: int) -> list[Finding]:
    left = left_level(pairs, cbm_len)
    if left is None:
        return []
    domid, k = left
    named = {d: n for d, n in ((d, _name(x)) for d, x in names.items()) if n}
    return [Finding(host, socket, "calibration-left", domid, _name(names.get(domid)),
                    left_message(domid, k, named, len(pairs) - 1, cbm_len).removeprefix("its "),
                    {"ways_alone": float(k), "fenced_domains": float(len(pairs) - 1)})]


def _dom0(host: str, socket: int, pairs: Mapping[int, tuple[int, int]], names: Mapping[int, Any],
          default: int) -> list[Finding]:
    dflt = (default, default)
    partitioned = [d for d, p in pairs.items() if p != dflt]
    if 0 not in pairs or pairs[0] != dflt or not partitioned:
        return []
    others = sorted(d for d, p in pairs.items() if p == dflt and d != 0)
    tail = f"; {len(others)} other domain(s) are at the default too" if others else ""
    return [Finding(host, socket, "dom0-default", 0, _name(names.get(0)),
                    f"Domain-0 is at the default mask {default:#x} while {len(partitioned)} domain(s) "
                    f"have their own masks: it can fill every way, polluting each partition{tail}",
                    {"partitioned_domains": float(len(partitioned)),
                     "other_default_domains": float(len(others))})]


def _usage(samples: pd.DataFrame | None, host: str, socket: int) -> tuple[dict[int, float], dict[int, float]]:
    """(occupancy [B], bandwidth [B/s]) per domid: medians over the collection's readings."""
    if samples is None or not len(samples):
        return {}, {}
    s = samples[(samples["host"] == host) & (samples["socket"] == socket)]
    occ = s[s["metric"] == "l3_occupancy"].groupby("domid")["value"].median()
    bw = s[s["metric"] == "mem_bw_total"].groupby("domid")["value"].median()
    return ({int(k): float(v) for k, v in occ.items()}, {int(k): float(v) for k, v in bw.items()})


def _streaming(host: str, socket: int, pairs: Mapping[int, tuple[int, int]], names: Mapping[int, Any],
               occ: Mapping[int, float], bw: Mapping[int, float], cbm_len: int, l3_bytes: float | None,
               t: Thresholds) -> list[Finding]:
    total_bw = sum(bw.values())
    total_occ = sum(occ.values())
    if total_bw <= 0 or total_occ <= 0:
        return []
    socket_intensity = total_bw / total_occ                      # B/s per B held
    streaming: dict[int, dict[str, float]] = {}
    for d, b in bw.items():
        held = occ.get(d, 0.0)
        intensity = b / held if held > 0 else float("inf")
        if (d in pairs and b >= t.streaming_bw and b >= t.streaming_share * total_bw
                and intensity >= t.streaming_intensity * socket_intensity):
            streaming[d] = {"streaming_bandwidth_bytes_s": b, "streaming_bandwidth_share": b / total_bw,
                            "streaming_occupancy_bytes": held,
                            "streaming_bytes_s_per_mib_held": min(intensity, 1e30) * 2**20,
                            "socket_bytes_s_per_mib_held": socket_intensity * 2**20}
    if not streaming:
        return []
    way_bytes = l3_bytes / cbm_len if l3_bytes else None
    out = []
    for d, p in sorted(pairs.items()):
        if d in streaming or bw.get(d, 0.0) < t.idle_bw:
            continue
        held = occ.get(d, 0.0)
        if way_bytes is None or held < way_bytes:
            continue
        for s, ev in sorted(streaming.items()):
            shared = p[1] & pairs[s][1]
            if not shared:
                continue
            ways = cbmlib.ways_of(shared)
            out.append(Finding(
                host, socket, "overlaps-streaming", d, _name(names.get(d)),
                f"{_who(d, _name(names.get(d)))} holds {held / 2**20:.1f} MiB; its mask {p[1]:#x} "
                f"shares {ways} way(s) ({shared:#x}) with streaming {_who(s, _name(names.get(s)))} "
                f"at {pairs[s][1]:#x}: {ev['streaming_bandwidth_bytes_s'] / 1e9:.2f} GB/s = "
                f"{100 * ev['streaming_bandwidth_share']:.0f}% of the socket's bandwidth, "
                f"{ev['streaming_bytes_s_per_mib_held'] / 1e6:.0f} MB/s per MiB held vs "
                f"{ev['socket_bytes_s_per_mib_held'] / 1e6:.0f} for the socket",
                {"shared_ways": float(ways), "occupancy_bytes": held, "bandwidth_bytes_s": bw.get(d, 0.0),
                 "streaming_domid": float(s), **ev}))
    return out


def _states(domains: pd.DataFrame | None, host: str) -> dict[int, str] | None:
    if domains is None or not len(domains):
        return None
    d = domains[domains["host"] == host]
    if not len(d):
        return None
    return {int(i): str(s) for i, s in zip(d["domid"], d["state"], strict=True)}


def _unused(host: str, socket: int, pairs: Mapping[int, tuple[int, int]], names: Mapping[int, Any],
            occ: Mapping[int, float], bw: Mapping[int, float], default: int, states: Mapping[int, str] | None,
            have_samples: bool, t: Thresholds) -> list[Finding]:
    groups: dict[tuple[int, int], list[int]] = {}
    for d, p in pairs.items():
        if p != (default, default):
            groups.setdefault(p, []).append(d)
    out = []
    for p, members in sorted(groups.items()):
        whys = {}
        for d in members:
            state = None if states is None else states.get(d)
            if states is not None and state is None:
                whys[d] = "not in xl list"
            elif state is not None and GONE_STATES & set(state):
                whys[d] = f"state {state}"
            elif have_samples and occ.get(d, 0.0) <= t.idle_occupancy and bw.get(d, 0.0) < t.idle_bw:
                whys[d] = (f"idle on this socket ({occ.get(d, 0.0) / 1024:.0f} KiB held, "
                           f"{bw.get(d, 0.0) / 1e6:.2f} MB/s)")
        if len(whys) < len(members):
            continue
        mask = hex(p[0]) if p[0] == p[1] else f"code {p[0]:#x}/data {p[1]:#x}"
        for d in sorted(members):
            out.append(Finding(host, socket, "unused-mask", d, _name(names.get(d)),
                               f"{_who(d, _name(names.get(d)))} holds a COS for {mask} but is {whys[d]}: "
                               "nobody uses that COS; resetting to the default frees it",
                               {"occupancy_bytes": occ.get(d, 0.0), "bandwidth_bytes_s": bw.get(d, 0.0)}))
    return out
