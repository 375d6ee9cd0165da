"""Protected tables for analysts: `query` one indicator, `publish` the whole catalogue in every format.

The path of every figure: tabulate in the warehouse (casepool.catalogue.tabulating) → protect the counts with
the disclosure-control engine (casepool.protecting: suppression, or cell-key noise for ad-hoc
queries) → audit the protected counts for an outsider and for every organisation as an insider →
derive percentages and medians from the protected counts (suppressed when their numerator or
denominator is, or the denominator is below k) → write. A table that fails its audit is never
written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casepool.catalogue.indicators import (
    TableRequest,
    check_request,
    formula_text,
    load_indicators,
    parse_by,
    parse_where,
)
from casepool.catalogue.population import read_population
from casepool.catalogue.tabulating import VALUE, tabulate
from casepool.core.errors import UsageError
from casepool.publishing.formats import (
    PublishedTable,
    hxl_text,
    sdmx_frame,
    table_json,
    write_table_csv,
    write_table_hxl,
    write_table_json,
    write_table_sdmx,
    write_workbook,
)
from casepool.publishing.protect import METHODS, protect_tabulations, published_table
from casepool.publishing.publish import note_title
from casepool.publishing.rates import rates_of


@dataclass
class QueryResult:
    """One protected, audited table asked for by an analyst."""

    table: PublishedTable
    method: str
    audit_ok: bool
    audit_failures: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "audit_ok": self.audit_ok, **_json_ready(self.table)}


def _json_ready(table: PublishedTable) -> dict[str, Any]:
    return table_json(table, load_indicators())


def query(
    warehouse: str | Path,
    indicator: str,
    *,
    by: str | Sequence[str] | None = None,
    where: Sequence[str] | Sequence[tuple[str, Sequence[str]]] = (),
    method: str = "suppress",
    period_unit: str = "year",
    settings: Any = None,
) -> QueryResult:
    """One indicator as a protected table with its margins; refuses (UsageError) what the
    indicator does not allow. `by`: "governorate,sex" or a sequence; `where`: "sex=M" texts or
    (dimension, codes) pairs."""
    from casepool import protecting
    from casepool.warehouse.store import open_warehouse

    dims = parse_by(by) if isinstance(by, str) or by is None else tuple(by)
    filters = tuple(
        pair
        for w in where
        for pair in (parse_where([w]) if isinstance(w, str) else [(str(w[0]), tuple(w[1]))])
    )
    request = TableRequest(indicator, dims, filters, period_unit)
    catalogue = load_indicators()
    check_request(request, catalogue)
    if method not in METHODS:
        raise UsageError("method-invalid", method=method)
    settings = settings or protecting.load_protection_settings()
    with open_warehouse(warehouse, read_only=True) as con:
        tab = tabulate(con, request, catalogue=catalogue)
        population = read_population(con)
    (protected,) = protect_tabulations([tab], method, settings)
    if not protected.audit_ok:
        raise UsageError(
            "query-audit-failed", table=tab.name, who=", ".join(protected.audit_failures)
        )
    table = rates_of(
        published_table(protected, settings), population
    )  # rates: from protected counts
    return QueryResult(table, method, True, [])


def write_query(result: QueryResult, path: str | Path, fmt: str, lang: str = "en") -> None:
    """Write one query's table in `fmt` (csv, xlsx, json, hxl, sdmx, table)."""
    catalogue = load_indicators()
    path = Path(path)
    if fmt in {"csv", "table"}:
        write_table_csv(result.table, path)
    elif fmt == "hxl":
        write_table_hxl(result.table, path, catalogue)
    elif fmt == "sdmx":
        write_table_sdmx(result.table, path, catalogue)
    elif fmt == "json":
        write_table_json(result.table, path, catalogue)
    elif fmt == "xlsx":
        write_workbook([result.table], path, catalogue, lang, notes=[note_title(lang)])
    else:
        raise UsageError("format-invalid", format=fmt)


def format_text(result: QueryResult, fmt: str, lang: str = "en") -> str:
    """The table as text for stdout in csv, hxl, sdmx or json."""
    import json

    from casepool.core.writing import formula_safe

    catalogue = load_indicators()
    if fmt == "json":
        return json.dumps(result.to_dict(), ensure_ascii=False, indent=2, default=str) + "\n"
    if fmt == "sdmx":
        return sdmx_frame(result.table, catalogue).write_csv()
    text = formula_safe(result.table.frame).write_csv()
    if fmt == "hxl":
        return hxl_text(result.table, catalogue)
    return text


def render_table(table: PublishedTable, lang: str = "en") -> str:
    """An aligned text table for the terminal: labels, value (or `x` when suppressed), flag."""
    catalogue = load_indicators()
    header = [catalogue.dimension(d).label(lang) for d in table.dimensions] + ["value", "flag"]
    rows = []
    for row in table.frame.iter_rows(named=True):
        cells = [catalogue.dimension(d).code_label(row[d], lang) for d in table.dimensions]
        value = row[VALUE]
        if value is None:
            text = "x"
        elif table.indicator.unit == "count":
            text = f"{int(value):,}"
        else:
            text = f"{value:.1f}"
        rows.append([*cells, text, "" if row["conf_status"] == "F" else row["conf_status"]])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [table.indicator.label(lang) + f" ({table.indicator.unit})"]
    for r in [header, *rows]:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    from casepool.core.i18n import render

    lines.append(render("query-legend", lang))
    return "\n".join(lines)


def query_summary(result: QueryResult, lang: str, out: Path) -> str:
    from casepool.core.i18n import render

    return render(
        "query-written",
        lang,
        table=result.table.name,
        cells=result.table.cells,
        suppressed=result.table.suppressed,
        path=str(out),
    )


def list_indicators(lang: str = "en") -> list[dict[str, Any]]:
    """Every indicator with its label in `lang`, unit and allowed dimensions."""
    catalogue = load_indicators()
    return [
        {
            "indicator": ind.name,
            "label": ind.label(lang),
            "unit": ind.unit,
            "formula": formula_text(ind, catalogue),
            "dimensions": [
                {"name": d, "label": catalogue.dimension(d).label(lang)} for d in ind.dimensions
            ],
        }
        for ind in catalogue.indicators.values()
    ]


def render_listing(listing: Iterable[Mapping[str, Any]]) -> str:
    lines = []
    for item in listing:
        lines.append(f"{item['indicator']}  ({item['unit']})  {item['label']}")
        lines.append(f"    = {item['formula']}")
        lines.append(
            "    --by " + ", ".join(f"{d['name']} ({d['label']})" for d in item["dimensions"])
        )
    return "\n".join(lines)
