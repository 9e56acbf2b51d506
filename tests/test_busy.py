"""Busy fractions from ``xl list``'s CPU time, and the store keeping that CPU time.

MBM bandwidth is per wall-clock second; how hard a VM stalls on memory depends on how fast it
misses while it runs. `rdtadvisor.model.busy` turns ``Time(s)`` into the share of its vCPUs'
time each domain ran; the CAT strategy divides by it.
"""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from rdtadvisor.advise.strategy import VmInput
from rdtadvisor.model.busy import MIN_BUSY, busy_fractions
from rdtadvisor.store import Store, frames
from tests.test_advise_strategy import db_fit

T0 = pd.Timestamp("2026-11-20T00:00:00Z")


def domains(rows) -> pd.DataFrame:
    """rows: (minute, host, domid, vcpus, cpu_seconds)."""
    return frames.validate("domains", pd.DataFrame([
        {"time": T0 + pd.Timedelta(minutes=m), "host": h, "domid": d, "domain": f"d{d}",
         "memory_bytes": 1 << 30, "vcpus": v, "state": "r-----", "cpu_seconds": c}
        for m, h, d, v, c in rows]))


def test_the_share_of_its_vcpus_time_a_domain_ran():
    rows = [(m, "h", 1, 4, 1000.0 + m * 60 * 4 * 0.5) for m in range(5)]        # 4 vCPUs half busy
    rows += [(m, "h", 2, 2, 50.0 + m * 60 * 2 * 0.1) for m in range(5)]         # 2 vCPUs, 10 %
    rows += [(m, "g", 1, 1, 7.0 + m * 60) for m in range(5)]                    # another host, flat out
    assert busy_fractions(domains(rows)) == pytest.approx({("h", 1): 0.5, ("h", 2): 0.1, ("g", 1): 1.0})


def test_restarts_idle_domains_and_missing_cpu_time():
    rows = [(0, "h", 3, 2, 5000.0), (1, "h", 3, 2, 5000.0 + 60), (2, "h", 3, 2, 3.0),   # restarted: dropped
            (3, "h", 3, 2, 3.0 + 60), (4, "h", 3, 2, 3.0 + 120)]
    rows += [(m, "h", 4, 2, 100.0) for m in range(3)]                                   # never ran
    rows += [(0, "h", 5, 2, 1.0)]                                                       # one collection
    got = busy_fractions(domains(rows))
    assert got[("h", 3)] == pytest.approx(0.5) and got[("h", 4)] == MIN_BUSY and ("h", 5) not in got
    old = domains(rows).assign(cpu_seconds=pd.NA).astype({"cpu_seconds": "Float64"})
    assert busy_fractions(old) == {} and busy_fractions(None) == {}


def test_a_mostly_idle_vm_is_modelled_as_missing_fast_while_it_runs():
    fit = db_fit()
    assert VmInput(1, "x", 1.0, fit, 4, busy=0.25).running_vcpus == pytest.approx(1.0)
    assert VmInput(1, "x", 1.0, fit, 4).running_vcpus == 4.0
    assert VmInput(1, "x", 1.0, fit, 4, busy=0.0).running_vcpus == pytest.approx(0.04)      # floored


def test_stores_written_before_cpu_seconds_was_kept_still_read(tmp_path):
    store = Store(tmp_path / "store")
    store.append({"domains": domains([(m, "h", 1, 2, 10.0 + 60 * m) for m in range(3)])})
    files = list((tmp_path / "store" / "domains").rglob("*.parquet"))
    assert files
    for f in files:                                   # rewrite as an older rdtadvisor wrote them
        table = pq.read_table(f)
        pq.write_table(table.drop(["cpu_seconds"]), f)
    back = Store(tmp_path / "store").read("domains")
    assert len(back) == 3 and back["cpu_seconds"].isna().all()
    assert busy_fractions(back) == {}
