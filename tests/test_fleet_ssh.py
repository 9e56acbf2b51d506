"""A fleet collection through a real sshd on loopback, with one host down and one slow.

One sshd (started here, tests/sshd.py) listens on 127.0.0.2 and 127.0.0.3; the fake xl
on the remote PATH (tests/fake_xl/xl) tells the hosts apart by the server address in
SSH_CONNECTION and replays a capture per host:

* ``xen-good``  127.0.0.2, sleeps GOOD_DELAY seconds in every xl call (so that running
  the hosts one after the other would be clearly slower than in parallel);
* ``xen-slow``  127.0.0.3, sleeps SLOW_DELAY seconds in every xl call;
* ``xen-down``  127.0.0.4, nothing listens there: connection refused.

The good and slow hosts must be collected and saved byte for byte, the down one named on
stderr in one line with exit status 1, and the slow host must not hold up the others.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from rdtadvisor.core.config import HostConfig
from rdtadvisor.sources.capture import write_capture
from tests.fake_xl.captures import REPO, find_sample_captures, write_sample_capture

pytestmark = pytest.mark.sshd

GOOD_DELAY = 0.1  # seconds per xl call (a collection is ~12 calls)
SLOW_DELAY = 0.4
ADDRESSES = {"xen-good": "127.0.0.2", "xen-slow": "127.0.0.3", "xen-down": "127.0.0.4"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, sshd_factory):
    root = tmp_path_factory.mktemp("fleet")
    source = root / "source"
    # The two richest captures in samples/ (replayed under our host names), else a generated one.
    samples = find_sample_captures()
    for i, host in enumerate(("xen-good", "xen-slow")):
        if samples:
            sample = samples[min(i, len(samples) - 1)]
            shutil.copytree(sample, source / host / sample.name)
        else:
            write_sample_capture(source, host)
    captures = {h: next((source / h).iterdir()) for h in ("xen-good", "xen-slow")}
    counts = {len(list(c.glob("xl-psr-cmt-show-total-mem-bandwidth*.txt"))) for c in captures.values()}
    assert len(counts) == 1, "both captures must have the same number of bandwidth readings"
    readings = counts.pop() or 1
    hostmap = root / "hostmap.json"
    hostmap.write_text(json.dumps({ADDRESSES[h]: h for h in captures}))
    delays = root / "delays.json"
    delays.write_text(json.dumps({"xen-good": GOOD_DELAY, "xen-slow": SLOW_DELAY}))
    state = root / "state"
    server = sshd_factory(addresses=(ADDRESSES["xen-good"], ADDRESSES["xen-slow"]), env={
        "FAKE_XL_CAPTURES": str(source), "FAKE_XL_HOSTMAP": str(hostmap),
        "FAKE_XL_DELAYS": str(delays), "FAKE_XL_STATE": str(state)})
    hosts = [server.host(name, address) for name, address in ADDRESSES.items()]
    return SimpleNamespace(server=server, root=root, captures=captures, hosts=hosts, state=state,
                           readings=readings)


def fresh_state(fleet) -> None:
    """Restart the fake xl's reading counters, so a collection replays readings 0, 1, 2..."""
    shutil.rmtree(fleet.state, ignore_errors=True)


def assert_same_capture(saved: Path, source: Path) -> None:
    """The raw capture saved by the collector equals what the fake xl replayed: the same
    files byte for byte, and the same exit status and stderr for each command."""
    source_meta = _commands(source)
    saved_meta = _commands(saved)
    source_files = sorted(p.name for p in source.glob("*.txt"))
    assert sorted(p.name for p in saved.glob("*.txt")) == source_files
    for name in source_files:
        assert (saved / name).read_bytes() == (source / name).read_bytes(), name
        want, got = source_meta.get(name, {}), saved_meta[name]
        assert got["argv"] == want.get("argv", got["argv"]), name
        assert got["exit_status"] == want.get("exit_status", 0), name
        assert got["stderr"] == (want.get("stderr") or ""), name
        assert got["error"] is None, name


def _commands(capture: Path) -> dict:
    meta = capture / "meta.json"
    return json.loads(meta.read_text())["commands"] if meta.exists() else {}


def _span(capture: Path) -> tuple[float, float]:
    """(first start, last end) of a saved capture's commands, as POSIX timestamps."""
    commands = _commands(capture).values()
    starts = [datetime.fromisoformat(c["started"]).timestamp() for c in commands]
    ends = [datetime.fromisoformat(c["started"]).timestamp() + c["seconds"] for c in commands]
    return min(starts), max(ends)


def test_collect_fleet_one_down_one_slow(fleet, tmp_path):
    from rdtadvisor.sources.collect import collect_fleet

    fresh_state(fleet)
    finished: list[tuple[str, float]] = []
    t0 = time.monotonic()
    results = collect_fleet(fleet.hosts, readings=fleet.readings, timeout=30, parallel=8,
                            on_result=lambda r: finished.append((r.host, time.monotonic() - t0)))
    wall = time.monotonic() - t0
    by_host = {r.host: r for r in results}
    assert [r.host for r in results] == list(ADDRESSES)

    down = by_host["xen-down"]
    assert down.capture is None and not down.ok
    assert down.error == f"ssh: connect to host 127.0.0.4 port {fleet.server.port}: Connection refused"
    good, slow = by_host["xen-good"], by_host["xen-slow"]
    assert good.ok and slow.ok, (good.error, slow.error)
    for r in (good, slow):
        saved = write_capture(tmp_path / "raw", r.capture)
        assert_same_capture(saved, fleet.captures[r.host])

    # The slow host held up nobody: the others finished first, and the whole fleet took
    # about as long as the slow host alone, not the sum of all hosts.
    assert slow.seconds > good.seconds + 1.0, "the slow host is too fast for this test to mean anything"
    assert [h for h, _ in finished] == ["xen-down", "xen-good", "xen-slow"]
    assert dict(finished)["xen-good"] < slow.seconds
    assert wall < slow.seconds + min(1.0, good.seconds / 2), (wall, slow.seconds, good.seconds)


def _config(fleet, path: Path) -> Path:
    opts = fleet.server.ssh_options()
    lines = [
        "[collect]", "timeout = 30", "parallel = 8", "",
        "[ssh]", f'user = "{opts.user}"', f"port = {opts.port}", f'identity = "{opts.identity}"',
        f"connect_timeout = {opts.connect_timeout}",
        "options = [" + ", ".join(json.dumps(o) for o in opts.options) + "]", "",
    ]
    for host in fleet.hosts:
        lines += ["[[hosts]]", f'name = "{host.name}"', f'address = "{host.address}"', ""]
    path.write_text("\n".join(lines))
    return path


def test_cli_collect_names_the_down_host(fleet, tmp_path):
    fresh_state(fleet)
    config = _config(fleet, tmp_path / "config.toml")
    store, raw = tmp_path / "store", tmp_path / "raw"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RDTADVISOR_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "rdtadvisor", "--store", str(store), "--config", str(config),
         "collect", "--save-raw", str(raw), "--readings", str(fleet.readings)],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    assert proc.returncode == 1, proc.stderr

    # The down host is named on stderr in one line with its reason; nobody else is.
    lines = proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert [line for line in lines if "xen-down" in line] == [
        f"rdtadvisor: xen-down: ssh: connect to host 127.0.0.4 port {fleet.server.port}: Connection refused"]
    assert not [line for line in lines if "xen-good" in line or "xen-slow" in line], proc.stderr

    # The good and slow hosts were collected, stored and saved raw, byte for byte.
    assert sorted(p.name for p in raw.iterdir()) == ["xen-good", "xen-slow"]
    for host in ("xen-good", "xen-slow"):
        (saved,) = (raw / host).iterdir()
        assert_same_capture(saved, fleet.captures[host])
    assert any(p.is_file() for p in store.rglob("*")), "nothing was written to the store"

    # In parallel: the fleet's collection spans about the slow host's time, not the sum.
    spans = {h: _span(next((raw / h).iterdir())) for h in ("xen-good", "xen-slow")}
    good_time = spans["xen-good"][1] - spans["xen-good"][0]
    slow_time = spans["xen-slow"][1] - spans["xen-slow"][0]
    fleet_span = max(e for _, e in spans.values()) - min(s for s, _ in spans.values())
    assert slow_time > good_time + 1.0
    assert fleet_span < slow_time + min(1.0, good_time / 2), (fleet_span, slow_time, good_time)
    assert wall < slow_time + good_time + 10, "startup and storing took unreasonably long"


def test_host_config_from_sshd_is_plain_config(fleet):
    # The harness hands out ordinary HostConfig objects: nothing test-only reaches the runner.
    assert all(isinstance(h, HostConfig) and not h.local for h in fleet.hosts)
