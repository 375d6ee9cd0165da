"""Publish reads the flagged rows of `cases` when the flags are fresh, the `active_cases`
snapshot otherwise; both give the demo's recorded figures, file for file."""

from __future__ import annotations

import json

import pytest

from casepool.publishing import counted
from casepool.publishing.publish import publish
from casepool.warehouse.store import open_warehouse, refresh_active_cases
from test_demo_publication import DIGEST, publication_digest


def test_an_ingested_warehouse_is_read_through_its_flags(demo_run):
    # conftest's session demo records what its publish counted from (counted.counted_source).
    assert demo_run.counted_sources and set(demo_run.counted_sources) == {counted.COUNTED_VIEW}
    expected = json.loads(DIGEST.read_text(encoding="utf-8"))
    assert publication_digest(demo_run.folder / "publication") == expected


# The default run's equivalent: test_an_ingested_warehouse_is_read_through_its_flags (the same
# figures through the flags) and test_stale_flags_are_not_read (when the snapshot is chosen).
@pytest.mark.slow  # publishes the whole demo catalogue once more (40-120 s on the loaded machine)
def test_the_snapshot_of_active_cases_publishes_the_same_figures(demo_copy, monkeypatch):
    monkeypatch.setattr(counted, "active_flags_fresh", lambda con: False)
    used: list[str] = []
    real = counted.counted_source
    monkeypatch.setattr(
        counted, "counted_source", lambda con, cat=None: used.append(real(con, cat)) or used[-1]
    )
    # As the demo published it: the first release, so none earlier to protect it together with.
    publish(demo_copy / "warehouse.duckdb", demo_copy / "again", ledger=False)
    assert used and counted.COUNTED_VIEW not in used
    expected = json.loads(DIGEST.read_text(encoding="utf-8"))
    assert publication_digest(demo_copy / "again") == expected


def test_stale_flags_are_not_read(demo_copy):
    warehouse = demo_copy / "warehouse.duckdb"
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
