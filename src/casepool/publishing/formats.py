"""Write protected tables in every publication format: CSV, HXL, SDMX-CSV, JSON, XLSX, DuckDB.

Every writer takes `PublishedTable`s that have already been protected and audited, so the numbers
are the same in every format; only the layout differs. Text cells are formula-safe in CSV and
XLSX (casepool.core.writing), and every file is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO, Any

import polars as pl

from casepool.catalogue.indicators import TOTAL, Indicator, IndicatorCatalogue
from casepool.core.schema import LANGUAGES, RTL_LANGUAGES
from casepool.core.writing import (
    atomic_path,
    formula_safe,
    neutralise,
    write_atomic,
    write_csv,
    write_json,
)

SUPPRESSED_TEXT = "[c]"
# SDMX: one dataflow for the whole catalogue, every dimension present (`_T` when not broken down).
SDMX_STRUCTURE_ID = "CASEPOOL:DF_CHILD_EXPLOITATION(1.0)"
SDMX_UNITS = {"count": "PS", "percent": "PT", "months": "MON"}  # persons, percent, months
HXL_COLUMNS = {
    "indicator": "#indicator+code",
    "value": "#indicator+value+num",
    "obs_status": "#status+obs",
    "conf_status": "#status+conf",
    "numerator": "#indicator+numerator+num",
    "denominator": "#indicator+denominator+num",
    "margin": "#indicator+value+margin+num",  # margin of error of a differentially private value
}
NOTES = {
    "C": "Suppressed: fewer children than the publication threshold (primary suppression).",
    "D": "Suppressed to protect another suppressed cell (secondary suppression).",
    "R": "Not shown: its numerator or denominator is suppressed or too small.",
}


@dataclass
class PublishedTable:
    """One protected, audited table ready to write: its tidy frame and what it describes."""

    name: str
    indicator: Indicator
    dimensions: tuple[str, ...]
    frame: (
        pl.DataFrame
    )  # indicator, unit, dims..., value, obs_status, conf_status[, numerator, denominator]
    first: date | None = None
    last: date | None = None
    period_unit: str = "year"

    @property
    def cells(self) -> int:
        return self.frame.height

    @property
    def suppressed(self) -> int:
        return int(self.frame.get_column("value").is_null().sum())


def dimension_label(catalogue: IndicatorCatalogue, name: str, code: str, lang: str) -> str:
    return catalogue.dimension(name).code_label(code, lang)


# --- CSV, HXL, SDMX -------------------------------------------------------------------------------


def write_table_csv(table: PublishedTable, path: Path) -> None:
    """The tidy table as formula-safe UTF-8 CSV with a BOM (Excel shows Arabic correctly)."""
    write_csv(table.frame, path)


def hxl_tags(table: PublishedTable, catalogue: IndicatorCatalogue) -> list[str]:
    return [
        HXL_COLUMNS.get(c) or catalogue.dimension(c).hxl or f"#meta+{c}"
        for c in table.frame.columns
    ]


def write_table_hxl(table: PublishedTable, path: Path, catalogue: IndicatorCatalogue) -> None:
    """The tidy table with an HXL hashtag row under the header (for HDX and HXL tools)."""
    safe = formula_safe(table.frame)
    tags = hxl_tags(table, catalogue)

    def write(handle: IO[str]) -> None:
        handle.write("\ufeff")
        body = safe.write_csv()
        header, _, rows = body.partition("\n")
        handle.write(header + "\n" + ",".join(tags) + "\n" + rows)

    write_atomic(path, write)


def sdmx_frame(table: PublishedTable, catalogue: IndicatorCatalogue) -> pl.DataFrame:
    """SDMX-CSV 2.0 rows: STRUCTURE, STRUCTURE_ID, ACTION, every dimension, the measure, flags."""
    frame = table.frame
    columns: list[pl.Expr] = [
        pl.lit("dataflow").alias("STRUCTURE"),
        pl.lit(SDMX_STRUCTURE_ID).alias("STRUCTURE_ID"),
        pl.lit("I").alias("ACTION"),
        pl.col("indicator").str.to_uppercase().alias("INDICATOR"),
    ]
    for name, dimension in catalogue.dimensions.items():
        column = pl.col(name) if name in table.dimensions else pl.lit(TOTAL)
        columns.append(column.cast(pl.String).alias(dimension.sdmx_name))
    columns += [
        pl.col("value").alias("OBS_VALUE"),
        pl.lit(SDMX_UNITS[table.indicator.unit]).alias("UNIT_MEASURE"),
        pl.col("obs_status").alias("OBS_STATUS"),
        pl.col("conf_status").alias("CONF_STATUS"),
    ]
    return frame.select(columns)


def write_table_sdmx(table: PublishedTable, path: Path, catalogue: IndicatorCatalogue) -> None:
    """SDMX-CSV: suppressed observations have an empty OBS_VALUE and OBS_STATUS/CONF_STATUS set."""
    write_csv(sdmx_frame(table, catalogue), path, bom=False)


# --- JSON -----------------------------------------------------------------------------------------


def table_json(table: PublishedTable, catalogue: IndicatorCatalogue) -> dict[str, Any]:
    """The table with its labels in every language, for programs and the report."""
    return {
        "table": table.name,
        "indicator": table.indicator.name,
        "unit": table.indicator.unit,
        "labels": table.indicator.labels,
        "covers": {
            "first": table.first.isoformat() if table.first else None,
            "last": table.last.isoformat() if table.last else None,
            "period_unit": table.period_unit,
        },
        "dimensions": [
            {
                "name": d,
                "labels": catalogue.dimension(d).labels,
                "categories": [
                    {
                        "code": code,
                        "labels": {
                            lang: dimension_label(catalogue, d, code, lang) for lang in LANGUAGES
                        },
                    }
                    for code in table.frame.get_column(d).unique(maintain_order=True).to_list()
                ],
            }
            for d in table.dimensions
        ],
        "rows": table.frame.to_dicts(),
    }


def write_table_json(table: PublishedTable, path: Path, catalogue: IndicatorCatalogue) -> None:
    write_json(table_json(table, catalogue), path)


# --- XLSX -----------------------------------------------------------------------------------------


def _sheet_names(tables: Sequence[PublishedTable]) -> list[str]:
    names: list[str] = []
    for table in tables:
        base = table.name[:31]
        name, n = base, 2
        while name in names:
            suffix = f"~{n}"
            name, n = base[: 31 - len(suffix)] + suffix, n + 1
        names.append(name)
    return names


def write_workbook(
    tables: Sequence[PublishedTable],
    path: Path,
    catalogue: IndicatorCatalogue,
    lang: str = "en",
    notes: Sequence[str] = (),
) -> None:
    """One sheet per table (labels in `lang`, codes beside them), a Notes sheet first; a suppressed
    cell shows [c] with a note saying why. Text is always written as text, never as a formula."""
    import xlsxwriter

    with atomic_path(path) as temp:
        book = xlsxwriter.Workbook(
            str(temp),
            {"strings_to_formulas": False, "strings_to_urls": False, "nan_inf_to_errors": True},
        )
        bold = book.add_format({"bold": True})
        flagged = book.add_format(
            {"font_color": "#9C0006", "bg_color": "#FFEB9C", "align": "right"}
        )
        percent = book.add_format({"num_format": "0.0"})
        rtl = lang in RTL_LANGUAGES
        sheet = book.add_worksheet("Notes")
        if rtl:
            sheet.right_to_left()
        lines = [*notes, "", *(f"{SUPPRESSED_TEXT} ({k}): {v}" for k, v in NOTES.items())]
        sheet.set_column(0, 0, 120)
        for r, line in enumerate(lines):
            sheet.write_string(r, 0, neutralise(line), bold if r == 0 else None)
        for table, name in zip(tables, _sheet_names(tables), strict=True):
            sheet = book.add_worksheet(name)
            if rtl:
                sheet.right_to_left()
            sheet.write_string(0, 0, neutralise(table.indicator.label(lang)), bold)
            frame = table.frame
            header: list[str] = []
            for d in table.dimensions:
                header += [catalogue.dimension(d).label(lang), d]
            extra = [c for c in ("numerator", "denominator") if c in frame.columns]
            header += ["value", "obs_status", "conf_status", *extra]
            sheet.write_row(2, 0, [neutralise(h) for h in header], bold)
            for r, row in enumerate(frame.iter_rows(named=True), start=3):
                c = 0
                for d in table.dimensions:
                    sheet.write_string(
                        r, c, neutralise(dimension_label(catalogue, d, row[d], lang))
                    )
                    sheet.write_string(r, c + 1, neutralise(str(row[d])))
                    c += 2
                value = row["value"]
                if value is None:
                    sheet.write_string(r, c, SUPPRESSED_TEXT, flagged)
                    status = row["conf_status"] if row["conf_status"] in NOTES else "R"
                    sheet.write_comment(r, c, NOTES[status])
                elif table.indicator.unit == "count":
                    sheet.write_number(r, c, value)
                else:
                    sheet.write_number(r, c, value, percent)
                sheet.write_string(r, c + 1, str(row["obs_status"]))
                sheet.write_string(r, c + 2, str(row["conf_status"]))
                for i, column in enumerate(extra, start=3):
                    if row[column] is None:
                        sheet.write_string(r, c + i, SUPPRESSED_TEXT, flagged)
                    else:
                        sheet.write_number(r, c + i, row[column])
            sheet.freeze_panes(3, 0)
        book.close()


# --- DuckDB ---------------------------------------------------------------------------------------


def write_aggregates(
    tables: Sequence[PublishedTable], path: Path, catalogue: IndicatorCatalogue
) -> None:
    """aggregates.duckdb: the protected tables only (one SQL table each), the catalogue of them,
    and the category labels in every language, for analysts' own SQL."""
    import duckdb

    catalogue_rows = pl.DataFrame(
        [
            {
                "table_name": t.name,
                "indicator": t.indicator.name,
                "unit": t.indicator.unit,
                "dimensions": ",".join(t.dimensions),
                "cells": t.cells,
                "suppressed": t.suppressed,
                **{f"label_{lang}": t.indicator.label(lang) for lang in LANGUAGES},
            }
            for t in tables
        ],
        schema={
            "table_name": pl.String,
            "indicator": pl.String,
            "unit": pl.String,
            "dimensions": pl.String,
            "cells": pl.Int64,
            "suppressed": pl.Int64,
            **{f"label_{lang}": pl.String for lang in LANGUAGES},
        },
    )
    labels = pl.DataFrame(
        [
            {
                "dimension": d.name,
                "code": code.code,
                **{f"label_{lang}": code.label(lang) for lang in LANGUAGES},
            }
            for d in catalogue.dimensions.values()
            for code in d.codes
        ],
        schema={
            "dimension": pl.String,
            "code": pl.String,
            **{f"label_{lang}": pl.String for lang in LANGUAGES},
        },
    )
    with atomic_path(path) as temp:
        temp.unlink(missing_ok=True)  # DuckDB creates its own file
        con = duckdb.connect(str(temp))
        try:
            con.register("catalogue_rows", catalogue_rows)
            con.execute("CREATE TABLE catalogue AS SELECT * FROM catalogue_rows")
            con.register("label_rows", labels)
            con.execute("CREATE TABLE category_labels AS SELECT * FROM label_rows")
            for table in tables:
                con.register("table_rows", table.frame)
                con.execute(f'CREATE TABLE "{table.name}" AS SELECT * FROM table_rows')
                con.unregister("table_rows")
            con.execute("CHECKPOINT")
        finally:
            con.close()
        Path(str(temp) + ".wal").unlink(missing_ok=True)
