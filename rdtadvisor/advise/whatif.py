"""What a CAT plan or a set of migrations is expected to change, from the stored history.

Pure: frames in, a `Prediction` out. The pieces:

1. **Curves** for every VM from its history (`rdtadvisor.model.curves.fit_all`), never the
   simulator's hidden truth. Without MBM, relative curves from occupancy shares
   (`rdtadvisor.model.shares`), scaled by the socket's memory traffic measured outside xl.
2. **Today** per (host, socket): the VMs of the latest collection, their masks from the
   latest ``settings`` (the socket's default mask, all ones, when none is stored), and
   their recent observed misses (median over the socket's `RECENT` latest collections, those
   in which the VM had today's mask).
3. **The sharing equilibrium** (``docs/algorithms.md``): iterate
   `rdtadvisor.cache.equilibrium.allocate` with misses = the fitted M(capacity), damped, to a fixed
   point. It is solved for an ensemble at once: entry 0 uses each curve's best estimate,
   the others one posterior draw per VM (`CurveFit.draws`).
4. **Anchoring**: each ensemble member's access rate is scaled so that today's masks
   reproduce today's observed misses (the curve gives the *shape*, today gives the *level*:
   the VM's load now, not its average load). The best estimate anchors to today's level
   itself, every draw to a level drawn around it with today's noise (10 ms snapshots:
   log-sd ``sigma / sqrt(k)`` for k recent collections), so the band combines the curve's
   uncertainty with that of today's level, in occupancy as in misses.
5. **The plan**: masks replaced for the planned VMs (`predict_cat`); migrating VMs
   removed from their source host and added to the destination (`predict_migrations`),
   then the equilibrium is solved again. A moved VM keeps its curves (one per socket it
   used on the source, each becoming a thread of it at the destination) and lands with the
   destination's default mask on the destination socket with the most headroom: the largest
   min(L3 free share, bandwidth free share) under today's state there.

Bandwidth capacity per socket: from the caller (`bw_capacity`, e.g. the config: source
``config``), else a stored fact ``mem_bw_bytes_s`` (source ``facts``), else the highest
summed bandwidth seen on that socket in any collection (source ``observed-peak``: a lower
bound of the real capacity, so utilisation figures against it are upper bounds).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from rdtadvisor.advise.planfile import CatEntry, Migration, PlanFile, check_masks
from rdtadvisor.cache.curve import LINE_BYTES
from rdtadvisor.cache.equilibrium import allocate, mask_matrix
from rdtadvisor.core.errors import RdtError
from rdtadvisor.model import curvefit as curves
from rdtadvisor.model import shares
from rdtadvisor.model.capacity import SocketFacts, socket_facts
from rdtadvisor.model.curves import relative_fits

RECENT = 3              # the latest collections (with today's mask) that make "today's" level
N_DRAWS = 64            # ensemble members besides the best estimate
LEVEL = 0.9             # the band: 5th..95th percentile
SNAPSHOT_SIGMA = 0.25   # log-sd of one collection's misses (median of 3 x 10 ms, lognormal ~0.35 each)
ANCHOR_CLIP = (0.2, 5.0)
MODEL_CHECK_BYTES = 1024**2     # today's model vs measured occupancy is checked for VMs holding >= 1 MiB
MODEL_CHECK_TOLERANCE = 0.3     # ... and a note is made when it is off by more than this


class PredictionError(RdtError):
    """The history cannot support a prediction for this plan (e.g. the host was never collected)."""


@dataclass(frozen=True)
class Figure:
    """One quantity: today's observation, the model today, the prediction and its band."""

    observed: float
    now: float
    predicted: float
    low: float
    high: float

    @property
    def change_pct(self) -> float | None:
        if self.now <= 0:
            return None if self.predicted <= 0 else float("inf")
        return 100.0 * (self.predicted / self.now - 1.0)

    def to_json(self) -> dict:
        ch = self.change_pct
        return {"observed": self.observed, "now": self.now, "predicted": self.predicted, "low": self.low,
                "high": self.high, "change_pct": None if ch is None or not np.isfinite(ch) else round(ch, 2)}

    def scaled(self, k: float) -> Figure:
        return Figure(self.observed * k, self.now * k, self.predicted * k, self.low * k, self.high * k)


@dataclass(frozen=True)
class VmPrediction:
    host: str
    socket: int
    domid: int
    name: str
    mask_now: int | None          # None: not on this socket today (moved in)
    mask_plan: int | None         # None: not on this socket after the plan (moved out)
    occupancy: Figure             # [B]
    misses: Figure                # [1/s]
    fit: curves.CurveFit
    moved: str | None = None      # "in" | "out" | None

    @property
    def bandwidth(self) -> Figure:
        """[B/s] = misses x 64 B (so it carries the same prefetch/write-back over-count)."""
        return self.misses.scaled(LINE_BYTES)

    def to_json(self) -> dict:
        return {"domid": self.domid, "name": self.name, "moved": self.moved,
                "mask": {"now": _hex(self.mask_now), "predicted": _hex(self.mask_plan)},
                "occupancy_bytes": self.occupancy.to_json(), "misses_per_s": self.misses.to_json(),
                "bandwidth_bytes_s": self.bandwidth.to_json(), "fit": self.fit.summary()}


@dataclass(frozen=True)
class SocketPrediction:
    host: str
    socket: int
    as_of: pd.Timestamp
    l3_bytes: float
    ways: int
    bw_capacity: float | None
    bw_capacity_source: str
    vms: tuple[VmPrediction, ...]
    occupancy: Figure             # summed [B]
    bandwidth: Figure             # summed [B/s]
    converged: bool               # the best estimate reached the fixed point
    converged_share: float = 1.0  # share of the ensemble that did

    def utilisation(self, which: str = "predicted") -> float | None:
        if not self.bw_capacity:
            return None
        return getattr(self.bandwidth, which) / self.bw_capacity

    def to_json(self) -> dict:
        return {"host": self.host, "socket": self.socket, "as_of": self.as_of.isoformat(),
                "l3_bytes": self.l3_bytes, "ways": self.ways, "bw_capacity_bytes_s": self.bw_capacity,
                "bw_capacity_source": self.bw_capacity_source, "converged": self.converged,
                "converged_share": round(self.converged_share, 3),
                "totals": {"occupancy_bytes": self.occupancy.to_json(),
                           "bandwidth_bytes_s": self.bandwidth.to_json(),
                           "bw_utilisation": {"now": self.utilisation("now"),
                                              "predicted": self.utilisation("predicted")}},
                "vms": [v.to_json() for v in self.vms]}


@dataclass(frozen=True)
class Lacking:
    host: str
    socket: int | None
    domid: int | None
    name: str
    quality: str
    reason: str

    def to_json(self) -> dict:
        return {"host": self.host, "socket": self.socket, "domid": self.domid, "name": self.name,
                "quality": self.quality, "reason": self.reason}


@dataclass
class Prediction:
    """Everything `whatif` reports; `to_json` is the stable shape documented in the CLI."""

    plan: str
    sockets: list[SocketPrediction] = field(default_factory=list)
    migrations: list[dict] = field(default_factory=list)
    lacking_history: list[Lacking] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unpredicted: dict[str, str] = field(default_factory=dict)   # host -> why it is not predicted

    def hosts(self) -> dict[str, dict[str, dict]]:
        """Per host, summed over its predicted sockets: before/after occupancy and bandwidth."""
        out: dict[str, dict[str, dict]] = {}
        for s in self.sockets:
            h = out.setdefault(s.host, {w: {"occupancy_bytes": 0.0, "l3_bytes": 0.0, "bandwidth_bytes_s": 0.0,
                                            "bw_capacity_bytes_s": 0.0, "vms": 0}
                                        for w in ("before", "after")})
            for which, attr in (("before", "now"), ("after", "predicted")):
                h[which]["occupancy_bytes"] += getattr(s.occupancy, attr)
                h[which]["l3_bytes"] += s.l3_bytes
                h[which]["bandwidth_bytes_s"] += getattr(s.bandwidth, attr)
                h[which]["bw_capacity_bytes_s"] += s.bw_capacity or 0.0
            h["before"]["vms"] += sum(v.moved != "in" for v in s.vms)
            h["after"]["vms"] += sum(v.moved != "out" for v in s.vms)
        return out

    def to_json(self) -> dict:
        return {"plan": self.plan, "sockets": [s.to_json() for s in self.sockets], "hosts": self.hosts(),
                "migrations": self.migrations,
                "lacking_history": [x.to_json() for x in self.lacking_history], "notes": self.notes,
                "unpredicted": self.unpredicted}


def _hex(m: int | None) -> str | None:
    return None if m is None else f"{m:#x}"


# --- the equilibrium --------------------------------------------------------------------------

def equilibrium(log_r: np.ndarray, alpha: np.ndarray, ws: np.ndarray, floor: np.ndarray, own: np.ndarray,
                way_bytes: float, *, iterations: int = 300, tol: float = 1e-4, start: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Capacity [B] and misses/s of n VMs sharing ways, for an ensemble of curve sets.

    Parameters are (E, n) arrays (`curves.misses_of`); `own` is the (n, W) 0/1 mask
    matrix. Damped iteration of `equilibrium.allocate` with misses = M(capacity), as the truth
    model does, each ensemble member frozen once it moves less than `tol` ways (keeping the
    undamped step, which lands exactly on a working-set knee). Returns (capacity, misses,
    converged per member). `start`: (E, n) capacities to start from (a nearby layout's
    equilibrium converges in a few steps); default each VM's even share of its ways.
    """
    ws_cap = np.where(np.isfinite(ws), ws, np.inf)
    if start is not None:
        cap = np.array(start, dtype=float, copy=True)
    else:
        even = (own * way_bytes / np.maximum(own.sum(axis=0), 1)).sum(axis=1)
        cap = np.broadcast_to(even, log_r.shape).copy()
    cap = np.minimum(cap, ws_cap)
    done = np.zeros(cap.shape[0], dtype=bool)
    for _ in range(iterations):
        m = curves.misses_of(log_r, alpha, ws, floor, cap)
        new = allocate(m, own, way_bytes, ws_cap)
        now_done = ~done & (np.max(np.abs(new - cap), axis=1) / way_bytes < tol)
        cap = np.where(now_done[:, None], new, np.where(done[:, None], cap, 0.5 * cap + 0.5 * new))
        done |= now_done
        if done.all():
            break
    return cap, curves.misses_of(log_r, alpha, ws, floor, cap), done


# --- today's state per socket ----------------------------------------------------------------

@dataclass
class _Member:
    """One VM (or one per-socket thread of a moved VM) in a socket's model."""

    domid: int
    name: str
    socket: int                   # on the host it is on today
    fit: curves.CurveFit
    mask_now: int | None
    mask_plan: int | None
    observed_occ: float
    observed_misses: float
    sigma: float                  # log-sd of today's level estimate
    moved: str | None = None
    log_r_shift: np.ndarray | None = None   # (E,) anchoring of r to today's level (set by _History)


@dataclass
class _SocketState:
    host: str
    socket: int
    as_of: pd.Timestamp
    facts: SocketFacts
    l3_bytes: float
    ways: int
    full: int
    members: list[_Member]
    bw_capacity: float | None
    bw_source: str


class _History:
    """The frames of the hosts a plan touches, with the fits and points computed once."""

    def __init__(self, history: Mapping[str, pd.DataFrame], hosts: list[str], n_draws: int,
                 bw_capacity: Mapping | None, traffic: Mapping[str, float] | None = None) -> None:
        self.n_draws, self.bw_given = n_draws, bw_capacity
        def take(name: str) -> pd.DataFrame:
            f = history.get(name)
            if f is None:
                return pd.DataFrame(columns=["host"])
            return f[f["host"].isin(hosts)]
        self.samples, self.settings, self.facts = take("samples"), take("settings"), take("facts")
        self.sfacts = socket_facts(self.facts) if len(self.facts) else {}
        self.points = curves.points(self.samples, self.settings) if len(self.samples) else \
            curves.points(self.samples)
        # no MBM: relative curves from occupancy shares, in misses/s once scaled by the socket's
        # memory traffic measured outside xl (`traffic`, by host)
        self.relative: dict[tuple[str, int, int], curves.CurveFit] = {}
        self.unscaled: dict[tuple[str, int], str] = {}
        if len(self.samples):
            pseudo, fits = relative_fits(self.samples, self.facts, self.settings)
            for (host, socket), g in pseudo.groupby(["host", "socket"]):
                mine = {k: f for k, f in fits.items() if k[:2] == (host, socket)}
                total = sum(f.median_bandwidth for f in mine.values())
                given = (traffic or {}).get(str(host))
                if not given or total <= 0:
                    self.unscaled[(str(host), int(socket))] = f"{host} socket {socket}: {shares.NO_TRAFFIC}"
                    continue
                factor = given / total
                g = g.assign(misses_per_s=g["misses_per_s"] * factor,
                             bandwidth_bytes_s=g["bandwidth_bytes_s"] * factor,
                             others_bandwidth=g["others_bandwidth"] * factor)
                self.points = pd.concat([self.points, g], ignore_index=True)
                self.relative.update({k: shares.scaled(f, factor) for k, f in mine.items()})
        self._states: dict[tuple[str, int], _SocketState] = {}
        self._by_socket: dict[tuple[str, int], pd.DataFrame] | None = None

    def sockets_of(self, host: str) -> list[int]:
        p = self.points[self.points["host"] == host]
        return sorted(int(s) for s in p["socket"].unique())

    def state(self, host: str, socket: int) -> _SocketState:
        key = (host, socket)
        if key not in self._states:
            st = self._build(host, socket, self.bw_given)
            shift = _anchor(st, self.n_draws)
            for i, m in enumerate(st.members):
                m.log_r_shift = shift[:, i]
            self._states[key] = st
        return self._states[key]

    def _socket_points(self, host: str, socket: int) -> pd.DataFrame:
        """The points of one socket (the points grouped once, not filtered per socket)."""
        if self._by_socket is None:
            self._by_socket = {(str(h), int(s)): g for (h, s), g in
                               self.points.groupby(["host", "socket"], sort=False, observed=True)}
        return self._by_socket.get((host, socket), self.points.iloc[:0])

    def _build(self, host: str, socket: int, bw_capacity: Mapping | None) -> _SocketState:
        pts = self._socket_points(host, socket)
        if (host, socket) in self.unscaled:
            raise PredictionError(self.unscaled[(host, socket)])
        if pts.empty:
            known = sorted(self.points["host"].unique())
            if host not in known:
                raise PredictionError(f"host {host!r} has no samples in the store"
                                      f" (hosts with samples: {', '.join(known) or 'none'})")
            raise PredictionError(f"{host} socket {socket} has no samples in the store")
        sf = self.sfacts.get((host, socket)) or SocketFacts(None, None, False, None)
        latest = pts["time"].max()
        now = pts[pts["time"] == latest]
        recent = np.sort(pts["time"].unique())[-RECENT:]
        masks = self._masks(host, socket)
        ways = sf.ways or max([int(m).bit_length() for m in masks["value"]] or [0]) or None
        if ways is None:
            raise PredictionError(f"{host} socket {socket}: CBM length unknown "
                                  f"(no psr-hwinfo facts or masks stored)")
        full = sf.full_mask or (1 << ways) - 1
        l3 = sf.l3_bytes or float(pts.groupby("time")["occupancy_bytes"].sum().max())
        today = masks[masks["time"] <= latest].drop_duplicates("domid", keep="last")
        mask_of = dict(zip(today["domid"].astype(int), today["value"].astype(int), strict=True))
        fits = ({k: f for k, f in self.relative.items() if k[:2] == (host, socket)}
                or curves.fit_points(pts, self.facts))      # only this socket's VMs
        members = []
        # each VM's recent points, and the mask it had at each of them (the latest change at
        # or before the point), grouped once per socket
        mine_all = pts[pts["time"].isin(recent)].sort_values("time", kind="stable")
        by_domid = {int(d): g for d, g in mine_all.groupby("domid", sort=False)}
        mask_times = {int(d): (g["time"].to_numpy(dtype="datetime64[ns]"), g["value"].to_numpy())
                      for d, g in masks.groupby("domid", sort=False)}
        for row in now.to_dict("records"):
            d = int(row["domid"])
            fit = fits.get((host, socket, d))
            if fit is None:
                continue
            mine = by_domid.get(d, mine_all.iloc[:0])
            if d in mask_times:
                at, values = mask_times[d]
                idx = np.searchsorted(at, mine["time"].to_numpy(dtype="datetime64[ns]"), side="right") - 1
                m_at = np.where(idx >= 0, values[np.maximum(idx, 0)], full).astype(np.int64)
                same = m_at == mask_of.get(d, full)
            else:
                same = np.ones(len(mine), dtype=bool)
            run = mine[same].tail(RECENT)
            k = max(len(run), 1)
            lv = np.log(np.maximum(run["misses_per_s"].to_numpy(float), curves.MIN_MISSES))
            spread = 1.4826 * float(np.median(np.abs(lv - np.median(lv)))) if k >= 3 else SNAPSHOT_SIGMA
            mask = mask_of.get(d, full)
            members.append(_Member(d, str(row["domain"]), socket, fit, mask, mask,
                                   float(np.median(run["occupancy_bytes"])) if len(run) else
                                   float(row["occupancy_bytes"]),
                                   float(np.median(run["misses_per_s"])) if len(run) else
                                   float(row["misses_per_s"]),
                                   max(spread, 0.1) / np.sqrt(k)))
        cap, source = self._bw_capacity(host, socket, pts, bw_capacity)
        return _SocketState(host, socket, latest, sf, l3, ways, full, members, cap, source)

    def _masks(self, host: str, socket: int) -> pd.DataFrame:
        st = self.settings
        if not len(st):
            return pd.DataFrame({"time": pd.Series(dtype="datetime64[ns, UTC]"), "domid": [], "value": []})
        st = st[(st["host"] == host) & (st["socket"] == socket) & st["value"].notna()
                & st["setting"].isin(["l3_cbm", "l3_data_cbm"])]
        st = st.sort_values(["time", "setting"], kind="stable")
        st = st.drop_duplicates(["time", "domid"], keep="last")
        return st[["time", "domid", "value"]].sort_values("time", kind="stable")

    def _bw_capacity(self, host: str, socket: int, pts: pd.DataFrame,
                     given: Mapping | None) -> tuple[float | None, str]:
        if given:
            for k in ((host, socket), host):
                if given.get(k):
                    return float(given[k]), "config"
        f = self.facts
        if len(f):
            f = f[(f["host"] == host) & (f["fact"] == "mem_bw_bytes_s") & f["value"].notna()
                  & ((f["socket"] == socket) | f["socket"].isna())]
            if len(f):
                return float(f.sort_values("time")["value"].iloc[-1]), "facts"
        peak = float(pts.groupby("time")["bandwidth_bytes_s"].sum().max())
        return (peak, "observed-peak") if peak > 0 else (None, "unknown")


# --- solving a socket -------------------------------------------------------------------------

def _params(members: list[_Member], n_draws: int) -> tuple[np.ndarray, ...]:
    """(E, n) arrays of (log r, alpha, ws, floor): row 0 best estimates, then draws."""
    cols = []
    for mb in members:
        f = mb.fit
        best = np.array([[np.log(max(f.r, 1e-300)), f.alpha, f.ws_bytes, f.floor]])
        d = f.draws[:n_draws] if len(f.draws) else np.repeat(best, n_draws, axis=0)
        if len(d) < n_draws:
            d = np.concatenate([d, np.repeat(best, n_draws - len(d), axis=0)])
        cols.append(np.concatenate([best, d]))
    arr = np.stack(cols, axis=1)                    # (E, n, 4)
    return arr[..., 0].copy(), arr[..., 1].copy(), arr[..., 2].copy(), arr[..., 3].copy()


def _solve_socket(st: _SocketState, members: list[_Member], masks: list[int], n_draws: int,
                  shift: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    log_r, alpha, ws, floor = _params(members, n_draws)
    if shift is None:
        shift = np.stack([m.log_r_shift for m in members], axis=1)
    own = mask_matrix(masks, st.ways).astype(float)
    wb = st.l3_bytes / st.ways
    return equilibrium(log_r + shift, alpha, ws, floor, own, wb)


def _anchor(st: _SocketState, n_draws: int) -> np.ndarray:
    """(E, n) log shifts of r that make today's masks reproduce today's observed misses."""
    ms = st.members
    E = n_draws + 1
    shift = np.zeros((E, len(ms)))
    if not ms:
        return shift
    observed = np.log([max(m.observed_misses, curves.MIN_MISSES) for m in ms])
    # each draw anchors to a level drawn around today's (its noise: 10 ms snapshots, few of them)
    rng = np.random.default_rng(zlib.crc32(f"{st.host}:{st.socket}".encode()))
    sigma = np.array([m.sigma for m in ms])
    target = observed + np.vstack([np.zeros((1, len(ms))), rng.normal(0, 1, (n_draws, len(ms))) * sigma])
    lo, hi = np.log(ANCHOR_CLIP[0]), np.log(ANCHOR_CLIP[1])
    for _ in range(4):
        _, miss, _ = _solve_socket(st, ms, [m.mask_now for m in ms], n_draws, shift)
        step = target - np.log(np.maximum(miss, 1e-300))
        shift = np.clip(shift + step, lo, hi)
        if np.max(np.abs(step)) < 1e-3:
            break
    return shift


def _figures(values_now: np.ndarray, values_plan: np.ndarray, observed: float) -> Figure:
    """A Figure from ensemble columns (row 0 = best estimate)."""
    q = (1 - LEVEL) / 2
    lo, hi = np.quantile(values_plan[1:], [q, 1 - q]) if len(values_plan) > 1 else (values_plan[0],) * 2
    best = float(values_plan[0])
    lo, hi = min(float(lo), best), max(float(hi), best)
    return Figure(observed=observed, now=float(values_now[0]), predicted=best, low=lo, high=hi)


def _predict_socket(st: _SocketState, after: list[_Member], n_draws: int) -> SocketPrediction:
    """Solve today's and the planned state of one socket and report both."""
    before = [m for m in after if m.moved != "in"]
    planned = [m for m in after if m.moved != "out"]
    by_id = {id(m): i for i, m in enumerate(before)}
    cap0, miss0, ok0 = _solve_socket(st, before, [m.mask_now for m in before], n_draws)
    if planned:
        cap1, miss1, ok1 = _solve_socket(st, planned, [m.mask_plan for m in planned], n_draws)
    else:
        cap1, miss1, ok1 = np.zeros((n_draws + 1, 0)), np.zeros((n_draws + 1, 0)), np.ones(n_draws + 1, bool)
    zeros = np.zeros(n_draws + 1)
    vms = []
    plan_idx = {id(m): i for i, m in enumerate(planned)}
    for m in after:
        i0, i1 = by_id.get(id(m)), plan_idx.get(id(m))
        c_now, m_now = (cap0[:, i0], miss0[:, i0]) if i0 is not None else (zeros, zeros)
        c_plan, m_plan = (cap1[:, i1], miss1[:, i1]) if i1 is not None else (zeros, zeros)
        obs_occ = m.observed_occ if m.moved != "in" else 0.0
        obs_miss = m.observed_misses if m.moved != "in" else 0.0
        vms.append(VmPrediction(st.host, st.socket, m.domid, m.name, m.mask_now if m.moved != "in" else None,
                                m.mask_plan if m.moved != "out" else None,
                                _figures(c_now, c_plan, obs_occ),
                                _figures(m_now, m_plan, obs_miss),
                                m.fit, m.moved))
    occ_now = cap0.sum(axis=1) if before else zeros
    occ_plan = cap1.sum(axis=1) if planned else zeros
    bw_now = miss0.sum(axis=1) * LINE_BYTES if before else zeros
    bw_plan = miss1.sum(axis=1) * LINE_BYTES if planned else zeros
    return SocketPrediction(
        st.host, st.socket, st.as_of, st.l3_bytes, st.ways, st.bw_capacity, st.bw_source, tuple(vms),
        _figures(occ_now, occ_plan, sum(m.observed_occ for m in before)),
        _figures(bw_now, bw_plan, sum(m.observed_misses for m in before) * LINE_BYTES),
        bool(ok0[0] and ok1[0]), float(np.mean(ok0 & ok1)))


# --- the public entry points ---------------------------------------------------------------

def predict(history: Mapping[str, pd.DataFrame], plan: PlanFile, *, bw_capacity: Mapping | None = None,
            traffic: Mapping[str, float] | None = None, n_draws: int = N_DRAWS) -> Prediction:
    """Predict the effect of `plan` (its CAT part and its migrations together).

    `history`: tidy frames by table name (``samples``, ``settings``, ``facts``; others
    ignored). `bw_capacity`: per-socket capacity [B/s] by ``(host, socket)`` or ``host``.
    `traffic`: per host, the sockets' memory traffic [B/s] measured outside xl, which scales
    the relative curves of a CPU without MBM (`rdtadvisor.model.shares`).
    Raises ConfigError for masks Xen would reject, PredictionError when a socket the CAT part
    plans has no history at all, or has no MBM and no `traffic`. A migration whose source or
    destination the history cannot model (never collected, or no MBM without `traffic`) is
    predicted as far as it can be: the side that can be modelled is, the other is named in
    ``Prediction.unpredicted`` with the reason.
    """
    h = _History(history, plan.hosts, n_draws, bw_capacity, traffic)
    if plan.cat:
        check_masks(plan, h.sfacts)
    out = Prediction(plan=plan.source)
    touched: dict[tuple[str, int], list[_Member]] = {}

    def members_of(host: str, socket: int) -> list[_Member]:
        if (host, socket) not in touched:
            touched[(host, socket)] = [replace(m) for m in h.state(host, socket).members]
        return touched[(host, socket)]

    for cp in plan.cat:
        _apply_cat(cp, members_of(cp.host, cp.socket), h.state(cp.host, cp.socket), out)
    for mig in plan.migrations:
        _apply_migration(mig, h, members_of, out)
    for host, why in out.unpredicted.items():
        out.notes.append(f"{host}: not predicted: {why}")

    cat_sockets = {(cp.host, cp.socket) for cp in plan.cat}
    for host, socket in cat_sockets:
        st = h.state(host, socket)
        distinct = {m.mask_plan for m in touched[(host, socket)]} | {st.full}   # COS 0 keeps the default
        if st.facts.cos_max is not None and len(distinct) > st.facts.cos_max + 1:
            out.notes.append(f"{host} socket {socket}: the plan needs {len(distinct)} distinct masks (with "
                             f"the default) but the socket has COS 0-{st.facts.cos_max}: Xen would refuse "
                             f"some with 'no free COS available'")
    for (host, socket), members in touched.items():
        if (host, socket) not in cat_sockets and not any(m.moved for m in members):
            continue        # only looked at (a destination socket not chosen)
        st = h.state(host, socket)
        if not members:
            out.notes.append(f"{host} socket {socket}: no VMs to model")
            continue
        sp = _predict_socket(st, members, n_draws)
        if not sp.converged or sp.converged_share < 0.9:
            out.notes.append(f"{host} socket {socket}: the sharing equilibrium did not converge for "
                             f"{'the best estimate' if not sp.converged else 'some draws'} "
                             f"({100 * (1 - sp.converged_share):.0f}% of the ensemble); those figures "
                             f"are the last iterate")
        out.sockets.append(sp)
        off = [(abs(v.occupancy.now / v.occupancy.observed - 1), v.name) for v in sp.vms
               if v.moved != "in" and v.occupancy.observed >= MODEL_CHECK_BYTES]
        worst = max(off, default=(0.0, ""))
        if worst[0] > MODEL_CHECK_TOLERANCE:
            out.notes.append(f"{host} socket {socket}: the sharing model puts today's occupancy of "
                             f"{worst[1]} {100 * worst[0]:.0f}% away from what was measured; read "
                             f"its predicted occupancies as relative changes")
        for m in members:
            if m.fit.quality in ("fallback", "low") and not (m.moved == "in" and _listed(out, m)):
                out.lacking_history.append(Lacking(host, socket, m.domid, m.name, m.fit.quality,
                                                   m.fit.reason))
    out.sockets.sort(key=lambda s: (s.host, s.socket))
    return out


def predict_cat(history: Mapping[str, pd.DataFrame], plan: PlanFile, **kw) -> Prediction:
    """The CAT part of `plan` only (see `predict`)."""
    return predict(history, PlanFile(plan.source, plan.cat, ()), **kw)


def predict_migrations(history: Mapping[str, pd.DataFrame], plan: PlanFile, **kw) -> Prediction:
    """The migrations of `plan` only (see `predict`)."""
    return predict(history, PlanFile(plan.source, (), plan.migrations), **kw)


def _no_curves(h: _History, host: str) -> str:
    """Why a host's history gives no curves to predict with."""
    if host in set(h.samples["host"].astype(str)) if len(h.samples) else False:
        return ("occupancy only (no MBM) and no relative curves: a calibrate sweep and "
                "[report] memory_traffic give them")
    return "no samples in the store"


def _listed(out: Prediction, m: _Member) -> bool:
    return any(x.domid == m.domid and x.name == m.name for x in out.lacking_history)


def _apply_cat(cp: CatEntry, members: list[_Member], st: _SocketState, out: Prediction) -> None:
    for a in cp.assignments:
        hit = [m for m in members if a.domid is not None and m.domid == a.domid and m.moved is None]
        if not hit and a.name is not None:
            hit = [m for m in members if m.name == a.name and m.moved is None]
        if not hit:
            out.notes.append(f"{cp.host} socket {cp.socket}: {a.label} ({a.path}) is not among the VMs of "
                             f"the latest collection ({st.as_of.isoformat()}); its mask is not modelled")
            out.lacking_history.append(Lacking(cp.host, cp.socket, a.domid, a.name or "", "none",
                                               "not seen in the latest collection on this socket"))
            continue
        m = hit[0]
        if a.name is not None and a.domid is not None and m.name != a.name:
            out.notes.append(f"{cp.host} socket {cp.socket}: domid {a.domid} is {m.name!r} in the store, "
                             f"the plan says {a.name!r} ({a.path}); matched by domid")
        m.mask_plan = a.data_mask


def _apply_migration(mig: Migration, h: _History, members_of, out: Prediction) -> None:
    def unknown(host: str, why: str) -> None:
        out.unpredicted.setdefault(host, why)

    def sockets_of(host: str) -> list[int]:
        ok = []
        for s in h.sockets_of(host):
            try:
                members_of(host, s)
                ok.append(s)
            except PredictionError as e:
                unknown(host, str(e))
        return ok

    src_sockets = sockets_of(mig.source)
    dst_sockets = sockets_of(mig.destination)
    if not src_sockets:
        unknown(mig.source, _no_curves(h, mig.source))
        unknown(mig.destination, f"{mig.label} arrives from {mig.source}, whose history gives it no curve")
        return
    moving: list[_Member] = []
    for s in src_sockets:
        for m in members_of(mig.source, s):
            if m.moved is not None:
                continue
            if (mig.domid is not None and m.domid == mig.domid) or (mig.domid is None and m.name == mig.name):
                if mig.name is not None and mig.domid is not None and m.name != mig.name:
                    out.notes.append(f"{mig.source}: domid {mig.domid} is {m.name!r} in the store, the plan "
                                     f"says {mig.name!r} ({mig.path}); matched by domid")
                m.moved = "out"
                moving.append(m)
    if not moving:
        raise PredictionError(f"{mig.path}: {mig.label} is not among the VMs of {mig.source}'s "
                              f"latest collection")
    if not dst_sockets:
        unknown(mig.destination, _no_curves(h, mig.destination))
        out.migrations.append({"name": moving[0].name, "domid": moving[0].domid, "from": mig.source,
                               "to": mig.destination, "from_sockets": sorted({m.socket for m in moving}),
                               "to_socket": mig.to_socket})
        return
    # destination socket: where the plan says libxl puts it; else the most headroom in the
    # state it is in (earlier moves included)
    best, best_room = dst_sockets[0], -np.inf
    for s in ([mig.to_socket] if mig.to_socket in dst_sockets else dst_sockets):
        room = _headroom(h.state(mig.destination, s), members_of(mig.destination, s), h.n_draws)
        if room > best_room:
            best, best_room = s, room
    dst = h.state(mig.destination, best)
    target = members_of(mig.destination, best)
    for m in moving:
        target.append(replace(m, mask_now=None, mask_plan=dst.full, moved="in"))
    out.migrations.append({"name": moving[0].name, "domid": moving[0].domid, "from": mig.source,
                           "to": mig.destination, "from_sockets": sorted({m.socket for m in moving}),
                           "to_socket": best})


def _headroom(st: _SocketState, members: list[_Member], n_draws: int) -> float:
    """min(free share of the L3, free share of the bandwidth capacity) with `members` on `st`."""
    live = [m for m in members if m.moved != "out"]
    if not live:
        return 1.0
    cap, miss, _ = _solve_socket(st, live, [m.mask_plan or st.full for m in live], n_draws)
    l3_free = 1 - cap[0].sum() / st.l3_bytes
    bw_free = 1 - miss[0].sum() * LINE_BYTES / st.bw_capacity if st.bw_capacity else 1.0
    return float(min(l3_free, bw_free))
