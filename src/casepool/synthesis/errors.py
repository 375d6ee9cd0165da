"""Inject the mistakes data officers really make, one per row at most, and record each one.

Every injection is made so that it breaks exactly one rule: the cells other rules would read are
set so those rules hold (a wrong governorate drops the district, an out-of-range age drops the
date of birth, ...). Rows without consent and the first row of a duplicated case number stay clean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from casepool.errors import SchemaError
from casepool.schema import CaseSchema, read_yaml
from casepool.synthesis.dialects import Dialect, dialect_fields
from casepool.synthesis.distributions import (
    DAYS_PER_YEAR,
    NONE,
    Cases,
    add_months,
    age_reference,
    birth_date_for,
    day_number,
    month_start,
)
from casepool.synthesis.writing import Raw

# Tokens that no code list could ever mean.
UNKNOWN_TOKENS = ("zzq", "banana", "XX99", "qwv", "blorp")
NOT_A_NUMBER = ("{age}.5", "about {age}", "?", "zzq")
OUT_OF_RANGE = (18, 19, 23, 35, -1)
UNREADABLE_DATES = {
    "iso": ("2024-13-01", "2023-02-31", "0000-00-00", "20xx-05-01"),
    "text": ("32/13/2024", "31/02/2023", "00/00/0000", "??/05/2024"),
}
# Fields a too-many-values error is put in: single-choice, and no rule of another field reads them.
SINGLE_CHOICE = ("survivor_sex", "population_group", "violence_type", "perpetrator_relationship",
                 "referral_source", "reported_to_police", "case_status", "working_child")

KINDS = (
    "missing-value", "unknown-code", "not-a-number", "out-of-range", "bad-date", "future-date",
    "date-order", "district-outside-governorate", "platform-without-online", "platform-missing",
    "age-dob-mismatch", "too-many-values", "duplicate-case-id",
)


@dataclass(frozen=True)
class Injected:
    """One injected error: global row index, field, error type."""

    row: int
    field: str
    type: str


@dataclass
class Injection:
    """The state shared by the injectors of one organisation's rows."""

    cases: Cases
    dialect: Dialect
    schema: CaseSchema
    rng: np.random.Generator
    today: int
    overrides: dict[str, dict[int, Raw]]
    found: list[Injected]

    @property
    def fields(self) -> list[str]:
        return dialect_fields(self.dialect, self.schema)

    def raw(self, row: int, name: str, raw: Raw, kind: str) -> None:
        self.overrides.setdefault(name, {})[row] = raw
        self.found.append(Injected(row, name, kind))

    def mark(self, row: int, name: str, kind: str) -> None:
        self.found.append(Injected(row, name, kind))

    def choose(self, items: list[str]) -> str:
        return items[int(self.rng.integers(len(items)))]

    def bit(self, codelist: str, code: str) -> int:
        return 1 << self.schema.codelists[codelist].values.index(code)

    def codes_of(self, name: str, mask: int) -> tuple[str, ...]:
        codes = self.schema.codelist_of(self.schema.field(name)).values
        return tuple(c for i, c in enumerate(codes) if mask >> i & 1)

    def date_style(self, name: str) -> str:
        style = {"report_date": self.dialect.report_format,
                 "incident_date": self.dialect.incident_format,
                 "date_of_birth": self.dialect.dob_format}[name]
        return "iso" if style == "iso" else "text"


def check_kinds() -> None:
    """Every kind injected here must be an error type of casepool validate."""
    known = set(read_yaml("error_types.yaml"))
    missing = set(KINDS) - known
    if missing:
        raise SchemaError("schema-invalid", file="error_types.yaml", reason=f"no {sorted(missing)}")


def _missing_value(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    candidates = ["case_id", "consent_statistics", "survivor_sex", "survivor_age", "governorate",
                  "report_date", "reported_to_police"]
    if "exploitation_types" not in j.dialect.detail_fields:
        candidates.append("exploitation_types")
    for r in rows:
        name = j.choose([n for n in candidates if n in j.fields])
        if name == "survivor_age":
            c["age_shown"][r] = False
            c["dob_given"][r] = False
            j.mark(r, name, "missing-value")
            continue
        if name == "governorate":
            c["district"][r] = NONE
        if name == "exploitation_types":
            c["online_platforms"][r] = 0
        j.raw(r, name, Raw(text=""), "missing-value")


def _unknown_code(j: Injection, rows: np.ndarray) -> None:
    c, schema = j.cases, j.schema
    coded = [n for n in j.fields if schema.field(n).codelist and n not in j.dialect.detail_fields]
    online = j.bit("exploitation_type", "online")
    for r in rows:
        name = j.choose(coded)
        token = j.choose(list(UNKNOWN_TOKENS))
        if name == "governorate":
            c["district"][r] = NONE
        if name == "exploitation_types":
            kept = int(c[name][r]) & ~online or j.bit("exploitation_type", "trafficking")
            c[name][r] = kept
            c["online_platforms"][r] = 0
            j.raw(r, name, Raw(codes=j.codes_of(name, kept), token=token), "unknown-code")
        elif name == "online_platforms":
            c["exploitation_types"][r] |= online
            kept = int(c[name][r]) or j.bit("online_platform", "tiktok")
            c[name][r] = kept
            j.raw(r, name, Raw(codes=j.codes_of(name, kept), token=token), "unknown-code")
        else:
            j.raw(r, name, Raw(text=token, localise=False), "unknown-code")


def _not_a_number(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    for r in rows:
        c["dob_given"][r] = False
        text = j.choose(list(NOT_A_NUMBER)).format(age=int(c["survivor_age"][r]))
        j.raw(r, "survivor_age", Raw(text=text), "not-a-number")


def _out_of_range(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    for r in rows:
        c["dob_given"][r] = False
        c["survivor_age"][r] = OUT_OF_RANGE[int(j.rng.integers(len(OUT_OF_RANGE)))]
        j.mark(r, "survivor_age", "out-of-range")


def _bad_date(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    fields = [n for n in ("report_date", "incident_date", "date_of_birth") if n in j.fields]
    long_ago = day_number_1980s(j.rng, len(rows))
    for i, r in enumerate(rows):
        name = j.choose(fields)
        c["dob_given"][r] = name == "date_of_birth"
        if name == "incident_date":
            c["incident_given"][r] = True
            c["incident_month_only"][r] = 1.0  # a full date, so it is the date that is wrong
        if j.rng.random() < 0.5:
            # A year before 1990, written in the dialect's own style (a typo such as 1987).
            c[name][r] = long_ago[i]
            j.mark(r, name, "bad-date")
        else:
            text = j.choose(list(UNREADABLE_DATES[j.date_style(name)]))
            j.raw(r, name, Raw(text=text), "bad-date")


def day_number_1980s(rng: np.random.Generator, size: int) -> np.ndarray:
    """Days in 1980-1988: readable dates that no case of a living child can have."""
    first = day_number_of(1980)
    return first + rng.integers(0, 9 * 365, size)


def day_number_of(year: int) -> int:
    from datetime import date

    return day_number(date(year, 1, 1))


def _future_date(j: Injection, rows: np.ndarray) -> None:
    # Far beyond `today` (a typed 2052 for 2025), so the error stays an error for years to come.
    c = j.cases
    years = 8 + j.rng.random(len(rows)) * 15
    for i, r in enumerate(rows):
        c["dob_given"][r] = False
        c["report_date"][r] = j.today + int(years[i] * DAYS_PER_YEAR)
        j.mark(r, "report_date", "future-date")


def _date_order(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    report_month = month_start(c["report_date"][rows])
    today_month = month_start(np.array([j.today]))[0]
    room = ((today_month - report_month) / 30.44).round().astype(np.int64)
    for i, r in enumerate(rows):
        c["dob_given"][r] = False
        c["incident_given"][r] = True
        months = 1 + int(j.rng.integers(0, max(min(room[i], 3), 1)))
        c["incident_date"][r] = add_months(np.array([c["report_date"][r]]), np.array([months]))[0]
        j.mark(r, "incident_date", "date-order")


def _date_order_rows(j: Injection, pool: np.ndarray) -> np.ndarray:
    """Rows registered at least a month before today's month (room for a later incident)."""
    report_month = month_start(j.cases["report_date"][pool])
    today_month = month_start(np.array([j.today]))[0]
    return pool[report_month < today_month - 27]


def _district_outside(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    districts = j.schema.codelists["district"].codes
    governorates = j.schema.codelists["governorate"].values
    for r in rows:
        own = governorates[c["governorate"][r]]
        others = [i for i, d in enumerate(districts) if d.parent != own]
        c["district"][r] = others[int(j.rng.integers(len(others)))]
        j.mark(r, "district", "district-outside-governorate")


def _platform_without_online(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    online = j.bit("exploitation_type", "online")
    for r in rows:
        c["exploitation_types"][r] = (
            int(c["exploitation_types"][r]) & ~online or j.bit("exploitation_type", "trafficking")
        )
        c["online_platforms"][r] = int(c["online_platforms"][r]) or j.bit("online_platform", "tiktok")
        j.mark(r, "online_platforms", "platform-without-online")


def _platform_missing(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    for r in rows:
        c["exploitation_types"][r] |= j.bit("exploitation_type", "online")
        c["online_platforms"][r] = 0
        j.mark(r, "online_platforms", "platform-missing")


def _age_dob_mismatch(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    ages = c["survivor_age"][rows].astype(np.int64)
    gap = 3 + j.rng.integers(0, 3, len(rows))
    wrong = np.where(ages >= 5, ages - gap, ages + gap)
    reference = age_reference(c.take(rows))
    births = birth_date_for(reference, wrong, j.rng)
    for i, r in enumerate(rows):
        c["dob_given"][r] = True
        c["date_of_birth"][r] = births[i]
        j.mark(r, "survivor_age", "age-dob-mismatch")


def _too_many_values(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    fields = [n for n in SINGLE_CHOICE if n in j.fields]
    for r in rows:
        name = j.choose(fields)
        codes = j.schema.codelist_of(j.schema.field(name)).values
        first = int(c[name][r]) if c[name][r] != NONE else int(j.rng.integers(len(codes)))
        second = (first + 1 + int(j.rng.integers(len(codes) - 1))) % len(codes)
        j.raw(r, name, Raw(codes=(codes[first], codes[second])), "too-many-values")


Injector = Callable[[Injection, np.ndarray], None]
INJECTORS: dict[str, Injector] = {
    "missing-value": _missing_value,
    "unknown-code": _unknown_code,
    "not-a-number": _not_a_number,
    "out-of-range": _out_of_range,
    "bad-date": _bad_date,
    "future-date": _future_date,
    "date-order": _date_order,
    "district-outside-governorate": _district_outside,
    "platform-without-online": _platform_without_online,
    "platform-missing": _platform_missing,
    "age-dob-mismatch": _age_dob_mismatch,
    "too-many-values": _too_many_values,
}


def _needs(kind: str, dialect: Dialect, fields: list[str]) -> bool:
    """Whether a dialect has the columns an error kind needs."""
    if kind == "district-outside-governorate":
        return "district" in fields
    if kind == "age-dob-mismatch":
        return "date_of_birth" in fields
    if kind == "date-order":
        return "incident_date" in fields
    return True


def inject(
    cases: Cases,
    start: int,
    stop: int,
    dialect: Dialect,
    schema: CaseSchema,
    rate: float,
    today: int,
    rng: np.random.Generator,
) -> tuple[list[Injected], dict[str, dict[int, Raw]]]:
    """Inject errors into rows [start, stop) of one organisation, at `rate` of rows per kind."""
    found: list[Injected] = []
    overrides: dict[str, dict[int, Raw]] = {}
    j = Injection(cases, dialect, schema, rng, today, overrides, found)
    consenting = cases["consent_statistics"][start:stop] == 0
    free = np.zeros(stop - start, dtype=bool)
    free[consenting] = True
    count = int(round(rate * (stop - start)))
    for kind in KINDS:
        if count == 0 or not _needs(kind, dialect, j.fields):
            continue
        pool = start + np.flatnonzero(free)
        if kind == "date-order":
            pool = _date_order_rows(j, pool)
        if kind == "duplicate-case-id":
            pool = pool[pool > start]
        rows = np.sort(rng.choice(pool, size=min(count, len(pool)), replace=False))
        if not len(rows):
            continue
        free[rows - start] = False
        if kind == "duplicate-case-id":
            _duplicate_case_ids(j, rows, start + np.flatnonzero(free))
            continue
        for r in rows:
            cases["age_shown"][r] = True  # an injected row keeps its age so nothing else breaks
        INJECTORS[kind](j, rows)
    return found, overrides


def _duplicate_case_ids(j: Injection, rows: np.ndarray, clean: np.ndarray) -> None:
    """Each row takes the case number of an earlier clean row (only the later one is flagged)."""
    c = j.cases
    for r in rows:
        earlier = clean[clean < r]
        if not len(earlier):
            continue
        source = earlier[int(j.rng.integers(len(earlier)))]
        c["case_seq"][r] = c["case_seq"][source]
        c["case_year"][r] = c["case_year"][source]
        j.mark(int(r), "case_id", "duplicate-case-id")
