"""A real OpenSSH server on loopback, for tests and benchmarks.

`start_sshd(workdir, addresses=..., env=...)` generates a host key and a client key
(``ssh-keygen -t ed25519 -N ''``), writes an ``sshd_config`` that allows exactly that
client key, starts ``/usr/sbin/sshd -D -e -f <config>`` on a free port and waits until
it answers with its ``SSH-2.0-`` banner. It works as root (logging in as root) and as
an ordinary user (sshd can then only log that user in, which is all we need).

* **Several hosts, one server.** sshd listens on every address in `addresses`
  (``127.0.0.2``, ``127.0.0.3``, ...: the whole of 127/8 is loopback on Linux, no
  alias needed). The remote side tells the hosts apart by the server address in
  ``SSH_CONNECTION``; the fake xl maps it to a capture folder (``FAKE_XL_HOSTMAP``).
  sshd can listen on at most 16 sockets (MAX_LISTEN_SOCKS), so `start_sshd_fleet`
  starts one sshd per 16 addresses. (``ListenAddress 0.0.0.0`` would lift the limit
  but expose the server beyond loopback, and a "down" 127.0.0.x host would answer.)
* **The remote environment** comes from sshd's own ``SetEnv`` (OpenSSH >= 7.8), which
  overrides the default environment, PATH included: ``PATH=<fake_xl dir>:/usr/bin:/bin``
  puts the fake ``xl`` first, and ``FAKE_XL_*`` settings reach it. The client's command
  line reaches the server untouched (no ``ForceCommand``): sshd runs it with the
  user's login shell as ``$SHELL -c '<command>'``, like any ssh server.
* **A clean HOME** (``isolate_home=True``, the default): ``SetEnv HOME=<workdir>/home``
  keeps the login user's own shell rc files out of the measurement. bash sources
  ``~/.bashrc`` for every ssh command, and root's ``.bashrc`` on a developer box may
  run ``pyenv init`` (~0.1 s of CPU per command) and prepend to PATH, which would make
  `#!/usr/bin/env python3` find a pyenv shim (another ~0.06 s). A real monitoring
  account has no such rc files. ``isolate_home=False`` keeps the real HOME.
* **Known hosts** are written for every address, so clients keep
  ``StrictHostKeyChecking=yes`` (see `SshServer.ssh_options`).

`sshd_or_skip` is the pytest entry point: when sshd cannot start it skips with the
reason, except under CI (``CI`` set), where it fails loudly.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rdtadvisor.core.config import HostConfig, SshOptions

SSHD = os.environ.get("RDTADVISOR_TEST_SSHD", "/usr/sbin/sshd")
MAX_LISTEN_SOCKS = 16  # OpenSSH's compile-time limit on ListenAddress sockets
FAKE_XL_DIR = Path(__file__).resolve().parent / "fake_xl"


class SshdUnavailable(RuntimeError):
    """sshd could not be started here (missing binary, no permission, bad config)."""


@dataclass
class SshServer:
    """A running sshd. `port` is shared by all `addresses`."""

    port: int
    addresses: tuple[str, ...]
    user: str
    workdir: Path
    client_key: Path
    known_hosts: Path
    config: Path
    log: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def ssh_options(self, *, identity: Path | None = None, port: int | None = None,
                    connect_timeout: float = 5.0, extra: Iterable[str] = ()) -> SshOptions:
        """`SshOptions` that reach this server with the generated key and known_hosts."""
        return SshOptions(
            user=self.user, port=port or self.port, identity=str(identity or self.client_key),
            connect_timeout=connect_timeout,
            options=(f"UserKnownHostsFile={self.known_hosts}", "GlobalKnownHostsFile=/dev/null",
                     "StrictHostKeyChecking=yes", "IdentitiesOnly=yes", "LogLevel=ERROR", *extra))

    def host(self, name: str, address: str | None = None, **ssh_kwargs) -> HostConfig:
        """A `HostConfig` named `name` that connects to `address` (default: the first address)."""
        return HostConfig(name=name, address=address or self.addresses[0], ssh=self.ssh_options(**ssh_kwargs))

    def ssh_argv(self, address: str | None = None) -> list[str]:
        """A plain ssh command line (without the remote command) for ad-hoc checks."""
        opts = self.ssh_options()
        argv = ["ssh", "-T", "-o", "BatchMode=yes", "-p", str(self.port), "-l", self.user,
                "-i", str(self.client_key)]
        for o in opts.options:
            argv += ["-o", o]
        return [*argv, "--", address or self.addresses[0]]

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Stop sshd (and its per-connection children, which share its process group)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


def openssh_version() -> tuple[int, int]:
    """(major, minor) of the installed OpenSSH client, e.g. (9, 2); (0, 0) if unknown."""
    try:
        out = subprocess.run(["ssh", "-V"], capture_output=True, text=True, timeout=10).stderr
    except (OSError, subprocess.TimeoutExpired):
        return (0, 0)
    m = re.search(r"OpenSSH_(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _setenv_value(value: str) -> str:
    # sshd_config tokenises with argv_split(): double quotes group, backslash escapes.
    if re.fullmatch(r"[A-Za-z0-9_./:@%+,={}-]*", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True, timeout=30)


def start_sshd(workdir: Path, *, addresses: Iterable[str] = ("127.0.0.1",),
               env: Mapping[str, str] | None = None, path: Iterable[str | Path] = (FAKE_XL_DIR,),
               isolate_home: bool = True, max_sessions: int = 50, max_startups: int = 200,
               timeout: float = 10.0) -> SshServer:
    """Start sshd listening on `addresses`; the remote PATH is `path`, then ``/usr/bin:/bin``.

    `env` adds ``SetEnv`` variables (``FAKE_XL_CAPTURES`` etc.); `isolate_home` sets HOME
    to an empty folder (see the module docstring). Raises `SshdUnavailable`.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    addresses = tuple(addresses)
    if not 1 <= len(addresses) <= MAX_LISTEN_SOCKS:
        raise ValueError(f"one sshd listens on 1..{MAX_LISTEN_SOCKS} addresses; use start_sshd_fleet")
    if not os.access(SSHD, os.X_OK):
        raise SshdUnavailable(f"{SSHD} is not installed or not executable")
    for tool in ("ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise SshdUnavailable(f"{tool} is not installed")
    if os.geteuid() == 0:
        # Debian's sshd refuses to start without its privilege separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    host_key, client_key = workdir / "host_ed25519", workdir / "client_ed25519"
    if not host_key.exists():
        _keygen(host_key, "rdtadvisor-test-host")
    if not client_key.exists():
        _keygen(client_key, "rdtadvisor-test-client")
    authorized = workdir / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    user = getpass.getuser()
    remote_path = ":".join([*(str(p) for p in path), "/usr/bin", "/bin"])
    setenv = {"PATH": remote_path}
    if isolate_home:
        (workdir / "home").mkdir(exist_ok=True)
        setenv["HOME"] = str(workdir / "home")
    setenv.update(env or {})
    last_error = ""
    for _attempt in range(3):  # the free port can be taken between our probe and sshd's bind
        port = free_port()
        known_hosts = workdir / "known_hosts"
        host_pub = host_key.with_suffix(".pub").read_text().split()
        known_hosts.write_text("".join(f"[{a}]:{port} {host_pub[0]} {host_pub[1]}\n" for a in addresses))
        lines = [
            f"Port {port}",
            *(f"ListenAddress {a}" for a in addresses),
            f"HostKey {host_key}",
            f"AuthorizedKeysFile {authorized}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {user}",
            "StrictModes no",
            f"PidFile {workdir / 'sshd.pid'}",
            f"MaxStartups {max_startups}",
            f"MaxSessions {max_sessions}",
            "MaxAuthTries 3",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "LogLevel INFO",
            "SetEnv " + " ".join(f"{k}={_setenv_value(v)}" for k, v in setenv.items()),
        ]
        if openssh_version() >= (9, 8):
            lines.append("PerSourcePenalties no")  # wrong-key tests must not lock out loopback
        config = workdir / "sshd_config"
        config.write_text("\n".join(lines) + "\n")
        log = workdir / "sshd.log"
        with log.open("ab") as log_file:
            proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                    stdout=log_file, stderr=log_file, start_new_session=True)
        server = SshServer(port=port, addresses=addresses, user=user, workdir=workdir, client_key=client_key,
                           known_hosts=known_hosts, config=config, log=log, process=proc)
        if _wait_for_banner(server, timeout):
            return server
        server.stop()
        last_error = server.log_tail() or f"sshd exited with status {proc.returncode}"
        if "Address already in use" not in last_error:
            break
    raise SshdUnavailable(f"sshd did not start: {last_error}")


def start_sshd_fleet(workdir: Path, addresses: Iterable[str], **kwargs) -> list[SshServer]:
    """`start_sshd` for any number of addresses: one server per 16 of them, in order.

    Each server has its own port and keys; `server_for` finds the one for an address.
    """
    addresses = list(addresses)
    servers: list[SshServer] = []
    try:
        for i in range(0, len(addresses), MAX_LISTEN_SOCKS):
            chunk = addresses[i:i + MAX_LISTEN_SOCKS]
            workdir_i = Path(workdir) / f"sshd{i // MAX_LISTEN_SOCKS}"
            servers.append(start_sshd(workdir_i, addresses=chunk, **kwargs))
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def server_for(servers: Iterable[SshServer], address: str) -> SshServer:
    return next(s for s in servers if address in s.addresses)


def _wait_for_banner(server: SshServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with socket.create_connection((server.addresses[0], server.port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-2.0-"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def sshd(workdir: Path, **kwargs) -> Iterator[SshServer]:
    """`start_sshd` as a context manager that always stops the server."""
    server = start_sshd(workdir, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def sshd_or_skip(workdir: Path, **kwargs) -> SshServer:
    """`start_sshd`, or `pytest.skip` with the reason -- but under CI, fail instead."""
    import pytest

    try:
        return start_sshd(workdir, **kwargs)
    except (SshdUnavailable, OSError, subprocess.SubprocessError) as e:
        if os.environ.get("CI"):
            pytest.fail(f"sshd is required under CI but could not start: {e}")
        pytest.skip(f"cannot start a test sshd: {e}")
