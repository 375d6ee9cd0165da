"""`casepool publish`: every written table passes the audit, percentages hide with their parts, and
every format holds the same numbers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import duckdb
import polars as pl
import pytest

from casepool import protecting
from casepool.catalogue.indicators import TOTAL, TableRequest, load_indicators
from casepool.catalogue.population import load_synthetic_population
from casepool.catalogue.publication import load_publication
from casepool.catalogue.tabulating import tabulate
from casepool.cli.main import app
from casepool.cli.text.publishing import render_publication
from casepool.publishing.publish import PublishResult, publish
from casepool.publishing.recoding import load_recoding
from casepool.warehouse.store import open_warehouse
from fixtures.indicators.views import attacker_view, own_counts
from fixtures.indicators.warehouses import build_hand_made, build_random

# The tables at the detail these tests read: the figures rule (rounds 5-6's default) keeps them;
# the share rule (the default) may take them coarser (test_recoding_share).
FIGURES = replace(load_recoding(), goal="figures")

# A few tables of the catalogue, enough to cover counts, a multi-valued dimension, a percentage
# and a median, linked through the count of registered cases; fast to protect.
TABLES = (
    TableRequest("registered_cases", ("sex", "age_band"), name="cases_by_sex_age"),
    TableRequest("registered_cases", ("governorate",), name="cases_by_governorate"),
    TableRequest("registered_cases", ("exploitation_type",), name="cases_by_exploitation_type"),
    TableRequest("boys_share", ("region",), name="boys_share_by_region"),
    TableRequest("months_to_registration", ("sex",), name="months_by_sex"),
)
FORMAT_FOLDERS = ("csv", "hxl", "sdmx", "json")


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory) -> Path:
    return build_hand_made(tmp_path_factory.mktemp("hand") / "warehouse.duckdb")


@pytest.fixture(scope="module")
def random_warehouse(tmp_path_factory) -> Path:
    return build_random(tmp_path_factory.mktemp("random") / "warehouse.duckdb", 1500, orgs=3)


@pytest.fixture(scope="module")
def published(random_warehouse, tmp_path_factory) -> PublishResult:
    out = tmp_path_factory.mktemp("publication")
    return publish(random_warehouse, out, tables=TABLES, recoding=FIGURES)


def read_csv(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False)  # text, as an analyst's tool would see it


def test_every_table_is_written_in_every_format(published):
    assert published.ok
    out = published.out_dir
    for request in TABLES:
        for folder in FORMAT_FOLDERS:
            suffix = "json" if folder == "json" else "csv"
            assert (out / folder / f"{request.name}.{suffix}").is_file()
    for name in ("publication.xlsx", "aggregates.duckdb", "methodology.md", "manifest.json"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert [t["table"] for t in manifest["tables"]] == [r.name for r in TABLES]


def test_every_published_table_passes_the_audit_for_outsider_and_each_insider(
    published, random_warehouse
):
    settings = protecting.load_protection_settings()
    tables = {t.name: t for t in published.tables}
    first = last = None
    for request in TABLES:
        frame = read_csv(published.out_dir / "csv" / f"{request.name}.csv")
        unit = load_indicators().indicator(request.indicator).unit
        view = attacker_view(frame, unit, list(request.dimensions))
        with open_warehouse(random_warehouse, read_only=True) as con:
            from casepool.catalogue.tabulating import covered_span

            first, last = covered_span(con)
        insiders = own_counts(random_warehouse, request, first, last)
        multi = [d for d in request.dimensions if load_indicators().dimension(d).multi]
        report = protecting.audit(
            view, k=settings.k, multi_valued=multi, insiders=insiders, total_code=TOTAL
        )
        assert report.protected, (request.name, [v.to_dict() for v in report.failures][:3])
        assert set(report.insiders) == set(insiders)
        assert tables[request.name].written


def test_no_published_count_lies_between_one_and_k_minus_one(published):
    k = protecting.load_protection_settings().k
    for request in TABLES:
        frame = read_csv(published.out_dir / "csv" / f"{request.name}.csv")
        for column in ("value", "numerator", "denominator"):
            if column not in frame.columns or (
                load_indicators().indicator(request.indicator).unit != "count" and column == "value"
            ):
                continue
            counts = frame.get_column(column).cast(pl.Int64).drop_nulls()
            assert not ((counts > 0) & (counts < k)).any(), (request.name, column)


def test_percentages_and_medians_are_never_computable_from_suppressed_parts(published):
    k = protecting.load_protection_settings().k
    for request in TABLES:
        frame = read_csv(published.out_dir / "csv" / f"{request.name}.csv")
        if load_indicators().indicator(request.indicator).unit == "count":
            continue
        shown = frame.filter(pl.col("value").is_not_null())
        assert shown.get_column("denominator").is_not_null().all()
        assert (shown.get_column("denominator").cast(pl.Int64) >= k).all()
        if "numerator" in frame.columns:
            assert shown.get_column("numerator").is_not_null().all()
            hidden_part = frame.filter(
                pl.col("numerator").is_null() | pl.col("denominator").is_null()
            )
            assert hidden_part.get_column("value").is_null().all()
            assert (hidden_part.get_column("obs_status") == "Q").all()


def _number(value: object) -> float | None:
    return None if value is None or value in ("", "[c]") else float(value)  # type: ignore[arg-type]


def test_every_format_holds_the_same_numbers(published):
    out = published.out_dir
    catalogue = load_indicators()
    aggregates = duckdb.connect(str(out / "aggregates.duckdb"), read_only=True)
    workbook = pl.read_excel(out / "publication.xlsx", sheet_id=0, has_header=False)
    suppressed_somewhere = False
    # The Contents sheet names every table's sheet, in the catalogue's order.
    contents = workbook["Contents"]
    sheet_of = dict(zip([r.name for r in TABLES], contents.slice(1).to_series(0), strict=True))
    for request in TABLES:
        dims = list(request.dimensions)

        def cells(rows, n=len(dims)):
            return [(*map(str, r[:n]), _number(r[n])) for r in rows]

        csv = read_csv(out / "csv" / f"{request.name}.csv")
        expected = cells(csv.select(*dims, "value").rows())
        suppressed_somewhere |= any(v is None for *_, v in expected)

        hxl = pl.read_csv(out / "hxl" / f"{request.name}.csv", infer_schema=False)
        assert hxl.row(0)[hxl.columns.index("value")] == "#indicator+value+num"
        assert cells(hxl.slice(1).select(*dims, "value").rows()) == expected

        sdmx = read_csv(out / "sdmx" / f"{request.name}.csv")
        names = [catalogue.dimension(d).sdmx_name for d in dims]
        # SDMX codes are upper-case (the DSD's code lists); the values are the same.
        upper = [(*(c.upper() for c in cell[:-1]), cell[-1]) for cell in expected]
        assert cells(sdmx.select(*names, "OBS_VALUE").rows()) == upper
        hidden = sdmx.filter(pl.col("OBS_VALUE").is_null())
        assert (hidden.get_column("OBS_STATUS") == "Q").all()
        assert hidden.get_column("CONF_STATUS").is_in(["C", "D"]).all()

        rows = json.loads((out / "json" / f"{request.name}.json").read_text(encoding="utf-8"))[
            "rows"
        ]
        assert cells([[r[d] for d in dims] + [r["value"]] for r in rows]) == expected

        stored = aggregates.sql(f'SELECT * FROM "{request.name}"').pl()
        assert cells(stored.select(*dims, "value").rows()) == expected

        sheet = workbook[sheet_of[request.name]]
        header_row = next(i for i, row in enumerate(sheet.rows()) if "value" in row)
        header = [str(c) for c in sheet.row(header_row)]
        columns = [header.index(d) for d in dims] + [header.index("value")]
        body = sheet.slice(header_row + 1).rows()
        assert cells([[row[i] for i in columns] for row in body]) == expected
    aggregates.close()
    assert suppressed_somewhere  # the comparison covered suppressed cells too


def test_categories_come_from_the_code_lists(published):
    frame = read_csv(published.out_dir / "csv" / "cases_by_governorate.csv")
    assert frame.get_column("governorate").to_list() == [
        *load_indicators().dimension("governorate").code_values,
        TOTAL,
    ]


def test_a_table_that_fails_its_audit_is_not_written(hand_made, tmp_path, monkeypatch, runner):
    import casepool.publishing.protect as protect_stage
    import casepool.publishing.publish as publish_stage

    real = protect_stage.audit_protected

    def failing(tab, table, frame, k, settings):
        report = real(tab, table, frame, k, settings)
        if tab.name != "cases_by_sex_age":
            return report
        verdict = protecting.CellVerdict(
            "registered_cases", {"sex": "M"}, "C", "ORG-A", 3, 3, "disclosed"
        )
        return protecting.AuditReport([verdict], k, k, ["ORG-A"])

    publish(hand_made, tmp_path / "out", tables=TABLES[:2])  # an earlier, passing publication
    assert (tmp_path / "out" / "csv" / "cases_by_sex_age.csv").exists()
    monkeypatch.setattr(protect_stage, "audit_protected", failing)
    result = publish(hand_made, tmp_path / "out", tables=TABLES[:2])
    assert not result.ok
    assert not (tmp_path / "out" / "csv" / "cases_by_sex_age.csv").exists()
    assert (tmp_path / "out" / "csv" / "cases_by_governorate.csv").exists()
    shown = render_publication(result, "en")
    assert "cases_by_sex_age" in shown and "ORG-A" in shown
    monkeypatch.setattr(publish_stage, "load_publication", lambda catalogue=None: TABLES[:2])
    cli = runner.invoke(app, ["publish", "-w", str(hand_made), "--out", str(tmp_path / "cli")])
    assert cli.exit_code == 1
    assert "cases_by_sex_age" in cli.output


def test_a_period_restricts_every_table(hand_made, tmp_path):
    result = publish(hand_made, tmp_path / "p2024", period="2024", tables=TABLES[:1])
    frame = read_csv(tmp_path / "p2024" / "csv" / "cases_by_sex_age.csv")
    total = frame.filter((pl.col("sex") == TOTAL) & (pl.col("age_band") == TOTAL))
    assert total.get_column("conf_status").to_list() == ["C"]  # one child registered in 2024
    assert result.period == "2024"


def test_the_catalogue_is_valid_and_covers_the_report_s_charts():
    names = {r.name for r in load_publication()}
    assert {
        "cases_by_period_region",
        "cases_by_governorate",
        "cases_by_sex_age",
        "cases_by_exploitation_type",
        "online_cases_by_platform",
        "justice_funnel",
        "services_by_sex",
        "barriers_by_sex",
    } <= names


def test_the_workbook_marks_suppressed_cells_with_a_note(published):
    import zipfile

    with zipfile.ZipFile(published.out_dir / "publication.xlsx") as book:
        names = book.namelist()
        notes = [n for n in names if n.startswith("xl/comments")]
        assert notes, "suppressed cells carry a note"
        text = "".join(book.read(n).decode("utf-8") for n in notes)
    assert "suppression" in text
    sheets = pl.read_excel(published.out_dir / "publication.xlsx", sheet_id=0, has_header=False)
    assert list(sheets)[:2] == ["Notes", "Contents"]
    # Readable sheet names: a number and the table's breakdown, unique, within 31 characters.
    assert list(sheets)[2] == "01 Sex × Age band"
    assert len(set(sheets)) == len(sheets) and all(len(n) <= 31 for n in sheets)
    assert any("[c]" in str(v) for v in sheets["01 Sex × Age band"].to_series(4).to_list())


def test_casepool_audit_passes_a_published_count_table_with_every_insider(
    published, random_warehouse, runner, tmp_path
):
    request = TABLES[0]  # registered cases by sex and age band: few of unknown sex
    insiders = []
    for org, own in sorted(own_counts(random_warehouse, request).items()):
        path = tmp_path / f"{org}.csv"
        own.write_csv(path)
        insiders += ["--insider", str(path)]
    table = published.out_dir / "csv" / f"{request.name}.csv"
    cli = runner.invoke(app, ["audit", str(table), *insiders])
    assert cli.exit_code == 0, cli.output
    # The same audit refuses the table once a hidden cell is given back.
    frame = read_csv(table)
    hidden = frame.with_row_index().filter(pl.col("conf_status") == "C").get_column("index")
    assert hidden.len() > 0
    if hidden.len():
        with open_warehouse(random_warehouse, read_only=True) as con:
            true = tabulate(con, request).counts.get_column("value")
        row = int(hidden[0])
        leaked = frame.with_columns(
            pl.when(pl.int_range(pl.len()) == row)
            .then(pl.lit(str(true[row])))
            .otherwise(pl.col("value"))
            .alias("value"),
            pl.when(pl.int_range(pl.len()) == row)
            .then(pl.lit("A"))
            .otherwise(pl.col("obs_status"))
            .alias("obs_status"),
        )
        leaked.write_csv(tmp_path / "leaked.csv")
        refused = runner.invoke(app, ["audit", str(tmp_path / "leaked.csv"), *insiders])
        assert refused.exit_code == 1, refused.output


@pytest.mark.slow
def test_the_whole_catalogue_publishes_without_suppression_spreading(tmp_path):
    # Region tables beside governorate tables: the engine links a region to its governorates
    # (the "not stated" region is the "not stated" governorate), so none is withheld.
    warehouse = build_random(tmp_path / "warehouse.duckdb", 3000, orgs=6)
    with open_warehouse(warehouse) as con:
        assert load_synthetic_population(con).ok
    result = publish(warehouse, tmp_path / "publication")
    assert result.ok
    assert len(result.tables) == len(load_publication())
    assert result.suppressed_share < 0.4
    assert all(t.written and not t.audit_failures for t in result.tables)
    counts = [t for t in result.tables if t.indicator == "registered_cases"]
    assert all(t.suppressed < t.cells for t in counts)
