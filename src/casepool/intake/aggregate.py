"""The officer's aggregate-only package: the counts the catalogue needs, computed from the package rows.

`submit --aggregate` prepares the submission exactly as for a record package (profile, local
suppression to k), then counts those de-identified rows with the catalogue's own SQL instead of
sending them: every count is a function of the record package it replaces, so the steward learns
no more from it than from that package (docs/methodology-deidentification.md says what the
steward can still infer). The layout is in casepool.exchange.aggregate; how the steward adds the
counts to the tabulations is in casepool.catalogue.aggregating.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import polars as pl

from casepool.catalogue.aggregating import CELL_SEPARATOR, catalogue_specs, spec_of
from casepool.catalogue.indicators import (
    IndicatorCatalogue,
    TableRequest,
    base_sql,
    load_indicators,
    packed_sql,
)
from casepool.catalogue.publication import load_publication
from casepool.catalogue.tabulating import run_groupings
from casepool.core.vocabulary import TOTAL
from casepool.exchange.aggregate import COLUMNS, empty_aggregate
from casepool.exchange.profile import PSEUDONYM, ROW
from casepool.intake.deidentifying import Submission

_RECORDS = "aggregate_records"
_SOURCE = "aggregate_source_records"


def aggregate_rows(
    submission: Submission,
    requests: Sequence[TableRequest] | None = None,
    catalogue: IndicatorCatalogue | None = None,
) -> pl.DataFrame:
    """The aggregate rows (casepool.exchange.aggregate.COLUMNS) of a prepared submission's package
    rows, for every spec of `requests` (default: the tables of schemas/publication.yaml)."""
    catalogue = catalogue or load_indicators()
    requests = load_publication(catalogue) if requests is None else requests
    if submission.rows_kept == 0:
        return empty_aggregate()
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        if submission.frame is not None:
            con.register(_RECORDS, submission.frame.drop(ROW, PSEUDONYM, strict=False))
        else:  # written batch by batch: DuckDB reads the package's Parquet itself
            assert submission.rows_file is not None
            path = str(submission.rows_file).replace("'", "''")
            con.execute(
                f"CREATE TEMP VIEW {_RECORDS} AS SELECT * EXCLUDE ({PSEUDONYM}) "
                f"FROM read_parquet('{path}')"
            )
        # The registration date stands where the organisation stands in a warehouse tabulation:
        # every grouping keeps it, so one pass gives the cells of every date. record_key is not
        # sent: the warehouse keys aggregate rows itself.
        con.execute(
            f"CREATE TEMP VIEW {_SOURCE} AS SELECT CAST(report_date AS VARCHAR) AS org, "
            f"0.0 AS record_key, * FROM {_RECORDS}"
        )
        return cells_of(con, _SOURCE, requests, catalogue)
    finally:
        con.close()


def cells_of(
    con: duckdb.DuckDBPyConnection,
    source: str,
    requests: Sequence[TableRequest],
    catalogue: IndicatorCatalogue,
) -> pl.DataFrame:
    """Aggregate rows of the records in `source`, whose `org` column holds the registration date."""
    frames = []
    for spec in catalogue_specs(requests, catalogue):
        indicator = catalogue.indicator(spec.indicator)
        dims = list(spec.dimensions)
        multi = [d for d in dims if catalogue.dimension(d).multi]
        packed = packed_sql(spec, None, None, catalogue, source)
        counted = run_groupings(con, packed, dims, multi, with_org=True, median=False)
        frames.append(_rows(spec, counted, dims, months=False))
        if indicator.kind == "median":
            histogram = (
                "SELECT org, "
                + "".join(f"{d}, " for d in dims)
                + "months, true AS num, count(*) AS n, 0 AS k "
                + f"FROM ({base_sql(spec, None, None, catalogue, source)}) GROUP BY ALL"
            )
            binned = run_groupings(
                con, histogram, [*dims, "months"], multi, with_org=True, median=False
            ).filter(pl.col("months") != TOTAL)
            frames.append(_rows(spec, binned, dims, months=True))
    if not frames:
        return empty_aggregate()
    return (
        pl.concat(frames)
        .filter(pl.col("den") > 0)
        .sort("spec", "registered", "cell", "months", nulls_last=False)
    )


def _rows(spec: TableRequest, frame: pl.DataFrame, dims: list[str], months: bool) -> pl.DataFrame:
    cell = (
        pl.concat_str([pl.col(d) for d in dims], separator=CELL_SEPARATOR)
        if dims
        else pl.lit("", pl.String)
    )
    return frame.select(
        pl.lit(spec_of(spec)).alias("spec"),
        pl.col("org").str.to_date("%Y-%m-%d").alias("registered"),
        cell.alias("cell"),
        (pl.col("months").cast(pl.Int64) if months else pl.lit(None, pl.Int64)).alias("months"),
        pl.col("den").cast(pl.Int64),
        (pl.col("den") if months else pl.col("num")).cast(pl.Int64).alias("num"),
    ).cast(COLUMNS)  # type: ignore[arg-type]
