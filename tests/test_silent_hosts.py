"""Hosts that gave nothing are failed, not stored empty; nothing the collector starts outlives it.

* every xl call times out (over a real loopback sshd): the host is failed after two in a row,
  named on stderr in one line, exit 1, nothing of it stored, and the remote xl processes are
  gone (the remote watchdog ends them when the collector closes the session's stdin);
* an ssh error the collector does not recognise (``--host 'sp ace'``) and a capture folder
  whose files are all empty end the same way;
* locally, a timed-out xl's whole process tree dies, even a child that left its process group.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from rdtadvisor.core.config import HostConfig
from rdtadvisor.sources.collect import collect_fleet
from rdtadvisor.sources.local import LocalRunner, run_process
from rdtadvisor.store import Store
from tests.clirun import run
from tests.fake_xl.captures import write_sample_capture
from tests.sshd import FAKE_XL_DIR

pytestmark = pytest.mark.bad_input


def gone(pids: list[int], seconds: float = 3.0) -> list[int]:
    """The pids still alive after up to `seconds` (zombies count as gone)."""
    deadline = time.monotonic() + seconds
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def fake_pids(state: Path, host: str) -> list[int]:
    log = state / host / "calls.jsonl"
    return [json.loads(line)["pid"] for line in log.read_text().splitlines()] if log.exists() else []


def only_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.sshd
def test_a_host_whose_xl_calls_all_time_out_fails_and_leaves_no_remote_xl(tmp_path, sshd_factory):
    source, state = tmp_path / "source", tmp_path / "state"
    for host in ("xen-good", "xen-hung"):
        write_sample_capture(source, host)
    addresses = {"xen-good": "127.0.0.2", "xen-hung": "127.0.0.3"}
    hostmap = tmp_path / "hostmap.json"
    hostmap.write_text(json.dumps({a: h for h, a in addresses.items()}))
    server = sshd_factory(addresses=tuple(addresses.values()), env={
        "FAKE_XL_CAPTURES": str(source), "FAKE_XL_HOSTMAP": str(hostmap), "FAKE_XL_STATE": str(state),
        "FAKE_XL_DELAYS": json.dumps({"xen-hung": 60})})
    opts = server.ssh_options()
    config = tmp_path / "config.toml"
    config.write_text("\n".join([
        "[ssh]", f'user = "{opts.user}"', f"port = {opts.port}", f'identity = "{opts.identity}"',
        "options = [" + ", ".join(json.dumps(o) for o in opts.options) + "]",
        *(f'[[hosts]]\nname = "{h}"\naddress = "{a}"' for h, a in addresses.items())]) + "\n")
    store = tmp_path / "store"
    t0 = time.monotonic()
    r = run("--store", str(store), "--config", str(config), "collect", "--timeout", "1", "--readings", "1")
    assert time.monotonic() - t0 < 20, "a hung host must not cost a timeout per command"
    assert r.exit_code == 1, r.stderr
    assert only_line(r.stderr) == ("rdtadvisor: xen-hung: 2 xl commands in a row timed out after 1s: "
                                   "the host does not answer")
    assert Store(store, create=False).hosts() == ["xen-good"]        # nothing empty stored
    pids = fake_pids(state, "xen-hung")
    assert len(pids) == 2, pids
    assert gone(pids) == [], "a timed-out remote xl outlived the collector"


def test_an_ssh_error_the_collector_does_not_know_fails_the_host(tmp_path, monkeypatch):
    # 'local' collects from the fake xl here; for 'sp-ace' ssh fails with a message the
    # collector has no pattern for ("hostname contains invalid characters", what ssh says of
    # 'sp ace'), exit 255: an ssh in front of the real one stands in for it.
    capture = write_sample_capture(tmp_path / "caps", "local")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text("#!/bin/sh\necho 'hostname contains invalid characters' >&2\nexit 255\n")
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{FAKE_XL_DIR}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_XL_CAPTURES", str(capture))
    store = tmp_path / "store"
    r = run("--store", str(store), "collect", "--host", "local", "--host", "sp-ace", "--timeout", "10")
    assert r.exit_code == 1, r.stderr
    line = only_line(r.stderr)
    assert line.startswith("rdtadvisor: sp-ace: no xl command printed anything; 'xl info' exited 255"), line
    assert Store(store, create=False).hosts() == ["local"]
    # a name that is no host name at all is refused before anything runs
    r = run("--store", str(store), "collect", "--host", "local", "--host", "sp ace")
    assert r.exit_code == 2 and "'sp ace' is not a host name" in r.stderr


def test_a_capture_whose_files_are_all_empty_fails_and_stores_nothing(tmp_path):
    root = tmp_path / "caps"
    write_sample_capture(root, "xen-good")
    empty = write_sample_capture(root, "xen-empty")
    for f in empty.glob("*.txt"):
        f.write_bytes(b"")
    store = tmp_path / "store"
    r = run("--store", str(store), "collect", "--replay", str(root))
    assert r.exit_code == 1
    assert only_line(r.stderr) == f"rdtadvisor: xen-empty: {empty}: every capture file is empty"
    assert Store(store, create=False).hosts() == ["xen-good"]


def test_a_local_host_whose_xl_hangs_is_failed_fast(tmp_path, monkeypatch):
    capture = write_sample_capture(tmp_path / "caps", "xen-local")
    monkeypatch.setenv("PATH", f"{FAKE_XL_DIR}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_XL_CAPTURES", str(capture))
    monkeypatch.setenv("FAKE_XL_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("FAKE_XL_DELAY", "60")
    (result,) = collect_fleet([HostConfig("xen-local", local=True)], timeout=0.5,
                              make_runner=LocalRunner)
    assert result.capture is None
    assert result.error == "2 xl commands in a row timed out after 0.5s: the host does not answer"
    assert gone(fake_pids(tmp_path / "state", "xen-local")) == []


def test_a_timeout_kills_a_child_that_left_the_process_group(tmp_path):
    pidfile = tmp_path / "pid"
    # setsid: the sleep starts its own session, out of reach of a process-group kill.
    script = f"setsid sleep 60 & echo $! > {pidfile}; wait"
    r, _ = run_process(["sh", "-c", script], 0.5, result_argv=("xl", "info"))
    assert r.error == "timed out after 0.5s"
    pid = int(pidfile.read_text())
    assert gone([pid]) == [], "the setsid child survived the timeout"


def test_a_child_that_left_the_group_is_killed_even_when_xl_dies_on_term(tmp_path):
    pidfile = tmp_path / "pid"
    r, _ = run_process(["sh", "-c", f"trap 'exit 1' TERM; setsid sleep 60 & echo $! > {pidfile}; "
                                    "while :; do sleep 0.05; done"], 0.5, result_argv=("xl", "info"))
    assert r.error == "timed out after 0.5s"
    assert gone([int(pidfile.read_text())]) == []


@pytest.mark.sshd
def test_no_orphan_even_when_the_collector_is_killed(tmp_path, sshd_factory):
    """SIGKILL the collector mid-command: the kernel closes the session's stdin, and the remote
    watchdog ends the remote xl."""
    source, state = tmp_path / "source", tmp_path / "state"
    write_sample_capture(source, "xen-slow")
    server = sshd_factory(addresses=("127.0.0.4",), env={
        "FAKE_XL_CAPTURES": str(source / "xen-slow"), "FAKE_XL_STATE": str(state), "FAKE_XL_DELAY": "60"})
    opts = dataclasses.asdict(server.ssh_options())
    code = ("import json, sys\n"
            "from rdtadvisor.core.config import HostConfig, SshOptions\n"
            "from rdtadvisor.sources.ssh import SshRunner\n"
            "o = json.loads(sys.argv[1]); o['options'] = tuple(o['options'])\n"
            "SshRunner(HostConfig('xen-slow', '127.0.0.4', SshOptions(**o))).run(('xl', 'info'), 120)\n")
    repo = Path(__file__).resolve().parents[1]
    collector = subprocess.Popen([sys.executable, "-c", code, json.dumps(opts)], cwd=repo,
                                 env={**os.environ, "PYTHONPATH": str(repo)}, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not fake_pids(state, "xen-slow") and time.monotonic() < deadline:
            time.sleep(0.05)
        (pid,) = fake_pids(state, "xen-slow")
        assert gone([pid], 0.5) == [pid], "the remote xl should be running while the collector waits"
    finally:
        collector.kill()
        collector.wait()
    assert gone([pid], 5.0) == [], "the remote xl outlived a SIGKILLed collector"
