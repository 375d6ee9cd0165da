"""What analysts get beside the tables: rates from protected counts, SDMX with its structure, HXL
with names and dates, a frictionless data package, a manifest with checksums, a workbook in the
reader's language, the `latest` period and formulas in `query --list`."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from casepool.catalogue.indicators import TableRequest, load_indicators
from casepool.catalogue.population import (
    load_synthetic_population,
    read_population,
    read_population_file,
    synthetic_population_path,
)
from casepool.cli.main import app
from casepool.publishing.publish import PublishResult, publish
from casepool.publishing.query import query
from casepool.publishing.recoding import load_recoding
from casepool.warehouse.store import open_warehouse
from fixtures.indicators.warehouses import build_random

# The tables at the detail these tests read: the figures rule (rounds 5-6's default) keeps them;
# the share rule (the default) may take them coarser (test_recoding_share).
FIGURES = replace(load_recoding(), goal="figures")

TABLES = (
    TableRequest("registered_cases", ("governorate",), name="cases_by_governorate"),
    TableRequest("registered_cases", ("governorate", "sex"), name="cases_by_governorate_sex"),
    # A region table beside the governorate tables: the engine links a region to its
    # governorates (the "not stated" region is the "not stated" governorate), so none is withheld.
    TableRequest("registered_cases", ("region", "sex"), name="cases_by_region_sex"),
    TableRequest("registered_cases", ("period", "sex"), period_unit="quarter", name="by_period"),
    TableRequest("registered_cases", ("sex", "age_band"), name="cases_by_sex_age"),
    TableRequest("boys_share", ("age_band",), name="boys_share_by_age"),
    TableRequest("registered_cases_rate", ("governorate",), name="rate_by_governorate"),
    TableRequest("registered_cases_rate", ("sex", "age_band"), name="rate_by_sex_age"),
)
SDMX = {
    "mes": "http://www.sdmx.org/resources/sdmxml/schemas/v2_1/message",
    "str": "http://www.sdmx.org/resources/sdmxml/schemas/v2_1/structure",
    "com": "http://www.sdmx.org/resources/sdmxml/schemas/v2_1/common",
}
TIME_PERIOD = re.compile(r"^\d{4}(-Q[1-4]|-\d{2})?$|^\d{4}-\d{2}-\d{2}/P\d+M$")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    path = build_random(tmp_path_factory.mktemp("w") / "warehouse.duckdb", 1500, orgs=3)
    with open_warehouse(path) as con:
        assert load_synthetic_population(con).ok
    return path


@pytest.fixture(scope="module")
def published(warehouse, tmp_path_factory) -> PublishResult:
    return publish(
        warehouse, tmp_path_factory.mktemp("pub") / "publication", tables=TABLES, recoding=FIGURES
    )


@pytest.fixture(scope="module")
def published_ar(warehouse, tmp_path_factory) -> PublishResult:
    return publish(
        warehouse,
        tmp_path_factory.mktemp("pub_ar") / "publication",
        tables=TABLES[:2],
        lang="ar",
        recoding=FIGURES,
    )


def text_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


# --- rates --------------------------------------------------------------------------------------


def test_a_region_table_beside_the_governorate_tables_withholds_none_of_them(published):
    assert {t.name for t in published.tables} == {r.name for r in TABLES}
    assert all(t.written and not t.audit_failures for t in published.tables)


def test_rates_are_the_protected_counts_over_the_population_recomputed_by_hand(published):
    out = published.out_dir
    # The population as the file says, read without casepool.
    children: dict[str, int] = {}
    for row in text_csv(synthetic_population_path()):
        if row["ADM1_PCODE"].startswith("#"):
            continue
        bands = [f"{s}_{b}" for s in "FM" for b in ("00_04", "05_09", "10_14", "15_17")]
        children[row["ADM1_PCODE"]] = sum(int(row[c]) for c in bands)
    counts = {r["governorate"]: r for r in text_csv(out / "csv" / "cases_by_governorate.csv")}
    rates = text_csv(out / "csv" / "rate_by_governorate.csv")
    assert len(rates) == len(children) + 2  # every governorate, "not stated" (_U), the total
    for rate in rates:
        count = counts[rate["governorate"]]
        if rate["governorate"] == "_U":  # children whose governorate was blanked: no population
            assert rate["value"] == "" and rate["denominator"] == ""
            continue
        # Same cell, same protection: a hidden count is a hidden rate, with the same statuses.
        assert (rate["value"] == "") == (count["value"] == "")
        assert rate["conf_status"] == count["conf_status"]
        assert rate["numerator"] == count["value"]
        whole = (
            sum(children.values()) if rate["governorate"] == "_T" else children[rate["governorate"]]
        )
        assert int(rate["denominator"]) == whole
        if count["value"]:
            assert float(rate["value"]) == round(100_000 * int(count["value"]) / whole, 1)
    assert any(float(r["value"] or 0) > 0 for r in rates)


def test_a_rate_has_no_value_where_the_population_has_no_such_children(published):
    rows = text_csv(published.out_dir / "csv" / "rate_by_sex_age.csv")
    unknown_sex = [r for r in rows if r["sex"] == "U"]
    assert unknown_sex and all(r["value"] == "" and r["denominator"] == "" for r in unknown_sex)
    shown = [r for r in unknown_sex if r["numerator"]]
    assert all(r["obs_status"] == "M" for r in shown)


def test_every_rate_says_which_population_it_divides_by(published):
    table = json.loads((published.out_dir / "json" / "rate_by_governorate.json").read_text("utf-8"))
    assert "SYNTHETIC" in table["population"] and "2025" in table["population"]


def test_without_a_population_no_rate_is_published_and_a_rate_query_is_refused(tmp_path, runner):
    bare = build_random(tmp_path / "bare.duckdb", 300, orgs=2)
    result = publish(bare, tmp_path / "out", tables=TABLES[-2:] + TABLES[:1])
    assert [t.name for t in result.tables] == ["cases_by_governorate"]
    cli = runner.invoke(
        app, ["query", "registered_cases_rate", "-w", str(bare), "--by", "governorate"]
    )
    assert cli.exit_code == 2 and "population load" in cli.output


def test_a_rate_query_divides_the_protected_count(warehouse):
    rate = query(warehouse, "registered_cases_rate", by="governorate").table.frame
    count = query(warehouse, "registered_cases", by="governorate").table.frame
    joined = rate.join(
        count.select("governorate", pl.col("value").alias("count")), on="governorate"
    )
    shown = joined.filter(pl.col("count").is_not_null())
    assert (shown.get_column("numerator") == shown.get_column("count")).all()


# --- population files ---------------------------------------------------------------------------


def cod_ps(path: Path, *, drop: str | None = None, band: str = "15_17", skip: str = "") -> Path:
    rows = [r for r in text_csv(synthetic_population_path()) if not r["ADM1_PCODE"].startswith("#")]
    fields = [f for f in rows[0] if f != drop]
    fields = [f.replace("15_17", band) for f in fields]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        for row in rows:
            if row["ADM1_PCODE"] != skip:
                writer.writerow([row[f.replace(band, "15_17")] for f in fields])
    return path


def test_population_load_records_source_and_year(tmp_path, runner):
    target = build_random(tmp_path / "w.duckdb", 200, orgs=2)
    file = cod_ps(tmp_path / "children.csv")
    cli = runner.invoke(
        app,
        [
            "population",
            "load",
            str(file),
            "-w",
            str(target),
            "--source",
            "Test office",
            "--year",
            "2024",
        ],
    )
    assert cli.exit_code == 0, cli.output
    with open_warehouse(target, read_only=True) as con:
        population = read_population(con)
    assert population is not None
    assert (population.source, population.year, population.synthetic) == (
        "Test office",
        2024,
        False,
    )
    assert population.frame.height == 18 * 2 * 4
    assert population.sha256 == hashlib.sha256(file.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"band": "15_19"}, "population-missing-bands"),
        ({"skip": "IQG08"}, "population-governorates-missing"),
        ({"drop": "ADM1_PCODE"}, "population-no-pcode"),
    ],
)
def test_a_population_file_that_does_not_fit_is_refused(tmp_path, change, problem):
    loaded = read_population_file(cod_ps(tmp_path / "p.csv", **change), source="x", year=2025)
    assert not loaded.ok and loaded.population is None
    assert [p["type"] for p in loaded.problems] == [problem]


def test_a_refused_population_exits_1_and_changes_nothing(tmp_path, runner):
    target = build_random(tmp_path / "w.duckdb", 200, orgs=2)
    file = cod_ps(tmp_path / "bad.csv", band="15_19")
    args = ["population", "load", str(file), "-w", str(target), "--source", "x", "--year", "2025"]
    cli = runner.invoke(app, args)
    assert cli.exit_code == 1
    with open_warehouse(target, read_only=True) as con:
        assert read_population(con) is None


# --- SDMX ---------------------------------------------------------------------------------------


def test_sdmx_csv_fits_its_structure_definition_code_by_code(published):
    out = published.out_dir
    root = ET.parse(out / "sdmx" / "structure.xml").getroot()
    codelists = {
        cl.get("id"): {c.get("id") for c in cl.findall("str:Code", SDMX)}
        for cl in root.iter(f"{{{SDMX['str']}}}Codelist")
    }
    dsd = root.find(".//str:DataStructure", SDMX)
    assert dsd is not None
    dimensions = [d.get("id") for d in dsd.findall(".//str:DimensionList/str:Dimension", SDMX)]
    enumerations = {
        d.get("id"): d.find("str:LocalRepresentation/str:Enumeration/Ref", SDMX).get("id")
        for d in dsd.findall(".//str:DimensionList/str:Dimension", SDMX)
        + dsd.findall(".//str:AttributeList/str:Attribute", SDMX)
    }
    attributes = [a.get("id") for a in dsd.findall(".//str:AttributeList/str:Attribute", SDMX)]
    assert dsd.find(".//str:TimeDimension", SDMX).get("id") == "TIME_PERIOD"
    flow = root.find(".//str:Dataflow", SDMX)
    structure_id = f"{flow.get('agencyID')}:{flow.get('id')}({flow.get('version')})"
    for request in TABLES:
        rows = text_csv(out / "sdmx" / f"{request.name}.csv")
        assert list(rows[0]) == [
            "STRUCTURE", "STRUCTURE_ID", "ACTION", *dimensions, "TIME_PERIOD", "OBS_VALUE", *attributes
        ]  # fmt: skip
        for row in rows:
            assert row["STRUCTURE_ID"] == structure_id
            for component, codelist in enumerations.items():
                assert row[component] in codelists[codelist], (
                    request.name,
                    component,
                    row[component],
                )
            assert row["TIME_PERIOD"] != "_T" and TIME_PERIOD.match(row["TIME_PERIOD"]), row
            for dimension in dimensions:
                assert row[dimension] == row[dimension].upper()


def test_sdmx_code_lists_hold_every_schema_code_in_upper_case(published):
    root = ET.parse(published.out_dir / "sdmx" / "structure.xml").getroot()
    codes = {
        cl.get("id"): {c.get("id") for c in cl.findall("str:Code", SDMX)}
        for cl in root.iter(f"{{{SDMX['str']}}}Codelist")
    }
    catalogue = load_indicators()
    for dimension in catalogue.dimensions.values():
        if dimension.derived == "period":
            continue
        expected = {c.upper() for c in dimension.code_values} | {"_T"}
        assert codes[f"CL_{dimension.sdmx_name}"] == expected
    assert "FEDERAL" in codes["CL_REGION"] and "REGISTERED_CASES_RATE" in codes["CL_INDICATOR"]


def test_sdmx_time_period_is_the_quarter_of_a_period_row(published):
    rows = text_csv(published.out_dir / "sdmx" / "by_period.csv")
    periods = {r["TIME_PERIOD"] for r in rows}
    assert any(re.fullmatch(r"\d{4}-Q[1-4]", p) for p in periods)
    assert any("/P" in p or re.fullmatch(r"\d{4}", p) for p in periods)  # the total over periods


# --- HXL, data package, manifest ----------------------------------------------------------------


def test_hxl_has_names_beside_codes_and_the_dates_each_row_covers(published):
    with (published.out_dir / "hxl" / "cases_by_governorate.csv").open(encoding="utf-8-sig") as h:
        header, tags, *rows = list(csv.reader(h))
    tag = dict(zip(header, tags, strict=True))
    assert tag["governorate_name"] == "#adm1+name" and tag["governorate"] == "#adm1+code"
    assert tag["date_start"] == "#date+start" and tag["date_end"] == "#date+end"
    named = [dict(zip(header, r, strict=True)) for r in rows]
    baghdad = next(r for r in named if r["governorate"] == "IQG08")
    assert baghdad["governorate_name"] == "Baghdad"
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", r["date_start"]) for r in named)


def test_frictionless_validates_the_data_package_offline(published):
    frictionless = pytest.importorskip("frictionless")
    package = json.loads((published.out_dir / "datapackage.json").read_text("utf-8"))
    listed = {r["path"] for r in package["resources"]}
    on_disk = {
        p.relative_to(published.out_dir).as_posix()
        for p in published.out_dir.rglob("*")
        if p.is_file() and p.name not in {"datapackage.json", "manifest.json"}
    }
    assert listed == on_disk
    assert package["licenses"] and package["sources"]
    assert any("SYNTHETIC" in s["title"] for s in package["sources"])
    report = frictionless.validate(str(published.out_dir / "datapackage.json"))
    assert report.valid, report.flatten(["resourcePath", "rowNumber", "fieldName", "type"])


def test_the_manifest_lists_every_file_with_its_checksum_and_no_local_path(published):
    out = published.out_dir
    text = (out / "manifest.json").read_text("utf-8")
    manifest = json.loads(text)
    assert str(out) not in text and str(out.parent) not in text
    files = {f["path"]: f for f in manifest["files"]}
    on_disk = {
        p.relative_to(out).as_posix(): p
        for p in out.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    assert set(files) == set(on_disk)
    for name, path in on_disk.items():
        assert files[name]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert files[name]["bytes"] == path.stat().st_size


# --- the workbook -------------------------------------------------------------------------------


def test_the_workbook_notes_are_formatted_text_in_the_chosen_language(published_ar):
    sheets = pl.read_excel(published_ar.out_dir / "publication.xlsx", sheet_id=0, has_header=False)
    names = list(sheets)
    assert names[:2] == ["ملاحظات", "المحتويات"]
    assert names[2:] == ["01 المحافظة", "02 المحافظة × الجنس"]
    notes = [str(v) for v in sheets[names[0]].to_series(0).to_list() if v]
    assert notes[0].startswith("الأطفال الناجون")
    assert not any(line.startswith("#") or "docs/" in line for line in notes)
    contents = sheets[names[1]]
    assert contents.height == 3  # a header and one row per table, with its formula
    assert "count" in str(contents.row(1)[3])


# --- periods and formulas -----------------------------------------------------------------------


def test_latest_is_the_last_year_or_quarter_with_registrations(warehouse):
    with open_warehouse(warehouse, read_only=True) as con:
        (last,) = con.execute("SELECT max(report_date) FROM active_cases").fetchone()
    quarter = f"{last.year}-Q{(last.month - 1) // 3 + 1}"
    for unit, code in (("year", str(last.year)), ("quarter", quarter)):
        latest = query(
            warehouse, "registered_cases", by="sex", where=["period=latest"], period_unit=unit
        )
        named = query(
            warehouse, "registered_cases", by="sex", where=[f"period={code}"], period_unit=unit
        )
        assert latest.table.frame.equals(named.table.frame)
        assert (latest.table.first, latest.table.last) == (named.table.first, named.table.last)


def test_query_list_gives_each_indicators_formula(runner):
    cli = runner.invoke(app, ["query", "--list", "--format", "json"])
    listing = {i["indicator"]: i for i in json.loads(cli.output)}
    assert listing["police_reported_share"]["formula"].startswith("100 × count(reported_to_police")
    assert "100,000" in listing["registered_cases_rate"]["formula"]
    text = runner.invoke(app, ["query", "--list"]).output
    assert "    = 100 × count(" in text


def test_reporting_completeness_by_organisation_and_period():
    from casepool.reporting.coverage import Coverage

    coverage = Coverage(
        [("ORG-01", "A"), ("ORG-02", "B")],
        {("ORG-01", "2024"): 1, ("ORG-01", "2025"): 2, ("ORG-02", "2025"): 1},
    )
    assert coverage.period_completeness("2024") == 0.5
    assert coverage.period_completeness("2025") == 1.0
    assert coverage.organisation_completeness("ORG-01") == 1.0
    assert coverage.organisation_completeness("ORG-02") == 0.5


@pytest.mark.parametrize(
    ("lang", "label"), [("ar", "٠–٤ سنوات"), ("ckb", "١٥–١٧ ساڵ"), ("kmr", "0–4 salî")]
)
def test_age_band_labels_take_the_languages_digits(lang, label):
    from casepool.reporting.labels import Labels

    code = "Y0T4" if label.startswith(("٠", "0")) else "Y15T17"
    assert Labels(lang).code("age_band", code) == label


def test_long_chart_labels_wrap_instead_of_being_cut():
    from casepool.reporting.charts import wrap_label

    text = "Perpetrator is a person in a position of authority over the child"
    lines = wrap_label(text)
    assert 1 < len(lines) <= 3 and all(len(line) <= 30 for line in lines)
    assert " ".join(lines).rstrip("…").startswith("Perpetrator is a person in a position")
    assert wrap_label("Boys") == ["Boys"]


def test_an_sdmx_library_reads_every_sdmx_csv_with_the_structure_definition(published):
    """sdmx1 (an independent SDMX implementation) parses the structure and every SDMX-CSV file
    against it; every observation's key takes its codes from the DSD's code lists."""
    sdmx = pytest.importorskip("sdmx")
    out = published.out_dir
    with (out / "sdmx" / "structure.xml").open("rb") as handle:  # sdmx1 leaves paths open
        structure = sdmx.read_sdmx(handle)
    dsd = structure.structure["DSD_CHILD_EXPLOITATION"]
    enumerated = {
        d.id: {code.id for code in d.local_representation.enumerated}
        for d in dsd.dimensions.components
        if d.id != "TIME_PERIOD"
    }
    for request in TABLES:
        with (out / "sdmx" / f"{request.name}.csv").open("rb") as handle:
            message = sdmx.read_sdmx(handle, format="csv", structure=dsd)
        observations = message.data[0].obs
        assert len(observations) == len(text_csv(out / "csv" / f"{request.name}.csv"))
        for obs in observations:
            for dimension, value in obs.key.values.items():
                if dimension == "TIME_PERIOD":
                    assert TIME_PERIOD.match(str(value.value))
                else:
                    assert str(value.value) in enumerated[dimension], (request.name, dimension)
