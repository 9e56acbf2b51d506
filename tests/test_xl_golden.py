"""Every captured format parses to its reviewed golden JSON (or fails with its expected error)."""

from __future__ import annotations

import json

import pytest

from rdtadvisor.core import errors
from rdtadvisor.xl.commands import PARSED_COMMANDS
from tests.golden import FIXTURES, cases, command_of, parse_case


@pytest.mark.parametrize("case", cases(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_golden_case(case):
    expected_json = case.with_suffix(".json")
    expected_err = case.with_suffix(".err")
    assert expected_json.exists() != expected_err.exists(), f"{case}: needs exactly one of .json/.err"
    if expected_json.exists():
        assert parse_case(case) == json.loads(expected_json.read_text(encoding="utf-8"))
    else:
        kind, fragment = expected_err.read_text(encoding="utf-8").splitlines()[:2]
        with pytest.raises(getattr(errors, kind)) as info:
            parse_case(case)
        assert fragment in str(info.value)
        assert case.name in str(info.value), "the error must name the file"


def test_every_parser_has_fixtures():
    # jc's run_all_fixtures / ntc-templates' testcases_exists: no parser passes vacuously.
    dirs = {case.parent.name for case in cases()}
    missing = [c for c in PARSED_COMMANDS if not any(d == c or d.startswith(f"{c}-") for d in dirs)]
    assert not missing, f"parsers without golden fixtures: {missing}"


def test_every_case_has_a_command_line():
    for case in cases():
        assert command_of(case).startswith("xl "), case
    assert FIXTURES.is_dir()
