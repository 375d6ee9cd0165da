"""Aggregate-only packages in the catalogue: the counts an organisation sends instead of records.

An organisation whose protocol forbids record-level sharing sends, for every table of the
publication catalogue, the counts the catalogue needs at the finest level it uses (see
docs/methodology-deidentification.md, "Aggregate-only packages"):

- one *spec* per distinct (indicator, dimensions other than the period) of schemas/publication.yaml;
- per registration date the package keeps (the quarter, or the month of a monthly package), every
  cell of the spec's dimensions with every margin (`_T`), multi-valued dimensions counted once per
  category and once in their total, as `den` (the records counted) and `num` (those also in a
  percentage's numerator);
- for a median, also the number of records per whole month value in every cell (`months`), so
  the median of records and aggregates together is exact.

casepool.intake.aggregate computes these rows from records (the officer's side, on the
de-identified and locally suppressed package rows: every count is a function of the record
package). `merge_counts`,
`merge_medians` and `aggregate_span` add the active aggregate rows of the warehouse (the view
`active_aggregate_cells`, written by casepool.warehouse.aggregates) to a tabulation of records.
A request filtered on anything but the period cannot use aggregate rows (a filter on one dimension
changes every margin): `covers` says so and the counts are of records only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import duckdb
import polars as pl

from casepool.catalogue.indicators import (
    IndicatorCatalogue,
    TableRequest,
    filter_periods,
)
from casepool.core.vocabulary import KEY_SCALE, TOTAL

AGGREGATE_VIEW = "active_aggregate_cells"
"""The warehouse view of the active aggregate rows (casepool.warehouse.aggregates makes it):
org, spec, registered (DATE), cell, months (BIGINT or NULL), den, num, key_den, key_num."""

CELL_SEPARATOR = "|"


def spec_dimensions(request: TableRequest) -> tuple[str, ...]:
    """The dimensions of a request's spec: its own, without the period, sorted."""
    return tuple(sorted(d for d in request.dimensions if d != "period"))


def spec_of(request: TableRequest) -> str:
    """`indicator:dim1,dim2`: the name aggregate rows of this request's cells are stored under."""
    return f"{request.indicator}:{','.join(spec_dimensions(request))}"


def catalogue_specs(
    requests: Sequence[TableRequest], catalogue: IndicatorCatalogue | None = None
) -> list[TableRequest]:
    """One request per distinct spec of `requests` (the publication), dimensions sorted; with
    `catalogue`, also the whole population by the dimensions of every table over a `known:` /
    `recorded:` part of it (the steward's protection states part + complement = population), and
    the population by the dimension whose categories a share's numerator is, besides the share's
    (the steward's protection states Σ categories = numerator: catalogue.relations.parts_of)."""
    from casepool.catalogue.relations import parts_of, subpopulation

    seen: dict[str, TableRequest] = {}
    for request in requests:
        seen.setdefault(spec_of(request), TableRequest(request.indicator, spec_dimensions(request)))
        if catalogue is not None:
            part = subpopulation(catalogue.indicator(request.indicator), catalogue)
            if part is not None:
                whole = TableRequest(part.base, spec_dimensions(request))
                seen.setdefault(spec_of(whole), whole)
            link = parts_of(catalogue.indicator(request.indicator), catalogue)
            if link is not None and link.dimension not in request.dimensions:
                by = TableRequest(link.population, (link.dimension, *request.dimensions))
                by = TableRequest(link.population, spec_dimensions(by))
                seen.setdefault(spec_of(by), by)
    return list(seen.values())


def covers(request: TableRequest) -> bool:
    """Whether aggregate rows can take part in this request: filters on the period only."""
    return all(name == "period" for name, _ in request.where)


# --- the steward's side: add active aggregate rows to a tabulation ---------------------------------


def has_aggregates(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the warehouse has the aggregate view (a warehouse without it has none)."""
    rows = con.execute(
        "SELECT 1 FROM duckdb_views() WHERE view_name = ? AND NOT internal", [AGGREGATE_VIEW]
    ).fetchall()
    return bool(rows)


@dataclass(frozen=True)
class AggregateCoverage:
    """Which organisations' active aggregate packages a request could not include."""

    excluded_orgs: tuple[str, ...] = ()


def aggregate_orgs(con: duckdb.DuckDBPyConnection) -> tuple[str, ...]:
    """The organisations with an active aggregate package."""
    if not has_aggregates(con):
        return ()
    rows = con.execute(f"SELECT DISTINCT org FROM {AGGREGATE_VIEW} ORDER BY org").fetchall()
    return tuple(r[0] for r in rows)


def aggregate_span(con: duckdb.DuckDBPyConnection) -> tuple[date | None, date | None]:
    """The first and last registration date among the active aggregate rows."""
    if not has_aggregates(con):
        return None, None
    rows = con.execute(f"SELECT min(registered), max(registered) FROM {AGGREGATE_VIEW}").fetchall()
    first, last = rows[0] if rows else (None, None)
    return first, last


def _active_rows(
    con: duckdb.DuckDBPyConnection,
    request: TableRequest,
    first: date | None,
    last: date | None,
    months: bool,
) -> pl.DataFrame | None:
    if not covers(request) or not has_aggregates(con):
        return None
    where = ["spec = ?", "months IS NOT NULL" if months else "months IS NULL"]
    params: list[object] = [spec_of(request)]
    if first is not None:
        where.append("registered >= ?")
        params.append(first)
    if last is not None:
        where.append("registered <= ?")
        params.append(last)
    periods = filter_periods(request)
    if periods:
        where.append("(" + " OR ".join("registered BETWEEN ? AND ?" for _ in periods) + ")")
        for p in periods:
            params += [p.start, p.end]
    frame = con.sql(
        "SELECT org, registered, cell, months, den, num, key_den, key_num "
        f"FROM {AGGREGATE_VIEW} WHERE {' AND '.join(where)}",
        params=params,
    ).pl()
    return frame if frame.height else None


def _cells(frame: pl.DataFrame, request: TableRequest) -> pl.DataFrame:
    """Aggregate rows with one column per dimension of the request (the period from the date,
    once as its year or quarter and once as the margin)."""
    names = spec_dimensions(request)
    if names:
        parts = pl.col("cell").str.split(CELL_SEPARATOR)
        frame = frame.with_columns(
            parts.list.get(i, null_on_oob=True).alias(n) for i, n in enumerate(names)
        )
    if "period" in request.dimensions:
        year = pl.col("registered").dt.year().cast(pl.String)
        code = (
            year + "-Q" + pl.col("registered").dt.quarter().cast(pl.String)
            if request.period_unit == "quarter"
            else year
        )
        frame = pl.concat(
            [
                frame.with_columns(code.alias("period")),
                frame.with_columns(pl.lit(TOTAL).alias("period")),
            ]
        )
    return frame


def merge_counts(
    con: duckdb.DuckDBPyConnection,
    request: TableRequest,
    per_org: pl.DataFrame,
    first: date | None,
    last: date | None,
) -> pl.DataFrame:
    """`per_org` (org, dimensions, den, num, kden, knum) with the active aggregate rows of the
    request's spec added to the cells they count; unchanged when there are none."""
    rows = _active_rows(con, request, first, last, months=False)
    if rows is None:
        return per_org
    dims = list(request.dimensions)
    extra = _cells(rows, request).select(
        pl.col("org"),
        *[pl.col(d) for d in dims],
        pl.col("den"),
        pl.col("num"),
        pl.col("key_den").alias("kden"),
        pl.col("key_num").alias("knum"),
    )
    keys = ["org", *dims]
    both = pl.concat(
        [
            per_org.select(
                *[pl.col(c).cast(pl.String) for c in keys],
                *[pl.col(c).cast(pl.Int64) for c in ("den", "num", "kden", "knum")],
            ),
            extra.select(
                *[pl.col(c).cast(pl.String) for c in keys],
                *[pl.col(c).cast(pl.Int64) for c in ("den", "num", "kden", "knum")],
            ),
        ]
    )
    return both.group_by(keys, maintain_order=True).agg(
        pl.col("den").sum(),
        pl.col("num").sum(),
        (pl.col("kden").sum() % KEY_SCALE).alias("kden"),
        (pl.col("knum").sum() % KEY_SCALE).alias("knum"),
    )


def merge_medians(
    con: duckdb.DuckDBPyConnection,
    request: TableRequest,
    found: pl.DataFrame,
    base: str,
    multi: Sequence[str],
    first: date | None,
    last: date | None,
    run_groupings: Callable[..., pl.DataFrame],
) -> pl.DataFrame:
    """The medians (dimensions, median) of the records of `base` and the active aggregate
    histograms together; `found` (the records' medians) when there are no aggregate rows."""
    rows = _active_rows(con, request, first, last, months=True)
    if rows is None:
        return found
    dims = list(request.dimensions)
    histogram = (
        "SELECT 'records' AS org, "
        + "".join(f"{d}, " for d in dims)
        + f"months, true AS num, count(*) AS n, 0 AS k FROM ({base}) GROUP BY ALL"
    )
    mine = run_groupings(
        con, histogram, [*dims, "months"], multi, with_org=False, median=False
    ).filter(pl.col("months") != TOTAL)
    theirs = _cells(rows, request)
    both = pl.concat(
        [
            mine.select(
                *[pl.col(d).cast(pl.String) for d in dims],
                pl.col("months").cast(pl.Int64),
                pl.col("den").cast(pl.Int64),
            ),
            theirs.select(
                *[pl.col(d).cast(pl.String) for d in dims],
                pl.col("months").cast(pl.Int64),
                pl.col("den").cast(pl.Int64),
            ),
        ]
    )
    bins = both.group_by([*dims, "months"]).agg(pl.col("den").sum()).sort([*dims, "months"])
    medians = []
    for key, group in bins.group_by(dims or [pl.lit(0).alias("_")], maintain_order=True):
        value = histogram_median(
            group.get_column("months").to_list(), group.get_column("den").to_list()
        )
        medians.append({**dict(zip(dims, key, strict=False)), "median": value})
    schema = {**{d: pl.String for d in dims}, "median": pl.Float64}
    return pl.DataFrame(medians, schema=schema) if medians else found


def histogram_median(values: Sequence[int], counts: Sequence[int]) -> float | None:
    """The median of a sorted histogram as DuckDB's quantile_cont(x, 0.5) gives it for the
    values repeated their counts: the mean of the two middle values when the count is even."""
    total = sum(counts)
    if total <= 0:
        return None
    position = 0.5 * (total - 1)
    low, high = int(position), int(position) + (position > int(position))

    def at(rank: int) -> int:
        seen = 0
        for value, count in zip(values, counts, strict=True):
            seen += count
            if rank < seen:
                return value
        return values[-1]

    below, above = at(low), at(high)
    return float(below + (above - below) * (position - low))
