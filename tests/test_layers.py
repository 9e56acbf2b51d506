"""The package is laid out as the data flows, and imports only go down the flow.

Stages, lowest first (each a folder of `rdtadvisor/`; `docs/architecture.md` says what each
takes in and gives out)::

    core < cache < xl < sources < store < model < advise < report < render < sim < cli

A module may import from its own stage or a lower one, never a higher one (the simulator and
scoring harness sit above the advisors they judge; the product never imports them), and no
two modules import each other, directly or in a circle, counting imports inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "rdtadvisor"
STAGES = ["core", "cache", "xl", "sources", "store", "model", "advise", "report", "render", "sim", "cli"]
TOP_LEVEL = {"rdtadvisor": -1, "rdtadvisor.__main__": len(STAGES)}   # the version string; the entry point


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The rdtadvisor modules `name` imports (a ``from pkg import mod`` counts as ``pkg.mod``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "rdtadvisor"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rdtadvisor":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in MODULES else node.module)
    found.discard(name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def stage(name: str) -> int:
    if name in TOP_LEVEL:
        return TOP_LEVEL[name]
    return STAGES.index(name.split(".")[1])


def test_every_module_lives_in_a_stage_folder():
    loose = [n for n in MODULES if n not in TOP_LEVEL and n.split(".")[1] not in STAGES]
    assert loose == []


def test_every_stage_says_what_enters_and_what_leaves():
    for s in STAGES:
        doc = ast.get_docstring(ast.parse((ROOT / s / "__init__.py").read_text(encoding="utf-8")))
        assert doc, f"rdtadvisor/{s}/__init__.py has no docstring"


def test_imports_only_go_down_the_flow():
    upward = sorted(f"{a} imports {b}" for a, deps in GRAPH.items() for b in deps if stage(b) > stage(a))
    assert upward == []


def test_no_import_circles():
    """Tarjan's strongly connected components over every import, lazy ones included."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert circles == []


def test_the_checks_catch_what_they_forbid():
    """The checks themselves: an upward import and a circle would both be found."""
    assert stage("rdtadvisor.advise.strategy") < stage("rdtadvisor.sim.harness")
    assert stage("rdtadvisor.core.errors") < stage("rdtadvisor.cache.cbm") < stage("rdtadvisor.xl.cmt")
    assert "rdtadvisor.xl.commands" in GRAPH["rdtadvisor.xl.cmt"]
