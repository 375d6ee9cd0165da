"""Aggregate-only packages in the warehouse: the table of their counts and the view tabulations read.

An aggregate package (casepool.exchange.aggregate) is a submission like any other: one row in
`submissions` (its `rows` the records it counted), so supersession, revocation, reactivation,
status and the audit log treat it exactly as a record package. Its counts go to
`aggregate_cells` (made on the first aggregate ingest; a warehouse without it has none), and
`active_aggregate_cells` is what the catalogue adds to the tabulations of records
(casepool.catalogue.aggregating): the rows of active submissions, where a newer active aggregate
package of the same organisation whose period holds the row's registration date wins.

Each row gets two keys at ingest (for the cell-key method), derived like record keys from the
warehouse's secret, so the organisation cannot compute them.
"""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl

from casepool.core.vocabulary import KEY_SCALE
from casepool.exchange.keys import record_keys
from casepool.exchange.package import VerifiedPackage

TABLE = "aggregate_cells"
VIEW = "active_aggregate_cells"  # casepool.catalogue.aggregating.AGGREGATE_VIEW reads it

_DDL = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
  submission_id VARCHAR NOT NULL, org VARCHAR NOT NULL, period VARCHAR NOT NULL,
  spec VARCHAR NOT NULL, registered DATE NOT NULL, cell VARCHAR NOT NULL, months BIGINT,
  den BIGINT NOT NULL, num BIGINT NOT NULL, key_den BIGINT NOT NULL, key_num BIGINT NOT NULL)""",
    f"""CREATE OR REPLACE VIEW {VIEW} AS
  SELECT a.org, a.spec, a.registered, a.cell, a.months, a.den, a.num, a.key_den, a.key_num
  FROM {TABLE} a JOIN active_submissions s USING (submission_id)
  WHERE NOT EXISTS (
    SELECT 1 FROM active_submissions t
    WHERE t.org = s.org AND t.submission_id <> s.submission_id
      AND t.submission_id IN (SELECT submission_id FROM {TABLE})
      AND a.registered BETWEEN t.period_start AND t.period_end
      AND (t.created_at > s.created_at
           OR (t.created_at = s.created_at AND t.submission_id > s.submission_id)))""",
)


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Make the table and view (in the caller's transaction) unless they exist."""
    exists = con.execute(
        "SELECT 1 FROM duckdb_views() WHERE view_name = ? AND NOT internal", [VIEW]
    ).fetchall()
    con.execute(_DDL[0])
    if not exists:
        con.execute(_DDL[1])


def records_counted(manifest: dict[str, Any]) -> int:
    """The number of records an aggregate package counted, as its signed manifest says."""
    declared = manifest.get("aggregate") or {}
    value = declared.get("records_counted") if isinstance(declared, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def store_aggregate(con: duckdb.DuckDBPyConnection, package: VerifiedPackage, secret: bytes) -> int:
    """Insert an aggregate package's counts (nothing for a record package), in the caller's
    transaction, after its submission row; returns the records the package holds or counted."""
    if package.aggregate is None:
        return package.rows
    ensure_tables(con)
    rows = package.aggregate
    if rows.height:
        names = (
            rows.get_column("spec")
            + "|"
            + rows.get_column("registered").cast(pl.String)
            + "|"
            + rows.get_column("cell")
            + "|"
            + rows.get_column("months").cast(pl.String).fill_null("")
        )
        keys = [
            pl.Series(record_keys(secret, package.org, names + suffix), dtype=pl.Float64)
            for suffix in ("|den", "|num")
        ]
        incoming = rows.with_columns(
            pl.lit(package.submission_id).alias("submission_id"),
            pl.lit(package.org).alias("org"),
            pl.lit(package.period.code).alias("period"),
            *[
                (k * KEY_SCALE).floor().cast(pl.Int64).alias(name)
                for k, name in zip(keys, ("key_den", "key_num"), strict=True)
            ],
        )
        con.register("incoming_aggregate", incoming)
        try:
            con.execute(f"INSERT INTO {TABLE} BY NAME SELECT * FROM incoming_aggregate")
        finally:
            con.unregister("incoming_aggregate")
    records = records_counted(package.manifest)
    con.execute(
        "UPDATE submissions SET rows = ? WHERE submission_id = ?",
        [records, package.submission_id],
    )
    return records
