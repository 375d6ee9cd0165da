"""`casepool query`: one protected table with its margins, as the analyst asks for it."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from casepool import protecting
from casepool.catalogue.indicators import TOTAL, TableRequest, load_indicators, parse_where
from casepool.cli.main import app
from casepool.core.errors import UsageError
from casepool.publishing.query import list_indicators, query
from fixtures.indicators.views import attacker_view, own_counts
from fixtures.indicators.warehouses import build_hand_made, build_random


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory) -> Path:
    return build_hand_made(tmp_path_factory.mktemp("hand") / "warehouse.duckdb")


@pytest.fixture(scope="module")
def random_warehouse(tmp_path_factory) -> Path:
    return build_random(tmp_path_factory.mktemp("random") / "warehouse.duckdb", 1200, orgs=3)


@pytest.mark.parametrize(
    ("indicator", "by", "where"),
    [
        ("registered_cases", ("governorate", "sex"), ()),
        ("registered_cases", ("exploitation_type", "age_band"), ("period=2025",)),
        ("police_dismissed_share", ("violence_type", "sex"), ()),
        ("online_cases", ("online_platform",), ("sex=M",)),
        ("months_to_registration", ("region", "sex"), ()),
    ],
)
def test_every_query_passes_the_audit_for_outsider_and_each_insider(
    random_warehouse, indicator, by, where
):
    result = query(random_warehouse, indicator, by=by, where=where)
    table = result.table
    view = attacker_view(table.frame, table.indicator.unit, list(by))
    request = TableRequest(indicator, by, parse_where(where))
    insiders = own_counts(random_warehouse, request)
    multi = [d for d in by if load_indicators().dimension(d).multi]
    report = protecting.audit(view, k=5, multi_valued=multi, insiders=insiders)
    assert report.protected, [v.to_dict() for v in report.failures][:3]
    assert len(insiders) == 3
    counts = view.get_column("value").cast(pl.Int64).drop_nulls()
    assert not ((counts > 0) & (counts < 5)).any()


def test_the_output_always_includes_the_margins(hand_made):
    frame = query(hand_made, "registered_cases", by="region,sex").table.frame
    assert frame.height == 4 * 4  # KRI, federal, not stated, total x F, M, U, total
    assert frame.filter((pl.col("region") == TOTAL) & (pl.col("sex") == TOTAL)).height == 1
    # Eight children: every small cell is hidden, flagged C, and the margins are protected too.
    assert frame.filter(pl.col("value").is_between(1, 4)).height == 0
    kri_boys = frame.filter((pl.col("region") == "KRI") & (pl.col("sex") == "M"))
    assert kri_boys.select("value", "obs_status", "conf_status").row(0) == (None, "Q", "C")
    margins = frame.filter((pl.col("region") == TOTAL) | (pl.col("sex") == TOTAL))
    assert margins.height == 4 + 4 - 1


def test_cli_json_agrees_with_the_library(runner, hand_made):
    cli = runner.invoke(
        app, ["query", "boys_share", "-w", str(hand_made), "--by", "region", "--format", "json"]
    )
    assert cli.exit_code == 0, cli.output
    library = query(hand_made, "boys_share", by="region").to_dict()
    assert json.loads(cli.stdout) == json.loads(json.dumps(library, default=str))


def test_cli_prints_a_table_with_labels_and_hidden_cells(runner, hand_made):
    cli = runner.invoke(app, ["query", "registered_cases", "-w", str(hand_made), "--by", "sex"])
    assert cli.exit_code == 0, cli.output
    assert "Female" in cli.stdout and "Total" in cli.stdout
    assert " x " in cli.stdout or "x  C" in cli.stdout  # suppressed cells
    arabic = runner.invoke(
        app, ["query", "registered_cases", "-w", str(hand_made), "--by", "sex", "--lang", "ar"]
    )
    assert "أنثى" in arabic.stdout


@pytest.mark.parametrize("fmt", ["csv", "hxl", "sdmx", "json", "xlsx"])
def test_cli_writes_every_format(runner, hand_made, tmp_path, fmt):
    out = tmp_path / f"table.{fmt}"
    cli = runner.invoke(
        app,
        [
            "query",
            "registered_cases",
            "-w",
            str(hand_made),
            "--by",
            "sex",
            "--format",
            fmt,
            "--out",
            str(out),
        ],
    )
    assert cli.exit_code == 0, cli.output
    assert out.stat().st_size > 0
    if fmt == "csv":
        frame = pl.read_csv(out, infer_schema=False)
        assert frame.get_column("sex").to_list() == ["F", "M", "U", TOTAL]


def test_list_shows_indicators_and_dimensions_in_the_chosen_language(runner):
    cli = runner.invoke(app, ["query", "--list", "--lang", "ckb"])
    assert cli.exit_code == 0, cli.output
    assert "registered_cases" in cli.stdout and "ڕەگەز" in cli.stdout
    listing = list_indicators("en")
    boys = next(i for i in listing if i["indicator"] == "boys_share")
    assert "sex" not in [d["name"] for d in boys["dimensions"]]


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["query", "nope"], "There is no indicator nope"),
        (["query", "boys_share", "--by", "sex"], "cannot be broken down by sex"),
        (["query", "registered_cases", "--where", "sex=boy"], "has no category boy"),
        (["query", "registered_cases", "--by", "region,governorate"], "lies inside region"),
        (["query", "registered_cases", "--format", "xlsx"], "--out"),
    ],
)
def test_refusals_are_one_line_with_exit_two(runner, hand_made, args, phrase):
    cli = runner.invoke(app, [*args, "-w", str(hand_made)])
    assert cli.exit_code == 2
    assert phrase in cli.output
    assert "Traceback" not in cli.output


def test_a_missing_warehouse_is_refused_without_creating_one(runner, tmp_path):
    cli = runner.invoke(app, ["query", "registered_cases", "-w", str(tmp_path / "none.duckdb")])
    assert cli.exit_code == 2
    assert not (tmp_path / "none.duckdb").exists()


def test_an_unknown_method_is_a_usage_error(hand_made):
    with pytest.raises(UsageError):
        query(hand_made, "registered_cases", method="round")


def test_the_same_cell_under_cellkey_has_the_same_value_in_every_query(random_warehouse):
    by_sex = query(random_warehouse, "registered_cases", by="sex", method="cellkey").table.frame
    by_sex_region = query(
        random_warehouse, "registered_cases", by="region,sex", method="cellkey"
    ).table.frame
    by_form_sex = query(
        random_warehouse, "registered_cases", by="exploitation_type,sex", method="cellkey"
    ).table.frame
    want = dict(by_sex.select("sex", "value").iter_rows())
    for frame, margin in ((by_sex_region, "region"), (by_form_sex, "exploitation_type")):
        got = frame.filter(pl.col(margin) == TOTAL).select("sex", "value").iter_rows()
        assert dict(got) == want
    # The noise is bounded by the maximum deviation D.
    exact = query(random_warehouse, "registered_cases", by="region,sex").table.frame
    moved = by_sex_region.join(exact, on=["region", "sex"], suffix="_exact").filter(
        pl.col("value_exact").is_not_null()
    )
    deviation = (moved.get_column("value") - moved.get_column("value_exact")).abs()
    assert deviation.max() <= protecting.load_protection_settings().cell_key.max_deviation


def test_cellkey_percentages_come_from_perturbed_counts(random_warehouse):
    frame = query(random_warehouse, "boys_share", by="region", method="cellkey").table.frame
    shown = frame.filter(pl.col("value").is_not_null())
    assert shown.height > 0
    for row in shown.iter_rows(named=True):
        assert row["value"] == pytest.approx(100 * row["numerator"] / row["denominator"], abs=0.05)
