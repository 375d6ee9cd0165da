"""The package profile: every field the catalogue reads is kept finely enough; the file is checked."""

from __future__ import annotations

import pytest

from casepool.catalogue.indicators import load_indicators, referenced_columns
from casepool.core.errors import SchemaError
from casepool.core.periods import parse_period
from casepool.core.schema import load_schema
from casepool.exchange.profile import MONTHS_BEFORE, OMIT, QUARTER, load_profile, parse_profile
from casepool.intake.deidentifying import prepare_submission
from fixtures.submit.builders import canonical_records


def test_every_field_an_indicator_or_the_double_count_rule_reads_is_kept():
    profile = load_profile()
    needed = set(referenced_columns(load_indicators())) - {"org", "record_key", "age_band"}
    assert {"reported_elsewhere", "referral_source", "governorate"} <= needed
    for name in needed:
        assert profile.precision(name) != OMIT, name
    # Periods are published as years or quarters, and the incident keeps its delay in months.
    assert profile.precision("report_date") == QUARTER
    assert profile.precision("incident_date") == MONTHS_BEFORE


def test_sensitive_fields_are_not_sent():
    sensitive = {f.name for f in load_schema().fields if f.sensitive}
    assert sensitive and sensitive <= set(load_profile().omitted)


def test_an_organisation_may_have_its_own_k():
    schema = load_schema()
    raw = {"k": 3, "organisations": {"ORG-07": {"k": 5}}, "fields": {}}
    profile = parse_profile(raw, schema)
    assert profile.k_for("ORG-07") == 5 and profile.k_for("ORG-01") == 3
    records = canonical_records(12)
    options = {"period": parse_period("2025-07"), "secret": b"s" * 32, "profile": profile}
    assert prepare_submission(records, org="ORG-07", **options).suppression.k == 5
    assert prepare_submission(records, org="ORG-01", **options).suppression.k == 3
    assert prepare_submission(records, org="ORG-07", min_k=4, **options).suppression.k == 4


@pytest.mark.parametrize(
    "fields",
    [
        {"governorate": "omit"},  # required
        {"survivor_sex": "quarter"},  # not a date
        {"no_such_field": "keep"},
        {"survivor_age": "keep"},  # ages leave as bands only
    ],
)
def test_a_profile_that_does_not_fit_the_case_record_is_refused(fields):
    with pytest.raises(SchemaError):
        parse_profile({"fields": fields}, load_schema())
