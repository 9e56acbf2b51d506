"""Run `xl` on the machine we run on.

`LocalRunner(host).run(("xl", "psr-hwinfo"), timeout)` runs the configured xl binary
(`HostConfig.xl`, default ``xl`` looked up on PATH) without a shell, with ``LC_ALL=C``
so that nothing xl or libxl prints is localised, and returns a `CommandResult` with
stdout and stderr kept apart and byte-exact (decoded as UTF-8 with ``surrogateescape``,
no newline translation). With ``sudo = true`` the command becomes
``sudo -n env LC_ALL=C xl ...`` (``-n``: fail instead of asking for a password; ``env``
because sudo resets the environment).

Failures are data, never exceptions: a timeout kills the whole process group, and every
process below the command even if it left the group (psutil), and gives
``error="timed out after 60s"``; a missing binary gives ``error="xl not found: ..."``;
an xl killed by a signal is a failed command with exit status 128 + the signal number.

`run_process` is the shared engine; `rdtadvisor.sources.ssh` runs ``ssh`` through it.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

import psutil

from rdtadvisor.core import clock
from rdtadvisor.core.config import HostConfig
from rdtadvisor.sources.capture import CommandResult

ENCODING = "utf-8"
# How long a killed process gets to let go of its pipes before we stop reading them.
_REAP_SECONDS = 2.0
_TERM_GRACE_SECONDS = 1.0


def decode(data: bytes | None) -> str:
    """Bytes as printed -> str, losslessly (undecodable bytes survive as surrogates)."""
    return (data or b"").decode(ENCODING, errors="surrogateescape")


def format_seconds(seconds: float) -> str:
    """``60.0`` -> ``60s``, ``0.5`` -> ``0.5s``."""
    return f"{seconds:g}s"


def run_process(argv: Sequence[str], timeout: float, *, result_argv: Sequence[str],
                env: Mapping[str, str] | None = None,
                on_timeout: Callable[[], None] | None = None,
                hold_stdin: bool = False, max_bytes: int | None = None) -> tuple[CommandResult, bool]:
    """Run `argv` (no shell, stdin from /dev/null) in its own process group.

    `hold_stdin`: stdin is instead a pipe that nothing is written to, held open until the
    command ends and closed first on a timeout (ssh's remote watchdog ends xl on its EOF).
    `max_bytes`: once stdout passes it the command is ended like a timed-out one, nothing it
    printed is kept, and `error` says so (a runaway xl must not fill the memory).

    Returns the `CommandResult` (labelled with `result_argv`) and whether the executable
    was missing (then `error` is set and the caller words the message). On timeout the
    process group gets SIGTERM, then SIGKILL (SIGTERM first lets ``sudo`` relay the signal
    to a child it cannot be killed along with); `on_timeout` is called right after the
    SIGTERM, for whoever else holds the process's pipes (an ssh master connection).
    """
    started = clock.now_datetime()
    t0 = time.monotonic()
    result = CommandResult(argv=tuple(result_argv), started=started)
    stdin = _HeldStdin() if hold_stdin else None
    try:
        try:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL if stdin is None else stdin.read_end,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=None if env is None else dict(env), start_new_session=True)
        except FileNotFoundError as e:
            result.exit_status, result.error = None, f"{argv[0]}: {e.strerror}"
            result.seconds = time.monotonic() - t0
            return result, True
        except OSError as e:
            result.exit_status, result.error = None, f"cannot run {argv[0]}: {e.strerror or e}"
            result.seconds = time.monotonic() - t0
            return result, False
        if stdin is not None:
            stdin.close_read_end()
        return _wait(proc, timeout, result, t0, on_timeout, stdin, max_bytes)
    finally:
        if stdin is not None:
            stdin.close()


class _HeldStdin:
    """A pipe for a child's stdin that nothing is written to: its EOF (`close`) says "stop"."""

    def __init__(self) -> None:
        self.read_end, self._write_end = os.pipe()

    def close_read_end(self) -> None:
        if self.read_end >= 0:
            os.close(self.read_end)
            self.read_end = -1

    def close(self) -> None:
        self.close_read_end()
        if self._write_end >= 0:
            os.close(self._write_end)
            self._write_end = -1


class _TooMuch(Exception):
    """stdout passed the limit."""


class _Output:
    """`Popen.communicate` that gives up once stdout passes `limit` bytes (`_TooMuch`); what
    was read so far stays in `out` and `err`, for a timeout's partial output."""

    def __init__(self, proc: subprocess.Popen[bytes], limit: int | None) -> None:
        self.proc, self.limit = proc, limit
        self.out, self.err = bytearray(), bytearray()

    def communicate(self, timeout: float) -> tuple[bytes, bytes]:
        proc = self.proc
        if self.limit is None:
            return proc.communicate(timeout=timeout)
        assert proc.stdout is not None and proc.stderr is not None
        deadline = time.monotonic() + timeout
        buffers = {proc.stdout.fileno(): self.out, proc.stderr.fileno(): self.err}
        with selectors.DefaultSelector() as selector:
            for pipe in (proc.stdout, proc.stderr):
                selector.register(pipe, selectors.EVENT_READ)
            while selector.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired(proc.args, timeout)
                for key, _ in selector.select(left):
                    chunk = os.read(key.fd, 1 << 16)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        continue
                    buffers[key.fd] += chunk
                    if len(self.out) > self.limit:
                        raise _TooMuch()
        proc.wait(timeout=max(deadline - time.monotonic(), 0.001))
        proc.stdout.close()
        proc.stderr.close()
        return bytes(self.out), bytes(self.err)


def _wait(proc: subprocess.Popen[bytes], timeout: float, result: CommandResult, t0: float,
          on_timeout: Callable[[], None] | None, stdin: _HeldStdin | None,
          max_bytes: int | None) -> tuple[CommandResult, bool]:
    output = _Output(proc, max_bytes)
    try:
        out, err = output.communicate(timeout)
    except (subprocess.TimeoutExpired, _TooMuch) as e:
        if stdin is not None:
            stdin.close()  # EOF: the remote side ends the command now (rdtadvisor.sources.ssh)
        rest_out, rest_err = _kill_group(proc, on_timeout)
        result.exit_status, result.seconds = None, time.monotonic() - t0
        result.stderr = decode(bytes(output.err) + rest_err)
        if isinstance(e, _TooMuch):
            result.error = (f"'{shlex.join(result.argv)}' printed more than {max_bytes} bytes, the limit for "
                            "one xl output ([collect] max_output_bytes); refused")
            return result, False
        result.stdout = decode(bytes(output.out) + rest_out)
        result.error = f"timed out after {format_seconds(timeout)}"
        return result, False
    result.stdout, result.stderr = decode(out), decode(err)
    # A command killed by a signal (xl crashing) is a failed command, not an unreachable
    # host: report it as a shell would, 128 + the signal number (SIGSEGV -> 139).
    result.exit_status = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    result.seconds = time.monotonic() - t0
    return result, False


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _descendants(pid: int) -> list[psutil.Process]:
    """Every process below `pid` now: some may have left its process group (setsid, a daemon's
    double fork), and once their parent dies they are reparented and can no longer be found."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _signal_tree(tree: list[psutil.Process], sig: int) -> None:
    for p in tree:
        with contextlib.suppress(psutil.Error):  # gone, or not ours to signal (sudo's root child)
            p.send_signal(sig)


def _kill_group(proc: subprocess.Popen[bytes], on_timeout: Callable[[], None] | None) -> tuple[bytes, bytes]:
    """Terminate `proc`'s process group and every process below it; return whatever output was read."""
    tree = _descendants(proc.pid)
    _signal_group(proc, signal.SIGTERM)
    _signal_tree(tree, signal.SIGTERM)
    if on_timeout is not None:
        with contextlib.suppress(Exception):
            on_timeout()
    try:
        out = proc.communicate(timeout=_TERM_GRACE_SECONDS)
        _signal_tree([p for p in tree if p.is_running()], signal.SIGKILL)
        return out
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc, signal.SIGKILL)
    _signal_tree(tree, signal.SIGKILL)
    try:
        return proc.communicate(timeout=_REAP_SECONDS)
    except subprocess.TimeoutExpired:
        # Something outside the group still holds our pipes: stop waiting for it.
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait(timeout=_REAP_SECONDS)
        return b"", b""


def xl_argv(host: HostConfig, argv: Sequence[str]) -> list[str]:
    """``("xl", *args)`` -> ``[sudo -n] env LC_ALL=C <host.xl> args...`` (env only under sudo)."""
    args = list(argv)
    if args and args[0] == "xl":
        args[0] = host.xl
    if host.ssh.sudo:
        return ["sudo", "-n", "env", "LC_ALL=C", *args]
    return args


class LocalRunner:
    """Runs xl commands here. Implements `rdtadvisor.sources.Runner`."""

    def __init__(self, host: HostConfig) -> None:
        self.config = host
        self.host = host.name

    def __repr__(self) -> str:
        return f"LocalRunner({self.host!r}, xl={self.config.xl!r})"

    def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        """Run ``("xl", ...)`` locally; see the module docstring. Never raises for failures."""
        command = xl_argv(self.config, argv)
        env = {**os.environ, "LC_ALL": "C"}
        result, missing = run_process(command, timeout, result_argv=argv, env=env,
                                      max_bytes=self.config.max_output_bytes)
        if missing:
            what = "sudo" if self.config.ssh.sudo else "xl"
            result.error = f"{what} not found: {result.error}"
        elif self.config.ssh.sudo and result.error is None and result.exit_status != 0:
            result.error = sudo_error(result.stderr, result.exit_status)
        return result

    def close(self) -> None:
        """Nothing to release."""


def sudo_error(stderr: str, exit_status: int | None) -> str | None:
    """sudo's or env's own failure (not xl's) from ``sudo -n env LC_ALL=C xl ...``, else None.

    ``sudo: a password is required`` (exit 1), ``sudo: ...: command not found``,
    ``env: 'xl': No such file or directory`` (exit 127).
    """
    first = next((line for line in stderr.splitlines() if line.strip()), "")
    if exit_status in (126, 127) and first.startswith("env: "):
        return f"xl not found: {first}" if exit_status == 127 else f"xl not runnable: {first}"
    if exit_status == 1 and first.startswith("sudo: "):
        if "command not found" in first:
            return f"xl not found: {first}"
        return first
    return None
