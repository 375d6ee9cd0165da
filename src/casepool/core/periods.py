"""Reporting periods: a year (2025), a quarter (2025-Q3) or a month (2025-07), and the days they span."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from casepool.core.errors import UsageError

_PATTERN = re.compile(r"^(\d{4})(?:-(?:[Qq]([1-4])|(0[1-9]|1[0-2])))?$")
FIRST_YEAR, LAST_YEAR = 1990, 2100


@dataclass(frozen=True, order=True)
class Period:
    """A reporting period; `code` is its canonical spelling (2025, 2025-Q3, 2025-07)."""

    start: date
    end: date  # last day, inclusive
    code: str
    kind: str  # year, quarter or month

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end

    def overlaps(self, other: Period) -> bool:
        return self.start <= other.end and other.start <= self.end

    def __str__(self) -> str:
        return self.code


def _month_end(year: int, month: int) -> date:
    following = date(year + (month == 12), month % 12 + 1, 1)
    return following - timedelta(days=1)


def parse_period(text: str) -> Period:
    """The period a text names; raises UsageError("period-invalid") for anything else."""
    match = _PATTERN.match(str(text).strip())
    if not match:
        raise UsageError("period-invalid", period=str(text)[:20])
    year = int(match.group(1))
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise UsageError("period-invalid", period=str(text)[:20])
    quarter, month = match.group(2), match.group(3)
    if quarter:
        q = int(quarter)
        first = 3 * q - 2
        return Period(date(year, first, 1), _month_end(year, first + 2), f"{year}-Q{q}", "quarter")
    if month:
        m = int(month)
        return Period(date(year, m, 1), _month_end(year, m), f"{year}-{m:02d}", "month")
    return Period(date(year, 1, 1), date(year, 12, 31), f"{year}", "year")


def is_period(text: str) -> bool:
    """True when `text` is a well-formed period in its canonical spelling."""
    try:
        return parse_period(text).code == text
    except UsageError:
        return False
