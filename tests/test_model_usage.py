"""Specifications of the usage model: pure functions over small hand-made frames."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rdtadvisor.model import classify, neighbours, quality, stats
from rdtadvisor.model.capacity import BandwidthCapacity, socket_capacity, socket_totals, sustained_peak
from rdtadvisor.model.figures import bucket_size, in_hours, parse_hours, per_collection
from rdtadvisor.model.headroom import Profile, socket_headroom

MIB = 1024**2
GIB = 1024**3
T0 = pd.Timestamp("2026-11-20T00:00:00Z")


def samples(rows: list[tuple]) -> pd.DataFrame:
    """rows of (minute, socket, domid, domain, metric, reading, value)."""
    df = pd.DataFrame(rows, columns=["minute", "socket", "domid", "domain", "metric", "reading", "value"])
    df["time"] = T0 + pd.to_timedelta(df.pop("minute"), unit="min")
    df["host"] = "h"
    df["unit"] = "B"
    return df.astype(
        {
            "socket": "int16",
            "domid": "int32",
            "reading": "int16",
            "value": "int64",
            "host": "string",
            "domain": "string",
            "metric": "string",
        }
    )


# --- per-collection figures ------------------------------------------------------------------


def test_a_collections_bandwidth_is_the_median_of_its_readings_not_one_snapshot():
    df = samples(
        [(0, 0, 1, "vm", "l3_occupancy", 0, 4 * MIB)]
        + [(0, 0, 1, "vm", "mem_bw_total", r, v) for r, v in enumerate([100, 900_000, 300])]
        + [(0, 0, 1, "vm", "mem_bw_local", r, v) for r, v in enumerate([50, 60, 70])]
    )
    fig = per_collection(df)
    assert len(fig) == 1
    row = fig.iloc[0]
    assert row["bw_total_bytes_s"] == 300
    assert row["bw_local_bytes_s"] == 60
    assert row["bw_remote_bytes_s"] == 240
    assert row["readings"] == 3
    assert row["occupancy_bytes"] == 4 * MIB


def test_remote_bandwidth_is_clipped_at_zero_when_the_local_snapshot_is_higher():
    df = samples([(0, 0, 1, "vm", "mem_bw_total", 0, 100), (0, 0, 1, "vm", "mem_bw_local", 0, 150)])
    assert per_collection(df).iloc[0]["bw_remote_bytes_s"] == 0


def test_a_missing_metric_is_nan_not_zero():
    df = samples([(0, 0, 1, "vm", "l3_occupancy", 0, MIB)])
    row = per_collection(df).iloc[0]
    assert np.isnan(row["bw_total_bytes_s"]) and row["readings"] == 0


def test_hours_ranges_parse_and_wrap_past_midnight():
    assert parse_hours("09-17") == (9, 17)
    assert parse_hours("22-06") == (22, 6)
    times = pd.Series(pd.date_range(T0, periods=24, freq="h"))
    assert in_hours(times, (9, 17)).sum() == 8
    assert list(np.flatnonzero(in_hours(times, (22, 6)))) == [0, 1, 2, 3, 4, 5, 22, 23]
    assert in_hours(times, (9, 17), tz="Europe/Berlin").sum() == 8
    assert np.flatnonzero(in_hours(times, (9, 17), tz="Europe/Berlin"))[0] == 8  # 09:00 CET = 08:00 UTC
    for bad in ("9", "25-3", "10-10", "nine-five"):
        with pytest.raises(ValueError):
            parse_hours(bad)


def test_buckets_are_round_and_never_finer_than_collections():
    week = (T0, T0 + pd.Timedelta(days=7))
    assert bucket_size(*week, pd.Timedelta(minutes=1)) == pd.Timedelta(minutes=30)
    assert bucket_size(T0, T0 + pd.Timedelta(hours=2), pd.Timedelta(minutes=5)) == pd.Timedelta(minutes=5)


# --- statistics ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        # figures are whole bytes or bytes/s (halves: medians of two readings), or missing
        st.lists(
            st.integers(0, 2 * 10**12).map(lambda x: x / 2) | st.just(float("nan")), min_size=3, max_size=3
        ),
        min_size=1,
        max_size=60,
    )
)
def test_column_stats_equal_numpy_per_column(rows):
    a = np.array(rows, dtype=float)
    got = stats.column_stats(a)
    for j in range(a.shape[1]):
        v = a[:, j][~np.isnan(a[:, j])]
        if len(v) == 0:
            assert np.isnan(got[j, :4]).all() and got[j, 4] == 0
            continue
        np.testing.assert_allclose(got[j, :2], np.quantile(v, [0.5, 0.95]), rtol=1e-9)
        assert got[j, 2] == v.max()
        assert got[j, 3] == pytest.approx(v.mean(), rel=1e-9)
        assert got[j, 4] == len(v)


def test_column_medians_and_quantiles_are_numpys_bit_for_bit():
    # the vectorised screens compare these with thresholds exactly as the per-column code does
    rng = np.random.default_rng(5)
    for _ in range(300):
        rows, cols = int(rng.integers(1, 30)), int(rng.integers(1, 6))
        a = rng.lognormal(20, 2, (rows, cols))
        if rng.random() < 0.5:
            a = np.round(a / 1e6) * 1e6  # ties
        a[rng.random((rows, cols)) < 0.3] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            median = [np.nanmedian(a[:, j]) for j in range(cols)]
            assert np.array_equal(stats.nanmedian_columns(a), median, equal_nan=True)
            assert np.array_equal(stats.nanmedian_columns(a), np.nanmedian(a, axis=0), equal_nan=True)
            for q in (0.0, 0.25, 0.5, 0.95, 0.98, 1.0):
                expected = [np.nanquantile(a[:, j], q) for j in range(cols)]
                assert np.array_equal(stats.nanquantile_columns(a, q), expected, equal_nan=True)


def test_theil_sen_ignores_a_burst_that_a_least_squares_line_would_follow():
    x = np.arange(10.0)
    y = 2 * x + 5
    y[7] = 1000
    assert stats.theil_sen(x, y) == pytest.approx(2.0)


def test_daily_slopes_need_three_days_of_data_and_ignore_the_daily_swing():
    times = pd.date_range("2026-11-20", periods=4 * 24, freq="h").to_numpy()
    hour = np.arange(len(times)) % 24
    day = np.arange(len(times)) // 24
    a = np.column_stack([10 + 2 * day + 5 * np.sin(hour / 24 * 2 * np.pi), np.full(len(times), np.nan)])
    slopes = stats.daily_slopes(times, a)
    assert slopes[0] == pytest.approx(2.0, abs=1e-9) and np.isnan(slopes[1])
    assert np.isnan(stats.daily_slopes(times[:48], a[:48])).all()


# --- capacity, quality -----------------------------------------------------------------------


def test_observed_peak_is_the_highest_level_held_for_three_collections_not_one_spike():
    totals = pd.DataFrame(
        {
            "host": "h",
            "socket": 0,
            "time": pd.date_range(T0, periods=6, freq="min"),
            "bw_total_bytes_s": [5.0, 9.0, 9.0, 8.0, 100.0, 7.0],
        }
    )
    assert sustained_peak(totals).loc[("h", 0)] == 8.0


def test_observed_peaks_of_many_sockets_at_once_are_each_sockets_rolling_minimum():
    rng = np.random.default_rng(2)
    rows = []
    for h, s, n in [("a", 0, 7), ("a", 1, 2), ("b", 0, 1), ("b", 1, 3), ("c", 0, 12)]:
        t = pd.date_range(T0, periods=n, freq="min")
        rows.append(pd.DataFrame({"host": h, "socket": s, "time": t, "bw_total_bytes_s": rng.random(n)}))
    totals = pd.concat(rows).sample(frac=1, random_state=3).sort_values("time", kind="stable")
    totals.loc[totals.index[::5], "bw_total_bytes_s"] = np.nan
    got = sustained_peak(totals)
    for (h, s), g in totals.dropna().groupby(["host", "socket"]):
        x = g["bw_total_bytes_s"]
        assert got.loc[(h, s)] == x.rolling(3, min_periods=min(3, len(x))).min().max()


def test_configured_bandwidth_capacity_wins_and_says_where_it_came_from():
    df = samples([(m, 0, 1, "vm", "mem_bw_total", 0, 10 * GIB) for m in range(5)])
    fig = per_collection(df)
    facts = pd.DataFrame(
        {
            "time": [T0],
            "host": ["h"],
            "socket": pd.array([0], "Int16"),
            "fact": ["l3_cache_bytes"],
            "value": pd.array([30.0 * MIB], "Float64"),
            "text": pd.array([None], "string"),
        }
    )
    settings_tbl = pd.DataFrame(columns=["time", "host", "socket", "domid", "domain", "setting", "value"])
    seen = socket_capacity(fig, facts, settings_tbl)
    assert seen.iloc[0]["bw_capacity_source"] == "observed-peak"
    assert seen.iloc[0]["bw_capacity_bytes_s"] == 10 * GIB
    given = socket_capacity(fig, facts, settings_tbl, BandwidthCapacity(hosts={"h": 80 * GIB}))
    assert (
        given.iloc[0]["bw_capacity_source"] == "config" and given.iloc[0]["bw_capacity_bytes_s"] == 80 * GIB
    )
    assert given.iloc[0]["l3_bytes"] == 30 * MIB


def test_collections_right_after_a_mask_change_are_marked_settling_on_that_socket_only():
    times = pd.date_range(T0, periods=6, freq="5min")
    settings_tbl = pd.DataFrame(
        {
            "time": times,
            "host": "h",
            "socket": 0,
            "domid": 1,
            "domain": "vm",
            "setting": "l3_cbm",
            "value": [0x7FF, 0x7FF, 0x3, 0x3, 0x3, 0x3],
        }
    )
    changes = quality.mask_changes(settings_tbl)
    assert list(changes["time"]) == [times[2]]
    grid = quality.settling_grid(
        times.tz_localize(None).to_numpy(), np.array([0, 1]), changes, pd.Timedelta(minutes=10)
    )
    assert list(grid[:, 0]) == [False, False, True, True, False, False]
    assert not grid[:, 1].any()


def test_dropped_rows_are_counted_per_domain_from_the_parser_warnings():
    events = pd.DataFrame(
        {
            "host": ["h", "h", "h"],
            "kind": ["parse-warning", "parse-warning", "sample-failed"],
            "message": [
                "domain 'db one' (id 3): 1 of 2 socket values printed; cannot tell which "
                "socket failed, row dropped",
                "L3 size printed for 1 of 2 sockets",
                "Domain 3:failed",
            ],
        }
    )
    d = quality.dropped_rows(events)
    assert d.to_dict("records") == [{"host": "h", "domain": "db one", "dropped": 1}]


# --- classification --------------------------------------------------------------------------


def _vm(occ50: float, occ95: float, bw50: float, bw95: float) -> pd.Series:
    return pd.Series(
        {
            "occupancy_bytes_p50": occ50,
            "occupancy_bytes_p95": occ95,
            "bw_total_bytes_s_p50": bw50,
            "bw_total_bytes_s_p95": bw95,
        }
    )


def _series(occ: np.ndarray, bw: np.ndarray, others: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"occupancy_bytes": occ, "bw_total_bytes_s": bw, "others_bw_bytes_s": others})


L3, WAYS = 30 * MIB, 11


def test_idle_means_almost_no_bandwidth_whatever_it_still_holds():
    cls, evidence, _ = classify.classify(_vm(5 * MIB, 5 * MIB, 1000, 5000), 28 * MIB, GIB, L3, WAYS, None)
    assert cls == "idle" and "bandwidth p95" in evidence


def test_a_vm_that_loses_cache_and_misses_more_under_neighbour_pressure_is_cache_sensitive():
    others = np.tile([1.0, 8.0], 12) * GIB
    occ = np.where(others > 2 * GIB, 2 * MIB, 6 * MIB).astype(float)
    bw = np.where(others > 2 * GIB, 600, 400).astype(float) * MIB
    cls, evidence, conf = classify.classify(
        _vm(4 * MIB, 6 * MIB, 500 * MIB, 600 * MIB), 29 * MIB, 5 * GIB, L3, WAYS, _series(occ, bw, others)
    )
    assert (cls, conf) == ("cache-sensitive", "high")
    assert "less L3" in evidence


def test_a_big_bandwidth_vm_that_fills_the_cache_without_benefit_is_streaming():
    load = np.tile([1.0, 2.0], 12)
    occ, bw = 20 * MIB * load / 2, 6 * GIB * load / 2  # both follow its own load
    others = np.full(24, 1.0 * GIB)
    cls, evidence, _ = classify.classify(
        _vm(18 * MIB, 20 * MIB, 5 * GIB, 6 * GIB), 28 * MIB, 6 * GIB, L3, WAYS, _series(occ, bw, others)
    )
    assert cls == "streaming" and "holds" in evidence


def test_occupancy_is_not_utility_a_vm_holding_little_with_modest_bandwidth_is_light():
    cls, _, _ = classify.classify(
        _vm(0.5 * MIB, 1 * MIB, 50 * MIB, 80 * MIB), 28 * MIB, 3 * GIB, L3, WAYS, None
    )
    assert cls == "light"


def test_without_bandwidth_counters_the_class_is_light_with_low_confidence():
    cls, evidence, conf = classify.classify(
        _vm(9 * MIB, 10 * MIB, np.nan, np.nan), 28 * MIB, np.nan, L3, WAYS, None
    )
    assert (cls, conf) == ("light", "low") and "no bandwidth counters" in evidence


# --- noisy neighbours ------------------------------------------------------------------------


def _socket_series(buckets: int, columns: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    times = pd.date_range(T0, periods=buckets, freq="15min")
    return pd.concat(
        [
            pd.DataFrame({"time": times, "domain": name, "occupancy_bytes": occ, "bw_total_bytes_s": bw})
            for name, (occ, bw) in columns.items()
        ],
        ignore_index=True,
    )


def _bursty(n: int = 48) -> np.ndarray:
    burst = np.zeros(n, dtype=bool)
    burst[8:12] = burst[32:36] = True
    return burst


def test_an_aggressor_whose_bursts_evict_a_victim_is_named_with_its_windows():
    burst = _bursty()
    series = _socket_series(
        48,
        {
            "etl": (np.where(burst, 24, 14) * MIB, np.where(burst, 14, 5) * GIB),
            "db": (np.where(burst, 2, 6) * MIB, np.where(burst, 900, 600) * MIB),
            "web": (np.full(48, 3.0 * MIB), np.full(48, 300.0 * MIB)),
        },
    )
    pairs = neighbours.find_pairs(series)
    assert [(p.aggressor, p.victim) for p in pairs][:1] == [("etl", "db")]
    db = pairs[0]
    assert db.occupancy_drop == pytest.approx(2 / 3, abs=0.01)
    assert db.bandwidth_change == pytest.approx(0.5, abs=0.01)
    assert db.severity == "critical"  # lost over half its cache and misses more
    windows = db.evidence["windows"]
    assert len(windows) == 2 and windows[0]["start"] in ("2026-11-20T02:00:00Z", "2026-11-20T08:00:00Z")
    assert ("etl", "web") not in {(p.aggressor, p.victim) for p in pairs}


def test_a_shared_daily_swing_is_not_a_noisy_neighbour_though_watchers_rule_fires():
    # Night: everybody quietens, so everybody's occupancy *and* bandwidth fall together;
    # one VM's nightly batch then rises by more than 35% at the same moment.
    night = np.zeros(48, dtype=bool)
    night[20:32] = True
    series = _socket_series(
        48,
        {
            "batch": (np.where(night, 12, 6) * MIB, np.where(night, 2, 1) * GIB),
            "web": (np.where(night, 3, 8) * MIB, np.where(night, 100, 500) * MIB),  # its own load fell
        },
    )
    assert neighbours.find_pairs(series) == []
    assert ("batch", "web") in neighbours.watcher_pairs(series)


def test_screening_aggressors_at_once_finds_what_examining_each_finds():
    rng = np.random.default_rng(11)
    found = 0
    for _ in range(300):
        n_t, n_v = int(rng.integers(6, 50)), int(rng.integers(1, 10))
        occ = rng.lognormal(np.log(4 * MIB), 0.3, (n_t, n_v))
        bw = rng.lognormal(np.log(500e6), 0.3, (n_t, n_v))
        for a in rng.choice(n_v, size=min(n_v, 2), replace=False):
            burst = rng.random(n_t) < 0.2
            bw[burst, a] *= rng.uniform(2, 30)
            occ[burst, a] *= rng.uniform(1, 4)
            hit = rng.random(n_v) < 0.5
            occ[np.ix_(burst, hit)] *= rng.uniform(0.2, 1.0)
            bw[np.ix_(burst, hit)] *= rng.uniform(0.8, 2.0)
        if rng.random() < 0.3:
            bw = np.round(bw / 1e8) * 1e8  # ties at the thresholds
        occ[rng.random((n_t, n_v)) < 0.05] = np.nan
        bw[rng.random((n_t, n_v)) < 0.05] = np.nan
        times = pd.date_range(T0, periods=n_t, freq="15min")
        names = [f"vm{i}" for i in range(n_v)]
        capacity = rng.choice([None, 3e9])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            screened, every = (
                neighbours.socket_pairs(times, names, occ, bw, capacity_bytes_s=capacity, screen=screen)
                for screen in (True, False)
            )
        assert repr(screened) == repr(every)  # repr: NaN fields compare equal
        found += len(every)
    assert found > 100


# --- headroom --------------------------------------------------------------------------------


def test_headroom_counts_profiles_up_to_the_tighter_threshold_and_names_it():
    sockets = pd.DataFrame(
        {
            "host": ["a", "b"],
            "socket": [0, 0],
            "l3_bytes": [60.0 * MIB, 60.0 * MIB],
            "occupancy_p95": [20.0 * MIB, 50.0 * MIB],
            "bw_capacity_bytes_s": [100.0 * GIB, np.nan],
            "bw_capacity_source": ["config", "unknown"],
            "bandwidth_p95": [70.0 * GIB, 10.0 * GIB],
        }
    )
    out = socket_headroom(sockets, Profile(8 * MIB, 2 * GIB), l3_threshold=0.9, bandwidth_threshold=0.8)
    a, b = out.to_dict("records")
    assert (a["fit_l3"], a["fit_bandwidth"], a["fit"], a["limit"]) == (4, 5, 4, "l3")
    assert b["fit"] == 0 and b["limit"].startswith("l3 (bandwidth capacity")


def test_socket_totals_sum_the_domains_of_each_collection():
    df = samples(
        [
            (0, 0, 1, "a", "mem_bw_total", 0, 100),
            (0, 0, 2, "b", "mem_bw_total", 0, 50),
            (1, 0, 1, "a", "mem_bw_total", 0, 70),
        ]
    )
    t = socket_totals(per_collection(df))
    assert list(t["bw_total_bytes_s"]) == [150, 70] and list(t["domains"]) == [2, 1]
