"""The cumulative release (the whole data, scope `2024-01..2025-12`) is the sum of the years,
quarters and months it meets: an attacker holding it and the years' releases subtracts. Found by
the lead in round 4: before the link, cumulative − 2025 gave 2024's hidden cells, among them a
primary count of 3."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from casepool.catalogue.indicators import TableRequest
from casepool.protecting.releases import _period_parts
from casepool.publishing.audit_release import audit_releases
from casepool.publishing.publish import publish
from casepool.publishing.recoding import load_recoding
from fixtures.indicators.warehouses import build_random

TABLES = (
    TableRequest("registered_cases", ("sex", "age_band"), name="cases_by_sex_age"),
    TableRequest("boys_share", ("region",), name="boys_share_by_region"),
)


def test_a_span_is_the_sum_of_its_months_quarters_and_years() -> None:
    months, quarters, years = _period_parts("2024-11..2025-02")
    assert months == ["2024-11", "2024-12", "2025-01", "2025-02"]
    assert quarters == ["2024-Q4", "2025-Q1"]
    assert years == ["2024", "2025"]
    assert _period_parts("2025-03..2025-01") == []  # backwards: no span
    assert _period_parts("all") == []
    assert _period_parts("2025..2026") == []  # spans are of months


def _cells(folder: Path) -> dict[tuple[str, str], str | None]:
    frame = pl.read_csv(folder / "csv" / "cases_by_sex_age.csv", infer_schema=False)
    return {(r["sex"], r["age_band"]): r["value"] for r in frame.iter_rows(named=True)}


@pytest.mark.slow
@pytest.mark.parametrize("order", [("", "2024", "2025"), ("2024", "2025", "")])
def test_the_cumulative_release_and_its_years_stacked_give_nothing_away(
    tmp_path: Path, order: tuple[str, ...]
) -> None:
    warehouse = build_random(tmp_path / "w.duckdb", 400, orgs=3)  # data 2024-01 .. 2025-12
    off = load_recoding().disabled()
    folders = {}
    for period in order:
        folders[period] = tmp_path / (period or "all")
        publish(
            warehouse, folders[period], period or None, tables=TABLES, ledger=True, recoding=off
        )
    # The attack by hand, independent of the engine's links: cumulative = 2024 + 2025, cell by cell.
    whole, first, second = (_cells(folders[p]) for p in ("", "2024", "2025"))
    for key, value in whole.items():
        hidden = [v in (None, "") for v in (value, first.get(key), second.get(key))]
        assert sum(hidden) != 1, f"{key} recovered by subtraction"
    # And the project's audit over the three folders, outsider and each organisation.
    report = audit_releases([folders[p] for p in order])
    assert report.links > 0
    assert report.protected, [f.to_dict() for f in report.findings[:3]]


@pytest.mark.slow
def test_without_the_ledger_the_audit_sees_the_subtraction(tmp_path: Path) -> None:
    warehouse = build_random(tmp_path / "w.duckdb", 400, orgs=3)
    off = load_recoding().disabled()
    folders = []
    for period in ("", "2024", "2025"):
        folders.append(tmp_path / (period or "all"))
        publish(warehouse, folders[-1], period or None, tables=TABLES, ledger=False, recoding=off)
    report = audit_releases(folders)
    assert not report.protected
    assert any(
        f.attacker == "outsider"
        and "2024-01..2025-12" not in str(f.cell)
        and f.verdict == "disclosed"
        for f in report.findings
    )


@pytest.mark.slow
def test_a_whole_data_republication_after_one_new_record_does_not_give_it_away(
    tmp_path: Path,
) -> None:
    """The span grows with a record registered after it (2024-01..2025-12 → ..2026-01): the two
    whole-data releases count 'every child' both, so their difference is the new child. Before
    the link, its sex, age band and governorate were each published + 1 (found in round 4)."""
    from casepool.warehouse.store import open_warehouse
    from test_publish_ledger import TABLES as LEDGER_TABLES
    from test_publish_ledger import _failures, ledger_tables

    warehouse = build_random(tmp_path / "w.duckdb", 300, orgs=3)
    publish(warehouse, tmp_path / "one", tables=LEDGER_TABLES)
    with open_warehouse(warehouse) as con:
        con.execute(
            "INSERT INTO submissions (submission_id, org, period, period_start, period_end, "
            "package, created_at, ingested_at, ingested_by, rows, manifest) VALUES "
            "('sub-new', 'ORG-99', '2026', DATE '2026-01-01', DATE '2026-12-31', 'p', "
            "TIMESTAMP '2026-02-01', TIMESTAMP '2026-02-01', 'test', 1, '{}')"
        )
        con.execute(
            "INSERT INTO cases SELECT * REPLACE ('sub-new' AS submission_id, 'ORG-99' AS org, "
            "'new-child' AS pseudonym, DATE '2026-01-15' AS report_date, '2026' AS period) "
            "FROM cases LIMIT 1"
        )
    assert publish(warehouse, tmp_path / "two", tables=LEDGER_TABLES).ok
    for name in ("cases_by_sex_age.csv", "cases_by_governorate.csv"):
        before = pl.read_csv(tmp_path / "one" / "csv" / name, infer_schema=False)
        after = pl.read_csv(tmp_path / "two" / "csv" / name, infer_schema=False)
        dims = [
            c
            for c in before.columns
            if c not in {"indicator", "value", "obs_status", "conf_status"}
        ]
        both = before.join(after, on=dims, suffix="_after").filter(
            pl.col("value").is_not_null() & pl.col("value_after").is_not_null()
        )
        change = both["value_after"].cast(pl.Int64) - both["value"].cast(pl.Int64)
        assert not ((change >= 1) & (change <= 4)).any(), name
    _, tables = ledger_tables(warehouse)
    assert _failures(tables) - _failures(tables, hide_last=True) == set()
