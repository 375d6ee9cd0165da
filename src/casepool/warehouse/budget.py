"""The differential-privacy budget per registration quarter and the measurements it bought.

Three tables, created on first write (`CREATE TABLE IF NOT EXISTS`):
- `dp_budget`: one row per quarter with the ρ spent so far. Every spend updates this row inside
  the caller's transaction, so two concurrent spenders on one quarter conflict and one of them is
  rolled back: the budget cannot be exceeded by racing.
- `dp_measurements`: one row per measured table and quarter (its noise scale, sensitivity, ρ and
  the release that recorded it); the primary key stops a table being measured twice.
- `dp_cells`: the measured cells after post-processing (non-negative whole numbers), and the raw
  noisy value. These are differentially private already; everything answered from them is free.

A read-only reader of a warehouse without these tables sees nothing spent and nothing measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from casepool.core.errors import UsageError
from casepool.warehouse.store import utc_now

_DDL = (
    """CREATE TABLE IF NOT EXISTS dp_budget (
  period VARCHAR PRIMARY KEY, rho_spent DOUBLE NOT NULL, updated_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS dp_measurements (
  period VARCHAR NOT NULL, measurement VARCHAR NOT NULL, indicator VARCHAR NOT NULL,
  dimensions VARCHAR[] NOT NULL, scale DOUBLE NOT NULL, sensitivity DOUBLE NOT NULL,
  rho DOUBLE NOT NULL, parent VARCHAR, release_id VARCHAR NOT NULL,
  measured_at TIMESTAMP NOT NULL, PRIMARY KEY (period, measurement))""",
    """CREATE TABLE IF NOT EXISTS dp_cells (
  period VARCHAR NOT NULL, measurement VARCHAR NOT NULL, cell VARCHAR NOT NULL,
  noisy BIGINT NOT NULL, value BIGINT NOT NULL)""",
)
TABLES = ("dp_budget", "dp_measurements", "dp_cells")


def ensure_budget(con: duckdb.DuckDBPyConnection) -> None:
    """Create the budget tables when this warehouse has none yet (a writable connection)."""
    for statement in _DDL:
        con.execute(statement)


def has_budget(con: duckdb.DuckDBPyConnection) -> bool:
    names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    return all(t in names for t in TABLES)


def spend(
    con: duckdb.DuckDBPyConnection, period: str, rho: float, limit: float
) -> tuple[float, float]:
    """Charge `rho` to `period` in the caller's transaction; refuse (UsageError, nothing charged)
    when the quarter's spent ρ would pass `limit`. Returns (spent before, spent after)."""
    row = con.execute("SELECT rho_spent FROM dp_budget WHERE period = ?", [period]).fetchall()
    before = float(row[0][0]) if row else 0.0
    after = before + rho
    if after > limit * (1 + 1e-9):
        raise UsageError(
            "dp-over-budget",
            period=period,
            asked=f"{rho:.4g}",
            left=f"{max(limit - before, 0.0):.4g}",
        )
    if row:
        con.execute(
            "UPDATE dp_budget SET rho_spent = ?, updated_at = ? WHERE period = ?",
            [after, utc_now(), period],
        )
    else:
        con.execute("INSERT INTO dp_budget VALUES (?, ?, ?)", [period, after, utc_now()])
    return before, after


@dataclass
class MeasuredTable:
    """One measured table of one quarter: how it was noised and its post-processed cells."""

    period: str
    measurement: str
    indicator: str
    dimensions: tuple[str, ...]
    scale: float
    sensitivity: float
    rho: float
    parent: str | None
    release_id: str
    cells: pl.DataFrame  # cell (canonical JSON of the codes), noisy, value


def store_measurement(con: duckdb.DuckDBPyConnection, table: MeasuredTable) -> None:
    """Write one measured table in the caller's transaction (a second one for the same quarter
    and table violates the primary key)."""
    con.execute(
        "INSERT INTO dp_measurements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            table.period,
            table.measurement,
            table.indicator,
            list(table.dimensions),
            table.scale,
            table.sensitivity,
            table.rho,
            table.parent,
            table.release_id,
            utc_now(),
        ],
    )
    frame = table.cells.select(
        pl.lit(table.period).alias("period"),
        pl.lit(table.measurement).alias("measurement"),
        pl.col("cell").cast(pl.String),
        pl.col("noisy").cast(pl.Int64),
        pl.col("value").cast(pl.Int64),
    )
    con.register("_dp_cells_in", frame.to_arrow())
    try:
        con.execute("INSERT INTO dp_cells SELECT * FROM _dp_cells_in")
    finally:
        con.unregister("_dp_cells_in")


def measured_periods(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """Each measured quarter with the names of its measured tables."""
    if not has_budget(con):
        return {}
    out: dict[str, set[str]] = {}
    for period, name in con.execute("SELECT period, measurement FROM dp_measurements").fetchall():
        out.setdefault(period, set()).add(name)
    return out


def load_measurements(
    con: duckdb.DuckDBPyConnection, periods: Sequence[str], indicator: str
) -> list[MeasuredTable]:
    """The measured tables of `indicator` in `periods`, with their cells."""
    if not has_budget(con) or not periods:
        return []
    rows = con.execute(
        "SELECT period, measurement, indicator, dimensions, scale, sensitivity, rho, parent, "
        "release_id FROM dp_measurements WHERE indicator = ? AND list_contains(?, period) "
        "ORDER BY period, measured_at, measurement",
        [indicator, list(periods)],
    ).fetchall()
    cells = con.sql(
        "SELECT c.period, c.measurement, c.cell, c.noisy, c.value FROM dp_cells c "
        "JOIN dp_measurements m USING (period, measurement) "
        "WHERE m.indicator = ? AND list_contains(?, c.period)",
        params=[indicator, list(periods)],
    ).pl()
    out = []
    for r in rows:
        mine = cells.filter((pl.col("period") == r[0]) & (pl.col("measurement") == r[1]))
        out.append(
            MeasuredTable(
                period=r[0],
                measurement=r[1],
                indicator=r[2],
                dimensions=tuple(r[3]),
                scale=float(r[4]),
                sensitivity=float(r[5]),
                rho=float(r[6]),
                parent=r[7],
                release_id=r[8],
                cells=mine.select("cell", "noisy", "value"),
            )
        )
    return out


def budget_rows(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Spent ρ and the number of measured tables per quarter (empty without budget tables)."""
    if not has_budget(con):
        return []
    rows = con.execute(
        "SELECT b.period, b.rho_spent, (SELECT count(*) FROM dp_measurements m "
        "WHERE m.period = b.period) FROM dp_budget b ORDER BY b.period"
    ).fetchall()
    return [{"period": r[0], "rho_spent": float(r[1]), "tables": int(r[2])} for r in rows]
