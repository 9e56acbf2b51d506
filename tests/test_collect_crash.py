"""`rdtadvisor collect` killed at any moment, or run twice at once, never loses or duplicates history.

Real processes: the CLI is started with subprocess and SIGKILLed at random moments while it
replays a capture folder into the store.
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from rdtadvisor.sources.capture import write_capture
from rdtadvisor.store import Store

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"samples": ["time", "host", "socket", "domid", "metric", "reading"],
        "settings": ["time", "host", "socket", "domid", "setting"],
        "domains": ["time", "host", "domid"]}


def _make_samples():
    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "samples" / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_samples"] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> dict[str, Path]:
    """60 collections of xen-sky01 and xen-bdw-cdp each, split into two overlapping folders."""
    ms = _make_samples()
    root = tmp_path_factory.mktemp("captures")
    hosts = {h.name: h for h in ms.HOSTS}
    for i in range(60):
        when = ms.START + timedelta(minutes=i)
        for name in ("xen-sky01", "xen-bdw-cdp"):
            c = ms.capture(hosts[name], i % 3, when)
            write_capture(root / "all", c)
            if name == "xen-sky01" or i < 30:
                write_capture(root / "a", c)
            if name == "xen-bdw-cdp" or i >= 30:
                write_capture(root / "b", c)
    return {k: root / k for k in ("all", "a", "b")}


def collect(store: Path, folder: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rdtadvisor", "--store", str(store), "collect",
                             "--replay", str(folder)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})


def contents(store: Path) -> dict[str, pd.DataFrame]:
    s = Store(store)
    return {t: s.read(t).sort_values(k).reset_index(drop=True) for t, k in KEYS.items()}


def assert_consistent(store: Path) -> None:
    """Every stored collection is complete and nothing is stored twice."""
    data = contents(store)
    for table, keys in KEYS.items():
        assert not data[table].duplicated(keys).any(), f"duplicates in {table}"
    per = data["samples"].groupby(["host", "time"]).size()
    expected = {"xen-sky01": 6 * 2 * 7 - 2 * 1, "xen-bdw-cdp": 4 * 2 * 7}  # rows per collection
    for (host, _), n in per.items():
        assert n >= expected[host] - 2, f"{host}: partial collection ({n} rows)"
    assert set(data["domains"].groupby(["host", "time"]).size()) <= {4, 6}


@pytest.fixture(scope="module")
def reference(captures, tmp_path_factory) -> dict[str, pd.DataFrame]:
    store = tmp_path_factory.mktemp("ref") / "s"
    p = collect(store, captures["all"])
    assert p.wait(120) == 0, p.stderr.read().decode()
    return contents(store)


def test_sigkill_at_random_moments_then_rerun_gives_exactly_the_reference(captures, reference, tmp_path):
    rng = random.Random(7)
    store = tmp_path / "s"
    t0 = time.monotonic()
    p = collect(store, captures["all"])
    p.wait(120)
    full = time.monotonic() - t0  # how long one uninterrupted run takes here
    for _ in range(6):
        shutil.rmtree(store, ignore_errors=True)
        for _ in range(3):  # several kills on the same store before it may finish
            p = collect(store, captures["all"])
            time.sleep(rng.uniform(0.05, full))
            p.send_signal(signal.SIGKILL)
            p.wait()
            if store.exists():
                assert_consistent(store)
        p = collect(store, captures["all"])
        assert p.wait(120) == 0, p.stderr.read().decode()
        got = contents(store)
        for table in KEYS:
            pd.testing.assert_frame_equal(got[table], reference[table])


def test_two_collects_at_once_store_the_union_once(captures, reference, tmp_path):
    store = tmp_path / "s"
    a, b = collect(store, captures["a"]), collect(store, captures["b"])
    assert a.wait(120) == 0 and b.wait(120) == 0, (a.stderr.read(), b.stderr.read())
    got = contents(store)
    for table in KEYS:
        pd.testing.assert_frame_equal(got[table], reference[table])


