"""`publish --method dp`: the catalogue answered with differential privacy instead of suppression.

Each table of schemas/publication.yaml is answered like an analyst's question (`query`): from the
quarters' stored measurements, spending nothing beyond the workload, every cell an estimate with
its margin of error, every answer in the release ledger. Written as CSV, HXL, SDMX-CSV, JSON and
one XLSX workbook. Medians are read from the workload's noisy histograms of months.
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
