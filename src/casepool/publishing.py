"""Protected tables for analysts: `query` one indicator, `publish` the whole catalogue in every format.

The path of every figure: tabulate in the warehouse (casepool.tabulating) → protect the counts with
the disclosure-control engine (casepool.protecting: suppression, or cell-key noise for ad-hoc
queries) → audit the protected counts for an outsider and for every organisation as an insider →
derive percentages and medians from the protected counts (suppressed when their numerator or
denominator is, or the denominator is below k) → write. A table that fails its audit is never
written.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from casepool.errors import SchemaError, UsageError
from casepool.indicators import (
    TOTAL,
    IndicatorCatalogue,
    TableRequest,
    check_request,
    load_indicators,
    parse_by,
    parse_where,
    population_key,
)
from casepool.periods import parse_period
from casepool.protecting import CountTable  # publishing needs the disclosure-control engine
from casepool.publishing_formats import (
    PublishedTable,
    hxl_tags,
    sdmx_frame,
    table_json,
    write_aggregates,
    write_table_csv,
    write_table_hxl,
    write_table_json,
    write_table_sdmx,
    write_workbook,
)
from casepool.schema import LANGUAGES, read_yaml
from casepool.tabulating import (
    CELL_KEY,
    CONTRIBUTOR,
    IN_NUMERATOR,
    OUTCOME,
    VALUE,
    Tabulation,
    covered_span,
    indicator_values,
    snapshot,
    tabulate,
)

METHODS = ("suppress", "cellkey")
PUBLICATION_FILE = "publication.yaml"
PERCENT_DECIMALS = 1
Progress = Callable[[str], None]


# --- the catalogue ---------------------------------------------------------------------------------


def load_publication(catalogue: IndicatorCatalogue | None = None) -> tuple[TableRequest, ...]:
    """The tables of schemas/publication.yaml, each checked against the indicators."""
    catalogue = catalogue or load_indicators()
    raw = read_yaml(PUBLICATION_FILE)
    if not isinstance(raw, Mapping) or not raw.get("tables"):
        raise SchemaError("schema-invalid", file=PUBLICATION_FILE, reason="needs tables")
    default_unit = str(raw.get("default_period_unit", "year"))
    requests: list[TableRequest] = []
    for spec in raw["tables"]:
        name = str(spec.get("name", ""))
        if not name.isidentifier() or name in {r.name for r in requests}:
            raise SchemaError(
                "schema-invalid", file=PUBLICATION_FILE, reason=f"table name {name!r}"
            )
        request = TableRequest(
            indicator=str(spec.get("indicator")),
            dimensions=tuple(str(d) for d in spec.get("dimensions") or ()),
            period_unit=str(spec.get("period_unit", default_unit)),
            name=name,
        )
        try:
            check_request(request, catalogue)
        except UsageError as exc:
            raise SchemaError(
                "schema-invalid", file=PUBLICATION_FILE, reason=f"{name}: {exc.message('en')}"
            ) from None
        requests.append(request)
    units: dict[str, tuple[str, str]] = {}
    for request in requests:
        if "period" not in request.dimensions:
            continue
        key = population_key(catalogue.indicator(request.indicator), catalogue)
        seen = units.setdefault(key, (request.period_unit, request.name))
        if seen[0] != request.period_unit:
            raise SchemaError(
                "schema-invalid",
                file=PUBLICATION_FILE,
                reason=f"{request.name} counts periods in {request.period_unit}s, {seen[1]} in {seen[0]}s",
            )
    return tuple(requests)


# --- protection (the engine in casepool.protecting does the work) --------------------------------


@dataclass
class Protected:
    """A tabulation with its protected counts and the audit's verdict."""

    tabulation: Tabulation
    counts: pl.DataFrame  # count dimensions, value (null when suppressed), obs_status, conf_status
    audit_ok: bool = True
    audit_failures: list[str] = field(
        default_factory=list
    )  # who could narrow a cell: outsider / org


def _outcome_name(tabulation: Tabulation) -> str:
    """The `outcome` dimension of a percentage, named after its indicator when protected, so the
    numerators of two shares over the same children stay distinct cells."""
    return f"{tabulation.indicator.name}__outcome"


def _count_table(tabulation: Tabulation, catalogue: IndicatorCatalogue) -> Any:
    rename = {OUTCOME: _outcome_name(tabulation)} if OUTCOME in tabulation.count_dimensions else {}
    dims = [rename.get(d, d) for d in tabulation.count_dimensions]
    contributions = tabulation.contributions.rename(rename)
    return CountTable(
        indicator=population_key(tabulation.indicator, catalogue),
        dimensions=tuple(dims),
        cells=tabulation.counts.rename(rename).select(*dims, VALUE),
        multi_valued=frozenset(tabulation.multi),
        contributions=contributions,
        name=tabulation.name,
    )


def protect_tabulations(
    tabulations: Sequence[Tabulation],
    method: str = "suppress",
    settings: Any = None,
    catalogue: IndicatorCatalogue | None = None,
) -> list[Protected]:
    """Protect the tables together (cells they share get one status), then audit each one for an
    outsider and for every organisation as an insider."""
    from casepool import protecting

    if method not in METHODS:
        raise UsageError("method-invalid", method=method)
    catalogue = catalogue or load_indicators()
    settings = settings or protecting.load_protection_settings()
    tables = [_count_table(t, catalogue) for t in tabulations]
    if method == "cellkey":
        return [
            _perturbed(t, table, settings) for t, table in zip(tabulations, tables, strict=True)
        ]
    # Tables share cells only when they count the same children (same population key); each
    # such group is one linked system for the engine, and groups are independent.
    groups: dict[str, list[int]] = {}
    for i, table in enumerate(tables):
        groups.setdefault(table.indicator, []).append(i)
    protected: list[Any] = [None] * len(tables)
    for members in groups.values():
        results = protecting.protect([tables[i] for i in members], settings)
        for i, result in zip(members, results, strict=True):
            protected[i] = result
    out = []
    for tab, table, result in zip(tabulations, tables, protected, strict=True):
        report = audit_protected(tab, table, result.frame, result.k, settings)
        failures = sorted({v.attacker for v in report.failures})
        counts = _tidy_counts(tab, result.frame.rename(_back(tab)))
        out.append(Protected(tab, counts, report.protected, failures))
    return audit_region_links(out, tables, settings)


def audit_region_links(
    protected: list[Protected], tables: Sequence[Any], settings: Any
) -> list[Protected]:
    """Audit each governorate table together with the region totals that other tables of the
    same children publish: a region total is the sum of its governorates, an equation the
    engine does not see when it protects the tables (it links cells by code, not by hierarchy).
    Fail closed: a governorate table whose hidden cells these totals would narrow is withheld.
    """
    from casepool import protecting

    regions = region_of_governorates()
    for g_index, g in enumerate(protected):
        if tuple(g.tabulation.count_dimensions) != ("governorate",):
            continue
        key = tables[g_index].indicator
        for r_index, r in enumerate(protected):
            dims = tuple(r.tabulation.count_dimensions)
            if tables[r_index].indicator != key or "region" not in dims:
                continue
            others = [d for d in dims if d != "region"]
            linked = _region_linked_table(g.counts, r.counts, others, regions)
            own_others = [d for d in tables[r_index].dimensions if d != "region"]
            own = _region_linked_insiders(
                tables[g_index].contributions, tables[r_index].contributions, own_others, regions
            )
            report = protecting.audit(
                linked,
                k=settings.k,
                protection_interval=settings.interval_for(settings.k),
                insiders=own,
            )
            if not report.protected:
                g.audit_ok = False
                g.audit_failures = sorted(
                    set(g.audit_failures)
                    | {f"{v.attacker} (with {r.tabulation.name})" for v in report.failures}
                )
    return protected


def region_of_governorates() -> dict[str, str]:
    """Governorate code -> region code, from the governorate code list."""
    from casepool.schema import load_schema

    return {
        c.code: c.attributes.get("region", "") for c in load_schema().codelists["governorate"].codes
    }


def _region_layout(
    governorates: pl.DataFrame,
    by_region: pl.DataFrame,
    others: list[str],
    regions: dict[str, str],
    keep: list[str],
) -> pl.DataFrame:
    """Governorate rows under their region and under _T, and region totals (other dimensions at
    _T) as region margins: the layout of one region x governorate table. Absent rows are zeros."""
    g = governorates.select("governorate", *keep)
    inner = g.filter(pl.col("governorate") != "_T").with_columns(
        pl.col("governorate").replace_strict(regions, default="_T").alias("region")
    )
    margin = g.with_columns(pl.lit("_T").alias("region"))
    totals = (
        by_region.filter(*[pl.col(d) == "_T" for d in others])
        .filter(pl.col("region") != "_T")
        .select("region", *keep)
        .with_columns(pl.lit("_T").alias("governorate"))
    )
    columns = ["region", "governorate", *keep]
    frame = pl.concat(
        [inner.select(columns), margin.select(columns), totals.select(columns)],
        how="vertical_relaxed",
    )
    return frame.with_columns(pl.col("value").cast(pl.Int64, strict=False))


def _region_linked_table(
    governorates: pl.DataFrame, by_region: pl.DataFrame, others: list[str], regions: dict[str, str]
) -> pl.DataFrame:
    """The published cells of both tables as one region x governorate table."""
    return _region_layout(
        governorates, by_region, others, regions, ["value", "obs_status", "conf_status"]
    )


def _region_linked_insiders(
    governorates: pl.DataFrame | None,
    by_region: pl.DataFrame | None,
    others: list[str],
    regions: dict[str, str],
) -> dict[str, pl.DataFrame]:
    """Each organisation's own counts laid out like `_region_linked_table`."""
    if governorates is None or by_region is None:
        return {}
    own = _region_layout(governorates, by_region, others, regions, ["contributor", "value"])
    return {
        str(org): own.filter(pl.col("contributor") == org).drop("contributor")
        for org in sorted(own.get_column("contributor").unique().to_list())
    }


def audit_protected(
    tabulation: Tabulation, table: Any, frame: pl.DataFrame, k: int, settings: Any
) -> Any:
    """The engine's LP audit of one protected count table: for an outsider and for each
    organisation that contributed to it, knowing its own counts and the cells it alone
    contributed to (`sole`: its count is the whole cell)."""
    from casepool import protecting

    dims = list(table.dimensions)
    whole = table.cells.select(*dims, pl.col(VALUE).alias("_whole"))
    own = (
        table.contributions.join(whole, on=dims, how="left")
        .with_columns(((pl.col(VALUE) == pl.col("_whole")) & (pl.col(VALUE) > 0)).alias("sole"))
        .drop("_whole")
    )
    insiders = {
        str(org): own.filter(pl.col(CONTRIBUTOR) == org).drop(CONTRIBUTOR)
        for org in sorted(own.get_column(CONTRIBUTOR).unique().to_list())
    }
    return protecting.audit(
        frame,
        k=k,
        protection_interval=settings.interval_for(k),
        multi_valued=tuple(tabulation.multi),
        insiders=insiders,
        total_code=settings.total_code,
    )


def _back(tabulation: Tabulation) -> dict[str, str]:
    name = _outcome_name(tabulation)
    return {name: OUTCOME} if OUTCOME in tabulation.count_dimensions else {}


def _perturbed(tabulation: Tabulation, table: Any, settings: Any) -> Protected:
    """Cell-key perturbation of every count (margins too) from the cell's key, with the engine's
    perturbation table: the same records give the same noise in every query."""
    from casepool.protecting.cellkey import cellkey_perturb

    cells = tabulation.counts.select(*tabulation.count_dimensions, VALUE, CELL_KEY)
    noisy = cellkey_perturb(cells, settings.cell_key).with_columns(
        pl.lit("A").alias("obs_status"), pl.lit("F").alias("conf_status")
    )
    return Protected(tabulation, _tidy_counts(tabulation, noisy))


def _tidy_counts(tabulation: Tabulation, frame: pl.DataFrame) -> pl.DataFrame:
    dims = list(tabulation.count_dimensions)
    protected = frame.select(*dims, VALUE, "obs_status", "conf_status")
    # Keep the tabulation's order of cells (code-list order, totals last).
    return tabulation.counts.select(dims).join(
        protected, on=dims, how="left", maintain_order="left"
    )


def _k_of(tabulation: Tabulation, settings: Any) -> int:
    return int(settings.k_for(tabulation.count_dimensions))


# --- from protected counts to the published table ------------------------------------------------


def published_table(protected: Protected, settings: Any) -> PublishedTable:
    """The tidy table of one protected tabulation: counts as they are, percentages and medians
    computed from protected counts and suppressed when a part is (never recoverable)."""
    tab = protected.tabulation
    dims = list(tab.dimensions)
    ind = tab.indicator
    # Tidy as DESIGN.md says: indicator, dimensions, value and flags (the unit is the
    # indicator's, in JSON, SDMX UNIT_MEASURE and the DuckDB catalogue), so `casepool audit`
    # reads a published count table as it is.
    head = [pl.lit(ind.name).alias("indicator")]
    counts = protected.counts
    if ind.kind == "count":
        frame = counts.select(
            *head, *dims, pl.col(VALUE).cast(pl.Int64), "obs_status", "conf_status"
        )
    else:
        from casepool.protecting.ratios import suppress_ratios

        values = indicator_values(tab, counts.select(*tab.count_dimensions, VALUE))
        if ind.kind == "percent":
            part, whole = (
                counts.filter(pl.col(OUTCOME) == code).drop(OUTCOME)
                for code in (IN_NUMERATOR, TOTAL)
            )
        else:
            part, whole = None, counts
        ratios = suppress_ratios(
            values.select(*dims, VALUE),
            dims,
            denominator=whole,
            numerator=part,
            min_denominator=settings.ratio_min_denominator or _k_of(tab, settings),
        )
        if ind.kind == "percent":
            ratios = ratios.with_columns(pl.col(VALUE).round(PERCENT_DECIMALS))
        extra = ["numerator", "denominator"] if ind.kind == "percent" else ["denominator"]
        frame = (
            ratios.join(values.select(*dims, *extra), on=dims, how="left", maintain_order="left")
            if dims
            else pl.concat([ratios, values.select(extra)], how="horizontal")
        ).select(
            *head,
            *dims,
            pl.col(VALUE).cast(pl.Float64),
            "obs_status",
            "conf_status",
            *(pl.col(c).cast(pl.Int64) for c in extra),
        )
    return PublishedTable(
        name=tab.name,
        indicator=ind,
        dimensions=tuple(dims),
        frame=frame,
        first=tab.first,
        last=tab.last,
        period_unit=tab.request.period_unit,
    )


# --- query -----------------------------------------------------------------------------------------


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
    from casepool.warehouse import open_warehouse

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
    (protected,) = protect_tabulations([tab], method, settings)
    if not protected.audit_ok:
        raise UsageError(
            "query-audit-failed", table=tab.name, who=", ".join(protected.audit_failures)
        )
    return QueryResult(published_table(protected, settings), method, True, [])


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
        write_workbook([result.table], path, catalogue, lang, notes=[_note_title(lang)])
    else:
        raise UsageError("format-invalid", format=fmt)


def format_text(result: QueryResult, fmt: str, lang: str = "en") -> str:
    """The table as text for stdout in csv, hxl, sdmx or json."""
    import json

    from casepool.writing import formula_safe

    catalogue = load_indicators()
    if fmt == "json":
        return json.dumps(result.to_dict(), ensure_ascii=False, indent=2, default=str) + "\n"
    if fmt == "sdmx":
        return sdmx_frame(result.table, catalogue).write_csv()
    text = formula_safe(result.table.frame).write_csv()
    if fmt == "hxl":
        header, _, rows = text.partition("\n")
        return header + "\n" + ",".join(hxl_tags(result.table, catalogue)) + "\n" + rows
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
    from casepool.i18n import render

    lines.append(render("query-legend", lang))
    return "\n".join(lines)


def query_summary(result: QueryResult, lang: str, out: Path) -> str:
    from casepool.i18n import render

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
        lines.append(
            "    --by " + ", ".join(f"{d['name']} ({d['label']})" for d in item["dimensions"])
        )
    return "\n".join(lines)


# --- publish ---------------------------------------------------------------------------------------


@dataclass
class TableOutcome:
    """What publish did with one catalogue table."""

    name: str
    indicator: str
    cells: int
    suppressed: int
    written: bool
    audit_failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.name,
            "indicator": self.indicator,
            "cells": self.cells,
            "suppressed": self.suppressed,
            "written": self.written,
            "audit_failures": self.audit_failures,
        }


@dataclass
class PublishResult:
    """The publication written by `publish`: its tables, files and what was withheld."""

    out_dir: Path
    period: str | None
    tables: list[TableOutcome]
    files: list[Path]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(t.written for t in self.tables)

    @property
    def suppressed_share(self) -> float:
        cells = sum(t.cells for t in self.tables if t.written)
        return sum(t.suppressed for t in self.tables if t.written) / cells if cells else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out_dir),
            "period": self.period,
            "ok": self.ok,
            "tables": [t.to_dict() for t in self.tables],
            "cells": sum(t.cells for t in self.tables if t.written),
            "suppressed_share": round(self.suppressed_share, 4),
            "files": [str(f.relative_to(self.out_dir)) for f in self.files],
            "seconds": round(self.seconds, 3),
        }

    def render(self, lang: str) -> str:
        from casepool.i18n import render

        lines = [
            render("publish-table-withheld", lang, table=t.name, who=", ".join(t.audit_failures))
            for t in self.tables
            if not t.written
        ]
        lines.append(
            render(
                "publish-done",
                lang,
                tables=sum(t.written for t in self.tables),
                cells=f"{sum(t.cells for t in self.tables if t.written):,}",
                share=f"{100 * self.suppressed_share:.1f}",
                path=str(self.out_dir),
            )
        )
        return "\n".join(lines)


def _note_title(lang: str) -> str:
    from casepool.i18n import render

    return render("publication-title", lang)


def publish(
    warehouse: str | Path,
    out_dir: str | Path,
    period: str | None = None,
    progress: Progress | None = None,
    *,
    lang: str = "en",
    settings: Any = None,
    tables: Sequence[TableRequest] | None = None,
) -> PublishResult:
    """Tabulate, protect together, audit and write every table of schemas/publication.yaml
    (or of `tables`). `period`: a year or quarter (e.g. "2025", "2025-Q3"); `progress` gets one
    line per stage. Returns what was written; a table that fails its audit is left out."""
    from casepool import protecting
    from casepool.warehouse import open_warehouse

    started = time.perf_counter()
    notify = progress or (lambda text: None)
    lang = lang if lang in LANGUAGES else "en"
    catalogue = load_indicators()
    requests = tuple(tables) if tables is not None else load_publication(catalogue)
    chosen = parse_period(period) if period else None
    settings = settings or protecting.load_protection_settings()
    out = Path(out_dir)
    tabulations: list[Tabulation] = []
    with open_warehouse(warehouse, read_only=True) as con:
        source = snapshot(con, catalogue)
        # Every table covers the same span, so cells they share count the same records.
        first, last = (chosen.start, chosen.end) if chosen else covered_span(con, source)
        for request in requests:
            if chosen is not None:
                request = TableRequest(
                    request.indicator,
                    request.dimensions,
                    (("period", (chosen.code,)),),
                    request.period_unit,
                    request.name,
                )
            notify(f"tabulate {request.table_name}")
            tabulations.append(
                tabulate(con, request, first=first, last=last, catalogue=catalogue, source=source)
            )
    notify(f"protect {len(tabulations)} tables")
    protected = protect_tabulations(tabulations, "suppress", settings, catalogue)
    outcomes: list[TableOutcome] = []
    written: list[PublishedTable] = []
    for p in protected:
        table = published_table(p, settings)
        outcomes.append(
            TableOutcome(
                table.name,
                table.indicator.name,
                table.cells,
                table.suppressed,
                p.audit_ok,
                p.audit_failures,
            )
        )
        if p.audit_ok:
            written.append(table)
    notify(f"write {len(written)} tables")
    # Everything is written into a staging folder beside `out`, then swapped in: a crash or a
    # kill leaves the previous publication or the new one, never a mix of the two. A table
    # withheld now therefore cannot survive from an earlier publication either.
    with staged_folder(out) as staging:
        files = write_publication(
            written, staging, catalogue, lang, chosen.code if chosen else None, settings
        )
        result = PublishResult(out, chosen.code if chosen else None, outcomes, [], 0.0)
        result.seconds = time.perf_counter() - started
        from casepool.writing import write_json

        write_json(
            result.to_dict() | {"generated": datetime.now(UTC).isoformat(timespec="seconds")},
            staging / "manifest.json",
        )
    result.files = [out / f.relative_to(staging) for f in files] + [out / "manifest.json"]
    return result


def recover_publication(out: Path) -> Path:
    """Put back a publication left aside by a run killed between its two renames; returns the
    name it is set aside under during a swap."""
    previous = out.parent / f".{out.name}.previous"
    if previous.exists():
        if out.exists():
            shutil.rmtree(previous)
        else:
            previous.rename(out)
    return previous


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A fresh folder beside `out` that replaces `out` whole when the block succeeds.

    Refuses to replace a non-empty folder that is not a publication (it has no manifest.json).
    The swap is two renames; a run that dies between them leaves `.NAME.previous`, which the
    next run puts back before it starts.
    """
    out = Path(out)
    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    previous = recover_publication(out)
    if out.exists() and any(out.iterdir()) and not (out / "manifest.json").exists():
        raise UsageError(
            "usage-error", reason=f"{out} is not empty and holds no casepool publication"
        )
    for stale in parent.glob(f".{out.name}.staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=parent))
    try:
        yield staging
        if out.exists():
            out.rename(previous)
        staging.rename(out)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def write_publication(
    tables: Sequence[PublishedTable],
    out: Path,
    catalogue: IndicatorCatalogue,
    lang: str,
    period: str | None,
    settings: Any,
) -> list[Path]:
    """Every format of every (already audited) table, the workbook, the DuckDB file, the note."""
    files: list[Path] = []
    for table in tables:
        for folder, write in (
            ("csv", lambda t, p: write_table_csv(t, p)),
            ("hxl", lambda t, p: write_table_hxl(t, p, catalogue)),
            ("sdmx", lambda t, p: write_table_sdmx(t, p, catalogue)),
            ("json", lambda t, p: write_table_json(t, p, catalogue)),
        ):
            path = out / folder / f"{table.name}.{'json' if folder == 'json' else 'csv'}"
            write(table, path)
            files.append(path)
    note = methodology_note(tables, period, settings)
    workbook = out / "publication.xlsx"
    write_workbook(tables, workbook, catalogue, lang, notes=note.splitlines())
    aggregates = out / "aggregates.duckdb"
    write_aggregates(tables, aggregates, catalogue)
    from casepool.writing import write_atomic

    methodology = out / "methodology.md"
    write_atomic(methodology, lambda h: h.write(note))
    return [*files, workbook, aggregates, methodology]


def methodology_note(tables: Sequence[PublishedTable], period: str | None, settings: Any) -> str:
    """A short note that travels with the publication (the full text is in docs/)."""
    firsts = [t.first for t in tables if t.first]
    lasts = [t.last for t in tables if t.last]
    span = f"{min(firsts):%Y-%m} to {max(lasts):%Y-%m}" if firsts and lasts else "no registrations"
    return "\n".join(
        [
            "# casepool publication: methodology note",
            "",
            f"Registrations covered: {span}" + (f" (period {period})." if period else "."),
            "",
            "What is counted: child survivors of sexual exploitation registered by the participating",
            "organisations, from de-identified records (no names, case numbers or exact dates leave",
            "an organisation). Each child is counted once: a child referred by another organisation",
            "that registered the child first (reported elsewhere = yes and referral source = CSO) is",
            "not counted again. Coverage is what the organisations registered, not prevalence.",
            "",
            f"Disclosure control: no published count lies between 1 and {settings.k - 1}; cells that",
            "could reveal a child are suppressed (conf_status C), with further cells (D) so that no",
            "suppressed cell can be worked out from the others, even by an organisation that knows its",
            "own records. Every table was audited by linear programming before it was written.",
            "Percentages and medians are shown only when their numerator and denominator are shown",
            f"and the denominator is at least {settings.ratio_min_denominator or settings.k}.",
            "",
            "Codes: _T is a total. An empty value is suppressed, never zero. Indicator formulas:",
            "docs/indicator-reference.md; method: docs/methodology-indicators.md.",
            "",
        ]
    )
