"""`casepool validate` and `casepool mapping init` as a data officer runs them."""

from __future__ import annotations

import json

import polars as pl
import pytest

from casepool.cli.main import app
from casepool.intake.validating import validate_export

IDENTIFIERS = [
    "Karwan Aziz",
    "0750 123 4567",
    "Noor Salim",
    "+964 770 111 2222",
    "Dilan Omer",
    "met through a game",
]


def test_valid_export_exits_zero(runner, fixtures):
    result = runner.invoke(app, ["validate", str(fixtures / "validate" / "canonical_valid.csv")])
    assert result.exit_code == 0, result.output
    assert "3 rows read (utf-8), 3 valid" in result.output


def test_invalid_records_exit_one_with_rows_and_rules(runner, fixtures):
    result = runner.invoke(app, ["validate", str(fixtures / "validate" / "one_error_each.csv")])
    assert result.exit_code == 1
    assert "Duplicate case ID (duplicate-case-id): 1" in result.output
    assert "row 12, case_id (Case ID): The same case ID appears in row 2 too" in result.output


@pytest.mark.parametrize(
    ("lang", "phrase"),
    [
        ("en", "rows read"),
        ("ar", "تمت قراءة"),
        ("ckb", "ڕیز خوێندرایەوە"),
        ("kmr", "rêz hatin xwendin"),
    ],
)
def test_report_speaks_four_languages(runner, fixtures, lang, phrase):
    result = runner.invoke(
        app, ["validate", str(fixtures / "validate" / "one_error_each.csv"), "--lang", lang]
    )
    assert result.exit_code == 1
    assert phrase in result.output


@pytest.mark.parametrize(
    ("lang", "phrase"),
    [("en", "does not exist"), ("ar", "غير موجود"), ("ckb", "بوونی نییە"), ("kmr", "tune ye")],
)
def test_unreadable_file_exits_two_with_one_line(runner, tmp_path, lang, phrase):
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.csv"), "--lang", lang])
    assert result.exit_code == 2
    assert phrase in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_json_output_equals_the_library_result(runner, fixtures):
    path = fixtures / "validate" / "one_error_each.csv"
    result = runner.invoke(app, ["validate", str(path), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == json.loads(
        json.dumps(validate_export(path).to_dict(), default=str)
    )


@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".json"])
def test_report_file_holds_every_error(runner, fixtures, tmp_path, suffix):
    out = tmp_path / f"errors{suffix}"
    result = runner.invoke(
        app, ["validate", str(fixtures / "validate" / "one_error_each.csv"), "--report", str(out)]
    )
    assert result.exit_code == 1
    if suffix == ".json":
        rows = json.loads(out.read_text(encoding="utf-8"))["errors"]
    elif suffix == ".csv":
        rows = pl.read_csv(out).to_dicts()
    else:
        rows = pl.read_excel(out).to_dicts()
    assert len(rows) == 15
    assert {r["type"] for r in rows} >= {"duplicate-case-id", "unknown-code", "date-order"}


def test_report_file_with_unsupported_extension_exits_two(runner, fixtures, tmp_path):
    result = runner.invoke(
        app,
        [
            "validate",
            str(fixtures / "validate" / "canonical_valid.csv"),
            "--report",
            str(tmp_path / "r.pdf"),
        ],
    )
    assert result.exit_code == 2


def test_identifier_values_are_never_echoed(runner, fixtures, tmp_path):
    path = fixtures / "validate" / "canonical_valid.csv"
    report = tmp_path / "r.json"
    outputs = [
        runner.invoke(app, ["validate", str(path), *extra]).output
        for extra in ([], ["--json"], ["--lang", "ar"], ["--report", str(report)])
    ]
    outputs.append(report.read_text(encoding="utf-8"))
    for text in outputs:
        for value in IDENTIFIERS:
            assert value not in text


def test_bad_cell_values_are_not_echoed_either(runner, tmp_path):
    # A phone number typed into the sex column must not come back in the report.
    path = tmp_path / "slip.csv"
    path.write_text(
        "case_id,consent_statistics,survivor_sex,survivor_age,governorate,report_date,exploitation_types,reported_to_police\n"
        "A,yes,07701234567,12,IQG09,2024-01-01,prostitution,no\n",
        encoding="utf-8",
    )
    for extra in ([], ["--json"]):
        result = runner.invoke(app, ["validate", str(path), *extra])
        assert result.exit_code == 1
        assert "07701234567" not in result.output


def test_unexpected_errors_show_no_traceback_without_debug(runner, fixtures, monkeypatch):
    import casepool.intake.validating

    def explode(*args, **kwargs):
        raise RuntimeError("secret cell value Karwan Aziz")

    monkeypatch.setattr(casepool.intake.validating, "validate_export", explode)
    result = runner.invoke(app, ["validate", str(fixtures / "validate" / "canonical_valid.csv")])
    assert result.exit_code == 2
    assert "RuntimeError" in result.output
    assert "Karwan" not in result.output and "Traceback" not in result.output


def test_mapping_init_writes_a_draft_and_says_what_it_missed(runner, fixtures, tmp_path):
    out = tmp_path / "mapping.yaml"
    result = runner.invoke(
        app,
        [
            "mapping",
            "init",
            str(fixtures / "validate" / "cp1256_arabic_headers.csv"),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "column not matched: اسم الناجي" in result.output
    assert out.read_text(encoding="utf-8").startswith("# casepool mapping")
    again = runner.invoke(
        app,
        [
            "mapping",
            "init",
            str(fixtures / "validate" / "cp1256_arabic_headers.csv"),
            "--out",
            str(out),
        ],
    )
    assert again.exit_code == 2  # never overwrites without --force
    validated = runner.invoke(
        app,
        [
            "validate",
            str(fixtures / "validate" / "cp1256_arabic_headers.csv"),
            "--mapping",
            str(out),
        ],
    )
    assert validated.exit_code == 0, validated.output


def test_an_old_xls_register_validates_with_its_excel_row_numbers(runner, fixtures):
    path = fixtures / "intake" / "legacy_case_register.xls"
    result = runner.invoke(app, ["validate", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["format"] == "xls" and report["valid"] and report["rows"] == 3
    assert report["notices"]["layout"]["header_row"] == 4
