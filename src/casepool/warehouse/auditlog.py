"""Reading the audit log: every decision and event, filtered by organisation, action and date."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from casepool.core.errors import UsageError
from casepool.warehouse.store import DEFAULT_WAIT_SECONDS, open_warehouse

ACTIONS = (
    "org-added",
    "org-key-replaced",
    "ingested",
    "already-ingested",
    "refused",
    "superseded",
    "reinstated",
    "revoked",
    "reactivated",
    "backed-up",
    "restored",
)
"""The actions casepool writes (a warehouse may hold others written by newer versions)."""


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log."""

    seq: int
    logged_at: datetime
    actor: str
    action: str
    org: str | None
    period: str | None
    submission_id: str | None
    package: str | None
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "logged_at": self.logged_at.isoformat(timespec="seconds"),
            "actor": self.actor,
            "action": self.action,
            "org": self.org,
            "period": self.period,
            "submission_id": self.submission_id,
            "package": self.package,
            "detail": self.detail,
        }

    def line(self) -> str:
        detail = json.dumps(self.detail, ensure_ascii=False, sort_keys=True) if self.detail else ""
        parts = [
            f"{self.seq:>6}",
            f"{self.logged_at:%Y-%m-%d %H:%M:%S}",
            f"{self.action:<16}",
            f"{self.org or '-':<10}",
            f"{self.period or '-':<8}",
            (self.submission_id or "-")[:12].ljust(12),
            self.actor,
        ]
        return (
            "  ".join(parts)
            + (f"  {self.package}" if self.package else "")
            + (f"  {detail}" if detail else "")
        )


@dataclass
class AuditLog:
    """The entries that matched, oldest first, and the filters used."""

    warehouse: Path
    entries: list[AuditEntry]
    filters: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "warehouse": str(self.warehouse),
            "filters": self.filters,
            "entries": [e.to_dict() for e in self.entries],
        }


def _day(value: str | date | None, option: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError as exc:
        raise UsageError("log-date-invalid", option=option, value=str(value)[:40]) from exc


def read_audit_log(
    warehouse: str | Path,
    *,
    org: str | None = None,
    actions: Sequence[str] = (),
    since: str | date | None = None,
    until: str | date | None = None,
    wait: float = DEFAULT_WAIT_SECONDS,
) -> AuditLog:
    """Audit entries of `org`, with one of `actions`, logged on or after `since` and on or
    before `until` (whole UTC days), oldest first."""
    first, last = _day(since, "--since"), _day(until, "--until")
    if first and last and first > last:
        raise UsageError("log-dates-reversed", since=str(first), until=str(last))
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        raise UsageError("log-action-unknown", action=unknown[0], known=", ".join(ACTIONS))
    sql = [
        "SELECT seq, logged_at, actor, action, org, period, submission_id, package, detail "
        "FROM audit_log WHERE true"
    ]
    params: list[Any] = []
    if org:
        sql.append("AND org = ?")
        params.append(org.strip().upper())
    if actions:
        sql.append("AND list_contains(?, action)")
        params.append(list(actions))
    if first:
        sql.append("AND logged_at >= ?")
        params.append(datetime.combine(first, datetime.min.time()))
    if last:
        sql.append("AND logged_at < ?")
        params.append(datetime.combine(last + timedelta(days=1), datetime.min.time()))
    sql.append("ORDER BY seq")
    with open_warehouse(warehouse, read_only=True, wait=wait) as con:
        rows = con.execute(" ".join(sql), params).fetchall()
    entries = [
        AuditEntry(*r[:8], detail=json.loads(r[8]) if r[8] else {})  # type: ignore[misc]
        for r in rows
    ]
    filters = {
        "org": org,
        "actions": list(actions),
        "since": first.isoformat() if first else None,
        "until": last.isoformat() if last else None,
    }
    return AuditLog(Path(warehouse), entries, filters)
