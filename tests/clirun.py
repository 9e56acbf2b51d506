"""Run the real `rdtadvisor` entry point in-process and capture what a user would see."""

from __future__ import annotations

from dataclasses import dataclass

from click.testing import CliRunner

from rdtadvisor.cli import main


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Run:
    """`rdtadvisor ARGS...` through `main()`, so error handling and exit codes are the real ones."""
    runner = CliRunner()
    code = 0
    with runner.isolation(input=input, env=env) as (out, err, _):
        try:
            main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        return Run(code, out.getvalue().decode(), err.getvalue().decode())
