"""Time you can trust: a package signed in the future is refused; the signed time decides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from casepool.cli.main import app
from casepool.warehouse.ingest import ingest_packages
from casepool.warehouse.status import data_fingerprint, warehouse_status
from casepool.warehouse.store import (
    DEFAULT_CLOCK_SKEW_SECONDS,
    LOADED,
    REFUSED,
    open_warehouse,
)
from fixtures.submit.builders import canonical_records, make_package

T0 = datetime(2025, 8, 1, 9, 0, tzinfo=UTC)


def active_ids(warehouse):
    with open_warehouse(warehouse, read_only=True) as con:
        return [
            r[0] for r in con.execute("SELECT submission_id FROM active_submissions").fetchall()
        ]


def test_a_package_signed_in_2099_is_refused_and_the_genuine_one_stays(tmp_path, keys, warehouse):
    genuine = make_package(tmp_path / "a", keys, canonical_records(5), created=T0)
    assert ingest_packages([genuine], warehouse).packages[0].outcome == LOADED
    before = data_fingerprint(warehouse)
    forged_time = make_package(
        tmp_path / "b", keys, canonical_records(9, seed=2), created=datetime(2099, 1, 1, tzinfo=UTC)
    )
    outcome = ingest_packages([forged_time], warehouse).packages[0]
    assert outcome.outcome == REFUSED
    assert outcome.refusal is not None and outcome.refusal.key == "package-from-the-future"
    text = outcome.message("en")
    assert "2099-01-01 00:00:00 UTC" in text and "cannot come from the future" in text
    assert f"{DEFAULT_CLOCK_SKEW_SECONDS} s" in text
    for lang in ("ar", "ckb", "kmr"):
        assert "2099-01-01" in outcome.message(lang) and outcome.message(lang) != text
    assert data_fingerprint(warehouse) == before
    with open_warehouse(warehouse, read_only=True) as con:
        refused = con.execute("SELECT detail FROM audit_log WHERE action = 'refused'").fetchall()
    assert len(refused) == 1 and "package-from-the-future" in refused[0][0]
    # a genuine resubmission afterwards becomes active at once
    resubmitted = make_package(
        tmp_path / "c", keys, canonical_records(7, seed=3), created=T0 + timedelta(days=1)
    )
    report = ingest_packages([resubmitted], warehouse)
    assert report.packages[0].outcome == LOADED
    assert active_ids(warehouse) == [report.packages[0].submission_id]


def test_a_clock_a_little_ahead_is_within_the_skew(tmp_path, keys, warehouse):
    soon = datetime.now(UTC) + timedelta(seconds=DEFAULT_CLOCK_SKEW_SECONDS // 2)
    package = make_package(tmp_path / "a", keys, canonical_records(3), created=soon)
    assert ingest_packages([package], warehouse).packages[0].outcome == LOADED


def test_the_warehouse_sets_its_own_skew(tmp_path, keys, warehouse):
    with open_warehouse(warehouse) as con:
        con.execute("INSERT INTO warehouse_info VALUES ('clock_skew_seconds', '0')")
    ahead = datetime.now(UTC) + timedelta(seconds=90)
    package = make_package(tmp_path / "a", keys, canonical_records(3), created=ahead)
    outcome = ingest_packages([package], warehouse).packages[0]
    assert outcome.outcome == REFUSED and outcome.refusal.params["skew"] == 0


def test_supersession_follows_the_signed_time_not_the_arrival_and_says_so(
    tmp_path, keys, warehouse
):
    newer = make_package(tmp_path / "a", keys, canonical_records(4), created=T0 + timedelta(1))
    older = make_package(tmp_path / "b", keys, canonical_records(6, seed=2), created=T0)
    first = ingest_packages([newer], warehouse).packages[0]
    late = ingest_packages([older], warehouse).packages[0]
    assert late.outcome == LOADED and late.superseded_by == first.submission_id
    text = late.message("en")
    assert "signed 2025-08-01 09:00:00 UTC" in text
    assert "signed later (2025-08-02 09:00:00 UTC)" in text
    assert late.to_dict()["signed_at"] == "2025-08-01T09:00:00"
    assert active_ids(warehouse) == [first.submission_id]
    newest = make_package(
        tmp_path / "c", keys, canonical_records(2, seed=4), created=T0 + timedelta(2)
    )
    won = ingest_packages([newest], warehouse).packages[0]
    assert won.superseded == [first.submission_id]
    assert "newest by signed creation time (2025-08-03 09:00:00 UTC)" in won.message("en")
    with open_warehouse(warehouse, read_only=True) as con:
        details = [
            r[0]
            for r in con.execute(
                "SELECT detail FROM audit_log WHERE action = 'superseded' ORDER BY seq"
            ).fetchall()
        ]
    assert len(details) == 2 and all("signed creation time" in d for d in details)


def test_status_shows_signed_and_ingested_times(tmp_path, runner, keys, warehouse):
    make_package(tmp_path / "in", keys, canonical_records(3), created=T0)
    ingest_packages([tmp_path / "in"], warehouse)
    row = warehouse_status(warehouse).submissions.row(0, named=True)
    assert row["signed_at"] == T0.replace(tzinfo=None)
    result = runner.invoke(app, ["status", "-w", str(warehouse)])
    assert result.exit_code == 0
    assert "signed (UTC)" in result.output and "ingested (UTC)" in result.output
    line = next(x for x in result.output.splitlines() if "active" in x and "ORG-01" in x)
    assert "2025-08-01 09:00" in line
    assert f"{row['ingested_at']:%Y-%m-%d %H:%M}" in line


def test_ingest_prints_progress_package_by_package_on_stderr(tmp_path, runner, keys, warehouse):
    make_package(tmp_path / "in", keys, canonical_records(3), created=T0)
    make_package(tmp_path / "in", keys, canonical_records(4), created=T0 + timedelta(1))
    result = runner.invoke(app, ["ingest", str(tmp_path / "in"), "-w", str(warehouse)])
    assert result.exit_code == 0, result.output
    progress = [x for x in result.stderr.splitlines() if x.startswith("[")]
    assert [x.split(":")[-1].strip() for x in progress] == [
        "verifying…",
        "loaded and committed.",
        "verifying…",
        "loaded and committed.",
    ]
    assert progress[0].startswith("[1/2]") and progress[-1].startswith("[2/2]")
    assert "[1/2]" not in result.stdout
