"""The docs stand alone: every page the README and the code point to exists, every command is
documented, and nothing points outside the repository or to a ticket."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from rdtadvisor.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# Linked before it lands: the exit-code table is written on the branch that reworks exit codes.
PENDING = {"docs/exit-codes.md"}
# Where the project's own text lives (the sample captures are xl's output, not ours).
TEXT_DIRS = ("rdtadvisor", "tests", "benchmarks", "samples", "docs", ".ci")
SUFFIXES = {".py", ".md", ".toml", ".txt", ".cfg", ""}


def project_text() -> dict[Path, str]:
    files = [ROOT / "README.md", ROOT / "pyproject.toml"]
    for d in TEXT_DIRS:
        files += [p for p in (ROOT / d).rglob("*") if p.is_file() and p.suffix in SUFFIXES
                  and "captures" not in p.parts and "__pycache__" not in p.parts]
    return {p: p.read_text(encoding="utf-8", errors="replace") for p in files}


def doc_pages() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md"))}


def test_every_docs_page_the_readme_links_exists():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)(?:#[\w-]*)?\)", readme))
    assert {"docs/collect.md", "docs/advise-cat.md", "docs/results.md"} <= linked
    missing = {p for p in linked if not (ROOT / p).is_file()} - PENDING
    assert not missing


def test_every_docs_page_the_code_and_docs_name_exists():
    named = {(m, p) for p, text in project_text().items() for m in re.findall(r"\bdocs/[\w-]+\.md\b", text)}
    missing = sorted(f"{p.relative_to(ROOT)} names {m}" for m, p in named
                     if not (ROOT / m).is_file() and m not in PENDING)
    assert not missing


def commands() -> list[str]:
    """Every command `rdtadvisor --help` lists, and the subcommands of its groups."""
    ctx = click.Context(cli)
    out = []
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        out.append(name)
        if isinstance(cmd, click.Group):
            out += [f"{name} {sub}" for sub in cmd.list_commands(ctx)]
    return out


@pytest.mark.parametrize("command", commands())
def test_every_command_is_documented_in_docs(command):
    # "rdtadvisor [global options] COMMAND" in a page's prose or examples
    words = r"\s+".join(map(re.escape, command.split()))
    pattern = re.compile(rf"\brdtadvisor(?:\s+--(?:store|config)(?:\s+\S+)?)*\s+{words}\b")
    assert any(pattern.search(text) for text in doc_pages().values()), f"no docs page shows {command!r}"


def test_nothing_points_outside_the_repository():
    outside = ["shared/" + "reference", "xen-xl-" + "psr.md", "cache-partitioning-" + "algorithms.md",
               "rdt-" + "ecosystem.md", "style-" + "anchors.md"]
    found = sorted(f"{p.relative_to(ROOT)}: {o}" for p, text in project_text().items() for o in outside
                   if o in text)
    assert not found


def test_comments_and_docs_cite_no_ticket():
    # contracts and reasons are named for what they are; the git log keeps the history
    ticket = re.compile(r"\bissue[ -]?#?\d", re.IGNORECASE)
    found = sorted(str(p.relative_to(ROOT)) for p, text in project_text().items() if ticket.search(text))
    assert not found
