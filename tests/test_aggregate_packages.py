"""Aggregate-only packages (`submit --aggregate`): signed counts instead of records, merged by publish
into the same catalogue figures as the record package of the same data."""

from __future__ import annotations

import io
import json
import random
import zipfile
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from casepool.catalogue.aggregating import aggregate_orgs, histogram_median
from casepool.catalogue.indicators import TableRequest
from casepool.catalogue.publication import load_publication
from casepool.catalogue.tabulating import tabulate
from casepool.cli.main import app
from casepool.core.periods import parse_period
from casepool.exchange.aggregate import AGGREGATE
from casepool.exchange.package import DATA, MANIFEST, SIGNATURE
from casepool.intake.aggregate import aggregate_rows
from casepool.intake.deidentifying import prepare_submission
from casepool.intake.submit import write_package
from casepool.publishing.publish import build_publication
from casepool.publishing.recoding import load_recoding
from casepool.warehouse.ingest import ingest_packages
from casepool.warehouse.organisations import add_organisation
from casepool.warehouse.store import open_warehouse
from casepool.warehouse.submissions import revoke_submission
from fixtures.submit.builders import canonical_records, org_keys

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
TYPES = ["prostitution", "online", "travel_tourism", "trafficking", "child_marriage", "other"]
FIXTURE = Path(__file__).parent / "fixtures" / "submit" / "small_export_with_names_and_phones.csv"


def varied_records(n: int, seed: int) -> pl.DataFrame:
    """Canonical records spread over 2025, with several forms of exploitation, platforms and
    incident months (so multi-valued dimensions, shares and medians all have work to do)."""
    rng = random.Random(seed)
    frame = canonical_records(n, seed)
    reports, incidents, forms, platforms = [], [], [], []
    for _ in range(n):
        report = date(2025, rng.randint(1, 12), rng.randint(1, 28))
        back = rng.choice([0, 0, 1, 2, 3, 5, 8, 13])
        month = report.year * 12 + report.month - 1 - back
        incidents.append(date(month // 12, month % 12 + 1, 1) if rng.random() < 0.85 else None)
        reports.append(report)
        chosen = rng.sample(TYPES, rng.choice([1, 1, 2]))
        forms.append(chosen)
        platforms.append(
            rng.sample(["tiktok", "facebook", "telegram", "gaming"], rng.choice([1, 2]))
            if "online" in chosen
            else None
        )
    return frame.with_columns(
        pl.Series("report_date", reports),
        pl.Series("incident_date", incidents),
        pl.Series("exploitation_types", forms, dtype=pl.List(pl.String)),
        pl.Series("online_platforms", platforms, dtype=pl.List(pl.String)),
    )


def prepared(folder: Path, org: str, n: int, seed: int):
    keys = org_keys(folder / "keys", org)
    submission = prepare_submission(
        varied_records(n, seed), org=org, period=parse_period("2025"), secret=keys.pseudonym_secret
    )
    assert submission.ready, submission.status
    return keys, submission


def warehouse_of(folder: Path, name: str, packages: list[Path], keys: Path | None = None) -> Path:
    w = folder / f"{name}.duckdb"
    for org in ("ORG-01", "ORG-02"):
        add_organisation(w, org, org, (keys or folder / "keys") / f"{org}.pub")
    report = ingest_packages(packages, w)
    assert report.ok, [p.to_dict() for p in report.packages]
    return w


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """ORG-01's 2025 data as a record package and as an aggregate package, ORG-02's as records;
    warehouses: both by records, ORG-01 by aggregate, ORG-01 alone each way."""
    folder = tmp_path_factory.mktemp("aggregate")
    keys1, one = prepared(folder, "ORG-01", 300, 3)
    keys2, two = prepared(folder, "ORG-02", 200, 4)
    counts = aggregate_rows(one)
    rec1 = write_package(one, keys1, folder / "rec1", created=T0)
    agg1 = write_package(one, keys1, folder / "agg1", created=T0, aggregate=counts)
    rec2 = write_package(two, keys2, folder / "rec2", created=T0)
    return {
        "folder": folder,
        "submission": one,
        "counts": counts,
        "rec1": rec1,
        "agg1": agg1,
        "rec2": rec2,
        "records": warehouse_of(folder, "records", [rec1, rec2]),
        "mixed": warehouse_of(folder, "mixed", [agg1, rec2]),
        "records_alone": warehouse_of(folder, "records_alone", [rec1]),
        "aggregate_alone": warehouse_of(folder, "aggregate_alone", [agg1]),
    }


def requests() -> list[TableRequest]:
    """Every table of the catalogue, and a few the catalogue does not publish the same way:
    years instead of quarters, one quarter only, the period margin alone."""
    tables = list(load_publication())
    return [
        *tables,
        TableRequest("registered_cases", ("period", "sex"), period_unit="year"),
        TableRequest("boys_share", ("period", "region"), (("period", ("2025-Q2",)),), "quarter"),
        TableRequest("online_share", ("period", "region"), (("period", ("2025",)),), "year"),
        TableRequest("months_to_registration", ("period", "sex", "region"), period_unit="quarter"),
    ]


def tabulated(warehouse: Path, request: TableRequest):
    with open_warehouse(warehouse, read_only=True) as con:
        return tabulate(con, request)


def assert_same_tabulation(a, b) -> None:
    assert a.counts.drop("cell_key").equals(b.counts.drop("cell_key")), a.name
    assert a.contributions.sort(pl.all()).equals(b.contributions.sort(pl.all())), a.name
    if a.medians is not None:
        assert b.medians is not None and a.medians.equals(b.medians), a.name
    assert (a.first, a.last) == (b.first, b.last)


@pytest.mark.parametrize(
    ("by_records", "by_aggregate"),
    [
        ("records", "mixed"),
        pytest.param("records_alone", "aggregate_alone", marks=pytest.mark.slow),
    ],
    ids=["with-another-organisation", "alone"],
)
def test_every_catalogue_table_counts_the_same_from_aggregates_as_from_records(
    built, by_records, by_aggregate
):
    """Counts, shares' numerators and denominators, medians and each organisation's contribution
    (dominance reads it) are equal, cell for cell, in every table of the catalogue."""
    for request in requests():
        assert_same_tabulation(
            tabulated(built[by_records], request), tabulated(built[by_aggregate], request)
        )


PROTECTED_TOGETHER = (
    "cases_by_sex_age",
    "boys_share_by_region",
    "months_to_registration_by_sex",
    "cases_by_exploitation_type",
)


@pytest.mark.parametrize(
    "names",
    [PROTECTED_TOGETHER, pytest.param(None, marks=pytest.mark.slow)],
    ids=["four-tables", "whole-catalogue"],
)
def test_the_protected_publication_is_the_same(built, names):
    """Suppression, dominance and the audit see the same counts: the same figures are published."""
    tables = None if names is None else [t for t in load_publication() if t.name in names]
    # The figures rule: the share rule's totals are breakdowns an aggregate package does not
    # carry (it counts the publication's own), so the mixed warehouse keeps the finer table
    # (publish undoes a round the data cannot count alike) where records alone go to the total.
    # The whole catalogue without recoding: a recoding round the aggregate package cannot count
    # is undone as a whole in the mixed warehouse (round 7: with the justice link, records alone
    # take the justice funnel to its total in a round the mixed warehouse undoes), so the two
    # may coarsen differently; what must hold is that the engine sees the same counts.
    figures = replace(load_recoding(), goal="figures")
    if names is None:
        figures = figures.disabled()
    a = build_publication(built["records"], ledger=False, tables=tables, recoding=figures)
    b = build_publication(built["mixed"], ledger=False, tables=tables, recoding=figures)
    assert [t.name for t in a.tables] == [t.name for t in b.tables]
    for x, y in zip(a.tables, b.tables, strict=True):
        assert x.frame.equals(y.frame), x.name
    assert sum(t.suppressed for t in a.tables) == sum(t.suppressed for t in b.tables)


def test_the_share_rule_keeps_a_breakdown_the_aggregate_packages_cannot_count_coarser(built):
    """With an aggregate package, a table the share rule would take to its total (a breakdown
    the package does not carry) stays at the finer level the package counts: publish undoes
    that round instead of failing on the mismatch, and the release passes its audits."""
    tables = [t for t in load_publication() if t.name in PROTECTED_TOGETHER]
    alone = build_publication(built["records"], ledger=False, tables=tables)
    mixed = build_publication(built["mixed"], ledger=False, tables=tables)
    totals = {c.table for c in alone.coarsened if c.dimensions_after == ("period",)}
    assert "boys_share_by_region" in totals  # records alone: the total
    assert all(o.written for o in mixed.outcomes)
    assert not {c.table for c in mixed.coarsened} & totals


def _by_hand(frame: pl.DataFrame, registered: date) -> dict[str, int]:
    """Registered cases by sex (`_T` the total) of one registration date, counted in polars from
    the package rows, under the double-count rule: independent of the SQL."""
    counted = frame.filter(
        (pl.col("report_date") == registered)
        & ~((pl.col("reported_elsewhere") == "yes") & (pl.col("referral_source") == "cso"))
    )
    sex = pl.when(pl.col("survivor_sex").is_in(["F", "M"])).then(pl.col("survivor_sex"))
    by_sex = counted.group_by(sex.fill_null("U").alias("sex")).len()
    return {**dict(by_sex.iter_rows()), "_T": counted.height}


def test_aggregate_cells_are_counts_of_the_record_package_rows(built):
    """Each count is a function of the de-identified, locally suppressed rows the record package
    would carry: the steward can learn nothing from it the record package would not show."""
    frame = built["submission"].frame
    counts = built["counts"]
    spec = counts.filter(pl.col("spec") == "registered_cases:age_band,sex")
    for registered in spec.get_column("registered").unique().to_list():
        expected = _by_hand(frame, registered)
        got = {
            cell.split("|")[1]: den
            for cell, den in spec.filter(pl.col("registered") == registered)
            .select("cell", "den")
            .iter_rows()
            if cell.startswith("_T|")
        }
        assert got == {k: v for k, v in expected.items() if v}
    assert counts.filter(pl.col("num") > pl.col("den")).height == 0
    assert set(counts.get_column("registered").dt.day().to_list()) == {1}  # quarters, no days


def test_the_aggregate_package_is_signed_and_holds_no_record(built):
    package = built["agg1"]
    with zipfile.ZipFile(package) as archive:
        assert sorted(archive.namelist()) == sorted([AGGREGATE, MANIFEST, SIGNATURE])
        manifest = json.loads(archive.read(MANIFEST))
        data = archive.read(AGGREGATE)
    assert manifest["kind"] == "aggregate"
    assert manifest["data"]["file"] == AGGREGATE
    assert manifest["aggregate"]["records_counted"] == built["submission"].rows_kept
    assert manifest["k_anonymity"]["k"] >= 3  # the same local suppression as the record package
    frame = pl.read_parquet(io.BytesIO(data))
    assert frame.columns == ["spec", "registered", "cell", "months", "den", "num"]
    raw = package.read_bytes() + data
    for pseudonym in built["submission"].frame.get_column("pseudonym").head(50).to_list():
        assert pseudonym.encode() not in raw
    with open_warehouse(built["mixed"], read_only=True) as con:
        rows = con.execute("SELECT rows FROM submissions WHERE org = 'ORG-01'").fetchall()
        cases = con.execute("SELECT count(*) FROM cases WHERE org = 'ORG-01'").fetchall()
    assert rows == [(built["submission"].rows_kept,)] and cases == [(0,)]


def _rewritten(source: Path, target: Path, change) -> Path:
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    change(members)
    with zipfile.ZipFile(target, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return target


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda m: m.update({AGGREGATE: m[AGGREGATE][:-9] + b"123456789"}),
            "package-checksum-mismatch",
        ),
        (lambda m: m.update({DATA: m.pop(AGGREGATE)}), "package-missing-member"),
        (
            lambda m: m.update({MANIFEST: m[MANIFEST].replace(b'"aggregate"', b'"records"', 1)}),
            "package-bad-signature",
        ),
    ],
    ids=["counts-changed", "counts-as-cases", "kind-changed"],
)
def test_a_tampered_aggregate_package_is_refused_and_changes_nothing(
    built, tmp_path, change, reason
):
    bad = _rewritten(built["agg1"], tmp_path / "bad.casepool.zip", change)
    w = tmp_path / "w.duckdb"
    add_organisation(w, "ORG-01", "ORG-01", built["folder"] / "keys" / "ORG-01.pub")
    report = ingest_packages([bad], w)
    assert report.packages[0].refusal is not None and report.packages[0].refusal.key == reason
    with open_warehouse(w, read_only=True) as con:
        assert aggregate_orgs(con) == ()
        assert con.execute("SELECT count(*) FROM submissions").fetchall() == [(0,)]


def test_supersession_and_revocation_work_for_aggregate_packages(built, tmp_path):
    """A newer record package supersedes the aggregate one (and the other way round); revoking
    the newer brings the older back; revoking both leaves only the other organisation."""
    folder = built["folder"]
    keys1 = org_keys(folder / "keys", "ORG-01")
    newer = prepare_submission(
        varied_records(150, 9),
        org="ORG-01",
        period=parse_period("2025"),
        secret=keys1.pseudonym_secret,
    )
    later = write_package(newer, keys1, tmp_path / "later", created=T0 + timedelta(days=2))
    w = tmp_path / "w.duckdb"
    for org in ("ORG-01", "ORG-02"):
        add_organisation(w, org, org, folder / "keys" / f"{org}.pub")
    report = ingest_packages([built["agg1"], built["rec2"], later], w)
    aggregate_id, _, later_id = (p.submission_id for p in report.packages)
    assert report.packages[2].superseded == [aggregate_id]
    only_later = warehouse_of(tmp_path, "only_later", [built["rec2"], later], folder / "keys")
    request = TableRequest("boys_share", ("period", "region"), period_unit="quarter")
    assert_same_tabulation(tabulated(w, request), tabulated(only_later, request))
    with open_warehouse(w, read_only=True) as con:
        assert aggregate_orgs(con) == ()

    revoke_submission(w, later_id, "sent by mistake")
    for table in (request, TableRequest("months_to_registration", ("region", "sex"))):
        assert_same_tabulation(tabulated(w, table), tabulated(built["mixed"], table))

    revoke_submission(w, aggregate_id, "withdrawn by the organisation")
    only_two = warehouse_of(tmp_path, "only_two", [built["rec2"]], folder / "keys")
    assert_same_tabulation(tabulated(w, request), tabulated(only_two, request))


def test_a_warehouse_without_aggregates_reads_none(built):
    with open_warehouse(built["records"], read_only=True) as con:
        assert aggregate_orgs(con) == ()
    with open_warehouse(built["mixed"], read_only=True) as con:
        assert aggregate_orgs(con) == ("ORG-01",)


def test_a_filter_below_the_aggregate_level_counts_records_only(built):
    """A question filtered on a dimension (not the period) cannot use aggregate cells: every
    margin would change. Such tables count the records only."""
    request = TableRequest("registered_cases", ("sex",), (("age_band", ("Y10T14",)),))
    alone = tabulated(built["aggregate_alone"], request)
    assert alone.counts.get_column("value").sum() == 0


def test_histogram_median_matches_quantile_cont():
    import duckdb

    rng = random.Random(5)
    for _ in range(50):
        values = [rng.randint(0, 20) for _ in range(rng.randint(1, 30))]
        expected = duckdb.sql(
            f"SELECT quantile_cont(x, 0.5) FROM (SELECT unnest({values}) AS x)"
        ).fetchall()[0][0]
        bins = sorted(set(values))
        assert histogram_median(bins, [values.count(v) for v in bins]) == pytest.approx(expected)


def test_submit_aggregate_writes_counts_and_says_so(tmp_path, runner):
    org_keys(tmp_path / "keys", "ORG-01")
    result = runner.invoke(
        app,
        ["submit", str(FIXTURE), "--org", "ORG-01", "--period", "2025", "--key",
         str(tmp_path / "keys"), "--out", str(tmp_path / "out"), "--aggregate"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Aggregate-only package" in result.output
    (package,) = (tmp_path / "out").glob("*.casepool.zip")
    with zipfile.ZipFile(package) as archive:
        assert AGGREGATE in archive.namelist() and DATA not in archive.namelist()


def test_dp_questions_say_they_leave_aggregate_packages_out(built, tmp_path, runner):
    """Ad-hoc questions are answered with differential privacy from records: an aggregate-only
    organisation is not in the answer, and the answer (library, CLI, JSON) says so."""
    import shutil

    from casepool.publishing.query import query

    w = tmp_path / "mixed.duckdb"
    shutil.copy(built["mixed"], w)
    result = query(w, "registered_cases", by="sex")
    assert result.aggregate_excluded == ("ORG-01",)
    assert any("ORG-01" in note for note in result.notes("en"))
    assert result.to_dict()["aggregate_packages_excluded"] == ["ORG-01"]
    assert all(note for note in result.notes("ar"))
    from casepool.serving.render import result_view  # the service's table builder shows them

    assert result_view(result, "en")["notes"] == result.notes("en")
    cli = runner.invoke(app, ["query", "registered_cases", "--warehouse", str(w), "--by", "sex"])
    assert cli.exit_code == 0, cli.output
    assert "aggregate-only packages of ORG-01" in cli.output

    plain = tmp_path / "records.duckdb"
    shutil.copy(built["records"], plain)
    assert query(plain, "registered_cases", by="sex").notes() == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (pl.col("num") + pl.col("den"), "counts out of range"),
        (pl.lit("registered_cases:age_band,sex"), "cells do not match their specs"),
        (pl.lit("Robert'); DROP TABLE cases"), "specs or cells malformed"),
        (pl.lit(date(2024, 12, 1)), "registrations outside the period"),
    ],
    ids=["num-above-den", "cell-of-another-spec", "spec-not-a-name", "outside-period"],
)
def test_a_signed_but_malformed_aggregate_is_refused(built, tmp_path, change, reason):
    """The organisation's signature is not enough: the counts must fit the layout."""
    folder = built["folder"]
    keys1 = org_keys(folder / "keys", "ORG-01")
    counts = built["counts"]
    column = {
        "counts out of range": "num",
        "cells do not match their specs": "spec",
        "specs or cells malformed": "spec",
        "registrations outside the period": "registered",
    }[reason]
    target = pl.int_range(pl.len()) == 0  # one row: boys_share:region, KRI, first quarter
    bad = counts.with_columns(pl.when(target).then(change).otherwise(pl.col(column)).alias(column))
    package = write_package(built["submission"], keys1, tmp_path / "bad", created=T0, aggregate=bad)
    w = tmp_path / "w.duckdb"
    add_organisation(w, "ORG-01", "ORG-01", folder / "keys" / "ORG-01.pub")
    (outcome,) = ingest_packages([package], w).packages
    assert outcome.refusal is not None and outcome.refusal.key == "package-bad-data"
    assert outcome.refusal.params["reason"] == reason


def test_backup_and_restore_keep_the_aggregate_counts(built, tmp_path):
    from casepool.warehouse.backup import backup_warehouse, restore_warehouse

    backup = backup_warehouse(built["mixed"], tmp_path / "backup.duckdb")
    assert "aggregate_cells" in backup.tables
    restore_warehouse(tmp_path / "backup.duckdb", tmp_path / "restored.duckdb")
    request = TableRequest("registered_cases", ("period", "sex"), period_unit="quarter")
    assert_same_tabulation(
        tabulated(tmp_path / "restored.duckdb", request), tabulated(built["records"], request)
    )
