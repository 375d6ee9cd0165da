"""Publish reads the flagged rows of `cases` when the flags are fresh, the `active_cases`
snapshot otherwise; both give the demo's recorded figures, file for file."""

from __future__ import annotations

import json

import pytest

from casepool.demo import run_demo
from casepool.publishing import counted
from casepool.warehouse.store import open_warehouse, refresh_active_cases
from test_demo_publication import DIGEST, publication_digest


@pytest.mark.slow  # publishes the whole demo catalogue (90-225 s on the loaded machine)
def test_an_ingested_warehouse_is_read_through_its_flags(tmp_path, monkeypatch):
    used: list[str] = []
    real = counted.counted_source
    monkeypatch.setattr(
        counted, "counted_source", lambda con, cat=None: used.append(real(con, cat)) or used[-1]
    )
    run_demo(tmp_path / "demo", orgs=3, records=400, seed=7)
    assert used and set(used) == {counted.COUNTED_VIEW}
    expected = json.loads(DIGEST.read_text(encoding="utf-8"))
    assert publication_digest(tmp_path / "demo" / "publication") == expected


@pytest.mark.slow  # publishes the whole demo catalogue (90-225 s on the loaded machine)
def test_the_snapshot_of_active_cases_publishes_the_same_figures(tmp_path, monkeypatch):
    monkeypatch.setattr(counted, "active_flags_fresh", lambda con: False)
    run_demo(tmp_path / "demo", orgs=3, records=400, seed=7)
    expected = json.loads(DIGEST.read_text(encoding="utf-8"))
    assert publication_digest(tmp_path / "demo" / "publication") == expected


@pytest.mark.slow  # publishes the whole demo catalogue (90-225 s on the loaded machine)
def test_stale_flags_are_not_read(tmp_path):
    run_demo(tmp_path / "demo", orgs=2, records=50, seed=3)
    warehouse = tmp_path / "demo" / "warehouse.duckdb"
    with open_warehouse(warehouse) as con:
        assert counted.active_flags_fresh(con)
        # A write that changed the active submissions without refreshing the flags.
        con.execute("UPDATE submissions SET superseded_by = 'revoked' WHERE rowid = 0")
        assert not counted.active_flags_fresh(con)
        assert counted.counted_source(con) != counted.COUNTED_VIEW
        con.begin()
        refresh_active_cases(con)
        con.commit()
        assert counted.active_flags_fresh(con)
        assert counted.counted_source(con) == counted.COUNTED_VIEW
