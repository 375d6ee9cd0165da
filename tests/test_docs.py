"""The docs agree with the code: generated pages are current and every command is documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main

from casepool.cli.main import app
from casepool.cli.reference_docs import PAGES

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("name", sorted(PAGES))
def test_generated_page_is_current(name):
    path = DOCS / name
    assert path.is_file(), f"docs/{name} missing: run make docs"
    assert path.read_text(encoding="utf-8") == PAGES[name](), f"docs/{name} is stale: run make docs"


def test_every_command_appears_in_a_guide():
    guides = "\n".join(
        p.read_text(encoding="utf-8") for p in DOCS.glob("*.md") if p.name not in PAGES
    )
    group = typer.main.get_command(app)
    for name in group.commands:  # type: ignore[attr-defined]
        assert f"casepool {name}" in guides, f"no guide in docs/ shows `casepool {name}`"
