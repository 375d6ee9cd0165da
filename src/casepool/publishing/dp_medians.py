"""Medians under differential privacy, answered from a noisy histogram (post-processing, no spend).

A median indicator (months from incident to registration) is measured in the workload like any
table, as a histogram: children counted by whole months 0, 1, …, CAP − 1 and "CAP or more" (the
domain is bounded and public, so every bin is noised, zeros too), crossed with the table's
single-valued dimensions. One child is in one bin: sensitivity 1, the discrete Gaussian of
`casepool.protecting.dp`, ρ from the quarter's budget like every workload table.

A question's median is read from the noisy histogram summed over the asked quarters and the
dimensions the question does not fix: the smallest month m whose noisy cumulative count reaches
half the noisy total. Its interval is honest about the noise: with c(m) the noisy cumulative count
and N the noisy total, c(m) − N/2 = ½(Σ_{i≤m} eᵢ − Σ_{i>m} eᵢ) + (true part) has the noise variance
¼ × (bins summed) × σ², whatever m is; the interval runs from the first month whose c(m) reaches
N/2 − M to the first whose c(m) reaches N/2 + M, M the margin of that variance at the stated
confidence. The margin shown is the larger distance from the median to an end of the interval.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import duckdb
import polars as pl

from casepool.catalogue.indicators import (
    TOTAL,
    IndicatorCatalogue,
    TableRequest,
    base_sql,
)
from casepool.catalogue.tabulating import VALUE
from casepool.core.errors import UsageError
from casepool.protecting import dp
from casepool.protecting.dp_settings import DPSettings, Measurement
from casepool.publishing import derived
from casepool.warehouse import budget

MONTHS = "months"
CAP = 24  # the last bin holds every child registered CAP or more months after the incident
MONTH_CODES = (*(str(i) for i in range(CAP)), f"{CAP}+")


def is_median(measurement: Measurement, catalogue: IndicatorCatalogue) -> bool:
    return catalogue.indicator(measurement.indicator).kind == "median"


def check_median_measurement(measurement: Measurement, catalogue: IndicatorCatalogue) -> None:
    """A median's histogram may cross single-valued dimensions only (one child, one bin)."""
    for d in measurement.by:
        if catalogue.dimension(d).multi:
            raise UsageError("dp-median-multi", indicator=measurement.indicator, dimension=d)


def histogram_truth(
    con: duckdb.DuckDBPyConnection,
    measurement: Measurement,
    quarter: str,
    catalogue: IndicatorCatalogue,
) -> pl.DataFrame:
    """The true histogram of one quarter over the full grid: dims…, months, value."""
    request = TableRequest(measurement.indicator, measurement.by, (("period", (quarter,)),))
    base = base_sql(request, catalogue=catalogue)
    dims = list(measurement.by)
    keys = "".join(f"CAST({d} AS VARCHAR) AS {d}, " for d in dims)
    found = con.sql(
        f"SELECT {keys}CASE WHEN months >= {CAP} THEN '{CAP}+' "
        f"ELSE CAST(greatest(months, 0) AS VARCHAR) END AS {MONTHS}, count(*) AS n "
        f"FROM ({base}) GROUP BY ALL"
    ).pl()
    grid = pl.DataFrame({MONTHS: list(MONTH_CODES)}, schema={MONTHS: pl.String})
    for d in reversed(dims):
        codes = pl.DataFrame({d: list(catalogue.dimension(d).code_values)}, schema={d: pl.String})
        grid = codes.join(grid, how="cross")
    if found.height == 0:
        return grid.with_columns(pl.lit(0, pl.Int64).alias(VALUE))
    found = found.with_columns(pl.col(c).cast(pl.String) for c in [*dims, MONTHS])
    return grid.join(found, on=[*dims, MONTHS], how="left", maintain_order="left").select(
        *dims, MONTHS, pl.col("n").fill_null(0).cast(pl.Int64).alias(VALUE)
    )


def _stored(
    con: duckdb.DuckDBPyConnection, indicator: str, quarters: Sequence[str]
) -> dict[str, dict[str, budget.MeasuredTable]]:
    out: dict[str, dict[str, budget.MeasuredTable]] = {}
    for t in budget.load_measurements(con, quarters, indicator):
        out.setdefault(t.period, {})[t.measurement] = t
    return out


def covering_median(
    request: TableRequest, settings: DPSettings, catalogue: IndicatorCatalogue
) -> list[Measurement]:
    """The workload's histograms of the median that fix every asked and filtered dimension."""
    need = {d for d in request.dimensions if d != "period"}
    need |= {n for n, _ in request.where if n != "period"}
    found = [
        m
        for m in settings.for_indicator(request.indicator)
        if derived.covers(m.by, need, catalogue)  # a region or an age group: sums of bins
    ]
    if not found:
        measured = [
            "(" + ", ".join(m.by) + ")" for m in settings.for_indicator(request.indicator)
        ] or ["-"]
        raise UsageError(
            "dp-not-measured",
            indicator=request.indicator,
            dimensions=", ".join(sorted(need)) or "-",
            measured=" ".join(measured),
        )
    return found


def median_of(noisy: Sequence[float], variance: float, confidence: float) -> tuple[Any, Any]:
    """(median month, margin) from a noisy histogram over MONTH_CODES whose bins have `variance`
    in all; (None, None) when the noisy total is not positive."""
    total = float(sum(noisy))
    if total <= 0:
        return None, None
    cumulative, running = [], 0.0
    for v in noisy:
        running += v
        cumulative.append(running)
    spread = dp.margin_of_share(variance / 4.0, confidence)

    def first_reaching(level: float) -> int:
        for m, c in enumerate(cumulative):
            if c >= level:
                return m
        return len(cumulative) - 1

    median = first_reaching(total / 2)
    low, high = first_reaching(total / 2 - spread), first_reaching(total / 2 + spread)
    return float(median), float(max(median - low, high - median))


def median_table(
    con: duckdb.DuckDBPyConnection,
    request: TableRequest,
    quarters: Sequence[str],
    settings: DPSettings,
    catalogue: IndicatorCatalogue,
    categories: dict[str, tuple[str, ...]],
) -> tuple[pl.DataFrame, list[str]]:
    """Every cell of the question (its `categories`, `_T` margins included): median and margin,
    from the histogram that serves it with the fewest bins summed; and the tables used."""
    candidates = covering_median(request, settings, catalogue)
    stored = _stored(con, request.indicator, quarters)
    usable = [m for m in candidates if all(m.name in stored.get(q, {}) for q in quarters)]
    if not usable:
        raise UsageError(
            "dp-not-measured",
            indicator=request.indicator,
            dimensions=", ".join(request.dimensions) or "-",
            measured="-",
        )
    chosen = min(usable, key=lambda m: (len(m.by), m.name))
    frames = []
    for q in quarters:
        table = stored[q][chosen.name]
        rows = [json.loads(c) for c in table.cells.get_column("cell").to_list()]
        frame = pl.DataFrame(
            {d: [r[d] for r in rows] for d in table.dimensions}
            | {
                "noisy": table.cells.get_column("noisy").cast(pl.Float64),
                "var": [table.scale**2] * len(rows),
                "period": [q if request.period_unit == "quarter" else q[:4]] * len(rows),
            }
        )
        frames.append(frame)
    hist = pl.concat(frames, how="vertical_relaxed")
    hist = derived.with_derived(hist, catalogue)  # derived dimensions as sums of their bins
    for name, codes in request.where:
        if name != "period":
            hist = hist.filter(pl.col(name).is_in(list(codes)))
    dims = list(request.dimensions)
    out: list[dict[str, Any]] = []
    grid: list[dict[str, str]] = [{}]
    for d in dims:
        grid = [{**g, d: c} for g in grid for c in categories[d]]
    for cell in grid:
        part = hist
        for d, code in cell.items():
            if code != TOTAL:
                part = part.filter(pl.col(d) == code)
        bins = part.group_by(MONTHS).agg(pl.col("noisy").sum(), pl.col("var").sum())
        by_month = {r[MONTHS]: r for r in bins.iter_rows(named=True)}
        noisy = [by_month[m]["noisy"] if m in by_month else 0.0 for m in MONTH_CODES]
        variance = sum(r["var"] for r in by_month.values())
        value, margin = median_of(noisy, variance, settings.confidence)
        out.append({**cell, VALUE: value, "margin": margin})
    schema = {d: pl.String for d in dims} | {VALUE: pl.Float64, "margin": pl.Float64}
    return pl.DataFrame(out, schema=schema), [chosen.name]
