"""`publish --method dp`: the catalogue answered with differential privacy instead of suppression.

Each table of schemas/publication.yaml is answered like an analyst's question (`query`): from the
quarters' stored measurements, spending nothing beyond the workload, every cell an estimate with
its margin of error, every answer in the release ledger. Written as CSV, HXL, SDMX-CSV, JSON and
one XLSX workbook. Medians are read from the workload's noisy histograms of months.

Publishing a whole year is the steward's act that closes it: the year is first measured directly
(`dp_answers.measure_year`, as `casepool budget --measure YEAR` does) when `year_share` is set and
its four quarters are in, so the annual tables get the year's narrower margins. When the year
cannot be measured (a quarter missing, or too little budget left) the tables are the sums of the
quarters and the publication's notes say why.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from casepool.catalogue.indicators import load_indicators
from casepool.catalogue.publication import load_publication
from casepool.publishing.formats import (
    PublishedTable,
    write_table_csv,
    write_table_hxl,
    write_table_json,
    write_table_sdmx,
    write_workbook,
)
from casepool.publishing.publish import note_title


@dataclass
class DPPublication:
    """The tables written by `publish_dp`, and those left out with the reason."""

    out_dir: Path
    period: str | None
    tables: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. aggregate-only packages left out

    @property
    def ok(self) -> bool:
        return bool(self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out_dir),
            "method": "dp",
            "period": self.period,
            "tables": self.tables,
            "skipped": self.skipped,
            "files": [str(f) for f in self.files],
            "notes": self.notes,
        }


def publish_dp(
    warehouse: str | Path,
    out_dir: str | Path,
    period: str | None = None,
    *,
    lang: str = "en",
    settings: Any = None,
) -> DPPublication:
    """Answer every catalogue table with differential privacy and write it in every format."""
    from casepool.core.errors import UsageError
    from casepool.publishing.query import query

    catalogue = load_indicators()
    out = Path(out_dir)
    result = DPPublication(out, period)
    written: list[PublishedTable] = []
    year_note = _measure_the_year(warehouse, period, settings, lang)
    for request in load_publication(catalogue):
        where = [*(f"{n}={','.join(c)}" for n, c in request.where)]
        if period:
            where.append(f"period={period}")
        try:
            answer = query(
                warehouse,
                request.indicator,
                by=request.dimensions,
                where=where,
                period_unit=request.period_unit,
                settings=settings,
            )
        except UsageError as exc:
            result.skipped.append({"table": request.table_name, "reason": exc.key})
            continue
        table = replace(answer.table, name=request.table_name)
        result.notes = answer.notes(lang)  # DP reads records: aggregate packages are left out
        written.append(table)
        result.tables.append({"table": table.name, "cells": table.cells})
    if year_note:
        result.notes = [*result.notes, year_note]
    for fmt, writer in (
        ("csv", write_table_csv),
        ("hxl", lambda t, p: write_table_hxl(t, p, catalogue)),
        ("sdmx", lambda t, p: write_table_sdmx(t, p, catalogue)),
        ("json", lambda t, p: write_table_json(t, p, catalogue)),
    ):
        (out / fmt).mkdir(parents=True, exist_ok=True)
        for table in written:
            path = out / fmt / f"{table.name}.{'json' if fmt == 'json' else 'csv'}"
            writer(table, path)
            result.files.append(path)
    if written:
        book = out / "publication.xlsx"
        write_workbook(written, book, catalogue, lang, notes=[note_title(lang), *result.notes])
        result.files.append(book)
    return result


def _measure_the_year(
    warehouse: str | Path, period: str | None, settings: Any, lang: str
) -> str | None:
    """Measure `period` directly when it is a whole year (the quarters first where missing); the
    note to publish when it could not be, else None."""
    from casepool.core.errors import UsageError
    from casepool.protecting.dp_settings import load_dp_settings
    from casepool.publishing.dp_answers import YearRefused, budget_report

    settings = settings or load_dp_settings()
    if not period or not (len(period) == 4 and period.isdigit()) or settings.year_share <= 0:
        return None
    try:
        budget_report(warehouse, measure=[period], settings=settings)
    except YearRefused as exc:
        return exc.message(lang)
    except UsageError:
        return None  # e.g. a period outside the data: every table says so below
    return None
