"""schemas/indicators.yaml loads, is checked against the case record, and compiles to safe SQL."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from casepool.catalogue.indicators import (
    TableRequest,
    _check_condition,
    _parse_indicator,
    base_sql,
    check_request,
    condition_sql,
    indicator_reference,
    load_indicators,
    parse_by,
    parse_where,
    period_codes,
    population_key,
)
from casepool.core.errors import SchemaError, UsageError
from casepool.core.schema import LANGUAGES, load_schema

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_indicator_reference_is_current():
    page = DOCS / "indicator-reference.md"
    assert page.read_text(encoding="utf-8") == indicator_reference(), (
        "docs/indicator-reference.md is stale: run make docs"
    )


def test_every_indicator_and_dimension_has_four_labels_and_compiles():
    catalogue = load_indicators()
    assert len(catalogue.indicators) >= 13
    con = duckdb.connect()
    con.execute("CREATE TABLE warehouse_info (key VARCHAR, value VARCHAR)")
    for ind in catalogue.indicators.values():
        assert all(ind.labels[lang] for lang in LANGUAGES), ind.name
        for d in ind.dimensions:
            assert all(catalogue.dimension(d).labels[lang] for lang in LANGUAGES)
        assert "active_cases" in base_sql(TableRequest(ind.name, ind.dimensions[:2]))


def test_the_issue_s_dimensions_exist_under_their_names():
    names = set(load_indicators().dimensions)
    assert {
        "period",
        "governorate",
        "region",
        "sex",
        "age_band",
        "population_group",
        "exploitation_type",
        "online_platform",
        "violence_type",
    } <= names


def test_region_comes_from_the_governorate_code_list():
    region = load_indicators().dimension("region")
    assert {g for g, r in region.region_of.items() if r == "KRI"} == {"IQG06", "IQG09", "IQG11"}
    assert region.code_values == ("KRI", "federal", "_U")  # _U: governorate not stated


def test_age_bands_match_what_submit_writes():
    from casepool.exchange.profile import standard_bands

    bands = load_indicators().dimension("age_band").code_values
    assert bands[:4] == tuple(code for _, _, code in standard_bands())
    assert load_indicators().dimension("age_band").missing == "_U"


def test_a_missing_value_never_satisfies_a_condition_nor_its_negation_makes_null():
    schema = load_schema()
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t (reported_elsewhere VARCHAR, referral_source VARCHAR, exploitation_types VARCHAR[])"
    )
    con.execute(
        "INSERT INTO t VALUES (NULL, NULL, NULL), ('yes', 'cso', ['online']), ('yes', NULL, [])"
    )
    rule = condition_sql(load_indicators().population, schema)
    kept = con.execute(f"SELECT {rule} FROM t").fetchall()
    assert kept == [(True,), (False,), (True,)]
    online = condition_sql({"exploitation_types": "online"}, schema)
    assert con.execute(f"SELECT {online} FROM t").fetchall() == [(False,), (True,), (False,)]


@pytest.mark.parametrize(
    "condition",
    [
        {"survivor_sex": "boy"},  # not a code
        {"no_such_field": "yes"},
        {"case_id": "x"},  # identifiers are never counted on
        {"all": []},
        {"recorded": "names"},
        "survivor_sex = 'M'; DROP TABLE cases",  # raw SQL is not a condition
    ],
)
def test_conditions_outside_the_schema_are_refused(condition):
    with pytest.raises(SchemaError):
        _check_condition(condition, load_schema(), "test")


def test_an_indicator_needs_a_known_unit_and_a_numerator_for_a_percent():
    catalogue = load_indicators()
    base = {"name": "x", "labels": {lang: "x" for lang in LANGUAGES}, "dimensions": ["sex"]}
    with pytest.raises(SchemaError):
        _parse_indicator({**base, "unit": "percent"}, catalogue.dimensions, load_schema())
    with pytest.raises(SchemaError):
        _parse_indicator({**base, "unit": "ratio"}, catalogue.dimensions, load_schema())
    ok = _parse_indicator({**base, "unit": "count"}, catalogue.dimensions, load_schema())
    assert ok.kind == "count"


@pytest.mark.parametrize(
    ("request_", "key"),
    [
        (TableRequest("registered_cases", ("colour",)), "dimension-unknown"),
        (TableRequest("nope"), "indicator-unknown"),
        (TableRequest("boys_share", ("sex",)), "dimension-not-allowed"),
        (TableRequest("registered_cases", ("sex", "sex")), "dimension-repeated"),
        (TableRequest("registered_cases", ("region", "governorate")), "dimension-nested"),
        (
            TableRequest("registered_cases", ("sex", "age_band", "region", "service", "period")),
            "dimensions-too-many",
        ),
        (TableRequest("registered_cases", where=(("sex", ("boy",)),)), "filter-code-unknown"),
        (TableRequest("registered_cases", where=(("period", ("2025-13",)),)), "period-invalid"),
    ],
)
def test_requests_the_indicator_does_not_allow_are_refused(request_, key):
    with pytest.raises(UsageError) as caught:
        check_request(request_)
    assert caught.value.key == key


def test_options_parse():
    assert parse_by("governorate, sex") == ("governorate", "sex")
    assert parse_where(["sex=M", "period=2024,2025"]) == (
        ("sex", ("M",)),
        ("period", ("2024", "2025")),
    )
    with pytest.raises(UsageError):
        parse_where(["sex"])


def test_period_codes_span_every_year_or_quarter():
    from datetime import date

    assert period_codes(date(2024, 11, 1), date(2025, 4, 1), "quarter") == [
        "2024-Q4",
        "2025-Q1",
        "2025-Q2",
    ]
    assert period_codes(date(2024, 11, 1), date(2025, 4, 1), "year") == ["2024", "2025"]


def test_shares_over_all_cases_link_to_the_count_of_cases():
    catalogue = load_indicators()
    assert population_key(catalogue.indicator("boys_share"), catalogue) == "registered_cases"
    assert (
        population_key(catalogue.indicator("police_dismissed_share"), catalogue)
        == "police_reported_cases"
    )
    assert (
        population_key(catalogue.indicator("working_children_share"), catalogue)
        == "working_children_share"
    )
