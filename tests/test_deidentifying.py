"""De-identification: allowlist, keyed pseudonyms, age bands, months, consent, k-anonymity, PII scan."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casepool.core.periods import parse_period
from casepool.core.schema import load_schema
from casepool.exchange.profile import (
    AGE_BAND,
    PSEUDONYM,
    ROW,
    load_profile,
    package_fields,
    parse_profile,
    standard_bands,
)
from casepool.intake.deidentifying import (
    deidentify,
    k_anonymity,
    prepare_submission,
    pseudonymise,
    quasi_identifiers,
)
from casepool.intake.pii import (
    DROPPED_VALUE,
    EMAIL,
    NATIONAL_ID,
    PHONE,
    could_identify,
    found_in_columns,
    personal_data_kind,
    scan_values,
)
from fixtures.submit.builders import canonical_records

KEY_A, KEY_B = b"a" * 32, b"b" * 32
JULY = parse_period("2025-07")


def submission(records, **options):
    options.setdefault("secret", KEY_A)
    return prepare_submission(records, org="ORG-01", period=JULY, **options)


# --- pseudonyms ----------------------------------------------------------------------------------

case_ids = st.text(min_size=1, max_size=30).filter(lambda s: s.strip())


@given(st.lists(case_ids, min_size=1, max_size=20, unique=True))
def test_pseudonyms_are_stable_for_one_key_and_differ_across_keys(ids):
    under_a = pseudonymise(ids, KEY_A)
    assert pseudonymise(ids, KEY_A) == under_a
    under_b = pseudonymise(ids, KEY_B)
    assert all(a != b for a, b in zip(under_a, under_b, strict=True))
    assert all(len(p) == 64 and p not in ids for p in under_a)


def test_pseudonym_is_hmac_sha256_of_the_case_number_under_the_key():
    expected = hmac.new(KEY_A, b"C-001", hashlib.sha256).hexdigest()
    assert pseudonymise(["C-001"], KEY_A) == [expected]


def test_the_same_case_number_in_another_digit_script_or_spacing_gets_the_same_pseudonym():
    assert len(set(pseudonymise(["C-012", "C-٠١٢", " C-012 ", "C-۰۱۲"], KEY_A))) == 1


# --- transformations -----------------------------------------------------------------------------


@given(st.integers(0, 17))
def test_every_age_falls_in_the_age_band_its_code_names(age):
    records = canonical_records(1).with_columns(pl.lit(age, dtype=pl.Int64).alias("survivor_age"))
    band = deidentify(records, KEY_A).item(0, AGE_BAND)
    low, high = band.removeprefix("Y").split("T")
    assert int(low) <= age <= int(high)


def test_standard_age_bands_are_unicefs_sdmx_bands():
    assert [c for _, _, c in standard_bands()] == ["Y0T4", "Y5T9", "Y10T14", "Y15T17"]


def test_package_holds_the_allowlisted_fields_only_with_dates_as_months():
    records = canonical_records(10).with_columns(pl.lit(date(2010, 3, 17)).alias("date_of_birth"))
    sub = submission(records)
    assert sub.ready
    frame = sub.frame.drop(ROW)
    assert list(frame.schema.items()) == package_fields(load_schema())
    assert {"case_id", "survivor_age", "date_of_birth"}.isdisjoint(frame.columns)
    assert frame.get_column("report_date").dt.day().to_list() == [1] * 10
    ids = set(records.get_column("case_id"))
    assert ids.isdisjoint(frame.get_column(PSEUDONYM))


def test_rows_without_consent_or_outside_the_period_are_dropped_and_counted():
    records = canonical_records(10).with_columns(
        pl.when(pl.col(ROW) <= 4)
        .then(pl.lit("no"))
        .otherwise(pl.lit("yes"))
        .alias("consent_statistics"),
        pl.when(pl.col(ROW) == 11)
        .then(pl.lit(date(2025, 8, 2)))
        .otherwise(pl.col("report_date"))
        .alias("report_date"),
    )
    sub = submission(records)
    assert sub.dropped == {"invalid": 0, "no_consent": 3, "outside_period": 1}
    assert sub.rows_kept == 6
    assert sorted(sub.frame.get_column(ROW)) == [5, 6, 7, 8, 9, 10]


def test_invalid_rows_refuse_the_submission_unless_dropped():
    records = canonical_records(5)
    refused = submission(records, invalid_rows={3, 4})
    assert refused.status == "invalid-records" and refused.frame is None
    dropped = submission(records, invalid_rows={3, 4}, drop_invalid=True)
    assert dropped.ready and dropped.dropped["invalid"] == 2 and dropped.rows_kept == 3


def test_nothing_left_to_submit_is_refused():
    records = canonical_records(3).with_columns(pl.lit("no").alias("consent_statistics"))
    assert submission(records).status == "no-records"


# --- k-anonymity ---------------------------------------------------------------------------------


def test_k_anonymity_counts_small_groups_and_their_records():
    frame = pl.DataFrame({"sex": ["F", "F", "F", "M", "M", "U"], "gov": ["a"] * 6})
    report = k_anonymity(frame, ["sex", "gov"], threshold=3)
    assert (report.k, report.groups, report.groups_below, report.records_below) == (1, 3, 2, 3)
    assert report.share_below == 0.5


def test_quasi_identifiers_are_the_declared_ones_the_profile_keeps():
    schema = load_schema()
    qis = quasi_identifiers(schema, load_profile())
    assert qis.strata == ("report_date",)  # no importance: never blanked
    assert set(qis.suppressible) == {
        "governorate",
        "survivor_sex",
        AGE_BAND,
        "population_group",
        "incident_date",
    }
    raw = {"fields": {"survivor_age": "age_band", "district": "keep"}}
    with_district = quasi_identifiers(schema, parse_profile(raw, schema))
    assert {"district", "disability", "minority_community"} <= set(with_district.suppressible)


def test_sensitive_quasi_identifiers_are_marked_and_omitted_by_the_profile():
    schema = load_schema()
    sensitive = {f.name for f in schema.fields if f.sensitive}
    assert sensitive == {"minority_community", "disability"}
    assert set(load_profile().omitted) >= sensitive | {"district"}


def _uniform(n: int, **values) -> pl.DataFrame:
    records = canonical_records(n)
    return records.with_columns(
        pl.lit("F").alias("survivor_sex"),
        pl.lit("host_community").alias("population_group"),
        pl.lit("IQG01").alias("governorate"),
        pl.lit(None, dtype=pl.String).alias("district"),
        pl.lit(12, dtype=pl.Int64).alias("survivor_age"),
        pl.lit(None, dtype=pl.Date).alias("incident_date"),
        *[pl.lit(v).alias(k) for k, v in values.items()],
    )


def test_registration_is_kept_as_its_quarter_and_the_incident_as_months_before_it():
    records = _uniform(3).with_columns(
        pl.Series("report_date", [date(2025, 2, 17), date(2025, 3, 2), date(2025, 5, 30)]),
        pl.Series("incident_date", [date(2024, 11, 1), None, date(2025, 5, 1)]),
    )
    frame = deidentify(records, KEY_A, period=parse_period("2025"))
    assert frame.get_column("report_date").to_list() == [date(2025, 1, 1)] * 2 + [date(2025, 4, 1)]
    # Three months from November to February, zero from May to May: only the difference is sent.
    assert frame.get_column("incident_date").to_list() == [
        date(2024, 10, 1),
        None,
        date(2025, 4, 1),
    ]
    monthly = deidentify(records, KEY_A, period=parse_period("2025-02"))
    assert monthly.get_column("report_date").item(0) == date(2025, 2, 1)


def test_omitted_fields_are_empty_in_every_package():
    records = _uniform(4, disability="yes", minority_community="yes", case_status="open")
    frame = deidentify(records, KEY_A)
    for name in load_profile().omitted:
        assert frame.get_column(name).null_count() == 4, name


def test_the_default_k_is_three_and_one_odd_record_is_blanked_least_important_field_first():
    records = _uniform(6).with_columns(
        pl.Series("survivor_sex", ["F", "F", "F", "F", "F", "M"]),
        pl.Series("population_group", ["host_community"] * 5 + ["returnee"]),
    )
    sub = submission(records)
    assert sub.ready and sub.k_anonymity.threshold == 3 and sub.k_anonymity.k >= 3
    # population_group (importance 4) goes before sex (importance 2); both are needed here.
    assert sub.suppression.suppressed["population_group"] == 1
    assert sub.suppression.suppressed["survivor_sex"] == 1
    assert sub.suppression.records_touched == 1


def test_min_k_never_refuses_and_reports_the_k_reached():
    from casepool.cli.text.intake import render_submission
    from casepool.intake.submit import SubmitOutcome

    sub = submission(_uniform(2), min_k=3)
    assert sub.ready
    assert sub.suppression.k == 3 and sub.suppression.k_reached == 2  # two records in all
    assert sub.k_anonymity.k == 2
    text = render_submission(SubmitOutcome(validation=None, submission=sub, package=None))
    assert "k = 3 could not be reached" in text and "the smallest group has 2" in text


def test_a_higher_k_blanks_more_values():
    records = _uniform(12).with_columns(
        pl.Series("survivor_age", [1, 2, 3, 6, 7, 8, 11, 12, 13, 15, 16, 17], dtype=pl.Int64)
    )
    at_3, at_4 = submission(records), submission(records, min_k=4)
    assert at_3.suppression.suppressed[AGE_BAND] == 0
    assert at_4.suppression.suppressed[AGE_BAND] > 0
    assert at_4.k_anonymity.k >= 4


# --- personal data scan --------------------------------------------------------------------------

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")


@st.composite
def iraqi_phone(draw):
    operator = draw(st.sampled_from(["770", "750", "780", "790", "771", "751", "781"]))
    rest = draw(st.text("0123456789", min_size=7, max_size=7))
    prefix = draw(st.sampled_from(["0", "+964 ", "00964", "964", "+964-", "0"]))
    separator = draw(st.sampled_from(["", " ", "-", "."]))
    number = f"{prefix}{operator}{separator}{rest[:3]}{separator}{rest[3:]}"
    script = draw(st.sampled_from([None, ARABIC_INDIC, PERSIAN]))
    number = number.translate(script) if script else number
    context = draw(st.sampled_from(["{}", "call {}", "رقم {}", "{} (mother)"]))
    return context.format(number)


@settings(max_examples=200)
@given(iraqi_phone())
def test_iraqi_phone_numbers_in_any_digit_script_are_found(text):
    assert personal_data_kind(text) == PHONE


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("layla.h@example.org", EMAIL),
        ("contact: عمر@مثال.com", EMAIL),
        ("199012345678", NATIONAL_ID),
        ("ID 1990 1234 5678", NATIONAL_ID),
        ("١٩٩٠١٢٣٤٥٦٧٨", NATIONAL_ID),
        ("07701234567", PHONE),
        ("(066) 222 3344", PHONE),
    ],
)
def test_emails_and_id_numbers_are_found(text, kind):
    assert personal_data_kind(text) == kind


def test_no_code_or_label_of_any_code_list_looks_like_personal_data():
    schema = load_schema()
    for codelist in schema.codelists.values():
        for code in codelist.codes:
            for text in (code.code, *code.labels.values(), *code.synonyms):
                assert personal_data_kind(text) is None, (codelist.name, text)


def test_personal_data_in_a_coded_field_refuses_naming_row_and_field_only():
    records = canonical_records(5).with_columns(
        pl.when(pl.col(ROW) == 4)
        .then(pl.lit("0770 123 4567"))
        .otherwise(pl.col("justice_outcome"))
        .alias("justice_outcome"),
        pl.when(pl.col(ROW) == 5)
        .then(pl.lit(["health", "x@y.iq"]))
        .otherwise(pl.col("services_received"))
        .alias("services_received"),
    )
    sub = submission(records)
    assert sub.status == "personal-data" and sub.frame is None
    assert [h.to_dict() for h in sub.personal_data] == [
        {"row": 4, "field": "justice_outcome", "kind": PHONE},
        {"row": 5, "field": "services_received", "kind": EMAIL},
    ]
    assert "0770" not in repr(sub.to_dict()) and "x@y.iq" not in repr(sub.to_dict())


def test_a_value_also_in_a_dropped_identifier_column_is_found():
    raw = pl.DataFrame(
        {
            "_row": [2, 3, 4],
            "Child name": ["Layla Hassan", "Omar", "yes"],
            "Notes": ["police", None, "12"],
        }
    )
    # Codes, labels, short words and small numbers never identify anyone on their own.
    assert [could_identify(v) for v in ("Layla Hassan", "yes", "police", "12", "ab")] == [
        True, False, False, False, False
    ]  # fmt: skip
    assert found_in_columns(raw, ["Child name", "Notes"], ["LAYLA  hassan", "Omar ", "Ali"]) == {
        "LAYLA  hassan", "Omar "
    }  # fmt: skip
    frame = pl.DataFrame(
        {"_row": [2, 3, 4], "justice_outcome": ["open", "LAYLA  hassan", "police"]}
    )
    hits = scan_values(frame, ["justice_outcome"], raw, ["Child name", "Notes"])
    assert [(h.row, h.field, h.kind) for h in hits] == [(3, "justice_outcome", DROPPED_VALUE)]


def test_submission_scan_uses_the_dropped_columns():
    records = canonical_records(3).with_columns(
        pl.when(pl.col(ROW) == 2)
        .then(pl.lit("Zainab Kareem"))
        .otherwise(pl.col("justice_outcome"))
        .alias("justice_outcome")
    )
    raw = pl.DataFrame({"_row": [2, 3, 4], "Name": ["Zainab Kareem", "A B", "C D"]})
    sub = submission(records, raw=raw, dropped_columns=["Name"])
    assert [(h.row, h.kind) for h in sub.personal_data] == [(2, DROPPED_VALUE)]


@settings(max_examples=25, deadline=None)
@given(
    ids=st.lists(st.text(min_size=3, max_size=20).filter(str.strip), min_size=1, max_size=8,
                 unique_by=lambda s: " ".join(s.split())),
    extra=st.lists(st.text(min_size=1, max_size=30), min_size=8, max_size=8),
)  # fmt: skip
def test_deidentification_leaves_no_identifier_and_only_allowlisted_columns(ids, extra):
    records = canonical_records(len(ids)).with_columns(
        pl.Series("case_id", ids, dtype=pl.String),
    )
    raw = records.select(ROW).with_columns(
        pl.Series("Child name", extra[: len(ids)], dtype=pl.String)
    )
    sub = submission(records, raw=raw, dropped_columns=["Child name"])
    assert sub.ready
    frame = sub.frame.drop(ROW)
    assert [name for name, _ in package_fields(load_schema())] == frame.columns
    cells = {
        str(v)
        for column in frame.iter_columns()
        for v in (column.explode() if column.dtype == pl.List(pl.String) else column).to_list()
        if v is not None
    }
    assert cells.isdisjoint(ids)
    assert cells.isdisjoint(v for v in extra if could_identify(v))


def test_the_refusal_for_personal_data_names_row_and_field_in_every_language():
    from casepool.cli.text.intake import render_submission
    from casepool.intake.submit import SubmitOutcome

    records = canonical_records(5).with_columns(
        pl.when(pl.col(ROW) == 4).then(pl.lit("+964 770 123 4567")).otherwise(pl.col("justice_outcome"))
        .alias("justice_outcome")
    )  # fmt: skip
    outcome = SubmitOutcome(validation=None, submission=submission(records), package=None)
    for lang, row_word in (("en", "row 4"), ("ar", "الصف 4"), ("ckb", "ڕیزی 4"), ("kmr", "rêza 4")):
        text = render_submission(outcome, lang)
        assert row_word in text
        assert "770" not in text and "4567" not in text


def test_a_case_number_copied_into_a_coded_field_is_found():
    records = canonical_records(3).with_columns(
        pl.when(pl.col(ROW) == 3).then(pl.lit("CASE-1-00000")).otherwise(pl.col("justice_outcome"))
        .alias("justice_outcome")
    )  # fmt: skip
    raw = records.select(ROW, pl.col("case_id").alias("Case ID"))
    sub = submission(records, raw=raw, dropped_columns=[], identifier_columns=["Case ID"])
    assert [(h.row, h.field, h.kind) for h in sub.personal_data] == [
        (3, "justice_outcome", DROPPED_VALUE)
    ]


def test_the_export_is_not_read_again_when_every_value_is_a_code():
    def read_again():
        raise AssertionError("raw export requested although every retained value is a code")

    assert submission(canonical_records(5), raw=read_again, dropped_columns=["Name"]).ready
