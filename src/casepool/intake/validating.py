"""Validate an export against the case record: per-cell parsing, cross-field rules, one report.

Each distinct text of a coded, numeric or date column is parsed once in Python; the result is
spread back over the rows by position in an Enum of the distinct texts, so millions of rows cost a
few vectorised passes. Bad data gives findings, never exceptions.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from casepool.core.normalising import EARLIEST, fold, parse_date, parse_integer
from casepool.core.reading import (
    BATCH_ROWS,
    ROW,
    Export,
    ReadWhole,
    read_ahead,
    read_export,
    read_export_batches,
    within_one_batch,
)
from casepool.core.schema import CaseSchema, Field, load_schema
from casepool.intake.mapping import (
    Mapping,
    Resolution,
    header_score,
    load_mapping,
    resolve_columns,
)
from casepool.intake.matching import CodeMatcher, code_index, parse_codes
from casepool.intake.rules import broken

ProgressCallback = Callable[[str], None]
DERIVED_AGE = "__age_from_date_of_birth"
_TICKED = {"1", "1.0", "true", "yes", "x"}
_UNTICKED = {"", "0", "0.0", "false", "no"}
_DTYPES: dict[str, pl.DataType] = {
    "identifier": pl.String(),
    "code": pl.String(),
    "codes": pl.List(pl.String()),
    "integer": pl.Int64(),
    "date": pl.Date(),
    "month": pl.Date(),
}


def dtype_of(f: Field) -> pl.DataType:
    """The polars type of a field in the canonical records frame."""
    return _DTYPES[f.type]


@dataclass(frozen=True)
class Finding:
    """One error: the row in the user's file (None for the whole file), the field, the error type."""

    row: int | None
    field: str | None
    type: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "type": self.type, **self.params}


@dataclass
class ValidationResult:
    """What validate found: canonical records, findings, notices, and where the data came from."""

    path: Path
    format: str
    encoding: str | None
    records: pl.DataFrame
    export: Export
    findings_frame: pl.DataFrame
    file_findings: list[Finding]
    extra_columns: list[str]
    mapped_columns: dict[str, str]
    no_consent_rows: list[int]
    derived_age_rows: int
    asked_columns: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    stale_columns: list[str] = dataclasses.field(default_factory=list)

    @property
    def rows(self) -> int:
        """Records in the file: those read, and those left out for their number of cells."""
        return self.records.height + len(self.export.ragged)

    @property
    def ragged_findings(self) -> list[Finding]:
        """One `ragged-row` per CSV record with more or fewer cells than the header."""
        return [
            Finding(
                row=r.row,
                field=None,
                type="ragged-row",
                params={"line": r.line, "found": r.found, "expected": r.expected},
            )
            for r in self.export.ragged
        ]

    @property
    def raw(self) -> pl.DataFrame:
        """The whole export as text with ROW, read again if validation parsed only some columns."""
        if not self.export.complete:
            whole = read_export(self.export.path, encoding=self.export.encoding)
            self.export = whole
        return self.export.frame

    @property
    def findings(self) -> list[Finding]:
        return (
            self.file_findings
            + self.ragged_findings
            + findings_of(self.findings_frame, self.header_of)
        )

    def header_of(self, field_name: str | None) -> str | None:
        """The officer's own header that fed a field (None when no column did)."""
        if field_name is None:
            return None
        if field_name in self.mapped_columns:
            return self.mapped_columns[field_name]
        details = [h for h, f in self.mapped_columns.items() if f == field_name]
        return ", ".join(details) if details else None

    @property
    def invalid_rows(self) -> set[int]:
        ragged = {r.row for r in self.export.ragged}
        if self.file_findings:
            return set(self.records.get_column(ROW).to_list()) | ragged
        return set(self.findings_frame.get_column("row").unique().to_list()) | ragged

    @property
    def error_count(self) -> int:
        return len(self.file_findings) + len(self.export.ragged) + self.findings_frame.height

    @property
    def valid(self) -> bool:
        return self.error_count == 0

    @property
    def valid_rows(self) -> int:
        return self.rows - len(self.invalid_rows)

    def counts_by_type(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for f in self.file_findings + self.ragged_findings:
            counts[f.type] = counts.get(f.type, 0) + 1
        for slug, n in self.findings_frame.group_by("type").len().iter_rows():
            counts[slug] = counts.get(slug, 0) + n
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def flatten(self, keys: Sequence[str] = ("row", "field", "type")) -> list[list[Any]]:
        """Findings as lists of the given keys, sorted by row then field (for compact tests)."""
        rows = [[getattr(f, k) for k in keys] for f in self.findings]
        return sorted(rows, key=lambda r: tuple((v is not None, str(v).zfill(12)) for v in r))

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready data (the --json output)."""
        return {
            "file": self.path.name,
            "format": self.format,
            "encoding": self.encoding,
            "rows": self.rows,
            "valid_rows": self.valid_rows,
            "valid": self.valid,
            "error_count": self.error_count,
            "errors_by_type": self.counts_by_type(),
            "errors": [f.to_dict() for f in self.findings],
            "notices": {
                "unmapped_columns": self.extra_columns,
                "asked_columns": {h: list(f) for h, f in self.asked_columns.items()},
                "stale_mapping_columns": self.stale_columns,
                "layout": self.export.notes,
                "no_consent_rows": len(self.no_consent_rows),
                "age_from_date_of_birth": self.derived_age_rows,
            },
            "columns": self.mapped_columns,
            "header_table": self.header_table(),
        }

    def header_table(self) -> list[dict[str, str | None]]:
        """Each of the officer's headers, in file order, with the field it fills (None: left out)."""
        by_header = {h: f for f, h in self.mapped_columns.items() if f in self._field_names()}
        by_header |= {
            h: f
            for h, f in self.mapped_columns.items()
            if h not in by_header and f in self._field_names()
        }
        return [{"header": h, "field": by_header.get(h)} for h in self.export.headers]

    @staticmethod
    def _field_names() -> set[str]:
        return set(load_schema().field_names)


def findings_of(
    frame: pl.DataFrame, header_of: Callable[[str | None], str | None] | None = None
) -> list[Finding]:
    """The rows of a findings frame as Findings, with the officer's header where known."""
    found = []
    for r, f, t, p, v in frame.select("row", "field", "type", "first_row", "value").iter_rows():
        params: dict[str, Any] = {}
        if p is not None:
            params["first_row"] = p
        if v is not None:
            params["value"] = v
        if header_of is not None and (header := header_of(f)) is not None:
            params["header"] = header
        found.append(Finding(row=r, field=f, type=t, params=params))
    return found


def validate_export(
    path: str | Path,
    mapping: str | Path | Mapping | None = None,
    *,
    encoding: str | None = None,
    sheet: str | None = None,
    today: date | None = None,
    progress: ProgressCallback | None = None,
    batch_rows: int | None = BATCH_ROWS,
    keep_records: bool = True,
    on_records: Callable[[pl.DataFrame], None] | None = None,
) -> ValidationResult:
    """Read, map, normalise and validate an export. Raises only when the file cannot be read.

    A CSV is read and checked `batch_rows` rows at a time (None: whole), keeping only the
    canonical records and findings; what spans the file (duplicate case numbers) is decided
    once at the end, so the result equals the whole-file one exactly. With `keep_records` false
    (the validate command: it reports findings, never records) a CSV read in batches keeps of
    the records only `_row`, the fields of `unique` rules and consent, so memory stays flat.
    `on_records` is given each batch's canonical records as they are checked (submit).
    """
    notify = progress or (lambda stage: None)
    schema = load_schema()
    if mapping is not None and not isinstance(mapping, Mapping):
        mapping = load_mapping(mapping, schema)
    notify("read")

    def needed(headers: list[str]) -> list[str]:
        resolution = resolve_columns(headers, mapping, schema)
        used = set(resolution.columns.values()) | set(resolution.detail_columns)
        return [h for h in headers if h in used]

    # A file of one batch's records or fewer is read whole (the same result, less work),
    # unless each batch's records are wanted (submit).
    whole = on_records is None and within_one_batch(path, batch_rows or 0)
    if batch_rows and sheet is None and _batchable(schema) and not whole:
        try:
            batched = read_export_batches(
                path, encoding=encoding, columns=needed, batch_rows=batch_rows
            )
            if batched is not None:
                notify("check")
                return _validate_batches(
                    *batched,
                    mapping,
                    today=today,
                    schema=schema,
                    keep_records=keep_records,
                    on_records=on_records,
                )
        except ReadWhole:
            pass  # lines with the wrong number of cells: read whole, which lists them
    export = read_export(
        path, encoding=encoding, sheet=sheet, columns=needed, header_score=header_score
    )
    notify("check")
    return validate_table(export, mapping, today=today, schema=schema)


def validate_table(
    export: Export,
    mapping: Mapping | None = None,
    *,
    today: date | None = None,
    schema: CaseSchema | None = None,
) -> ValidationResult:
    """Validate an export already read as text."""
    schema = schema or load_schema()
    today = today or date.today()
    mapping = mapping or Mapping()
    resolution = resolve_columns(export.headers, mapping, schema)
    parsers = _Parsers(schema, mapping, today)
    records, findings, derived = _check_frame(export.frame, resolution, parsers, schema, today)
    _check_contract(records, schema, parsers.lookups(_recomputed(resolution)))
    return _result(export, resolution, records, findings, derived, schema)


def _validate_batches(
    export: Export,
    batches: Iterator[pl.DataFrame],
    mapping: Mapping | None = None,
    *,
    today: date | None = None,
    schema: CaseSchema | None = None,
    keep_records: bool = True,
    on_records: Callable[[pl.DataFrame], None] | None = None,
) -> ValidationResult:
    """Validate an export read in batches (see read_export_batches): each batch is parsed,
    checked and its contract checked alone, keeping its canonical records (or, without
    `keep_records`, the columns named in validate_export) and findings; the rules that span
    the file (`unique`) then run once over the kept records."""
    schema = schema or load_schema()
    today = today or date.today()
    mapping = mapping or Mapping()
    resolution = resolve_columns(export.headers, mapping, schema)
    parsers = _Parsers(schema, mapping, today)
    kept: list[pl.DataFrame] = []
    found: list[pl.DataFrame] = []
    derived = 0
    spanning = [r.field for r in schema.rules if r.check == "unique"]
    needed = list(dict.fromkeys([ROW, *spanning, "consent_statistics"]))
    # CASEPOOL_READ_AHEAD=0 reads in the caller's thread (to compare; the results are the same).
    ahead = os.environ.get("CASEPOOL_READ_AHEAD", "1") != "0"
    for raw in read_ahead(batches) if ahead else batches:
        records, findings, counted = _check_frame(
            raw, resolution, parsers, schema, today, spanning=False
        )
        _check_contract(records, schema, parsers.lookups(_recomputed(resolution)))
        if on_records is not None:
            on_records(records)
        kept.append(records if keep_records else records.select(needed))
        found.append(findings)
        derived += counted
    records = pl.concat(kept, rechunk=False)
    findings = _spanning_findings(records, pl.concat(found), schema)
    return _result(export, resolution, records, findings, derived, schema)


def _batchable(schema: CaseSchema) -> bool:
    """A rule spanning the file (`unique`) is checked after the batches: that gives the
    whole-file result only when it is the last rule on its field (later ones override it)."""
    for i, rule in enumerate(schema.rules):
        if rule.check == "unique" and any(r.field == rule.field for r in schema.rules[i + 1 :]):
            return False
    return True


def _recomputed(resolution: Resolution) -> set[str]:
    # Fields filled from elsewhere than their own lookup are checked on their distinct values.
    return {"survivor_age"} | {d.field for d in resolution.detail_columns.values()}


def _check_frame(
    raw: pl.DataFrame,
    resolution: Resolution,
    parsers: _Parsers,
    schema: CaseSchema,
    today: date,
    *,
    spanning: bool = True,
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Canonical records, findings and the count of derived ages of rows read as text.

    With `spanning` false the rules over the whole file (`unique`) are left out.
    """
    lazy = _parse_cells(raw, resolution, parsers)
    lazy = _derive_age(lazy, schema, resolution)
    sourced = {f.name for f in schema.fields if _has_source(f, resolution, schema)}
    parsed = _cross_field_rules(lazy, schema, today, sourced, spanning=spanning).collect(
        engine="in-memory"
    )
    derived = int(parsed.get_column(DERIVED_AGE).sum())
    records = parsed.select(ROW, *[f.name for f in schema.fields])
    return records, _collect_findings(parsed, schema), derived


def _spanning_findings(
    records: pl.DataFrame, findings: pl.DataFrame, schema: CaseSchema
) -> pl.DataFrame:
    """The findings of batches with the `unique` rules applied over all records: a repeated
    value is reported on every row after its first (with that first row), replacing what the
    row's batch said of that field, as the rule does over a whole file."""
    order = {f.name: i for i, f in enumerate(schema.fields)}
    for rule in schema.rules:
        if rule.check != "unique":
            continue
        name = rule.field
        value = pl.col(name)
        # The few repeated values first (one pass), then their first rows among those alone.
        repeated = (
            records.lazy()
            .select(ROW, name)
            .filter(value.is_duplicated() & value.is_not_null())
            .with_columns(pl.col(ROW).min().over(name).alias("first_row"))
            .filter(~value.is_first_distinct())
            .collect(engine="in-memory")
        )
        if repeated.height == 0:
            continue
        first = pl.col("first_row") if rule.error == "duplicate-case-id" else pl.lit(None)
        added = repeated.select(
            pl.col(ROW).alias("row"),
            pl.lit(name).alias("field"),
            pl.lit(rule.error).alias("type"),
            first.cast(pl.Int64).alias("first_row"),
            pl.lit(None, dtype=pl.String).alias("value"),
        )
        replaced = (pl.col("field") == name) & pl.col("row").is_in(repeated.get_column(ROW))
        findings = pl.concat([findings.filter(~replaced), added.cast(findings.schema)])
    return findings.sort("row", pl.col("field").replace_strict(order, return_dtype=pl.Int32))


def _result(
    export: Export,
    resolution: Resolution,
    records: pl.DataFrame,
    findings: pl.DataFrame,
    derived: int,
    schema: CaseSchema,
) -> ValidationResult:
    file_findings = [
        Finding(row=None, field=f.name, type="missing-column")
        for f in schema.fields
        if f.required and not _has_source(f, resolution, schema)
    ]
    consent = records.get_column("consent_statistics")
    no_consent = records.filter(consent == "no").get_column(ROW).to_list()
    return ValidationResult(
        path=export.path,
        format=export.format,
        encoding=export.encoding,
        records=records,
        export=export,
        findings_frame=findings,
        file_findings=file_findings,
        extra_columns=resolution.unmapped,
        mapped_columns=dict(resolution.columns)
        | {h: d.field for h, d in resolution.detail_columns.items()},
        no_consent_rows=no_consent,
        derived_age_rows=derived,
        asked_columns=dict(resolution.asked),
        stale_columns=list(resolution.stale),
    )


def _has_source(f: Field, resolution: Resolution, schema: CaseSchema) -> bool:
    if f.name in resolution.columns:
        return True
    if any(d.field == f.name for d in resolution.detail_columns.values()):
        return True
    return any(
        other.derives == f.name and other.name in resolution.columns for other in schema.fields
    )


# --- per-cell parsing ---------------------------------------------------------------------------


def _err(name: str) -> str:
    return f"__err_{name}"


def _parser(
    f: Field, schema: CaseSchema, mapping: Mapping, today: date
) -> Callable[[str], tuple[Any, str | None]]:
    """A function from one distinct cell text to (value, error slug); blank text is missing."""
    parse = _typed_parser(f, schema, mapping, today)

    def parse_or_blank(text: str) -> tuple[Any, str | None]:
        text = text.strip()
        return (None, None) if not text else parse(text)

    return parse_or_blank


def _typed_parser(
    f: Field, schema: CaseSchema, mapping: Mapping, today: date
) -> Callable[[str], tuple[Any, str | None]]:
    if f.type in {"code", "codes"}:
        matcher = CodeMatcher.of(f, schema, mapping.values_for(f.name))

        def parse_code(text: str) -> tuple[Any, str | None]:
            result = matcher.parse(text)
            if result.error == "ambiguous-value" and result.ambiguity is not None:
                # Read as its stated default (a code such as unknown, or missing) and reported.
                reading = result.ambiguity.reading
                value = None if reading == "missing" else reading
                return ([value] if f.multi and value else value), result.error
            if result.error:
                return None, result.error
            if f.multi:
                return list(result.codes) or None, None
            return (result.codes[0] if result.codes else None), None

        return parse_code
    if f.type == "integer":

        def parse_number(text: str) -> tuple[Any, str | None]:
            number = parse_integer(text)
            if number is None:
                return None, "not-a-number"
            if (f.minimum is not None and number < f.minimum) or (
                f.maximum is not None and number > f.maximum
            ):
                return None, "out-of-range"
            return number, None

        return parse_number

    def parse_day(text: str) -> tuple[Any, str | None]:
        parsed = parse_date(text, day_first=mapping.day_first, today=today)
        if parsed is None:
            return None, "bad-date"
        if f.type == "month":
            parsed = parsed.replace(day=1)
        return parsed, None

    return parse_day


class _Parsers:
    """Each field's parser and what it made of every distinct text seen so far (over batches).

    The values the parsers produced are what the contract check runs on (`lookups`) instead
    of a million rows.
    """

    def __init__(self, schema: CaseSchema, mapping: Mapping, today: date) -> None:
        self.schema, self.mapping, self.today = schema, mapping, today
        self._parsers: dict[str, Callable[[str], tuple[Any, str | None]]] = {}
        self._results: dict[str, dict[str, tuple[Any, str | None]]] = {}
        self._tables: dict[str, _Table] = {}

    def parse(self, f: Field, texts: list[str]) -> list[tuple[Any, str | None]]:
        parse = self._parsers.get(f.name)
        if parse is None:
            parse = self._parsers[f.name] = _parser(f, self.schema, self.mapping, self.today)
        known = self._results.setdefault(f.name, {})
        if f.type in {"date", "month"}:
            known.update(_iso_dates(f, [t for t in texts if t not in known]))
        out = []
        for text in texts:
            result = known.get(text)
            if result is None:
                result = known[text] = parse(text)
            out.append(result)
        return out

    def table(self, f: Field) -> _Table:
        """What the field's parser made of every text seen so far, as columns in the order the
        texts were first seen (kept across batches: each batch adds only its new texts)."""
        known = self._results.get(f.name, {})
        table = self._tables.get(f.name)
        if table is None:
            table = self._tables[f.name] = _Table(dtype_of(f))
        if table.size < len(known):
            table.add(list(known.items())[table.size :])
        return table

    def lookups(self, leave_out: set[str]) -> dict[str, pl.Series]:
        """Per parsed field, every distinct value its parser produced."""
        return {
            name: self.table(self.schema.field(name)).values
            for name in self._results
            if name not in leave_out
        }


class _Table:
    """One field's distinct texts (an Enum: a row's text is its position) and, at the same
    positions, the value, the error and the word shown for an ambiguous value."""

    def __init__(self, dtype: pl.DataType) -> None:
        self.texts: list[str] = []
        self.values = pl.Series([], dtype=dtype)
        self.errors = pl.Series([], dtype=pl.String)
        self.words = pl.Series([], dtype=pl.String)
        self.enum = pl.Enum([])

    @property
    def size(self) -> int:
        return len(self.texts)

    def add(self, results: list[tuple[str, tuple[Any, str | None]]]) -> None:
        new = [t for t, _ in results]
        self.texts += new
        self.enum = pl.Enum(self.texts)
        added = (
            pl.Series([v for _, (v, _) in results], dtype=self.values.dtype),
            pl.Series([e for _, (_, e) in results], dtype=pl.String),
            pl.Series(
                [t.strip() if e == "ambiguous-value" else None for t, (_, e) in results],
                dtype=pl.String,
            ),
        )
        self.values, self.errors, self.words = (
            pl.concat([old, more], rechunk=True)
            for old, more in zip((self.values, self.errors, self.words), added, strict=True)
        )


_ISO_DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_ISO_AT_ONCE = 32  # fewer distinct texts are parsed one by one


def _iso_dates(f: Field, texts: list[str]) -> dict[str, tuple[Any, str | None]]:
    """What the field's parser makes of the texts written exactly yyyy-mm-dd, parsed at once
    by polars instead of one by one (an export holds thousands of distinct dates): the date
    (its month's first day for a month field), or bad-date when it is no day of the calendar
    or lies before EARLIEST, as parse_date says. Other texts are left to the parser."""
    if len(texts) < _ISO_AT_ONCE:
        return {}
    frame = pl.DataFrame({"text": texts}, schema={"text": pl.String}).filter(
        pl.col("text").str.contains(_ISO_DAY)
    )
    parsed = frame.select("text", pl.col("text").str.to_date("%Y-%m-%d", strict=False).alias("day"))
    out: dict[str, tuple[Any, str | None]] = {}
    for text, day in parsed.iter_rows():
        if day is None or day < EARLIEST:
            out[text] = (None, "bad-date")
        else:
            out[text] = (day.replace(day=1) if f.type == "month" else day, None)
    return out


def _parse_cells(raw: pl.DataFrame, resolution: Resolution, parsers: _Parsers) -> pl.LazyFrame:
    """The canonical value and the error slug of every field, as columns beside ROW."""
    schema = parsers.schema
    sources = {f.name: resolution.columns.get(f.name) for f in schema.fields}
    coded = [
        (f, h)
        for f in schema.fields
        if (h := sources[f.name]) is not None and f.type != "identifier"
    ]
    # Distinct raw texts only: stripping a million cells costs more than parsing their few variants.
    distinct = (
        raw.lazy()
        .select([pl.col(h).drop_nulls().unique().implode().alias(f.name) for f, h in coded])
        .collect()
        .row(0, named=True)
        if coded
        else {}
    )
    expressions: list[pl.Expr] = [pl.col(ROW)]
    positions: list[pl.Expr] = []
    for f in schema.fields:
        header = sources[f.name]
        dtype = dtype_of(f)
        if header is None:
            expressions.append(pl.lit(None, dtype=dtype).alias(f.name))
            expressions.append(pl.lit(None, dtype=pl.String).alias(_err(f.name)))
            continue
        if f.type == "identifier":
            expressions.append(pl.col(header).str.strip_chars().replace("", None).alias(f.name))
            expressions.append(pl.lit(None, dtype=pl.String).alias(_err(f.name)))
            continue
        texts: list[str] = distinct[f.name]
        results = parsers.parse(f, texts)
        if dtype == pl.String and all(
            e is None and v == t for t, (v, e) in zip(texts, results, strict=True)
        ):
            # Every text is already its code (an export of codes): the column is its own
            # value, no error; no position to look up.
            expressions.append(pl.col(header).alias(f.name))
            expressions.append(pl.lit(None, dtype=pl.String).alias(_err(f.name)))
            continue
        # Each row's position among the distinct texts seen so far, computed once per column
        # (hashing a million strings is the expensive part); values and errors are then
        # gathered from it.
        table = parsers.table(f)
        positions.append(pl.col(header).cast(table.enum).to_physical().alias(_position(f.name)))
        position = pl.col(_position(f.name))
        expressions.append(pl.lit(table.values).gather(position).alias(f.name))
        errors = {e for _, e in results}
        if errors - {None}:
            expressions.append(pl.lit(table.errors).gather(position).alias(_err(f.name)))
            if "ambiguous-value" in errors:
                # The word itself is shown to the officer: only known placeholders and
                # vocabulary words are ambiguous, never free text.
                expressions.append(pl.lit(table.words).gather(position).alias(_word(f.name)))
        else:
            expressions.append(pl.lit(None, dtype=pl.String).alias(_err(f.name)))
    expressions += [pl.col(_detail(i)) for i in range(len(resolution.detail_columns))]
    frame = (
        raw.lazy()
        .with_columns(
            *positions,
            *[pl.col(h).alias(_detail(i)) for i, h in enumerate(resolution.detail_columns)],
        )
        .select(expressions)
    )
    return _apply_detail_columns(frame, resolution, schema)


def _word(name: str) -> str:
    return f"__word_{name}"


def _position(name: str) -> str:
    return f"__position_{name}"


def _detail(position: int) -> str:
    return f"__detail_{position}"


def _apply_detail_columns(
    frame: pl.LazyFrame, resolution: Resolution, schema: CaseSchema
) -> pl.LazyFrame:
    """Multi-select fields given as KoboToolbox `field/option` 1/0 columns."""
    by_field: dict[str, list[tuple[str, str]]] = {}
    for position, detail in enumerate(resolution.detail_columns.values()):
        by_field.setdefault(detail.field, []).append((_detail(position), detail.code))
    if not by_field:
        return frame
    updates = []
    for name, columns in by_field.items():
        order = schema.codelist_of(schema.field(name)).values
        columns.sort(key=lambda hc: order.index(hc[1]))
        folded = {
            h: pl.col(h).fill_null("").str.strip_chars().str.to_lowercase() for h, _ in columns
        }
        ticked = [pl.when(folded[h].is_in(list(_TICKED))).then(pl.lit(code)) for h, code in columns]
        bad = pl.any_horizontal([~folded[h].is_in(list(_TICKED | _UNTICKED)) for h, _ in columns])
        codes = pl.concat_list(ticked).list.drop_nulls()
        updates.append(pl.when(bad).then(None).when(codes.list.len() > 0).then(codes).alias(name))
        updates.append(pl.when(bad).then(pl.lit("unknown-code")).alias(_err(name)))
    details = [h for columns in by_field.values() for h, _ in columns]
    return frame.with_columns(updates).drop(details)


# --- derived values and cross-field rules ------------------------------------------------------


def _derive_age(frame: pl.LazyFrame, schema: CaseSchema, resolution: Resolution) -> pl.LazyFrame:
    """Fill survivor_age from date_of_birth (age at the first incident, else at registration).

    Adds the boolean column DERIVED_AGE marking the rows whose age was filled in.
    """
    source = next((f for f in schema.fields if f.derives == "survivor_age"), None)
    if source is None or source.name not in resolution.columns:
        return frame.with_columns(pl.lit(False).alias(DERIVED_AGE))
    dob = pl.col(source.name)
    when = pl.coalesce("incident_date", "report_date")

    def month_day(d: pl.Expr) -> pl.Expr:
        # month() and day() are Int8: widen before arithmetic or 12 * 100 overflows.
        return d.dt.month().cast(pl.Int32) * 100 + d.dt.day().cast(pl.Int32)

    computed = (
        when.dt.year().cast(pl.Int64)
        - dob.dt.year().cast(pl.Int64)
        - (month_day(when) < month_day(dob)).cast(pl.Int64)
    )
    age, age_err = pl.col("survivor_age"), pl.col(_err("survivor_age"))
    fillable = age.is_null() & age_err.is_null() & computed.is_not_null()
    in_range = computed.is_between(0, 17)
    return (
        frame.with_columns(__fillable=fillable)
        .with_columns(
            pl.when(pl.col("__fillable") & in_range)
            .then(computed)
            .otherwise(age)
            .alias("survivor_age"),
            pl.when(pl.col("__fillable") & ~in_range)
            .then(pl.lit("out-of-range"))
            .when(age.is_not_null() & computed.is_not_null() & ((age - computed).abs() > 1))
            .then(pl.lit("age-dob-mismatch"))
            .otherwise(age_err)
            .alias(_err("survivor_age")),
            (pl.col("__fillable") & in_range).alias(DERIVED_AGE),
        )
        .drop("__fillable")
    )


def _cross_field_rules(
    frame: pl.LazyFrame,
    schema: CaseSchema,
    today: date,
    sourced: set[str],
    *,
    spanning: bool = True,
) -> pl.LazyFrame:
    """Rules over several fields, each evaluated only where the fields it needs are valid.

    A required field with no column at all is one file-level finding (missing-column), not one
    missing value per row. With `spanning` false the `unique` rules (which need every row of
    the file) are left to the caller.
    """
    month_now = today.replace(day=1)
    per_field: list[pl.Expr] = []
    for f in schema.fields:
        value, err = pl.col(f.name), pl.col(_err(f.name))
        missing = value.is_null() | (value.list.len() == 0 if f.multi else pl.lit(False))
        check = err
        if f.required and f.name in sourced:
            check = pl.when(err.is_null() & missing).then(pl.lit("missing-value")).otherwise(check)
        if f.type in {"date", "month"}:
            limit = month_now if f.type == "month" else today
            check = (
                pl.when(err.is_null() & (value > pl.lit(limit)))
                .then(pl.lit("future-date"))
                .otherwise(check)
            )
        per_field.append(check.alias(_err(f.name)))
    frame = frame.with_columns(per_field)

    ok = {f.name: pl.col(_err(f.name)).is_null() for f in schema.fields}
    # Every rule's condition is read from the same state (after the per-field rules), so one
    # rule's finding never hides or causes another's; rules on one field apply in file order.
    updates: dict[str, pl.Expr] = {}
    for rule in schema.rules:
        if not spanning and rule.check == "unique":
            continue
        error = _err(rule.field)
        current = updates.get(error, pl.col(error))
        updates[error] = (
            pl.when(broken(rule, schema, ok)).then(pl.lit(rule.error)).otherwise(current)
        )
    return frame.with_columns(expr.alias(name) for name, expr in updates.items())


def _collect_findings(frame: pl.DataFrame, schema: CaseSchema) -> pl.DataFrame:
    """The error columns as one long frame: row, field, type, first_row (for duplicates)."""
    error_columns = [_err(f.name) for f in schema.fields]
    any_error = pl.any_horizontal(pl.col(c).is_not_null() for c in error_columns)
    findings = (
        frame.filter(any_error)
        .select(ROW, *error_columns)
        .unpivot(index=ROW, on=error_columns, variable_name="field", value_name="type")
        .filter(pl.col("type").is_not_null())
        .select(pl.col(ROW).alias("row"), pl.col("field").str.strip_prefix("__err_"), "type")
    )
    duplicates = frame.filter(pl.col(_err("case_id")) == "duplicate-case-id").select(ROW, "case_id")
    firsts = (
        frame.filter(pl.col("case_id").is_in(duplicates.get_column("case_id").implode()))
        .group_by("case_id")
        .agg(pl.col(ROW).min().alias("first_row"))
    )
    first_of_row = duplicates.join(firsts, on="case_id").select(
        pl.col(ROW).alias("row"), "first_row"
    )
    word_columns = [_word(f.name) for f in schema.fields if _word(f.name) in frame.columns]
    if word_columns:
        words = (
            frame.select(ROW, *word_columns)
            .unpivot(index=ROW, on=word_columns, variable_name="field", value_name="value")
            .filter(pl.col("value").is_not_null())
            .select(
                pl.col(ROW).alias("row"),
                pl.col("field").str.strip_prefix("__word_"),
                pl.lit("ambiguous-value").alias("type"),
                "value",
            )
        )
        findings = findings.join(words, on=["row", "field", "type"], how="left")
    else:
        findings = findings.with_columns(pl.lit(None, dtype=pl.String).alias("value"))
    order = {f.name: i for i, f in enumerate(schema.fields)}
    return (
        findings.join(first_of_row, on="row", how="left")
        .with_columns(
            pl.when(pl.col("type") == "duplicate-case-id")
            .then(pl.col("first_row"))
            .alias("first_row")
        )
        .select("row", "field", "type", "first_row", "value")
        .sort("row", pl.col("field").replace_strict(order, return_dtype=pl.Int32))
    )


# --- the pandera contract of the canonical records -----------------------------------------------


def records_schema(schema: CaseSchema | None = None) -> Any:
    """A pandera (polars) schema of the canonical records frame, built from schemas/case_record.yaml."""
    import pandera.polars as pa

    schema = schema or load_schema()
    columns: dict[str, Any] = {ROW: pa.Column(pl.Int64, nullable=False, unique=True)}
    for f in schema.fields:
        checks = []
        if f.type == "code":
            checks.append(pa.Check.isin(list(schema.codelist_of(f).values)))
        if f.type == "integer":
            checks.append(pa.Check.in_range(f.minimum, f.maximum))
        if f.type == "codes":
            allowed = list(schema.codelist_of(f).values)
            checks.append(
                pa.Check(
                    lambda data, allowed=allowed: data.lazyframe.select(
                        pl.col(data.key)
                        .list.eval(pl.element().is_in(allowed))
                        .list.all()
                        .fill_null(True)
                    ),
                    name=f"codes_in_{f.codelist}",
                )
            )
        columns[f.name] = pa.Column(dtype_of(f), checks=checks, nullable=True)
    return pa.DataFrameSchema(columns, strict=True, ordered=True, name="case_record")


class ContractBroken(AssertionError):
    """The parser's output broke the case record's contract: a bug in casepool, never bad data.

    The message names the field and the check, never a value."""


def contract_failures(frame: pl.DataFrame, schema: CaseSchema | None = None) -> list[str]:
    """What `records_schema` (pandera) would refuse in a canonical records frame, checked with
    plain polars expressions built from the same YAML: `field: check` for each failure.

    The same checks as the pandera schema (columns and their order, types, ROW unique and
    never null, codes in their code list, integers in range, multi-codes in their list); tests
    hold the two to the same verdicts. Used at run time because importing pandera (with the
    pandas it loads) costs more CPU than validating a 100k-row export.
    """
    schema = schema or load_schema()
    expected = {ROW: pl.Int64(), **{f.name: dtype_of(f) for f in schema.fields}}
    if frame.columns != list(expected):
        return ["columns: names and order"]
    failures = [f"{name}: dtype" for name, dtype in expected.items() if frame.schema[name] != dtype]
    if failures:
        return failures
    checks: dict[str, pl.Expr] = {
        f"{ROW}: not_nullable": pl.col(ROW).null_count() == 0,
        f"{ROW}: field_uniqueness": pl.col(ROW).drop_nulls().is_duplicated().not_().all(),
    }
    for f in schema.fields:
        column = pl.col(f.name)
        if f.type == "code":
            allowed = list(schema.codelist_of(f).values)
            checks[f"{f.name}: isin"] = column.drop_nulls().is_in(allowed).all()
        elif f.type == "integer":
            inside = pl.lit(True)
            if f.minimum is not None:
                inside = inside & (column >= f.minimum)
            if f.maximum is not None:
                inside = inside & (column <= f.maximum)
            checks[f"{f.name}: in_range"] = inside.fill_null(True).all()
        elif f.type == "codes":
            allowed = list(schema.codelist_of(f).values)
            listed = column.list.eval(pl.element().is_in(allowed)).list.all().fill_null(True)
            checks[f"{f.name}: codes_in_{f.codelist}"] = listed.all()
    verdicts = frame.select(**{str(i): e for i, e in enumerate(checks.values())}).row(0)
    return [name for name, ok in zip(checks, verdicts, strict=True) if not ok]


def _check_contract(
    records: pl.DataFrame, schema: CaseSchema, lookups: dict[str, pl.Series] | None = None
) -> None:
    """The parser's output must satisfy the schema; a failure here is a bug, never bad data.

    Each column's distinct values are checked (padded with nulls to one length): every check
    is per value, so this covers every cell at a fraction of the cost of a million-row frame.
    A column gathered from a parser lookup is checked on that lookup, a superset of its values.
    Identifiers are checked for type only.
    """
    lookups = lookups or {}
    identifiers = {f.name for f in schema.fields if f.type == "identifier"}
    others = [f.name for f in schema.fields if f.name not in identifiers and f.name not in lookups]
    distinct = (
        records.lazy().select(pl.col(others).unique().implode()).collect(engine="in-memory")
        if others
        else pl.DataFrame()
    )
    values: dict[str, pl.Series] = {}
    for f in schema.fields:
        if f.name in identifiers:
            values[f.name] = records.get_column(f.name).head(0)
        elif f.name in lookups:
            values[f.name] = lookups[f.name]
        else:
            values[f.name] = distinct.get_column(f.name)[0]
    length = max([1, *(len(v) for v in values.values())])
    columns = [pl.Series(ROW, range(length), dtype=pl.Int64)]
    for name, series in values.items():
        columns.append(series.extend_constant(None, length - len(series)).alias(name))
    failures = contract_failures(pl.DataFrame(columns), schema)
    if failures:
        raise ContractBroken("case record contract broken: " + "; ".join(failures))


def normalise_code(text: str, field_name: str) -> str | None:
    """One value of a coded field as its code, or None (for callers outside validation)."""
    schema = load_schema()
    f = schema.field(field_name)
    result = parse_codes(text, f, code_index(schema.codelist_of(f)), {})
    return result.codes[0] if result.codes and not result.error else None


__all__ = [
    "BATCH_ROWS",
    "ContractBroken",
    "Finding",
    "ValidationResult",
    "contract_failures",
    "dtype_of",
    "fold",
    "normalise_code",
    "records_schema",
    "validate_export",
    "validate_table",
]
