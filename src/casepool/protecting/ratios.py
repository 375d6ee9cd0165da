"""Percentages and medians: suppressed when their numerator or denominator is, or too few children."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from casepool.core.errors import TableError
from casepool.protecting.tables import CONF_STATUS, FREE, OBS_STATUS, PRIMARY, SECONDARY, VALUE


def _statuses(frame: pl.DataFrame, dims: Sequence[str], prefix: str) -> pl.DataFrame:
    missing = [c for c in [*dims, VALUE] if c not in frame.columns]
    if missing:
        raise TableError("protect-missing-column", table=prefix, column=", ".join(missing))
    status = (
        pl.col(CONF_STATUS).fill_null(FREE)
        if CONF_STATUS in frame.columns
        else pl.when(pl.col(VALUE).is_null()).then(pl.lit(PRIMARY)).otherwise(pl.lit(FREE))
    )
    return frame.select(
        *[pl.col(d).cast(pl.String) for d in dims],
        pl.col(VALUE).cast(pl.Int64, strict=False).alias(f"{prefix}_value"),
        status.alias(f"{prefix}_status"),
    )


def suppress_ratios(
    ratios: pl.DataFrame,
    dimensions: Sequence[str],
    *,
    denominator: pl.DataFrame,
    numerator: pl.DataFrame | None = None,
    min_denominator: int = 5,
) -> pl.DataFrame:
    """The ratios (percentages, or medians when `numerator` is None) with their statuses.

    `ratios` holds the dimensions and `value`. `denominator` and `numerator` are protected count
    tables in tidy form (dimensions, `value`, `conf_status`), with true values where they are
    known to the caller; a missing conf_status means a null value is suppressed. A ratio is
    suppressed — value null, obs_status Q — as C when its denominator (the children it is
    computed over) is below `min_denominator`, and as D when its numerator or denominator is
    suppressed (publishing it would give that count back).
    """
    dims = list(dimensions)
    if VALUE not in ratios.columns:
        raise TableError("protect-missing-column", table="ratios", column=VALUE)
    joined = ratios.with_columns(pl.col(d).cast(pl.String) for d in dims).join(
        _statuses(denominator, dims, "den"), on=dims, how="left"
    )
    if numerator is not None:
        joined = joined.join(_statuses(numerator, dims, "num"), on=dims, how="left")
    else:
        joined = joined.with_columns(pl.lit(FREE).alias("num_status"))
    small = pl.col("den_value").is_null() & (pl.col("den_status") == FREE) | (
        pl.col("den_value") < min_denominator
    )
    hidden_count = (pl.col("den_status").fill_null(PRIMARY) != FREE) | (
        pl.col("num_status").fill_null(PRIMARY) != FREE
    )
    status = (
        pl.when(small.fill_null(True))
        .then(pl.lit(PRIMARY))
        .when(hidden_count)
        .then(pl.lit(SECONDARY))
        .otherwise(pl.lit(FREE))
    )
    out = joined.with_columns(status.alias(CONF_STATUS)).with_columns(
        pl.when(pl.col(CONF_STATUS) == FREE).then(pl.col(VALUE)).otherwise(None).alias(VALUE),
        pl.when(pl.col(CONF_STATUS) == FREE)
        .then(pl.lit("A"))
        .otherwise(pl.lit("Q"))
        .alias(OBS_STATUS),
    )
    keep = [c for c in ratios.columns if c not in (OBS_STATUS, CONF_STATUS)]
    return out.select([*keep, OBS_STATUS, CONF_STATUS])
