"""Turn synthetic rows into one organisation's export file in its dialect, chunk by chunk."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import polars as pl

from casepool.core.schema import CaseSchema
from casepool.synthesis.dialects import (
    IDENTIFIER_HEADERS,
    KOBO_SYSTEM,
    Dialect,
    dialect_fields,
    field_header,
    written_code,
)
from casepool.synthesis.distributions import NONE, Cases, Organisation, Settings
from casepool.synthesis.identities import (
    NamePools,
    addresses,
    arabic_indic,
    notes,
    person_names,
    phone_numbers,
)

T = TypeVar("T")
CHUNK_ROWS = 250_000
INLINE_IDENTIFIERS = 100_000  # exports up to this many rows list their identifiers in truth.json
XLSX_MAX_ROWS = 1_048_575  # Excel's sheet limit less the header row
EXCEL_EPOCH_SERIAL = 25569  # the Excel serial number of 1970-01-01
FIXED_TIMESTAMP = datetime(2025, 1, 1)  # workbook metadata, so the same seed gives the same bytes


@dataclass(frozen=True)
class Patch:
    """Cells written over the rendered ones in some rows: injected errors.

    Either literal text per row (digits localised when `localise`), or codes written in the
    dialect's labels: a bit mask per row for a multi-select field, or two code indices per row
    (shape n x 2) for a single-choice field; `token`, when given, is added as one more value.
    `rows` index `cases` and are sorted.
    """

    rows: np.ndarray
    text: np.ndarray | None = None
    codes: np.ndarray | None = None
    token: np.ndarray | None = None
    localise: bool = True


@dataclass(frozen=True)
class Column:
    """One column of an export: its header and what it holds."""

    header: str
    kind: str  # field, identifier, detail, summary, system
    name: str  # field name, identifier kind or system column
    code: str | None = None


@dataclass
class Context:
    """What rendering needs beside the rows."""

    schema: CaseSchema
    settings: Settings
    pools: dict[str, NamePools]
    seed: int


@dataclass
class Written:
    """What was placed in one export: its identifier values, and rows whose notes name someone."""

    identifiers: dict[str, list[pl.Series]] = field(default_factory=dict)
    mention_rows: list[np.ndarray] = field(default_factory=list)
    collect: bool = True  # False for big exports: their identifier columns are the record

    def add(self, kind: str, values: pl.Series) -> None:
        if self.collect:
            self.identifiers.setdefault(kind, []).append(values.drop_nulls().unique())


def layout(dialect: Dialect, schema: CaseSchema) -> list[Column]:
    """The columns of an export in order: case number, identifiers, fields, notes, system."""
    id_headers = IDENTIFIER_HEADERS[dialect.identifier_headers]
    columns = [Column(field_header(dialect, schema, "case_id"), "field", "case_id")]
    columns += [
        Column(id_headers[k], "identifier", k)
        for k in ("survivor_name", "caregiver_name", "caregiver_phone", "address")
    ]
    for name in dialect_fields(dialect, schema):
        if name == "case_id":
            continue
        header = field_header(dialect, schema, name)
        if dialect.kobo and schema.field(name).multi:
            columns.append(
                Column(header, "summary" if name in dialect.detail_fields else "field", name)
            )
            for code in schema.codelist_of(schema.field(name)).values:
                columns.append(Column(f"{header}/{code}", "detail", name, code))
        else:
            columns.append(Column(header, "field", name))
    columns.append(Column(id_headers["notes"], "identifier", "notes"))
    if dialect.kobo:
        columns += [Column(name, "system", name) for name in KOBO_SYSTEM]
    return columns


def _localise(series: pl.Series, dialect: Dialect) -> pl.Series:
    return arabic_indic(series) if dialect.digits == "arabic_indic" else series


_STRFTIME = {
    "iso": "%Y-%m-%d",
    "dmy": "%d/%m/%Y",
    "dmy_short": "%-d/%-m/%y",
    "mdy": "%m/%d/%Y",
    "ym": "%Y-%m",
    "my": "%m/%Y",
}


def _dates(days: np.ndarray, given: np.ndarray, style: str, dialect: Dialect) -> pl.Series:
    """Dates in a dialect's style: text, a real date cell, or an Excel serial number."""
    as_date = pl.Series(days.astype(np.int32)).cast(pl.Date)
    mask = pl.Series(given)
    if style == "date_cell":
        return pl.select(pl.when(mask).then(as_date)).to_series()
    if style == "serial":
        serial = pl.Series(days.astype(np.int64) + EXCEL_EPOCH_SERIAL)
        return pl.select(pl.when(mask).then(serial)).to_series()
    text = as_date.dt.strftime(_STRFTIME[style])
    return _localise(pl.select(pl.when(mask).then(text)).to_series(), dialect)


_LOOKUPS: dict[tuple[str, str, str], pl.Series] = {}


def _cached(kind: str, dialect: Dialect, name: str, make: Callable[[], pl.Series]) -> pl.Series:
    """Lookup tables are the same for every chunk of a dialect: build each once."""
    key = (kind, dialect.name, name)
    if key not in _LOOKUPS:
        _LOOKUPS[key] = make()
    return _LOOKUPS[key]


def _code_lookup(dialect: Dialect, schema: CaseSchema, name: str) -> pl.Series:
    """Written values by code index, with null last for NONE."""
    return _cached("code", dialect, name, lambda: _make_code_lookup(dialect, schema, name))


def _multi_lookup(dialect: Dialect, schema: CaseSchema, name: str) -> pl.Series:
    """Written values of every combination of codes, by bit mask."""
    return _cached("multi", dialect, name, lambda: _make_multi_lookup(dialect, schema, name))


def _make_code_lookup(dialect: Dialect, schema: CaseSchema, name: str) -> pl.Series:
    codes = schema.codelist_of(schema.field(name)).values
    return pl.Series(
        [written_code(dialect, schema, name, c) for c in codes] + [None], dtype=pl.String
    )


def _make_multi_lookup(dialect: Dialect, schema: CaseSchema, name: str) -> pl.Series:
    """Written values of every combination of codes (by bit mask): few codes, so a small table."""
    codes = schema.codelist_of(schema.field(name)).values
    separator = dialect.multi_separator if dialect.values is not None else " "
    table: list[str | None] = [None]
    for mask in range(1, 1 << len(codes)):
        chosen = [
            written_code(dialect, schema, name, c) for i, c in enumerate(codes) if mask >> i & 1
        ]
        table.append(separator.join(chosen))
    return pl.Series(table, dtype=pl.String)


def _gather_codes(lookup: pl.Series, index: np.ndarray) -> pl.Series:
    position = np.where(index == NONE, len(lookup) - 1, index)
    return lookup.gather(pl.Series(position.astype(np.int64)))


_PLACEHOLDER = re.compile(r"\{(prefix|year|seq)\}")


def _case_ids(org: Organisation, dialect: Dialect, chunk: Cases) -> pl.Series:
    frame = pl.DataFrame(
        {
            "year": chunk["case_year"].astype(np.int64),
            "seq": pl.Series(chunk["case_seq"].astype(np.int64)).cast(pl.String).str.zfill(5),
        }
    )
    expressions: list[pl.Expr] = []
    position = 0
    for match in _PLACEHOLDER.finditer(dialect.case_id_pattern):
        literal = dialect.case_id_pattern[position : match.start()]
        if literal:
            expressions.append(pl.lit(literal))
        key = match.group(1)
        expressions.append(pl.lit(org.prefix) if key == "prefix" else pl.col(key).cast(pl.String))
        position = match.end()
    if position < len(dialect.case_id_pattern):
        expressions.append(pl.lit(dialect.case_id_pattern[position:]))
    return frame.select(pl.concat_str(expressions).alias("case_id")).to_series()


def _patch_text(
    patch: Patch, i0: int, i1: int, dialect: Dialect, schema: CaseSchema, name: str
) -> pl.Series:
    """The text of rows i0..i1 of a patch, as the dialect writes it."""
    if patch.text is not None:
        text = pl.Series(list(patch.text[i0:i1]), dtype=pl.String)
        return _localise(text, dialect) if patch.localise else text
    assert patch.codes is not None
    separator = dialect.multi_separator if dialect.values is not None else " "
    codes = patch.codes[i0:i1]
    if codes.ndim == 1:
        parts = [_gather_codes(_multi_lookup(dialect, schema, name), codes)]
    else:
        lookup = _code_lookup(dialect, schema, name)
        parts = [_gather_codes(lookup, codes[:, 0]), _gather_codes(lookup, codes[:, 1])]
    if patch.token is not None:
        parts.append(pl.Series(list(patch.token[i0:i1]), dtype=pl.String))
    return pl.select(pl.concat_str(parts, separator=separator)).to_series()


def render_chunk(
    org: Organisation,
    dialect: Dialect,
    chunk: Cases,
    overrides: dict[str, list[Patch]],
    first_row: int,
    ctx: Context,
    written: Written,
    offset: int = 0,
) -> list[tuple[Column, pl.Series, pl.Series | None]]:
    """Every column of rows [first_row, first_row + chunk.size) of an export.

    `offset` is the export's first row in `cases`: overrides are keyed by rows of `cases`.

    Returns (column, values, text) where text, when given, overrides values row by row (used for
    XLSX, where a date column may also hold month-only text or an injected error).
    """
    schema = ctx.schema
    size = chunk.size
    out: list[tuple[Column, pl.Series, pl.Series | None]] = []
    identity = _identities(org, dialect, chunk, ctx, written, first_row)
    month_only = chunk["incident_month_only"] < dialect.month_only_share
    for column in layout(dialect, schema):
        text: pl.Series | None = None
        name = column.name
        if column.kind == "identifier":
            values = identity[name]
        elif column.kind == "system":
            values = _system(name, chunk, first_row, ctx, org)
        elif column.kind == "detail":
            codes = schema.codelist_of(schema.field(name)).values
            bit = codes.index(column.code or "")
            values = pl.Series(((chunk[name] >> bit) & 1).astype(np.int8)).cast(pl.String)
        elif column.kind == "summary" or schema.field(name).multi:
            values = _gather_codes(_multi_lookup(dialect, schema, name), chunk[name])
        elif name == "case_id":
            values = _case_ids(org, dialect, chunk)
        elif name == "survivor_age":
            age = pl.Series(chunk["survivor_age"].astype(np.int64))
            values = pl.select(pl.when(pl.Series(chunk["age_shown"])).then(age)).to_series()
            if dialect.suffix != ".xlsx":
                values = _localise(values.cast(pl.String), dialect)
        elif name == "date_of_birth":
            values = _dates(chunk["date_of_birth"], chunk["dob_given"], dialect.dob_format, dialect)
        elif name == "report_date":
            values = _dates(
                chunk["report_date"], np.ones(size, dtype=bool), dialect.report_format, dialect
            )
        elif name == "incident_date":
            given = chunk["incident_given"]
            values = _dates(
                chunk["incident_date"], given & ~month_only, dialect.incident_format, dialect
            )
            months = _dates(
                chunk["incident_date"], given & month_only, dialect.month_format, dialect
            )
            if values.dtype == pl.String:
                values = values.fill_null(months)
            else:
                text = months
        else:
            values = _gather_codes(_code_lookup(dialect, schema, name), chunk[name])
        lo = offset + first_row
        for patch in overrides.get(name, []) if column.kind == "field" else []:
            i0, i1 = (int(i) for i in np.searchsorted(patch.rows, [lo, lo + size]))
            if i0 == i1:
                continue
            written_text = _patch_text(patch, i0, i1, dialect, schema, name)
            positions = pl.Series(patch.rows[i0:i1] - lo, dtype=pl.Int64)
            if values.dtype == pl.String:
                values = values.scatter(positions, written_text)
            else:
                base = text if text is not None else pl.Series([None] * size, dtype=pl.String)
                text = base.scatter(positions, written_text)
        if name == "case_id" or name == "date_of_birth":
            _remember(written, name, values, text)
        out.append((column, values, text))
    return out


def _remember(written: Written, name: str, values: pl.Series, text: pl.Series | None) -> None:
    shown = values if values.dtype == pl.String else values.cast(pl.String)
    if text is not None:
        shown = text.fill_null(shown)
    written.add(name, shown)


def _identities(
    org: Organisation,
    dialect: Dialect,
    chunk: Cases,
    ctx: Context,
    written: Written,
    first_row: int,
) -> dict[str, pl.Series]:
    """Names, phone, address and notes of each row, in the export's script and language."""
    schema, s = ctx.schema, ctx.settings
    keys = {k[4:]: v for k, v in chunk.columns.items() if k.startswith("key_")}
    female = chunk["survivor_sex"] == schema.codelists["sex"].values.index("F")
    female |= (chunk["survivor_sex"] == schema.codelists["sex"].values.index("U")) & (
        keys["first"] % 2 == 0
    )
    kurdish_script = "kurdish_latin" if "kurdish_latin" in org.names else "kurdish"
    first, child, carer = person_names(
        (ctx.pools["arabic"], ctx.pools[kurdish_script]), keys, female, chunk["ethnicity"] == 1
    )
    frame = pl.DataFrame({"first": first, "child": child, "carer": carer})
    phone = _localise(phone_numbers(keys, plus_allowed=dialect.plus_phones), dialect)
    lang = dialect.text_lang
    governorates = schema.codelists["governorate"].codes
    districts = schema.codelists["district"].codes
    gov = pl.Series([g.label(lang) for g in governorates]).gather(
        pl.Series(chunk["governorate"].astype(np.int64))
    )
    district = _gather_codes(
        pl.Series([d.label(lang) for d in districts] + [None], dtype=pl.String), chunk["district"]
    )
    in_camp = chunk["population_group"] == schema.codelists["population_group"].values.index(
        "idp_in_camp"
    )
    address = _localise(addresses(keys, lang, gov, district, in_camp), dialect)
    note, mentions = notes(
        keys,
        lang,
        s["notes_given"],
        s["notes_mention_identifier"],
        frame.get_column("first"),
        frame.get_column("carer"),
        phone,
    )
    result = {
        "survivor_name": frame.get_column("child"),
        "caregiver_name": frame.get_column("carer"),
        "caregiver_phone": phone,
        "address": address,
        "notes": note,
    }
    for kind, values in result.items():
        written.add(kind, values)
    mentioned = np.flatnonzero(mentions)
    written.mention_rows.append(mentioned + first_row)
    for kind, values in (
        ("mentioned_names", frame.get_column("first")),
        ("mentioned_names", frame.get_column("carer")),
        ("mentioned_phones", phone),
    ):
        written.add(kind, values.gather(pl.Series(mentioned, dtype=pl.Int64)))
    return result


def _system(name: str, chunk: Cases, first_row: int, ctx: Context, org: Organisation) -> pl.Series:
    """KoboToolbox's own columns: submission id, uuid, submission time, index."""
    size = chunk.size
    index = np.arange(first_row + 1, first_row + size + 1, dtype=np.int64)
    if name == "_index":
        return pl.Series(index).cast(pl.String)
    if name == "_id":
        return pl.Series(index + 48_100_000 + 7 * len(org.slug)).cast(pl.String)
    rng = np.random.default_rng([ctx.seed, first_row, 7])
    if name == "_uuid":
        raw = rng.bytes(16 * size)
        hexes = [raw[i : i + 16].hex() for i in range(0, 16 * size, 16)]
        return pl.Series(
            [f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}" for h in hexes], dtype=pl.String
        )
    seconds = rng.integers(8 * 3600, 17 * 3600, size)
    millis = (chunk["report_date"].astype(np.int64) * 86_400 + seconds) * 1000
    stamp = pl.Series(millis).cast(pl.Datetime("ms"))
    return stamp.dt.strftime("%Y-%m-%dT%H:%M:%S")


# --- files --------------------------------------------------------------------------------------


def chunks(start: int, stop: int, size: int = CHUNK_ROWS) -> Iterator[tuple[int, int]]:
    """[lo, hi) ranges covering [start, stop)."""
    for lo in range(start, stop, size):
        yield lo, min(lo + size, stop)


def write_export(
    path: Path,
    org: Organisation,
    dialect: Dialect,
    cases: Cases,
    start: int,
    stop: int,
    overrides: dict[str, list[Patch]],
    ctx: Context,
    advance: Callable[[int], None],
) -> Written:
    """Write rows [start, stop) of `cases` (one organisation's, in order) as one export file."""
    written = Written(collect=stop - start <= INLINE_IDENTIFIERS)
    if dialect.suffix == ".xlsx":
        _write_xlsx(path, org, dialect, cases, start, stop, overrides, ctx, written, advance)
    elif dialect.suffix == ".parquet":
        _write_parquet(path, org, dialect, cases, start, stop, overrides, ctx, written, advance)
    else:
        _write_csv(path, org, dialect, cases, start, stop, overrides, ctx, written, advance)
    return written


def _frame(rendered: list[tuple[Column, pl.Series, pl.Series | None]]) -> pl.DataFrame:
    series = []
    for column, values, text in rendered:
        shown = values if values.dtype == pl.String else values.cast(pl.String)
        if text is not None:
            shown = text.fill_null(shown)
        series.append(shown.alias(column.header))
    return pl.DataFrame(series)


def _pipeline(
    org: Organisation,
    dialect: Dialect,
    cases: Cases,
    start: int,
    stop: int,
    overrides: dict[str, list[Patch]],
    ctx: Context,
    written: Written,
    finish: Callable[[int, pl.DataFrame], T],
) -> Iterator[tuple[int, int, T]]:
    """Rendered and finished chunks, in order. Two chunks are rendered ahead in threads while
    the caller writes: polars releases the GIL, so both cores stay busy."""
    from concurrent.futures import Future, ThreadPoolExecutor

    def work(lo: int, hi: int) -> T:
        rendered = render_chunk(
            org, dialect, cases.slice(lo, hi), overrides, lo - start, ctx, written, start
        )
        return finish(lo, _frame(rendered))

    ranges = list(chunks(start, stop))
    with ThreadPoolExecutor(max_workers=2) as workers:
        pending: list[Future[T]] = [workers.submit(work, *r) for r in ranges[:2]]
        for i, (lo, hi) in enumerate(ranges):
            result = pending.pop(0).result()
            if i + 2 < len(ranges):
                pending.append(workers.submit(work, *ranges[i + 2]))
            yield lo, hi, result


def _write_csv(
    path: Path,
    org: Organisation,
    dialect: Dialect,
    cases: Cases,
    start: int,
    stop: int,
    overrides: dict[str, list[Patch]],
    ctx: Context,
    written: Written,
    advance: Callable[[int], None],
) -> None:
    with path.open("wb") as handle:
        for lo, hi, frame in _pipeline(
            org, dialect, cases, start, stop, overrides, ctx, written, lambda lo, f: f
        ):
            options: dict[str, Any] = {
                "include_header": lo == start,
                "separator": dialect.separator,
                "quote_style": "always" if dialect.quote_all else "necessary",
                "line_terminator": dialect.line_terminator,
            }
            if not dialect.encoding.startswith("utf-8"):
                handle.write(frame.write_csv(**options).encode(dialect.encoding))
            else:
                if lo == start and dialect.encoding == "utf-8-sig":
                    handle.write("\ufeff".encode())  # the BOM Excel writes and expects
                # Straight to the file: the fastest of polars' CSV paths.
                frame.write_csv(handle, **options)
            advance(hi - lo)


def _write_parquet(
    path: Path,
    org: Organisation,
    dialect: Dialect,
    cases: Cases,
    start: int,
    stop: int,
    overrides: dict[str, list[Patch]],
    ctx: Context,
    written: Written,
    advance: Callable[[int], None],
) -> None:
    import pyarrow.parquet as pq

    writer: Any = None
    try:
        for lo, hi, table in _pipeline(
            org,
            dialect,
            cases,
            start,
            stop,
            overrides,
            ctx,
            written,
            lambda lo, frame: frame.to_arrow(),
        ):
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table)
            advance(hi - lo)
    finally:
        if writer is not None:
            writer.close()


def _write_xlsx(
    path: Path,
    org: Organisation,
    dialect: Dialect,
    cases: Cases,
    start: int,
    stop: int,
    overrides: dict[str, list[Patch]],
    ctx: Context,
    written: Written,
    advance: Callable[[int], None],
) -> None:
    import xlsxwriter

    workbook = xlsxwriter.Workbook(
        str(path),
        {
            "constant_memory": True,
            # Text stays text: no formulas, links or numbers made from what a cell says.
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
            "default_date_format": "dd/mm/yyyy" if dialect.date_order == "dmy" else "mm/dd/yyyy",
        },
    )
    workbook.set_properties({"created": FIXED_TIMESTAMP, "author": org.name})
    sheet = workbook.add_worksheet(dialect.sheet)
    if dialect.values in {"ar", "ckb"}:
        sheet.right_to_left()
    bold = workbook.add_format({"bold": True})
    row_number = 0
    for lo, hi in chunks(start, stop):
        rendered = render_chunk(
            org, dialect, cases.slice(lo, hi), overrides, lo - start, ctx, written, start
        )
        if lo == start:
            sheet.write_row(0, 0, [c.header for c, _, _ in rendered], bold)
        columns: list[list[Any]] = []
        for _, values, text in rendered:
            cells = values.to_list()
            if text is not None:
                for i, value in enumerate(text.to_list()):
                    if value is not None:
                        cells[i] = value
            columns.append(cells)
        for row in zip(*columns, strict=True):
            row_number += 1
            sheet.write_row(row_number, 0, row)
        advance(hi - lo)
    workbook.close()
