"""The steward's decisions on submissions: list them, revoke one with a reason, reactivate it.

A revoked submission leaves the active views (`active_submissions`, `active_cases`), so every
indicator computed afterwards leaves its cases out; its rows stay as history. Its
`superseded_by` reads `revoked`. Revoking the active submission of a period makes the newest
remaining one (by signed creation time) active again; reactivating puts the submission back
under the same rule (`ingest._supersede`, the one place that decides). Each decision is an
audit-log line with the steward's reason, and a `revocation` entry in the release ledger: the
figures released before may now differ from the warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from casepool.core.errors import UsageError, WarehouseError
from casepool.warehouse.ingest import _supersede
from casepool.warehouse.ledger import record_release
from casepool.warehouse.store import (
    DEFAULT_WAIT_SECONDS,
    REVOKED,
    current_actor,
    open_warehouse,
    record_audit,
    refresh_active_cases,
    rollback,
    utc_now,
)

ACTIVE, SUPERSEDED = "active", "superseded"


@dataclass(frozen=True)
class SubmissionRow:
    """One submission as the steward sees it."""

    submission_id: str
    org: str
    period: str
    state: str  # active, superseded or revoked
    rows: int
    signed_at: datetime
    ingested_at: datetime
    package: str
    superseded_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "submission_id": self.submission_id,
            "org": self.org,
            "period": self.period,
            "state": self.state,
            "rows": self.rows,
            "signed_at": self.signed_at.isoformat(timespec="seconds"),
            "ingested_at": self.ingested_at.isoformat(timespec="seconds"),
            "package": self.package,
            "superseded_by": None if self.superseded_by == REVOKED else self.superseded_by,
        }

    def line(self, lang: str) -> str:
        from casepool.core.i18n import render

        state = render(f"status-{self.state}", lang)
        return (
            f"{self.submission_id[:12]}  {self.org:<12} {self.period:<8} {state:<12} "
            f"{self.rows:>9,}  {self.signed_at:%Y-%m-%d %H:%M}  {self.ingested_at:%Y-%m-%d %H:%M}"
            f"  {self.package}"
        )


_SELECT = (
    "SELECT submission_id, org, period, CASE WHEN superseded_by IS NULL THEN 'active' "
    "WHEN superseded_by = 'revoked' THEN 'revoked' ELSE 'superseded' END, rows, created_at, "
    "ingested_at, package, superseded_by FROM submissions"
)


def list_submissions(
    warehouse: str | Path,
    *,
    org: str | None = None,
    state: str | None = None,
    wait: float = DEFAULT_WAIT_SECONDS,
) -> list[SubmissionRow]:
    """Every submission (of `org`, in `state` when given), by organisation, period, signed time."""
    if state is not None and state not in (ACTIVE, SUPERSEDED, REVOKED):
        raise UsageError("submission-state-invalid", state=state)
    with open_warehouse(warehouse, read_only=True, wait=wait) as con:
        rows = con.execute(
            f"SELECT * FROM ({_SELECT}) WHERE (? IS NULL OR org = ?) "
            "ORDER BY org, period, created_at, submission_id",
            [org, org],
        ).fetchall()
    found = [SubmissionRow(*r) for r in rows]
    return [s for s in found if state is None or s.state == state]


@dataclass(frozen=True)
class Decision:
    """A revocation or a reactivation, and what is active for that organisation and period now."""

    action: str  # revoked or reactivated
    submission: SubmissionRow
    reason: str | None
    active: str | None  # the submission active for the organisation and period afterwards
    release_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "submission": self.submission.to_dict(),
            "reason": self.reason,
            "active_now": self.active,
            "release_id": self.release_id,
        }


def _find(con: duckdb.DuckDBPyConnection, given: str) -> SubmissionRow:
    """The submission whose id is `given` or starts with it (at least 6 characters)."""
    text = given.strip().lower()
    if len(text) < 6:
        raise UsageError("submission-id-too-short", submission=given)
    rows = con.execute(
        f"SELECT * FROM ({_SELECT}) WHERE starts_with(submission_id, ?) LIMIT 2", [text]
    ).fetchall()
    if not rows:
        raise UsageError("submission-unknown", submission=given)
    if len(rows) > 1:
        raise UsageError("submission-ambiguous", submission=given)
    return SubmissionRow(*rows[0])


def _decide(
    warehouse: str | Path,
    submission_id: str,
    action: str,
    reason: str | None,
    actor: str | None,
    wait: float,
) -> Decision:
    actor = actor or current_actor()
    with open_warehouse(warehouse, wait=wait) as con:
        con.begin()
        try:
            found = _find(con, submission_id)
            if action == "revoked" and found.state == REVOKED:
                raise WarehouseError("submission-already-revoked", submission=submission_id)
            if action == "reactivated" and found.state != REVOKED:
                raise WarehouseError("submission-not-revoked", submission=submission_id)
            now = utc_now()
            con.execute(
                "UPDATE submissions SET superseded_by = ?, superseded_at = ? "
                "WHERE submission_id = ?",
                [REVOKED, now, found.submission_id]
                if action == "revoked"
                else [None, None, found.submission_id],
            )
            record_audit(
                con,
                action,
                actor=actor,
                org=found.org,
                period=found.period,
                submission_id=found.submission_id,
                package=found.package,
                detail={"reason": reason, "state_before": found.state},
            )
            active = _supersede(con, found.org, found.period, now, actor)
            refresh_active_cases(con, found.org)  # the flags publish and query read
            release_id = record_release(
                con,
                kind="revocation",
                method="revoke" if action == "revoked" else "reactivate",
                actor=actor,
                cells=pl.DataFrame(),
                periods=[found.period],
                submissions=[found.submission_id],
                detail={"reason": reason, "org": found.org, "active_now": active},
            )
            con.commit()
        except BaseException:
            rollback(con)
            raise
        after = _find(con, found.submission_id)
    return Decision(action, after, reason, active, release_id)


def revoke_submission(
    warehouse: str | Path,
    submission_id: str,
    reason: str,
    *,
    actor: str | None = None,
    wait: float = DEFAULT_WAIT_SECONDS,
) -> Decision:
    """Take a submission out of every count, with the steward's reason; its rows are kept."""
    reason = " ".join(str(reason).split())
    if not reason:
        raise UsageError("revoke-reason-empty")
    return _decide(warehouse, submission_id, "revoked", reason, actor, wait)


def reactivate_submission(
    warehouse: str | Path,
    submission_id: str,
    *,
    reason: str | None = None,
    actor: str | None = None,
    wait: float = DEFAULT_WAIT_SECONDS,
) -> Decision:
    """Undo a revocation: the submission counts again when it is the newest by signed time."""
    reason = " ".join(str(reason).split()) or None if reason else None
    return _decide(warehouse, submission_id, "reactivated", reason, actor, wait)
