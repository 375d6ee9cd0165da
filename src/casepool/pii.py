"""Scan the values a package would carry for personal data that slipped into a coded field.

Looks for Iraqi phone numbers (in any digit script), e-mail addresses, national ID numbers, and
any value that also appears in the export's dropped identifier columns. A hit names the row and
field, never the value.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import polars as pl

from casepool.matching import code_index
from casepool.normalising import fold
from casepool.schema import CaseSchema, load_schema

PHONE, EMAIL, NATIONAL_ID, DROPPED_VALUE = "phone", "email", "national-id", "dropped-column-value"

_EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
# A run of digits that may be broken by single separators, as people write phone and ID numbers.
_DIGIT_RUN = re.compile(r"\+?\d(?:[ \t\-./()]{0,2}\d)*")
_SEPARATORS = re.compile(r"[^\d]")
NATIONAL_ID_MIN_DIGITS = 8
# Values in dropped columns this short, or numbers this short, are too common to mean a person.
DROPPED_MIN_LENGTH = 3
DROPPED_MIN_DIGITS = 5


@dataclass(frozen=True, order=True)
class PersonalDataHit:
    """Personal data found in a retained value: the user's row number, the field, what kind."""

    row: int
    field: str
    kind: str

    def to_dict(self) -> dict[str, object]:
        return {"row": self.row, "field": self.field, "kind": self.kind}


def ascii_digits_any_script(text: str) -> str:
    """Every Unicode decimal digit (Arabic-Indic, Persian, Devanagari, full-width...) as ASCII."""
    if text.isascii():
        return text
    return "".join(
        str(unicodedata.decimal(c)) if unicodedata.decimal(c, None) is not None else c for c in text
    )


def _is_phone(digits: str) -> bool:
    """Iraqi numbers: +964 / 00964 / 964 prefixes, 07xx mobiles, 0 + area-code landlines."""
    n = len(digits)
    if digits.startswith("00964"):
        return 12 <= n <= 15
    if digits.startswith("964"):
        return 10 <= n <= 13
    if digits.startswith("07"):
        return n == 11
    if digits.startswith("7") and n == 10:
        return digits[1] in "3456789"
    if digits.startswith("0"):
        return 9 <= n <= 10
    return False


def personal_data_kind(text: str) -> str | None:
    """What kind of personal data `text` holds (phone, email, national-id), or None."""
    normal = ascii_digits_any_script(unicodedata.normalize("NFKC", text))
    if "@" in normal and _EMAIL.search(normal):
        return EMAIL
    kind = None
    for match in _DIGIT_RUN.finditer(normal):
        digits = _SEPARATORS.sub("", match.group())
        if _is_phone(digits):
            return PHONE
        if len(digits) >= NATIONAL_ID_MIN_DIGITS:
            kind = NATIONAL_ID
    return kind


@cache
def _code_spellings(schema: CaseSchema) -> frozenset[str]:
    """Every code, label and synonym of every code list, folded: never personal on their own."""
    spellings: set[str] = set()
    for codelist in schema.codelists.values():
        spellings.update(code_index(codelist))
    return frozenset(spellings)


def dropped_identifier_values(
    raw: pl.DataFrame, columns: Iterable[str], schema: CaseSchema | None = None
) -> frozenset[str]:
    """The distinctive values of the dropped columns, folded (short words and codes left out)."""
    schema = schema or load_schema()
    columns = [c for c in columns if c in raw.columns]
    if not columns:
        return frozenset()
    values = (
        raw.select(pl.concat_list(pl.col(columns).cast(pl.String)).alias("v"))
        .explode("v")
        .drop_nulls()
        .unique()
        .get_column("v")
        .to_list()
    )
    spellings = _code_spellings(schema)
    distinctive = set()
    for value in values:
        key = fold(ascii_digits_any_script(value))
        if len(key) < DROPPED_MIN_LENGTH or key in spellings:
            continue
        if key.replace(" ", "").isdigit() and len(key.replace(" ", "")) < DROPPED_MIN_DIGITS:
            continue
        distinctive.add(key)
    return frozenset(distinctive)


def scan_values(
    frame: pl.DataFrame,
    fields: Iterable[str],
    dropped_values: frozenset[str] = frozenset(),
    row_column: str = "_row",
) -> list[PersonalDataHit]:
    """Every (row, field) whose text value (or one of its listed values) holds personal data.

    Each distinct value is tested once, so millions of rows of codes cost a few passes.
    """
    hits: list[PersonalDataHit] = []
    for name in fields:
        dtype = frame.schema[name]
        column = pl.col(name)
        if isinstance(dtype, pl.List):
            distinct = frame.select(column.explode().drop_nulls().unique()).to_series()
        elif dtype == pl.String:
            distinct = frame.select(column.drop_nulls().unique()).to_series()
        else:
            continue
        flagged: dict[str, str] = {}
        for value in distinct.to_list():
            kind = personal_data_kind(value)
            if (
                kind is None
                and dropped_values
                and fold(ascii_digits_any_script(value)) in (dropped_values)
            ):
                kind = DROPPED_VALUE
            if kind is not None:
                flagged[value] = kind
        if not flagged:
            continue
        for value, kind in flagged.items():
            has = (
                column.list.contains(pl.lit(value))
                if isinstance(dtype, pl.List)
                else (column == value)
            )
            rows = frame.filter(has).get_column(row_column).to_list()
            hits.extend(PersonalDataHit(row=int(r), field=name, kind=kind) for r in rows)
    return sorted(set(hits))
