"""`casepool query`: one protected table with its margins, as the analyst asks for it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from casepool.catalogue.indicators import TOTAL
from casepool.cli.main import app
from casepool.core.errors import UsageError
from casepool.publishing.query import list_indicators, query
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
        ("registered_cases", ("exploitation_type", "sex"), ("period=2025",)),
        ("police_dismissed_share", ("violence_type", "sex"), ()),
        ("online_cases", ("online_platform",), ("sex=M",)),
    ],
)
def test_every_answer_is_an_estimate_with_its_margin_of_error(
    random_warehouse, indicator, by, where
):
    result = query(random_warehouse, indicator, by=by, where=where)
    frame = result.table.frame
    assert result.method == "dp"
    assert set(frame.get_column("obs_status")) == {"E"}
    assert frame.get_column("margin").null_count() == frame.get_column("value").null_count()
    assert (frame.get_column("margin").drop_nulls() > 0).all()
    if result.table.indicator.unit == "count":
        assert (frame.get_column("value") >= 0).all()


def test_the_output_always_includes_the_margins(hand_made):
    frame = query(hand_made, "registered_cases", by="region,sex").table.frame
    assert frame.height == 4 * 4  # KRI, federal, not stated, total x F, M, U, total
    assert frame.filter((pl.col("region") == TOTAL) & (pl.col("sex") == TOTAL)).height == 1
    # Margins are sums of their cells: whole, non-negative numbers that add up.
    inner = frame.filter((pl.col("region") != TOTAL) & (pl.col("sex") != TOTAL))
    total = frame.filter((pl.col("region") == TOTAL) & (pl.col("sex") == TOTAL))
    assert inner.get_column("value").sum() == total.get_column("value").item()
    for region in ("KRI", "federal"):
        part = frame.filter(pl.col("region") == region)
        assert part.filter(pl.col("sex") != TOTAL).get_column("value").sum() == (
            part.filter(pl.col("sex") == TOTAL).get_column("value").item()
        )


def test_cli_json_agrees_with_the_library(runner, hand_made):
    cli = runner.invoke(
        app, ["query", "boys_share", "-w", str(hand_made), "--by", "region", "--format", "json"]
    )
    assert cli.exit_code == 0, cli.output
    library = query(hand_made, "boys_share", by="region").to_dict()
    printed = json.loads(cli.stdout)
    # Each answer is its own release in the ledger; everything else is the same answer.
    assert printed.pop("release_id") != library.pop("release_id")
    assert printed == json.loads(json.dumps(library, default=str))


def test_cli_prints_a_table_with_labels_and_margins_of_error(runner, hand_made):
    cli = runner.invoke(app, ["query", "registered_cases", "-w", str(hand_made), "--by", "sex"])
    assert cli.exit_code == 0, cli.output
    assert "Female" in cli.stdout and "Total" in cli.stdout
    assert re.search(r"≈ \d+ \(± \d+\)", cli.stdout)
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
        assert "margin" in frame.columns


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
        (["query", "registered_cases", "--where", "period=2019"], "No case is registered"),
        (["query", "months_to_registration", "--by", "age_band"], "No measured table"),
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
    for method in ("round", "suppress", "cellkey"):
        with pytest.raises(UsageError):
            query(hand_made, "registered_cases", method=method)
