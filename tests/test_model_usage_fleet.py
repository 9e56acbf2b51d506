"""The usage model's array paths against the frame functions they stand for, on the demo fleet:
neighbours from the bucket grids against `find_pairs` on `Usage.series`, classes from
`Buckets` against `classify` on each VM's series frame, confidences against `confidence`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rdtadvisor.cli.report import load_usage
from rdtadvisor.core.config import load_settings
from rdtadvisor.model import classify, neighbours, quality
from rdtadvisor.model.usage import Usage

CONFIG = Path(__file__).resolve().parent.parent / "samples" / "demo-config.toml"


@pytest.fixture(scope="module")
def model(demo_store: str) -> Usage:
    u, _ = load_usage(load_settings(CONFIG, Path(demo_store)), [], "2026-11-19", None, None)
    return u


def test_pairs_from_the_bucket_grids_are_find_pairs_on_the_series(model):
    capacity = model.sockets.set_index(["host", "socket"])["bw_capacity_bytes_s"]
    groups = {(str(h), int(s)): g for (h, s), g in model.series.groupby(["host", "socket"], observed=True)}
    assert list(model.pairs) == list(groups)
    for key, g in groups.items():
        c = capacity.get(key)
        expected = neighbours.find_pairs(g, capacity_bytes_s=None if c is None or np.isnan(c) else float(c))
        assert repr(model.pairs[key]) == repr(expected), key
    assert any(model.pairs.values())  # etl-burst's bursts


def test_classes_from_bucket_arrays_are_classify_on_each_vms_series(model):
    by_vm = dict(iter(model.series.groupby(["host", "socket", "domain"], observed=True, sort=False)))
    sk = model.sockets.astype({"host": object}).set_index(["host", "socket"])
    classes = set()
    for row in model.vm_socket.to_dict("records"):
        s = sk.loc[(row["host"], row["socket"])]
        expected = classify.classify(
            pd.Series(row),
            float(s["occupancy_bytes_p50"]),
            float(s["bw_total_bytes_s_p50"]),
            float(row["l3_bytes"]),
            float(row["cbm_len"]),
            by_vm.get((row["host"], row["socket"], row["domain"])),
        )
        assert (row["class"], row["evidence"], row["class_confidence"]) == expected
        readings = 0 if np.isnan(row["readings"]) else row["readings"]
        assert row["confidence"] == quality.confidence(row["coverage"], row["samples"], readings)
        classes.add(row["class"])
    assert {"streaming", "cache-sensitive"} <= classes
