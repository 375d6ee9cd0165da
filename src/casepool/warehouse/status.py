"""The steward's DuckDB warehouse: organisations, submissions, cases, and an append-only audit log.

Tables (see docs/steward-guide.md): `organisations`, `submissions`, `cases`, `audit_log`,
`warehouse_info`; views `active_submissions` and `active_cases` (the records analysts count).
Each package is merged in one transaction, so a crash or a kill leaves the warehouse as it was.
DuckDB's own file lock keeps a second process out while one writes; it waits, then says so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from casepool.warehouse.organisations import Organisation
from casepool.warehouse.store import DEFAULT_WAIT_SECONDS, REVOKED, open_warehouse, scalar


@dataclass
class WarehouseStatus:
    """Organisations and every submission (active, superseded, revoked), with counts, the signed
    creation time (`signed_at`, which decides supersession) and the ingestion time."""

    warehouse: Path
    organisations: list[Organisation]
    submissions: pl.DataFrame
    audit_entries: int
    active_cases: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "warehouse": str(self.warehouse),
            "organisations": [o.to_dict() for o in self.organisations],
            "submissions": [
                {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
                for row in self.submissions.iter_rows(named=True)
            ],
            "audit_entries": self.audit_entries,
            "active_cases": self.active_cases,
        }


def warehouse_status(
    warehouse: str | Path, *, wait: float = DEFAULT_WAIT_SECONDS
) -> WarehouseStatus:
    """What the warehouse holds, for `casepool status`."""
    with open_warehouse(warehouse, read_only=True, wait=wait) as con:
        organisations = [
            Organisation(*r)
            for r in con.execute(
                "SELECT org, name, key_id, added_at FROM organisations ORDER BY org"
            ).fetchall()
        ]
        submissions = con.sql(
            "SELECT org, period, CASE WHEN superseded_by IS NULL THEN 'active' "
            "WHEN superseded_by = ? THEN 'revoked' ELSE 'superseded' END AS state, rows, "
            "created_at AS signed_at, created_at, ingested_at, package, submission_id, "
            "superseded_by FROM submissions ORDER BY org, period, created_at",
            params=[REVOKED],
        ).pl()
        audit_row = scalar(con.execute("SELECT count(*) FROM audit_log"))
        counted = scalar(con.execute("SELECT count(*) FROM active_cases"))
    return WarehouseStatus(
        Path(warehouse),
        organisations,
        submissions,
        int(audit_row[0]) if audit_row else 0,
        int(counted[0]) if counted else 0,
    )


def table_counts(warehouse: str | Path, *, wait: float = DEFAULT_WAIT_SECONDS) -> dict[str, int]:
    """Rows per table and view (for checks and tests)."""
    names = ("organisations", "submissions", "cases", "audit_log", "active_cases")
    with open_warehouse(warehouse, read_only=True, wait=wait) as con:
        return {n: int(scalar(con.execute(f"SELECT count(*) FROM {n}"))[0]) for n in names}


def data_fingerprint(warehouse: str | Path, *, wait: float = DEFAULT_WAIT_SECONDS) -> str:
    """A digest of organisations, submissions and cases: equal before and after a no-op."""
    digest = hashlib.sha256()
    with open_warehouse(warehouse, read_only=True, wait=wait) as con:
        for query in (
            "SELECT * FROM organisations ORDER BY org",
            "SELECT * EXCLUDE (manifest) FROM submissions ORDER BY submission_id",
            "SELECT * FROM cases ORDER BY submission_id, pseudonym",
        ):
            frame = con.sql(query).pl()
            digest.update(repr(frame.rows()).encode("utf-8"))
    return digest.hexdigest()
