"""Readers for what CSOs really export: encodings, separators, quoting, XLSX, Parquet, and refusals."""

from __future__ import annotations

import polars as pl
import pytest

from casepool.core.errors import UnreadableFileError
from casepool.core.reading import ROW, read_export


@pytest.mark.parametrize(
    ("name", "encoding", "separator", "rows"),
    [
        ("canonical_valid.csv", "utf-8", ",", 3),
        ("utf8_bom_semicolon.csv", "utf-8-sig", ";", 2),
        ("utf16_tab_separated.txt", "utf-16", "\t", 2),
        ("cp1256_arabic_headers.csv", "cp1256", ",", 3),
        ("kobo_semicolon_select_multiple.csv", "utf-8", ";", 3),
    ],
)
def test_csv_encodings_and_separators_are_detected(fixtures, name, encoding, separator, rows):
    export = read_export(fixtures / "validate" / name)
    assert (export.encoding, export.separator, export.rows) == (encoding, separator, rows)
    assert export.frame.get_column(ROW).to_list() == list(range(2, rows + 2))
    assert all(dtype == pl.String for c, dtype in export.frame.schema.items() if c != ROW)


def test_cp1256_arabic_headers_and_values_survive(fixtures):
    export = read_export(fixtures / "validate" / "cp1256_arabic_headers.csv")
    assert export.headers[0] == "رقم الحالة"
    assert export.frame.get_column("الجنس").to_list() == ["ذكر", "أنثى", "انثى"]


def test_encoding_override_is_used(fixtures):
    export = read_export(fixtures / "validate" / "cp1256_arabic_headers.csv", encoding="cp1256")
    assert export.encoding == "cp1256"
    with pytest.raises(UnreadableFileError) as caught:
        read_export(fixtures / "validate" / "cp1256_arabic_headers.csv", encoding="utf-8")
    assert caught.value.key == "file-undecodable"


def test_xlsx_first_sheet_keeps_text_and_dates(fixtures):
    export = read_export(fixtures / "validate" / "xlsx_excel_dates_arabic_labels.xlsx")
    assert export.format == "xlsx" and export.rows == 3
    assert export.frame.get_column("تاريخ التسجيل").to_list()[:2] == [
        "2024-03-15 00:00:00",
        "45366",
    ]


def test_xlsx_named_sheet_and_missing_sheet(fixtures):
    path = fixtures / "validate" / "xlsx_excel_dates_arabic_labels.xlsx"
    assert read_export(path, sheet="الحالات").rows == 3
    with pytest.raises(UnreadableFileError) as caught:
        read_export(path, sheet="nope")
    assert caught.value.key == "file-sheet-missing"


def test_parquet_is_read_as_text(tmp_path):
    path = tmp_path / "cases.parquet"
    pl.DataFrame({"case_id": ["P1"], "survivor_age": [12]}).write_parquet(path)
    export = read_export(path)
    assert export.format == "parquet"
    assert export.frame.get_column("survivor_age").to_list() == ["12"]


@pytest.mark.parametrize(
    ("content", "name", "key"),
    [
        (b"", "empty.csv", "file-empty"),
        (b"case_id,survivor_sex\n", "header_only.csv", "file-no-rows"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "picture.csv", "file-not-a-table"),
        (b"\x00\x01\x02\x03garbage\x00\xff" * 50, "garbage.csv", "file-not-a-table"),
        (b"a,b,a\n1,2,3\n", "dup_headers.csv", "file-duplicate-headers"),
        (b"a,b\n1,2\n", "table.docx", "file-unsupported"),
        (b"PK\x03\x04truncated", "truncated.xlsx", "file-not-a-table"),
    ],
)
def test_unreadable_files_are_refused_with_a_reason(tmp_path, content, name, key):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnreadableFileError) as caught:
        read_export(path)
    assert caught.value.key == key


def test_missing_file(tmp_path):
    with pytest.raises(UnreadableFileError) as caught:
        read_export(tmp_path / "nothing.csv")
    assert caught.value.key == "file-missing"


def test_unknown_encoding_name(fixtures):
    with pytest.raises(UnreadableFileError) as caught:
        read_export(fixtures / "validate" / "canonical_valid.csv", encoding="klingon")
    assert caught.value.key == "unknown-encoding"


# --- issue 16: real workbook layouts and broken CSVs, each named by the line or sheet -------------


def test_instruction_sheet_and_title_rows_are_skipped(fixtures):
    from casepool.intake.mapping import header_score

    export = read_export(
        fixtures / "intake" / "instructions_sheet_then_title_rows.xlsx", header_score=header_score
    )
    assert export.notes == {
        "sheet": "Cases",
        "other_sheets": ["Instructions"],
        "header_row": 4,
        "blank_rows": 1,
    }
    assert export.frame.get_column("_row").to_list() == [5, 6, 8]
    assert export.headers[:3] == ["Case number", "Consent", "Sex"]


def test_a_workbook_without_a_clear_data_sheet_lists_its_sheets(tmp_path):
    import xlsxwriter

    from casepool.intake.mapping import header_score

    path = tmp_path / "two_sheets_no_header.xlsx"
    workbook = xlsxwriter.Workbook(str(path))
    workbook.add_worksheet("Notes").write_row(0, 0, ["hello", "world"])
    workbook.add_worksheet("Other").write_row(0, 0, ["x", "y"])
    workbook.close()
    with pytest.raises(UnreadableFileError) as caught:
        read_export(path, header_score=header_score)
    assert caught.value.key == "file-sheet-unsure"
    assert "Notes, Other" in caught.value.message("en")


@pytest.mark.parametrize(
    ("text", "ragged", "rows"),
    [
        # short, long and long-and-short lines; counts that balance out are still caught
        ("case_id,survivor_sex,survivor_age\nC1,M,12\nC2,F\nC3,F,13\n", [(3, 3, 2)], [2, 4]),
        ("case_id,survivor_sex,survivor_age\nC1,M,12\nC2,F,13,x\n", [(3, 3, 4)], [2]),
        (
            "case_id,survivor_sex,survivor_age\nC1,M,12\nC2,F\nC3,F,1,x\nC4,M,9\n",
            [(3, 3, 2), (4, 4, 4)],
            [2, 5],
        ),
        # quoted file, CRLF, a blank line (it keeps its row number), a one-cell line
        (
            'case_id,survivor_sex,survivor_age\r\nC1,"M",12\r\n\r\nC2,F\r\nC3\r\nC4,F,1\r\n',
            [(4, 4, 2), (5, 5, 1)],
            [2, 6],
        ),
        # a multi-line quoted cell: the row number and the line it starts on differ
        ('case_id,notes,survivor_age\nC1,"a\nb",12\nC2,x\nC3,y,4\n', [(3, 4, 2)], [2, 4]),
    ],
)
def test_ragged_rows_are_listed_and_the_other_rows_read(tmp_path, text, ragged, rows):
    path = tmp_path / "ragged.csv"
    path.write_text(text, encoding="utf-8")
    export = read_export(path)
    assert [(r.row, r.line, r.found) for r in export.ragged] == ragged
    assert all(r.expected == 3 for r in export.ragged)
    kept = export.frame.filter(pl.col("case_id").is_not_null())
    assert kept.get_column(ROW).to_list() == rows


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ('case_id,survivor_sex,survivor_age\nC1,M,12\nC2,"F,13\nC3,F,13\n', "file-broken-quote", 3),
        # every record ragged: the header itself is wrong, so the file is refused as before
        ("case_id,survivor_sex,survivor_age,\nC1,M,12\nC2,F,13\n", "file-ragged-rows", 2),
    ],
)
def test_broken_quotes_and_wholly_ragged_files_name_their_line(tmp_path, text, key, line):
    path = tmp_path / "broken.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UnreadableFileError) as caught:
        read_export(path)
    assert caught.value.key == key
    assert f"line {line}" in caught.value.message("en")


def test_an_old_xls_workbook_is_asked_to_be_saved_as_xlsx(tmp_path):
    path = tmp_path / "old.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)
    with pytest.raises(UnreadableFileError) as caught:
        read_export(path)
    assert "save it as .xlsx" in caught.value.message("en")


def test_a_real_excel_97_2003_workbook_is_read(fixtures):
    """A BIFF8 .xls (made by xlwt, see make_legacy_xls.py): instructions sheet, title rows."""
    from casepool.intake.mapping import header_score

    path = fixtures / "intake" / "legacy_case_register.xls"
    export = read_export(path, header_score=header_score)
    assert export.format == "xls"
    assert export.notes["sheet"] == "Cases" and export.notes["other_sheets"] == ["Instructions"]
    # Row 1 is empty and calamine skips it: the DIMENSIONS record puts the header in row 4.
    assert export.notes["header_row"] == 4
    assert export.frame.get_column(ROW).to_list() == [5, 6, 7]
    assert export.frame.get_column("District").to_list() == ["Zakho", "Soran", "Halabja"]
    assert export.frame.get_column("Incident date").to_list()[0].startswith("2025-06-10")


def test_an_xls_sheet_starting_below_empty_rows_keeps_excel_row_numbers(fixtures):
    """Only rows 3 and 4 are used (header, one record): calamine starts at row 3."""
    export = read_export(fixtures / "intake" / "legacy_small_offset.xls")
    assert export.format == "xls"
    assert export.notes["header_row"] == 3
    assert export.frame.get_column(ROW).to_list() == [4]
