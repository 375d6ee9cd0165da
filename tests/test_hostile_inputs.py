"""Hostile and broken inputs: one clear line, the right exit code, no traceback, nothing written."""

from __future__ import annotations

import contextlib

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casepool.cli.main import app
from casepool.core.errors import UnreadableFileError
from casepool.core.reading import read_export
from casepool.intake.validating import validate_export

CANNOT_READ = [
    "empty.csv",
    "whitespace_only.csv",
    "header_only.csv",
    "binary_garbage.csv",
    "png_renamed.csv",
    "ragged_rows.csv",
    "unbalanced_quotes.csv",
    "duplicate_headers.csv",
    "nul_bytes.csv",
    "mixed_encodings.csv",
    "pdf_renamed.xlsx",
    "truncated.xlsx",
]
READ_BUT_INVALID = [
    "bom_in_the_middle.csv",
    "excel_error_values.csv",
    "every_cell_a_formula.csv",
    "formula_cells.xlsx",
]


@pytest.mark.parametrize("name", CANNOT_READ)
@pytest.mark.parametrize("lang", ["en", "ar"])
def test_unreadable_file_gives_one_line_exit_two_and_writes_nothing(
    runner, fixtures, tmp_path, name, lang
):
    report = tmp_path / "errors.csv"
    result = runner.invoke(
        app, ["validate", str(fixtures / "hostile" / name), "--lang", lang, "--report", str(report)]
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and name in lines[0]
    assert "Traceback" not in result.output
    assert not report.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind either


@pytest.mark.parametrize("name", READ_BUT_INVALID)
def test_readable_hostile_file_is_reported_not_crashed(runner, fixtures, name):
    result = runner.invoke(app, ["validate", str(fixtures / "hostile" / name)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "HYPERLINK" not in result.output and "#REF!" not in result.output


def test_formula_cells_never_reach_the_report_file_as_formulas(runner, fixtures, tmp_path):
    report = tmp_path / "errors.csv"
    runner.invoke(
        app,
        [
            "validate",
            str(fixtures / "hostile" / "every_cell_a_formula.csv"),
            "--report",
            str(report),
        ],
    )
    for line in report.read_text(encoding="utf-8-sig").splitlines():
        for cell in line.split(","):
            assert not cell.startswith(("=", "+", "@")), cell


def test_bom_in_the_middle_is_one_more_row(fixtures):
    result = validate_export(fixtures / "hostile" / "bom_in_the_middle.csv")
    assert result.rows == 2


def test_a_ten_megabyte_cell(tmp_path):
    path = tmp_path / "big_cell.csv"
    path.write_text(
        "case_id,consent_statistics,survivor_sex,survivor_age,governorate,report_date,exploitation_types,reported_to_police\n"
        "A,yes," + "M" * 10_000_000 + ",12,IQG09,2024-01-01,prostitution,no\n",
        encoding="utf-8",
    )
    assert validate_export(path).flatten() == [[2, "survivor_sex", "value-too-long"]]


def test_a_workbook_that_unpacks_too_large_is_refused(fixtures, monkeypatch):
    import casepool.core.reading

    monkeypatch.setattr(casepool.core.reading, "_MAX_UNPACKED_WORKBOOK", 1000)
    with pytest.raises(UnreadableFileError) as caught:
        read_export(fixtures / "hostile" / "formula_cells.xlsx")
    assert caught.value.params["reason"] == "workbook too large when unpacked"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    content=st.binary(max_size=600), suffix=st.sampled_from([".csv", ".txt", ".xlsx", ".parquet"])
)
def test_readers_never_crash_on_any_bytes(tmp_path, content, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(content)
    with contextlib.suppress(UnreadableFileError):
        read_export(path)


@pytest.mark.parametrize(
    "content",
    [b"*", b"*\n\n", b"^a$,x\n1,2\n\n", b"a,*\n,\n1,2\n", b"a,^.*$\n,\n3,4\n"],
    ids=["star", "star-blank", "regex-blank", "star-second", "regex-second"],
)
def test_headers_polars_reads_as_wildcards_are_plain_names(tmp_path, content):
    """A header "*" or "^…$" is a wildcard or a regex to pl.col: dropping blank lines must read
    the cells by position (hypothesis found `*` raising polars' SchemaError)."""
    path = tmp_path / "wild.csv"
    path.write_bytes(content)
    try:
        read = read_export(path)
    except UnreadableFileError as refused:
        assert refused.key == "file-no-rows"
        return
    assert read.frame.height == 1


HEADER = "case_id,consent_statistics,survivor_sex,survivor_age,governorate,report_date,exploitation_types,online_platforms,reported_to_police,date_of_birth,district,incident_date"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cells=st.lists(
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=',"\r\n\x00'),
            max_size=12,
        ),
        min_size=12,
        max_size=12,
    )
)
def test_validation_never_crashes_on_any_cell_text(tmp_path, cells):
    path = tmp_path / "cells.csv"
    path.write_text(HEADER + "\n" + ",".join(cells) + "\n", encoding="utf-8")
    try:
        result = validate_export(path)
    except UnreadableFileError:
        return
    assert result.rows == 1
    assert {f.row for f in result.findings} <= {2}


@pytest.mark.parametrize("suffix", [".parquet", ".xlsx"])
def test_wildcard_headers_in_parquet_and_workbooks_read_as_names(tmp_path, suffix):
    path = tmp_path / f"wild{suffix}"
    frame = pl.DataFrame({"*": ["a", None, " "], "^.*$": ["1", None, None]})
    if suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_excel(path)
    read = read_export(path).frame
    assert read.columns[:2] == ["*", "^.*$"]
    assert read.get_column("*").to_list()[0] == "a"
    # the workbook drops its two blank lines (empty, spaces); Parquet keeps its rows as they are
    assert read.height == (1 if suffix == ".xlsx" else 3)
