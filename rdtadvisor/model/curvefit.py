"""Miss curves estimated from stored history (``docs/algorithms.md``, "Miss curves from occupancy
and bandwidth").

Every collection gives, per (host, socket, domain), one **point on the VM's miss curve**:
the L3 capacity it held (``l3_occupancy`` [B]) and its L3 misses per second, estimated as
the median over the collection's repeated 10 ms bandwidth snapshots of
``mem_bw_total / 64 B``. Occupancy varies as neighbours and masks change, so history spreads
the points along the curve; points taken while a VM was squeezed by a small mask are the
most informative.

Caveats of misses = bandwidth / 64 (``docs/algorithms.md``, "What the counters measure"):

* MBM total bandwidth counts **prefetch** misses as well as demand misses, so this
  over-counts demand misses by the prefetch share (larger for streaming VMs, whose
  prefetchers work well).
* Whether dirty **write-backs** are counted is implementation-specific; if they are, the
  figure is misses x (1 + write-back fraction). Both biases are roughly constant per VM, so
  they scale ``r`` and leave the curve's shape (alpha, knee) and *relative* predictions alone.
* Skylake-SP MBM erratum: Xen applies no per-RMID correction, so absolute figures of
  high-RMID domains may be off by up to ~45 %; again the shape survives.

The curve model is the simulator's (`rdtadvisor.cache.curve.Curve`), scaled by the access rate::

    M(c) = r * max(f, min(1, (c / c0) ** -alpha))   for c < ws
    M(c) = r * f                                    for c >= ws

with ``c0`` = 256 KiB, so ``r`` is the miss rate when the VM holds (almost) nothing.

**Fitting** (`fit`): a small Bayesian grid posterior in log space. For every alpha in
0..1.2 (step 0.02) and every candidate knee (observed occupancies in the upper part of the
range, or no knee), log r and log(r f) are profiled out with a Huber M-estimator of
location (robust to the lognormal 10 ms snapshot noise and to the odd burst), the residual
scale is estimated by the MAD of the best fit, and the grid is weighted by ``exp(-sum
huber(res / s))`` times a prior alpha ~ N(0.5, 0.35) and a BIC-like penalty for having a
knee. A VM at its floor holds its whole working set, so the working set is read from the
high end of the points above the chosen knee (their 90th percentile; the draws take the
75th-100th), not from the lowest occupancy that splits the points. Draws from that
posterior (with the standard error of the profiled locations added) give the uncertainty
band of any prediction. Too few points, or occupancies spanning too narrow a range to see
a slope, fall back to a **class prior** (streaming: alpha ~ 0; small: knee just above what
it holds; otherwise alpha ~ 0.5) anchored at the median observed point, with a wide band,
and `CurveFit.reason` says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rdtadvisor.cache.curve import LINE_BYTES, Curve

KIB = 1024
MIB = 1024**2
C0_BYTES = 0.25 * MIB          # the simulator's c0: miss ratio 1 below this capacity
OCC_QUANTUM = 64 * KIB         # occupancy resolution we assume (CMT upscaling factor, typical)
MIN_MISSES = 16.0              # 1 KiB/s (Xen's resolution) / 64 B: the log floor for idle readings
HUBER_K = 1.345

MIN_POINTS = 8                 # fewer: class prior
MIN_COVERAGE = 1.3             # p95 / p5 of occupancy below this: class prior (no slope visible)
GOOD_POINTS, GOOD_COVERAGE = 30, 2.0
STREAMING_BW = 1.0e9           # B/s: a flat curve at this bandwidth or more is streaming
STREAMING_BW_PRIOR = 2.0e9     # B/s: without a curve, only this much bandwidth suggests streaming
IDLE_BW = 1.0e6                # B/s: below this the VM is idle
SMALL_FRACTION = 0.1           # a knee below this share of the L3 is a small working set
FLAT_ALPHA = 0.1               # a fitted exponent below this is a flat curve (streaming or insensitive)

ALPHAS = np.round(np.arange(0.0, 1.2001, 0.02), 2)
MAX_POINTS = 600               # longer histories are thinned (see `_thin`): bounds the fit's cost
N_DRAWS = 200

POINT_COLUMNS = ["host", "socket", "domid", "domain", "time", "occupancy_bytes", "misses_per_s",
                 "bandwidth_bytes_s", "readings", "alone", "ways", "others_bandwidth"]
BINDING = 0.5                 # a narrowed mask binds when the VM fills at least this share of it
SHARED_WEIGHT = 0.2            # weight of points shared with neighbours when enough "alone" points exist
_MASK_SETTINGS = ("l3_cbm", "l3_data_cbm")   # CDP: data lines are what occupancy mostly holds


def points(samples: pd.DataFrame, settings: pd.DataFrame | None = None) -> pd.DataFrame:
    """One point per (host, socket, domid, domain, time): capacity held and misses/s.

    ``occupancy_bytes`` = median of the collection's ``l3_occupancy`` readings (normally one);
    ``bandwidth_bytes_s`` = median over its ``mem_bw_total`` readings (the 10 ms snapshots);
    ``misses_per_s`` = that / 64 B (an over-count: prefetches, maybe write-backs; see the
    module docstring). Rows lacking either metric are dropped. Sorted by the key.

    ``alone`` is True when no other active domain (bandwidth >= 1 MB/s) on that socket had
    an L3 mask overlapping this one's at that time (masks from `settings`; a domain without
    a stored mask counts as holding every way): its occupancy was then set by its partition,
    not by its own load, which makes it the cleanest kind of point (the sharing equilibrium). ``ways`` is the
    number of ways of its mask (nan when unknown) and ``others_bandwidth`` the summed
    bandwidth of the other domains on the socket then: what `fit` uses as instruments.
    """
    if samples.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in POINT_COLUMNS})
    key = ["host", "socket", "domid", "domain", "time"]
    wanted = samples[samples["metric"].isin(["l3_occupancy", "mem_bw_total"])]
    g = wanted.groupby([*key, "metric"], observed=True, dropna=False)["value"]
    med = g.median().unstack("metric")
    count = wanted[wanted["metric"] == "mem_bw_total"].groupby(key, observed=True, dropna=False).size()
    for col in ("l3_occupancy", "mem_bw_total"):
        if col not in med.columns:
            med[col] = np.nan
    med = med.dropna(subset=["l3_occupancy", "mem_bw_total"])
    out = pd.DataFrame({
        "occupancy_bytes": med["l3_occupancy"].astype(float),
        "bandwidth_bytes_s": med["mem_bw_total"].astype(float),
    }, index=med.index)
    out["misses_per_s"] = out["bandwidth_bytes_s"] / LINE_BYTES
    out["readings"] = count.reindex(out.index).fillna(0).astype(int)
    out = out.reset_index()
    out["alone"], out["ways"] = _alone(out, settings)
    group = out.groupby(["host", "socket", "time"], observed=True)["bandwidth_bytes_s"]
    out["others_bandwidth"] = group.transform("sum") - out["bandwidth_bytes_s"]
    return out[POINT_COLUMNS].sort_values(key, kind="stable").reset_index(drop=True)


def row_masks(pts: pd.DataFrame, settings: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `pts` (host, socket, domid, time): its L3 mask at that time from `settings`
    (a domain without a stored mask holds every way) and whether one was stored. The width is
    that of the widest mask stored."""
    n = len(pts)
    masks = np.full(n, -1, dtype=np.int64)            # -1: every way
    if settings is not None and len(settings) and n:
        st = settings[settings["setting"].isin(_MASK_SETTINGS) & settings["value"].notna()]
        st = st.sort_values("setting").drop_duplicates(["host", "socket", "domid", "time"], keep="last")
        on = ["host", "socket", "domid", "time"]
        m = pts[on].merge(st[[*on, "value"]], how="left", on=on)
        masks = m["value"].astype("Float64").fillna(-1).to_numpy(dtype=float).astype(np.int64)
    width = int(max((int(x).bit_length() for x in np.unique(masks[masks > 0])), default=1))
    known = masks >= 0
    return np.where(known, masks, (1 << width) - 1), known


def _alone(pts: pd.DataFrame, settings: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """See `points`: per row, whether no other active domain's mask overlapped its own, and
    the number of ways in its mask (nan when unknown)."""
    n = len(pts)
    if n == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    masks, known = row_masks(pts, settings)
    width = int(max(int(masks.max()).bit_length(), 1))
    bits = ((masks[:, None] >> np.arange(width)) & 1).astype(np.int32)   # (n, width)
    active = (pts["bandwidth_bytes_s"].to_numpy(float) >= IDLE_BW).astype(np.int32)
    group = pd.factorize(pd.MultiIndex.from_frame(pts[["host", "socket", "time"]]))[0]
    per_way = np.zeros((group.max() + 1, width), dtype=np.int32)
    np.add.at(per_way, group, bits * active[:, None])
    others = per_way[group] - bits * active[:, None]
    ways = np.where(known, bits.sum(axis=1), np.nan)
    return ~np.any((others > 0) & (bits > 0), axis=1), ways


@dataclass(frozen=True)
class CurveFit:
    """One VM's estimated miss curve on one socket, with its uncertainty.

    r : misses/s at ``c0`` (miss ratio 1); alpha : power-law exponent; ws_bytes : knee
    (``inf`` when none was seen: the power law is extrapolated, the band widened);
    floor : miss ratio at and beyond the knee. ``draws`` (D, 4) holds posterior draws of
    (log r, alpha, ws, floor) used for bands and by the what-if ensemble.
    quality : ``good`` | ``fair`` | ``low`` | ``fallback``; kind : ``sensitive`` |
    ``streaming`` | ``small`` | ``insensitive`` | ``idle``; reason : why, in words.
    shared_only : no point was taken alone in a partition or with a narrowed mask, so its own
    load moved its occupancy and its misses together (the slope is biased towards flat).
    relative : the socket has no MBM; the points came from occupancy shares
    (`rdtadvisor.model.shares`), so ``r`` and ``median_bandwidth`` are in relative units (one scale
    per socket, unknown) and the draws carry the exponents' common uncertainty.
    """

    r: float
    alpha: float
    ws_bytes: float
    floor: float
    n_points: int
    coverage: tuple[float, float]      # 5th and 95th percentile of the occupancies seen [B]
    quality: str
    kind: str
    reason: str
    median_occupancy: float = 0.0
    median_bandwidth: float = 0.0
    c0_bytes: float = C0_BYTES
    draws: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)), repr=False, compare=False)
    shared_only: bool = False          # every point taken sharing the whole cache (see `fit`)
    relative: bool = False             # no MBM: misses in relative units (`rdtadvisor.model.shares`)

    @property
    def fallback(self) -> bool:
        return self.quality == "fallback"

    @property
    def measured(self) -> bool:
        """False for a class prior, and for a flat fit from shared periods only: own-load swings
        move occupancy and misses together, which reads as flat (see `fit`), so such a curve is
        as good as unmeasured."""
        return not (self.fallback or (self.shared_only and self.alpha < FLAT_ALPHA))

    @property
    def coverage_ratio(self) -> float:
        lo, hi = self.coverage
        return hi / lo if lo > 0 else float("inf") if hi > 0 else 1.0

    def curve(self) -> Curve:
        """The miss-ratio part as the simulator's `Curve` (misses = r x miss_ratio)."""
        return Curve(alpha=self.alpha, ws_bytes=self.ws_bytes, floor=self.floor, c0_bytes=self.c0_bytes)

    def misses(self, capacity: np.ndarray | float) -> np.ndarray:
        """Best-estimate misses/s when holding `capacity` [B]."""
        return self.r * self.curve().miss_ratio(capacity)

    def band(self, capacity: np.ndarray | float, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) misses/s at `capacity` covering `level` of the posterior draws."""
        c = np.atleast_1d(np.asarray(capacity, dtype=float))
        m = misses_of(self.draws[:, 0:1], self.draws[:, 1:2], self.draws[:, 2:3], self.draws[:, 3:4],
                      c[None, :], self.c0_bytes)
        q = (1 - level) / 2
        lo, hi = np.quantile(m, [q, 1 - q], axis=0)
        return (lo, hi) if np.ndim(capacity) else (lo[0], hi[0])

    def summary(self) -> dict:
        """JSON-ready figures (``ws_bytes`` null when no knee was seen)."""
        return {"r_misses_per_s": self.r, "alpha": self.alpha,
                "ws_bytes": None if not np.isfinite(self.ws_bytes) else self.ws_bytes,
                "floor": self.floor, "points": self.n_points,
                "coverage_bytes": [self.coverage[0], self.coverage[1]],
                "quality": self.quality, "kind": self.kind, "reason": self.reason}


def misses_of(log_r: np.ndarray, alpha: np.ndarray, ws: np.ndarray, floor: np.ndarray,
              capacity: np.ndarray, c0: float = C0_BYTES) -> np.ndarray:
    """Vectorised M(c) over broadcastable parameter arrays (the `Curve` formula times r)."""
    c = np.maximum(capacity, 1.0)
    power = np.minimum(1.0, (c / c0) ** -alpha)
    mr = np.where(c >= ws * (1 - 1e-9), floor, np.maximum(power, floor))
    return np.exp(log_r) * mr


def _thin(c: np.ndarray, alone: np.ndarray, k: int) -> np.ndarray:
    """Indexes of at most `k` points spread evenly over the occupancy range, alone points first
    (up to half). Long histories are serially correlated anyway; this bounds the fit's cost."""
    out = []
    quota = {True: min(int(alone.sum()), k // 2)}
    quota[False] = k - quota[True]
    for flag in (True, False):
        idx = np.flatnonzero(alone == flag)
        if len(idx) and quota[flag]:
            idx = idx[np.argsort(c[idx], kind="stable")]
            out.append(idx[np.unique(np.linspace(0, len(idx) - 1, min(quota[flag], len(idx))).round()
                                     .astype(int))])
    return np.sort(np.concatenate(out)) if out else np.arange(0)


def _masked_huber(x: np.ndarray, weight: np.ndarray, s: float,
                  iters: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Huber location of `x` along the last axis (weight 0 = excluded), and the
    effective number of points behind it. nan where nothing is included."""
    mask = weight > 0
    n = mask.sum(axis=-1)
    n_eff = weight.sum(-1) ** 2 / np.maximum((weight * weight).sum(-1), 1e-300)
    srt = np.sort(np.where(mask, x, np.inf), axis=-1)     # start from the (unweighted) median
    mid = np.clip((n - 1) // 2, 0, None)
    mid2 = np.clip(n // 2, 0, None)
    loc = 0.5 * (np.take_along_axis(srt, mid[..., None], -1)[..., 0]
                 + np.take_along_axis(srt, mid2[..., None], -1)[..., 0])
    loc = np.where(n > 0, loc, 0.0)
    # w = weight * min(1, k / max(|x - loc| / s, 1e-12)), in two preallocated buffers: the
    # fit's hot loop (same operations, same results, a fifth faster)
    shape = np.broadcast_shapes(x.shape, weight.shape)
    r, w = np.empty(shape), np.empty(shape)
    for _ in range(iters):
        np.subtract(x, loc[..., None], out=r)
        np.abs(r, out=r)
        np.divide(r, s, out=r)
        np.maximum(r, 1e-12, out=r)
        np.divide(HUBER_K, r, out=r)
        np.minimum(1.0, r, out=r)
        np.multiply(weight, r, out=w)
        loc = np.multiply(w, x, out=r).sum(-1) / np.maximum(w.sum(-1), 1e-300)
    return np.where(n > 0, loc, np.nan), np.where(n > 0, n_eff, 0.0)


def _huber_rho(r: np.ndarray) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= HUBER_K, 0.5 * a * a, HUBER_K * (a - 0.5 * HUBER_K))


def fit(pts: pd.DataFrame, *, l3_bytes: float, seed: int = 0) -> CurveFit:
    """Fit one VM's curve from its `points` rows (one host/socket/domain).

    `l3_bytes` bounds the knee and scales the "small" class. Deterministic for a `seed`.
    """
    rng = np.random.default_rng(seed)
    c_all = pts["occupancy_bytes"].to_numpy(float)
    m_all = pts["misses_per_s"].to_numpy(float)
    n_all = len(c_all)
    bw_med = float(np.median(m_all) * LINE_BYTES) if n_all else 0.0
    keep = c_all >= OCC_QUANTUM   # below one quantum the occupancy says nothing about capacity
    c, m = c_all[keep], np.maximum(m_all[keep], MIN_MISSES)
    n = len(c)
    alone = pts["alone"].to_numpy(bool)[keep] if "alone" in pts.columns else np.zeros(n, dtype=bool)
    cov = (float(np.quantile(c, 0.05)), float(np.quantile(c, 0.95))) if n else (0.0, 0.0)
    occ_med = float(np.median(c_all)) if n_all else 0.0
    if n_all and bw_med < IDLE_BW:
        return _fallback(c, m, "idle", cov, n_all, l3_bytes, rng, occ_med, bw_med,
                         f"idle (median bandwidth {bw_med / 1e6:.2f} MB/s): assumed insensitive to cache")
    if n < MIN_POINTS:
        kind = "streaming" if bw_med >= STREAMING_BW_PRIOR else "sensitive"
        return _fallback(c, m, kind, cov, n_all, l3_bytes, rng, occ_med, bw_med,
                         f"only {n} usable point{'s' * (n != 1)} (need {MIN_POINTS}): class prior "
                         f"'{kind}' with a wide band")
    ratio = cov[1] / cov[0]
    if ratio < MIN_COVERAGE:
        kind = ("streaming" if bw_med >= STREAMING_BW_PRIOR else
                "small" if cov[1] < SMALL_FRACTION * l3_bytes else "sensitive")
        held = 1.0
        if "others_bandwidth" in pts.columns:
            others = pts["others_bandwidth"].to_numpy(float)[keep] / LINE_BYTES
            held = float(np.median((c / l3_bytes) / (m / np.maximum(m + others, 1e-300))))
        return _fallback(c, m, kind, cov, n_all, l3_bytes, rng, occ_med, bw_med, held=held, reason=
                         f"occupancy seen only between {cov[0] / MIB:.1f} and {cov[1] / MIB:.1f} MiB "
                         f"(x{ratio:.2f}; need x{MIN_COVERAGE}): no slope visible, class prior '{kind}' "
                         f"with a wide band")

    thinned = ""
    if n > MAX_POINTS:
        sel = _thin(c, alone, MAX_POINTS)
        keep = np.flatnonzero(keep)[sel]
        c, m, alone = c[sel], m[sel], alone[sel]
        thinned = f" (thinned from {n} over the occupancy range)"
        n = len(c)
    y = np.log(m)
    lx = np.maximum(np.log(c / C0_BYTES), 0.0)
    # candidate knees: distinct occupancies in the upper part of the range, plus none
    upper = np.unique(np.quantile(c, np.linspace(0.5, 0.98, 13)))
    knees = np.concatenate([upper, [np.inf]])
    A, K = len(ALPHAS), len(knees)
    above = c[None, :] >= knees[:, None] - 1.5 * OCC_QUANTUM          # (K, N)
    above[-1] = False
    below = ~above
    # need enough points below a knee to see a slope, and some at/above it
    ok_knee = (below.sum(1) >= max(MIN_POINTS // 2, 3)) & ((above.sum(1) >= 2) | ~np.isfinite(knees))
    t = y[None, None, :] + ALPHAS[:, None, None] * lx[None, None, :]    # (A, 1, N)
    t = np.broadcast_to(t, (A, K, n))
    # points alone in their ways are the clean ones (their capacity is not set by their own
    # load): when there are enough of them over a range, the shared points only help a little
    n_alone = int(alone.sum())
    clean = bool(n_alone >= MIN_POINTS
                 and np.quantile(c[alone], 0.95) >= MIN_COVERAGE * np.quantile(c[alone], 0.05))
    pw = np.where(alone, 1.0, SHARED_WEIGHT) if clean else np.ones(n)
    # its own mask narrowed at times, and tightly enough to bind (it filled at least `BINDING`
    # of it): capacity then moved for a reason other than its own load. A VM fenced with
    # streamers into a mask wider than it ever fills (a calibration sweep of another VM) is
    # still set by its own load, and its flat-looking points say nothing about its curve.
    ways = pts["ways"].to_numpy(float)[keep] if "ways" in pts.columns else np.full(n, np.nan)
    known = np.isfinite(ways)
    widest = float(ways[known].max()) if known.any() else 0.0
    way_bytes = l3_bytes / widest if widest > 0 and l3_bytes > 0 else np.inf
    squeezed = int((known & (ways < widest) & (c >= BINDING * ways * way_bytes)).sum())
    partitioned = clean or squeezed >= MIN_POINTS
    bmask = np.broadcast_to(below[None] * pw, (A, K, n))
    amask = np.broadcast_to(above[None] * pw, (A, K, n))

    def evaluate(s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        a, nb = _masked_huber(t, bmask, s)
        b, na = _masked_huber(np.broadcast_to(y, (A, K, n)), amask, s)
        knee_power = a - ALPHAS[:, None] * np.maximum(np.log(np.where(np.isfinite(knees), knees, 1.0)
                                                             / C0_BYTES), 0.0)[None, :]
        b = np.where(np.isfinite(b), np.minimum(b, knee_power), knee_power)
        pred = np.where(above[None], b[..., None], a[..., None] - ALPHAS[:, None, None] * lx)
        res = y - pred
        loss = (pw * _huber_rho(res / s)).sum(-1)
        loss = np.where(ok_knee[None, :] & np.isfinite(a), loss, np.inf)
        return a, b, loss, nb, na

    a, b, loss, nb, na = evaluate(0.3)
    i, j = np.unravel_index(np.argmin(loss), loss.shape)
    res = (y - np.where(above[j], b[i, j], a[i, j] - ALPHAS[i] * lx))[pw >= 1]
    s = max(1.4826 * float(np.median(np.abs(res - np.median(res)))), 0.05)
    a, b, loss, nb, na = evaluate(s)
    log_prior = -0.5 * ((ALPHAS - 0.5) / 0.35) ** 2
    knee_pen = np.where(np.isfinite(knees), np.log(n), 0.0)
    logp = -loss + log_prior[:, None] - knee_pen[None, :]
    logp = np.where(np.isfinite(logp), logp, -np.inf)
    w = np.exp(logp - logp.max())
    w /= w.sum()
    i, j = np.unravel_index(np.argmax(w), w.shape)

    # posterior draws: a grid cell by weight, plus the standard errors of the profiled locations
    flat = rng.choice(w.size, size=N_DRAWS, p=w.ravel())
    di, dj = np.unravel_index(flat, w.shape)
    se_scale = s * 1.25   # Huber efficiency ~0.95 of the mean; 1.25 covers serial correlation a bit
    da = a[di, dj] + rng.normal(0, 1, N_DRAWS) * se_scale / np.sqrt(np.maximum(nb[di, dj], 1))
    db = b[di, dj] + rng.normal(0, 1, N_DRAWS) * se_scale / np.sqrt(np.maximum(na[di, dj], 1))
    dalpha = ALPHAS[di]
    # A VM at its floor holds its whole working set, so the points above a knee sit *at* the
    # working set: read it from their high end (occupancy lags upward as neighbours' stale
    # lines drain), not from the lowest occupancy that split the points.
    held_at = _held(c, above)
    dws = held_at(dj, rng.uniform(HELD_Q[0], 1.0, N_DRAWS))
    dfloor = np.where(np.isfinite(dws), np.exp(np.minimum(db - da, 0.0)), 0.0)
    # no knee seen: it may lie anywhere beyond what was seen; half of those draws get one there
    unseen = ~np.isfinite(dws) & (rng.random(N_DRAWS) < 0.5)
    lo_ws = max(c.max() * 1.1, C0_BYTES)
    hi_ws = max(float(l3_bytes), lo_ws * 1.01)
    new_ws = np.exp(rng.uniform(np.log(lo_ws), np.log(hi_ws), N_DRAWS))
    power_at = np.minimum(1.0, (new_ws / C0_BYTES) ** -dalpha)
    dws = np.where(unseen, new_ws, dws)
    dfloor = np.where(unseen, power_at * rng.uniform(0.2, 1.0, N_DRAWS), dfloor)
    shared_note = ""
    if not partitioned:
        # Shared periods only: a VM whose load rises holds more cache *and* misses more, so the
        # points drift up the curve and flatten it. Allow for that bias: half the draws get a
        # steeper exponent, pivoting at the median occupancy (where the data pin the curve).
        steeper = rng.random(N_DRAWS) < 0.5
        d_up = np.where(steeper, rng.uniform(0.0, 0.3, N_DRAWS), 0.0)
        d_up = np.minimum(dalpha + d_up, ALPHAS[-1]) - dalpha
        pivot = np.maximum(np.log(np.median(c) / C0_BYTES), 0.0)
        da = da + d_up * pivot
        dalpha = dalpha + d_up
        dfloor = np.where(np.isfinite(dws), dfloor * np.exp(-d_up * pivot), dfloor)
        shared_note = ("; its mask never narrowed (shared periods only): load swings flatten the "
                       "curve, so the band allows a steeper one")
    draws = np.column_stack([da, dalpha, dws, dfloor])

    alpha = float(ALPHAS[i])
    ws = float(held_at(np.array([j]), np.array([HELD_Q[1]]))[0])
    floor = float(np.exp(min(b[i, j] - a[i, j], 0.0))) if np.isfinite(ws) else 0.0
    alpha_lo, alpha_hi = np.quantile(dalpha, [0.05, 0.95])
    if alpha < FLAT_ALPHA:
        kind = "streaming" if bw_med >= STREAMING_BW else "insensitive"
    elif np.isfinite(ws) and ws < SMALL_FRACTION * l3_bytes:
        kind = "small"
    else:
        kind = "sensitive"
    if n >= GOOD_POINTS and ratio >= GOOD_COVERAGE and alpha_hi - alpha_lo <= 0.3 and partitioned:
        quality, why = "good", ""
    elif n >= 15 and alpha_hi - alpha_lo <= 0.5:
        quality, why = "fair", ""
    else:
        quality = "low"
        why = "; low: " + ", ".join(x for x in (
            f"{n} points" if n < 15 else "",
            f"occupancy range only x{ratio:.1f}" if ratio < GOOD_COVERAGE else "",
            f"alpha uncertain ({alpha_lo:.2f}-{alpha_hi:.2f})" if alpha_hi - alpha_lo > 0.5 else "") if x)
    knee_text = f"knee {ws / MIB:.1f} MiB" if np.isfinite(ws) else "no knee seen"
    reason = (f"fit of {n} points{thinned} over {cov[0] / MIB:.1f}-{cov[1] / MIB:.1f} MiB: alpha {alpha:.2f} "
              f"(90% {alpha_lo:.2f}-{alpha_hi:.2f}), {knee_text}, noise x{np.exp(s):.2f}"
              f"{f', weighting the {n_alone} alone in their ways' if clean else ''}{shared_note}{why}")
    return CurveFit(r=float(np.exp(a[i, j])), alpha=alpha, ws_bytes=ws, floor=floor, n_points=n_all,
                    coverage=cov, quality=quality, kind=kind, reason=reason, median_occupancy=occ_med,
                    median_bandwidth=bw_med, draws=draws, shared_only=not partitioned)


HELD_Q = (0.75, 0.9)   # quantiles of the points above a knee: draws' lowest, point estimate


def _held(c: np.ndarray, above: np.ndarray):
    """``f(rows, q)``: the ``q`` quantile of the occupancies above knee ``rows`` (inf: no knee)."""
    srt = np.where(above, c[None, :], np.nan)
    srt.sort(axis=1)                                   # NaNs last
    cnt = above.sum(1)

    def at(rows: np.ndarray, q: np.ndarray) -> np.ndarray:
        k = cnt[rows]
        pos = np.clip(np.round(q * (k - 1)).astype(int), 0, np.maximum(k - 1, 0))
        vals = srt[rows, pos]
        return np.where(k > 0, vals, np.inf)

    return at


# class priors: (alpha low, alpha high); the knee is set per class in `_fallback`
_PRIORS = {"streaming": (0.0, 0.1), "sensitive": (0.2, 0.8), "small": (0.2, 0.8), "idle": (0.0, 0.1),
           "insensitive": (0.0, 0.1)}
_PRIOR_ALPHA = {"streaming": 0.02, "sensitive": 0.5, "small": 0.5, "idle": 0.0, "insensitive": 0.02}


SMALL_CLIFF = 5.0   # a small VM squeezed below its knee misses at least this much more


def _fallback(c: np.ndarray, m: np.ndarray, kind: str, cov: tuple[float, float], n_all: int,
              l3_bytes: float, rng: np.random.Generator, occ_med: float, bw_med: float,
              reason: str, held: float = 1.0) -> CurveFit:
    """The class prior anchored at the median observed point, with a wide band.

    streaming / sensitive / idle / insensitive: power law through that point, knee at the
    L3 size, flat beyond. small: it holds its whole working set (its occupancy stays put
    while its neighbours change), so the point is its floor, the knee is just above the
    largest occupancy seen, and squeezing it below that costs a cliff: at least x5, or twice
    what explains its occupancy (`held`: its share of the L3 over its share of the misses).
    """
    if len(c):
        c_ref, m_ref = float(np.median(c)), float(np.median(m))
    else:
        c_ref, m_ref = max(occ_med, C0_BYTES), max(bw_med / LINE_BYTES, MIN_MISSES)
    c_max = float(c.max()) if len(c) else c_ref
    alpha = _PRIOR_ALPHA[kind]
    lo, hi = _PRIORS[kind]
    d_alpha = rng.uniform(lo, hi, N_DRAWS)
    noise = rng.normal(0, 0.35, N_DRAWS)     # the anchor itself is noisy
    if kind == "small":
        # occupancy is truncated to the quantum: the working set is in [c_max, c_max + quantum)
        ws = max(c_max + OCC_QUANTUM / 2, C0_BYTES)
        d_ws = np.maximum(c_max + rng.uniform(0, OCC_QUANTUM, N_DRAWS), C0_BYTES)
        lx_ws = max(np.log(ws / C0_BYTES), 0.0)
        # It holds `held` times its share of the misses: under the sharing model only a VM
        # capped at its working set does that, and the cliff must at least explain it.
        need = max(held, 1.0)
        cliff = need * np.exp(rng.uniform(np.log(1.2), np.log(10.0), N_DRAWS))
        floor = float(np.exp(-alpha * lx_ws) / max(SMALL_CLIFF, 2 * need))
        r = m_ref / floor
        d_floor = np.exp(-d_alpha * np.maximum(np.log(d_ws / C0_BYTES), 0.0)) / cliff
        d_lr = np.log(m_ref) - np.log(d_floor) + noise
    else:
        ws = float(l3_bytes)
        lx_ref = max(np.log(c_ref / C0_BYTES), 0.0)
        r = float(m_ref * np.exp(alpha * lx_ref))
        floor = float(min(1.0, (ws / C0_BYTES) ** -alpha))
        d_lr = np.log(m_ref) + d_alpha * lx_ref + noise
        d_floor = np.minimum(1.0, (ws / C0_BYTES) ** -d_alpha)   # flat beyond the knee: no cliff assumed
        d_ws = np.full(N_DRAWS, ws)
    return CurveFit(r=r, alpha=alpha, ws_bytes=ws, floor=floor, n_points=n_all,
                    coverage=cov, quality="fallback", kind=kind, reason=reason, median_occupancy=occ_med,
                    median_bandwidth=bw_med, draws=np.column_stack([d_lr, d_alpha, d_ws, d_floor]))


TABLE_COLUMNS = ["host", "socket", "domid", "domain", "kind", "quality", "measured", "relative", "points",
                 "occupancy_p5_bytes", "occupancy_p95_bytes", "alpha", "alpha_lo", "alpha_hi", "knee_bytes",
                 "floor", "bandwidth_bytes_s", "ways",
                 "misses_1way", "misses_1way_lo", "misses_1way_hi",
                 "misses_half", "misses_half_lo", "misses_half_hi",
                 "misses_all", "misses_all_lo", "misses_all_hi", "reason"]


def fit_table(fits: Mapping[tuple[str, int, int], CurveFit], *,
              sizes: Mapping[tuple[str, int], tuple[float, int]],
              names: Mapping[tuple[str, int], str] | None = None) -> pd.DataFrame:
    """One row per fitted VM (`TABLE_COLUMNS`, sorted by host, socket, domid): what its curve says
    and how sure it is.

    ``sizes``: (host, socket) -> (L3 bytes, ways); the misses [1/s] are predicted holding one
    way, half the ways and all of them (best estimate and the 90 % band of the posterior
    draws; NaN where the socket's size is unknown). ``alpha_lo``/``alpha_hi``: the 90 % band of
    the exponent; ``knee_bytes`` NaN when no knee was seen. ``measured``: `CurveFit.measured`.
    ``names``: (host, domid) -> domain name.
    """
    rows = []
    for (host, socket, domid), f in sorted(fits.items()):
        l3, ways = sizes.get((host, socket), (np.nan, 0))
        caps = np.array([l3 / ways, l3 * (ways // 2) / ways, l3]) if ways else np.full(3, np.nan)
        known = np.isfinite(caps)
        best = np.full(3, np.nan)
        lo, hi = best.copy(), best.copy()
        if known.all():
            best = np.asarray(f.misses(caps), dtype=float)
            lo, hi = f.band(caps)
        a_lo, a_hi = (np.quantile(f.draws[:, 1], [0.05, 0.95]) if len(f.draws) else (f.alpha, f.alpha))
        rows.append([host, socket, domid, (names or {}).get((host, domid)), f.kind, f.quality, f.measured,
                     f.relative, f.n_points, f.coverage[0], f.coverage[1], f.alpha, float(a_lo), float(a_hi),
                     f.ws_bytes if np.isfinite(f.ws_bytes) else np.nan, f.floor, f.median_bandwidth,
                     ways or None, best[0], lo[0], hi[0], best[1], lo[1], hi[1], best[2], lo[2], hi[2],
                     f.reason])
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def l3_sizes(facts: pd.DataFrame) -> dict[tuple[str, int], float]:
    """Latest ``l3_cache_bytes`` per (host, socket) from the facts table."""
    f = facts[(facts["fact"] == "l3_cache_bytes") & facts["socket"].notna() & facts["value"].notna()]
    f = f.sort_values("time", kind="stable").drop_duplicates(["host", "socket"], keep="last")
    return {(str(h), int(s)): float(v) for h, s, v in zip(f["host"], f["socket"], f["value"], strict=True)}


def l3_of(pts: pd.DataFrame, sizes: Mapping[tuple[str, int], float], l3_default: Mapping[str, float] | None,
           host: str, socket: int) -> float:
    """A socket's L3 size: the facts', else `l3_default`'s for the host, else the largest summed
    occupancy seen on it (`pts` with host, socket, time, occupancy_bytes)."""
    l3 = sizes.get((str(host), int(socket)))
    if l3 is None:
        l3 = (l3_default or {}).get(str(host))
    if l3 is None:
        same = pts[(pts["host"] == host) & (pts["socket"] == socket)]
        l3 = float(same.groupby("time")["occupancy_bytes"].sum().max())
    return max(float(l3), C0_BYTES)


def fit_points(pts: pd.DataFrame, facts: pd.DataFrame, *,
               l3_default: Mapping[str, float] | None = None) -> dict[tuple[str, int, int], CurveFit]:
    """`fit_all` over an already computed `points` frame (or a part of it, e.g. one socket)."""
    sizes = l3_sizes(facts) if len(facts) else {}
    out: dict[tuple[str, int, int], CurveFit] = {}
    if pts.empty:
        return out
    for (host, socket, domid), g in pts.groupby(["host", "socket", "domid"], sort=True):
        latest = g.loc[g["time"].idxmax(), "domain"]
        g = g[g["domain"] == latest] if pd.notna(latest) else g
        l3 = l3_of(pts, sizes, l3_default, host, socket)
        out[(str(host), int(socket), int(domid))] = fit(g, l3_bytes=l3, seed=int(domid) * 1000 + int(socket))
    return out
