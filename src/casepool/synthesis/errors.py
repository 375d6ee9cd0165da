"""Inject the mistakes data officers really make, one per row at most, and record each one.

Every injection is made so that it breaks exactly one rule: the cells other rules would read are
set so those rules hold (a wrong governorate drops the district, an out-of-range age drops the
date of birth, ...). Rows without consent and the first row of a duplicated case number stay clean.
Injectors work on arrays of rows at once: ten million records carry over a million errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

from casepool.core.errors import SchemaError
from casepool.core.schema import CaseSchema, read_yaml
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
from casepool.synthesis.writing import Patch

# Tokens that no code list could ever mean.
UNKNOWN_TOKENS = ("zzq", "banana", "XX99", "qwv", "blorp")
NOT_A_NUMBER = ("{}.5", "about {}", "?", "zzq")
OUT_OF_RANGE = (18, 19, 23, 35, -1)
UNREADABLE_DATES = {
    "iso": ("2024-13-01", "2023-02-31", "0000-00-00", "20xx-05-01"),
    "text": ("32/13/2024", "31/02/2023", "00/00/0000", "??/05/2024"),
}
# Fields a too-many-values error is put in: single-choice, and no rule of another field reads them.
SINGLE_CHOICE = (
    "survivor_sex", "population_group", "violence_type", "perpetrator_relationship",
    "referral_source", "reported_to_police", "case_status", "working_child",
)  # fmt: skip

KINDS = (
    "missing-value", "unknown-code", "not-a-number", "out-of-range", "bad-date", "future-date",
    "date-order", "district-outside-governorate", "platform-without-online", "platform-missing",
    "age-dob-mismatch", "too-many-values", "duplicate-case-id",
)  # fmt: skip


@dataclass
class Injection:
    """The state shared by the injectors of one organisation's rows."""

    cases: Cases
    dialect: Dialect
    schema: CaseSchema
    rng: np.random.Generator
    today: int
    overrides: dict[str, list[Patch]] = field(default_factory=dict)
    found: list[tuple[np.ndarray, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fields = dialect_fields(self.dialect, self.schema)

    def patch(self, name: str, patch: Patch, kind: str) -> None:
        self.overrides.setdefault(name, []).append(patch)
        self.found.append((patch.rows, name, kind))

    def mark(self, rows: np.ndarray, name: str, kind: str) -> None:
        self.found.append((rows, name, kind))

    def split(self, rows: np.ndarray, names: Sequence[str]) -> list[tuple[str, np.ndarray]]:
        """Rows shared out at random among names (each row goes to one)."""
        which = self.rng.integers(0, len(names), len(rows))
        return [(n, rows[which == i]) for i, n in enumerate(names) if (which == i).any()]

    def pick(self, values: Sequence[object], size: int) -> np.ndarray:
        return np.array(values, dtype=object)[self.rng.integers(0, len(values), size)]

    def bit(self, codelist: str, code: str) -> int:
        return 1 << self.schema.codelists[codelist].values.index(code)

    def date_style(self, name: str) -> str:
        style = {
            "report_date": self.dialect.report_format,
            "incident_date": self.dialect.incident_format,
            "date_of_birth": self.dialect.dob_format,
        }[name]
        return "iso" if style == "iso" else "text"


def check_kinds() -> None:
    """Every kind injected here must be an error type of casepool validate."""
    known = set(read_yaml("error_types.yaml"))
    missing = set(KINDS) - known
    if missing:
        raise SchemaError("schema-invalid", file="error_types.yaml", reason=f"no {sorted(missing)}")


def _missing_value(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    candidates = [
        "case_id", "consent_statistics", "survivor_sex", "survivor_age", "governorate",
        "report_date", "reported_to_police", "exploitation_types",
    ]  # fmt: skip
    candidates = [n for n in candidates if n in j.fields and n not in j.dialect.detail_fields]
    for name, sub in j.split(rows, candidates):
        if name == "survivor_age":
            c["age_shown"][sub] = False
            c["dob_given"][sub] = False
            j.mark(sub, name, "missing-value")
            continue
        if name == "governorate":
            c["district"][sub] = NONE
        if name == "exploitation_types":
            c["online_platforms"][sub] = 0
        j.patch(name, Patch(sub, text=np.full(len(sub), "", dtype=object)), "missing-value")


def _unknown_code(j: Injection, rows: np.ndarray) -> None:
    c, schema = j.cases, j.schema
    coded = [n for n in j.fields if schema.field(n).codelist and n not in j.dialect.detail_fields]
    online = j.bit("exploitation_type", "online")
    for name, sub in j.split(rows, coded):
        tokens = j.pick(UNKNOWN_TOKENS, len(sub))
        if name == "governorate":
            c["district"][sub] = NONE
        if name == "exploitation_types":
            kept = c[name][sub] & ~online
            kept[kept == 0] = j.bit("exploitation_type", "trafficking")
            c[name][sub] = kept
            c["online_platforms"][sub] = 0
            j.patch(name, Patch(sub, codes=kept, token=tokens), "unknown-code")
        elif name == "online_platforms":
            c["exploitation_types"][sub] |= online
            kept = c[name][sub].copy()
            kept[kept == 0] = j.bit("online_platform", "tiktok")
            c[name][sub] = kept
            j.patch(name, Patch(sub, codes=kept, token=tokens), "unknown-code")
        else:
            j.patch(name, Patch(sub, text=tokens, localise=False), "unknown-code")


def _not_a_number(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    c["dob_given"][rows] = False
    templates = j.pick(NOT_A_NUMBER, len(rows))
    ages = c["survivor_age"][rows]
    text = np.array([t.format(a) for t, a in zip(templates, ages, strict=True)], dtype=object)
    j.patch("survivor_age", Patch(rows, text=text), "not-a-number")


def _out_of_range(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    c["dob_given"][rows] = False
    c["survivor_age"][rows] = np.array(OUT_OF_RANGE)[
        j.rng.integers(0, len(OUT_OF_RANGE), len(rows))
    ]
    j.mark(rows, "survivor_age", "out-of-range")


def _bad_date(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    names = [n for n in ("report_date", "incident_date", "date_of_birth") if n in j.fields]
    for name, sub in j.split(rows, names):
        c["dob_given"][sub] = name == "date_of_birth"
        if name == "incident_date":
            c["incident_given"][sub] = True
            c["incident_month_only"][sub] = 1.0  # a full date, so it is the date that is wrong
        typo = j.rng.random(len(sub)) < 0.5
        # A readable year before 1990 in the dialect's own style (a typo such as 1987) ...
        first = day_number(date(1980, 1, 1))
        c[name][sub[typo]] = first + j.rng.integers(0, 9 * 365, int(typo.sum()))
        j.mark(sub[typo], name, "bad-date")
        # ... or text no one can read as a date.
        unreadable = sub[~typo]
        if len(unreadable):
            text = j.pick(UNREADABLE_DATES[j.date_style(name)], len(unreadable))
            j.patch(name, Patch(unreadable, text=text), "bad-date")


def _future_date(j: Injection, rows: np.ndarray) -> None:
    # Years beyond `today` (a typed 2052 for 2025), so the error stays an error for years to come.
    c = j.cases
    c["dob_given"][rows] = False
    years = 8 + j.rng.random(len(rows)) * 15
    c["report_date"][rows] = j.today + (years * DAYS_PER_YEAR).astype(np.int64)
    j.mark(rows, "report_date", "future-date")


def _date_order_rows(j: Injection, pool: np.ndarray) -> np.ndarray:
    """Rows registered at least a month before today's month (room for a later incident)."""
    report_month = month_start(j.cases["report_date"][pool])
    today_month = month_start(np.array([j.today]))[0]
    return pool[report_month < today_month - 27]


def _date_order(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    report_month = month_start(c["report_date"][rows])
    today_month = month_start(np.array([j.today]))[0]
    room = np.clip(np.round((today_month - report_month) / 30.44).astype(np.int64), 1, 3)
    months = 1 + np.floor(j.rng.random(len(rows)) * room).astype(np.int64)
    c["dob_given"][rows] = False
    c["incident_given"][rows] = True
    c["incident_date"][rows] = add_months(c["report_date"][rows], months)
    j.mark(rows, "incident_date", "date-order")


def _district_outside(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    governorates = j.schema.codelists["governorate"].values
    parents = np.array(
        [governorates.index(d.parent or "") for d in j.schema.codelists["district"].codes]
    )
    chosen = j.rng.integers(0, len(parents), len(rows))
    own = c["governorate"][rows]
    while (clash := parents[chosen] == own).any():
        chosen[clash] = j.rng.integers(0, len(parents), int(clash.sum()))
    c["district"][rows] = chosen
    j.mark(rows, "district", "district-outside-governorate")


def _platform_without_online(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    types = c["exploitation_types"][rows] & ~j.bit("exploitation_type", "online")
    types[types == 0] = j.bit("exploitation_type", "trafficking")
    c["exploitation_types"][rows] = types
    platforms = c["online_platforms"][rows]
    platforms[platforms == 0] = j.bit("online_platform", "tiktok")
    c["online_platforms"][rows] = platforms
    j.mark(rows, "online_platforms", "platform-without-online")


def _platform_missing(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    c["exploitation_types"][rows] |= j.bit("exploitation_type", "online")
    c["online_platforms"][rows] = 0
    j.mark(rows, "online_platforms", "platform-missing")


def _age_dob_mismatch(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    ages = c["survivor_age"][rows].astype(np.int64)
    gap = 3 + j.rng.integers(0, 3, len(rows))
    wrong = np.where(ages >= 5, ages - gap, ages + gap)
    c["dob_given"][rows] = True
    c["date_of_birth"][rows] = birth_date_for(age_reference(c.take(rows)), wrong, j.rng)
    j.mark(rows, "survivor_age", "age-dob-mismatch")


def _too_many_values(j: Injection, rows: np.ndarray) -> None:
    c = j.cases
    for name, sub in j.split(rows, [n for n in SINGLE_CHOICE if n in j.fields]):
        n = len(j.schema.codelist_of(j.schema.field(name)).values)
        first = c[name][sub].astype(np.int64)
        first = np.where(first == NONE, j.rng.integers(0, n, len(sub)), first)
        second = (first + 1 + j.rng.integers(0, n - 1, len(sub))) % n
        j.patch(name, Patch(sub, codes=np.stack([first, second], axis=1)), "too-many-values")


def _duplicate_case_ids(j: Injection, rows: np.ndarray, clean: np.ndarray) -> None:
    """Each row takes the case number of an earlier clean row (only the later one is flagged)."""
    c = j.cases
    earlier = np.searchsorted(clean, rows)  # clean rows before each row
    rows = rows[earlier > 0]
    earlier = earlier[earlier > 0]
    source = clean[np.floor(j.rng.random(len(rows)) * earlier).astype(np.int64)]
    c["case_seq"][rows] = c["case_seq"][source]
    c["case_year"][rows] = c["case_year"][source]
    j.mark(rows, "case_id", "duplicate-case-id")


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
NEEDS = {
    "district-outside-governorate": "district",
    "age-dob-mismatch": "date_of_birth",
    "date-order": "incident_date",
}


def inject(
    cases: Cases,
    start: int,
    stop: int,
    dialect: Dialect,
    schema: CaseSchema,
    rate: float,
    today: int,
    rng: np.random.Generator,
) -> tuple[pl.DataFrame, dict[str, list[Patch]]]:
    """Inject errors into rows [start, stop) of one organisation, at `rate` of rows per kind.

    Returns the injected errors (row of `cases`, field, type) sorted by row and field, and the
    cells to write over the rendered ones.
    """
    j = Injection(cases, dialect, schema, rng, today)
    free = cases["consent_statistics"][start:stop] == 0  # rows without consent stay clean
    count = round(rate * (stop - start))
    for kind in KINDS:
        if count == 0 or (kind in NEEDS and NEEDS[kind] not in j.fields):
            continue
        pool = start + np.flatnonzero(free)
        if kind == "date-order":
            pool = _date_order_rows(j, pool)
        rows = np.sort(rng.choice(pool, size=min(count, len(pool)), replace=False))
        if not len(rows):
            continue
        free[rows - start] = False
        if kind == "duplicate-case-id":
            _duplicate_case_ids(j, rows, start + np.flatnonzero(free))
            continue
        cases["age_shown"][rows] = True  # an injected row keeps its age so nothing else breaks
        INJECTORS[kind](j, rows)
    found = pl.DataFrame(
        {
            "row": np.concatenate([r for r, _, _ in j.found] or [np.zeros(0, np.int64)]),
            "field": [name for r, name, _ in j.found for _ in range(len(r))],
            "type": [kind for r, _, kind in j.found for _ in range(len(r))],
        },
        schema={"row": pl.Int64, "field": pl.String, "type": pl.String},
    )
    for patches in j.overrides.values():
        patches.sort(key=lambda p: int(p.rows[0]) if len(p.rows) else 0)
    return found.sort("row", "field"), j.overrides
