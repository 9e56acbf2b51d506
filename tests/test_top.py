"""`rdtadvisor top` (rdtadvisor.render.top + rdtadvisor.cli.top): row order and limit, the header's
ages and STALE flag, untrusted names made safe for a terminal, `--once` on a real store, and a
live redraw in a pseudo-terminal while `collect` appends to the same store."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rdtadvisor.model.capacity import CAPACITY_COLUMNS
from rdtadvisor.model.figures import FIGURES
from rdtadvisor.render.top import clean, display_width, render_top, top_rows
from tests.clirun import run

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "samples" / "captures"
T = pd.Timestamp("2026-11-23T09:10:00Z")
MIB, GIB = 2**20, 2**30
NAN = np.nan


def figures(rows: list[tuple]) -> pd.DataFrame:
    """`per_collection` rows from (host, socket, domid, domain, occupancy, total bandwidth) at T;
    all local, so remote is 0 (NaN when the total is)."""
    recs = [(T, h, s, d, name, occ, bw, bw, bw * 0.0, 3) for h, s, d, name, occ, bw in rows]
    return pd.DataFrame.from_records(recs, columns=FIGURES).astype(
        {"host": "string", "domain": "string", "socket": "int16", "domid": "int32", "readings": "int16"})


def capacity(l3: dict[tuple[str, int], float]) -> pd.DataFrame:
    recs = [(h, s, size, 11.0, False, 0.0, 15.0, 1, 159.0, NAN, "unknown") for (h, s), size in l3.items()]
    return pd.DataFrame.from_records(recs, columns=CAPACITY_COLUMNS).astype(
        {"host": "string", "socket": "int16", "bw_capacity_source": "string"})


FLEET = figures([("h1", 0, 1, "web", 2 * MIB, 3 * GIB), ("h1", 0, 2, "db", 8 * MIB, 1 * GIB),
                 ("h1", 1, 3, "Batch", NAN, 5 * GIB), ("h2", 0, 1, "api", 8 * MIB, NAN)])
L3 = capacity({("h1", 0): 32.0 * MIB, ("h1", 1): 32.0 * MIB, ("h2", 0): NAN})


def names(rows: pd.DataFrame) -> list[str]:
    return list(rows["domain"])


# --------------------------------------------------------------------------- rows


def test_sort_by_occupancy_bandwidth_or_name_with_missing_figures_last():
    # db and api tie at 8 MiB: host then socket then domid decides, so frames do not jitter.
    assert names(top_rows(FLEET, L3, "occupancy")) == ["db", "api", "web", "Batch"]
    assert names(top_rows(FLEET, L3, "bandwidth")) == ["Batch", "web", "db", "api"]
    assert names(top_rows(FLEET, L3, "name")) == ["api", "Batch", "db", "web"]      # case-insensitive


def test_limit_keeps_the_first_rows_and_share_is_of_the_sockets_l3():
    rows = top_rows(FLEET, L3, "occupancy", limit=2)
    assert names(rows) == ["db", "api"]
    assert rows["l3_share"].iloc[0] == pytest.approx(0.25)     # 8 of 32 MiB
    assert np.isnan(rows["l3_share"].iloc[1])                  # h2's L3 size unknown
    assert len(top_rows(FLEET, L3, "occupancy", limit=None)) == 4


def test_only_each_hosts_latest_collection_is_shown():
    old = FLEET.assign(time=T - pd.Timedelta("1min"), domain="old-" + FLEET["domain"])
    rows = top_rows(pd.concat([old, FLEET], ignore_index=True), L3, "name")
    assert names(rows) == ["api", "Batch", "db", "web"]


def test_unknown_sort_is_refused():
    with pytest.raises(ValueError, match="sort must be one of"):
        top_rows(FLEET, L3, "cpu")


# --------------------------------------------------------------------------- frame


def test_header_gives_each_hosts_age_and_flags_stale_ones():
    now = T + pd.Timedelta(seconds=12)
    latest = {"h1": T, "h2": T - pd.Timedelta(minutes=5), "h3": T - pd.Timedelta(days=2)}
    text = render_top(top_rows(FLEET, L3), latest, now, 120, stale_after=pd.Timedelta(seconds=15))
    header = text.splitlines()[1:4]
    assert header[0].split() == ["h1", "last", "2026-11-23", "09:10:00", "UTC", "(12s", "ago)"]
    assert header[1].endswith("(5m ago)  STALE")
    assert header[2].endswith("(2d ago)  STALE")
    # A per-host limit: h2 collects every 5 minutes, so 5m12s is not stale for it.
    per_host = {"h1": pd.Timedelta(seconds=15), "h2": pd.Timedelta(minutes=15), "h3": pd.Timedelta(hours=1)}
    lines = render_top(top_rows(FLEET, L3), latest, now, 120, stale_after=per_host).splitlines()
    assert [("STALE" in ln) for ln in lines[1:4]] == [False, False, True]


def test_table_shows_human_units_and_dashes_for_missing_figures():
    text = render_top(top_rows(FLEET, L3), {"h1": T, "h2": T}, T, 120)
    table = text.splitlines()[4:]
    assert table[0].split() == ["HOST", "SKT", "VM", "OCC", "L3%", "TOTAL", "LOCAL", "REMOTE"]
    assert table[1].split() == ["h1", "0", "db", "8.0", "MiB", "25%", "1.0", "GiB/s", "1.0", "GiB/s",
                                "0.0", "MiB/s"]
    assert table[2].split() == ["h2", "0", "api", "8.0", "MiB", "-", "-", "-", "-"]
    assert table[4].split() == ["h1", "1", "Batch", "-", "-", "5.0", "GiB/s", "5.0", "GiB/s", "0.0", "MiB/s"]


def test_control_characters_and_escape_sequences_never_reach_the_terminal():
    hostile = "\x1b[2J\x1b[31mevil\x1b[0m\x07\r\x1b]0;pwned title\x07-vm\u202e\x9b1m\x00\x7f"
    assert clean(hostile) == "evil-vm"
    rows = top_rows(figures([("h1", 0, 1, hostile, MIB, GIB)]), L3)
    text = render_top(rows, {"h1\x1b[1m": T}, T, 120)
    assert "evil-vm" in text and "pwned" not in text
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]", text)   # only line feeds remain


def test_long_and_wide_names_are_cut_to_the_width():
    long = "vm-" + "x" * 200
    wide = "数据库" * 20
    rows = top_rows(figures([("h1", 0, 1, long, 2 * MIB, GIB), ("h1", 0, 2, wide, MIB, GIB)]), L3)
    for width in (80, 100, 160):
        lines = render_top(rows, {"h1": T}, T, width).splitlines()
        assert all(display_width(ln) <= width for ln in lines), width
        long_line, wide_line = lines[4], lines[5]
        assert "vm-xxx" in long_line and "~" in long_line and "MiB" in long_line
        assert "数据库" in wide_line and "~" in wide_line
    assert "x" * 200 in render_top(rows, {"h1": T}, T, 400)        # room enough: nothing cut


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    s = str(tmp_path_factory.mktemp("top") / "store")
    r = run("--store", s, "collect", "--replay", str(CAPTURES))
    assert r.exit_code == 0, r.stderr
    return s


def test_once_prints_one_frame_of_the_real_store(store):
    r = run("--store", store, "top", "--once", "--limit", "3", "--host", "xen-sky01", "--host", "xen-bdw-cdp")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("rdtadvisor top - ")
    assert re.fullmatch(r"xen-bdw-cdp\s+last 2026-11-23 09:10:00 UTC \(14h ago\)  STALE", lines[1])
    assert re.fullmatch(r"xen-sky01\s+last 2026-11-23 09:10:00 UTC \(14h ago\)  STALE", lines[2])
    table = lines[4:]
    assert table[0].split()[:3] == ["HOST", "SKT", "VM"] and len(table) == 4
    occ = [float(ln.split()[3]) for ln in table[1:]]
    assert occ == sorted(occ, reverse=True) and occ[0] > 0


def test_not_a_tty_means_one_frame_even_without_once(store):
    # CliRunner's stdout is not a tty: the command must return instead of redrawing forever.
    r = run("--store", store, "top", "--sort", "name", "--interval", "0.1")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.count("rdtadvisor top - ") == 1 and "\x1b" not in r.stdout
    hosts = {ln.split()[0] for ln in r.stdout.splitlines()[1:6]}
    assert hosts == {"xen-atom-l2", "xen-bdw-cdp", "xen-legacy45", "xen-old46", "xen-sky01"}


def test_unknown_host_is_a_usage_error(store):
    r = run("--store", store, "top", "--host", "nope")
    assert r.exit_code == 2 and "host(s) not in the store: nope" in r.stderr


def _copy_collection(time_dir: str, dest: Path) -> Path:
    """A replay folder holding one of xen-sky01's sample collections."""
    shutil.copytree(CAPTURES / "xen-sky01" / time_dir, dest / "xen-sky01" / time_dir)
    return dest


def _read_until(fd: int, buf: bytearray, pattern: bytes, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if pattern in buf:
            return True
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:          # EIO: the child closed the terminal
                return pattern in buf
            if not chunk:
                return pattern in buf
            buf += chunk
    return pattern in buf


def test_live_view_redraws_when_collect_appends_and_ctrl_c_exits_0(tmp_path):
    store = str(tmp_path / "store")
    assert run("--store", store, "collect", "--replay",
               str(_copy_collection("20261123T090000Z", tmp_path / "first"))).exit_code == 0
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    argv = [sys.executable, "-m", "rdtadvisor", "--store", store, "top", "--interval", "0.2"]
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT,
                            env={**env, "TERM": "xterm"}, start_new_session=True)
    os.close(slave)
    buf = bytearray()
    try:
        deadline = time.monotonic() + 20
        assert _read_until(master, buf, b"last 2026-11-23 09:00:00 UTC", deadline), bytes(buf)
        frames_before = buf.count(b"\x1b[H")
        appended = run("--store", store, "collect", "--replay",
                       str(_copy_collection("20261123T090500Z", tmp_path / "second")))
        assert appended.exit_code == 0, appended.stderr
        assert _read_until(master, buf, b"last 2026-11-23 09:05:00 UTC", deadline), bytes(buf[-2000:])
        assert buf.count(b"\x1b[H") > frames_before          # redrawn in place, not appended below
        assert proc.poll() is None                           # still running
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        _read_until(master, buf, b"\x00never", time.monotonic() + 0.2)
        assert b"Aborted" not in buf and b"Traceback" not in buf
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
