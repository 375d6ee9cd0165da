"""The counted cases kept at ingest: `active_cases` reads a flag, and gives what the window gave."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from casepool.warehouse.ingest import ingest_packages
from casepool.warehouse.organisations import add_organisation
from casepool.warehouse.store import open_warehouse, refresh_active_cases
from fixtures.submit.builders import canonical_records, make_package, org_keys

T0 = datetime(2025, 8, 1, tzinfo=UTC)

# The view as it was before the flag: the newest active submission's row of each pseudonym.
WINDOW = """SELECT c.* EXCLUDE (active) FROM cases c JOIN active_submissions s USING (submission_id)
QUALIFY row_number() OVER (
  PARTITION BY c.org, c.pseudonym ORDER BY s.created_at DESC, s.submission_id DESC) = 1"""
OLD_VIEW = f"CREATE OR REPLACE VIEW active_cases AS {WINDOW}"
ORDER = "ORDER BY org, pseudonym, submission_id"


def counted(con, source="SELECT * FROM active_cases"):
    return con.execute(f"SELECT * FROM ({source}) {ORDER}").fetchall()


def assert_view_is_the_window(warehouse):
    with open_warehouse(warehouse, read_only=True) as con:
        flagged = con.execute(f"SELECT * EXCLUDE (active) FROM cases WHERE active {ORDER}")
        flagged_rows = flagged.fetchall()
        window = counted(con, WINDOW)
        assert counted(con) == window
        assert flagged_rows == window  # the flag alone, without the view's safety net


@pytest.fixture
def two_orgs(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    keys = [org_keys(tmp_path / "keys", org) for org in ("ORG-01", "ORG-02")]
    for k in keys:
        add_organisation(warehouse, k.org, k.org, tmp_path / "keys" / f"{k.org}.pub")
    return warehouse, keys


def test_every_ingest_keeps_the_flag_equal_to_the_window(tmp_path, two_orgs):
    warehouse, (a, b) = two_orgs
    july, q3 = canonical_records(10, seed=3), canonical_records(6, seed=4, month=date(2025, 9, 1))
    steps = [
        (a, july, "2025-07", T0),
        (b, july, "2025-07", T0),  # another organisation's own pseudonyms
        (a, july, "2025-Q3", T0 + timedelta(1)),  # overlaps July: its rows win
        (a, q3, "2025-Q3", T0 - timedelta(1)),  # arrives late: superseded at once
        (a, july.head(4), "2025-07", T0 + timedelta(2)),  # supersedes July, Q3 still newer
        (b, q3, "2025-Q3", T0 + timedelta(3)),
    ]
    for n, (keys, records, period, created) in enumerate(steps):
        package = make_package(tmp_path / f"in{n}", keys, records, period=period, created=created)
        assert not ingest_packages([package], warehouse).refused
        assert_view_is_the_window(warehouse)


def test_a_write_that_does_not_refresh_the_flag_cannot_change_a_count(tmp_path, two_orgs):
    warehouse, (a, _) = two_orgs
    for n, period in enumerate(("2025-07", "2025-Q3")):
        package = make_package(
            tmp_path / f"in{n}", a, canonical_records(8, seed=5), period=period, created=T0
        )
        ingest_packages([package], warehouse)
    with open_warehouse(warehouse) as con:
        # Revoke the newest submission behind the flag's back: the older one counts again.
        con.execute(
            "UPDATE submissions SET superseded_by = 'revoked' WHERE submission_id = "
            "(SELECT max_by(submission_id, created_at) FROM submissions)"
        )
        stale = con.execute("SELECT count(*) FROM cases WHERE active").fetchone()
        assert counted(con) == counted(con, WINDOW)
        con.begin()
        refresh_active_cases(con, "ORG-01")
        con.commit()
        assert counted(con) == counted(con, WINDOW)
        assert stale is not None and len(counted(con)) == 8


def test_a_warehouse_made_before_the_flag_is_read_as_it_was_and_upgraded_on_write(
    tmp_path, two_orgs
):
    warehouse, (a, b) = two_orgs
    make_package(tmp_path / "in", a, canonical_records(10, seed=3), created=T0)
    make_package(tmp_path / "in", a, canonical_records(10, seed=3), period="2025-Q3", created=T0)
    make_package(tmp_path / "in", b, canonical_records(5, seed=6), created=T0)
    ingest_packages([tmp_path / "in"], warehouse)
    with open_warehouse(warehouse) as con:
        expected = counted(con)
        con.execute(OLD_VIEW.replace(" EXCLUDE (active)", ""))
        con.execute("DROP TABLE active_cases_basis")
        con.execute("ALTER TABLE cases DROP COLUMN active")
    with open_warehouse(warehouse, read_only=True) as con:  # a reader upgrades nothing
        assert counted(con) == expected
        columns = {r[0] for r in con.execute("DESCRIBE cases").fetchall()}
        assert "active" not in columns
    with open_warehouse(warehouse) as con:  # the first writer adds the flag
        assert counted(con) == expected
        assert con.execute("SELECT count(*) FROM cases WHERE active").fetchone() == (len(expected),)
    assert_view_is_the_window(warehouse)
