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
    scanner = ValueScanner(fields, schema, row_column)
    scanner.scan(frame)
    also_dropped = scanner.also_dropped(raw, dropped_columns)
    if also_dropped:
        scanner.scan_dropped(frame, also_dropped)
    return scanner.hits()


class ValueScanner:
    """`scan_values` a batch of package rows at a time, with the same hits as over the whole.

    `scan` each batch (a value's kind is decided once, whatever batch it first shows in), then
    `also_dropped` once: the values distinctive enough to identify someone that the export's
    dropped columns hold too. When there are any, `scan_dropped` each batch again for their rows.
    """

    def __init__(
        self, fields: Iterable[str], schema: CaseSchema | None = None, row_column: str = "_row"
    ) -> None:
        self.fields = list(fields)
        self.schema = schema
        self.row_column = row_column
        self.kinds: dict[str, str | None] = {}  # value -> personal data kind (None: none)
        self.suspicious: set[str] = set()
        self._hits: set[PersonalDataHit] = set()

    def _distinct(self, frame: pl.DataFrame) -> dict[str, tuple[bool, list[str]]]:
        out: dict[str, tuple[bool, list[str]]] = {}
        for name in self.fields:
            dtype = frame.schema[name]
            column = pl.col(name)
            if isinstance(dtype, pl.List):
                distinct = frame.select(column.explode().drop_nulls().unique()).to_series()
            elif dtype == pl.String:
                distinct = frame.select(column.drop_nulls().unique()).to_series()
            else:
                continue
            out[name] = (isinstance(dtype, pl.List), distinct.to_list())
        return out

    def _kind(self, value: str) -> str | None:
        if value not in self.kinds:
            kind = personal_data_kind(value)
            self.kinds[value] = kind
            if kind is None and could_identify(value, self.schema):
                self.suspicious.add(value)
        return self.kinds[value]

    def _add_rows(
        self, frame: pl.DataFrame, name: str, is_list: bool, value: str, kind: str
    ) -> None:
        column = pl.col(name)
        has = column.list.contains(pl.lit(value)) if is_list else column == value
        rows = frame.filter(has).get_column(self.row_column).to_list()
        self._hits.update(PersonalDataHit(row=int(r), field=name, kind=kind) for r in rows)

    def scan(self, frame: pl.DataFrame) -> None:
        """Find the values of `frame` (rows with `row_column`) that are personal data."""
        for name, (is_list, texts) in self._distinct(frame).items():
            for value in texts:
                kind = self._kind(value)
                if kind is not None:
                    self._add_rows(frame, name, is_list, value, kind)

    def also_dropped(
        self,
        raw: pl.DataFrame | Callable[[], pl.DataFrame] | None,
        dropped_columns: Iterable[str],
    ) -> set[str]:
        """The suspicious values seen that the export's `dropped_columns` hold too; `raw` (the
        export, or a function reading it) is read only when there are suspicious values."""
        if not self.suspicious or raw is None:
            return set()
        export = raw() if callable(raw) else raw
        return found_in_columns(export, dropped_columns, self.suspicious)

    def scan_dropped(self, frame: pl.DataFrame, values: set[str]) -> None:
        """Add the rows of `frame` holding one of `values` (from `also_dropped`)."""
        for name, (is_list, texts) in self._distinct(frame).items():
            for value in texts:
                if value in values and self.kinds.get(value) is None:
                    self._add_rows(frame, name, is_list, value, DROPPED_VALUE)

    def hits(self) -> list[PersonalDataHit]:
        return sorted(self._hits)
