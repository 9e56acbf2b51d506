"""Runners: the local xl (LocalRunner) and xl over a real ssh connection (SshRunner).

Both run tests/fake_xl/xl, which replays a capture folder and logs every call it gets
(argv, LC_ALL, SSH_CONNECTION) to FAKE_XL_STATE/<host>/calls.jsonl.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from rdtadvisor.core.config import HostConfig, SshOptions
from rdtadvisor.sources import Runner
from rdtadvisor.sources.local import LocalRunner, run_process, sudo_error, xl_argv
from rdtadvisor.sources.ssh import WATCHDOG, SshRunner, remote_command, ssh_failure
from tests.fake_xl.captures import write_sample_capture
from tests.sshd import FAKE_XL_DIR, free_port

HOST = "xen01"
TRICKY_DOMAIN = "it's a \"quoted\" name; touch {m}1 && $(touch {m}2) `touch {m}3` | cat >{m}4\n\t$HOME *"


def calls(state: Path, host: str = HOST) -> list[dict]:
    path = state / host / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def alive(pid: int) -> bool:
    """True if `pid` runs (a zombie nobody reaped yet counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_dead(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


# --- LocalRunner ------------------------------------------------------------------------------

@pytest.fixture
def local(tmp_path, monkeypatch, fake_xl):
    capture = write_sample_capture(tmp_path / "captures", HOST, l2_failure=True)
    state = tmp_path / "state"
    monkeypatch.setenv("FAKE_XL_CAPTURES", str(capture))
    monkeypatch.setenv("FAKE_XL_STATE", str(state))
    for name in ("FAKE_XL_HOST", "FAKE_XL_DELAY", "FAKE_XL_DELAYS", "FAKE_XL_RMIDS"):
        monkeypatch.delenv(name, raising=False)
    runner = LocalRunner(HostConfig(name=HOST, local=True, xl=fake_xl))
    return SimpleNamespace(runner=runner, capture=capture, state=state)


def test_local_runner_is_a_runner(local):
    runner: Runner = local.runner
    assert runner.host == HOST
    runner.close()
    runner.close()


def test_local_success_is_byte_exact(local):
    result = local.runner.run(("xl", "info"), timeout=30)
    assert result.ok, result
    assert result.exit_status == 0 and result.error is None and result.stderr == ""
    assert result.stdout == (local.capture / "xl-info.txt").read_text()
    assert result.argv == ("xl", "info"), "the result names the xl command, not the binary path"
    assert result.started is not None and result.started.tzinfo is not None
    assert 0 < result.seconds < 30


def test_local_output_is_not_translated(local):
    raw = b"Name                                        ID   Mem VCPUs\tState\tTime(s)\r\n"
    raw += b"\xff\xfe caf\xc3\xa9\n"
    (local.capture / "xl-list.txt").write_bytes(raw)
    result = local.runner.run(("xl", "list"), timeout=30)
    assert result.stdout.encode("utf-8", "surrogateescape") == raw


def test_local_lc_all_is_c(local, monkeypatch):
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    local.runner.run(("xl", "list"), timeout=30)
    assert calls(local.state)[-1]["LC_ALL"] == "C"


def test_local_xl_failures_are_data_with_stderr_apart(local, monkeypatch):
    # xl's own `return -1` is exit 255: stderr only, and not an `error`.
    r = local.runner.run(("xl", "psr-cat-show", "-l", "2"), timeout=30)
    assert (r.exit_status, r.stdout, r.stderr, r.error) == (255, "", "Failed to get info\n", None)
    assert not r.ok
    # Unknown command: xl's message and exit 1.
    r = local.runner.run(("xl", "psr-mba-set", "3", "10"), timeout=30)
    assert (r.exit_status, r.stdout, r.stderr, r.error) == (1, "", "command not implemented\n", None)
    # libxl failure: exit 253 with the libxl line on stderr.
    monkeypatch.setenv("FAKE_XL_RMIDS", "1")
    assert local.runner.run(("xl", "psr-cmt-attach", "0"), timeout=30).exit_status == 0
    r = local.runner.run(("xl", "psr-cmt-attach", "guest-web01"), timeout=30)
    assert (r.exit_status, r.stdout, r.error) == (253, "", None)
    assert r.stderr == ("libxl: error: libxl_psr.c:71:libxl__psr_cmt_log_err_msg: "
                        "no free RMID available: Value too large for defined data type\n")
    assert local.runner.run(("xl", "psr-cmt-detach", "0"), timeout=30).exit_status == 0
    assert local.runner.run(("xl", "psr-cmt-attach", "3"), timeout=30).exit_status == 0


def test_local_repeated_readings_cycle(local):
    names = ["xl-psr-cmt-show-total-mem-bandwidth.txt", "xl-psr-cmt-show-total-mem-bandwidth.1.txt",
             "xl-psr-cmt-show-total-mem-bandwidth.2.txt", "xl-psr-cmt-show-total-mem-bandwidth.txt"]
    got = [local.runner.run(("xl", "psr-cmt-show", "total-mem-bandwidth"), timeout=30).stdout for _ in names]
    assert got == [(local.capture / n).read_text() for n in names]
    assert got[0] != got[1]


def test_local_timeout_kills_the_process(local, monkeypatch):
    monkeypatch.setenv("FAKE_XL_DELAY", "30")
    t0 = time.monotonic()
    r = local.runner.run(("xl", "info"), timeout=1.5)
    assert time.monotonic() - t0 < 6
    assert r.error == "timed out after 1.5s" and r.exit_status is None and not r.ok
    pid = calls(local.state)[-1]["pid"]
    assert wait_dead(pid), f"fake xl (pid {pid}) survived the timeout"


def test_timeout_kills_the_whole_group_even_if_term_is_ignored():
    script = "trap '' TERM; sleep 60 & echo $!; wait"
    t0 = time.monotonic()
    r, missing = run_process(["sh", "-c", script], 0.5, result_argv=("xl", "info"))
    assert not missing and r.error == "timed out after 0.5s" and r.exit_status is None
    assert time.monotonic() - t0 < 8
    assert wait_dead(int(r.stdout.split()[0])), "a grandchild in the process group survived"


def test_a_crash_is_a_failed_command_not_an_error():
    r, _ = run_process(["sh", "-c", "echo partial; kill -SEGV $$"], 10, result_argv=("xl", "list"))
    assert (r.stdout, r.exit_status, r.error) == ("partial\n", 139, None)


def test_local_missing_binary(tmp_path):
    runner = LocalRunner(HostConfig(name=HOST, local=True, xl=str(tmp_path / "nope" / "xl")))
    r = runner.run(("xl", "info"), 5)
    assert r.exit_status is None and not r.ok
    assert r.error == f"xl not found: {tmp_path / 'nope' / 'xl'}: No such file or directory"


def test_sudo_command_lines():
    host = HostConfig(name=HOST, xl="/opt/xen bin/xl", ssh=SshOptions(sudo=True))
    assert xl_argv(host, ("xl", "psr-cmt-show", "cache-occupancy", "a b")) == [
        "sudo", "-n", "env", "LC_ALL=C", "/opt/xen bin/xl", "psr-cmt-show", "cache-occupancy", "a b"]
    assert remote_command(host, ("xl", "list")) == "sudo -n env LC_ALL=C '/opt/xen bin/xl' list"
    assert remote_command(HostConfig(name=HOST), ("xl", "psr-cat-show", "-l", "2")) == \
        "env LC_ALL=C xl psr-cat-show -l 2"


@pytest.mark.parametrize(("stderr", "status", "expected"), [
    ("sudo: a password is required\n", 1, "sudo: a password is required"),
    ("sudo: xl: command not found\n", 1, "xl not found: sudo: xl: command not found"),
    ("env: 'xl': No such file or directory\n", 127, "xl not found: env: 'xl': No such file or directory"),
    ("Failed to get info\n", 255, None),
    ("command not implemented\n", 1, None),
])
def test_sudo_and_env_failures(stderr, status, expected):
    assert sudo_error(stderr, status) == expected


# --- telling ssh's failures from xl's --------------------------------------------------------

@pytest.mark.parametrize(("stderr", "status", "expected"), [
    ("ssh: connect to host 10.0.0.9 port 22: Connection refused\r\n", 255,
     "ssh: connect to host 10.0.0.9 port 22: Connection refused"),
    ("ssh: connect to host 10.0.0.9 port 22: Connection timed out\r\n", 255,
     "ssh: connect to host 10.0.0.9 port 22: Connection timed out"),
    ("ssh: Could not resolve hostname nosuch: Name or service not known\r\n", 255,
     "ssh: Could not resolve hostname nosuch: Name or service not known"),
    ("Warning: Permanently added '10.0.0.9' (ED25519) to the list of known hosts.\r\n"
     "monitor@10.0.0.9: Permission denied (publickey).\r\n", 255,
     "monitor@10.0.0.9: Permission denied (publickey)."),
    ("kex_exchange_identification: read: Connection reset by peer\r\n", 255,
     "kex_exchange_identification: read: Connection reset by peer"),
    ("Connection closed by 10.0.0.9 port 22\r\n", 255, "Connection closed by 10.0.0.9 port 22"),
    ("Host key verification failed.\r\n", 255, "Host key verification failed."),
    # xl's own exit codes, some of them 255, are never ssh failures:
    ("Failed to get info\n", 255, None),
    ("CMT is disabled in the system\n", 255, None),
    ("libxl: error: libxl_psr.c:71:libxl__psr_cmt_log_err_msg: no free RMID available: "
     "Value too large for defined data type\n", 253, None),
    ("libxl: error: libxl.c:12:x: Permission denied\n", 255, None),
    ("ssh: connect to host 10.0.0.9 port 22: Connection refused\n", 1, None),
    ("", 255, None),
])
def test_ssh_failure_classification(stderr, status, expected):
    assert ssh_failure(stderr, status) == expected


def test_ssh_command_line():
    host = HostConfig(name="xen01", address="-oProxyCommand=evil", ssh=SshOptions(
        user="monitor", port=2222, identity="~/.ssh/rdt", jump="bastion", connect_timeout=2.5,
        options=("StrictHostKeyChecking=accept-new", "ControlPersist=30")))
    runner = SshRunner(host)
    try:
        argv = runner.ssh_argv(("xl", "psr-cmt-show", "cache-occupancy", "a b;c"))
    finally:
        runner.close()
    assert argv[:5] == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3"]
    assert argv[-3:-1] == ["--", "-oProxyCommand=evil"]
    # ONE argument for the remote shell: the xl command line under the watchdog (sh -c), each
    # argument a literal word.
    assert shlex.split(argv[-1]) == ["sh", "-c", WATCHDOG, "rdtadvisor", "env", "LC_ALL=C", "xl",
                                     "psr-cmt-show", "cache-occupancy", "a b;c"]
    pairs = dict(zip(argv[5:-3:2], argv[6:-3:2], strict=False))
    assert pairs["-p"] == "2222" and pairs["-l"] == "monitor" and pairs["-J"] == "bastion"
    assert pairs["-i"] == os.path.expanduser("~/.ssh/rdt")
    options = [argv[i + 1] for i, a in enumerate(argv[:-3]) if a == "-o"]
    # ssh keeps the first value: the user's options come before our multiplexing defaults.
    assert options.index("ControlPersist=30") < options.index("ControlPersist=10")
    assert "LogLevel=ERROR" in options
    control = next(o for o in options if o.startswith("ControlPath="))
    assert len(control) - len("ControlPath=") < 80


# --- SshRunner against a real sshd -----------------------------------------------------------

@pytest.fixture(scope="module")
def remote(tmp_path_factory, sshd_factory):
    root = tmp_path_factory.mktemp("remote")
    capture = write_sample_capture(root / "captures", HOST, l2_failure=True)
    delays = root / "delays.json"
    delays.write_text("{}")
    state = root / "state"
    server = sshd_factory(addresses=("127.0.0.2",), env={
        "FAKE_XL_CAPTURES": str(capture), "FAKE_XL_STATE": str(state), "FAKE_XL_DELAYS": str(delays)})
    return SimpleNamespace(server=server, capture=capture, state=state, delays=delays, root=root)


@pytest.fixture
def ssh_runner(remote):
    runner = SshRunner(remote.server.host(HOST, "127.0.0.2"))
    yield runner
    runner.close()


def _remote_env(server) -> list[str]:
    argv = [*server.ssh_argv(), "printenv PATH; command -v xl; printenv FAKE_XL_CAPTURES; printenv HOME"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.mark.sshd
def test_sshd_setenv_sets_path_for_the_clients_command(remote):
    """sshd's SetEnv really sets PATH (and FAKE_XL_*) for the client's own command line."""
    path, xl, captures, home = _remote_env(remote.server)
    assert path == f"{FAKE_XL_DIR}:/usr/bin:/bin"
    assert xl == str(FAKE_XL_DIR / "xl")
    assert captures == str(remote.capture)
    assert home == str(remote.server.workdir / "home")


@pytest.mark.sshd
def test_sshd_setenv_path_survives_the_users_rc_files(sshd_factory, remote):
    server = sshd_factory(addresses=("127.0.0.2",), isolate_home=False,
                          env={"FAKE_XL_CAPTURES": str(remote.capture)})
    path, xl, _, home = _remote_env(server)
    assert home == os.path.expanduser("~" + server.user)
    # The login shell's rc files may prepend to PATH, but what sshd set is there, in order.
    parts = path.split(":")
    assert parts.index(str(FAKE_XL_DIR)) < parts.index("/usr/bin")
    assert xl == str(FAKE_XL_DIR / "xl")


@pytest.mark.sshd
def test_ssh_success_and_connection_sharing(ssh_runner, remote):
    before = len(calls(remote.state))
    results = [ssh_runner.run(argv, timeout=30) for argv in
               (("xl", "info"), ("xl", "list"), ("xl", "psr-hwinfo"))]
    for r, name in zip(results, ("xl-info.txt", "xl-list.txt", "xl-psr-hwinfo.txt"), strict=True):
        assert r.ok, r
        assert r.stdout == (remote.capture / name).read_text() and r.stderr == ""
    seen = calls(remote.state)[before:]
    assert [c["argv"] for c in seen] == [["xl", "info"], ["xl", "list"], ["xl", "psr-hwinfo"]]
    assert all(c["LC_ALL"] == "C" for c in seen)
    # One TCP connection (same client port) carried every command: multiplexing works.
    assert len({c["SSH_CONNECTION"] for c in seen}) == 1


@pytest.mark.sshd
def test_ssh_xl_exit_255_is_not_an_ssh_failure(ssh_runner):
    r = ssh_runner.run(("xl", "psr-cat-show", "-l", "2"), timeout=30)
    assert (r.exit_status, r.stdout, r.stderr, r.error) == (255, "", "Failed to get info\n", None)


@pytest.mark.sshd
def test_ssh_arguments_arrive_literally(ssh_runner, remote, tmp_path):
    marker = tmp_path / "pwned"
    domain = TRICKY_DOMAIN.format(m=marker)
    r = ssh_runner.run(("xl", "psr-cmt-show", "cache-occupancy", domain), timeout=30)
    assert calls(remote.state)[-1]["argv"] == ["xl", "psr-cmt-show", "cache-occupancy", domain]
    assert (r.exit_status, r.stdout, r.error) == (1, "", None)
    assert r.stderr == f"{domain} is an invalid domain identifier (rc=-6)\n"
    assert not list(tmp_path.iterdir()), "the remote shell interpreted part of the argument"


@pytest.mark.sshd
def test_ssh_connection_refused(remote):
    port = free_port("127.0.0.1")
    runner = SshRunner(remote.server.host("xen-down", "127.0.0.1", port=port))
    t0 = time.monotonic()
    r = runner.run(("xl", "info"), timeout=30)
    runner.close()
    assert time.monotonic() - t0 < 10
    assert r.exit_status is None and not r.ok
    assert r.error == f"ssh: connect to host 127.0.0.1 port {port}: Connection refused"


@pytest.mark.sshd
def test_ssh_wrong_key_is_permission_denied(remote, tmp_path):
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    runner = SshRunner(remote.server.host(HOST, "127.0.0.2", identity=key))
    r = runner.run(("xl", "info"), timeout=30)
    runner.close()
    assert r.exit_status is None
    assert r.error == f"ssh: {remote.server.user}@127.0.0.2: Permission denied (publickey)."
    assert runner.probe() == r.error


@pytest.mark.sshd
def test_ssh_host_key_mismatch(remote, tmp_path):
    known = tmp_path / "known_hosts"
    other = remote.server.client_key.with_suffix(".pub").read_text().split()
    known.write_text(f"[127.0.0.2]:{remote.server.port} {other[0]} {other[1]}\n")
    opts = remote.server.ssh_options()
    opts = SshOptions(**{**opts.__dict__, "options": (f"UserKnownHostsFile={known}", *opts.options)})
    runner = SshRunner(HostConfig(name=HOST, address="127.0.0.2", ssh=opts))
    r = runner.run(("xl", "info"), timeout=30)
    runner.close()
    assert r.exit_status is None
    assert r.error == "ssh: Host key verification failed. (host 127.0.0.2)"


@pytest.mark.sshd
def test_ssh_timeout_then_recovers(ssh_runner, remote):
    remote.delays.write_text(json.dumps({HOST: 5}))
    try:
        t0 = time.monotonic()
        r = ssh_runner.run(("xl", "list"), timeout=1.5)
        assert time.monotonic() - t0 < 5
        assert r.error == "timed out after 1.5s" and r.exit_status is None
    finally:
        remote.delays.write_text("{}")
    r = ssh_runner.run(("xl", "list"), timeout=30)
    assert r.ok, r


@pytest.mark.sshd
def test_ssh_probe_and_close(remote):
    runner = SshRunner(remote.server.host(HOST, "127.0.0.2"))
    assert runner.probe() is None
    control_dir = Path(runner._control_dir)
    socket = control_dir / "cm"
    assert socket.exists(), "the master connection keeps a control socket"
    check = ["ssh", "-o", f"ControlPath={socket}", "-O", "check", "--", "127.0.0.2"]
    assert subprocess.run(check, capture_output=True, timeout=10).returncode == 0
    runner.close()
    assert not control_dir.exists()
    runner.close()
    down = SshRunner(remote.server.host("xen-down", "127.0.0.1", port=free_port()))
    assert "Connection refused" in down.probe()
    down.close()


@pytest.mark.sshd
def test_ssh_informational_lines_stay_out_of_xls_stderr(remote, tmp_path):
    # First contact with accept-new: ssh would print "Warning: Permanently added ..." at
    # its default log level; the runner's LogLevel=ERROR keeps xl's stderr clean.
    opts = SshOptions(user=remote.server.user, port=remote.server.port,
                      identity=str(remote.server.client_key), connect_timeout=5,
                      options=(f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
                               "GlobalKnownHostsFile=/dev/null", "StrictHostKeyChecking=accept-new",
                               "IdentitiesOnly=yes"))
    runner = SshRunner(HostConfig(name=HOST, address="127.0.0.2", ssh=opts))
    r = runner.run(("xl", "info"), timeout=30)
    runner.close()
    assert r.ok and r.stderr == "", r
    assert "ssh-ed25519" in (tmp_path / "known_hosts").read_text(), "the host key was not added"


def test_fake_xl_finds_captures_by_host_folder_and_fleet(tmp_path, monkeypatch, fake_xl):
    old = write_sample_capture(tmp_path / "fleet", "xen01", stamp="20261126T100000Z")
    new = write_sample_capture(tmp_path / "fleet", "xen01", stamp="20261126T110000Z")
    (old / "xl-list.txt").write_text("old\n")
    (new / "xl-list.txt").write_text("new\n")
    write_sample_capture(tmp_path / "fleet", "xen02")
    (tmp_path / "fleet" / "xen02" / "20261126T104700Z" / "xl-list.txt").write_text("xen02\n")
    for name in ("FAKE_XL_STATE", "FAKE_XL_DELAY", "FAKE_XL_DELAYS", "FAKE_XL_HOST", "FAKE_XL_HOSTMAP"):
        monkeypatch.delenv(name, raising=False)
    runner = LocalRunner(HostConfig(name="x", local=True, xl=fake_xl))

    def listing() -> str:
        r = runner.run(("xl", "list"), timeout=30)
        return r.stdout or r.stderr

    monkeypatch.setenv("FAKE_XL_CAPTURES", str(tmp_path / "fleet" / "xen01"))  # a host folder: newest
    assert listing() == "new\n"
    monkeypatch.setenv("FAKE_XL_CAPTURES", str(tmp_path / "fleet"))  # a fleet folder
    monkeypatch.setenv("FAKE_XL_HOST", "xen02")
    assert listing() == "xen02\n"
    monkeypatch.delenv("FAKE_XL_HOST")
    monkeypatch.setenv("SSH_CONNECTION", "127.0.0.1 5000 127.0.0.9 22")
    monkeypatch.setenv("FAKE_XL_HOSTMAP", '{"127.0.0.9": "xen01"}')
    assert listing() == "new\n"
    monkeypatch.setenv("FAKE_XL_HOSTMAP", "{}")
    assert listing().startswith("fake xl: ") and "127.0.0.9" in listing()
