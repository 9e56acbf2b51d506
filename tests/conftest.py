"""Shared fixtures: the fake xl, a factory for real loopback sshd servers (tests/sshd.py), the demo
store; and the pinned clock every test runs under."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from rdtadvisor.core import clock
from tests.sshd import FAKE_XL_DIR, SshServer, sshd_or_skip

# "Now" for every test and every process a test starts (rdtadvisor.core.clock): default windows
# (7d before now), collection times and report stamps never depend on the day the suite runs.
# The demo store below and the sample stores sit in the week before it.
TEST_NOW = "2026-11-24T00:00:00Z"


def pytest_configure(config: pytest.Config) -> None:
    os.environ[clock.ENV] = TEST_NOW


@pytest.fixture(scope="session")
def fake_xl() -> str:
    """Path of the fake xl script that replays captures (tests/fake_xl/xl)."""
    path = FAKE_XL_DIR / "xl"
    assert os.access(path, os.X_OK), f"{path} must be executable"
    return str(path)


@pytest.fixture(scope="module")
def sshd_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """``start(**kwargs) -> SshServer``: start a loopback sshd (see `tests.sshd.start_sshd`).

    Skips when sshd cannot start, except under CI (``CI`` set), where it fails.
    Every server started is stopped when the test module ends.
    """
    servers: list[SshServer] = []

    def start(**kwargs) -> SshServer:
        server = sshd_or_skip(tmp_path_factory.mktemp("sshd"), **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store holding the demo fleet (samples/demo-fleet.toml) simulated for 14 hours at 5-minute
    steps: two of etl-burst's bursts (02:00 and 08:00), the streaming and saturated hosts, the
    unattached domain. Shared by the report tests; never written to by them."""
    from pathlib import Path

    from tests.clirun import run

    root = tmp_path_factory.mktemp("demo")
    scenario = Path(__file__).resolve().parent.parent / "samples" / "demo-fleet.toml"
    r = run("simulate", str(scenario), "--out", str(root / "caps"), "--duration", "14h",
            "--start", "2026-11-20T00:00:00Z", "--quiet")
    assert r.exit_code == 0, r.stderr
    r = run("--store", str(root / "store"), "collect", "--replay", str(root / "caps"))
    assert r.exit_code == 0, r.stderr
    return str(root / "store")
