"""The steward's results on a terminal: ingest, status, submissions, backups, the audit log."""

from __future__ import annotations

import polars as pl

from casepool.warehouse.auditlog import AuditLog
from casepool.warehouse.backup import BackupResult, RestoreResult
from casepool.warehouse.ingest import IngestReport
from casepool.warehouse.status import WarehouseStatus
from casepool.warehouse.store import LOADED, REFUSED, UNCHANGED
from casepool.warehouse.submissions import Decision


def render_ingest(result: IngestReport, lang: str) -> str:
    from casepool.core.i18n import render

    lines = [p.message(lang) for p in result.packages]
    counts = {k: sum(p.outcome == k for p in result.packages) for k in (LOADED, UNCHANGED, REFUSED)}
    lines.append(
        render(
            "ingest-summary",
            lang,
            loaded=counts[LOADED],
            unchanged=counts[UNCHANGED],
            refused=counts[REFUSED],
        )
    )
    return "\n".join(lines)


def render_status(result: WarehouseStatus, lang: str) -> str:
    from casepool.core.i18n import render

    lines = [render("status-organisations", lang, count=len(result.organisations))]
    lines += [f"  {o.org:<12} {o.name}  (key {o.key_id})" for o in result.organisations]
    active = result.submissions.filter(pl.col("state") == "active")
    revoked = result.submissions.filter(pl.col("state") == "revoked").height
    lines.append(
        render(
            "status-submissions-revoked",
            lang,
            active=active.height,
            superseded=result.submissions.height - active.height - revoked,
            revoked=revoked,
            rows=f"{int(active.get_column('rows').sum() or 0):,}",
        )
    )
    lines.append(render("status-counted", lang, count=f"{result.active_cases:,}"))
    if result.submissions.height:
        lines.append(render("status-columns", lang))
    for row in result.submissions.iter_rows(named=True):
        state = render(f"status-{row['state']}", lang)
        lines.append(
            f"  {row['org']:<12} {row['period']:<8} {state:<12} {row['rows']:>10,}  "
            f"{row['created_at']:%Y-%m-%d %H:%M}  {row['ingested_at']:%Y-%m-%d %H:%M}  "
            f"{row['submission_id'][:12]}  {row['package']}"
        )
    return "\n".join(lines)


def render_decision(result: Decision, lang: str) -> str:
    from casepool.core.i18n import render

    key = f"submission-{result.action}" + ("" if result.active else "-none-active")
    return render(
        key,
        lang,
        submission=result.submission.submission_id[:12],
        org=result.submission.org,
        period=result.submission.period,
        active=(result.active or "")[:12],
    )


def render_log(result: AuditLog, lang: str) -> str:
    from casepool.core.i18n import render

    if not result.entries:
        return render("log-empty", lang)
    return "\n".join([render("log-columns", lang), *(e.line() for e in result.entries)])


def render_backup(result: BackupResult, lang: str) -> str:
    from casepool.core.i18n import render

    return render(
        "backup-written",
        lang,
        out=str(result.out),
        size=f"{result.size / 1_048_576:,.1f}",
        submissions=result.tables.get("submissions", (0, ""))[0],
        cases=f"{result.tables.get('cases', (0, ''))[0]:,}",
        audit=result.tables.get("audit_log", (0, ""))[0],
    )


def render_restore(result: RestoreResult, lang: str) -> str:
    from casepool.core.i18n import render

    return render(
        "restore-done",
        lang,
        backup=str(result.backup),
        warehouse=str(result.warehouse),
        submissions=result.tables.get("submissions", (0, ""))[0],
        cases=f"{result.tables.get('cases', (0, ''))[0]:,}",
    )
