"""`publish` records every publication in the release ledger and protects the next one together
with it: the same data give the same figures; a new organisation's one record is not given away
by subtracting the two releases (solved with the LP audit, outsider and each organisation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from casepool.catalogue.indicators import TableRequest
from casepool.cli.main import app
from casepool.protecting.audit import SystemAudit, engine_attackers
from casepool.protecting.lp import PROTECTED
from casepool.protecting.releases import link
from casepool.protecting.settings import load_protection_settings
from casepool.protecting.tables import build_system
from casepool.publishing.publish import publish
from casepool.publishing.releases import earlier_tables
from casepool.warehouse.ledger import list_releases
from casepool.warehouse.store import open_warehouse
from fixtures.indicators.warehouses import build_random

TABLES = (
    TableRequest("registered_cases", ("sex", "age_band"), name="cases_by_sex_age"),
    TableRequest("registered_cases", ("governorate",), name="cases_by_governorate"),
)


def _csvs(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted((folder / "csv").glob("*.csv"))}


def _failures(tables, hide_last: bool = False) -> set[str]:
    settings = load_protection_settings()
    system = link(build_system(tables, settings), settings)
    suppressed = np.array(["~" in key[0] for key in system.keys])
    primary = suppressed & (system.primary_extra if system.primary_extra is not None else False)
    last = {t.name for t in tables if t.name and "@" in t.name}
    newest = max(n.split("@")[1] for n in last)
    for grid in system.grids:
        table = grid.table
        lookups = [{c: i for i, c in enumerate(codes)} for codes in grid.codes]
        hide_all = hide_last and str(table.name).endswith(newest)
        for *codes, status in table.statuses.select(*table.dimensions, "conf_status").iter_rows():
            cell = grid.ids[tuple(lookups[d][c] for d, c in enumerate(codes))]
            suppressed[cell] |= status != "F" or hide_all
            primary[cell] |= status == "C"
    need = np.where(primary, settings.interval_for(settings.k), 1)
    auditor = SystemAudit(system.equations, system.inequalities, system.value, floor=system.floor)
    found = set()
    for finding in auditor.check(suppressed, need, engine_attackers(system, settings)):
        for j, verdict in enumerate(finding.result.verdicts):
            if verdict != PROTECTED:
                found.add(f"{finding.attacker} {system.keys[finding.cells[j]]} {verdict}")
    return found


def ledger_tables(warehouse: Path) -> tuple[list, list]:
    """The releases in the ledger, and every release's count tables linked to the newest's data
    (the newest release's own tables as the current ones), as the next publish would see them."""
    with open_warehouse(warehouse, read_only=True) as con:
        releases = list_releases(con)
        newest = releases[-1]
        now = earlier_tables(con, [], newest.data_fingerprint or "")
        current = [t for t in now if t.name and t.name.endswith(newest.release_id[:8])]
        return releases, earlier_tables(con, current, newest.data_fingerprint or "")


def test_republishing_the_same_data_gives_the_same_figures_and_both_are_recorded(tmp_path, runner):
    warehouse = build_random(tmp_path / "w.duckdb", 300, orgs=3)
    first = publish(warehouse, tmp_path / "one", tables=TABLES)
    second = publish(warehouse, tmp_path / "two", tables=TABLES)
    assert first.ok and second.ok
    assert _csvs(tmp_path / "one") == _csvs(tmp_path / "two")
    with open_warehouse(warehouse, read_only=True) as con:
        releases = list_releases(con)
    assert [r.kind for r in releases] == ["publication", "publication"]
    assert releases[0].data_fingerprint == releases[1].data_fingerprint
    assert releases[1].detail["released_before"] == 2
    shown = runner.invoke(app, ["releases", "--warehouse", str(warehouse), "--json"])
    assert shown.exit_code == 0 and '"kind": "publication"' in shown.output
    listed = runner.invoke(app, ["releases", "--warehouse", str(warehouse)])
    assert listed.exit_code == 0 and "2 releases" in listed.output


def test_a_new_organisations_one_record_is_not_given_away_by_the_republication(tmp_path):
    warehouse = build_random(tmp_path / "w.duckdb", 300, orgs=3)
    publish(warehouse, tmp_path / "one", tables=TABLES)
    with open_warehouse(warehouse) as con:  # a new organisation sends one child's record
        con.execute(
            "INSERT INTO submissions (submission_id, org, period, period_start, period_end, "
            "package, created_at, ingested_at, ingested_by, rows, manifest) VALUES "
            "('sub-new', 'ORG-99', '2025', DATE '2024-01-01', DATE '2025-12-31', 'p', "
            "TIMESTAMP '2026-02-01', TIMESTAMP '2026-02-01', 'test', 1, '{}')"
        )
        con.execute(
            "INSERT INTO cases SELECT * REPLACE ('sub-new' AS submission_id, 'ORG-99' AS org, "
            "'new-child' AS pseudonym) FROM cases LIMIT 1"
        )
    result = publish(warehouse, tmp_path / "two", tables=TABLES)
    assert result.ok
    releases, tables = ledger_tables(warehouse)
    newest = releases[-1]
    assert len(releases) == 2 and releases[0].data_fingerprint != newest.data_fingerprint
    assert any(t.version for t in tables)  # the first release's changed cells are a version
    added = _failures(tables) - _failures(tables, hide_last=True)
    assert added == set()
    frame = pl.read_csv(tmp_path / "two" / "csv" / "cases_by_sex_age.csv", infer_schema=False)
    assert frame.height > 0


def test_a_scoped_count_is_the_numerator_of_its_share_one_cell_one_status(tmp_path):
    from casepool.catalogue.indicators import load_indicators
    from casepool.catalogue.relations import linked_population

    catalogue = load_indicators()
    assert linked_population(catalogue.indicator("online_cases"), catalogue) == (
        "registered_cases",
        (("online_share__outcome", "yes"),),
    )
    assert linked_population(catalogue.indicator("registered_cases"), catalogue) == (
        "registered_cases",
        (),
    )
    warehouse = build_random(tmp_path / "w.duckdb", 400, orgs=3)
    tables = (
        TableRequest("online_share", ("sex",), name="online_share_by_sex"),
        TableRequest("online_cases", ("sex",), name="online_cases_by_sex"),
    )
    result = publish(warehouse, tmp_path / "pub", tables=tables, ledger=False)
    assert result.ok
    share = pl.read_csv(tmp_path / "pub" / "csv" / "online_share_by_sex.csv", infer_schema=False)
    count = pl.read_csv(tmp_path / "pub" / "csv" / "online_cases_by_sex.csv", infer_schema=False)
    joined = count.join(share, on="sex", suffix="_share")
    # The count and the share's numerator are the same children: shown alike or hidden alike.
    for row in joined.iter_rows(named=True):
        assert row["value"] == row["numerator"], row


def test_a_report_drawn_from_the_warehouse_is_a_release_of_its_own(tmp_path, monkeypatch):
    from casepool.publishing import publish as publish_module
    from casepool.reporting import protected_tables

    # The report protects the whole publication catalogue; here a catalogue of two tables other
    # than TABLES (the whole one took 45 s and more; a release is recorded the same way whatever
    # it holds, and a table released again from the same data is not counted twice).
    report_tables = (
        TableRequest("registered_cases", ("sex",), name="cases_by_sex"),
        TableRequest("registered_cases", ("age_band",), name="cases_by_age"),
    )
    monkeypatch.setattr(publish_module, "load_publication", lambda catalogue=None: report_tables)
    warehouse = build_random(tmp_path / "w.duckdb", 300, orgs=3)
    publish(warehouse, tmp_path / "one", tables=TABLES)
    protected_tables(warehouse)  # what `casepool report` shows when drawn from the warehouse
    with open_warehouse(warehouse, read_only=True) as con:
        releases = list_releases(con)
    assert [r.kind for r in releases] == ["publication", "report"]
    assert releases[1].cells > 0 and releases[1].detail["released_before"] >= 1
    # The next publication is protected together with the report as well as the publication.
    again = publish(warehouse, tmp_path / "two", tables=TABLES)
    with open_warehouse(warehouse, read_only=True) as con:
        assert list_releases(con)[-1].detail["released_before"] >= 2 * len(TABLES)
    assert again.ok
