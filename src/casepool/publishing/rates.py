"""Rates per 100,000 children, from protected counts only.

A rate indicator (unit `rate` in indicators.yaml) is tabulated, protected and audited as the count
it divides: the cells are the same children as the tables of registered cases, linked with them in
protection. Only then is each published count divided by the children of its cell in the reference
population. A suppressed count gives a suppressed rate (same statuses); a cell the population does
not cover (sex unknown, age band not available) has no rate (`obs_status` M, missing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import polars as pl

from casepool.catalogue.indicators import IndicatorCatalogue, TableRequest
from casepool.catalogue.population import Population
from casepool.publishing.formats import PublishedTable

RATE_DECIMALS = 1
MISSING = "M"  # SDMX OBS_STATUS: missing value (no population for the cell)


def is_rate(request: TableRequest, catalogue: IndicatorCatalogue) -> bool:
    return catalogue.indicator(request.indicator).unit == "rate"


def without_rates(
    requests: Sequence[TableRequest], catalogue: IndicatorCatalogue, population: Population | None
) -> tuple[TableRequest, ...]:
    """The requests to tabulate: rate tables only when a population is loaded."""
    if population is not None:
        return tuple(requests)
    return tuple(r for r in requests if not is_rate(r, catalogue))


def rate_table(
    table: PublishedTable, population: Population, regions: dict[str, str]
) -> PublishedTable:
    """The protected count table `table` of a rate indicator as rates per `per` children:
    value = per × count / children, with the count as `numerator` and the children as
    `denominator`."""
    per = table.indicator.per or 100_000
    dims = list(table.dimensions)
    frame = table.frame
    children = (
        [
            population.children({d: row[d] for d in dims}, regions)
            for row in frame.select(dims).iter_rows(named=True)
        ]
        if dims
        else [population.children({}, regions)] * frame.height
    )
    counts = frame.get_column("value").cast(pl.Int64)
    out = frame.with_columns(
        pl.Series("numerator", counts.to_list(), dtype=pl.Int64),
        pl.Series("denominator", children, dtype=pl.Int64),
    )
    rate = (
        pl.when(pl.col("numerator").is_not_null() & (pl.col("denominator") > 0))
        .then((per * pl.col("numerator") / pl.col("denominator")).round(RATE_DECIMALS))
        .otherwise(None)
    )
    no_population = pl.col("denominator").is_null() | (pl.col("denominator") <= 0)
    out = out.with_columns(
        rate.cast(pl.Float64).alias("value"),
        pl.when(no_population & pl.col("numerator").is_not_null())
        .then(pl.lit(MISSING))
        .otherwise(pl.col("obs_status"))
        .alias("obs_status"),
    )
    extra = []
    if "margin" in out.columns:  # a differentially private count: its margin scales with it
        margin = (
            pl.when(pl.col("denominator") > 0)
            .then((per * pl.col("margin") / pl.col("denominator")).round(RATE_DECIMALS))
            .otherwise(None)
        )
        out = out.with_columns(margin.cast(pl.Float64).alias("margin"))
        extra = ["margin"]
    out = out.select(
        "indicator", *dims, "value", *extra, "obs_status", "conf_status", "numerator", "denominator"
    )
    return replace(table, frame=out, population=population.citation())


def apply_rates(
    tables: Sequence[PublishedTable], population: Population | None
) -> list[PublishedTable]:
    """Every table as it is, rate tables turned into rates (dropped when no population)."""
    from casepool.core.schema import load_schema

    regions = {
        c.code: c.attributes.get("region", "") for c in load_schema().codelists["governorate"].codes
    }
    out = []
    for table in tables:
        if table.indicator.unit != "rate":
            out.append(table)
        elif population is not None:
            out.append(rate_table(table, population, regions))
    return out


def rates_of(table: PublishedTable, population: Population | None) -> PublishedTable:
    """One queried table: a rate table as rates (refused without a population), else as it is."""
    if table.indicator.unit != "rate":
        return table
    if population is None:
        from casepool.core.errors import UsageError

        raise UsageError("rate-needs-population")
    return apply_rates([table], population)[0]
