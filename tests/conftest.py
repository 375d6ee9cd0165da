"""Shared test helpers: fixture paths and a CLI runner with a stable terminal."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings
from typer.testing import CliRunner

FIXTURES = Path(__file__).parent / "fixtures"

# No per-example time limit: on a loaded CI machine Hypothesis' 200 ms deadline failed tests whose
# results were right. Speed targets live in bench/, not in tests (README: rules of the house).
settings.register_profile("casepool", deadline=None)
settings.load_profile("casepool")


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
