"""Synthetic records have the documented shape: where, who, how, and the double registrations."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest

from casepool.core.schema import load_schema
from casepool.synthesis import synthesize
from casepool.synthesis.distributions import load_settings, weights


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, dict[str, Any]]:
    out = tmp_path_factory.mktemp("shape")
    synthesize(out, orgs=6, records=30_000, seed=8, error_rate=0.0, fmt="csv")
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    frames = [
        pl.read_csv(out / e["file"], infer_schema=False).with_columns(
            pl.lit(e["file"]).alias("file"), pl.int_range(2, e["rows"] + 2).alias("row")
        )
        for e in truth["exports"]
    ]
    return pl.concat(frames), truth


def share(frame: pl.DataFrame, condition: pl.Expr) -> float:
    return float(frame.select(condition.mean()).item())


def test_settings_name_only_codes_of_the_code_lists() -> None:
    settings, schema = load_settings(), load_schema()
    governorates = schema.codelists["governorate"].values
    assert weights(settings["governorate"], governorates, "governorate").sum() == pytest.approx(1)
    for org in settings["organisations"]:
        assert set(org["home"]) <= set(governorates)


def test_kri_and_ninewa_hold_most_cases_and_boys_are_many(records) -> None:
    frame, _ = records
    assert share(frame, pl.col("governorate").is_in(["IQG06", "IQG09", "IQG11", "IQG15"])) > 0.6
    assert 0.30 < share(frame, pl.col("survivor_sex") == "M") < 0.46
    ages = frame.get_column("survivor_age").drop_nulls().cast(pl.Int64)
    assert ages.min() >= 0 and ages.max() <= 17


def test_refugees_and_idps_are_over_represented_in_the_kri(records) -> None:
    frame, _ = records
    displaced = pl.col("population_group").is_in(["refugee", "idp_in_camp", "idp_out_of_camp"])
    kri = frame.filter(pl.col("governorate").is_in(["IQG06", "IQG09", "IQG11"]))
    federal = frame.filter(~pl.col("governorate").is_in(["IQG06", "IQG09", "IQG11"]))
    assert share(kri, displaced) > share(federal, displaced) + 0.2


def test_online_exploitation_grows_and_tiktok_rises(records) -> None:
    frame, _ = records
    year = pl.col("report_date").str.slice(0, 4)
    online = pl.col("exploitation_types").str.contains("online")
    first, last = frame.filter(year == "2023"), frame.filter(year == "2025")
    assert share(last, online) > share(first, online) + 0.1
    tiktok = pl.col("online_platforms").str.contains("tiktok")
    assert share(last.filter(online), tiktok) > share(first.filter(online), tiktok) + 0.1
    # Platforms are given exactly when the exploitation was online.
    assert frame.filter(online).get_column("online_platforms").null_count() == 0
    assert (
        frame.filter(~online).get_column("online_platforms").null_count()
        == frame.filter(~online).height
    )


def test_most_cases_never_reach_the_police(records) -> None:
    frame, _ = records
    assert share(frame, pl.col("reported_to_police") == "no") > 0.5


def test_cross_tabulations_are_sparse(records) -> None:
    frame, _ = records
    cells = frame.group_by("governorate", "survivor_sex", "survivor_age").len()
    possible = 18 * 3 * 18
    small = cells.filter(pl.col("len") < 5).height + (possible - cells.height)
    assert small / possible > 0.4  # many small and empty cells: what disclosure control faces


def test_double_registrations_are_the_same_child_in_two_exports(records) -> None:
    frame, truth = records
    pairs = truth["double_registrations"]
    assert len(pairs) > 0.02 * frame.height
    indexed = {(r["file"], r["row"]): r for r in frame.iter_rows(named=True)}
    for first, second in pairs[:200]:
        a, b = indexed[(first["file"], first["row"])], indexed[(second["file"], second["row"])]
        assert first["file"] != second["file"]
        assert a["reported_elsewhere"] == b["reported_elsewhere"] == "yes"
        assert a["case_id"] != b["case_id"]
        # Names may differ in script (Sorani or Latin spelling); the child's details do not.
        for field in ("survivor_sex", "survivor_age", "governorate", "incident_date"):
            assert a[field] == b[field], field


def test_rows_of_each_export_come_in_registration_order(records) -> None:
    frame, _ = records
    for _, export in frame.group_by("file"):
        dates = export.get_column("report_date")
        assert dates.is_sorted()
