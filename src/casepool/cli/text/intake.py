"""The officer's reports on a terminal: validation and submission, in the user's language."""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from casepool.core.i18n import render
from casepool.core.schema import load_schema
from casepool.intake.validating import Finding, ValidationResult, findings_of
from casepool.intake.validation_report import explain, title

if TYPE_CHECKING:  # validate's report needs neither (their imports load numpy and scipy)
    from casepool.intake.deidentifying import Submission
    from casepool.intake.submit import SubmitOutcome

EXAMPLES_PER_TYPE = 20


def render_report(
    result: ValidationResult, lang: str = "en", examples: int = EXAMPLES_PER_TYPE
) -> str:
    """Headline, each error type with its count and examples, then notices."""
    lines = [
        render(
            "report-headline",
            lang,
            file=result.path.name,
            rows=result.rows,
            encoding=result.encoding or result.format,
            valid=result.valid_rows,
            errors=result.error_count,
            invalid=len(result.invalid_rows) if result.error_count else 0,
        )
    ]
    if result.valid:
        lines.append(render("report-valid", lang))
    by_type: dict[str, list[Finding]] = {}
    for finding in result.file_findings + result.ragged_findings:
        by_type.setdefault(finding.type, []).append(finding)
    for slug, count in result.counts_by_type().items():
        lines.append("")
        lines.append(
            render("report-error-type", lang, title=title(slug, lang), slug=slug, count=count)
        )
        shown = by_type.get(slug) or _examples(result, slug, examples)
        for finding in shown[:examples]:
            field = _column(finding, lang)
            row = finding.row if finding.row is not None else "—"
            if field:
                example = render(
                    "report-example", lang, row=row, field=field, message=explain(finding, lang)
                )
            else:  # a whole row, not one field (a line with the wrong number of cells)
                example = render(
                    "report-example-row", lang, row=row, message=explain(finding, lang)
                )
            lines.append(example)
        if count > examples:
            lines.append(render("report-more", lang, count=count - examples))
    notices = _notices(result, lang)
    if notices:
        lines += ["", render("report-notices", lang), *notices]
    return "\n".join(lines)


def _column(finding: Finding, lang: str) -> str:
    """The officer's header with the field's label: `Status (Population group)`."""
    if not finding.field:
        return ""
    label = load_schema().field(finding.field).label(lang)
    header = finding.params.get("header")
    return f"{header} ({label})" if header and header != label else label


def _examples(result: ValidationResult, slug: str, limit: int) -> list[Finding]:
    frame = result.findings_frame.filter(pl.col("type") == slug).head(limit)
    return findings_of(frame, result.header_of)


def _notices(result: ValidationResult, lang: str) -> list[str]:
    schema = load_schema()
    notices = [
        "- "
        + render(
            "notice-mapped-columns",
            lang,
            mapped=len(result.mapped_columns),
            total=len(result.mapped_columns) + len(result.extra_columns),
        )
    ]
    notes = result.export.notes
    if notes.get("sheet") and notes.get("other_sheets"):
        notices.append(
            "- "
            + render(
                "notice-sheet-chosen",
                lang,
                sheet=notes["sheet"],
                others=", ".join(notes["other_sheets"]),
            )
        )
    if notes.get("header_row", 1) != 1:
        notices.append("- " + render("notice-header-row-found", lang, row=notes["header_row"]))
    if notes.get("blank_rows"):
        notices.append("- " + render("notice-blank-rows", lang, count=notes["blank_rows"]))
    if result.stale_columns:
        notices.append(
            "- "
            + render(
                "notice-stale-mapping",
                lang,
                count=len(result.stale_columns),
                columns=", ".join(result.stale_columns),
            )
        )
    notices.append("- " + render("notice-header-table", lang))
    for row in result.header_table():
        header, name = row["header"], row["field"]
        if name is not None:
            notices.append(
                render(
                    "notice-header-row", lang, header=header, field=schema.field(name).label(lang)
                )
            )
        elif header in result.asked_columns:
            fields = " / ".join(schema.field(f).label(lang) for f in result.asked_columns[header])
            notices.append(render("notice-header-asked", lang, header=header, fields=fields))
        else:
            notices.append(render("notice-header-left-out", lang, header=header))
    if result.no_consent_rows:
        notices.append("- " + render("notice-no-consent", lang, count=len(result.no_consent_rows)))
    if result.derived_age_rows:
        notices.append("- " + render("notice-derived-age", lang, count=result.derived_age_rows))
    return notices


PERSONAL_DATA_SHOWN = 20


def _suppression_lines(sub: Submission, lang: str) -> list[str]:
    """The profile's omitted fields, what local suppression blanked, and the risk left."""
    schema = load_schema()

    def label(column: str) -> str:
        return schema.field("survivor_age" if column == "age_band" else column).label(lang)

    lines = []
    if sub.profile and sub.profile.omitted:
        omitted = ", ".join(label(n) for n in sub.profile.omitted)
        lines.append(render("submit-profile-omitted", lang, fields=omitted))
    done, report = sub.suppression, sub.k_anonymity
    if done is not None and report is not None:
        blanked = ", ".join(f"{label(n)} {c:,}" for n, c in done.suppressed.items() if c)
        lines.append(
            render(
                "submit-suppressed",
                lang,
                k=done.k,
                values=f"{sum(done.suppressed.values()):,}",
                records=f"{done.records_touched:,}",
                fields=blanked or "-",
            )
        )
        if done.k_reached < done.k:
            lines.append(render("submit-k-not-reached", lang, k=done.k, reached=done.k_reached))
        lines.append(
            render(
                "submit-risk",
                lang,
                share=f"{report.share_above_risk:.1%}",
                threshold=f"{report.risk_threshold:g}",
                risk=f"{report.global_risk:.1%}",
            )
        )
    return lines


def render_submission(outcome: SubmitOutcome, lang: str = "en") -> str:
    """What submit kept, dropped and why, in the user's language (never a cell value)."""
    schema = load_schema()
    sub = outcome.submission
    lines: list[str] = []
    if sub.status == "invalid-records":
        lines.append(render_report(outcome.validation, lang))
        lines.append(render("submit-refused-invalid", lang, count=f"{sub.dropped['invalid']:,}"))
        return "\n".join(lines)
    lines.append(
        render(
            "submit-kept",
            lang,
            rows=f"{sub.rows_in_export:,}",
            org=sub.org,
            period=sub.period.code,
            kept=f"{sub.rows_kept:,}",
        )
    )
    for reason, key in (
        ("invalid", "submit-dropped-invalid"),
        ("no_consent", "submit-dropped-no-consent"),
        ("outside_period", "submit-dropped-outside-period"),
    ):
        if sub.dropped.get(reason):
            lines.append(
                render(key, lang, count=f"{sub.dropped[reason]:,}", period=sub.period.code)
            )
    if sub.dropped_columns:
        lines.append(render("submit-dropped-columns", lang, columns=", ".join(sub.dropped_columns)))
    if sub.status == "no-records":
        lines.append(render("submit-refused-empty", lang, period=sub.period.code))
        return "\n".join(lines)
    report = sub.k_anonymity
    if report is not None:
        labels = [
            schema.field("survivor_age").label(lang)
            if q == "age_band"
            else schema.field(q).label(lang)
            for q in report.quasi_identifiers
        ]
        lines.append(
            render(
                "submit-k-report",
                lang,
                quasi_identifiers=" × ".join(labels),
                k=report.k,
                records=f"{report.records_below:,}",
                share=f"{report.share_below:.1%}",
                threshold=report.threshold,
            )
        )
    lines.extend(_suppression_lines(sub, lang))
    if sub.status == "personal-data":
        lines.append(render("submit-refused-personal-data", lang, count=len(sub.personal_data)))
        for hit in sub.personal_data[:PERSONAL_DATA_SHOWN]:
            label = (
                schema.field("survivor_age").label(lang)
                if hit.field == "age_band"
                else schema.field(hit.field).label(lang)
            )
            lines.append(
                "  "
                + render(
                    "submit-personal-data-hit",
                    lang,
                    row=hit.row,
                    field=label,
                    kind=render(f"pii-{hit.kind}", lang),
                )
            )
        if len(sub.personal_data) > PERSONAL_DATA_SHOWN:
            lines.append(
                "  "
                + render("submit-more", lang, count=len(sub.personal_data) - PERSONAL_DATA_SHOWN)
            )
        return "\n".join(lines)
    lines.append(render("submit-transformed-profile", lang))
    if outcome.package is not None:
        lines.append(render("submit-written", lang, path=str(outcome.package)))
    return "\n".join(lines)
