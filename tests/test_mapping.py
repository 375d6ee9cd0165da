"""Mapping files: loading, refusing bad ones, and drafting one from an export."""

from __future__ import annotations

import pytest
import yaml

from casepool.core.errors import MappingError
from casepool.core.reading import read_export
from casepool.intake.mapping import load_mapping
from casepool.intake.mapping_draft import draft_mapping


def test_kobo_mapping_loads(fixtures):
    mapping = load_mapping(fixtures / "validate" / "kobo_mapping.yaml")
    assert mapping.columns["case/case_number"] == "case_id"
    assert mapping.columns["survivor/name"] is None
    assert mapping.detail_columns["incident/exploitation/online"].code == "online"
    assert mapping.values["survivor_sex"] == {"male": "M", "female": "F"}


@pytest.mark.parametrize(
    "document",
    [
        "columns: {a: no_such_field}",
        "detail_columns: {x/y: {field: exploitation_types, code: nope}}",
        "values: {survivor_sex: {boy: Q}}",
        "values: {survivor_age: {ten: 10}}",
        "date_order: ymd",
        "mapping_version: 7",
        "- just\n- a list",
        "columns: [unclosed",
    ],
)
def test_bad_mappings_are_refused(tmp_path, document):
    path = tmp_path / "m.yaml"
    path.write_text(document, encoding="utf-8")
    with pytest.raises(MappingError):
        load_mapping(path)


def test_draft_matches_arabic_headers_and_lists_what_it_could_not(fixtures):
    text, summary = draft_mapping(read_export(fixtures / "validate" / "cp1256_arabic_headers.csv"))
    draft = yaml.safe_load(text)
    assert draft["columns"]["رقم الحالة"] == "case_id"
    assert draft["columns"]["الجنس"] == "survivor_sex"
    assert draft["columns"]["اسم الناجي"] is None
    assert summary["unmatched_columns"] == ["اسم الناجي", "رقم الهاتف"]
    assert summary["missing_required"] == []


def test_draft_marks_unknown_values_todo(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("case_id,sex,age\n1,boy,3\n2,kiddo,4\n", encoding="utf-8")
    text, summary = draft_mapping(read_export(path))
    draft = yaml.safe_load(text)
    assert draft["values"] == {"survivor_sex": {"kiddo": "TODO"}}
    assert summary["unmatched_values"] == {"survivor_sex": 1}
    assert "governorate" in summary["missing_required"]


def test_a_filled_in_draft_validates(tmp_path, fixtures):
    path = tmp_path / "odd.csv"
    path.write_text(
        "case_id,consent,sex,age,province,registered,exploitation,police\n"
        "1,yes,kiddo,3,Duhok,2024-01-01,prostitution,no\n",
        encoding="utf-8",
    )
    text, _ = draft_mapping(read_export(path))
    mapping_path = tmp_path / "m.yaml"
    mapping_path.write_text(text.replace("TODO", "M"), encoding="utf-8")
    from casepool.intake.validating import validate_export

    draft = yaml.safe_load(text)
    assert draft["columns"]["registered"] is None  # not a known header: the officer maps it
    mapping_path.write_text(
        text.replace("TODO", "M").replace("registered: null", "registered: report_date"),
        encoding="utf-8",
    )
    assert validate_export(path, mapping_path).valid
