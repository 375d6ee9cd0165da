"""The report's sex-by-age figure when global recoding published the age table by age group
(issue 12): drawn by age group instead of being dropped, each number its published cell, the
groups labelled from indicators.yaml in every language, and a note saying it was recoded."""

from __future__ import annotations

from datetime import date

import pytest

from browser.report_html import DIGITS, numbers, parse, split_ref, suppressed_marks
from casepool.catalogue.indicators import TableRequest, load_indicators
from casepool.catalogue.population import (
    load_synthetic_population,
    read_population_file,
    synthetic_population_path,
)
from casepool.core.i18n import render
from casepool.publishing.publish import publish
from casepool.publishing.recoding import RecodingSettings, Step
from casepool.reporting import build_page
from casepool.reporting.coverage import Coverage
from casepool.reporting.numerals import localise_digits, parse_number
from casepool.reporting.tables import TableView, read_publication, table_from_rows
from casepool.warehouse.store import open_warehouse
from fixtures.indicators.warehouses import build_random

LANGS = ("en", "ar", "ckb", "kmr")
TABLE = "cases_by_sex_age"
RATES = "cases_rate_by_sex_age"
COVERAGE = Coverage([("ORG-01", "Amal Centre (synthetic)")], {("ORG-01", "2025"): 1})


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict[str, TableView]:
    """A release of the report's age table that global recoding took to age groups."""
    root = tmp_path_factory.mktemp("recoded")
    warehouse = build_random(root / "w.duckdb", 200, orgs=3)
    with open_warehouse(warehouse) as con:  # for the rates, by age group too
        assert load_synthetic_population(con).ok
    settings = RecodingSettings(
        True, 0.0, (Step("age_band", "age_group"),), goal="share", to_total=False
    )
    tables = (
        TableRequest("registered_cases", ("sex", "age_band"), name=TABLE),
        TableRequest("registered_cases_rate", ("sex", "age_band"), name=RATES),
    )
    result = publish(
        warehouse, root / "pub", "2025", tables=tables, ledger=False, recoding=settings
    )
    assert result.ok
    assert {c.table: c.how for c in result.coarsened} == {
        TABLE: "age_band → age_group",
        RATES: "age_band → age_group",
    }
    return read_publication(root / "pub")


@pytest.fixture(scope="module")
def pages(published) -> dict[str, str]:
    return {
        lang: build_page(published, COVERAGE, lang=lang, period="2025", generated=date(2026, 1, 15))
        for lang in LANGS
    }


def figure(html: str) -> str:
    start = html.index('<figure class="figure" id="sex-age">')
    return html[start : html.index("</figure>", start) + len("</figure>")]


def test_the_fixture_is_a_table_by_age_group(published):
    table = published[TABLE]
    assert set(table.dimensions) == {"sex", "age_group"}
    assert table.coarsened  # the manifest names the step
    assert set(table.codes("age_group")) == {"Y0T9", "Y10T17", "_U"}


@pytest.mark.parametrize("lang", LANGS)
def test_the_figure_is_drawn_by_age_group_and_each_number_is_its_published_cell(
    pages, published, lang
):
    html = figure(pages[lang])
    shown = numbers(html)
    hidden = suppressed_marks(html)
    table = published[TABLE]
    # Every cell of the table (3 groups and the total × F, M, U and the total) is in the table
    # beside the chart, as a number or as a suppressed mark; the chart shows the inner ones.
    assert shown, "the fixture must show some of its cells"
    refs = {e.attrs["data-ref"] for e in shown} | {m.attrs["data-suppressed"] for m in hidden}
    assert len(refs) == len(table.cells) == 16
    for element in shown:
        name, codes = split_ref(element.attrs["data-ref"])
        assert name == TABLE and set(codes) == {"sex", "age_group"}
        cell = table.get(**codes)
        assert cell is not None and not cell.suppressed
        assert float(element.attrs["data-value"]) == cell.value
        assert parse_number(element.text, lang) == cell.value
    for mark in hidden:
        name, codes = split_ref(mark.attrs["data-suppressed"])
        assert table.get(**codes).suppressed and not DIGITS.search(mark.text)


@pytest.mark.parametrize("lang", LANGS)
def test_groups_are_labelled_from_the_code_list_and_the_recoding_is_said(pages, lang):
    html = figure(pages[lang])
    texts = " ".join(parse(html).texts)
    groups = load_indicators().dimension("age_group")
    for code in groups.code_values:
        assert localise_digits(groups.code_label(code, lang), lang) in texts
    bands = load_indicators().dimension("age_band")
    note = render(
        "report-note-recoded-to",
        lang,
        coarse=groups.label(lang),
        fine=bands.label(lang),
    )
    assert note in texts
    assert groups.label(lang) in texts  # the table's row heading


def test_a_table_by_age_band_is_drawn_as_before_without_the_note():
    rows = [
        {"indicator": "registered_cases", "sex": s, "age_band": a, "value": v}
        for (s, a), v in {
            ("F", "Y0T4"): 7,
            ("F", "_T"): 7,
            ("_T", "Y0T4"): 7,
            ("_T", "_T"): 7,
        }.items()
    ]
    tables = {TABLE: table_from_rows(TABLE, rows, ("sex", "age_band"))}
    html = figure(
        build_page(tables, COVERAGE, lang="en", period="2025", generated=date(2026, 1, 15))
    )
    assert "instead of" not in html
    assert {split_ref(e.attrs["data-ref"])[1].get("age_band") for e in numbers(html)} >= {"Y0T4"}


def test_a_table_whose_ages_were_merged_away_leaves_the_figure_out():
    rows = [{"indicator": "registered_cases", "sex": s, "value": 9} for s in ("F", "_T")]
    tables = {TABLE: table_from_rows(TABLE, rows, ("sex",))}
    html = build_page(tables, COVERAGE, lang="en", period="2025", generated=date(2026, 1, 15))
    assert 'id="sex-age"' not in html


def test_the_rates_follow_the_counts_to_age_groups(published):
    """The rate table counts the same children as the count table: recoded to age groups with
    it, each rate its protected count over the children of the group's bands."""
    population = read_population_file(
        synthetic_population_path(), source="synthetic", year=2025, synthetic=True
    ).population
    assert population is not None
    regions = dict(load_indicators().dimension("region").region_of)
    rates, counts = published[RATES], published[TABLE]
    assert set(rates.dimensions) == {"sex", "age_group"}
    with_value = 0
    for cell in rates.cells:
        codes = dict(cell.codes)
        count = counts.get(**codes)
        assert count is not None and count.conf_status == cell.conf_status
        children = population.children(codes, regions)
        if codes["age_group"] == "_U" or codes["sex"] == "U":
            assert children is None and cell.value is None
            assert cell.obs_status == ("M" if not count.suppressed else count.obs_status)
        elif count.suppressed:
            assert cell.suppressed and cell.value is None
        else:
            with_value += 1
            assert children is not None and count.value is not None
            assert cell.value == pytest.approx(100_000 * count.value / children, abs=0.05)
    assert with_value > 0
