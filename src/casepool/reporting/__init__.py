"""`casepool report`: one self-contained, multilingual HTML report drawn from the protected tables.

`write_report(warehouse, target)` builds the warehouse's publication in memory (the same
`casepool.publishing.publish.build_publication` that `publish` writes, so the report can never show
more than `publish` does), adds coverage (counts of submissions per organisation and period) and
writes one HTML file. A publication folder already written can be drawn instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from casepool.core.errors import UnreadableFileError, UsageError
from casepool.core.periods import is_period
from casepool.core.writing import atomic_path
from casepool.reporting.coverage import Coverage, read_coverage
from casepool.reporting.page import build_page, choose_periods, period_codes, previous_period
from casepool.reporting.tables import TableView, read_publication, table_from_rows

__all__ = ["ReportResult", "build_page", "protected_tables", "write_report"]

Progress = Callable[[str], None]


@dataclass
class ReportResult:
    """What was written: where, how big, in which language, for which period."""

    path: Path
    size_bytes: int
    lang: str
    period: str
    synthetic: bool
    tables: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "lang": self.lang,
            "period": self.period,
            "synthetic": self.synthetic,
            "tables": self.tables,
        }


def protected_tables(
    warehouse: str | Path, period: str | None = None, *, record: bool = True
) -> dict[str, TableView]:
    """The publication catalogue of `warehouse` (for `period`, or every period), protected
    together with every earlier release and audited exactly as `casepool publish` would publish
    it, as the report's table views. With `record`, the figures the report shows are recorded in
    the release ledger (kind "report"), so later releases are protected together with them."""
    from casepool.publishing.publish import build_publication, record_publication_release

    publication = build_publication(Path(warehouse), period)
    if record:
        record_publication_release(warehouse, publication, {"period": period}, kind="report")
    views = {}
    for t in publication.tables:
        views[t.name] = table_from_rows(t.name, t.frame.to_dicts(), t.dimensions)
        views[t.name].coarsened = t.coarsened
    return views


def write_report(
    warehouse: str | Path,
    target: str | Path,
    *,
    lang: str = "en",
    period: str | None = None,
    progress: Progress | None = None,
    publication: str | Path | None = None,
    synthetic: bool | None = None,
    generated: date | None = None,
) -> ReportResult:
    """Write the report for `warehouse` to `target` (HTML).

    `period` (2025, 2025-Q3): publish for that period only, and for the period before it to
    compare the headlines. `publication`: a folder already written by `casepool publish` for
    every period (else the warehouse is published into a temporary folder). `synthetic`: show
    the synthetic-data banner; by default it is shown when an organisation's registered name ends
    in "(synthetic)", as `casepool demo` registers them.
    """
    say = progress or (lambda stage: None)
    if period is not None and not is_period(period):
        raise UsageError("report-bad-period", period=period)
    say("publish")
    previous_tables = None
    if publication:
        tables = read_publication(publication)
    else:
        tables = protected_tables(warehouse, period)
        before = previous_period(period) if period else None
        if before is not None:
            say("publish " + before)
            previous_tables = protected_tables(warehouse, before)
    filtered = period if not publication else None
    headline = period if publication else None
    if publication and period and not period_codes(tables):
        # A publication of that one period whose tables by period global recoding merged into
        # their total (casepool.publishing.recoding): drawn as a publication of one period.
        filtered, headline = period, None
    choose_periods(tables, filtered, headline)  # refuse an unknown period before other work
    say("coverage")
    coverage: Coverage = read_coverage(warehouse)
    is_synthetic = coverage.synthetic if synthetic is None else synthetic
    say("write")
    html = build_page(
        tables,
        coverage,
        lang=lang,
        period=filtered,
        headline=headline,
        synthetic=is_synthetic,
        generated=generated,
        previous_tables=previous_tables,
    )
    chosen = choose_periods(tables, filtered, headline)[0]
    path = Path(target)
    data = html.encode("utf-8")
    try:
        with atomic_path(path) as temp:
            temp.write_bytes(data)
    except UnreadableFileError as exc:
        reason = exc.params.get("reason")
        raise UsageError("report-unwritable", path=str(path), reason=reason) from exc
    return ReportResult(path, len(data), lang, chosen, is_synthetic, sorted(tables))
