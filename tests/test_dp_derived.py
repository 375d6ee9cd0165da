"""Derived dimensions in differential-privacy answers: a question by age group (or region, or any
`derived: group` dimension) is read from the measured table of its finer dimension. A group's
noisy answer is the sum of its categories' noisy answers and its variance the sum of theirs;
nothing new is measured and the budget does not move (post-processing)."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from casepool.catalogue.indicators import (
    TOTAL,
    IndicatorCatalogue,
    TableRequest,
    _parse_group,
    load_indicators,
)
from casepool.core.errors import UsageError
from casepool.protecting import dp
from casepool.protecting.dp_settings import DPSettings, Measurement
from casepool.publishing import derived, dp_answers
from casepool.publishing.query import query
from casepool.warehouse import budget
from casepool.warehouse.ledger import list_releases
from casepool.warehouse.store import open_warehouse
from fixtures.indicators.warehouses import build_hand_made

CONFIDENCE = 0.9
AGE_GROUPS = {"Y0T9": ("Y0T4", "Y5T9"), "Y10T17": ("Y10T14", "Y15T17"), "_U": ("_U",)}


def workload() -> DPSettings:
    return DPSettings(
        rho_per_quarter=1.0,
        workload_share=0.6,
        confidence=CONFIDENCE,
        delta=1e-6,
        measurements=(
            Measurement("registered_cases", (), 1),
            Measurement("registered_cases", ("governorate",), 1),
            Measurement("registered_cases", ("sex",), 1),
            Measurement("registered_cases", ("sex", "age_band"), 1),
            Measurement("registered_cases", ("population_group", "sex"), 1),
            Measurement("working_children_share", ("sex", "age_band"), 1),
        ),
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return build_hand_made(tmp_path_factory.mktemp("dp_derived") / "warehouse.duckdb")


@pytest.fixture
def warehouse(template, tmp_path) -> Path:
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(template, copy)
    return copy


def ledger_state(path: Path) -> tuple[dict[str, float], int]:
    """ρ spent per quarter and the number of measurement releases in the ledger."""
    with open_warehouse(path, read_only=True) as con:
        spent = {r["period"]: r["rho_spent"] for r in budget.budget_rows(con)}
        kinds = Counter(r.kind for r in list_releases(con))
    return spent, kinds["measurement"]


def cells(frame: pl.DataFrame, *dims: str) -> dict[tuple[str, ...], dict]:
    return {tuple(r[d] for d in dims): r for r in frame.iter_rows(named=True)}


def stored_answer(path: Path, request: TableRequest, catalogue: IndicatorCatalogue):
    """The answer's cells with their variances, read from the stored measurements only."""
    with open_warehouse(path, read_only=True) as con:
        quarters = dp_answers.data_quarters(con)
        return dp_answers.answer(con, request, quarters, workload(), catalogue).frame


def test_a_question_by_age_group_is_the_sum_of_its_bands_and_spends_nothing(warehouse):
    settings = workload()
    by_band = query(warehouse, "registered_cases", by="sex,age_band", settings=settings)
    assert by_band.spent > 0
    before = ledger_state(warehouse)
    by_group = query(warehouse, "registered_cases", by="sex,age_group", settings=settings)
    alone = query(warehouse, "registered_cases", by="age_group", settings=settings)
    # Post-processing: no ρ, no new measurement, in the budget or the ledger.
    assert by_group.spent == 0 and alone.spent == 0
    assert ledger_state(warehouse) == before
    assert by_group.measured == by_band.measured  # read from the same measured table
    bands = cells(by_band.table.frame, "sex", "age_band")
    groups = cells(by_group.table.frame, "sex", "age_group")
    assert {g for _, g in groups} == {*AGE_GROUPS, TOTAL}
    for sex in ("F", "M", "U", TOTAL):
        for group, members in AGE_GROUPS.items():
            assert groups[(sex, group)]["value"] == sum(bands[(sex, b)]["value"] for b in members)
            assert groups[(sex, group)]["obs_status"] == "E"
        # The margins the group table shares with the band table are the same figures.
        assert groups[(sex, TOTAL)]["value"] == bands[(sex, TOTAL)]["value"]
        assert groups[(sex, TOTAL)]["margin"] == bands[(sex, TOTAL)]["margin"]
    one_way = cells(alone.table.frame, "age_group")
    for group in AGE_GROUPS:
        assert one_way[(group,)]["value"] == groups[(TOTAL, group)]["value"]


def test_a_groups_variance_is_the_sum_of_its_bands_and_its_margin_follows(warehouse):
    query(warehouse, "registered_cases", by="sex,age_band", settings=workload())
    catalogue = load_indicators()
    bands = cells(
        stored_answer(warehouse, TableRequest("registered_cases", ("age_band",)), catalogue),
        "age_band",
    )
    groups = cells(
        stored_answer(warehouse, TableRequest("registered_cases", ("age_group",)), catalogue),
        "age_group",
    )
    shown = cells(
        query(warehouse, "registered_cases", by="age_group", settings=workload()).table.frame,
        "age_group",
    )
    for group, members in AGE_GROUPS.items():
        variance = sum(bands[(b,)][dp_answers.VARIANCE] for b in members)
        assert groups[(group,)][dp_answers.VARIANCE] == pytest.approx(variance)
        assert groups[(group,)]["value"] == sum(bands[(b,)]["value"] for b in members)
        assert shown[(group,)]["margin"] == dp.margin_of_variance(variance, CONFIDENCE)
    # Two bands summed: a wider interval than one band's, narrower than twice it.
    one, two = bands[("Y0T4",)][dp_answers.VARIANCE], groups[("Y0T9",)][dp_answers.VARIANCE]
    assert two == pytest.approx(2 * one)
    assert shown[("Y0T9",)]["margin"] > dp.margin_of_variance(one, CONFIDENCE)


def test_a_share_by_age_group_comes_from_the_summed_parts(warehouse):
    settings = workload()
    by_band = query(warehouse, "working_children_share", by="age_band", settings=settings)
    before = ledger_state(warehouse)
    by_group = query(warehouse, "working_children_share", by="age_group", settings=settings)
    assert by_group.spent == 0 and ledger_state(warehouse) == before
    bands = cells(by_band.table.frame, "age_band")
    for row in by_group.table.frame.iter_rows(named=True):
        if row["age_group"] == TOTAL:
            continue
        members = AGE_GROUPS[row["age_group"]]
        assert row["numerator"] == sum(bands[(b,)]["numerator"] for b in members)
        assert row["denominator"] == sum(bands[(b,)]["denominator"] for b in members)
        if row["value"] is not None:
            assert row["value"] == pytest.approx(
                100 * row["numerator"] / row["denominator"], abs=0.0501
            )
            assert row["margin"] > 0


def test_region_is_still_the_sum_of_its_governorates(warehouse):
    settings = workload()
    by_gov = query(warehouse, "registered_cases", by="governorate", settings=settings)
    before = ledger_state(warehouse)
    by_region = query(warehouse, "registered_cases", by="region", settings=settings)
    assert by_region.spent == 0 and ledger_state(warehouse) == before
    region_of = load_indicators().dimension("region").region_of
    govs = cells(by_gov.table.frame, "governorate")
    regions = cells(by_region.table.frame, "region")
    for region in ("KRI", "federal", "_U"):
        members = [g for g, r in region_of.items() if r == region]
        assert regions[(region,)]["value"] == sum(govs[(g,)]["value"] for g in members)
    assert regions[(TOTAL,)]["value"] == govs[(TOTAL,)]["value"]


def test_a_question_no_table_can_derive_is_still_refused(warehouse):
    # age group from a table by age band only: a workload without one refuses, nothing spent.
    settings = replace(
        workload(), measurements=(Measurement("registered_cases", ("governorate",), 1),)
    )
    with pytest.raises(UsageError, match="No measured table"):
        query(warehouse, "registered_cases", by="age_group", settings=settings)
    assert ledger_state(warehouse) == ({}, 0)


# --- any derived group, not only age_group ---------------------------------------------------------

LABELS = {"en": "x", "ar": "x", "ckb": "x", "kmr": "x"}
DISPLACEMENT = {
    "displaced": ("idp_in_camp", "idp_out_of_camp", "refugee"),
    "settled": ("host_community", "returnee", "stateless", "other"),
    "unknown": ("unknown",),
}


def with_displacement() -> IndicatorCatalogue:
    """The shipped catalogue with a `displacement` group of population groups (as a steward
    would declare it in indicators.yaml)."""
    catalogue = load_indicators()
    raw = {
        "derived": "group",
        "from": "population_group",
        "missing": "unknown",
        "codes": [{"code": c, "of": list(of), "labels": LABELS} for c, of in DISPLACEMENT.items()],
    }
    group = _parse_group(
        "displacement", raw, "dimensions.displacement", LABELS, catalogue.dimensions
    )
    return replace(catalogue, dimensions={**catalogue.dimensions, "displacement": group})


def test_the_derivation_rule_reads_any_group_like_region():
    catalogue = with_displacement()
    found = derived.sources(catalogue)
    assert found["region"][0] == "governorate"
    assert found["age_group"] == ("age_band", load_indicators().dimension("age_group").group_of)
    assert found["displacement"][0] == "population_group"
    assert found["displacement"][1]["refugee"] == "displaced"
    assert "sex" not in found and "age_band" not in found
    # covers: a dimension or its finer one; never the other way round
    assert derived.covers(("population_group", "sex"), {"displacement", "sex"}, catalogue)
    assert derived.covers(("governorate",), {"region"}, catalogue)
    assert derived.covers(("sex", "age_band"), {"age_group"}, catalogue)
    assert not derived.covers(("age_group",), {"age_band"}, catalogue)
    assert not derived.covers(("sex",), {"displacement"}, catalogue)
    # summed: the finer dimension is fixed through its group, the others are summed over
    assert derived.summed(("population_group", "sex"), {"displacement"}, catalogue) == {"sex"}
    assert derived.summed(("governorate", "sex"), {"sex"}, catalogue) == {"governorate"}
    frame = pl.DataFrame({"population_group": ["refugee", "returnee", "unknown"], "sex": "F"})
    out = derived.with_derived(frame, catalogue)
    assert out.get_column("displacement").to_list() == ["displaced", "settled", "unknown"]
    assert "region" not in out.columns and "age_group" not in out.columns
    kept = derived.with_derived(out.with_columns(pl.lit("x").alias("displacement")), catalogue)
    assert kept.get_column("displacement").to_list() == ["x"] * 3  # measured itself: kept


def test_a_group_of_another_field_is_answered_like_age_group(warehouse):
    """End to end through `dp_answers.answer`: a declared group of population groups is the sum
    of the groups' noisy answers with their variances summed, from the stored measurement."""
    query(warehouse, "registered_cases", by="population_group,sex", settings=workload())
    before = ledger_state(warehouse)
    catalogue = with_displacement()
    fine = cells(
        stored_answer(
            warehouse, TableRequest("registered_cases", ("population_group",)), catalogue
        ),
        "population_group",
    )
    coarse = cells(
        stored_answer(
            warehouse, TableRequest("registered_cases", ("displacement", "sex")), catalogue
        ),
        "displacement",
        "sex",
    )
    for group, members in DISPLACEMENT.items():
        cell = coarse[(group, TOTAL)]
        assert cell["value"] == sum(fine[(m,)]["value"] for m in members)
        assert cell[dp_answers.VARIANCE] == pytest.approx(
            sum(fine[(m,)][dp_answers.VARIANCE] for m in members)
        )
    assert ledger_state(warehouse) == before


def test_the_service_reads_a_group_from_memory_as_the_warehouse_does(warehouse):
    """`casepool serve` answers from every measurement read once (StoredMeasurements): the same
    cells, values and variances as answering from the warehouse."""
    query(warehouse, "registered_cases", by="sex,age_band", settings=workload())
    catalogue = load_indicators()
    request = TableRequest("registered_cases", ("age_group", "sex"))
    with open_warehouse(warehouse, read_only=True) as con:
        quarters = dp_answers.data_quarters(con)
        memory = dp_answers.StoredMeasurements.read(con)
    served = dp_answers.answer(None, request, quarters, workload(), catalogue, memory).frame
    direct = stored_answer(warehouse, request, catalogue)
    key = ["age_group", "sex"]
    assert served.sort(key).equals(direct.sort(key))
    assert served.filter(pl.col("age_group") == "Y0T9").height == 4  # F, M, U, total


def test_a_filter_on_a_dimension_one_lies_inside_keeps_only_the_categories_inside(warehouse):
    """--by governorate --where region=KRI listed every governorate and stopped on "a cell was
    not answered"; now it shows KRI's governorates, and a filter on age bands keeps the age
    groups that hold them, each cell the one the unfiltered question gives."""
    settings = workload()
    region_of = load_indicators().dimension("region").region_of
    by_gov = cells(
        query(warehouse, "registered_cases", by="governorate", settings=settings).table.frame,
        "governorate",
    )
    kri = cells(
        query(
            warehouse, "registered_cases", by="governorate", where=["region=KRI"], settings=settings
        ).table.frame,
        "governorate",
    )
    inside = sorted(g for g, r in region_of.items() if r == "KRI")
    assert sorted(g for (g,) in kri if g != TOTAL) == inside
    for g in inside:
        assert kri[(g,)]["value"] == by_gov[(g,)]["value"]
    assert kri[(TOTAL,)]["value"] == sum(by_gov[(g,)]["value"] for g in inside)
    by_band = cells(
        query(warehouse, "registered_cases", by="sex,age_band", settings=settings).table.frame,
        "sex",
        "age_band",
    )
    picked = query(
        warehouse,
        "registered_cases",
        by="age_group,sex",
        where=["age_band=Y0T4,Y15T17"],
        settings=settings,
    )
    groups = cells(picked.table.frame, "age_group", "sex")
    assert {g for g, _ in groups} == {"Y0T9", "Y10T17", TOTAL}
    for sex in ("F", "M", "U", TOTAL):
        assert groups[("Y0T9", sex)]["value"] == by_band[(sex, "Y0T4")]["value"]
        assert groups[("Y10T17", sex)]["value"] == by_band[(sex, "Y15T17")]["value"]
    assert picked.spent == 0


def test_categories_inside_a_filter_follow_any_hierarchy():
    catalogue = with_displacement()
    up = derived.lies_in(catalogue, "population_group", "displacement")
    assert up is not None and up["refugee"] == "displaced" and up["unknown"] == "unknown"
    assert derived.lies_in(catalogue, "displacement", "population_group") is None
    assert derived.lies_in(catalogue, "sex", "age_group") is None
    where = [("displacement", ("displaced",)), ("period", ("2025",))]
    kept = [
        c
        for c in catalogue.dimension("population_group").code_values
        if derived.within(catalogue, "population_group", c, where)
    ]
    assert set(kept) == set(DISPLACEMENT["displaced"])
    assert derived.within(catalogue, "displacement", "settled", [("population_group", ("other",))])
    assert not derived.within(
        catalogue, "displacement", "displaced", [("population_group", ("other",))]
    )
    assert derived.within(catalogue, "sex", "F", where)  # not related: kept


# --- rates by a group of a population column -------------------------------------------------------


def test_the_children_of_an_age_group_are_the_children_of_its_bands(tmp_path):
    from casepool.catalogue.population import load_synthetic_population, read_population

    with open_warehouse(build_hand_made(tmp_path / "w.duckdb")) as con:
        assert load_synthetic_population(con).ok
        population = read_population(con)
    assert population is not None
    regions = dict(load_indicators().dimension("region").region_of)
    for sex in ("F", "M", TOTAL):
        for group, members in AGE_GROUPS.items():
            cell = {"sex": sex, "age_group": group, "governorate": "IQG01"}
            band = [population.children({**cell, "age_band": b}, regions) for b in members]
            del cell["age_group"]
            found = population.children({**cell, "age_group": group}, regions)
            if group == "_U":  # not stated: the population has no such children
                assert found is None and band == [None]
            else:
                assert found == sum(b or 0 for b in band) > 0
    assert population.children({"age_group": "Y10T17", "region": "KRI"}, regions) == sum(
        population.children({"age_band": b, "region": "KRI"}, regions) for b in ("Y10T14", "Y15T17")
    )
    assert "age_group" in load_indicators().indicator("registered_cases_rate").dimensions


def test_a_rate_by_age_group_divides_the_groups_count_by_its_children(warehouse):
    from casepool.catalogue.population import load_synthetic_population, read_population

    with open_warehouse(warehouse) as con:
        assert load_synthetic_population(con).ok
        population = read_population(con)
    assert population is not None
    settings = workload()
    counts = cells(
        query(warehouse, "registered_cases", by="age_group", settings=settings).table.frame,
        "age_group",
    )
    before = ledger_state(warehouse)
    rates = query(warehouse, "registered_cases_rate", by="age_group", settings=settings)
    assert rates.spent == 0 and ledger_state(warehouse) == before
    for row in rates.table.frame.iter_rows(named=True):
        code = row["age_group"]
        assert row["numerator"] == counts[(code,)]["value"]
        if code == "_U":
            assert row["value"] is None and row["obs_status"] == "M"
            continue
        children = population.children({"age_group": code}, {})
        assert row["denominator"] == children
        assert row["value"] == pytest.approx(100_000 * row["numerator"] / children, abs=0.05)
