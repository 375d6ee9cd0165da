"""Read what CSOs export (CSV in any common encoding and dialect, XLSX, Parquet) as text, keeping row numbers."""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from casepool.core.errors import UnreadableFileError

ROW = "_row"  # row number as the user sees it: the header is row 1, the first record row 2
_SAMPLE_BYTES = 1 << 16
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_SEPARATORS = (",", ";", "\t", "|")
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]{1,3}")
_MIXED_MIN_SEQUENCES = 3
MIXED = "mixed"
_MAX_UNPACKED_WORKBOOK = 1 << 31  # 2 GiB: real case exports are far smaller; zip bombs are not
_CSV_SUFFIXES = {".csv", ".txt", ".tsv", ".tab"}
_EXCEL_SUFFIXES = {".xlsx", ".xlsm", ".xls", ".ods"}
_MAGIC = {
    b"\x89PNG": "PNG image",
    b"%PDF": "PDF document",
    b"\xff\xd8\xff": "JPEG image",
    b"GIF8": "GIF image",
    b"\x1f\x8b": "gzip archive",
    b"Rar!": "RAR archive",
}


@dataclass(frozen=True)
class Export:
    """An export read as text: every column a String, original headers, plus the row number column."""

    path: Path
    format: str
    encoding: str | None
    separator: str | None
    frame: pl.DataFrame
    all_headers: tuple[str, ...] | None = None  # set when only some columns were parsed
    notes: dict[str, Any] = field(
        default_factory=dict
    )  # how the layout was read (sheet, header row)

    @property
    def headers(self) -> list[str]:
        """Every header of the file, also those whose columns were not parsed."""
        if self.all_headers is not None:
            return list(self.all_headers)
        return [c for c in self.frame.columns if c != ROW]

    @property
    def complete(self) -> bool:
        return self.all_headers is None or len(self.all_headers) == self.frame.width - 1

    @property
    def rows(self) -> int:
        return self.frame.height


ColumnChoice = Callable[[list[str]], list[str]]


def read_export(
    path: str | Path,
    *,
    encoding: str | None = None,
    sheet: str | None = None,
    columns: ColumnChoice | None = None,
) -> Export:
    """Read an export as text. Raises UnreadableFileError with the reason when it cannot.

    `columns`, given every header, names the ones to parse (CSV only; others read everything):
    validation skips names, addresses and notes it would never look at.
    """
    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError("file-missing", path=path.name)
    if path.stat().st_size == 0:
        raise UnreadableFileError("file-empty", path=path.name)
    suffix = path.suffix.lower()
    with path.open("rb") as handle:
        head = handle.read(8)
    all_headers: list[str] | None = None
    if suffix == ".parquet" or head.startswith(b"PAR1"):
        frame, fmt, used, separator = _read_parquet(path), "parquet", None, None
    elif suffix in _EXCEL_SUFFIXES or head.startswith(b"PK\x03\x04"):
        frame, fmt, used, separator = _read_excel(path, sheet), "xlsx", None, None
    elif suffix in _CSV_SUFFIXES or suffix == "":
        for magic, what in _MAGIC.items():
            if head.startswith(magic):
                raise UnreadableFileError("file-not-a-table", path=path.name, reason=what)
        frame, used, separator, all_headers = _read_csv(path, encoding, columns)
        fmt = "csv"
    else:
        raise UnreadableFileError("file-unsupported", path=path.name, suffix=suffix)
    if frame.height == 0:
        raise UnreadableFileError("file-no-rows", path=path.name)
    frame = frame.with_columns(pl.int_range(2, frame.height + 2, dtype=pl.Int64).alias(ROW))
    return Export(
        path=path,
        format=fmt,
        encoding=used,
        separator=separator,
        frame=frame,
        all_headers=tuple(all_headers) if all_headers is not None else None,
    )


# --- CSV ---------------------------------------------------------------------------------------


def detect_encoding(sample: bytes) -> str:
    """The encoding of a CSV sample: a BOM, else UTF-8 if it decodes, else the best legacy match."""
    for bom, name in _BOMS:
        if sample.startswith(bom):
            return name
    if _looks_utf16(sample):
        return "utf-16-le" if sample[1:2] == b"\x00" else "utf-16-be"
    try:
        # An incremental decoder tolerates a sample cut in the middle of a character.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    valid = len(_UTF8_SEQUENCE.findall(sample))
    invalid = sample.decode("utf-8", errors="replace").count("\ufffd")
    if valid >= _MIXED_MIN_SEQUENCES and valid > invalid:
        # Mostly valid UTF-8 with some bytes that are not: two encodings pasted together.
        # (A legacy single-byte file, e.g. cp1256 Arabic, is mostly invalid as UTF-8.)
        return MIXED
    from charset_normalizer import from_bytes

    best = from_bytes(sample, cp_isolation=["cp1256", "iso8859_6", "cp1252"]).best()
    return best.encoding if best is not None else "cp1256"


def _looks_utf16(sample: bytes) -> bool:
    """UTF-16 without BOM: every other byte of ASCII-range text is NUL."""
    pairs = sample[:2000]
    if len(pairs) < 4:
        return False
    even_nuls = pairs[0::2].count(0) / len(pairs[0::2])
    odd_nuls = pairs[1::2].count(0) / len(pairs[1::2])
    return max(even_nuls, odd_nuls) > 0.3 and min(even_nuls, odd_nuls) < 0.05


def _check_codec(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError as exc:
        raise UnreadableFileError("unknown-encoding", encoding=encoding) from exc


def _read_csv(
    path: Path, encoding: str | None, choose: ColumnChoice | None = None
) -> tuple[pl.DataFrame, str, str, list[str] | None]:
    with path.open("rb") as handle:
        sample = handle.read(_SAMPLE_BYTES)
    used = _check_codec(encoding) if encoding else detect_encoding(sample)
    if used == MIXED:
        raise UnreadableFileError(
            "file-undecodable", path=path.name, encoding="UTF-8 mixed with another encoding"
        )
    if b"\x00" in sample and not used.startswith("utf-16"):
        raise UnreadableFileError("file-not-a-table", path=path.name, reason="binary content")
    source: Path | io.BytesIO
    if codecs.lookup(used).name == "utf-8" and not sample.startswith(codecs.BOM_UTF8):
        try:
            text_head = codecs.getincrementaldecoder("utf-8")().decode(sample)
        except UnicodeDecodeError as exc:
            raise UnreadableFileError("file-undecodable", path=path.name, encoding=used) from exc
        source = path
    else:
        # Transcode in memory: polars and duckdb read UTF-8 only (see libraries.md).
        try:
            text = path.read_bytes().decode(used)
        except UnicodeDecodeError as exc:
            raise UnreadableFileError("file-undecodable", path=path.name, encoding=used) from exc
        text = text.removeprefix("\ufeff")
        text_head = text[:_SAMPLE_BYTES]
        source = io.BytesIO(text.encode("utf-8"))
    if not text_head.strip():
        raise UnreadableFileError("file-empty", path=path.name)
    separator = _detect_separator(text_head)
    headers = _header_cells(text_head, separator)
    _check_headers(path, headers)
    options: dict[str, Any] = {
        "separator": separator,
        "infer_schema": False,
        "has_header": True,
        "quote_char": '"',
        "empty_string_is_null": True,
        "truncate_ragged_lines": False,
        "encoding": "utf8",
        "raise_if_empty": True,
    }
    all_headers: list[str] | None = None
    try:
        if choose is not None:
            all_headers = pl.read_csv(source, n_rows=0, **options).columns
            if isinstance(source, io.BytesIO):
                source.seek(0)
            wanted = choose(all_headers)
            if len(wanted) < len(all_headers):
                options["columns"] = wanted
        frame = pl.read_csv(source, **options)
    except pl.exceptions.NoDataError as exc:
        raise UnreadableFileError("file-empty", path=path.name) from exc
    except (pl.exceptions.ComputeError, pl.exceptions.PolarsError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "utf" in reason.lower():
            raise UnreadableFileError("file-undecodable", path=path.name, encoding=used) from exc
        raise UnreadableFileError(
            "file-not-a-table", path=path.name, reason="malformed CSV"
        ) from exc
    return frame, used, separator, all_headers


def _detect_separator(text_head: str) -> str:
    """The separator that occurs most often in the header line, outside quotes."""
    first_line = next(iter(text_head.splitlines()), "")
    unquoted = "".join(part for i, part in enumerate(first_line.split('"')) if i % 2 == 0)
    counts = {sep: unquoted.count(sep) for sep in _SEPARATORS}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def _header_cells(text_head: str, separator: str) -> list[str]:
    reader = csv.reader(io.StringIO(text_head, newline=""), delimiter=separator, quotechar='"')
    try:
        return next(reader, [])
    except csv.Error:
        return []  # polars gives the precise refusal when it parses the whole file


def _check_headers(path: Path, headers: list[str]) -> None:
    seen: set[str] = set()
    for header in headers:
        name = header.strip()
        if name and name in seen:
            raise UnreadableFileError("file-duplicate-headers", path=path.name, header=name)
        seen.add(name)


# --- XLSX and Parquet -------------------------------------------------------------------------


def _check_workbook_size(path: Path) -> None:
    """Refuse a workbook whose members unpack to more than any real export (a zip bomb)."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnreadableFileError(
            "file-not-a-table", path=path.name, reason="not a readable workbook"
        ) from exc
    if unpacked > _MAX_UNPACKED_WORKBOOK:
        raise UnreadableFileError(
            "file-not-a-table", path=path.name, reason="workbook too large when unpacked"
        )


def _read_excel(path: Path, sheet: str | None) -> pl.DataFrame:
    import fastexcel

    if path.suffix.lower() != ".xls":
        _check_workbook_size(path)

    try:
        workbook = fastexcel.read_excel(path)
    except Exception as exc:  # calamine raises its own error types for broken zips and XML
        raise UnreadableFileError(
            "file-not-a-table", path=path.name, reason="not a readable workbook"
        ) from exc
    if sheet is not None and sheet not in workbook.sheet_names:
        raise UnreadableFileError("file-sheet-missing", path=path.name, sheet=sheet)
    try:
        loaded = workbook.load_sheet(sheet if sheet is not None else 0, dtypes="string")
        frame = loaded.to_polars()
    except Exception as exc:
        raise UnreadableFileError(
            "file-not-a-table", path=path.name, reason="unreadable sheet"
        ) from exc
    headers = [str(c) for c in frame.columns]
    _check_headers(path, [h for h in headers if not h.startswith("__UNNAMED__")])
    return frame.select(pl.all().cast(pl.String))


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:
        raise UnreadableFileError(
            "file-not-a-table", path=path.name, reason="unreadable Parquet"
        ) from exc
    return frame.select(
        [
            pl.col(c).dt.strftime("%Y-%m-%d").alias(c)
            if frame.schema[c] in (pl.Date, pl.Datetime)
            else pl.col(c).cast(pl.String)
            for c in frame.columns
        ]
    )
