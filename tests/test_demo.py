"""`casepool demo` runs the whole path on synthetic data and every accepted record arrives once."""

from __future__ import annotations

from datetime import date

import polars as pl

from casepool.cli.main import app
from casepool.intake.validating import validate_export


def test_demo_carries_every_valid_consenting_record_into_the_warehouse(demo_run):
    # conftest's session demo: run_demo(orgs=3, records=400, seed=7), once for every test.
    result, stages = demo_run.result, list(demo_run.stages)
    assert stages[:4] == ["synth", "validate", "submit", "ingest"]
    assert result.exports == 3 and result.records == 400
    assert len(result.packages) == 9 and result.refused_submissions == 0  # 3 orgs x 3 years
    expected = 0
    for export in sorted((demo_run.folder / "exports").iterdir()):
        if export.suffix not in {".csv", ".xlsx", ".parquet"}:
            continue
        mapping = export.with_name(export.stem + ".mapping.yaml")
        checked = validate_export(export, mapping if mapping.exists() else None)
        good = checked.records.filter(
            ~pl.col("_row").is_in(list(checked.invalid_rows))
            & (pl.col("consent_statistics") == "yes")
            & pl.col("report_date").is_between(date(2023, 1, 1), date(2025, 12, 31))
        )
        expected += good.height
    assert result.cases_in_warehouse == expected > 0


def test_demo_refuses_to_empty_a_folder_it_did_not_make(runner, tmp_path):
    (tmp_path / "precious.txt").write_text("keep me", encoding="utf-8")
    result = runner.invoke(
        app, ["demo", "--workdir", str(tmp_path), "--records", "50", "--orgs", "1"]
    )
    assert result.exit_code == 2
    assert (tmp_path / "precious.txt").read_text(encoding="utf-8") == "keep me"
