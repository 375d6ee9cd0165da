"""Each synthetic dialect looks like what CSOs send, carries its identifiers, and agrees with truth.json."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from casepool.core.normalising import fold
from casepool.core.schema import load_schema
from casepool.intake.mapping import load_mapping
from casepool.intake.matching import code_index, match_header
from casepool.synthesis import synthesize
from casepool.synthesis.dialects import DIALECTS, IDENTIFIER_HEADERS


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("dialects")
    synthesize(out, orgs=6, records=900, seed=5, error_rate=0.02)
    return out, json.loads((out / "truth.json").read_text(encoding="utf-8"))


def _export(truth: dict[str, Any], dialect: str) -> dict[str, Any]:
    return next(e for e in truth["exports"] if e["dialect"] == dialect)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_gives_byte_identical_output(tmp_path: Path) -> None:
    synthesize(tmp_path / "a", orgs=6, records=400, seed=3)
    synthesize(tmp_path / "b", orgs=6, records=400, seed=3)
    synthesize(tmp_path / "c", orgs=6, records=400, seed=4)
    first, second, other = (_digests(tmp_path / x) for x in "abc")
    assert len(first) == 6 + 5 + 1  # exports, mappings of the non-canonical ones, truth.json
    assert first == second
    assert first["truth.json"] != other["truth.json"]
    assert first["org02_amal_baghdad.xlsx"] != other["org02_amal_baghdad.xlsx"]


def test_every_dialect_is_present_with_a_mapping_unless_canonical(sample) -> None:
    folder, truth = sample
    dialects = {e["dialect"] for e in truth["exports"]}
    assert dialects == {
        "canonical_csv", "arabic_xlsx", "cp1256_csv", "kobo_csv", "sorani_csv", "english_xlsx"
    }  # fmt: skip
    for export in truth["exports"]:
        assert (folder / export["file"]).is_file()
        if export["dialect"] == "canonical_csv":
            assert export["mapping"] is None
        else:
            load_mapping(folder / export["mapping"])  # the lead's loader accepts it


def test_windows_1256_export_holds_arabic_that_is_not_utf8(sample) -> None:
    folder, truth = sample
    raw = (folder / _export(truth, "cp1256_csv")["file"]).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    text = raw.decode("cp1256")
    assert "\r\n" in text
    assert "رقم الملف" in text.splitlines()[0]  # an Arabic synonym as header
    assert not re.search("[ڕڤڵۆێە٠-٩]", text)  # no Sorani letters nor Arabic-Indic digits


def test_kobo_export_is_semicolon_quoted_crlf_with_group_paths_and_detail_columns(sample) -> None:
    folder, truth = sample
    raw = (folder / _export(truth, "kobo_csv")["file"]).read_text(encoding="utf-8")
    header = raw.split("\r\n")[0]
    cells = next(csv.reader(io.StringIO(header), delimiter=";"))
    assert header.startswith('"') and '";"' in header
    assert {"_id", "_uuid", "_submission_time", "_index"} <= set(cells)
    assert "survivor/sex" in cells and "incident/exploitation/online" in cells
    frame = pl.read_csv(io.StringIO(raw), separator=";", infer_schema=False)
    assert set(frame.get_column("incident/exploitation/online").unique()) <= {"0", "1"}
    assert frame.get_column("_uuid").str.contains(r"^[0-9a-f]{8}-[0-9a-f]{4}-4").all()


def test_sorani_export_writes_dates_and_ages_in_arabic_indic_digits(sample) -> None:
    folder, truth = sample
    raw = (folder / _export(truth, "sorani_csv")["file"]).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel's UTF-8 BOM
    frame = pl.read_csv(io.BytesIO(raw), infer_schema=False)
    schema = load_schema()
    registered = frame.get_column(schema.field("report_date").label("ckb"))
    assert registered.str.contains("^[٠-٩]{2}/[٠-٩]{2}/[٠-٩]{4}$").mean() > 0.95
    assert "نێر" in frame.get_column(schema.field("survivor_sex").label("ckb")).to_list()


def test_english_workbook_has_excel_serial_registration_dates(sample) -> None:
    folder, truth = sample
    frame = pl.read_excel(folder / _export(truth, "english_xlsx")["file"])
    serials = frame.get_column("Date of registration").cast(pl.String)
    assert serials.str.contains(r"^4\d{4}").mean() > 0.95  # 2023-2025 are serials 44927-46022


def test_identifier_headers_never_match_a_case_record_field() -> None:
    for headers in IDENTIFIER_HEADERS.values():
        for header in headers.values():
            assert match_header(header) is None, header


def test_mapping_overrides_are_words_the_code_lists_do_not_already_know() -> None:
    schema = load_schema()
    for dialect in DIALECTS.values():
        for name, table in dialect.value_overrides.items():
            index = code_index(schema.codelist_of(schema.field(name)))
            for text in table.values():
                assert fold(text) not in index, (dialect.name, text)


def test_truth_lists_every_identifier_written_and_they_are_in_the_file(sample) -> None:
    folder, truth = sample
    for export in truth["exports"]:
        if export["file"].endswith(".xlsx"):
            frame = pl.read_excel(folder / export["file"], infer_schema_length=0)
        else:
            encoding = "cp1256" if export["encoding"] == "cp1256" else "utf-8-sig"
            text = (folder / export["file"]).read_bytes().decode(encoding)
            separator = ";" if export["dialect"] == "kobo_csv" else ","
            frame = pl.read_csv(io.StringIO(text), separator=separator, infer_schema=False)
        ids = export["identifiers"]
        for kind in ("survivor_name", "caregiver_name", "caregiver_phone", "address", "notes"):
            column = frame.get_column(export["identifier_columns"][kind]).drop_nulls()
            written = set(column.to_list()) - {""}  # KoboToolbox writes "" for empty
            assert written == set(ids[kind]), (export["file"], kind)
            assert len(ids[kind]) > 0
        # Notes that mention someone hold a listed name or phone number.
        notes = frame.get_column(export["identifier_columns"]["notes"]).to_list()
        mentioned = set(ids["mentioned_names"]) | set(ids["mentioned_phones"])
        for row in export["notes_mentioning_identifiers"]:
            assert any(value in notes[row - 2] for value in mentioned)


def test_phones_are_iraqi_mobiles_and_only_xlsx_has_a_leading_plus(sample) -> None:
    _, truth = sample
    pattern = re.compile(r"^(07[5789]\d ?\d{3} ?\d{4}|(\+|00)964 7[5789]\d \d{3} \d{4})$")
    digits = str.maketrans("٠١٢٣٤٥٦٧٨٩", "0123456789")
    for export in truth["exports"]:
        phones = export["identifiers"]["caregiver_phone"]
        assert all(pattern.match(p.translate(digits)) for p in phones), export["file"]
        plus = any(p.startswith("+") for p in phones)
        assert plus == export["file"].endswith(".xlsx")


def test_no_csv_cell_starts_like_a_formula(sample) -> None:
    folder, truth = sample
    for export in truth["exports"]:
        if not export["file"].endswith(".csv"):
            continue
        encoding = "cp1256" if export["encoding"] == "cp1256" else "utf-8-sig"
        text = (folder / export["file"]).read_bytes().decode(encoding)
        separator = ";" if export["dialect"] == "kobo_csv" else ","
        for row in csv.reader(io.StringIO(text), delimiter=separator):
            for cell in row:
                risky = cell[:1] in {"=", "+", "@", "\t", "\r"}
                negative_text = cell.startswith("-") and not re.fullmatch(r"-\d+", cell)
                assert not (risky or negative_text), (export["file"], "a formula-like cell")


def test_rows_without_consent_are_listed_and_carry_no_error(sample) -> None:
    _, truth = sample
    total = sum(len(e["no_consent_rows"]) for e in truth["exports"])
    assert total > 10
    for export in truth["exports"]:
        error_rows = {e["row"] for e in export["errors"]}
        assert not error_rows & set(export["no_consent_rows"])
        assert len(error_rows) == len(export["errors"])  # one error per row at most
        assert all(2 <= r <= export["rows"] + 1 for r in error_rows)
