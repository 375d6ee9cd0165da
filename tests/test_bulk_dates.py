"""Dates written yyyy-mm-dd are parsed at once by polars: the same values and errors as the
field's own parser gives them one by one."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casepool.core.schema import load_schema
from casepool.intake.mapping import Mapping
from casepool.intake.validating import _ISO_AT_ONCE, _iso_dates, _parser

TODAY = date(2026, 1, 1)
DAYS = st.builds(
    lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}",
    st.integers(1900, 2200),
    st.integers(0, 13),
    st.integers(0, 32),
)
OTHERS = st.sampled_from(["2025-1-5", "2025/01/05", "x", "٢٠٢٥-٠١-٠٥", "2025-01-05 ", "45000", ""])


@pytest.mark.parametrize("name", ["report_date", "incident_date", "date_of_birth"])
@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.one_of(DAYS, OTHERS), min_size=_ISO_AT_ONCE, max_size=80, unique=True))
def test_bulk_dates_equal_the_parser(name, texts):
    schema = load_schema()
    f = schema.field(name)
    bulk = _iso_dates(f, texts)
    parse = _parser(f, schema, Mapping(), TODAY)
    assert bulk  # at least one yyyy-mm-dd text in most draws; those given must agree
    for text, result in bulk.items():
        assert result == parse(text), text
    assert all(t[:4].isdigit() and len(t) == 10 for t in bulk)
