"""The differential-privacy budget per registration quarter and the measurements it bought.

Three tables, created on first write (`CREATE TABLE IF NOT EXISTS`):
- `dp_budget`: one row per quarter with the ρ spent so far. Every spend updates this row inside
  the caller's transaction, so two concurrent spenders on one quarter conflict and one of them is
  rolled back: the budget cannot be exceeded by racing.
- `dp_measurements`: one row per measured table and quarter (its noise scale, sensitivity, ρ and
  the release that recorded it); the primary key stops a table being measured twice.
- `dp_cells`: the measured cells after post-processing (non-negative whole numbers), and the raw
  noisy value. These are differentially private already; everything answered from them is free.

Each measurement also records its `basis`: a fingerprint of the active submissions whose cases
fall in its quarter when it was taken (a column added on first write to warehouses made before
it). When the quarter's active submissions change (a late or superseding package, a revocation)
its measurements are stale and must be taken again: `replace_measurement` keeps the old row in
`dp_revisions` (its cells stay in the release ledger under its release id) and puts the new one
in its place; the spend goes to the same `dp_budget` row, so a quarter's revisions compose and
never pass its budget.

A **year** measured directly (`dp_answers.measure_year`) is stored like a quarter under the
year's code ("2025"): its spend is charged to each of its four quarters' `dp_budget` rows (a child
is in one quarter), and its basis is the fingerprint of its quarters' bases. When one of its
quarters is measured again, the year's tables are withdrawn to `dp_revisions` in that same
transaction (`withdraw_period`): a year never answers from quarters it was not combined with.

A read-only reader of a warehouse without these tables sees nothing spent and nothing measured.
"""

from __future__ import annotations

import hashlib
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
_REVISIONS_DDL = (
    """CREATE TABLE IF NOT EXISTS dp_revisions (
  period VARCHAR NOT NULL, measurement VARCHAR NOT NULL, indicator VARCHAR NOT NULL,
  dimensions VARCHAR[] NOT NULL, scale DOUBLE NOT NULL, sensitivity DOUBLE NOT NULL,
  rho DOUBLE NOT NULL, parent VARCHAR, release_id VARCHAR NOT NULL,
  measured_at TIMESTAMP NOT NULL, basis VARCHAR, replaced_at TIMESTAMP NOT NULL,
  replaced_by VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS dp_revision_cells (
  period VARCHAR NOT NULL, measurement VARCHAR NOT NULL, release_id VARCHAR NOT NULL,
  cell VARCHAR NOT NULL, noisy BIGINT NOT NULL, value BIGINT NOT NULL)""",
)
_COLUMNS = (
    "period, measurement, indicator, dimensions, scale, sensitivity, rho, parent, release_id, "
    "measured_at, basis"
)
TABLES = ("dp_budget", "dp_measurements", "dp_cells")
BASIS_COLUMN = "basis"
UNKNOWN_BASIS = "unknown"  # a measurement taken before bases were recorded


def ensure_budget(con: duckdb.DuckDBPyConnection) -> None:
    """Create the budget tables when this warehouse has none yet (a writable connection)."""
    for statement in _DDL:
        con.execute(statement)
    if not _has_basis(con):
        con.execute(f"ALTER TABLE dp_measurements ADD COLUMN IF NOT EXISTS {BASIS_COLUMN} VARCHAR")
    for statement in _REVISIONS_DDL:
        con.execute(statement)


def _has_basis(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        con.execute(
            "SELECT 1 FROM duckdb_columns() WHERE table_name = 'dp_measurements' "
            "AND column_name = ?",
            [BASIS_COLUMN],
        ).fetchall()
    )


def current_bases(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, int]]:
    """Each registration quarter with the fingerprint of the active submissions whose counted
    cases fall in it, and how many they are (what a measurement taken now is taken from)."""
    rows = con.execute(
        "SELECT CAST(year(report_date) AS VARCHAR) || '-Q' || CAST(quarter(report_date) AS VARCHAR) "
        "AS q, "
        "list(DISTINCT submission_id ORDER BY submission_id) FROM active_cases "
        "WHERE report_date IS NOT NULL GROUP BY q"
    ).fetchall()
    out = {}
    for quarter, ids in rows:
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32]
        out[str(quarter)] = (digest, len(ids))
    return out


def year_quarters(year: str) -> list[str]:
    """The four quarter codes of a year code."""
    return [f"{year}-Q{i}" for i in range(1, 5)]


def is_year(period: str) -> bool:
    return len(period) == 4 and period.isdigit()


def year_basis(bases: dict[str, tuple[str, int]], year: str) -> str | None:
    """The basis of a year: a fingerprint of its four quarters' bases (None when one has no data)."""
    parts = [bases.get(q) for q in year_quarters(year)]
    if any(p is None for p in parts):
        return None
    text = "\n".join(p[0] for p in parts if p is not None)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def with_years(bases: dict[str, tuple[str, int]]) -> dict[str, tuple[str, int]]:
    """`bases` and, for every year whose four quarters all have data, the year's basis."""
    out = dict(bases)
    for year in {q[:4] for q in bases if "-Q" in q}:
        found = year_basis(bases, year)
        if found is not None:
            out[year] = (found, sum(bases[q][1] for q in year_quarters(year)))
    return out


def measured_bases(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """Each measured quarter with the bases its stored measurements were taken from
    (`UNKNOWN_BASIS` for one taken before bases were recorded)."""
    if not has_budget(con):
        return {}
    column = BASIS_COLUMN if _has_basis(con) else "NULL"
    out: dict[str, set[str]] = {}
    for period, basis in con.execute(
        f"SELECT DISTINCT period, {column} FROM dp_measurements"
    ).fetchall():
        out.setdefault(period, set()).add(basis or UNKNOWN_BASIS)
    return out


def stale_periods(
    con: duckdb.DuckDBPyConnection, current: dict[str, tuple[str, int]] | None = None
) -> set[str]:
    """Measured quarters whose stored measurements were not all taken from the data as it is
    now (a quarter whose cases are all gone is stale too: its measurements count revoked data)."""
    now = with_years(current_bases(con) if current is None else current)
    return {
        period
        for period, bases in measured_bases(con).items()
        if bases != {now.get(period, ("", 0))[0]}
    }


def spent_on(con: duckdb.DuckDBPyConnection, period: str) -> float:
    """The ρ spent on `period` so far (0 without budget tables)."""
    if not has_budget(con):
        return 0.0
    row = con.execute("SELECT rho_spent FROM dp_budget WHERE period = ?", [period]).fetchall()
    return float(row[0][0]) if row else 0.0


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
    basis: str | None = None  # fingerprint of the quarter's active submissions it was taken from


def store_measurement(con: duckdb.DuckDBPyConnection, table: MeasuredTable) -> None:
    """Write one measured table in the caller's transaction (a second one for the same quarter
    and table violates the primary key)."""
    con.execute(
        "INSERT INTO dp_measurements (period, measurement, indicator, dimensions, scale, "
        f"sensitivity, rho, parent, release_id, measured_at, {BASIS_COLUMN}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            table.basis,
        ],
    )
    _store_cells(con, table)


def _archive(
    con: duckdb.DuckDBPyConnection, period: str, measurement: str, replaced_by: str
) -> None:
    """Keep the stored table of `period` in `dp_revisions` with its cells (caller's transaction)."""
    key = [period, measurement]
    con.execute(
        f"INSERT INTO dp_revisions SELECT {_COLUMNS}, ?, ? FROM dp_measurements "
        "WHERE period = ? AND measurement = ?",
        [utc_now(), replaced_by, *key],
    )
    con.execute(
        "INSERT INTO dp_revision_cells SELECT c.period, c.measurement, m.release_id, c.cell, "
        "c.noisy, c.value FROM dp_cells c JOIN dp_measurements m USING (period, measurement) "
        "WHERE c.period = ? AND c.measurement = ?",
        key,
    )
    con.execute("DELETE FROM dp_cells WHERE period = ? AND measurement = ?", key)


def withdraw_period(con: duckdb.DuckDBPyConnection, period: str, replaced_by: str) -> list[str]:
    """Keep every stored table of `period` in `dp_revisions` and take it out of answering, in the
    caller's transaction (a year whose quarter is measured again). The names withdrawn."""
    names = [
        str(r[0])
        for r in con.execute(
            "SELECT measurement FROM dp_measurements WHERE period = ? ORDER BY measurement",
            [period],
        ).fetchall()
    ]
    for name in names:
        _archive(con, period, name, replaced_by)
    con.execute("DELETE FROM dp_measurements WHERE period = ?", [period])
    return names


def year_spends(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """The ρ each year's stored measurement charged each of its quarters (0 when none)."""
    if not has_budget(con):
        return {}
    rows = con.execute(
        "SELECT period, sum(rho) FROM dp_measurements WHERE length(period) = 4 GROUP BY period"
    ).fetchall()
    return {str(r[0]): float(r[1]) for r in rows}


def replace_measurement(con: duckdb.DuckDBPyConnection, table: MeasuredTable) -> None:
    """Put a re-measured table in place of the stored one of its quarter, in the caller's
    transaction; the old one is kept in `dp_revisions` with its cells (and in the ledger)."""
    found = con.execute(
        "SELECT 1 FROM dp_measurements WHERE period = ? AND measurement = ?",
        [table.period, table.measurement],
    ).fetchall()
    if not found:
        store_measurement(con, table)
        return
    _archive(con, table.period, table.measurement, table.release_id)
    # An UPDATE, not a delete and insert: DuckDB refuses a key deleted and inserted again in one
    # transaction.
    con.execute(
        "UPDATE dp_measurements SET indicator = ?, dimensions = ?, scale = ?, sensitivity = ?, "
        f"rho = ?, parent = ?, release_id = ?, measured_at = ?, {BASIS_COLUMN} = ? "
        "WHERE period = ? AND measurement = ?",
        [
            table.indicator,
            list(table.dimensions),
            table.scale,
            table.sensitivity,
            table.rho,
            table.parent,
            table.release_id,
            utc_now(),
            table.basis,
            table.period,
            table.measurement,
        ],
    )
    _store_cells(con, table)


def restorable(
    con: duckdb.DuckDBPyConnection, period: str, basis: str, names: Sequence[str]
) -> dict[str, str] | None:
    """When every table of `names` was measured before on exactly the data `basis` (and then
    replaced), the release of the newest such measurement of each; else None."""
    if not names or not has_budget(con):
        return None
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "dp_revisions" not in tables:
        return None
    rows = con.execute(
        "SELECT measurement, release_id FROM dp_revisions WHERE period = ? AND basis = ? "
        "QUALIFY row_number() OVER (PARTITION BY measurement ORDER BY replaced_at DESC) = 1",
        [period, basis],
    ).fetchall()
    found = {str(r[0]): str(r[1]) for r in rows}
    return {n: found[n] for n in names} if all(n in found for n in names) else None


def restore_measurement(
    con: duckdb.DuckDBPyConnection, period: str, measurement: str, release_id: str, by: str
) -> None:
    """Put back a table measured before (release `release_id`) in place of the stored one, in
    the caller's transaction: free, its figures were released already. The stored one is kept."""
    _archive(con, period, measurement, by)
    key = [period, measurement, release_id]
    con.execute(
        "UPDATE dp_measurements m SET indicator = r.indicator, dimensions = r.dimensions, "
        "scale = r.scale, sensitivity = r.sensitivity, rho = r.rho, parent = r.parent, "
        f"release_id = r.release_id, measured_at = r.measured_at, {BASIS_COLUMN} = r.basis "
        "FROM (SELECT * FROM dp_revisions WHERE period = ? AND measurement = ? "
        "AND release_id = ? LIMIT 1) r WHERE m.period = r.period AND m.measurement = r.measurement",
        key,
    )
    con.execute(
        "INSERT INTO dp_cells SELECT period, measurement, cell, noisy, value "
        "FROM dp_revision_cells WHERE period = ? AND measurement = ? AND release_id = ?",
        key,
    )
    con.execute(
        "DELETE FROM dp_revision_cells WHERE period = ? AND measurement = ? AND release_id = ?",
        key,
    )
    con.execute(
        "DELETE FROM dp_revisions WHERE period = ? AND measurement = ? AND release_id = ?", key
    )


def _store_cells(con: duckdb.DuckDBPyConnection, table: MeasuredTable) -> None:
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


def stored_rhos(con: duckdb.DuckDBPyConnection, period: str) -> dict[str, float]:
    """The ρ each table stored for `period` was first measured with (the largest it ever had:
    revisions of the geometric reserve spend less, and are scaled from this)."""
    if not has_budget(con):
        return {}
    names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    union = (
        " UNION ALL SELECT measurement, rho FROM dp_revisions WHERE period = $p"
        if "dp_revisions" in names
        else ""
    )
    rows = con.execute(
        "SELECT measurement, max(rho) FROM (SELECT measurement, rho FROM dp_measurements "
        f"WHERE period = $p{union}) GROUP BY measurement",
        {"p": period},
    ).fetchall()
    return {str(r[0]): float(r[1]) for r in rows}


def release_ids_of(con: duckdb.DuckDBPyConnection, period: str) -> list[str]:
    """The releases that recorded the measurements stored for `period`."""
    if not has_budget(con):
        return []
    rows = con.execute(
        "SELECT DISTINCT release_id FROM dp_measurements WHERE period = ? ORDER BY release_id",
        [period],
    ).fetchall()
    return [str(r[0]) for r in rows]


def revisions(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """How many times each quarter's measurements were taken again (0 without the table)."""
    names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "dp_revisions" not in names:
        return {}
    rows = con.execute(
        "SELECT period, count(DISTINCT replaced_by) FROM dp_revisions GROUP BY period"
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


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
