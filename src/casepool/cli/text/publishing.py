"""Releases on a terminal: what publish wrote or withheld, and the release ledger."""

from __future__ import annotations

from casepool.publishing.dp_publish import DPPublication
from casepool.publishing.publish import PublishResult
from casepool.warehouse.ledger import LedgerListing


def render_publication(result: PublishResult, lang: str) -> str:
    from casepool.core.i18n import render

    lines = [
        render("publish-table-withheld", lang, table=t.name, who=", ".join(t.audit_failures))
        for t in result.tables
        if not t.written
    ]
    lines.append(
        render(
            "publish-done",
            lang,
            tables=sum(t.written for t in result.tables),
            cells=f"{sum(t.cells for t in result.tables if t.written):,}",
            share=f"{100 * result.suppressed_share:.1f}",
            path=str(result.out_dir),
        )
    )
    return "\n".join(lines)


def render_dp_publication(result: DPPublication, lang: str = "en") -> str:
    lines = [f"{t['table']}: {t['cells']} cells (dp)" for t in result.tables]
    lines += [f"{s['table']}: not written ({s['reason']})" for s in result.skipped]
    lines.append(f"{len(result.files)} files in {result.out_dir}")
    return "\n".join(lines)


def render_releases(result: LedgerListing, lang: str) -> str:
    from casepool.core.i18n import render

    if not result.releases:
        return render("releases-none", lang)
    lines = []
    for r in result.releases:
        share = r.detail.get("suppressed_share")
        lines.append(
            render(
                "releases-line",
                lang,
                when=r.released_at.isoformat(timespec="seconds"),
                kind=r.kind,
                release=r.release_id[:12],
                actor=r.actor,
                periods=", ".join(r.periods) or "-",
                cells=r.cells,
                share="-" if share is None else f"{100 * float(share):.1f}%",
                submissions=len(r.submissions),
                data=r.data_fingerprint or "-",
            )
        )
    lines.append(render("releases-total", lang, count=len(result.releases)))
    return "\n".join(lines)
