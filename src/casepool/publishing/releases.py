"""A publication and the release ledger: what it is protected together with, and what it records.

Before protecting, `earlier_tables` reads every earlier publication back from the ledger as
count tables with their true values and the statuses they were released with, so the engine
protects the new release together with all of them (casepool.protecting.releases). After the
tables are written, `record_publication` appends the release: every count cell with its value
and statuses, and beside it the true counts (whole and per organisation) it was made from.

Identity of a cell across releases: its population (the indicator whose records it counts), one
code per dimension, and the period the release covers for a table without a period dimension or
at its period total. A cell of an earlier release counted from other data (the submissions
changed since) keeps its own identity (a version) where its true value differs from the new one,
or where the new release does not count it again (its change is then unknown).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

import duckdb
import polars as pl

from casepool.protecting import CountTable
from casepool.protecting.tables import CONTRIBUTOR, VALUE
from casepool.warehouse.ledger import (
    cell_identity,
    data_fingerprint,
    list_releases,
    record_release,
    record_truth,
    release_cells,
    released_truth,
)

PERIOD = "period"
TOTAL = "_T"


def current_submissions(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The active submissions a publication made now counts."""
    return [r[0] for r in con.execute("SELECT submission_id FROM active_submissions").fetchall()]


def release_scope(period: str | None, first: date | None, last: date | None) -> str:
    """The period code a release covers (its period, or its span of months)."""
    if period:
        return period
    if first is None or last is None:
        return "all"
    return f"{first:%Y-%m}..{last:%Y-%m}"


def _identity(key_dims: Sequence[str], row: Sequence[str]) -> str:
    return cell_identity(dict(zip(key_dims, row, strict=True)))


def _canonical(table: CountTable, row: Sequence[str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    named = {d: c for d, c in zip(table.dimensions, row, strict=True) if c != TOTAL}
    for dim, code in table.scope:
        named.setdefault(dim, code)
    return table.indicator, tuple(sorted(named.items()))


def truth_frame(tables: Sequence[CountTable]) -> pl.DataFrame:
    """table_name, dimensions, contributor ('' for the whole cell), value: what was counted."""
    rows: list[tuple[str, str, str, int]] = []
    for table in tables:
        dims = list(table.dimensions)
        for *codes, value in table.cells.select(*dims, VALUE).iter_rows():
            if value:
                rows.append((table.label, _identity(dims, codes), "", int(value)))
        if table.contributions is not None:
            parts = table.contributions.select(*dims, CONTRIBUTOR, VALUE)
            for *codes, org, value in parts.iter_rows():
                if value:
                    rows.append((table.label, _identity(dims, codes), str(org), int(value)))
    return pl.DataFrame(
        rows, schema=["table_name", "dimensions", "contributor", "value"], orient="row"
    )


def cells_frame(tables: Sequence[CountTable], frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """The count cells a release lets out, as the ledger keeps them."""
    rows: list[tuple[str, str, str, float | None, str, str]] = []
    for table, frame in zip(tables, frames, strict=True):
        dims = list(table.dimensions)
        for *codes, value, obs, conf in frame.select(
            *dims, VALUE, "obs_status", "conf_status"
        ).iter_rows():
            rows.append(
                (
                    table.label,
                    table.indicator,
                    _identity(dims, codes),
                    None if value is None else float(value),
                    str(obs),
                    str(conf),
                )
            )
    return pl.DataFrame(
        rows,
        schema={
            "table_name": pl.String,
            "indicator": pl.String,
            "dimensions": pl.String,
            "value": pl.Float64,
            "obs_status": pl.String,
            "conf_status": pl.String,
        },
        orient="row",
    )


def table_meta(table: CountTable) -> dict[str, Any]:
    return {
        "indicator": table.indicator,
        "dimensions": list(table.dimensions),
        "multi": sorted(table.multi_valued),
        "scope": [list(p) for p in table.scope],
        "sensitive": table.sensitive,
    }


def _decode(frame: pl.DataFrame, dims: list[str]) -> pl.DataFrame:
    decoded = [json.loads(text) for text in frame["dimensions"].to_list()]
    columns = {d: [row.get(d, TOTAL) for row in decoded] for d in dims}
    return pl.DataFrame(columns, schema={d: pl.String for d in dims}).hstack(
        frame.drop("dimensions")
    )


def upgraded_identity(
    indicator: str, scope: tuple[tuple[str, str], ...]
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A table recorded before parts of the population were linked to it (its cells named after
    the share over `known:` / `recorded:`) named as they are named now: the whole population's
    cells marked `known:f = yes` (casepool.catalogue.relations.subpopulation)."""
    from casepool.catalogue.indicators import load_indicators
    from casepool.catalogue.relations import YES, subpopulation

    catalogue = load_indicators()
    if indicator not in catalogue.indicators:
        return indicator, scope
    part = subpopulation(catalogue.indicator(indicator), catalogue)
    if part is None or any(d == part.marker for d, _ in scope):
        return indicator, scope
    return part.base, ((part.marker, YES), *scope)


def release_flags(detail: dict[str, Any]) -> str:
    """The flags a release was published with (its stored detail's `flags`): `combined` (one C
    for every suppressed cell) or `distinct` (C primary, D secondary). A release recorded before
    the mode was kept says nothing and reads as `distinct`, the conservative side: its readers
    may have taken every C cell for ≥ 1."""
    return "combined" if detail.get("flags") == "combined" else "distinct"


def earlier_tables(
    con: duckdb.DuckDBPyConnection, current: Sequence[CountTable], fingerprint: str
) -> list[CountTable]:
    """Every earlier publication's count tables, with their truth, statuses and version."""
    now: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    for table in current:
        for *codes, value in table.cells.select(*table.dimensions, VALUE).iter_rows():
            now[_canonical(table, codes)] = int(value)
    out: list[CountTable] = []
    seen: set[tuple[str | None, str, str]] = set()
    # Newest first: a table released again from the same data for the same period is the same
    # table (its cells kept their status), so only its latest release is read back.
    # Reports draw exact figures too, so they are releases of the same kind for linking.
    exact = [r for r in list_releases(con) if r.kind in ("publication", "report")]
    for release in reversed(exact):
        metas = release.detail.get("tables") or {}
        if not metas:
            continue
        metas = {
            name: meta
            for name, meta in metas.items()
            if (release.data_fingerprint, name, json.dumps(meta, sort_keys=True)) not in seen
        }
        seen.update(
            (release.data_fingerprint, name, json.dumps(meta, sort_keys=True))
            for name, meta in metas.items()
        )
        cells = release_cells(con, release.release_id)
        truth = released_truth(con, release.release_id)
        told = release_flags(release.detail) != "combined"
        same_data = release.data_fingerprint == fingerprint
        for name, meta in sorted(metas.items()):
            dims = [str(d) for d in meta["dimensions"]]
            mine = truth.filter(pl.col("table_name") == name)
            statuses = _decode(
                cells.filter(pl.col("table_name") == name).select("dimensions", "conf_status"),
                dims,
            )
            if statuses.height == 0:
                continue
            whole = _decode(
                mine.filter(pl.col("contributor") == "").select("dimensions", "value"), dims
            )
            # Every cell the release held, zeros included (truth keeps non-zero counts only).
            grid = (
                statuses.select(dims)
                .join(whole, on=dims, how="left")
                .with_columns(pl.col(VALUE).fill_null(0).cast(pl.Int64))
            )
            parts = _decode(
                mine.filter(pl.col("contributor") != "").select(
                    "dimensions", pl.col("contributor").alias(CONTRIBUTOR), VALUE
                ),
                dims,
            )
            indicator, scope = upgraded_identity(
                str(meta["indicator"]),
                tuple((str(p[0]), str(p[1])) for p in meta.get("scope") or ()),
            )
            table = CountTable(
                indicator=indicator,
                dimensions=tuple(dims),
                cells=grid,
                multi_valued=frozenset(meta.get("multi") or ()),
                contributions=parts if parts.height else None,
                sensitive=meta.get("sensitive"),
                name=f"{name}@{release.release_id[:8]}",
                scope=scope,
                statuses=statuses,
                flags_told=told,
            )
            if not same_data:
                changed: set[tuple[str, ...]] = set()
                for *codes, value in grid.select(*dims, VALUE).iter_rows():
                    counted = now.get(_canonical(table, codes))
                    if counted is None or counted != value:
                        changed.add(tuple(codes))
                if changed:
                    table = CountTable(
                        indicator=table.indicator,
                        dimensions=table.dimensions,
                        cells=table.cells,
                        multi_valued=table.multi_valued,
                        contributions=table.contributions,
                        sensitive=table.sensitive,
                        name=table.name,
                        scope=table.scope,
                        statuses=table.statuses,
                        flags_told=table.flags_told,
                        version=(release.data_fingerprint or release.release_id)[:12],
                        version_cells=frozenset(changed),
                    )
            out.append(table)
    return out


def record_publication(
    con: duckdb.DuckDBPyConnection,
    *,
    tables: Sequence[CountTable],
    frames: Sequence[pl.DataFrame],
    periods: Sequence[str],
    submissions: Sequence[str],
    actor: str,
    detail: dict[str, Any],
    kind: str = "publication",
    flags: str = "distinct",
) -> str:
    """Append one publication (or report) to the ledger: its cells, statuses and the truth.

    The cells keep their internal statuses (C primary, D secondary) for the steward whatever
    the published flags were; `flags` records which the readers got (`release_flags`)."""
    release_id = record_release(
        con,
        kind=kind,
        method="suppress",
        actor=actor,
        cells=cells_frame(tables, frames),
        periods=periods,
        submissions=submissions,
        data_fingerprint=data_fingerprint(submissions),
        detail={**detail, "flags": flags, "tables": {t.label: table_meta(t) for t in tables}},
    )
    record_truth(con, release_id, truth_frame(tables))
    return release_id
