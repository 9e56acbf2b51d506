"""Run `xl` on a remote host with the system OpenSSH client.

Each command is one ``ssh`` process::

    ssh -o BatchMode=yes -o ConnectTimeout=10 [-p PORT] [-l USER] [-i KEY] [-J JUMP]
        [-o OPTION ...] -o LogLevel=ERROR -o ControlMaster=auto
        -o ControlPath=/tmp/rdt-ssh-XXXX/cm -o ControlPersist=10
        -T -- TARGET 'sh -c WATCHDOG rdtadvisor [sudo -n] env LC_ALL=C xl psr-cmt-show ...'

* The remote command line is built with `shlex.join`, so every argument (a domain name
  with spaces, quotes, ``$(...)`` or ``;``) reaches xl as one literal argument, and it
  is passed to ssh as ONE argument after ``--`` (the target cannot be read as an
  option either). It assumes a POSIX shell as the remote login shell.
* Nothing outlives the collector: the remote command runs under `WATCHDOG`, which ends
  it when its stdin reaches EOF. The collector keeps that stdin (a pipe) open while it
  waits and closes it on a timeout, so the remote xl gets SIGTERM at once; if the
  collector itself dies, the kernel closes the pipe and the same happens.
* Connection multiplexing: the first command opens a master connection in a private
  temporary folder made per runner (short path: unix sockets allow ~100 characters);
  the ~10 commands of a collection reuse it. `close` stops the master and removes the
  folder. Options from the config come before ours, so a user may override them
  (ssh keeps the first value it is given); ``BatchMode=yes`` comes first and stays.
  ``LogLevel=ERROR`` keeps ssh's informational lines (``Warning: Permanently added
  ...``, the server's banner) out of stderr, which is xl's and is saved as data.
* ssh's own failures are told apart from xl's: ssh exits 255 when it fails, but xl
  can exit 255 too (its ``return -1``). A result is an ssh failure only if the status
  is 255 *and* stderr has ssh's own wording (``ssh: connect to host ...``,
  ``Permission denied (publickey)``, ``Connection closed by ...``,
  ``kex_exchange_identification: ...``, ``Host key verification failed``); it is then
  reported as ``CommandResult(error="ssh: connect to host xen01 port 22: Connection
  refused", exit_status=None)``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Sequence

from rdtadvisor.core.config import HostConfig
from rdtadvisor.sources.capture import CommandResult
from rdtadvisor.sources.local import run_process, sudo_error, xl_argv

SSH = "ssh"
CONTROL_PERSIST_SECONDS = 10
# A unix socket path must fit in sun_path (108 bytes on Linux, 104 on BSDs), and ssh
# appends a random suffix to ControlPath while it creates the socket.
_MAX_CONTROL_DIR = 60

# Lines that only ssh itself prints (all of them on stderr, with exit status 255).
_SSH_FAILURE = re.compile(
    r"^ssh: "                                   # ssh: connect to host ...: Connection refused
    r"|Permission denied \("                    # user@host: Permission denied (publickey).
    r"|^Connection closed by "                  # Connection closed by 10.0.0.1 port 22
    r"|^Connection reset by "
    r"|^Connection to \S+ closed by remote host"
    r"|^Connection timed out during banner exchange"
    r"|kex_exchange_identification: "
    r"|ssh_exchange_identification: "
    r"|^Host key verification failed"
    r"|^Unable to negotiate with "
    r"|^Received disconnect from "
    r"|^Too many authentication failures"
    r"|^Bad \w+ '"                              # Bad port '...'
    r"|^command-line line \d+: "               # ssh -o errors
    r"|^(?:/\S+ )?line \d+: Bad configuration option"
    r"|^Could not resolve hostname "
    r"|^channel \d+: open failed"
    r"|^(?:mux_client_\w+|control_persist_detach|muxclient): "
    r"|^Session open refused by peer",
    re.MULTILINE,
)
_SSH_NOISE = re.compile(r"^(?:Warning: Permanently added|Warning: |debug\d: )")


def ssh_failure(stderr: str, exit_status: int | None) -> str | None:
    """ssh's own one-line complaint if this result is an ssh failure, else None."""
    if exit_status != 255:
        return None
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if _SSH_FAILURE.search(line) and not _SSH_NOISE.match(line):
            return line
    return None


def remote_command(host: HostConfig, argv: Sequence[str]) -> str:
    """The xl command line run remotely: ``[sudo -n] env LC_ALL=C <xl> args...``, quoted."""
    return shlex.join(_remote_argv(host, argv))


def _remote_argv(host: HostConfig, argv: Sequence[str]) -> list[str]:
    command = xl_argv(host, argv)
    return command if host.ssh.sudo else ["env", "LC_ALL=C", *command]


# The remote side of every command: run it in the background and end it (SIGTERM; sudo relays
# it to xl) as soon as the session's stdin reaches EOF. The collector holds that stdin open
# until the command ends and closes it when it gives up (or dies), so a timed-out or orphaned
# xl never keeps running on the host. Without a pty, sshd closing a session does not signal
# the command: it would run on until it next writes. POSIX sh; `sh -c` whatever the login shell.
WATCHDOG = ('exec 3<&0; "$@" 3<&- </dev/null & p=$!; '
            '{ read -r _ <&3; kill -TERM "$p"; } >/dev/null 2>&1 & w=$!; exec 3<&-; '
            'wait "$p"; s=$?; kill "$w" 2>/dev/null; exit "$s"')


def guarded_command(host: HostConfig, argv: Sequence[str]) -> str:
    """The remote command line ssh is given: `remote_command` under `WATCHDOG`, as ONE string."""
    return shlex.join(["sh", "-c", WATCHDOG, "rdtadvisor", *_remote_argv(host, argv)])


def _control_root() -> str:
    base = tempfile.gettempdir()
    return base if len(base) <= _MAX_CONTROL_DIR else "/tmp"


class SshRunner:
    """Runs xl commands on `host.target` over ssh. Implements `rdtadvisor.sources.Runner`."""

    def __init__(self, host: HostConfig) -> None:
        self.config = host
        self.host = host.name
        self._lock = threading.Lock()
        self._control_dir: str | None = None
        self._finalizer: weakref.finalize | None = None

    def __repr__(self) -> str:
        return f"SshRunner({self.host!r}, target={self.config.target!r})"

    # -- command lines ------------------------------------------------------------------

    def _control_path(self) -> str:
        with self._lock:
            if self._control_dir is None:
                self._control_dir = tempfile.mkdtemp(prefix="rdt-ssh-", dir=_control_root())
                self._finalizer = weakref.finalize(self, shutil.rmtree, self._control_dir, True)
            # ssh expands %-tokens in ControlPath.
            return os.path.join(self._control_dir, "cm").replace("%", "%%")

    def ssh_options(self) -> list[str]:
        """The ssh options (everything before ``--``), connection sharing included."""
        o = self.config.ssh
        argv = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, math.ceil(o.connect_timeout))}"]
        if o.port is not None:
            argv += ["-p", str(o.port)]
        if o.user:
            argv += ["-l", o.user]
        if o.identity:
            argv += ["-i", os.path.expanduser(o.identity)]
        if o.jump:
            argv += ["-J", o.jump]
        for option in o.options:
            argv += ["-o", option]
        argv += ["-o", "LogLevel=ERROR",
                 "-o", "ControlMaster=auto", "-o", f"ControlPath={self._control_path()}",
                 "-o", f"ControlPersist={CONTROL_PERSIST_SECONDS}"]
        return argv

    def ssh_argv(self, argv: Sequence[str]) -> list[str]:
        """The complete local command line that runs `argv` remotely."""
        return [SSH, *self.ssh_options(), "-T", "--", self.config.target, guarded_command(self.config, argv)]

    # -- running ------------------------------------------------------------------------

    def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        """Run ``("xl", ...)`` on the host; see the module docstring. Never raises for failures."""
        # On a timeout the master connection must go too: it holds copies of the killed
        # ssh's stdout and stderr (mux clients pass their file descriptors to it) until
        # the remote command ends. The next command opens a new connection.
        result, missing = run_process(self.ssh_argv(argv), timeout, result_argv=argv,
                                      on_timeout=self._stop_master, hold_stdin=True,
                                      max_bytes=self.config.max_output_bytes)
        if missing:
            result.error = f"ssh not found: {result.error}"
            return result
        if result.error is not None:
            return result
        failure = ssh_failure(result.stderr, result.exit_status)
        if failure is not None:
            result.exit_status = None
            result.error = self._name_target(failure if failure.startswith("ssh: ") else f"ssh: {failure}")
            return result
        if result.exit_status != 0:
            result.error = sudo_error(result.stderr, result.exit_status)
        return result

    def _name_target(self, message: str) -> str:
        target = self.config.target
        return message if target in message else f"{message} (host {target})"

    def probe(self, timeout: float | None = None) -> str | None:
        """Check that the host can be reached (runs ``true``); returns the error or None."""
        if timeout is None:
            timeout = self.config.ssh.connect_timeout + 5
        result = self.run(("true",), timeout)
        if result.error is not None:
            return result.error
        if result.exit_status != 0:
            first = result.stderr.strip().splitlines()[:1]
            return f"ssh {self.config.target}: 'true' exited {result.exit_status}" + (
                f": {first[0]}" if first else "")
        return None

    def _stop_master(self, control_dir: str | None = None) -> None:
        """Ask the master connection (if any) to exit, ending every session it carries."""
        control_dir = control_dir or self._control_dir
        if control_dir is None:
            return
        socket = os.path.join(control_dir, "cm")
        if os.path.exists(socket):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run([SSH, "-o", f"ControlPath={socket.replace('%', '%%')}", "-O", "exit",
                                "--", self.config.target], stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=5)

    def close(self) -> None:
        """Stop the master connection and remove the control folder; safe to call twice."""
        with self._lock:
            control_dir, self._control_dir = self._control_dir, None
            finalizer, self._finalizer = self._finalizer, None
        if control_dir is None:
            return
        self._stop_master(control_dir)
        if finalizer is not None:
            finalizer()
        else:
            shutil.rmtree(control_dir, ignore_errors=True)

    def __enter__(self) -> SshRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
