"""`casepool synth` on the command line: writes the exports, agrees with the library, refuses bad options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from casepool.cli.main import app
from casepool.synthesis import synthesize

runner = CliRunner()


def test_cli_writes_exports_and_json_agrees_with_the_library(tmp_path: Path) -> None:
    args = ["--orgs", "3", "--records", "300", "--seed", "9", "--error-rate", "0.02"]
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "cli"), *args, "--json"])
    assert result.exit_code == 0, result.output
    reported = json.loads(result.stdout)
    library = synthesize(tmp_path / "lib", orgs=3, records=300, seed=9, error_rate=0.02).to_dict()
    reported.pop("out"), library.pop("out")
    assert reported == library
    assert (tmp_path / "cli" / "truth.json").read_bytes() == (
        tmp_path / "lib" / "truth.json"
    ).read_bytes()
    assert sum(e["rows"] for e in reported["exports"]) == 300


def test_cli_fast_format_writes_canonical_csv_only(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["synth", "--out", str(tmp_path), "--orgs", "2", "--records", "200", "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".csv", ".csv", ".json"]


def test_cli_refuses_a_bad_month_with_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["synth", "--out", str(tmp_path), "--start", "2024-13"])
    assert result.exit_code == 2
    assert "--start" in result.output
    assert not (tmp_path / "truth.json").exists()


def test_cli_refuses_an_unknown_format_and_a_huge_error_rate(tmp_path: Path) -> None:
    bad_format = runner.invoke(app, ["synth", "--out", str(tmp_path), "--format", "xls"])
    assert bad_format.exit_code == 2
    too_many = runner.invoke(app, ["synth", "--out", str(tmp_path), "--error-rate", "0.5"])
    assert too_many.exit_code == 2
    assert "error-rate" in too_many.output


def test_every_synth_message_exists_in_four_languages() -> None:
    import yaml

    from casepool.core.schema import LANGUAGES, schemas_dir

    messages = yaml.safe_load(
        (schemas_dir() / "messages" / "synth.yaml").read_text(encoding="utf-8")
    )
    source = (Path(__file__).resolve().parents[1] / "src" / "casepool").glob("**/*.py")
    used = {
        key for path in source for key in messages if f'"{key}"' in path.read_text(encoding="utf-8")
    }
    assert used == set(messages)
    for key, templates in messages.items():
        assert set(templates) == set(LANGUAGES), key


@pytest.mark.slow
def test_a_million_records_in_canonical_csv(tmp_path: Path) -> None:
    result = synthesize(tmp_path, orgs=6, records=1_000_000, seed=1, fmt="csv")
    truth = json.loads((tmp_path / "truth.json").read_text(encoding="utf-8"))
    assert sum(e["rows"] for e in truth["exports"]) == 1_000_000
    assert result.error_count == sum(e["error_count"] for e in truth["exports"])
    assert 0.11 < result.error_count / 1_000_000 < 0.14  # 13 kinds at 1% each, no consent spared
    assert all(e["identifiers"] is None for e in truth["exports"] if e["rows"] > 100_000)


@pytest.mark.slow
def test_mixed_format_refuses_a_workbook_beyond_excels_sheet_limit(tmp_path: Path) -> None:
    from casepool.core.errors import UsageError

    with pytest.raises(UsageError) as refused:
        synthesize(tmp_path, orgs=2, records=2_800_000, seed=1)
    assert refused.value.key == "synth-xlsx-too-large"
    assert not any(tmp_path.iterdir())


def test_a_period_before_2012_is_refused_so_no_clean_birth_date_falls_before_1990(
    tmp_path: Path,
) -> None:
    result = runner.invoke(app, ["synth", "--out", str(tmp_path), "--start", "2005-01"])
    assert result.exit_code == 2
    assert "2012" in result.output or "synth-bad-period" in result.output
