"""Shared test helpers: fixture paths, a CLI runner with a stable terminal, one organisation's
keys and warehouse, and the demo run once per session (with the network cut)."""

from __future__ import annotations

import hashlib
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@pytest.fixture
def keys(tmp_path):
    """The keys of one organisation (ORG-01) under tmp_path/keys."""
    from fixtures.submit.builders import org_keys

    return org_keys(tmp_path / "keys")


@pytest.fixture
def warehouse(tmp_path, keys) -> Path:
    """A new warehouse at tmp_path/w.duckdb with `keys`' organisation registered, nothing else.
    A module that needs another warehouse defines its own fixture of this name."""
    from casepool.warehouse.organisations import add_organisation

    path = tmp_path / "w.duckdb"
    add_organisation(path, keys.org, "Test CSO", tmp_path / "keys" / f"{keys.org}.pub")
    return path


# The demo as test_demo.py, test_demo_publication.py (its recorded digest), test_offline.py and
# test_crash_safety.py check it. Run once per session: the whole path takes a minute or more.
DEMO_ARGS: dict[str, Any] = {"orgs": 3, "records": 400, "seed": 7}


@dataclass(frozen=True)
class DemoRun:
    """What the session's one `run_demo(**DEMO_ARGS)` did. Read only: a test that writes into
    the demo's folder copies it first (`demo_copy`); the session checks at its end that nobody
    changed it."""

    result: Any  # casepool.demo.DemoResult
    stages: tuple[str, ...]
    network_attempts: tuple[str, ...]  # connections tried during the run (each refused)
    guard_held: bool  # the guard still refused a connection when the run was over
    counted_sources: tuple[str, ...]  # what publish counted from (casepool.publishing.counted)

    @property
    def folder(self) -> Path:
        return Path(self.result.workdir)


def _folder_digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Any:
    """`casepool demo` (DEMO_ARGS) run once for the session with the network cut, as
    test_offline.py's guard cuts it: the run proves the whole path works offline."""
    from casepool.demo import run_demo
    from casepool.publishing import counted
    from fixtures.offline import NetworkUsed, cut_network

    stages: list[str] = []
    sources: list[str] = []
    real_source = counted.counted_source
    with pytest.MonkeyPatch.context() as patch:
        attempts = cut_network(patch)
        patch.setattr(
            counted,
            "counted_source",
            lambda con, cat=None: sources.append(real_source(con, cat)) or sources[-1],
        )
        result = run_demo(
            tmp_path_factory.mktemp("demo-session") / "demo",
            stage=lambda name, detail: stages.append(name),
            **DEMO_ARGS,
        )
        seen = list(attempts)
        try:  # a documentation-only address (RFC 5737), a short timeout should the guard be gone
            socket.create_connection(("192.0.2.1", 80), timeout=1).close()
            held = False
        except NetworkUsed:
            held = True
        except OSError:
            held = False
    run = DemoRun(result, tuple(stages), tuple(seen), held, tuple(sources))
    before = _folder_digest(run.folder)
    yield run
    after = _folder_digest(run.folder)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], f"a test changed the session's demo folder (copy it first): {changed}"


@pytest.fixture
def demo_copy(demo_run, tmp_path) -> Path:
    """A writable copy of the session demo's folder, for a test that changes it."""
    target = tmp_path / "demo"
    shutil.copytree(demo_run.folder, target)
    return target
