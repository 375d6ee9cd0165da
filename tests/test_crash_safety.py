"""Crash safety of publish: a failure or a kill leaves the old publication or the new one, never a mix."""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from casepool.catalogue.indicators import TableRequest
from casepool.core.errors import UsageError
from casepool.publishing.publish import publish, recover_publication, staged_folder


def state(folder: Path) -> dict[str, str] | None:
    """What a reader of the publication sees: the CSV tables by name and content."""
    if not folder.exists():
        return None
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((folder / "csv").glob("*.csv"))
    }


@pytest.fixture
def warehouse(demo_copy) -> Path:
    """The warehouse of conftest's session demo (a copy: publish records in its ledger)."""
    return demo_copy / "warehouse.duckdb"


def test_a_failure_while_writing_keeps_the_old_publication(tmp_path):
    out = tmp_path / "publication"
    with staged_folder(out) as staging:
        (staging / "manifest.json").write_text("{}", encoding="utf-8")
        (staging / "old.csv").write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError), staged_folder(out) as staging:
        (staging / "manifest.json").write_text("{}", encoding="utf-8")
        (staging / "new.csv").write_text("new", encoding="utf-8")
        raise RuntimeError("killed half way")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "old.csv"]
    assert [p.name for p in tmp_path.iterdir()] == ["publication"]  # no staging left


def test_a_run_killed_between_the_two_renames_is_put_back(tmp_path):
    out = tmp_path / "publication"
    aside = tmp_path / ".publication.previous"
    aside.mkdir()
    (aside / "manifest.json").write_text("{}", encoding="utf-8")
    recover_publication(out)
    assert (out / "manifest.json").exists() and not aside.exists()


def test_publish_never_replaces_a_folder_that_is_not_a_publication(tmp_path, warehouse):
    out = tmp_path / "documents"
    out.mkdir()
    (out / "thesis.docx").write_text("precious", encoding="utf-8")
    with pytest.raises(UsageError):
        # One small table: the folder is refused whatever is published (the whole catalogue
        # took minutes on the loaded machine before the refusal).
        publish(warehouse, out, tables=[TableRequest("registered_cases", ("sex",))])
    assert (out / "thesis.docx").read_text(encoding="utf-8") == "precious"


@pytest.mark.slow
def test_killing_publish_at_random_points_leaves_old_or_new(tmp_path, warehouse):
    out = tmp_path / "publication"
    reference_new = tmp_path / "reference_new"
    publish(warehouse, reference_new, period="2024")
    new = state(reference_new)
    publish(warehouse, out)
    old = state(out)
    assert old != new
    rng = random.Random(1)
    code = (
        "import sys; from casepool.publishing import publish; "
        "publish(sys.argv[1], sys.argv[2], period='2024')"
    )
    for _ in range(6):
        child = subprocess.Popen([sys.executable, "-c", code, str(warehouse), str(out)])
        time.sleep(rng.uniform(0.2, 3.0))
        child.send_signal(signal.SIGKILL)
        child.wait()
        recover_publication(out)
        seen = state(out)
        assert seen in (old, new)
        if seen == new:
            publish(warehouse, out)  # back to the old state for the next round
            assert state(out) == old
