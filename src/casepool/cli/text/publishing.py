"""Releases on a terminal: what publish wrote or withheld, and the release ledger."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from casepool.catalogue.indicators import load_indicators
from casepool.core.vocabulary import VALUE
from casepool.publishing.dp_answers import BudgetReport
from casepool.publishing.dp_publish import DPPublication
from casepool.publishing.formats import PublishedTable
from casepool.publishing.publish import PublishResult
from casepool.publishing.query import QueryResult, estimate_text
from casepool.warehouse.ledger import LedgerListing


def render_publication(result: PublishResult, lang: str) -> str:
    from casepool.core.i18n import render

    lines = [
        render("publish-table-withheld", lang, table=t.name, who=", ".join(t.audit_failures))
        for t in result.tables
        if not t.written
    ]
    lines += [
        render("recoding-coarsened", lang, table=c.table, how=c.how) for c in result.coarsened
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
        lines += [
            "  " + render("recoding-coarsened", lang, table=c.get("table"), how=c.get("how"))
            for c in r.detail.get("coarsened") or []
        ]
    lines.append(render("releases-total", lang, count=len(result.releases)))
    return "\n".join(lines)


def render_table(table: PublishedTable, lang: str = "en", confidence: float = 0.9) -> str:
    """An aligned text table for the terminal: labels and `≈ value (± margin)` per cell."""
    from casepool.core.i18n import render

    catalogue = load_indicators()
    header = [catalogue.dimension(d).label(lang) for d in table.dimensions] + ["value"]
    rows = []
    for row in table.frame.iter_rows(named=True):
        cells = [catalogue.dimension(d).code_label(row[d], lang) for d in table.dimensions]
        text = estimate_text(row[VALUE], row.get("margin"), table.indicator.unit)
        rows.append([*cells, text])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [table.indicator.label(lang) + f" ({table.indicator.unit})"]
    for r in [header, *rows]:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    lines.append(render("query-dp-legend", lang, confidence=f"{confidence:.0%}"))
    return "\n".join(lines)


def query_summary(result: QueryResult, lang: str, out: Path) -> str:
    from casepool.core.i18n import render

    return render(
        "query-dp-written", lang, table=result.table.name, cells=result.table.cells, path=str(out)
    )


def render_listing(listing: Iterable[Mapping[str, Any]]) -> str:
    lines = []
    for item in listing:
        lines.append(f"{item['indicator']}  ({item['unit']})  {item['label']}")
        lines.append(f"    = {item['formula']}")
        lines.append(
            "    --by " + ", ".join(f"{d['name']} ({d['label']})" for d in item["dimensions"])
        )
    return "\n".join(lines)


def render_budget(report: BudgetReport, lang: str = "en") -> str:
    """The budget as an aligned text table for the terminal; stale quarters get a note."""
    from casepool.core.i18n import render

    lines = [
        f"Privacy budget per registration quarter: ρ = {report.rho_per_quarter:g} "
        f"(ε ≈ {report.epsilon:.2f} at δ = {report.delta:g}); each child counts in one quarter.",
        f"{'period':<10} {'spent':>8} {'left':>8} {'tables':>7} {'revised':>8}  measurements",
    ]
    for row in report.periods:
        state = row.get("measurements", "-")
        shown = render(f"budget-{state}", lang) if state in ("current", "stale") else "-"
        lines.append(
            f"{row['period']:<10} {row['spent']:>8.3f} {row['left']:>8.3f} {row['tables']:>7} "
            f"{row.get('revisions', 0):>8}  {shown}"
        )
    for year in getattr(report, "years", []):  # years measured directly (issue 13)
        lines.append(
            render(
                "budget-year-line",
                lang,
                year=year["year"],
                rho=f"{year['rho_per_quarter']:.3g}",
                tables=year["tables"],
                state=render(f"budget-{year['measurements']}", lang),
            )
        )
    if any(row.get("measurements") == "stale" for row in report.periods):
        lines.append(render("budget-stale-note", lang))
    return "\n".join(lines)
