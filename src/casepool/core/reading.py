"""Read what CSOs export (CSV in any common encoding and dialect, XLSX, Parquet) as text, keeping row numbers."""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import queue
import re
import struct
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Never, TypeVar

import polars as pl

from casepool.core.errors import UnreadableFileError

T = TypeVar("T")
ROW = "_row"  # row number as the user sees it: the header is row 1, the first record row 2
BATCH_ROWS = 100_000  # rows of a CSV read and checked at a time (memory stays flat in rows)
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
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # Excel 97-2003 (.xls) compound file
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
class RaggedRow:
    """A CSV record with more or fewer cells than the header: left out of the frame, reported."""

    row: int  # numbered like every other row of the frame (header 1, first record 2)
    line: int  # the line of the file it starts on (differs from row after multi-line cells)
    found: int
    expected: int

    def to_dict(self) -> dict[str, int]:
        return {"row": self.row, "line": self.line, "found": self.found, "expected": self.expected}


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
    ragged: tuple[RaggedRow, ...] = ()  # CSV records left out for their number of cells
    batched: bool = False  # the rows were read in batches (read_export_batches), not kept here

    @property
    def headers(self) -> list[str]:
        """Every header of the file, also those whose columns were not parsed."""
        if self.all_headers is not None:
            return list(self.all_headers)
        return [c for c in self.frame.columns if c != ROW]

    @property
    def complete(self) -> bool:
        if self.batched:
            return False
        return self.all_headers is None or len(self.all_headers) == self.frame.width - 1

    @property
    def rows(self) -> int:
        return self.frame.height


ColumnChoice = Callable[[list[str]], list[str]]
HeaderScore = Callable[[list[str]], int]  # how many cells of a candidate header row name a field
HEADER_SEARCH_ROWS = 30  # title rows above the header: an officer's sheet has a few, not dozens
SURE_SHEET_SCORE = 3  # a data sheet's header names at least this many fields


def read_export(
    path: str | Path,
    *,
    encoding: str | None = None,
    sheet: str | None = None,
    columns: ColumnChoice | None = None,
    header_score: HeaderScore | None = None,
) -> Export:
    """Read an export as text. Raises UnreadableFileError with the reason when it cannot.

    `columns`, given every header, names the ones to parse (CSV only; others read everything):
    validation skips names, addresses and notes it would never look at. `header_score` finds a
    workbook's data sheet and its header row below title rows (default: the first sheet, and its
    row with the most filled cells among the first rows).
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
    notes: dict[str, Any] = {}
    ragged: list[RaggedRow] = []
    if suffix == ".parquet" or head.startswith(b"PAR1"):
        frame, fmt, used, separator = _read_parquet(path), "parquet", None, None
    elif suffix in _EXCEL_SUFFIXES or head.startswith((b"PK\x03\x04", _OLE_MAGIC)):
        frame, notes = _read_excel(path, sheet, header_score)
        fmt = "xls" if head.startswith(_OLE_MAGIC) else "xlsx"
        used, separator = None, None
    elif suffix in _CSV_SUFFIXES or suffix == "":
        for magic, what in _MAGIC.items():
            if head.startswith(magic):
                raise UnreadableFileError("file-not-a-table", path=path.name, reason=what)
        frame, used, separator, all_headers, ragged = _read_csv(path, encoding, columns)
        fmt = "csv"
    else:
        raise UnreadableFileError("file-unsupported", path=path.name, suffix=suffix)
    if fmt == "csv":  # numbered by line first, so a blank line keeps the numbers after it
        if ROW not in frame.columns:
            frame = frame.with_columns(pl.int_range(2, frame.height + 2, dtype=pl.Int64).alias(ROW))
        frame = without_blank_rows(frame)
    if frame.height == 0:
        raise UnreadableFileError("file-no-rows", path=path.name)
    if ROW not in frame.columns:
        frame = frame.with_columns(pl.int_range(2, frame.height + 2, dtype=pl.Int64).alias(ROW))
    return Export(
        path=path,
        format=fmt,
        encoding=used,
        separator=separator,
        frame=frame,
        all_headers=tuple(all_headers) if all_headers is not None else None,
        notes=notes,
        ragged=tuple(ragged),
    )


def read_export_batches(
    path: str | Path,
    *,
    encoding: str | None = None,
    columns: ColumnChoice | None = None,
    batch_rows: int = BATCH_ROWS,
) -> tuple[Export, Iterator[pl.DataFrame]] | None:
    """A CSV export read `batch_rows` rows at a time: its Export (with no rows: only the
    layout) and the batches as text with ROW, numbered as read_export numbers them.

    None when the file is not a CSV read as read_export would (a workbook, Parquet, or a file it
    refuses before parsing): the caller reads it whole. Refusals found while parsing are raised
    by the iterator with read_export's keys, the last ones (rows with the wrong number of
    cells, no rows at all) once every batch was read, as read_export raises them after parsing.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    suffix = path.suffix.lower()
    with path.open("rb") as handle:
        head = handle.read(8)
    if suffix not in _CSV_SUFFIXES and suffix != "":
        return None
    if head.startswith((b"PAR1", b"PK\x03\x04", _OLE_MAGIC, *_MAGIC)):
        return None
    source, used, separator, options, all_headers = _prepare_csv(
        path, encoding, columns, stream=True
    )
    try:
        layout = pl.read_csv(_head_of(source), **(options | {"n_rows": 0}))
    except pl.exceptions.NoDataError as exc:
        raise UnreadableFileError("file-empty", path=path.name) from exc
    except (pl.exceptions.ComputeError, pl.exceptions.PolarsError) as exc:
        _refuse_malformed(path, _in_memory(source), separator, used, exc, batched=True)
    if isinstance(source, io.BytesIO):
        source.seek(0)
    export = Export(
        path=path,
        format="csv",
        encoding=used,
        separator=separator,
        frame=layout.with_columns(pl.lit(None, dtype=pl.Int64).alias(ROW)),
        all_headers=tuple(all_headers) if all_headers is not None else None,
        batched=True,
    )
    if isinstance(source, Path) and path.stat().st_size > ROW_CHECK_MAX_BYTES:
        # A UTF-8 file too large for the cells of each record to be counted: Python never
        # needs its bytes, so polars reads it in batches itself (on its own threads).
        return export, _polars_batches(path, used, separator, options, batch_rows)
    return export, _csv_batches(path, source, used, separator, options, batch_rows)


def within_one_batch(path: str | Path, batch_rows: int) -> bool:
    """Whether a file holds about `batch_rows` records or fewer (a short tail included), by its
    size over the length of its first lines: read in batches it would be one batch, so reading
    it whole holds no more and costs less (no cutting, polars' parallel read of the file).
    Long first lines make the estimate low: a file over the largest batch is never one."""
    try:
        size = Path(path).stat().st_size
        with Path(path).open("rb") as handle:
            sample = handle.read(_SAMPLE_BYTES)
    except OSError:
        return False
    lines = sample.count(b"\n")
    if not lines or size > _MAX_BATCH_BYTES:  # never more than the largest batch cut in Python
        return False
    records = lines if len(sample) >= size else size * lines / len(sample)
    return records <= batch_rows + batch_rows // _TAIL_SHARE


_READ_BYTES = 1 << 23  # a CSV read in batches is read from disk at least 8 MiB at a time
_MAX_BATCH_BYTES = 1 << 27  # and a batch is cut after at most 128 MiB (or at the record's end)
_TAIL_SHARE = 4  # the file's last records join the batch before when under a quarter of one


def _csv_batches(
    path: Path,
    source: Path | io.BytesIO | _Transcoded,
    used: str,
    separator: str,
    options: dict[str, Any],
    batch_rows: int,
) -> Iterator[pl.DataFrame]:
    """Batches of about `batch_rows` records, each parsed by polars as the header plus its lines.

    The file is read with plain reads, never mapped (a mapped file counts in the process's
    memory as it is read), and cut only after a newline preceded by an even number of quote
    characters: where polars itself splits records, so no quoted field is ever cut.
    """
    read = kept = 0  # records parsed (blank lines included, for numbering), records yielded
    # Each batch's cells are counted as it passes (no second read of the file); only when that
    # is unsure is the whole file read again record by record, which lists ragged rows exactly.
    check_rows, unsure = path.stat().st_size <= ROW_CHECK_MAX_BYTES, False
    handle: Any
    if isinstance(source, _Transcoded):
        handle = source.open()
    else:
        handle = source if isinstance(source, io.BytesIO) else path.open("rb")
        handle.seek(0)
    try:
        header, remainder, at_end = b"", b"", False
        target = 0  # bytes of a batch: about batch_rows records, once the header is known
        plain = not isinstance(source, _Transcoded)  # a short read means the end of the file
        while not at_end:
            requested = max(_READ_BYTES, target - len(remainder))
            piece = handle.read(requested)
            at_end = not piece
            last = plain and 0 < len(piece) < requested
            if not header:
                piece, remainder = remainder + piece, b""
                cut = _record_end(piece, 0, 0, 0)
                if cut is None and not at_end:
                    remainder = piece
                    continue
                header, piece = piece[: cut or len(piece)], piece[cut or len(piece) :]
                per_record = len(piece) / max(piece.count(b"\n"), 1)
                # A batch of giant lines is cut by size (memory stays bounded), not by rows.
                target = max(1, min(int(per_record * batch_rows), _MAX_BATCH_BYTES))
            start = 0  # what of `piece` is not yet in a batch
            while True:
                parity = remainder.count(b'"') % 2
                wanted = start + max(target - len(remainder), 1) - 1
                cut = _record_end(piece, min(wanted, len(piece)), start, parity)
                if last and cut is not None and (len(piece) - cut) * _TAIL_SHARE < target:
                    cut = len(piece)  # a short tail joins this batch rather than making its own
                if cut is None:
                    if not at_end:  # the rest waits for the next piece
                        remainder += piece[start:]
                        break
                    cut = len(piece)
                if not remainder and cut == start:
                    break
                data = b"".join((header, remainder, memoryview(piece)[start:cut]))
                remainder, start = b"", cut
                batch = _parse_batch(path, data, source, used, separator, options)
                if batch.height:
                    first = read + 2
                    read += batch.height
                    batch = without_blank_rows(
                        batch.with_columns(
                            pl.int_range(first, first + batch.height, dtype=pl.Int64).alias(ROW)
                        )
                    )
                    kept += batch.height
                    if batch.height:
                        yield batch
                # After the batch is handed over: read ahead (read_ahead), this count runs
                # while the batch is checked.
                if check_rows and not unsure:
                    unsure = not _cells_even(data, separator)
    finally:
        if not isinstance(source, io.BytesIO):
            handle.close()
    if kept == 0:
        raise UnreadableFileError("file-no-rows", path=path.name)
    if unsure:
        ragged, _ = _ragged_rows(path, _in_memory(source), separator)
        if ragged:
            raise ReadWhole()


_INDEX = "__casepool_line"  # polars' own record count, before ROW is made from it
# polars' streaming reader parses a few chunks ahead of the one it hands over: it is asked for
# quarter batches and two are handed over together, so the reader's chunks and the batch being
# checked stay within what the Python cut's whole batches take (≤ 2× the input at 1M rows).
_READER_CHUNK = 4  # rows of a reader chunk: batch_rows // this
_HANDED_OVER = 2  # rows of a batch: batch_rows // this


def _polars_batches(
    path: Path, used: str, separator: str, options: dict[str, Any], batch_rows: int
) -> Iterator[pl.DataFrame]:
    """Batches of about half `batch_rows` records of a UTF-8 file, cut and parsed by polars'
    streaming reader (the same parser and options as the whole file's read, on polars' own
    threads, no bytes through Python), numbered as _csv_batches numbers them (blank lines
    counted, then left out)."""
    scan = {k: v for k, v in options.items() if k not in ("columns", "raise_if_empty")}
    lazy = pl.scan_csv(path, **scan, raise_if_empty=False, row_index_name=_INDEX)
    if "columns" in options:
        lazy = lazy.select(_INDEX, *options["columns"])
    wanted = max(1, batch_rows // _HANDED_OVER)
    kept, held, parts = 0, 0, []
    try:
        for read in lazy.collect_batches(chunk_size=max(1, batch_rows // _READER_CHUNK)):
            part = without_blank_rows(
                read.with_columns((pl.col(_INDEX).cast(pl.Int64) + 2).alias(ROW)).drop(_INDEX)
            )
            parts.append(part)
            held += part.height
            if held >= wanted:
                kept += held
                batch, parts, held = pl.concat(parts, rechunk=False), [], 0
                yield batch
    except (pl.exceptions.ComputeError, pl.exceptions.PolarsError) as exc:
        _refuse_malformed(path, path, separator, used, exc, batched=True)
    if held:
        kept += held
        yield pl.concat(parts, rechunk=False)
    if kept == 0:
        raise UnreadableFileError("file-no-rows", path=path.name)


def read_ahead(batches: Iterator[T]) -> Iterator[T]:
    """The same items in the same order, the next one made in a worker thread while the
    caller works on this one (the two cores overlap: the cutting, counting and parsing of a
    CSV's next batch with the checks of this one). At most one item is made ahead, so memory
    holds one batch more; an exception of the iterator is raised where it would have been.
    """
    results: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
    wanted = threading.Semaphore(1)
    stop = threading.Event()

    def work() -> None:
        try:
            while True:
                wanted.acquire()
                if stop.is_set():
                    return
                try:
                    item = next(batches)
                except StopIteration:
                    results.put((False, None))
                    return
                except BaseException as exc:  # raised in the caller's thread instead
                    results.put((False, exc))
                    return
                results.put((True, item))
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name="casepool-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            more, item = results.get()
            if not more:
                if item is not None:
                    raise item
                return
            wanted.release()  # the next one is made while this one is used
            yield item
    finally:
        stop.set()
        wanted.release()
        worker.join()


def _record_end(data: bytes, position: int, begin: int, parity: int) -> int | None:
    """Just past the first newline at or after `position` in `data` that ends a record: with an
    even number of quote characters before it since a record began at `begin` (`parity`: the
    quotes before `begin`, mod 2). None when there is none."""
    quotes = parity + data.count(b'"', begin, position)
    while (newline := data.find(b"\n", position)) >= 0:
        quotes += data.count(b'"', position, newline)
        if quotes % 2 == 0:
            return newline + 1
        position = newline + 1
    return None


def _parse_batch(
    path: Path,
    data: bytes,
    source: Path | io.BytesIO | _Transcoded,
    used: str,
    separator: str,
    options: dict[str, Any],
) -> pl.DataFrame:
    try:
        return pl.read_csv(io.BytesIO(data), **(options | {"raise_if_empty": False}))
    except (pl.exceptions.ComputeError, pl.exceptions.PolarsError) as exc:
        _refuse_malformed(path, _in_memory(source), separator, used, exc, batched=True)


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
) -> tuple[pl.DataFrame, str, str, list[str] | None, list[RaggedRow]]:
    prepared, used, separator, options, all_headers = _prepare_csv(path, encoding, choose)
    source = _in_memory(prepared)  # read whole: never streamed

    def read() -> pl.DataFrame:
        if isinstance(source, io.BytesIO):
            source.seek(0)
        return pl.read_csv(source, **options)

    counted = None
    if isinstance(source, Path) and path.stat().st_size <= ROW_CHECK_MAX_BYTES:
        # Every record's cells are counted while polars parses (the count is byte work in
        # one thread, the parse runs on polars' own threads): the two overlap on two cores.
        counted = _started(lambda: _ragged_rows(path, source, separator))
    try:
        frame = read()
    except pl.exceptions.NoDataError as exc:
        _settled(counted)
        raise UnreadableFileError("file-empty", path=path.name) from exc
    except (pl.exceptions.ComputeError, pl.exceptions.PolarsError) as exc:
        _settled(counted)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "utf" in reason.lower():
            raise UnreadableFileError("file-undecodable", path=path.name, encoding=used) from exc
        ragged, records = _ragged_rows(path, source, separator, none_long=False)
        if not ragged:
            raise UnreadableFileError(
                "file-not-a-table", path=path.name, reason="malformed CSV"
            ) from exc
        # Lines with too many cells: read them cut to the header's width, then leave them out.
        options["truncate_ragged_lines"] = True
        try:
            frame = read()
        except pl.exceptions.PolarsError:  # something else is wrong too: refuse as before
            raise _ragged_refusal(path, ragged) from exc
        return frame_without(path, frame, ragged, records), used, separator, all_headers, ragged
    ragged = []
    if counted is not None or path.stat().st_size <= ROW_CHECK_MAX_BYTES:
        ragged, records = counted() if counted else _ragged_rows(path, source, separator)
        if ragged:
            frame = frame_without(path, frame, ragged, records)
    return frame, used, separator, all_headers, ragged


def _started(work: Callable[[], T]) -> Callable[[], T]:
    """`work` begun in a worker thread; the call returned waits for it and gives its result
    (or raises its exception, as calling `work` there would have)."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as exc:  # raised in the caller's thread instead
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="casepool-row-check", daemon=True)
    thread.start()

    def result() -> T:
        thread.join()
        done, value = outcome[0]
        if not done:
            raise value
        return value  # type: ignore[no-any-return]

    return result


def _settled(started: Callable[[], Any] | None) -> None:
    """Wait for work begun with _started whose result is no longer wanted."""
    if started is not None:
        with contextlib.suppress(Exception):  # the caller refuses the file for its own reason
            started()


class ReadWhole(Exception):
    """A CSV read in batches holds records with the wrong number of cells: the caller reads it
    whole instead (read_export lists those records and reads the others)."""


def _ragged_refusal(path: Path, ragged: list[RaggedRow]) -> UnreadableFileError:
    first = ragged[0]
    return UnreadableFileError(
        "file-ragged-rows",
        path=path.name,
        line=first.line,
        found=first.found,
        expected=first.expected,
    )


def _refuse_malformed(
    path: Path,
    source: Path | io.BytesIO,
    separator: str,
    used: str,
    exc: Exception,
    *,
    batched: bool = False,
) -> Never:
    """The refusal of a CSV polars could not parse: undecodable, ragged, or malformed (read in
    batches, a ragged file raises ReadWhole: read whole, its ragged records are listed)."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "utf" in reason.lower():
        raise UnreadableFileError("file-undecodable", path=path.name, encoding=used) from exc
    ragged, _ = _ragged_rows(path, source, separator, none_long=False)
    if ragged:
        if batched:
            raise ReadWhole() from exc
        raise _ragged_refusal(path, ragged) from exc
    raise UnreadableFileError("file-not-a-table", path=path.name, reason="malformed CSV") from exc


class _Transcoded:
    """A CSV in another encoding than UTF-8, read as UTF-8 a block at a time (`open`), never
    whole in memory; `whole()` gives the old in-memory transcoding for the rare paths that
    need every byte at once (a refusal's diagnosis, the exact ragged-row listing)."""

    def __init__(self, path: Path, encoding: str, head: str) -> None:
        self.path, self.encoding = path, encoding
        self.head = io.BytesIO(head.encode("utf-8"))  # the layout and headers are read from it

    def open(self) -> _TranscodingReader:
        return _TranscodingReader(self.path, self.encoding)

    def whole(self) -> io.BytesIO:
        try:
            text = self.path.read_bytes().decode(self.encoding)
        except UnicodeDecodeError as exc:
            raise UnreadableFileError(
                "file-undecodable", path=self.path.name, encoding=self.encoding
            ) from exc
        return io.BytesIO(text.removeprefix("\ufeff").encode("utf-8"))


class _TranscodingReader:
    """`read(n)`: about n bytes of the file decoded incrementally and encoded as UTF-8 (a
    character cut between two reads is finished by the next), the byte-order mark left out,
    b"" at the end, as path.read_bytes().decode(encoding) would give them."""

    def __init__(self, path: Path, encoding: str) -> None:
        self.path, self.encoding = path, encoding
        self.handle = path.open("rb")
        self.decoder = codecs.getincrementaldecoder(encoding)()
        self.started = self.ended = False

    def read(self, size: int) -> bytes:
        while not self.ended:
            block = self.handle.read(size)
            self.ended = not block
            try:
                text = self.decoder.decode(block, final=self.ended)
            except UnicodeDecodeError as exc:
                raise UnreadableFileError(
                    "file-undecodable", path=self.path.name, encoding=self.encoding
                ) from exc
            if not self.started and text:
                text, self.started = text.removeprefix("\ufeff"), True
            if text:
                return text.encode("utf-8")
        return b""

    def close(self) -> None:
        self.handle.close()


def _decoded_head(path: Path, sample: bytes, encoding: str) -> str:
    """The sample decoded (a character cut at its end left out), without a byte-order mark."""
    try:
        text = codecs.getincrementaldecoder(encoding)().decode(sample)
    except UnicodeDecodeError as exc:
        raise UnreadableFileError("file-undecodable", path=path.name, encoding=encoding) from exc
    return text.removeprefix("\ufeff")


def _head_of(source: Path | io.BytesIO | _Transcoded) -> Path | io.BytesIO:
    if isinstance(source, _Transcoded):
        source.head.seek(0)
        return source.head
    return source


def _in_memory(source: Path | io.BytesIO | _Transcoded) -> Path | io.BytesIO:
    return source.whole() if isinstance(source, _Transcoded) else source


def _prepare_csv(
    path: Path, encoding: str | None, choose: ColumnChoice | None = None, *, stream: bool = False
) -> tuple[Path | io.BytesIO | _Transcoded, str, str, dict[str, Any], list[str] | None]:
    """The source to parse (the file, or its UTF-8 transcoding), encoding, separator, the
    options of polars' reader and, when `choose` picked columns, every header.

    With `stream` a file in another encoding is transcoded as it is read (a _Transcoded),
    not whole in memory, when its sample holds the whole header line."""
    with path.open("rb") as handle:
        sample = handle.read(_SAMPLE_BYTES)
    used = _check_codec(encoding) if encoding else detect_encoding(sample)
    if used == MIXED:
        raise UnreadableFileError(
            "file-undecodable", path=path.name, encoding="UTF-8 mixed with another encoding"
        )
    if b"\x00" in sample and not used.startswith("utf-16"):
        raise UnreadableFileError("file-not-a-table", path=path.name, reason="binary content")
    source: Path | io.BytesIO | _Transcoded
    if codecs.lookup(used).name == "utf-8" and not sample.startswith(codecs.BOM_UTF8):
        try:
            text_head = codecs.getincrementaldecoder("utf-8")().decode(sample)
        except UnicodeDecodeError as exc:
            raise UnreadableFileError("file-undecodable", path=path.name, encoding=used) from exc
        source = path
    elif stream and "\n" in (head := _decoded_head(path, sample, used)):
        text_head = head
        source = _Transcoded(path, used, head)
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
    if choose is not None:
        try:
            all_headers = pl.read_csv(_head_of(source), n_rows=0, **options).columns
        except pl.exceptions.NoDataError as exc:
            raise UnreadableFileError("file-empty", path=path.name) from exc
        except (pl.exceptions.ComputeError, pl.exceptions.PolarsError) as exc:
            _refuse_malformed(path, _in_memory(source), separator, used, exc)
        if isinstance(source, io.BytesIO):
            source.seek(0)
        wanted = choose(all_headers)
        if len(wanted) < len(all_headers):
            options["columns"] = wanted
    return source, used, separator, options, all_headers


def without_blank_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame less its blank lines (every cell empty or spaces): polars reads a blank CSV line
    as a row of nulls, which is not a record of the export."""
    cells = [c for c in frame.columns if c != ROW]
    if not cells:
        return frame

    where = {c: i for i, c in enumerate(frame.columns)}

    def empty(c: str) -> pl.Expr:
        # By position, never by name: a header named "*" or "^…$" is a wildcard to pl.col.
        cell = pl.nth(where[c])
        return cell.is_null() | (cell.str.strip_chars() == "")

    # Only a row whose first cell is empty can be blank: the others are checked on those alone.
    candidates = frame.select(empty(cells[0]).arg_true().alias("blank")).to_series()
    if candidates.len() == 0:
        return frame
    dropped = candidates
    if len(cells) > 1:
        rest = frame[candidates].select(
            pl.all_horizontal(empty(c) for c in cells[1:]).alias("blank")
        )
        dropped = candidates.filter(rest.to_series())
    if dropped.len() == 0:
        return frame
    positions = pl.int_range(pl.len(), dtype=pl.Int64)
    return frame.filter(~positions.is_in(dropped.cast(pl.Int64).implode()))


ROW_CHECK_MAX_BYTES = 256 << 20  # every line's cells are counted in files up to this size


def frame_without(
    path: Path, frame: pl.DataFrame, ragged: list[RaggedRow], records: int
) -> pl.DataFrame:
    """The frame numbered as usual, less its ragged records; refused if nothing else is left.

    polars pads short lines and (told to) cuts long ones, one frame row per record, blank lines
    included: the frame's rows line up with the records counted while looking for ragged ones.
    A frame of another height, or one made only of ragged records (a header with a stray
    separator), is refused naming the first ragged line, as before rows were listed.
    """
    first = ragged[0]
    refusal = UnreadableFileError(
        "file-ragged-rows",
        path=path.name,
        line=first.line,
        found=first.found,
        expected=first.expected,
    )
    # Trailing blank lines may or may not give a row: the frame is at most that much shorter.
    if not (records - 1 - _TRAILING_SLACK <= frame.height <= records - 1):
        raise refusal
    numbered = frame.with_columns(pl.int_range(2, frame.height + 2, dtype=pl.Int64).alias(ROW))
    kept = numbered.filter(~pl.col(ROW).is_in([r.row for r in ragged]))
    if without_blank_rows(kept).height == 0:
        raise refusal
    return kept


_TRAILING_SLACK = 2
_BLANK_BYTES = (ord(" "), ord("\t"), ord("\r"))


def _unquoted_ragged_rows(
    data: bytes, separator: bytes, none_long: bool
) -> tuple[list[RaggedRow], int]:
    """The fast path of _ragged_rows for files without a quote: one record per line.

    When polars has already read the file, no line has too many cells, so when the file holds
    exactly (cells - 1) separators per non-blank line, none has too few either: two counts in C
    decide the common case; only a file that fails them is searched line by line.
    """
    first_line = data.split(b"\n", 1)[0]
    per_line = first_line.count(separator)
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    blank = data.count(b"\n\n") + data.startswith(b"\n")  # CRLF blanks: the exact path
    if none_long and data.count(separator) == per_line * (lines - blank):
        return [], lines
    import numpy as np

    buffer = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buffer == ord("\n"))
    if not data.endswith(b"\n"):
        ends = np.append(ends, len(data))
    starts = np.concatenate(([0], ends[:-1] + 1))
    separators = np.flatnonzero(buffer == separator[0])
    cells = np.searchsorted(separators, ends) - np.searchsorted(separators, starts) + 1
    # A line holding only spaces or a carriage return is blank: no cells to count.
    filled = np.concatenate(([0], np.cumsum(~np.isin(buffer, _BLANK_BYTES))))
    empty = (cells == 1) & (filled[ends] == filled[starts])
    counted = cells[~empty]
    numbers = np.flatnonzero(~empty) + 1
    if counted.size == 0:
        return [], len(ends)
    expected = int(counted[0])
    wrong = np.flatnonzero(counted != expected)
    ragged = [
        RaggedRow(
            row=int(numbers[i]), line=int(numbers[i]), found=int(counted[i]), expected=expected
        )
        for i in wrong
    ]
    return ragged, len(ends)


# What may come just before a quoted field's opening quote and just after its closing one
# (besides the separator, and besides the start and end of the file).
_FIELD_STARTS = frozenset(b"\n")
_FIELD_ENDS = frozenset(b"\r\n")


def _quoted_records_if_even(data: bytes, separator: str) -> int | None:
    """The fast path of _ragged_rows for a file with quotes that polars has already read: the
    number of records when provably no record has too few cells, else None (the caller then
    reads it record by record with the csv module, which lists them exactly).

    Split at every quote, the even pieces lie outside quoted fields and the odd ones inside
    (an escaped quote leaves an empty even piece between two odd ones). When every quoted field
    starts a cell and ends one (what csv.reader's strict mode demands), the separators and
    newlines of the even pieces are the cells and records csv.reader sees; as no record has too
    many cells (polars refuses those), as many separators as (cells - 1) per non-blank record
    means none has too few. Anything unusual (a lone carriage return, a CRLF blank line, a field
    over csv's size limit, a stray quote) returns None. (Bytes that are not UTF-8 were refused
    by polars already.)
    """
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    sep = separator.encode("utf-8")
    if len(sep) != 1 or b"\x00" in data:
        return None
    pieces = data.split(b'"')
    if len(pieces) % 2 == 0 or len(pieces) == 1:  # a quote never closed, or none at all
        return None
    starts, ends = _FIELD_STARTS | {sep[0]}, _FIELD_ENDS | {sep[0]}
    outsides = pieces[0::2]
    first, *middle, last = outsides
    if first and first[-1] not in starts:
        return None
    if last and last[0] not in ends:
        return None
    for piece in middle:  # empty: an escaped quote inside a quoted field
        if piece and (piece[0] not in ends or piece[-1] not in starts):
            return None
    limit = csv.field_size_limit()
    if max(map(len, pieces[1::2])) >= limit:
        return None
    outside = b"\x00".join(outsides)  # one NUL where each quoted field was
    if b"\r" in outside and outside.count(b"\r") != outside.count(b"\r\n"):
        return None
    if max(map(len, outsides)) >= limit and max(map(len, outside.split(b"\n"))) >= limit:
        return None  # a line as long as csv's limit on a cell: let the csv module judge
    first_end = outside.find(b"\n")
    header_cells = outside[: first_end if first_end >= 0 else len(outside)].count(sep) + 1
    records = outside.count(b"\n") + (0 if outside.endswith(b"\n") else 1)
    blank = outside.startswith(b"\n") + (outside.count(b"\n\n") if b"\n\n" in outside else 0)
    if outside.count(sep) != (header_cells - 1) * (records - blank):
        return None
    return records


def _cells_even(data: bytes, separator: str) -> bool:
    """True when no record of `data` (a header and whole records polars has read) provably has
    too few cells; False when unsure (a closer look is needed, see _ragged_rows)."""
    if b'"' in data:
        return _quoted_records_if_even(data, separator) is not None
    sep = separator.encode("utf-8")
    end = data.find(b"\n")
    per_line = (data if end < 0 else data[:end]).count(sep)
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    blank = data.startswith(b"\n") + (data.count(b"\n\n") if b"\n\n" in data else 0)
    return data.count(sep) == per_line * (lines - blank)


def _ragged_rows(
    path: Path, source: Path | io.BytesIO, separator: str, *, none_long: bool = True
) -> tuple[list[RaggedRow], int]:
    """Every record whose number of cells differs from the header's, and how many records the
    file holds (header and blank lines included). A quote never closed refuses the file, naming
    its line: polars would pad short lines silently and read on past a broken quote."""
    data = source.getvalue() if isinstance(source, io.BytesIO) else path.read_bytes()
    if b'"' not in data:
        return _unquoted_ragged_rows(data, separator.encode("utf-8"), none_long)
    if none_long and (records := _quoted_records_if_even(data, separator)) is not None:
        return [], records
    if isinstance(source, io.BytesIO):
        source.seek(0)
        handle: Any = io.TextIOWrapper(source, encoding="utf-8", newline="")
    else:
        handle = path.open(encoding="utf-8-sig", newline="")
    ragged: list[RaggedRow] = []
    try:
        reader = csv.reader(handle, delimiter=separator, quotechar='"', strict=True)
        expected: int | None = None
        records = 0
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return ragged, records
            except csv.Error:
                raise UnreadableFileError("file-broken-quote", path=path.name, line=start) from None
            except UnicodeDecodeError:  # a character cut at the end of the file
                raise UnreadableFileError(
                    "file-undecodable", path=path.name, encoding="utf-8"
                ) from None
            records += 1
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if expected is None:
                expected = len(cells)
            elif len(cells) != expected:
                ragged.append(
                    RaggedRow(row=records, line=start, found=len(cells), expected=expected)
                )
    finally:
        if isinstance(source, io.BytesIO):
            handle.detach()
            source.seek(0)
        else:
            handle.close()


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


def _read_excel(
    path: Path, sheet: str | None, score: HeaderScore | None
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The data sheet of a workbook as text with the user's row numbers, and how it was found.

    The data sheet is the one whose header names most fields (instruction sheets come first in
    many templates); its header row may sit below title rows; blank rows are skipped.
    """
    import fastexcel

    old = path.suffix.lower() == ".xls" or _starts_with(path, _OLE_MAGIC)
    if not old:
        _check_workbook_size(path)
    try:
        workbook = fastexcel.read_excel(path)
    except Exception as exc:  # calamine raises its own error types for broken zips and XML
        if old:
            raise UnreadableFileError("file-xls-old", path=path.name) from exc
        raise UnreadableFileError(
            "file-not-a-table", path=path.name, reason="not a readable workbook"
        ) from exc
    names = list(workbook.sheet_names)
    if sheet is not None and sheet not in names:
        raise UnreadableFileError("file-sheet-missing", path=path.name, sheet=sheet)

    def load(name: str, rows: int | None = None) -> pl.DataFrame:
        try:
            loaded = workbook.load_sheet(name, header_row=None, dtypes="string", n_rows=rows)
            return loaded.to_polars().select(pl.all().cast(pl.String))
        except Exception as exc:
            if old:
                raise UnreadableFileError("file-xls-old", path=path.name) from exc
            raise UnreadableFileError(
                "file-not-a-table", path=path.name, reason="unreadable sheet"
            ) from exc

    def best_row(top: pl.DataFrame) -> tuple[int, tuple[int, int]]:
        best, best_key = 0, (-1, -1)
        for i, cells in enumerate(top.iter_rows()):
            texts = [str(c).strip() for c in cells if c is not None and str(c).strip()]
            key = (score(texts) if score else 0, len(texts))
            if key > best_key:
                best, best_key = i, key
        return best, best_key

    chosen = sheet if sheet is not None else names[0] if names else None
    if chosen is None:
        raise UnreadableFileError("file-no-rows", path=path.name)
    if sheet is None and score is not None and len(names) > 1:
        ranked = []
        for name in names:
            _, key = best_row(load(name, HEADER_SEARCH_ROWS))
            ranked.append((key[0], -names.index(name), name))
        ranked.sort(reverse=True)
        if ranked[0][0] < SURE_SHEET_SCORE:
            raise UnreadableFileError("file-sheet-unsure", path=path.name, sheets=", ".join(names))
        chosen = ranked[0][2]
    whole = load(chosen)
    if whole.height == 0:
        raise UnreadableFileError("file-no-rows", path=path.name)
    header_at, _ = best_row(whole.head(HEADER_SEARCH_ROWS))
    # calamine starts a sheet at its first used row: the dimension says which row that is.
    first_row = (
        _first_used_row_xls(path, chosen)
        if old
        else _first_used_row(path, chosen, names.index(chosen))
    )
    header_cells = [None if c is None else str(c).strip() for c in whole.row(header_at)]
    headers = [h if h else f"__UNNAMED__{i}" for i, h in enumerate(header_cells)]
    data = whole.slice(header_at + 1)
    data.columns = headers
    excel_row = first_row + header_at + 2  # 1-based row of the first data row
    data = data.with_columns(
        pl.int_range(excel_row, excel_row + data.height, dtype=pl.Int64).alias(ROW)
    )
    # Cells by position, never by name: a header "*" or "^…$" is a wildcard to pl.col.
    blank = pl.all_horizontal(
        pl.nth(i).is_null() | (pl.nth(i).str.strip_chars() == "") for i in range(len(headers))
    )
    kept = data.filter(~blank)
    # Columns with neither a header nor a value are layout, not data.
    empty = [
        h
        for h in headers
        if h.startswith("__UNNAMED__") and kept.get_column(h).null_count() == kept.height
    ]
    kept = kept.drop(empty)
    _check_headers(path, [h for h in kept.columns if not h.startswith("__UNNAMED__") and h != ROW])
    notes: dict[str, Any] = {
        "sheet": chosen,
        "other_sheets": [n for n in names if n != chosen],
        "header_row": first_row + header_at + 1,
        "blank_rows": data.height - kept.height,
    }
    return kept, notes


def _starts_with(path: Path, magic: bytes) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(magic)) == magic


_DIMENSION = re.compile(rb'<dimension ref="[A-Z]+(\d+)')
_SHEET_ENTRY = re.compile(r'<sheet [^>]*name="([^"]*)"[^>]*r:id="([^"]*)"')
_RELATION = re.compile(r'<Relationship [^>]*Id="([^"]*)"[^>]*Target="([^"]*)"')


def _first_used_row(path: Path, sheet: str, position: int) -> int:
    """How many rows above a sheet's first used row are empty (0 when it cannot tell)."""
    try:
        with zipfile.ZipFile(path) as archive:
            workbook = archive.read("xl/workbook.xml").decode("utf-8", errors="replace")
            rels = archive.read("xl/_rels/workbook.xml.rels").decode("utf-8", errors="replace")
            ids = {name: rid for name, rid in _SHEET_ENTRY.findall(workbook)}
            targets = {rid: target for rid, target in (_flip(m) for m in _RELATION.findall(rels))}
            target = targets.get(ids.get(_xml_escape(sheet), ""), "")
            member = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
            with archive.open(member) as handle:
                head = handle.read(4096)
    except (KeyError, OSError, zipfile.BadZipFile):
        return 0
    match = _DIMENSION.search(head)
    return int(match[1]) - 1 if match else 0


def _first_used_row_xls(path: Path, sheet: str) -> int:
    """How many rows above an Excel 97-2003 sheet's first used row are empty (0 when unsure).

    The sheet's DIMENSIONS record says; it lives in the Workbook stream of the compound file.
    """
    try:
        stream = _compound_stream(path.read_bytes(), ("Workbook", "Book"))
        return _biff_first_row(stream, sheet)
    except (IndexError, ValueError, struct.error):
        return 0


def _compound_stream(data: bytes, names: tuple[str, ...]) -> bytes:
    """One stream of an OLE2 compound file (the container of .xls), by its name."""
    if not data.startswith(_OLE_MAGIC + b"\xa1\xb1\x1a\xe1"):
        raise ValueError("not a compound file")
    sector = 1 << struct.unpack_from("<H", data, 30)[0]
    first_dir, cutoff = struct.unpack_from("<I4xI", data, 48)
    first_difat, difat_count = struct.unpack_from("<II", data, 68)
    end_of_chain = 0xFFFFFFFE

    def at(number: int) -> bytes:
        start = sector * (number + 1)  # the 512-byte header fills sector -1
        return data[start : start + sector]

    fat_sectors = [n for n in struct.unpack_from("<109I", data, 76) if n < end_of_chain]
    next_difat = first_difat
    for _ in range(difat_count):
        if next_difat >= end_of_chain:
            break
        entries = struct.unpack(f"<{sector // 4}I", at(next_difat))
        fat_sectors += [n for n in entries[:-1] if n < end_of_chain]
        next_difat = entries[-1]
    fat = [n for s in fat_sectors for n in struct.unpack(f"<{sector // 4}I", at(s))]

    def chain(start: int, table: list[int]) -> list[int]:
        out: list[int] = []
        while start < end_of_chain and len(out) <= len(table):
            out.append(start)
            start = table[start]
        return out

    directory = b"".join(at(n) for n in chain(first_dir, fat))
    for entry in (directory[i : i + 128] for i in range(0, len(directory), 128)):
        length = struct.unpack_from("<H", entry, 64)[0]
        name = entry[: max(length - 2, 0)].decode("utf-16-le", errors="replace")
        if name not in names or entry[66] != 2:  # 2: a stream
            continue
        start, size = struct.unpack_from("<IQ", entry, 116)
        if size < cutoff:
            # Excel (and xlwt) pad the Workbook stream to 4 KiB, so it never sits in the mini
            # stream; a writer that does otherwise gets row numbers counted from calamine's start.
            raise ValueError("workbook stream in the mini stream")
        return b"".join(at(n) for n in chain(start, fat))[:size]
    raise ValueError("no workbook stream")


def _biff_first_row(stream: bytes, sheet: str) -> int:
    """The first used row (0-based) of a sheet, from its BIFF8 BOUNDSHEET and DIMENSIONS records."""
    offset = None
    position = 0
    while position + 4 <= len(stream):
        kind, size = struct.unpack_from("<HH", stream, position)
        body = stream[position + 4 : position + 4 + size]
        if kind == 0x0085:  # BOUNDSHEET: where the sheet's records start, and its name
            count, high = body[6], body[7] & 1
            raw = body[8 : 8 + count * (2 if high else 1)]
            name = raw.decode("utf-16-le" if high else "latin-1")
            if name == sheet:
                offset = struct.unpack_from("<I", body, 0)[0]
        elif kind == 0x000A:  # EOF of the workbook globals
            break
        position += 4 + size
    if offset is None:
        return 0
    position = offset
    while position + 4 <= len(stream):
        kind, size = struct.unpack_from("<HH", stream, position)
        if kind == 0x0200:  # DIMENSIONS: first used row, one past the last
            return int(struct.unpack_from("<I", stream, position + 4)[0])
        if kind == 0x000A:
            break
        position += 4 + size
    return 0


def _flip(pair: tuple[str, str]) -> tuple[str, str]:
    return pair[0], pair[1]


def _xml_escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:
        raise UnreadableFileError(
            "file-not-a-table", path=path.name, reason="unreadable Parquet"
        ) from exc
    return frame.select(
        [
            pl.nth(i).dt.strftime("%Y-%m-%d").alias(c)
            if frame.schema[c] in (pl.Date, pl.Datetime)
            else pl.nth(i).cast(pl.String).alias(c)
            for i, c in enumerate(frame.columns)
        ]
    )
