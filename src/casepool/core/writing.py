"""Write tables people open in Excel: formula-safe CSV and XLSX, UTF-8 JSON, all written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import polars as pl

from casepool.core.errors import UnreadableFileError

# OWASP CSV injection: a cell starting with one of these is run as a formula by spreadsheet programs.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")


def neutralise(text: str) -> str:
    """A text cell that no spreadsheet will run as a formula (a leading apostrophe), else as is."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def formula_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """Every String column with formula-like cells neutralised; numbers untouched."""
    pattern = "^[=+\\-@\t\r\n]"
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(pattern))
        .then(pl.lit("'") + pl.col(c))
        .otherwise(pl.col(c))
        .alias(c)
        for c, dtype in frame.schema.items()
        if dtype == pl.String
    )


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto it only when the block succeeds."""
    target = Path(path)
    if target.parent and not target.parent.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UnreadableFileError(
                "file-unwritable", path=str(target), reason=exc.strerror
            ) from exc
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
        os.replace(temp, target)
    except OSError as exc:
        raise UnreadableFileError("file-unwritable", path=str(target), reason=exc.strerror) from exc
    finally:
        temp.unlink(missing_ok=True)


def write_atomic(path: str | Path, write: Callable[[IO[str]], Any]) -> None:
    """Write a UTF-8 text file through `write(handle)`, atomically."""
    with atomic_path(path) as temp, temp.open("w", encoding="utf-8", newline="") as handle:
        write(handle)


def write_csv(frame: pl.DataFrame, path: str | Path, *, bom: bool = True) -> None:
    """Formula-safe UTF-8 CSV; with a BOM by default so Excel on Windows shows Arabic correctly."""
    safe = formula_safe(frame)

    def write(handle: IO[str]) -> None:
        if bom:
            handle.write("\ufeff")
        handle.write(safe.write_csv())

    write_atomic(path, write)


def write_xlsx(sheets: dict[str, pl.DataFrame], path: str | Path, *, rtl: bool = False) -> None:
    """One sheet per frame; text always written as text (never as a formula), atomically."""
    import xlsxwriter

    with atomic_path(path) as temp:
        workbook = xlsxwriter.Workbook(
            str(temp), {"strings_to_formulas": False, "strings_to_urls": False}
        )
        bold = workbook.add_format({"bold": True})
        for name, frame in sheets.items():
            sheet = workbook.add_worksheet(name[:31])
            if rtl:
                sheet.right_to_left()
            sheet.write_row(0, 0, frame.columns, bold)
            for r, row in enumerate(frame.iter_rows(), start=1):
                for c, value in enumerate(row):
                    if value is None:
                        continue
                    if isinstance(value, str):
                        sheet.write_string(r, c, value)
                    elif isinstance(value, bool):
                        sheet.write_boolean(r, c, value)
                    elif isinstance(value, int | float):
                        sheet.write_number(r, c, value)
                    else:
                        sheet.write_string(r, c, str(value))
            sheet.freeze_panes(1, 0)
        workbook.close()


def write_json(payload: Any, path: str | Path) -> None:
    """UTF-8 JSON with non-ASCII kept readable, atomically."""
    write_atomic(path, lambda h: json.dump(payload, h, ensure_ascii=False, indent=2, default=str))
