"""Normalisation of digits, letters, dates and multi-select cells as real exports write them."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casepool.core.normalising import ascii_digits, fold, parse_date, parse_integer, split_multi

TODAY = date(2025, 6, 30)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("١٢", 12),
        ("۱۷", 17),
        (" 12 ", 12),
        ("12.0", 12),
        ("-1", -1),
        ("twelve", None),
        ("1.5", None),
        ("", None),
    ],
)
def test_whole_numbers_in_any_digit_script(text, expected):
    assert parse_integer(text) == expected


def test_arabic_letter_variants_fold_together():
    assert fold("كركوك") == fold("کرکوک")
    assert fold("ي") == fold("ی") == fold("ى")
    assert fold("المحافظة") == fold("المحافظه")
    assert fold("أربيل") == fold("اربيل") == fold("إربيل")
    assert fold("نـــعم") == fold("نعم")  # tatweel
    assert fold("نَعَم") == fold("نعم")  # diacritics
    assert fold("  IDP_in-Camp ") == "idp in camp"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-15", date(2024, 3, 15)),
        ("2024-03-15 00:00:00", date(2024, 3, 15)),
        ("15/03/2024", date(2024, 3, 15)),
        ("5/6/24", date(2024, 6, 5)),
        ("15.03.2024", date(2024, 3, 15)),
        ("٢٠/٠٤/٢٠٢٤", date(2024, 4, 20)),
        ("۰۳/۰۶/۲۰۲۴", date(2024, 6, 3)),
        ("2024-03", date(2024, 3, 1)),
        ("03/2024", date(2024, 3, 1)),
        ("45366", date(2024, 3, 15)),  # Excel serial
        ("45366.0", date(2024, 3, 15)),
        ("03/05/95", date(1995, 5, 3)),  # two-digit year in the past century
        ("31/02/2024", None),
        ("2024-13-01", None),
        ("03/05/0023", None),  # year 23 is outside the plausibility window
        ("1989-12-31", None),
        ("60", None),  # Excel's fictitious 1900-02-29 and other tiny serials
        ("yesterday", None),
    ],
)
def test_dates_as_exports_write_them(text, expected):
    assert parse_date(text, today=TODAY) == expected


def test_month_first_dates_when_the_mapping_says_so():
    assert parse_date("03/15/2024", day_first=False, today=TODAY) == date(2024, 3, 15)
    assert parse_date("03/15/2024", day_first=True, today=TODAY) is None


def test_multi_select_cells_split_on_every_separator():
    assert split_multi("online, trafficking") == [["online"], ["trafficking"]]
    assert split_multi("online;trafficking") == [["online"], ["trafficking"]]
    assert split_multi("عبر الانترنت، زواج مبكر") == [["عبر", "الانترنت"], ["زواج", "مبكر"]]
    assert split_multi("online child_marriage") == [["online", "child_marriage"]]


@given(st.text())
def test_normalisers_never_crash_on_any_text(text):
    fold(text)
    split_multi(text)
    parse_integer(text)
    ascii_digits(text)
    result = parse_date(text, today=TODAY)
    assert result is None or result >= date(1990, 1, 1)
