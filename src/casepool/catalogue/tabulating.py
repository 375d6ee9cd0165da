"""Count an indicator in the warehouse: every category from the code lists, every margin, per organisation.

One `Tabulation` holds the unprotected counts of one table: the nationwide cells (with the cell key
the cell-key method needs), each organisation's own cells (for the insider guarantee), and for a
median the medians. A percentage is counted as a table with one more dimension, `outcome` (`yes`
in the numerator, `no` in the denominator only, `_T` the denominator), so disclosure control also
protects the complement of the numerator. Nothing here leaves the warehouse unprotected: the
caller protects a Tabulation before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from itertools import combinations
from typing import Any

import duckdb
import polars as pl

from casepool.catalogue import aggregating
from casepool.catalogue.indicators import (
    KEY_SCALE,
    LATEST,
    TOTAL,
    Indicator,
    IndicatorCatalogue,
    TableRequest,
    base_sql,
    check_request,
    filter_periods,
    load_indicators,
    packed_sql,
    period_codes,
    referenced_columns,
    resolve_latest,
)
from casepool.core.vocabulary import CELL_KEY, CONTRIBUTOR, VALUE

OUTCOME = "outcome"
IN_NUMERATOR, NOT_IN_NUMERATOR = "yes", "no"


@dataclass
class Tabulation:
    """The unprotected counts of one table, with its margins, contributors and medians."""

    request: TableRequest
    indicator: Indicator
    dimensions: tuple[str, ...]  # as asked
    count_dimensions: tuple[str, ...]  # of the count table (with `outcome` for a percentage)
    multi: tuple[str, ...]  # multi-valued dimensions: their totals are not sums of categories
    categories: dict[str, tuple[str, ...]]  # every count dimension's categories, `_T` last
    counts: pl.DataFrame  # count dimensions, value (Int64), cell_key (Float64 in [0, 1))
    contributions: pl.DataFrame  # count dimensions, contributor, value (non-zero rows only)
    medians: pl.DataFrame | None = None  # dimensions, value (Float64; null when no record)
    first: date | None = None
    last: date | None = None
    # For a table over a part of the population (`known:` / `recorded:`): the whole population
    # counted by the same dimensions, so protection can hold the part's complement.
    population: Tabulation | None = None
    # For a share whose numerator is a category (or categories) of a dimension of its population
    # (catalogue.relations.numerator_parts): the population counted by that dimension and the
    # share's dimensions, so protection can state Σ categories = numerator.
    parts: Tabulation | None = None

    @property
    def name(self) -> str:
        return self.request.table_name


SNAPSHOT = "counted_cases_snapshot"
PACKED = "counted_cases_packed"


def snapshot(con: duckdb.DuckDBPyConnection, catalogue: IndicatorCatalogue | None = None) -> str:
    """Materialise the counted records once (a temporary table, allowed on a read-only
    connection), so a catalogue of tables does not re-run the `active_cases` window each time."""
    from casepool.catalogue.indicators import condition_sql

    catalogue = catalogue or load_indicators()
    rule = condition_sql(catalogue.population, catalogue.schema)
    con.execute("SET enable_progress_bar = false")
    columns = ", ".join(referenced_columns(catalogue))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {SNAPSHOT} AS SELECT {columns} FROM active_cases "
        f"WHERE {rule}"
    )
    return SNAPSHOT


def covered_span(
    con: duckdb.DuckDBPyConnection, source: str = "active_cases"
) -> tuple[date | None, date | None]:
    """The first and last registration month among the active cases."""
    rows = con.execute(f"SELECT min(report_date), max(report_date) FROM {source}").fetchall()
    first, last = rows[0] if rows else (None, None)
    extra = [d for d in aggregating.aggregate_span(con) if d is not None]  # aggregate packages
    if extra:
        first, last = (
            min([first, *extra] if first else extra),
            max([last, *extra] if last else extra),
        )
    return first, last


def _span(
    con: duckdb.DuckDBPyConnection,
    request: TableRequest,
    first: date | None,
    last: date | None,
    source: str,
) -> tuple[date | None, date | None]:
    periods = filter_periods(request)
    if periods:
        return min(p.start for p in periods), max(p.end for p in periods)
    if first is None or last is None:
        seen_first, seen_last = covered_span(con, source)
        first, last = first or seen_first, last or seen_last
    return first, last


def _categories(
    catalogue: IndicatorCatalogue,
    request: TableRequest,
    first: date | None,
    last: date | None,
) -> dict[str, tuple[str, ...]]:
    categories: dict[str, tuple[str, ...]] = {}
    for name in request.dimensions:
        dimension = catalogue.dimension(name)
        if dimension.derived == "period":
            codes = tuple(period_codes(first, last, request.period_unit)) if first and last else ()
        else:
            codes = dimension.code_values
            wanted = request.filter_codes(name)
            if wanted:
                codes = tuple(c for c in codes if c in wanted)
        categories[name] = (*codes, TOTAL)
    return categories


def _grouping_query(
    base: str,
    dims: Sequence[str],
    multi_grouped: Sequence[str],
    singles: Sequence[str],
    with_org: bool,
    median: bool,
) -> str:
    """Counts (or medians) for every grouping set that groups exactly `multi_grouped` of the multi
    dimensions: those are unnested first, so a record counts once in each of its categories and
    once in every margin over them."""
    source = "base"
    ctes = [f"base AS ({base})"]
    for i, name in enumerate(multi_grouped):
        ctes.append(f"u{i} AS (SELECT * REPLACE (unnest({name}) AS {name}) FROM {source})")
        source = f"u{i}"
    org = ["org"] if with_org else []
    sets = []
    for size in range(len(singles) + 1):
        for chosen in combinations(singles, size):
            sets.append("(" + ", ".join([*org, *multi_grouped, *chosen]) + ")")
    columns = [*org] + [
        f"CASE WHEN GROUPING({d}) = 1 THEN '{TOTAL}' ELSE CAST({d} AS VARCHAR) END AS {d}"
        for d in dims
        if d in multi_grouped or d in singles
    ]
    if median:
        measures = ["count(*) AS den", "quantile_cont(months, 0.5) AS median"]
    else:
        # `base` is packed: one row per distinct combination, with its record count n and key sum k.
        measures = [
            "CAST(sum(n) AS BIGINT) AS den",
            "CAST(coalesce(sum(n) FILTER (WHERE num), 0) AS BIGINT) AS num",
            f"CAST(coalesce(sum(k), 0) % {KEY_SCALE} AS BIGINT) AS kden",
            f"CAST(coalesce(sum(k) FILTER (WHERE num), 0) % {KEY_SCALE} AS BIGINT) AS knum",
        ]
    group = ", ".join(sets) if sets else "()"
    return (
        "WITH "
        + ", ".join(ctes)
        + f" SELECT {', '.join(columns + measures)} FROM {source} GROUP BY GROUPING SETS ({group})"
    )


def _run_groupings(
    con: duckdb.DuckDBPyConnection,
    base: str,
    dims: Sequence[str],
    multi: Sequence[str],
    with_org: bool,
    median: bool,
) -> pl.DataFrame:
    singles = [d for d in dims if d not in multi]
    frames = []
    for size in range(len(multi) + 1):
        for grouped in combinations(multi, size):
            query = _grouping_query(base, dims, grouped, singles, with_org, median)
            frame = con.sql(query).pl()
            # A multi dimension not grouped here is a margin: `_T`.
            frame = frame.with_columns(pl.lit(TOTAL).alias(d) for d in multi if d not in grouped)
            frames.append(frame)
    columns = (["org"] if with_org else []) + list(dims)
    return pl.concat(
        [
            f.select([pl.col(c).cast(pl.String) for c in columns] + [pl.exclude(columns)])
            for f in frames
        ],
        how="vertical_relaxed",
    )


# Public for the officer's aggregate-only packages (intake/aggregate.py).
run_groupings = _run_groupings


def _medians(
    con: duckdb.DuckDBPyConnection, base: str, dims: Sequence[str], multi: Sequence[str]
) -> pl.DataFrame:
    """The median months (dimensions, median) of `base`'s records in every cell and margin.

    Counted as a histogram of whole months per cell (a few hundred rows) and read off it as
    DuckDB's quantile_cont(months, 0.5) reads the raw rows (`aggregating.histogram_median`:
    the same two middle values, the same arithmetic), instead of a quantile over every record
    (3.2 of 28 CPU s of a publish over 10M records)."""
    histogram = (
        "SELECT 'records' AS org, "
        + "".join(f"{d}, " for d in dims)
        + f"months, true AS num, count(*) AS n, 0 AS k FROM ({base}) GROUP BY ALL"
    )
    bins = (
        _run_groupings(con, histogram, [*dims, "months"], multi, with_org=False, median=False)
        .filter(pl.col("months") != TOTAL)
        .select(
            *[pl.col(d).cast(pl.String) for d in dims],
            pl.col("months").cast(pl.Int64),
            pl.col("den").cast(pl.Int64),
        )
        .sort([*dims, "months"])
    )
    medians = []
    for key, group in bins.group_by(dims or [pl.lit(0).alias("_")], maintain_order=True):
        value = aggregating.histogram_median(
            group.get_column("months").to_list(), group.get_column("den").to_list()
        )
        medians.append({**dict(zip(dims, key, strict=False)), "median": value})
    return pl.DataFrame(medians, schema={**{d: pl.String for d in dims}, "median": pl.Float64})


def _grid(categories: dict[str, tuple[str, ...]], dims: Sequence[str]) -> pl.DataFrame:
    grid = pl.DataFrame({"_": [0]})
    for d in dims:
        grid = grid.join(pl.DataFrame({d: list(categories[d])}, schema={d: pl.String}), how="cross")
    return grid.drop("_")


def _long_counts(frame: pl.DataFrame, indicator: Indicator, keys: Sequence[str]) -> pl.DataFrame:
    """den/num/kden/knum as value and key per cell; a percentage gains the `outcome` dimension."""
    if indicator.kind != "percent":
        return frame.select(*keys, pl.col("den").alias(VALUE), pl.col("kden").alias("key"))
    parts = [
        frame.select(
            *keys,
            pl.lit(IN_NUMERATOR).alias(OUTCOME),
            pl.col("num").alias(VALUE),
            pl.col("knum").alias("key"),
        ),
        frame.select(
            *keys,
            pl.lit(NOT_IN_NUMERATOR).alias(OUTCOME),
            (pl.col("den") - pl.col("num")).alias(VALUE),
            ((pl.col("kden") - pl.col("knum")) % KEY_SCALE).alias("key"),
        ),
        frame.select(
            *keys,
            pl.lit(TOTAL).alias(OUTCOME),
            pl.col("den").alias(VALUE),
            pl.col("kden").alias("key"),
        ),
    ]
    return pl.concat(parts)


def tabulate(
    con: duckdb.DuckDBPyConnection,
    request: TableRequest,
    *,
    first: date | None = None,
    last: date | None = None,
    catalogue: IndicatorCatalogue | None = None,
    source: str = "active_cases",
) -> Tabulation:
    """Count one table in the warehouse behind `con` (read-only is enough); `source` may be a
    `snapshot` of the counted records."""
    catalogue = catalogue or load_indicators()
    check_request(request, catalogue)
    indicator = catalogue.indicator(request.indicator)
    con.execute("SET enable_progress_bar = false")
    if LATEST in (request.filter_codes("period") or ()):
        request = resolve_latest(request, covered_span(con, source)[1])
    first, last = _span(con, request, first, last, source)
    base = base_sql(request, first, last, catalogue, source)
    dims = list(request.dimensions)
    multi = [d for d in dims if catalogue.dimension(d).multi]
    categories = _categories(catalogue, request, first, last)

    # Pack the records into distinct combinations first: the groupings (and the unnesting of
    # multi-valued dimensions) then run over thousands of rows instead of millions.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {PACKED} AS "
        + packed_sql(request, first, last, catalogue, source)
    )
    per_org = _run_groupings(
        con, f"SELECT * FROM {PACKED}", dims, multi, with_org=True, median=False
    )
    per_org = aggregating.merge_counts(con, request, per_org, first, last)
    count_dims = ((OUTCOME,) if indicator.kind == "percent" else ()) + tuple(dims)
    if indicator.kind == "percent":
        categories = {OUTCOME: (IN_NUMERATOR, NOT_IN_NUMERATOR, TOTAL), **categories}
    grid = _grid(categories, count_dims)

    national = per_org.group_by(dims or pl.lit(0).alias("_")).agg(
        pl.col("den").sum(),
        pl.col("num").sum(),
        (pl.col("kden").sum() % KEY_SCALE).alias("kden"),
        (pl.col("knum").sum() % KEY_SCALE).alias("knum"),
    )
    if not dims:
        national = national.drop("_")
    national_long = _long_counts(national, indicator, dims)
    counts = (
        grid.join(national_long, on=list(count_dims), how="left", maintain_order="left")
        if count_dims
        else national_long
    )
    if not count_dims and counts.height == 0:
        counts = pl.DataFrame({VALUE: [0], "key": [0]})
    counts = counts.select(
        *count_dims,
        pl.col(VALUE).fill_null(0).cast(pl.Int64),
        (pl.col("key").fill_null(0).cast(pl.Float64) / KEY_SCALE).alias(CELL_KEY),
    )
    org_long = _long_counts(per_org, indicator, ["org", *dims]).rename({"org": CONTRIBUTOR})
    contributions = org_long.join(grid, on=list(count_dims), how="semi") if count_dims else org_long
    contributions = contributions.filter(pl.col(VALUE) > 0).select(
        *count_dims, pl.col(CONTRIBUTOR), pl.col(VALUE).cast(pl.Int64)
    )

    medians = None
    if indicator.kind == "median":
        found = _medians(con, base, dims, multi)
        found = aggregating.merge_medians(
            con, request, found, base, multi, first, last, _run_groupings
        )
        value_grid = _grid(categories, dims)
        medians = (
            value_grid.join(found, on=dims, how="left", maintain_order="left") if dims else found
        ).select(*dims, pl.col("median").cast(pl.Float64).alias(VALUE))
        if not dims and medians.height == 0:
            medians = pl.DataFrame({VALUE: [None]}, schema={VALUE: pl.Float64})
    return Tabulation(
        request=request,
        indicator=indicator,
        dimensions=tuple(dims),
        count_dimensions=count_dims,
        multi=tuple(multi),
        categories=categories,
        counts=counts,
        contributions=contributions,
        medians=medians,
        first=first,
        last=last,
    )


def describe(tabulation: Tabulation) -> dict[str, Any]:
    """A summary for logs and tests: table, indicator, dimensions and cell count."""
    return {
        "table": tabulation.name,
        "indicator": tabulation.indicator.name,
        "dimensions": list(tabulation.dimensions),
        "cells": tabulation.counts.height,
    }


def indicator_values(tabulation: Tabulation, counts: pl.DataFrame | None = None) -> pl.DataFrame:
    """The indicator per cell from (possibly protected) counts: dimensions, value, and for a
    percentage or median its numerator and denominator. A count stays Int64; a percentage is
    100 × numerator / denominator, null when either is null or the denominator is 0."""
    counts = tabulation.counts if counts is None else counts
    dims = list(tabulation.dimensions)
    kind = tabulation.indicator.kind
    if kind == "count":
        return counts.select(*dims, pl.col(VALUE))
    if kind == "percent":
        part = counts.filter(pl.col(OUTCOME) == IN_NUMERATOR).select(
            *dims, pl.col(VALUE).alias("numerator")
        )
        whole = counts.filter(pl.col(OUTCOME) == TOTAL).select(
            *dims, pl.col(VALUE).alias("denominator")
        )
        joined = (
            whole.join(part, on=dims, how="left", maintain_order="left")
            if dims
            else (whole.with_columns(part.get_column("numerator")))
        )
        return joined.select(
            *dims,
            pl.when(pl.col("denominator") > 0)
            .then(100.0 * pl.col("numerator") / pl.col("denominator"))
            .otherwise(None)
            .alias(VALUE),
            pl.col("numerator"),
            pl.col("denominator"),
        )
    medians = tabulation.medians
    assert medians is not None
    n = counts.select(*dims, pl.col(VALUE).alias("denominator"))
    joined = (
        medians.join(n, on=dims, how="left", maintain_order="left")
        if dims
        else (medians.with_columns(n.get_column("denominator")))
    )
    return joined.select(
        *dims, pl.col(VALUE), pl.lit(None, pl.Int64).alias("numerator"), "denominator"
    )
