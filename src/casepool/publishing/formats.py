"""Write protected tables in every publication format: CSV, HXL, SDMX-CSV, JSON, XLSX, DuckDB,
and the metadata beside them: the SDMX structure (DSD and code lists, SDMX-ML 2.1), a frictionless
data package (`datapackage.json`, as HDX and others read) and the manifest of every file.

Every writer takes `PublishedTable`s that have already been protected and audited, so the numbers
are the same in every format; only the layout differs. Text cells are formula-safe in CSV and
XLSX (casepool.core.writing), and every file is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import polars as pl

from casepool.catalogue.indicators import TOTAL, Indicator, IndicatorCatalogue
from casepool.core.periods import parse_period
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
SDMX_AGENCY = "CASEPOOL"
SDMX_DATAFLOW = "DF_CHILD_EXPLOITATION"
SDMX_VERSION = "1.0"
SDMX_STRUCTURE_ID = f"{SDMX_AGENCY}:{SDMX_DATAFLOW}({SDMX_VERSION})"
# persons, percent, months, per 100,000 children
SDMX_UNITS = {"count": "PS", "percent": "PT", "months": "MON", "rate": "RATE_100000"}
HXL_COLUMNS = {
    "indicator": "#indicator+code",
    "value": "#indicator+value+num",
    "obs_status": "#status+obs",
    "conf_status": "#status+conf",
    "numerator": "#indicator+numerator+num",
    "denominator": "#indicator+denominator+num",
    "indicator_name": "#indicator+name",
    "date_start": "#date+start",
    "date_end": "#date+end",
    "margin": "#indicator+value+margin+num",  # margin of error of a differentially private value
}
NOTES = {
    "C": "Suppressed: fewer children than the publication threshold (primary suppression).",
    "D": "Suppressed to protect another suppressed cell (secondary suppression).",
    "R": "Not shown: its numerator or denominator is suppressed or too small.",
}


def combined_flags(tables: Sequence[PublishedTable]) -> bool:
    """Whether the tables flag every suppressed cell C alike (protection.yaml `flags: combined`)."""
    return any(t.flags == "combined" for t in tables)


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
    population: str | None = None  # for a rate: the reference population it divides by
    coarsened: tuple[str, ...] = ()  # global recoding applied (publishing/recoding.py)
    # How its suppressed cells are flagged (schemas/protection.yaml `flags`): `combined`, C for
    # every one; `distinct`, C primary and D secondary.
    flags: str = "distinct"

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


def _month_end(day: date) -> date:
    following = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
    return following - timedelta(days=1)


def covered_dates(table: PublishedTable, period_code: str | None = None) -> tuple[str, str]:
    """The first and last day a cell covers: its period's, or the table's span of registrations."""
    if period_code and period_code != TOTAL:
        period = parse_period(period_code)
        return period.start.isoformat(), period.end.isoformat()
    if table.first is None or table.last is None:
        return "", ""
    return table.first.isoformat(), _month_end(table.last).isoformat()


def sdmx_time_period(table: PublishedTable, period_code: str | None = None) -> str:
    """A valid SDMX TIME_PERIOD: the cell's year or quarter (2025, 2025-Q3), else the span the
    table covers as a year, a quarter or a time range (2024-03-01/P21M); never `_T`."""
    if period_code and period_code != TOTAL:
        return period_code
    if table.first is None or table.last is None:
        return ""
    first, last = table.first, table.last
    months = (last.year * 12 + last.month) - (first.year * 12 + first.month) + 1
    if months == 12 and first.month == 1:
        return str(first.year)
    if months == 3 and first.month % 3 == 1:
        return f"{first.year}-Q{first.month // 3 + 1}"
    return f"{first.replace(day=1).isoformat()}/P{months}M"


def _hxl_name_tag(tag: str) -> str:
    return tag.replace("+code", "+name") if "+code" in tag else tag + "+name"


def hxl_frame(table: PublishedTable, catalogue: IndicatorCatalogue) -> pl.DataFrame:
    """The tidy table with English names beside every code and the dates each row covers."""
    frame = table.frame
    columns: list[pl.Expr] = [
        pl.col("indicator"),
        pl.lit(table.indicator.label("en")).alias("indicator_name"),
    ]
    for d in table.dimensions:
        dimension = catalogue.dimension(d)
        names = {code: dimension.code_label(code, "en") for code in frame.get_column(d).unique()}
        columns += [pl.col(d), pl.col(d).replace_strict(names, default=None).alias(f"{d}_name")]
    rest = [c for c in frame.columns if c != "indicator" and c not in table.dimensions]
    columns += [pl.col(c) for c in rest]
    periods = (
        frame.get_column("period").to_list()
        if "period" in table.dimensions
        else [None] * frame.height
    )
    spans = [covered_dates(table, code) for code in periods]
    return frame.select(columns).with_columns(
        pl.Series("date_start", [a for a, _ in spans], dtype=pl.String),
        pl.Series("date_end", [b for _, b in spans], dtype=pl.String),
    )


def hxl_tags(table: PublishedTable, catalogue: IndicatorCatalogue) -> list[str]:
    tags = []
    for c in hxl_frame(table, catalogue).columns:
        if c in HXL_COLUMNS:
            tags.append(HXL_COLUMNS[c])
        elif c.endswith("_name") and c[: -len("_name")] in table.dimensions:
            tags.append(_hxl_name_tag(catalogue.dimension(c[: -len("_name")]).hxl))
        elif c in table.dimensions:
            tags.append(catalogue.dimension(c).hxl or f"#meta+{c}")
        else:
            tags.append(f"#meta+{c}")
    return tags


def hxl_text(table: PublishedTable, catalogue: IndicatorCatalogue) -> str:
    body = formula_safe(hxl_frame(table, catalogue)).write_csv()
    header, _, rows = body.partition("\n")
    return header + "\n" + ",".join(hxl_tags(table, catalogue)) + "\n" + rows


def write_table_hxl(table: PublishedTable, path: Path, catalogue: IndicatorCatalogue) -> None:
    """The tidy table with an HXL hashtag row under the header (for HDX and HXL tools), English
    names beside the codes and the first and last day each row covers."""
    text = hxl_text(table, catalogue)

    def write(handle: IO[str]) -> None:
        handle.write("\ufeff")
        handle.write(text)

    write_atomic(path, write)


def sdmx_frame(table: PublishedTable, catalogue: IndicatorCatalogue) -> pl.DataFrame:
    """SDMX-CSV 2.0 rows: STRUCTURE, STRUCTURE_ID, ACTION, every dimension (codes upper-case,
    `_T` when not broken down), TIME_PERIOD (a valid period, never `_T`), the measure, flags."""
    frame = table.frame
    columns: list[pl.Expr] = [
        pl.lit("dataflow").alias("STRUCTURE"),
        pl.lit(SDMX_STRUCTURE_ID).alias("STRUCTURE_ID"),
        pl.lit("I").alias("ACTION"),
        pl.col("indicator").str.to_uppercase().alias("INDICATOR"),
    ]
    for name, dimension in catalogue.dimensions.items():
        if dimension.derived == "period":
            continue
        column = pl.col(name) if name in table.dimensions else pl.lit(TOTAL)
        columns.append(column.cast(pl.String).str.to_uppercase().alias(dimension.sdmx_name))
    periods = (
        frame.get_column("period").to_list()
        if "period" in table.dimensions
        else [None] * frame.height
    )
    columns += [
        pl.lit(
            pl.Series("TIME_PERIOD", [sdmx_time_period(table, p) for p in periods], dtype=pl.String)
        ).alias("TIME_PERIOD"),
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
        "population": table.population,
        # Global recoding (publishing/recoding.py), only on a table it coarsened.
        **({"coarsened": list(table.coarsened)} if table.coarsened else {}),
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


def _sheet_title(text: str) -> str:
    for bad in "[]:*?/\\":
        text = text.replace(bad, " ")
    return " ".join(text.split()).strip("'")


def sheet_names(
    tables: Sequence[PublishedTable], catalogue: IndicatorCatalogue, lang: str = "en"
) -> list[str]:
    """Readable, unique sheet names within Excel's 31 characters: a number, then what the table
    is broken down by in `lang` ("03 Governorate × Sex"); the Contents sheet gives the full
    title of each."""
    names: list[str] = []
    for number, table in enumerate(tables, start=1):
        by = " × ".join(catalogue.dimension(d).label(lang) for d in table.dimensions)
        title = _sheet_title(f"{number:02d} {by or table.indicator.label(lang)}")
        if len(title) > 31:
            title = title[:30].rstrip() + "…"
        names.append(title)
    return names


def _notes_lines(
    tables: Sequence[PublishedTable], lang: str, period: str | None, settings: Any
) -> list[tuple[str, str]]:
    """The Notes sheet in `lang`: (style, text) lines, formatted text rather than Markdown."""
    from casepool.core.i18n import render

    firsts = [t.first for t in tables if t.first]
    lasts = [t.last for t in tables if t.last]
    span = (
        f"{min(firsts):%Y-%m} – {max(lasts):%Y-%m}"
        if firsts and lasts
        else render("workbook-no-registrations", lang)
    )
    k = int(getattr(settings, "k", 5))
    ratio_min = int(getattr(settings, "ratio_min_denominator", 0) or k)
    lines = [
        ("title", render("workbook-notes-title", lang)),
        ("text", render("workbook-notes-covers", lang, span=span, period=period or "—")),
        ("heading", render("workbook-notes-counted-heading", lang)),
        ("text", render("workbook-notes-counted", lang)),
        ("heading", render("workbook-notes-protection-heading", lang)),
    ]
    combined = combined_flags(tables)
    suffix = "-combined" if combined else ""
    lines += [
        ("text", render(f"workbook-notes-protection{suffix}", lang, last=k - 1)),
        ("text", render("workbook-notes-ratios", lang, min=ratio_min)),
        ("heading", render("workbook-notes-reading-heading", lang)),
        ("text", render(f"workbook-notes-codes{suffix}", lang, mark=SUPPRESSED_TEXT)),
    ]
    codes = ("C",) if combined else tuple(NOTES)
    lines += [
        ("text", f"{SUPPRESSED_TEXT} {code}: {note_text(code, lang, combined)}") for code in codes
    ]
    for citation in sorted({t.population for t in tables if t.population}):
        lines.append(("text", render("workbook-notes-population", lang, population=citation)))
    recoded = [t for t in tables if t.coarsened]
    if recoded:
        lines.append(("heading", render("recoding-notes-heading", lang)))
        lines += [
            ("text", render("recoding-notes-table", lang, table=t.name, how="; ".join(t.coarsened)))
            for t in recoded
        ]
    lines.append(("text", render("workbook-notes-contents", lang)))
    return lines


def note_text(status: str, lang: str, combined: bool = False) -> str:
    """Why a cell is not shown, in `lang` (C primary, D secondary, R its parts hidden; with
    `combined` flags every suppressed cell is C and the note says only that it is protected)."""
    from casepool.core.i18n import render

    if combined:
        return render("workbook-cell-confidential", lang)
    return render(f"workbook-cell-{status.lower()}", lang)


def write_workbook(
    tables: Sequence[PublishedTable],
    path: Path,
    catalogue: IndicatorCatalogue,
    lang: str = "en",
    notes: Sequence[str] = (),
    *,
    period: str | None = None,
    settings: Any = None,
) -> None:
    """A Notes sheet (formatted text in `lang`), a Contents sheet linking every table with its
    full title, unit and formula, then one sheet per table (labels in `lang`, codes beside
    them); a suppressed cell shows [c] with a note saying why. Text is always written as text,
    never as a formula. `notes`: lines to show instead of the standard notes (a query)."""
    import xlsxwriter

    from casepool.catalogue.indicators import formula_text
    from casepool.core.i18n import render

    names = sheet_names(tables, catalogue, lang)
    with atomic_path(path) as temp:
        book = xlsxwriter.Workbook(
            str(temp),
            {"strings_to_formulas": False, "strings_to_urls": False, "nan_inf_to_errors": True},
        )
        bold = book.add_format({"bold": True})
        styles = {
            "title": book.add_format({"bold": True, "font_size": 14, "text_wrap": True}),
            "heading": book.add_format({"bold": True, "font_size": 11, "top": 1}),
            "text": book.add_format({"text_wrap": True, "valign": "top"}),
        }
        link = book.add_format({"font_color": "#0B5394", "underline": 1})
        flagged = book.add_format(
            {"font_color": "#9C0006", "bg_color": "#FFEB9C", "align": "right"}
        )
        decimal = book.add_format({"num_format": "0.0"})
        rtl = lang in RTL_LANGUAGES
        sheet = book.add_worksheet(_sheet_title(render("workbook-notes-sheet", lang))[:31])
        if rtl:
            sheet.right_to_left()
        lines = (
            [("title" if i == 0 else "text", line) for i, line in enumerate(notes) if line.strip()]
            if notes and settings is None
            else _notes_lines(tables, lang, period, settings)
        )
        sheet.set_column(0, 0, 100)
        for r, (style, line) in enumerate(lines):
            sheet.write_string(r, 0, neutralise(line), styles[style])

        contents = book.add_worksheet(_sheet_title(render("workbook-contents-title", lang))[:31])
        if rtl:
            contents.right_to_left()
        headers = [
            render(f"workbook-contents-{c}", lang)
            for c in ("sheet", "table", "unit", "formula", "cells", "suppressed")
        ]
        contents.write_row(0, 0, [neutralise(h) for h in headers], bold)
        contents.set_column(0, 0, 28)
        contents.set_column(1, 1, 60)
        contents.set_column(2, 2, 12)
        contents.set_column(3, 3, 70)
        for r, (table, name) in enumerate(zip(tables, names, strict=True), start=1):
            by = " × ".join(catalogue.dimension(d).label(lang) for d in table.dimensions)
            title = table.indicator.label(lang) + (f" — {by}" if by else "")
            contents.write_url(r, 0, f"internal:'{name}'!A1", link, string=neutralise(name))
            contents.write_string(r, 1, neutralise(title))
            contents.write_string(r, 2, render(f"workbook-unit-{table.indicator.unit}", lang))
            contents.write_string(r, 3, neutralise(formula_text(table.indicator, catalogue)))
            contents.write_number(r, 4, table.cells)
            contents.write_number(r, 5, table.suppressed)
        contents.freeze_panes(1, 0)

        for table, name in zip(tables, names, strict=True):
            sheet = book.add_worksheet(name)
            if rtl:
                sheet.right_to_left()
            by = " × ".join(catalogue.dimension(d).label(lang) for d in table.dimensions)
            title = table.indicator.label(lang) + (f" — {by}" if by else "")
            sheet.write_string(0, 0, neutralise(title), bold)
            if table.population:
                sheet.write_string(1, 0, neutralise(table.population))
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
                    combined = table.flags == "combined"
                    sheet.write_comment(r, c, note_text(status, lang, combined))
                elif table.indicator.unit == "count":
                    sheet.write_number(r, c, value)
                else:
                    sheet.write_number(r, c, value, decimal)
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


# --- SDMX structure: the data structure definition and its code lists (SDMX-ML 2.1) ---------------

SDMX_NS = {
    "mes": "http://www.sdmx.org/resources/sdmxml/schemas/v2_1/message",
    "str": "http://www.sdmx.org/resources/sdmxml/schemas/v2_1/structure",
    "com": "http://www.sdmx.org/resources/sdmxml/schemas/v2_1/common",
}
SDMX_STATUS_CODES = {
    "CL_OBS_STATUS": {
        "A": "Normal value",
        "Q": "Missing value; suppressed",
        "M": "Missing value; data cannot exist (no population for the cell)",
    },
    "CL_CONF_STATUS": {
        "F": "Free",
        "C": "Confidential statistical information (primary suppression)",
        "D": "Secondary confidentiality set to prevent disclosure of C cells",
    },
    "CL_UNIT_MEASURE": {
        "PS": "Persons (children)",
        "PT": "Percent",
        "MON": "Months",
        "RATE_100000": "Per 100,000 children aged 0-17",
    },
}
TOTAL_LABELS = {"en": "Total", "ar": "المجموع", "ckb": "کۆی گشتی", "kmr": "Giştî"}


def sdmx_codelists(
    catalogue: IndicatorCatalogue, tables: Sequence[PublishedTable] = ()
) -> dict[str, dict[str, dict[str, str]]]:
    """Every code list of the structure: id -> code -> labels by language. Dimension codes are
    the schema's, upper-case, with `_T`; status codes the fixed SDMX ones (and any others the
    tables carry, so the structure always describes what was written)."""
    lists: dict[str, dict[str, dict[str, str]]] = {
        "CL_INDICATOR": {
            ind.name.upper(): dict(ind.labels) for ind in catalogue.indicators.values()
        }
    }
    for dimension in catalogue.dimensions.values():
        if dimension.derived == "period":
            continue
        codes = {c.code.upper(): dict(c.labels) for c in dimension.codes}
        codes[TOTAL] = dict(TOTAL_LABELS)
        lists[f"CL_{dimension.sdmx_name}"] = codes
    for name, texts in SDMX_STATUS_CODES.items():
        lists[name] = {code: {"en": text} for code, text in texts.items()}
    if combined_flags(tables):
        # One flag for every suppressed cell, as SDMX's CONF_STATUS C is used by most offices.
        lists["CL_CONF_STATUS"] = {
            "F": {"en": "Free"},
            "C": {"en": "Confidential statistical information (suppressed: primary or secondary)"},
        }
    for table in tables:
        for column, name in (("obs_status", "CL_OBS_STATUS"), ("conf_status", "CL_CONF_STATUS")):
            for code in table.frame.get_column(column).drop_nulls().unique().to_list():
                lists[name].setdefault(str(code), {"en": str(code)})
    return lists


def sdmx_structure(catalogue: IndicatorCatalogue, tables: Sequence[PublishedTable] = ()) -> bytes:
    """An SDMX-ML 2.1 structure message: the dataflow of the SDMX-CSV files, its data structure
    definition (dimensions, time dimension, attributes, measure) and every code list."""
    import xml.etree.ElementTree as ET

    for prefix, uri in SDMX_NS.items():
        ET.register_namespace(prefix, uri)

    def q(prefix: str, tag: str) -> str:
        return f"{{{SDMX_NS[prefix]}}}{tag}"

    def names(parent: Any, labels: dict[str, str]) -> None:
        for lang in LANGUAGES:
            if labels.get(lang):
                node = ET.SubElement(parent, q("com", "Name"))
                node.set("{http://www.w3.org/XML/1998/namespace}lang", lang)
                node.text = labels[lang]

    def ref(parent: Any, tag: str, **attrs: str) -> None:
        holder = ET.SubElement(parent, q("str", tag))
        node = ET.SubElement(holder, "Ref")
        for key, value in attrs.items():
            node.set(key, value)

    maintained = {"agencyID": SDMX_AGENCY, "version": SDMX_VERSION}
    root = ET.Element(q("mes", "Structure"))
    header = ET.SubElement(root, q("mes", "Header"))
    ET.SubElement(header, q("mes", "ID")).text = "CASEPOOL_STRUCTURE"
    ET.SubElement(header, q("mes", "Test")).text = "false"
    ET.SubElement(header, q("mes", "Prepared")).text = datetime.now(UTC).strftime(
        "%Y-%m-%dT%H:%M:%S"
    )
    ET.SubElement(header, q("mes", "Sender")).set("id", SDMX_AGENCY)
    structures = ET.SubElement(root, q("mes", "Structures"))

    flows = ET.SubElement(structures, q("str", "Dataflows"))
    flow = ET.SubElement(flows, q("str", "Dataflow"), {"id": SDMX_DATAFLOW, **maintained})
    names(flow, {"en": "Child survivors of sexual exploitation registered by organisations"})
    ref(flow, "Structure", id="DSD_CHILD_EXPLOITATION", **maintained, **{"class": "DataStructure"})

    lists = sdmx_codelists(catalogue, tables)
    codelists = ET.SubElement(structures, q("str", "Codelists"))
    for list_id, codes in lists.items():
        node = ET.SubElement(codelists, q("str", "Codelist"), {"id": list_id, **maintained})
        names(node, {"en": list_id[3:].replace("_", " ").title()})
        for code, labels in codes.items():
            names(ET.SubElement(node, q("str", "Code"), {"id": code}), labels)

    dimension_ids = ["INDICATOR"] + [
        d.sdmx_name for d in catalogue.dimensions.values() if d.derived != "period"
    ]
    concept_labels: dict[str, dict[str, str]] = {
        "INDICATOR": {"en": "Indicator"},
        "TIME_PERIOD": {"en": "Time period"},
        "OBS_VALUE": {"en": "Observation value"},
        "UNIT_MEASURE": {"en": "Unit of measure"},
        "OBS_STATUS": {"en": "Observation status"},
        "CONF_STATUS": {"en": "Confidentiality status"},
    }
    for d in catalogue.dimensions.values():
        concept_labels[d.sdmx_name] = dict(d.labels)
    concepts = ET.SubElement(structures, q("str", "Concepts"))
    scheme = ET.SubElement(concepts, q("str", "ConceptScheme"), {"id": "CS_CASEPOOL", **maintained})
    names(scheme, {"en": "casepool concepts"})
    for concept_id, labels in concept_labels.items():
        names(ET.SubElement(scheme, q("str", "Concept"), {"id": concept_id}), labels)

    def identity(parent: Any, concept_id: str) -> None:
        ref(
            parent,
            "ConceptIdentity",
            id=concept_id,
            maintainableParentID="CS_CASEPOOL",
            maintainableParentVersion=SDMX_VERSION,
            agencyID=SDMX_AGENCY,
            **{"class": "Concept", "package": "conceptscheme"},
        )

    def enumerated(parent: Any, list_id: str) -> None:
        local = ET.SubElement(parent, q("str", "LocalRepresentation"))
        ref(local, "Enumeration", id=list_id, **maintained, **{"class": "Codelist"})

    dsds = ET.SubElement(structures, q("str", "DataStructures"))
    dsd = ET.SubElement(
        dsds, q("str", "DataStructure"), {"id": "DSD_CHILD_EXPLOITATION", **maintained}
    )
    names(dsd, {"en": "casepool protected tables"})
    components = ET.SubElement(dsd, q("str", "DataStructureComponents"))
    dims = ET.SubElement(components, q("str", "DimensionList"), {"id": "DimensionDescriptor"})
    for position, dim_id in enumerate(dimension_ids, start=1):
        node = ET.SubElement(dims, q("str", "Dimension"), {"id": dim_id, "position": str(position)})
        identity(node, dim_id)
        enumerated(node, f"CL_{dim_id}")
    time = ET.SubElement(
        dims,
        q("str", "TimeDimension"),
        {"id": "TIME_PERIOD", "position": str(len(dimension_ids) + 1)},
    )
    identity(time, "TIME_PERIOD")
    local = ET.SubElement(time, q("str", "LocalRepresentation"))
    ET.SubElement(local, q("str", "TextFormat"), {"textType": "ObservationalTimePeriod"})
    attributes = ET.SubElement(components, q("str", "AttributeList"), {"id": "AttributeDescriptor"})
    for attr_id, list_id, status in (
        ("UNIT_MEASURE", "CL_UNIT_MEASURE", "Mandatory"),
        ("OBS_STATUS", "CL_OBS_STATUS", "Mandatory"),
        ("CONF_STATUS", "CL_CONF_STATUS", "Mandatory"),
    ):
        node = ET.SubElement(
            attributes, q("str", "Attribute"), {"id": attr_id, "assignmentStatus": status}
        )
        identity(node, attr_id)
        enumerated(node, list_id)
        relation = ET.SubElement(node, q("str", "AttributeRelationship"))
        ET.SubElement(relation, q("str", "PrimaryMeasure")).append(_ref_element("OBS_VALUE"))
    measures = ET.SubElement(components, q("str", "MeasureList"), {"id": "MeasureDescriptor"})
    measure = ET.SubElement(measures, q("str", "PrimaryMeasure"), {"id": "OBS_VALUE"})
    identity(measure, "OBS_VALUE")
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _ref_element(component_id: str) -> Any:
    import xml.etree.ElementTree as ET

    node = ET.Element("Ref")
    node.set("id", component_id)
    return node


def write_sdmx_structure(
    tables: Sequence[PublishedTable], path: Path, catalogue: IndicatorCatalogue
) -> None:
    data = sdmx_structure(catalogue, tables)
    with atomic_path(path) as temp:
        temp.write_bytes(data)


# --- the data package (frictionless, as HDX reads it) and the manifest ----------------------------

_MEDIA = {
    ".csv": ("csv", "text/csv"),
    ".json": ("json", "application/json"),
    ".xlsx": ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ".duckdb": ("duckdb", "application/octet-stream"),
    ".md": ("md", "text/markdown"),
    ".xml": ("xml", "application/vnd.sdmx.structure+xml;version=2.1"),
}


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _field_type(column: str, dtype: Any) -> str:
    if column in {"date_start", "date_end"}:
        return "date"
    if dtype.is_integer():
        return "integer"
    if dtype.is_float():
        return "number"
    return "string"


def _table_schema(frame: pl.DataFrame, descriptions: dict[str, str]) -> dict[str, Any]:
    return {
        "fields": [
            {
                "name": c,
                "type": _field_type(c, frame.schema[c]),
                **({"description": descriptions[c]} if c in descriptions else {}),
            }
            for c in frame.columns
        ],
        "missingValues": [""],
    }


def publication_metadata() -> dict[str, Any]:
    """The `metadata` block of schemas/publication.yaml: title, licence, source, publisher."""
    from casepool.core.schema import read_yaml

    raw = read_yaml("publication.yaml") or {}
    return dict(raw.get("metadata") or {})


def data_package(
    tables: Sequence[PublishedTable],
    out: Path,
    catalogue: IndicatorCatalogue,
    methodology: str,
) -> dict[str, Any]:
    """A frictionless data package describing every file of the publication in `out`: each
    table's CSV, HXL and SDMX-CSV with its schema, the JSON, workbook, DuckDB file, SDMX
    structure and methodology note; the licence, sources and methodology of the whole."""
    meta = publication_metadata()
    descriptions = {
        "indicator": "Indicator code (see the SDMX code list CL_INDICATOR)",
        "value": "The protected figure; empty when suppressed, never zero for a hidden cell",
        "obs_status": "A normal, Q suppressed, M no population for the cell",
        "conf_status": (
            "F free, C confidential (every suppressed cell, primary or secondary alike)"
            if combined_flags(tables)
            else "F free, C primary confidential, D secondary confidential"
        ),
        "numerator": "Protected count of the numerator",
        "denominator": "Protected count (or, for a rate, the reference children) of the denominator",
    }
    resources: list[dict[str, Any]] = []
    described: set[str] = set()

    def add(path: Path, extra: dict[str, Any]) -> None:
        relative = path.relative_to(out).as_posix()
        fmt, media = _MEDIA.get(path.suffix, ("bin", "application/octet-stream"))
        name = relative.lower().replace("/", "-").replace(".", "-").replace("_", "-")
        resources.append(
            {
                "name": name,
                "path": relative,
                "format": fmt,
                "mediatype": media,
                "bytes": path.stat().st_size,
                "hash": f"sha256:{_sha256(path)}",
                **extra,
            }
        )
        described.add(relative)

    for table in tables:
        title = table.indicator.label("en")
        by = ", ".join(catalogue.dimension(d).label("en") for d in table.dimensions)
        title = f"{title} by {by}" if by else title
        note = f" {table.population}." if table.population else ""
        csv_extra = {"type": "table", "encoding": "utf-8-sig", "title": title}
        add(
            out / "csv" / f"{table.name}.csv",
            {
                **csv_extra,
                "description": table.indicator.description + note,
                "schema": _table_schema(table.frame, descriptions),
            },
        )
        add(
            out / "hxl" / f"{table.name}.csv",
            {
                **csv_extra,
                "title": f"{title} (HXL)",
                "dialect": {"commentRows": [2]},
                "schema": _table_schema(hxl_frame(table, catalogue), descriptions),
            },
        )
        add(
            out / "sdmx" / f"{table.name}.csv",
            {
                "type": "table",
                "encoding": "utf-8",
                "title": f"{title} (SDMX-CSV, structure {SDMX_STRUCTURE_ID})",
                "schema": _table_schema(sdmx_frame(table, catalogue), {}),
            },
        )
        add(out / "json" / f"{table.name}.json", {"type": "file", "title": f"{title} (JSON)"})
    for path in sorted(out.rglob("*")):
        relative = path.relative_to(out).as_posix()
        if (
            path.is_file()
            and relative not in described
            and path.name
            not in {
                "datapackage.json",
                "manifest.json",
            }
        ):
            add(path, {"type": "file"})
    firsts = [t.first for t in tables if t.first]
    lasts = [t.last for t in tables if t.last]
    populations = sorted({t.population for t in tables if t.population})
    licence = dict(meta.get("licence") or {"name": "CC-BY-4.0"})
    sources = [dict(s) for s in meta.get("sources") or ()]
    sources += [{"title": p} for p in populations]
    return {
        "name": str(meta.get("name", "casepool-publication")),
        "title": str(meta.get("title", "casepool publication")),
        "description": methodology,
        "version": "1.0.0",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "licenses": [licence],
        "sources": sources,
        "contributors": [dict(c) for c in meta.get("contributors") or ()],
        "keywords": [str(k) for k in meta.get("keywords") or ()],
        "temporal": {
            "start": min(firsts).isoformat() if firsts else None,
            "end": _month_end(max(lasts)).isoformat() if lasts else None,
        },
        "resources": resources,
    }


def write_metadata(
    tables: Sequence[PublishedTable],
    out: Path,
    catalogue: IndicatorCatalogue,
    methodology: str,
) -> list[Path]:
    """The SDMX structure beside the SDMX-CSV files, then the data package describing every
    file written so far (call it last, before the manifest)."""
    structure = out / "sdmx" / "structure.xml"
    write_sdmx_structure(tables, structure, catalogue)
    package = out / "datapackage.json"
    write_json(data_package(tables, out, catalogue, methodology), package)
    return [structure, package]


def write_manifest(out: Path, summary: dict[str, Any]) -> Path:
    """manifest.json: what was published (no local path) and every file with its size and
    SHA-256, so a reader can check that nothing was changed or lost."""
    files = sorted(
        (p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"),
        key=lambda p: p.relative_to(out).as_posix(),
    )
    payload = {k: v for k, v in summary.items() if k not in {"out", "files"}}
    payload["files"] = [
        {
            "path": p.relative_to(out).as_posix(),
            "bytes": p.stat().st_size,
            "sha256": _sha256(p),
        }
        for p in files
    ]
    path = out / "manifest.json"
    write_json(payload, path)
    return path
