"""The README opens with exactly two set-up commands, and the first one (the main job) works."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.*?)```", text, re.DOTALL)
    assert block and text.index("```sh") < text.index("\n## "), "the README must open with the commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_exactly_two_commands_main_job_then_tests():
    main, tests = setup_commands()
    assert main.startswith("pip install -e . && rdtadvisor ")
    assert tests == "pip install -e '.[test]' && python -m pytest"


def test_the_main_job_runs_on_the_bundled_samples(tmp_path):
    main, _ = setup_commands()
    job = main.removeprefix("pip install -e . && ")  # the package is installed for the tests
    shutil.copytree(ROOT / "samples", tmp_path / "samples")
    bindir = Path(sys.executable).parent
    # A day far from the suite's pinned clock: the demo is placed relative to "now", whatever it is.
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "RDTADVISOR_NOW": "2031-02-28T10:30:00Z"}
    out = subprocess.run(["bash", "-c", job], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Status: CRITICAL" in out.stdout        # etl-burst takes half of a VM's cache
    assert "noisy-neighbour on xen-sky01 socket 0" in out.stdout
    hosts = [line for line in out.stdout.splitlines() if line.startswith("Host xen-")]
    assert len(hosts) == 6
