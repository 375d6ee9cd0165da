"""The release ledger: every figure that leaves the warehouse, by any road, with what it was made from.

A release is one publication, one query answer, one report or one set of differential-privacy
measurements. The ledger keeps, for each release, who asked, when, by which method, from which
submissions, and every cell that left: its table, indicator, one code per dimension, value and
statuses. Disclosure control reads it back to protect a new release together with all earlier ones;
the differential-privacy budget is accounted beside it.

Tables added after warehouse format 1 are created on first use by the module that owns them
(`CREATE TABLE IF NOT EXISTS`), so an older warehouse gains them at its first write; a read-only
reader of a warehouse that has none sees an empty ledger.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import polars as pl

from casepool.warehouse.store import utc_now

KINDS = ("publication", "query", "report", "measurement", "revocation")

_DDL = (
    """CREATE TABLE IF NOT EXISTS releases (
  release_id VARCHAR PRIMARY KEY, released_at TIMESTAMP NOT NULL, kind VARCHAR NOT NULL,
  method VARCHAR NOT NULL, actor VARCHAR NOT NULL, audience VARCHAR,
  periods VARCHAR[] NOT NULL, submissions VARCHAR[] NOT NULL, data_fingerprint VARCHAR,
  detail VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS release_cells (
  release_id VARCHAR NOT NULL, table_name VARCHAR NOT NULL, indicator VARCHAR NOT NULL,
  dimensions VARCHAR NOT NULL, value DOUBLE, obs_status VARCHAR, conf_status VARCHAR,
  margin DOUBLE)""",
    # What an exact release was made from: the true count of every cell it held, whole
    # (contributor '') and per organisation. Never leaves the warehouse; disclosure control
    # reads it to protect the next release together with this one.
    """CREATE TABLE IF NOT EXISTS release_truth (
  release_id VARCHAR NOT NULL, table_name VARCHAR NOT NULL, dimensions VARCHAR NOT NULL,
  contributor VARCHAR NOT NULL, value BIGINT NOT NULL)""",
)


def ensure_ledger(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ledger's tables when this warehouse has none yet (a writable connection)."""
    for statement in _DDL:
        con.execute(statement)


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    return name in names


def _read(
    con: duckdb.DuckDBPyConnection,
    table: str,
    sql: str,
    params: list[Any],
    schema: Mapping[str, Any],  # column -> polars type
) -> pl.DataFrame:
    """The rows of `sql`, or an empty frame of `schema` when this warehouse has no `table` yet
    (a read-only reader of a warehouse that never released anything)."""
    if not _has_table(con, table):
        return pl.DataFrame(schema=schema)
    frame: pl.DataFrame = con.sql(sql, params=params).pl()
    return frame


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    """Append `frame` (columns in the table's order) to `table` in the caller's transaction."""
    view = f"_{table}_in"
    con.register(view, frame.to_arrow())
    try:
        con.execute(f"INSERT INTO {table} SELECT * FROM {view}")
    finally:
        con.unregister(view)


def has_ledger(con: duckdb.DuckDBPyConnection) -> bool:
    return _has_table(con, "releases")


def cell_identity(dimensions: Mapping[str, str]) -> str:
    """A cell's dimensions as canonical JSON (sorted keys): the same cell, the same text."""
    return json.dumps(dict(sorted(dimensions.items())), ensure_ascii=False, separators=(",", ":"))


@dataclass
class Release:
    """One row of the ledger: a release and the facts it was made from."""

    release_id: str
    released_at: datetime
    kind: str
    method: str
    actor: str
    audience: str | None
    periods: list[str]
    submissions: list[str]
    data_fingerprint: str | None
    detail: dict[str, Any] = field(default_factory=dict)
    cells: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["released_at"] = self.released_at.isoformat(timespec="seconds")
        return out


@dataclass
class NewRelease:
    """A release to append (`record_releases`): what `record_release` takes."""

    kind: str
    method: str
    actor: str
    cells: pl.DataFrame
    periods: Sequence[str] = ()
    submissions: Iterable[str] = ()
    audience: str | None = None
    data_fingerprint: str | None = None
    detail: Mapping[str, Any] | None = None


_CELL_COLUMNS = ("table_name", "indicator", "dimensions", "value", "obs_status", "conf_status")
_RELEASE_SCHEMA: dict[str, Any] = {
    "release_id": pl.String,
    "released_at": pl.Datetime("us"),
    "kind": pl.String,
    "method": pl.String,
    "actor": pl.String,
    "audience": pl.String,
    "periods": pl.List(pl.String),
    "submissions": pl.List(pl.String),
    "data_fingerprint": pl.String,
    "detail": pl.String,
}


def record_release(
    con: duckdb.DuckDBPyConnection,
    *,
    kind: str,
    method: str,
    actor: str,
    cells: pl.DataFrame,
    periods: Sequence[str] = (),
    submissions: Iterable[str] = (),
    audience: str | None = None,
    data_fingerprint: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> str:
    """Append a release and its cells in the caller's transaction; returns the release id.

    `cells` has columns table_name, indicator, dimensions (from `cell_identity`), value,
    obs_status, conf_status and, for noisy answers, margin (missing columns are stored as null).
    """
    release = NewRelease(
        kind, method, actor, cells, periods, submissions, audience, data_fingerprint, detail
    )
    return record_releases(con, [release])[0]


def record_releases(con: duckdb.DuckDBPyConnection, releases: Sequence[NewRelease]) -> list[str]:
    """Append many releases and their cells in the caller's transaction, in order, with one
    insert into each table (the service writes its answers' entries in batches); their ids."""
    for release in releases:
        if release.kind not in KINDS:
            raise ValueError(f"unknown release kind {release.kind!r}")
    if not releases:
        return []
    ensure_ledger(con)
    ids = [uuid.uuid4().hex for _ in releases]
    rows = [
        {
            "release_id": release_id,
            "released_at": utc_now(),
            "kind": r.kind,
            "method": r.method,
            "actor": r.actor,
            "audience": r.audience,
            "periods": list(r.periods),
            "submissions": sorted(set(r.submissions)),
            "data_fingerprint": r.data_fingerprint,
            "detail": json.dumps(dict(r.detail or {}), ensure_ascii=False, default=str),
        }
        for release_id, r in zip(ids, releases, strict=True)
    ]
    _insert(con, "releases", pl.DataFrame(rows, schema=_RELEASE_SCHEMA))
    with_cells = [(i, r.cells) for i, r in zip(ids, releases, strict=True) if r.cells.height]
    if not with_cells:
        return ids
    if len({tuple(c.schema.items()) for _, c in with_cells}) == 1:
        # Cells of one kind (the service's answers): one frame, one conversion.
        owner = pl.Series("_release", [i for i, c in with_cells for _ in range(c.height)])
        cells = pl.concat([c for _, c in with_cells]).with_columns(owner)
        frame = _cells_of(pl.col("_release"), cells)
    else:
        frame = pl.concat([_cells_of(pl.lit(i, pl.String), c) for i, c in with_cells])
    _insert(con, "release_cells", frame)
    return ids


def _cells_of(release_id: pl.Expr, cells: pl.DataFrame) -> pl.DataFrame:
    """Cells in the columns of release_cells (missing ones null), `release_id` their release."""
    columns = _CELL_COLUMNS
    return cells.with_columns(
        [pl.lit(None, pl.String).alias(c) for c in columns if c not in cells.columns]
        + ([] if "margin" in cells.columns else [pl.lit(None, pl.Float64).alias("margin")])
    ).select(
        release_id.cast(pl.String).alias("release_id"),
        *[pl.col(c).cast(pl.String) for c in columns[:3]],
        pl.col("value").cast(pl.Float64),
        pl.col("obs_status").cast(pl.String),
        pl.col("conf_status").cast(pl.String),
        pl.col("margin").cast(pl.Float64),
    )


def list_releases(con: duckdb.DuckDBPyConnection, *, kind: str | None = None) -> list[Release]:
    """Every release, oldest first, with its number of cells (an empty list without a ledger)."""
    if not has_ledger(con):
        return []
    sql = (
        "SELECT r.*, (SELECT count(*) FROM release_cells c WHERE c.release_id = r.release_id) "
        "FROM releases r"
        + (" WHERE kind = ?" if kind else "")
        + " ORDER BY released_at, release_id"
    )
    rows = con.execute(sql, [kind] if kind else []).fetchall()
    return [
        Release(
            release_id=r[0],
            released_at=r[1],
            kind=r[2],
            method=r[3],
            actor=r[4],
            audience=r[5],
            periods=list(r[6]),
            submissions=list(r[7]),
            data_fingerprint=r[8],
            detail=json.loads(r[9]) if r[9] else {},
            cells=int(r[10]),
        )
        for r in rows
    ]


def released_cells(
    con: duckdb.DuckDBPyConnection, *, kinds: Sequence[str] = ("publication", "report")
) -> pl.DataFrame:
    """Every cell released exactly (by the given kinds of release), with its release's facts."""
    return _read(
        con,
        "releases",
        "SELECT c.release_id, r.released_at, c.table_name, c.indicator, c.dimensions, c.value, "
        "c.obs_status, c.conf_status, r.submissions FROM release_cells c "
        "JOIN releases r USING (release_id) WHERE list_contains(?, r.kind) "
        "ORDER BY r.released_at, c.release_id",
        [list(kinds)],
        {
            "release_id": pl.String,
            "released_at": pl.Datetime,
            "table_name": pl.String,
            "indicator": pl.String,
            "dimensions": pl.String,
            "value": pl.Float64,
            "obs_status": pl.String,
            "conf_status": pl.String,
            "submissions": pl.List(pl.String),
        },
    )


def record_truth(con: duckdb.DuckDBPyConnection, release_id: str, truth: pl.DataFrame) -> None:
    """Keep the true counts behind a release: columns table_name, dimensions (`cell_identity`),
    contributor ('' for the whole cell) and value (zeros may be left out)."""
    ensure_ledger(con)
    if not truth.height:
        return
    frame = truth.select(
        pl.lit(release_id).alias("release_id"),
        pl.col("table_name").cast(pl.String),
        pl.col("dimensions").cast(pl.String),
        pl.col("contributor").cast(pl.String).fill_null(""),
        pl.col("value").cast(pl.Int64),
    )
    _insert(con, "release_truth", frame)


def released_truth(con: duckdb.DuckDBPyConnection, release_id: str) -> pl.DataFrame:
    """The true counts kept for one release (empty without a ledger or without truth)."""
    return _read(
        con,
        "release_truth",
        "SELECT table_name, dimensions, contributor, value FROM release_truth "
        "WHERE release_id = ? ORDER BY table_name, dimensions, contributor",
        [release_id],
        {
            "table_name": pl.String,
            "dimensions": pl.String,
            "contributor": pl.String,
            "value": pl.Int64,
        },
    )


def release_cells(con: duckdb.DuckDBPyConnection, release_id: str) -> pl.DataFrame:
    """The cells one release let out: table_name, indicator, dimensions, value and statuses."""
    return _read(
        con,
        "releases",
        "SELECT table_name, indicator, dimensions, value, obs_status, conf_status "
        "FROM release_cells WHERE release_id = ?",
        [release_id],
        {
            "table_name": pl.String,
            "indicator": pl.String,
            "dimensions": pl.String,
            "value": pl.Float64,
            "obs_status": pl.String,
            "conf_status": pl.String,
        },
    )


def data_fingerprint(submissions: Iterable[str]) -> str:
    """The data a release was made from, as one text: a hash of its submissions' ids."""
    import hashlib

    text = "\n".join(sorted(set(submissions)))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class LedgerListing:
    """Every release in a warehouse's ledger, for `casepool releases`."""

    releases: list[Release]

    def to_dict(self) -> dict[str, Any]:
        return {"releases": [r.to_dict() for r in self.releases]}


def read_ledger(warehouse: Any, kind: str | None = None) -> LedgerListing:
    """The ledger of a warehouse file, read-only (empty for a warehouse without one)."""
    from casepool.warehouse.store import open_warehouse

    with open_warehouse(warehouse, read_only=True) as con:
        return LedgerListing(list_releases(con, kind=kind))
