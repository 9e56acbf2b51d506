"""`rdtadvisor export prometheus` (rdtadvisor.render.prometheus + rdtadvisor.cli.export): the text
exposition format for node_exporter's textfile collector, rendered from hand-built frames and
end to end from the sample captures, and checked by the real `promtool check metrics`."""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rdtadvisor.cli import output
from rdtadvisor.core.errors import RdtError
from rdtadvisor.model.capacity import CAPACITY_COLUMNS
from rdtadvisor.model.figures import FIGURES
from rdtadvisor.render.prometheus import escape_label_value, render_prometheus
from rdtadvisor.store import Store
from tests.clirun import run

CAPTURES = Path(__file__).resolve().parent.parent / "samples" / "captures"
T = pd.Timestamp("2026-11-23T09:10:00Z")
MIB = 2**20
NAN = np.nan


def figures(rows: list[tuple]) -> pd.DataFrame:
    """`per_collection` rows from (time, host, socket, domid, domain, occ, total, local)."""
    recs = [(t, h, s, d, name, occ, tot, loc,
             max(tot - loc, 0) if not (np.isnan(tot) or np.isnan(loc)) else NAN, 3)
            for t, h, s, d, name, occ, tot, loc in rows]
    return pd.DataFrame.from_records(recs, columns=FIGURES).astype(
        {"host": "string", "domain": "string", "socket": "int16", "domid": "int32", "readings": "int16"})


def capacity(rows: list[tuple]) -> pd.DataFrame:
    """`socket_capacity` rows from (host, socket, l3_bytes, cos_used, cos_budget, rmid_used,
    rmid_total, bw_capacity, source)."""
    recs = [(h, s, l3, 11.0, False, cu, cb, ru, rt, bw, src) for h, s, l3, cu, cb, ru, rt, bw, src in rows]
    return pd.DataFrame.from_records(recs, columns=CAPACITY_COLUMNS).astype(
        {"host": "string", "socket": "int16", "bw_capacity_source": "string"})


def samples_of(text: str, family: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(family + "{")]


def promtool_or_skip() -> str:
    """The promtool binary, or skip -- but under CI (CI=true) a missing promtool is a failure."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is required under CI (Debian package prometheus; .ci/run installs it)")
        pytest.skip("promtool not installed (Debian package prometheus)")
    return path


def promtool_check(text: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool_or_skip(), "check", "metrics"], input=text.encode(),
                          capture_output=True, timeout=30)


HOSTILE = ['quote"d', "back\\slash", "line\nbreak", "(null)", "ünïcødé 名前", "with  spaces", "\\\"\n",
           "tab\there", "esc\x1b[31m", "}{,=#"]
VM_OCC, VM_BW = "rdtadvisor_vm_l3_occupancy_bytes", "rdtadvisor_vm_memory_bandwidth_bytes_per_second"
SOCKET_BW = "rdtadvisor_socket_memory_bandwidth_bytes_per_second"
CAPACITY, LAST = "rdtadvisor_socket_memory_bandwidth_capacity_bytes_per_second", \
    "rdtadvisor_host_last_collection_timestamp_seconds"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    s = str(tmp_path_factory.mktemp("export") / "store")
    r = run("--store", s, "collect", "--replay", str(CAPTURES))
    assert r.exit_code == 0, r.stderr
    return s


# --------------------------------------------------------------------------- the renderer


def test_a_small_fleet_renders_to_exactly_this_text():
    figs = figures([(T, "h1", 0, 1, "db", 4 * MIB, 2e9, 1.5e9), (T, "h1", 0, 0, "Domain-0", MIB, NAN, NAN)])
    cap = capacity([("h1", 0, 32.0 * MIB, 1.0, 15.0, 2, 159.0, 6e10, "config")])
    text = render_prometheus(figs, cap)
    body = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert body == [
        VM_OCC + '{host="h1",socket="0",domain="Domain-0",domid="0"} 1048576',
        VM_OCC + '{host="h1",socket="0",domain="db",domid="1"} 4194304',
        VM_BW + '{host="h1",socket="0",domain="db",domid="1",kind="total"} 2000000000',
        VM_BW + '{host="h1",socket="0",domain="db",domid="1",kind="local"} 1500000000',
        VM_BW + '{host="h1",socket="0",domain="db",domid="1",kind="remote"} 500000000',
        'rdtadvisor_socket_l3_size_bytes{host="h1",socket="0"} 33554432',
        'rdtadvisor_socket_l3_occupancy_bytes{host="h1",socket="0"} 5242880',
        SOCKET_BW + '{host="h1",socket="0",kind="total"} 2000000000',
        SOCKET_BW + '{host="h1",socket="0",kind="local"} 1500000000',
        SOCKET_BW + '{host="h1",socket="0",kind="remote"} 500000000',
        CAPACITY + '{host="h1",socket="0",source="config"} 60000000000',
        'rdtadvisor_socket_cos_used{host="h1",socket="0"} 1',
        'rdtadvisor_socket_cos_budget{host="h1",socket="0"} 15',
        'rdtadvisor_host_rmid_used{host="h1"} 2',
        'rdtadvisor_host_rmid_limit{host="h1"} 159',
        LAST + f'{{host="h1"}} {int(T.timestamp())}',
    ]
    # Every family: HELP then TYPE gauge right before its samples.
    families = re.findall(r"^# HELP (\S+) .+\n# TYPE \1 gauge\n\1\{", text, re.M)
    assert len(families) == 11 and len(set(families)) == 11
    assert text.endswith("\n")


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_vm_names_are_escaped_as_the_exposition_format_requires(name):
    figs = figures([(T, "h1", 0, 7, name, MIB, NAN, NAN)])
    line, = samples_of(render_prometheus(figs, capacity([])), VM_OCC)
    expected = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    assert line == VM_OCC + f'{{host="h1",socket="0",domain="{expected}",domid="7"}} 1048576'


def test_escaping_is_exactly_backslash_quote_newline():
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert escape_label_value("tab\there é 名") == "tab\there é 名"      # nothing else is escaped
    assert escape_label_value("bad \udcff byte") == "bad \ufffd byte"    # the file stays valid UTF-8


def test_nan_figures_are_left_out_not_exported_as_nan():
    figs = figures([(T, "h1", 0, 1, "no-cells", NAN, NAN, NAN),     # every cell missing
                    (T, "h1", 1, 2, "half", 2 * MIB, 3e8, NAN)])     # local missing -> remote unknown
    cap = capacity([("h1", 0, NAN, NAN, NAN, 2, NAN, NAN, "unknown"),
                    ("h1", 1, 32.0 * MIB, 0.0, 15.0, 2, 159.0, 9e9, "observed-peak")])
    text = render_prometheus(figs, cap)
    values = [ln.rsplit(" ", 1)[1] for ln in text.splitlines() if not ln.startswith("#")]
    assert values and all(math.isfinite(float(v)) for v in values)
    assert 'domain="no-cells"' not in text
    bw = samples_of(text, VM_BW)
    assert bw == [VM_BW + '{host="h1",socket="1",domain="half",domid="2",kind="total"} 300000000']
    # Socket 0 has neither figures nor known size/capacity/COS: no socket series at all.
    assert 'socket="0"' not in text
    observed = '{host="h1",socket="1",source="observed-peak"} 9000000000'
    assert samples_of(text, CAPACITY) == [CAPACITY + observed]
    assert samples_of(text, "rdtadvisor_host_rmid_limit") == []


def test_only_each_hosts_latest_collection_is_exported_in_a_stable_order():
    old, new = T - pd.Timedelta("5min"), T
    rows = [(old, "h2", 0, 1, "gone", MIB, 1e6, 1e6), (new, "h2", 0, 2, "b", MIB, 1e6, 1e6),
            (new, "h2", 0, 3, "a", 2 * MIB, 1e6, 1e6), (old, "h1", 1, 4, "z", MIB, 1e6, 1e6)]
    figs = figures(rows)
    text = render_prometheus(figs, capacity([]))
    assert 'domain="gone"' not in text                                # h2's older collection
    assert 'host="h1",socket="1",domain="z"' in text                  # h1's latest is the old time
    occ = samples_of(text, VM_OCC)
    assert [re.search(r'domain="(\w+)"', ln).group(1) for ln in occ] == ["z", "a", "b"]
    shuffled = figs.sample(frac=1, random_state=1).reset_index(drop=True)
    assert render_prometheus(shuffled, capacity([])) == text
    assert samples_of(text, LAST) == [LAST + f'{{host="h1"}} {int(old.timestamp())}',
                                      LAST + f'{{host="h2"}} {int(new.timestamp())}']


def test_stale_times_add_hosts_whose_latest_collection_had_no_figures():
    figs = figures([(T, "h1", 0, 1, "a", MIB, NAN, NAN)])
    text = render_prometheus(figs, capacity([]), stale={"h1": T.timestamp(), "dead": 1700000000.5})
    assert samples_of(text, LAST) == [LAST + '{host="dead"} 1700000000.5',
                                      LAST + f'{{host="h1"}} {int(T.timestamp())}']


def test_nothing_to_export_is_an_empty_text():
    assert render_prometheus(figures([]), capacity([])) == ""


# --------------------------------------------------------------------------- atomic write


def test_write_atomic_replaces_the_file_through_a_hidden_temp_file_in_the_same_folder(tmp_path, monkeypatch):
    target = tmp_path / "rdt.prom"
    target.write_text("old\n")
    renames = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((Path(src), Path(dst)))
        assert Path(dst).read_text() == "old\n"          # the old file is whole until the rename
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    output.write_atomic(target, "new ü\n")
    assert target.read_text(encoding="utf-8") == "new ü\n"
    (src, dst), = renames
    assert dst == target and src.parent == tmp_path       # same filesystem: the rename is atomic
    assert src.name.startswith(".") and not src.name.endswith(".prom")   # node_exporter skips it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rdt.prom"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask   # readable by node_exporter


def test_a_full_disk_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "rdt.prom"
    target.write_text("old\n")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(RdtError, match=rf"^{re.escape(str(target))}: cannot write: No space left on device$"):
        output.write_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rdt.prom"]


# --------------------------------------------------------------------------- the CLI


def test_cli_writes_the_file_and_stdout_identically(store, tmp_path):
    out = tmp_path / "rdtadvisor.prom"
    r = run("--store", store, "export", "prometheus", "--output", str(out))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""
    text = out.read_text(encoding="utf-8")
    stdout = run("--store", store, "export", "prometheus")
    assert stdout.exit_code == 0 and stdout.stdout == text
    assert run("--store", store, "export", "prometheus", "--output", "-").stdout == text
    hosts = set(re.findall(r'host="([^"]+)"', text))
    assert hosts == {"xen-atom-l2", "xen-bdw-cdp", "xen-legacy45", "xen-old46", "xen-sky01"}
    # xen-sky01's latest collection (09:10) is the one exported.
    assert LAST + f'{{host="xen-sky01"}} {int(T.timestamp())}\n' in text
    # Without a configured capacity, the sockets with bandwidth history get the observed peak.
    assert re.search(r'_capacity_bytes_per_second\{host="xen-sky01",socket="0",source="observed-peak"\} \d+$',
                     text, re.M)


def test_cli_host_filter_and_configured_capacity(store, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[report]\nbandwidth_capacity = "60GiB/s"\n'
                      '[report.hosts."xen-sky01"]\nbandwidth_capacity = "80GiB/s"\n')
    r = run("--store", store, "--config", str(config), "export", "prometheus",
            "--host", "xen-sky01", "--host", "xen-bdw-cdp")
    assert r.exit_code == 0, r.stderr
    assert set(re.findall(r'host="([^"]+)"', r.stdout)) == {"xen-sky01", "xen-bdw-cdp"}
    caps = samples_of(r.stdout, CAPACITY)
    assert f'{{host="xen-sky01",socket="0",source="config"}} {80 * 2**30}' in caps[-2]
    assert all('source="config"' in ln for ln in caps)
    assert any(ln.endswith(f" {60 * 2**30}") and 'host="xen-bdw-cdp"' in ln for ln in caps)


def test_cli_errors_are_one_line_naming_the_problem(store, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    bad = blocker / "rdt.prom"
    r = run("--store", store, "export", "prometheus", "--output", str(bad))
    assert r.exit_code == 3
    assert r.stderr.startswith(f"rdtadvisor: error: {bad}: cannot write: ") and r.stderr.count("\n") == 1
    unknown = run("--store", store, "export", "prometheus", "--host", "nope")
    assert unknown.exit_code == 2 and "host(s) not in the store: nope" in unknown.stderr
    empty = tmp_path / "empty"
    Store(empty)                                       # a store with no collections yet
    r = run("--store", str(empty), "export", "prometheus", "--output", str(tmp_path / "x.prom"))
    assert r.exit_code == 3
    assert "no collections in the store" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "x.prom").exists()
    since = run("--store", store, "export", "prometheus", "--since", "yesterday-ish")
    assert since.exit_code == 2 and "--since" in since.stderr


# --------------------------------------------------------------------------- promtool


def test_promtool_accepts_the_sample_fleet_with_no_lint_warnings(store):
    text = run("--store", store, "export", "prometheus").stdout
    assert text
    result = promtool_check(text)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout == b"" and result.stderr == b""


def test_promtool_accepts_hostile_names():
    figs = figures([(T, 'h"1', 0, i, name, MIB, 1e6, 5e5) for i, name in enumerate(HOSTILE)])
    cap = capacity([('h"1', 0, 32.0 * MIB, 1.0, 15.0, 7, 159.0, 6e10, "config")])
    text = render_prometheus(figs, cap)
    assert len(samples_of(text, VM_OCC)) == len(HOSTILE)
    result = promtool_check(text)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout == b"" and result.stderr == b""
