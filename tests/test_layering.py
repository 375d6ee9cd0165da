"""Stages are folders: a lower stage never imports a higher one, and no module imports itself back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "casepool"

# Each stage and the stages it may import (besides itself). docs/architecture.md draws the same.
MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "exchange": {"core"},
    "intake": {"core", "exchange", "catalogue"},  # catalogue: aggregate-only packages count
    "warehouse": {"core", "exchange"},
    "catalogue": {"core"},
    "protecting": {"core"},
    "synthesis": {"core"},
    "publishing": {"core", "exchange", "warehouse", "catalogue", "protecting"},
    "reporting": {"core", "exchange", "warehouse", "catalogue", "protecting", "publishing"},
    "serving": {
        "core",
        "exchange",
        "warehouse",
        "catalogue",
        "protecting",
        "publishing",
        "reporting",
    },
    "demo": {
        "core",
        "exchange",
        "intake",
        "warehouse",
        "catalogue",
        "protecting",
        "publishing",
        "reporting",
        "synthesis",
    },
    "cli": {
        "core",
        "exchange",
        "intake",
        "warehouse",
        "catalogue",
        "protecting",
        "publishing",
        "reporting",
        "synthesis",
        "demo",
        "serving",
        "facade",
    },
    "facade": {"core"},  # casepool/__init__.py names its verbs as strings and imports them lazily
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def stage_of(module: str) -> str:
    parts = module.split(".")
    return "facade" if len(parts) == 1 else parts[1]


def imports_of(path: Path) -> set[str]:
    """Every casepool module `path` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "casepool"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "casepool":  # `from casepool import protecting` names a module
                found |= {f"casepool.{a.name}" for a in node.names}
            elif node.module.split(".")[0] == "casepool":
                found.add(node.module)
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_lives_in_a_known_stage():
    assert {stage_of(m) for m in MODULES} <= set(MAY_IMPORT)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_stage_imports_only_the_stages_below_it(module):
    stage = stage_of(module)
    allowed = MAY_IMPORT[stage] | {stage}
    wrong = sorted(i for i in imports_of(MODULES[module]) if stage_of(i) not in allowed)
    assert wrong == [], f"{module} ({stage}) imports a higher or sideways stage: {wrong}"


def test_no_import_circle():
    graph = {m: {i for i in imports_of(p) if i in MODULES} for m, p in MODULES.items()}
    # A package imports its own modules to re-export them; that is not a circle of dependency.
    graph = {m: {i for i in deps if not i.startswith(m + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert circles == []


def test_the_law_can_fail():
    """The checker sees a higher import: core importing publishing would be reported."""
    fake = ast.parse("from casepool.publishing.publish import publish")
    node = fake.body[0]
    assert isinstance(node, ast.ImportFrom) and node.module is not None
    assert stage_of(node.module) not in MAY_IMPORT["core"] | {"core"}
