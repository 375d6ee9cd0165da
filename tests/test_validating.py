"""Validation rules, each shown on one row of a fixture, and the canonical records they produce."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from casepool.intake.validating import records_schema, validate_export

TODAY = date(2025, 6, 30)


def test_one_error_of_each_kind_on_its_own_row(fixtures):
    result = validate_export(fixtures / "validate" / "one_error_each.csv", today=TODAY)
    assert result.flatten() == [
        [3, "survivor_sex", "unknown-code"],
        [4, "survivor_age", "out-of-range"],
        [5, "survivor_age", "not-a-number"],
        [6, "report_date", "bad-date"],
        [7, "report_date", "future-date"],
        [8, "incident_date", "date-order"],
        [9, "district", "district-outside-governorate"],
        [10, "online_platforms", "platform-without-online"],
        [11, "online_platforms", "platform-missing"],
        [12, "case_id", "duplicate-case-id"],
        [13, "survivor_age", "missing-value"],
        [14, "survivor_age", "age-dob-mismatch"],
        [16, "survivor_sex", "too-many-values"],
        [17, "governorate", "missing-value"],
        [18, "exploitation_types", "unknown-code"],
    ]
    duplicate = next(f for f in result.findings if f.type == "duplicate-case-id")
    assert duplicate.params == {"first_row": 2, "header": "case_id"}
    assert result.valid_rows == 2  # rows 2 and 15
    assert result.derived_age_rows == 1  # row 15: age from date of birth


def test_age_is_derived_from_date_of_birth_at_the_incident(fixtures):
    result = validate_export(fixtures / "validate" / "one_error_each.csv", today=TODAY)
    row = result.records.filter(pl.col("_row") == 15).row(0, named=True)
    assert row["survivor_age"] == 11  # born 2012-03-10, first incident 2024-01


@pytest.mark.parametrize(
    ("name", "mapping"),
    [
        ("canonical_valid.csv", None),
        ("utf8_bom_semicolon.csv", None),
        ("utf16_tab_separated.txt", None),
        ("cp1256_arabic_headers.csv", None),
        ("sorani_labels_arabic_indic_digits.csv", None),
        ("xlsx_excel_dates_arabic_labels.xlsx", None),
    ],
)
def test_every_dialect_validates_clean(fixtures, name, mapping):
    result = validate_export(fixtures / "validate" / name, mapping, today=TODAY)
    assert result.flatten() == []
    assert result.valid


def test_labels_in_four_languages_become_codes(fixtures):
    sorani = validate_export(
        fixtures / "validate" / "sorani_labels_arabic_indic_digits.csv", today=TODAY
    )
    assert sorani.records.select(
        "case_id", "survivor_sex", "survivor_age", "governorate"
    ).rows() == [
        ("س-١", "M", 15, "IQG11"),
        ("س-٢", "F", 9, "IQG06"),
    ]
    assert sorani.records.get_column("report_date").to_list() == [
        date(2024, 5, 12),
        date(2024, 6, 3),
    ]
    arabic = validate_export(fixtures / "validate" / "cp1256_arabic_headers.csv", today=TODAY)
    assert arabic.records.get_column("exploitation_types").to_list() == [
        ["prostitution"],
        ["online"],
        ["child_marriage"],
    ]
    assert arabic.records.get_column("report_date").to_list()[2] == date(2024, 6, 5)  # 5/6/24


def test_excel_dates_serials_and_arabic_indic_digits(fixtures):
    result = validate_export(
        fixtures / "validate" / "xlsx_excel_dates_arabic_labels.xlsx", today=TODAY
    )
    records = result.records
    assert records.get_column("report_date").to_list() == [date(2024, 3, 15)] * 2 + [
        date(2024, 4, 20)
    ]
    assert records.get_column("incident_date").to_list() == [
        date(2024, 2, 1),
        None,
        date(2024, 3, 1),
    ]
    assert records.get_column("online_platforms").to_list()[0] == ["tiktok", "instagram"]
    assert records.get_column("exploitation_types").to_list()[0] == ["online", "child_marriage"]


def test_kobo_export_with_detail_columns_and_mapping(fixtures):
    result = validate_export(
        fixtures / "validate" / "kobo_semicolon_select_multiple.csv",
        fixtures / "validate" / "kobo_mapping.yaml",
        today=TODAY,
    )
    assert result.records.get_column("exploitation_types").to_list()[:2] == [
        ["online"],
        ["prostitution", "child_marriage"],
    ]
    assert result.records.get_column("survivor_sex").to_list() == ["M", "F", "F"]
    # row 4 ticks no exploitation type and has no age: both required
    assert result.flatten() == [
        [4, "exploitation_types", "missing-value"],
        [4, "survivor_age", "missing-value"],
    ]
    assert "survivor/name" in result.extra_columns and "_uuid" in result.extra_columns


def test_kobo_detail_columns_are_found_without_a_mapping(fixtures):
    result = validate_export(
        fixtures / "validate" / "kobo_semicolon_select_multiple.csv", today=TODAY
    )
    assert result.mapped_columns["incident/exploitation/online"] == "exploitation_types"
    assert result.records.get_column("exploitation_types").to_list()[1] == [
        "prostitution",
        "child_marriage",
    ]


def test_detail_column_with_a_value_other_than_one_or_zero(tmp_path):
    path = tmp_path / "kobo.csv"
    path.write_text(
        "case_id,consent_statistics,survivor_sex,survivor_age,governorate,report_date,"
        "reported_to_police,exploitation_types/online,exploitation_types/prostitution\n"
        "K1,yes,F,12,IQG09,2024-01-01,no,maybe,0\n",
        encoding="utf-8",
    )
    assert validate_export(path, today=TODAY).flatten() == [
        [2, "exploitation_types", "unknown-code"]
    ]


def test_missing_required_column_is_a_file_level_finding(tmp_path):
    path = tmp_path / "no_sex.csv"
    path.write_text(
        "case_id,consent_statistics,survivor_age,governorate,report_date,exploitation_types,reported_to_police\n"
        "A,yes,12,IQG09,2024-01-01,online,no\n",
        encoding="utf-8",
    )
    result = validate_export(path, today=TODAY)
    assert [None, "survivor_sex", "missing-column"] in result.flatten()
    assert not result.valid and result.invalid_rows == {2}


def test_no_consent_rows_are_a_notice_not_an_error(fixtures):
    result = validate_export(fixtures / "validate" / "canonical_valid.csv", today=TODAY)
    assert result.valid and result.no_consent_rows == [4]


def test_identifier_columns_are_listed_never_parsed(fixtures):
    result = validate_export(fixtures / "validate" / "canonical_valid.csv", today=TODAY)
    assert result.extra_columns == ["survivor_name", "caregiver_phone", "notes"]
    assert "survivor_name" not in result.records.columns


def test_records_satisfy_the_pandera_contract_built_from_yaml(fixtures):
    import pandera.errors

    result = validate_export(fixtures / "validate" / "canonical_valid.csv", today=TODAY)
    contract = records_schema()
    contract.validate(result.records)
    broken = result.records.with_columns(pl.lit("Z").alias("survivor_sex"))
    with pytest.raises(pandera.errors.SchemaErrors):
        contract.validate(broken, lazy=True)
    broken_codes = result.records.with_columns(
        pl.lit(["online", "nope"]).alias("exploitation_types")
    )
    with pytest.raises(pandera.errors.SchemaErrors):
        contract.validate(broken_codes, lazy=True)


def test_the_contract_check_on_distinct_values_catches_a_bad_cell(fixtures):
    from casepool.core.schema import load_schema
    from casepool.intake.validating import _check_contract

    records = validate_export(fixtures / "validate" / "canonical_valid.csv", today=TODAY).records
    _check_contract(records, load_schema())
    bad_age = records.with_columns(
        pl.when(pl.col("_row") == 3)
        .then(40)
        .otherwise(pl.col("survivor_age"))
        .alias("survivor_age")
    )
    with pytest.raises(Exception, match=r"in_range|survivor_age"):
        _check_contract(bad_age, load_schema())
