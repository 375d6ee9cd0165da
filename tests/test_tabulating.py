"""Laws of tabulation on random records: margins add up, each child counts once, organisations'
own counts add up to the nationwide cells, and a cell's key depends only on its records."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casepool.catalogue.indicators import TOTAL, TableRequest
from casepool.catalogue.tabulating import CELL_KEY, VALUE, tabulate
from casepool.warehouse.store import open_warehouse

ORGS = ["ORG-A", "ORG-B", "ORG-C"]
AGE_BANDS = ["Y0T4", "Y5T9", "Y10T14", "Y15T17", "Y0T9"]
FORMS = ["prostitution", "online", "travel_tourism", "trafficking", "child_marriage", "other"]

records = st.lists(
    st.fixed_dictionaries(
        {
            "org": st.sampled_from(ORGS),
            "survivor_sex": st.sampled_from(["F", "M", "U"]),
            "age_band": st.sampled_from(AGE_BANDS),
            "population_group": st.sampled_from([None, "refugee", "host_community", "unknown"]),
            "governorate": st.sampled_from(["IQG01", "IQG06", "IQG09", "IQG15"]),
            "report_date": st.sampled_from([date(2024, 5, 1), date(2025, 2, 1), date(2025, 11, 1)]),
            "exploitation_types": st.lists(st.sampled_from(FORMS), min_size=1, max_size=3),
            "reported_elsewhere": st.sampled_from([None, "yes", "no", "unknown"]),
            "referral_source": st.sampled_from([None, "cso", "family"]),
            "record_key": st.floats(min_value=0, max_value=1, exclude_max=True),
        }
    ),
    min_size=0,
    max_size=40,
)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("laws") / "warehouse.duckdb"
    with open_warehouse(path, create=True) as con:
        for org in ORGS:
            con.execute(
                "INSERT INTO submissions (submission_id, org, period, period_start, period_end, "
                "package, created_at, ingested_at, ingested_by, rows, manifest) VALUES "
                "(?, ?, '2025', DATE '2024-01-01', DATE '2025-12-31', 'p', now(), now(), 't', 0, '{}')",
                [f"sub-{org}", org],
            )
    return path


def load(path: Path, rows: list[dict]) -> None:
    frame = (
        pl.DataFrame(
            [
                {
                    **r,
                    "submission_id": f"sub-{r['org']}",
                    "period": "2025",
                    "pseudonym": f"{i:064x}",
                }
                for i, r in enumerate(rows)
            ],
            schema_overrides={
                "population_group": pl.String,
                "reported_elsewhere": pl.String,
                "referral_source": pl.String,
                "exploitation_types": pl.List(pl.String),
            },
        )
        if rows
        else None
    )
    with open_warehouse(path) as con:
        con.execute("DELETE FROM cases")
        if frame is not None:
            con.register("incoming", frame)
            con.execute("INSERT INTO cases BY NAME SELECT * FROM incoming")
            con.unregister("incoming")


def counted(rows: list[dict]) -> list[dict]:
    return [
        r for r in rows if not (r["reported_elsewhere"] == "yes" and r["referral_source"] == "cso")
    ]


def table(path: Path, *dims: str) -> pl.DataFrame:
    with open_warehouse(path, read_only=True) as con:
        tab = tabulate(
            con,
            TableRequest("registered_cases", dims),
            first=date(2024, 1, 1),
            last=date(2025, 12, 31),
        )
    own = tab.contributions.group_by(list(dims)).agg(pl.col(VALUE).sum().alias("own"))
    joined = tab.counts.join(own, on=list(dims), how="left").with_columns(
        pl.col("own").fill_null(0)
    )
    assert (joined.get_column("own") == joined.get_column(VALUE)).all(), (
        "organisations' counts add up"
    )
    return tab.counts


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=records)
def test_margins_add_up_and_each_child_counts_once(warehouse, rows):
    load(warehouse, rows)
    kept = counted(rows)
    cells = table(warehouse, "sex", "age_band", "exploitation_type")
    value = {
        (r["sex"], r["age_band"], r["exploitation_type"]): r[VALUE]
        for r in cells.iter_rows(named=True)
    }
    assert value[(TOTAL, TOTAL, TOTAL)] == len(kept)
    sexes, bands = ["F", "M", "U"], ["Y0T4", "Y5T9", "Y10T14", "Y15T17", "_U"]
    for form in [*FORMS, TOTAL]:
        for band in [*bands, TOTAL]:
            assert sum(value[(s, band, form)] for s in sexes) == value[(TOTAL, band, form)]
        for sex in [*sexes, TOTAL]:
            assert sum(value[(sex, b, form)] for b in bands) == value[(sex, TOTAL, form)]
    for sex in [*sexes, TOTAL]:
        for band in [*bands, TOTAL]:
            total = value[(sex, band, TOTAL)]
            assert all(value[(sex, band, f)] <= total for f in FORMS)
    forms = Counter(f for r in kept for f in set(r["exploitation_types"]))
    assert {f: value[(TOTAL, TOTAL, f)] for f in FORMS} == {f: forms.get(f, 0) for f in FORMS}


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=records)
def test_a_cell_s_key_depends_only_on_its_records(warehouse, rows):
    load(warehouse, rows)
    by_sex = table(warehouse, "sex")
    by_sex_region = table(warehouse, "sex", "region")
    by_form_sex = table(warehouse, "exploitation_type", "sex")
    keys = dict(by_sex.select("sex", CELL_KEY).iter_rows())
    margin = by_sex_region.filter(pl.col("region") == TOTAL)
    assert dict(margin.select("sex", CELL_KEY).iter_rows()) == keys
    margin = by_form_sex.filter(pl.col("exploitation_type") == TOTAL)
    assert dict(margin.select("sex", CELL_KEY).iter_rows()) == keys
    for sex in ["F", "M", "U"]:
        mine = [r["record_key"] for r in counted(rows) if r["survivor_sex"] == sex]
        expected = sum(int(k * 2**32) for k in mine) % 2**32 / 2**32
        assert keys[sex] == pytest.approx(expected, abs=1e-12)
