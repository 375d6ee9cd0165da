"""Where publish reads the counted records from: the flagged rows of `cases` when the flags are
fresh (a filter over compressed storage, read again by each table), else a snapshot of
`active_cases` (the window over every row, run once)."""

from __future__ import annotations

import duckdb

from casepool.catalogue.indicators import (
    IndicatorCatalogue,
    condition_sql,
    load_indicators,
    referenced_columns,
)
from casepool.catalogue.tabulating import snapshot
from casepool.warehouse.store import ACTIVE_COLUMN, active_flags_fresh

COUNTED_VIEW = "counted_cases_flagged"


def counted_source(
    con: duckdb.DuckDBPyConnection, catalogue: IndicatorCatalogue | None = None
) -> str:
    """The name of a temporary table or view holding the counted records (the columns the
    catalogue reads, the population rule applied). The caller reads it within one transaction,
    so every table counts the same rows."""
    catalogue = catalogue or load_indicators()
    if not active_flags_fresh(con):
        return snapshot(con, catalogue)
    rule = condition_sql(catalogue.population, catalogue.schema)
    columns = ", ".join(referenced_columns(catalogue))
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {COUNTED_VIEW} AS SELECT {columns} FROM cases "
        f"WHERE {ACTIVE_COLUMN} AND {rule}"
    )
    return COUNTED_VIEW
