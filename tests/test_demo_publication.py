"""The demo's publication is the same, file for file, as the one recorded before the code was regrouped.

Every CSV and JSON table of `casepool demo --orgs 3 --records 400 --seed 7` is compared by its
SHA-256 with tests/fixtures/demo/publication_digest.json. A change that is meant to move published
figures (a new protection rule, a new table) regenerates the file on purpose:
`CASEPOOL_UPDATE_DIGEST=1 .venv/bin/python -m pytest tests/test_demo_publication.py`, and says why
in its commit.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

DIGEST = Path(__file__).parent / "fixtures" / "demo" / "publication_digest.json"


def publication_digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        # manifest.json and datapackage.json carry the time of publishing and the checksums of
        # the workbook and DuckDB file: the figures are in the tables.
        if p.is_file()
        and p.suffix in {".csv", ".json"}
        and p.name not in {"manifest.json", "datapackage.json"}
    }


def test_the_demo_publishes_the_recorded_figures(demo_run):
    # conftest's session demo: run_demo(orgs=3, records=400, seed=7), once for every test.
    found = publication_digest(demo_run.folder / "publication")
    if os.environ.get("CASEPOOL_UPDATE_DIGEST") == "1":
        DIGEST.write_text(json.dumps(found, indent=1) + "\n", encoding="utf-8")
    expected = json.loads(DIGEST.read_text(encoding="utf-8"))
    assert len(expected) > 20  # every table in csv and json
    changed = sorted(
        name for name in expected.keys() | found.keys() if expected.get(name) != found.get(name)
    )
    assert changed == []
