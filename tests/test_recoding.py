"""Global recoding before suppression (issue 12, step 4): a table that would hide more than the
set share of its cells is published coarser and protected again, and the release says so."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from casepool.catalogue.indicators import TableRequest, load_indicators
from casepool.core.errors import SchemaError
from casepool.publishing.audit_release import audit_releases
from casepool.publishing.publish import publish
from casepool.publishing.recoding import (
    RecodingSettings,
    Step,
    coarser,
    load_recoding,
    recode,
    recoding_from_mapping,
)
from fixtures.indicators.warehouses import build_random

STEPS = (Step("governorate", "region"), Step("period"), Step("age_band"), Step("sex"))
# The mechanics of recoding: the share rule without its last resort (the total: test_recoding_share)
# and without undoing a coarsening that costs figures (the figures rule, tested apart).
SETTINGS = RecodingSettings(True, 0.25, STEPS, goal="share", to_total=False)


def test_the_shipped_settings_load_and_name_known_dimensions() -> None:
    from casepool.publishing.recoding import check_steps

    settings = load_recoding()
    assert 0 < settings.max_suppressed_share < 1
    assert Step("governorate", "region") in settings.steps
    check_steps(settings, load_indicators())


def test_a_step_replaces_a_dimension_or_merges_it_and_repeats_a_table_only_as_a_last_resort() -> (
    None
):
    catalogue = load_indicators()
    by_gov = TableRequest("registered_cases", ("governorate", "sex"), name="g")
    found = coarser(by_gov, SETTINGS, catalogue)
    assert found is not None and found[0].dimensions == ("region", "sex")
    assert found[0].name == "g"  # the table keeps its name
    # region x sex already published: the next step that applies is taken instead
    other = TableRequest("registered_cases", ("region", "sex"), name="r")
    found = coarser(by_gov, SETTINGS, catalogue, [by_gov, other])
    assert found is not None and found[0].dimensions == ("governorate",)
    # no other step: the table repeats the regional one rather than stay hidden by governorate
    # (cases_by_governorate when cases_by_period_region of a quarter was merged to region)
    by_region = TableRequest("registered_cases", ("region",), name="r")
    alone = TableRequest("registered_cases", ("governorate",), name="g")
    found = coarser(alone, SETTINGS, catalogue, [alone, by_region])
    assert found is not None and found[0].dimensions == ("region",)
    assert found[1] == Step("governorate", "region")
    # a table keeps one dimension at least
    assert coarser(TableRequest("registered_cases", ("sex",)), SETTINGS, catalogue) is None
    # online cases have no governorate: the step does not apply
    online = TableRequest("online_cases", ("online_platform", "sex"))
    assert coarser(online, SETTINGS, catalogue)[0].dimensions == ("online_platform",)


def test_only_tables_over_the_share_or_withheld_are_recoded() -> None:
    catalogue = load_indicators()
    a = TableRequest("registered_cases", ("governorate",), name="a")
    b = TableRequest("registered_cases", ("sex", "age_band"), name="b")
    c = TableRequest(
        "boys_share", ("period", "region"), (("period", ("2025-Q2",)),), "quarter", name="c"
    )
    shares = {"a": (20, 6, True), "b": (24, 6, True), "c": (8, 0, False)}  # b: exactly 25 %
    requests, done = recode([a, b, c], shares, SETTINGS, catalogue)
    assert [r.dimensions for r in requests] == [("region",), ("sex", "age_band"), ("region",)]
    assert [(d.table, d.how) for d in done] == [
        ("a", "governorate → region"),
        ("c", "period → total"),
    ]
    assert done[1].suppressed_before == 1.0
    assert recode([a], shares, SETTINGS.disabled(), catalogue) == ([a], [])


def test_the_period_is_merged_only_in_a_release_of_one_of_its_codes() -> None:
    """`period → total` never takes the time series away: not from a release of the whole data,
    nor from a year's release of a quarterly table; a quarter's release of a quarterly table (or
    a year's of a yearly one) has one period, whose cells are the total's."""
    catalogue = load_indicators()
    only_period = replace(SETTINGS, steps=(Step("period"),))

    def request(period: str | None, unit: str) -> TableRequest:
        where = (("period", (period,)),) if period else ()
        return TableRequest("registered_cases", ("period", "region"), where, unit, name="t")

    for period, unit in ((None, "quarter"), (None, "year"), ("2025", "quarter")):
        assert coarser(request(period, unit), only_period, catalogue) is None, (period, unit)
        # the other steps still apply: period x sex → period (sex merged), the period stays
        by_sex = replace(request(period, unit), dimensions=("period", "sex"))
        found = coarser(by_sex, SETTINGS, catalogue)
        assert found is not None and found[0].dimensions == ("period",), (period, unit)
    for period, unit in (("2025-Q3", "quarter"), ("2025", "year")):
        found = coarser(request(period, unit), only_period, catalogue)
        assert found is not None and found[0].dimensions == ("region",), (period, unit)
    # two quarters asked: several periods, the time series stays
    two = replace(request(None, "quarter"), where=(("period", ("2025-Q1", "2025-Q2")),))
    assert coarser(two, only_period, catalogue) is None


@pytest.mark.parametrize(
    "raw",
    [
        {"max_suppressed_share": 1.5},
        {"enabled": "yes"},
        {"keep_figures": True},
        {"goal": "both"},
        {"to_total": "yes"},
        {"steps": [{"to": "region"}]},
        {"steps": [{"dimension": "governorate", "to": 3}]},
        ["not", "a", "mapping"],
    ],
)
def test_bad_settings_are_refused(raw) -> None:
    with pytest.raises(SchemaError):
        recoding_from_mapping(raw)


def test_a_release_says_which_tables_it_coarsened_and_passes_the_audit(
    tmp_path: Path, runner
) -> None:
    warehouse = build_random(tmp_path / "w.duckdb", 300, orgs=3)
    tables = (
        TableRequest("registered_cases", ("governorate", "sex"), name="cases_by_governorate_sex"),
        TableRequest("registered_cases", ("period", "region"), name="cases_by_period_region"),
    )
    # Any suppression: recode, with one step (so the test does not depend on the pattern).
    settings = replace(SETTINGS, max_suppressed_share=0.0, steps=STEPS[:1])
    out = tmp_path / "pub"
    result = publish(warehouse, out, "2025", tables=tables, recoding=settings)
    assert result.ok
    coarsened = {c.table: c for c in result.coarsened}
    assert coarsened["cases_by_governorate_sex"].how == "governorate → region"
    assert coarsened["cases_by_governorate_sex"].dimensions_after == ("region", "sex")
    header = (out / "csv" / "cases_by_governorate_sex.csv").read_text(encoding="utf-8-sig")
    assert header.startswith("indicator,region,sex,")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["coarsened"][0]["table"] == "cases_by_governorate_sex"
    assert manifest["cells"] == result.cells and "suppressed_share" in manifest
    by_name = {t["table"]: t for t in manifest["tables"]}
    assert by_name["cases_by_governorate_sex"]["coarsened"] == ["governorate → region"]
    note = (out / "methodology.md").read_text(encoding="utf-8")
    assert "Global recoding" in note and "- cases_by_governorate_sex: governorate → region" in note
    sheets = pl.read_excel(out / "publication.xlsx", sheet_id=0, has_header=False)
    notes = sheets["Notes"].to_series(0).drop_nulls().to_list()
    assert any("cases_by_governorate_sex: governorate → region" in line for line in notes)
    # The ledger records it too, and the recoded cells pass the audit of the folder.
    from casepool.warehouse.ledger import list_releases
    from casepool.warehouse.store import open_warehouse

    with open_warehouse(warehouse, read_only=True) as con:
        detail = list_releases(con)[-1].detail
    assert detail["coarsened"][0]["how"] == "governorate → region"
    from casepool.cli.main import app

    listed = runner.invoke(app, ["releases", "--warehouse", str(warehouse)])
    assert listed.exit_code == 0, listed.output
    assert "coarsened: cases_by_governorate_sex (governorate → region)" in listed.output
    assert audit_releases([out]).protected
    # The report drawn from the folder says it in its methodology section.
    from casepool.reporting import write_report

    write_report(warehouse, tmp_path / "report.html", publication=out, period="2025")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "cases_by_governorate_sex: governorate → region" in page


def test_without_recoding_the_tables_keep_their_detail(tmp_path: Path) -> None:
    warehouse = build_random(tmp_path / "w.duckdb", 300, orgs=3)
    tables = (TableRequest("registered_cases", ("governorate", "sex"), name="g"),)
    result = publish(
        warehouse, tmp_path / "pub", "2025", tables=tables, recoding=SETTINGS.disabled()
    )
    assert result.coarsened == []
    header = (tmp_path / "pub" / "csv" / "g.csv").read_text(encoding="utf-8-sig")
    assert header.startswith("indicator,governorate,sex,")


def test_every_suppressed_cell_is_given_one_cause(tmp_path: Path) -> None:
    """The decomposition of a release's suppression (bench/release_utility_bench.py): each hidden
    cell is counted under exactly one cause, the primary causes of a count follow its true value,
    and a share over no children is no disclosure-control cost."""
    from casepool.catalogue.tabulating import VALUE
    from casepool.publishing.publish import CAUSES, build_publication

    warehouse = build_random(tmp_path / "w.duckdb", 300, orgs=3)
    tables = (
        TableRequest("registered_cases", ("governorate", "sex"), name="g"),
        TableRequest("boys_share", ("period", "region"), name="b"),
        TableRequest("mhpss_share", ("region", "sex"), name="m"),
    )
    recoding = SETTINGS.disabled()
    publication = build_publication(
        warehouse, "2025", tables=tables, ledger=False, recoding=recoding
    )
    assert publication.outcomes and all(o.written for o in publication.outcomes)
    for outcome in publication.outcomes:
        assert set(outcome.causes) == set(CAUSES)
        assert sum(outcome.causes.values()) == outcome.suppressed
    g = next(p for p in publication.kept if p.tabulation.name == "g")
    cells = g.counts.join(
        g.tabulation.counts.select("governorate", "sex", pl.col(VALUE).alias("true")),
        on=["governorate", "sex"],
    )
    small = cells.filter((pl.col("conf_status") == "C") & (pl.col("true") < 5)).height
    dominated = cells.filter((pl.col("conf_status") == "C") & (pl.col("true") >= 5)).height
    complements = cells.filter(pl.col("conf_status") == "D").height
    by = {o.name: o.causes for o in publication.outcomes}
    assert (by["g"]["threshold"], by["g"]["dominance"], by["g"]["secondary"]) == (
        small,
        dominated,
        complements,
    )
    assert small > 0  # 300 children in 18 governorates x sex: small cells exist
    m = publication.table("m").frame
    empty = m.filter(pl.col("value").is_null() & (pl.col("denominator") == 0)).height
    assert by["m"]["no_children"] >= empty
    # The release adds them up, in the summary and, with distinct flags, its manifest (with
    # combined flags, the default, the manifest keeps them to itself: test_flags_combined).
    from casepool.protecting.settings import load_protection_settings

    out = tmp_path / "pub"
    distinct = replace(load_protection_settings(), flags="distinct")
    result = publish(
        warehouse, out, "2025", tables=tables, ledger=False, recoding=recoding, settings=distinct
    )
    assert sum(result.causes.values()) == result.suppressed
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["suppressed_by"] == result.causes
    assert manifest["tables"][0]["suppressed_by"] == result.tables[0].causes


def test_a_table_with_no_other_step_repeats_a_coarser_one_instead_of_staying_hidden(
    tmp_path: Path,
) -> None:
    """The case that withheld cases_by_governorate: once the quarter's table by period and region
    is merged to region, the governorate table's only step would repeat it. It is published as
    that regional table (same cells, same statuses), and the folder passes the audit."""
    warehouse = build_random(tmp_path / "w.duckdb", 300, orgs=3)
    tables = (
        TableRequest(
            "registered_cases",
            ("period", "region"),
            period_unit="quarter",
            name="cases_by_period_region",
        ),
        TableRequest("registered_cases", ("governorate",), name="cases_by_governorate"),
    )
    settings = replace(SETTINGS, max_suppressed_share=0.0)  # any suppression: recode
    out = tmp_path / "pub"
    result = publish(warehouse, out, "2025-Q2", tables=tables, ledger=False, recoding=settings)
    assert result.ok
    how = {c.table: c.how for c in result.coarsened}
    assert how == {
        "cases_by_period_region": "period → total",
        "cases_by_governorate": "governorate → region",
    }
    read = {
        name: pl.read_csv(out / "csv" / f"{name}.csv", encoding="utf8-lossy")
        for name in ("cases_by_period_region", "cases_by_governorate")
    }
    assert read["cases_by_period_region"].columns == read["cases_by_governorate"].columns
    assert read["cases_by_period_region"].equals(read["cases_by_governorate"])
    assert audit_releases([out]).protected
    # The report draws what the quarter's publication holds: no figure over time (one quarter,
    # merged into its total), the headline from the total, and says what was coarsened.
    from casepool.reporting import write_report

    write_report(warehouse, tmp_path / "report.html", publication=out, period="2025-Q2")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert 'id="fig-time"' not in page
    assert "cases_by_period_region: period → total" in page


def test_a_coarsening_that_costs_figures_is_undone() -> None:
    """keep_figures: the coarser table must publish at least as many figures as the finer one."""
    from casepool.publishing.recoding import Coarsening, undo_losses

    fine = TableRequest("registered_cases", ("service", "sex"), name="s")
    coarse = TableRequest("registered_cases", ("service",), name="s")
    other_fine = TableRequest("mhpss_share", ("region", "sex"), name="m")
    other_coarse = TableRequest("mhpss_share", ("region",), name="m")
    done = [
        Coarsening("s", "registered_cases", "sex", None, 15 / 32, ("service", "sex"), ("service",)),
        Coarsening("m", "mhpss_share", "sex", None, 15 / 16, ("region", "sex"), ("region",)),
    ]
    baseline = {"s": 17, "m": 1}  # figures published before recoding: 32 - 15, 16 - 15
    now = {"s": (8, 0, True), "m": (4, 3, True)}  # 8 and 1
    history = {"s": [fine], "m": [other_fine]}
    requests, undone = undo_losses([coarse, other_coarse], done, baseline, now, history)
    assert requests == [fine, other_coarse]  # 17 > 8: back; 1 = 1: kept (fewer cells hidden)
    assert [c.table for c in undone] == ["s"] and history == {"s": [], "m": [other_fine]}
    # a table withheld before recoding published nothing: any coarser form is kept
    history = {"s": [fine], "m": [other_fine]}
    withheld = {"s": 0, "m": 1}
    assert undo_losses([coarse, other_coarse], done, withheld, now, history)[1] == []


def test_a_release_never_publishes_fewer_figures_for_a_table_it_coarsened(tmp_path: Path) -> None:
    """With keep_figures, every coarsening a release keeps publishes at least the figures the
    table had at its finer level (measured against the same release without recoding)."""
    warehouse = build_random(tmp_path / "w.duckdb", 300, orgs=3)
    tables = (
        TableRequest("registered_cases", ("governorate", "sex"), name="g"),
        TableRequest("registered_cases", ("service", "sex"), name="s"),
        TableRequest("mhpss_share", ("region", "sex"), name="m"),
        TableRequest("displaced_share", ("governorate",), name="d"),
    )
    plain = publish(
        warehouse,
        tmp_path / "a",
        "2025",
        tables=tables,
        ledger=False,
        recoding=SETTINGS.disabled(),
    )
    kept = replace(SETTINGS, max_suppressed_share=0.0, goal="figures")
    result = publish(warehouse, tmp_path / "b", "2025", tables=tables, ledger=False, recoding=kept)
    assert result.ok
    figures = {t.name: t.cells - t.suppressed for t in plain.tables}
    for table in result.tables:
        if table.coarsened:
            assert table.cells - table.suppressed >= figures[table.name], table.name
    assert result.coarsened  # something was coarsened and kept: the rule was exercised


def test_the_report_draws_what_a_coarsened_publication_holds() -> None:
    """With recoding on by default, a publication's tables may come coarser than the report's
    figures expect: a figure whose breakdown was merged away is left out, a table whose sex was
    merged is drawn as one series of all children, and the methodology says what was coarsened."""
    from casepool.reporting.page import build_page
    from casepool.reporting.tables import table_from_rows

    def rows(indicator: str, dims: dict[str, list[str]]) -> list[dict[str, object]]:
        out: list[dict[str, object]] = [
            {"indicator": indicator, **{name: "_T" for name in dims}, "value": 40}
        ]
        for name, codes in dims.items():
            out += [{"indicator": indicator, name: c, "value": 10} for c in codes]
        return out

    time = table_from_rows(
        "cases_by_period_region",
        [
            {"indicator": "registered_cases", "period": p, "region": r, "value": 9}
            for p in ("2025-Q1", "2025-Q2")
            for r in ("KRI", "_T")
        ],
        ("period", "region"),
    )
    governorate = table_from_rows(
        "cases_by_governorate", rows("registered_cases", {"region": ["KRI"]}), ("region",)
    )
    governorate.coarsened = ("governorate → region",)
    services = table_from_rows(
        "services_by_sex", rows("registered_cases", {"service": ["mhpss", "legal"]}), ("service",)
    )
    services.coarsened = ("sex → total",)
    sex_age = table_from_rows(
        "cases_by_sex_age", rows("registered_cases", {"sex": ["F"]}), ("sex",)
    )
    sex_age.coarsened = ("age_band → total",)
    tables = {t.name: t for t in (time, governorate, services, sex_age)}
    page = build_page(tables, None, lang="en", generated=None)
    assert 'id="fig-time"' in page  # the time series stays (never merged over several periods)
    assert 'id="governorate"' not in page and 'id="map"' not in page
    assert 'id="sex-age"' not in page
    assert 'id="services"' in page
    assert "cases_by_governorate: governorate → region" in page
