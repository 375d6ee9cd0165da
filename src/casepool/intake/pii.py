"""Scan the values a package would carry for personal data that slipped into a coded field.

Looks for Iraqi phone numbers (in any digit script), e-mail addresses, national ID numbers, and
any value that also appears in the export's dropped identifier columns. A hit names the row and
field, never the value.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

import polars as pl

from casepool.core.normalising import DIGIT_SOURCES, DIGIT_TARGETS, fold
from casepool.core.schema import CaseSchema, load_schema
from casepool.intake.matching import code_index

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


def _matching_key(column: pl.Expr) -> pl.Expr:
    """A vectorised matching key: NFKC, Arabic-Indic/Persian digits as ASCII, case and spacing."""
    return (
        column.str.normalize("NFKC")
        .str.replace_many(DIGIT_SOURCES, DIGIT_TARGETS)
        .str.to_lowercase()
        .str.replace_all(r"[\s_\-]+", " ")
        .str.strip_chars()
    )


def could_identify(value: str, schema: CaseSchema | None = None) -> bool:
    """Whether a value is distinctive enough to identify someone if it also sits in a dropped
    column: not a code, label or synonym, not a short word, not a small number."""
    key = fold(ascii_digits_any_script(value))
    if len(key) < DROPPED_MIN_LENGTH or key in _code_spellings(schema or load_schema()):
        return False
    digits = key.replace(" ", "")
    return not (digits.isdigit() and len(digits) < DROPPED_MIN_DIGITS)


def found_in_columns(raw: pl.DataFrame, columns: Iterable[str], values: Iterable[str]) -> set[str]:
    """Which of `values` also appear (as a whole cell, case and spacing aside) in `columns`."""
    columns = [c for c in columns if c in raw.columns]
    wanted = list(dict.fromkeys(values))
    if not columns or not wanted:
        return set()
    keys = (
        pl.Series("v", wanted, dtype=pl.String)
        .to_frame()
        .select(pl.col("v"), _matching_key(pl.col("v")).alias("key"))
    )
    present = set(
        raw.lazy()
        .select(pl.concat_list(pl.col(columns).cast(pl.String)).alias("cell"))
        .explode("cell")
        .select(_matching_key(pl.col("cell")).alias("key"))
        .filter(pl.col("key").is_in(keys.get_column("key").implode()))
        .unique()
        .collect()
        .get_column("key")
        .to_list()
    )
    return {v for v, k in keys.iter_rows() if k in present}


def scan_values(
    frame: pl.DataFrame,
    fields: Iterable[str],
    raw: pl.DataFrame | Callable[[], pl.DataFrame] | None = None,
    dropped_columns: Iterable[str] = (),
    row_column: str = "_row",
    schema: CaseSchema | None = None,
) -> list[PersonalDataHit]:
    """Every (row, field) whose text value (or one of its listed values) holds personal data.

    Each distinct value is tested once, so millions of rows of codes cost a few passes; the
    dropped columns are searched only for distinctive values (codes never identify anyone), and
    `raw` may be a function giving the export, called only then (reading it again costs time).
    """
    distinct_by_field: dict[str, tuple[bool, list[str]]] = {}
    for name in fields:
        dtype = frame.schema[name]
        column = pl.col(name)
        if isinstance(dtype, pl.List):
            distinct = frame.select(column.explode().drop_nulls().unique()).to_series()
        elif dtype == pl.String:
            distinct = frame.select(column.drop_nulls().unique()).to_series()
        else:
            continue
        distinct_by_field[name] = (isinstance(dtype, pl.List), distinct.to_list())

    flagged: dict[tuple[str, str], str] = {}
    suspicious: set[str] = set()
    for name, (_, texts) in distinct_by_field.items():
        for value in texts:
            kind = personal_data_kind(value)
            if kind is not None:
                flagged[(name, value)] = kind
            elif could_identify(value, schema):
                suspicious.add(value)
    if suspicious and raw is not None:
        export = raw() if callable(raw) else raw
        also_dropped = found_in_columns(export, dropped_columns, suspicious)
        for name, (_, texts) in distinct_by_field.items():
            for value in texts:
                if value in also_dropped:
                    flagged.setdefault((name, value), DROPPED_VALUE)

    hits: list[PersonalDataHit] = []
    for (name, value), kind in flagged.items():
        column = pl.col(name)
        is_list = distinct_by_field[name][0]
        has = column.list.contains(pl.lit(value)) if is_list else column == value
        rows = frame.filter(has).get_column(row_column).to_list()
        hits.extend(PersonalDataHit(row=int(r), field=name, kind=kind) for r in rows)
    return sorted(set(hits))
