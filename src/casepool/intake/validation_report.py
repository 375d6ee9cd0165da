"""The validation report a data officer acts on: as text in their language, and as CSV, XLSX or JSON."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import polars as pl

from casepool.core.errors import UsageError
from casepool.core.i18n import render
from casepool.core.schema import LANGUAGES, Field, load_schema, read_yaml
from casepool.core.writing import write_csv, write_json, write_xlsx
from casepool.intake.matching import MAX_CODED_CELL, ambiguous_words, word_key
from casepool.intake.validating import Finding, ValidationResult, findings_of

EXAMPLES_PER_TYPE = 20
REPORT_FORMATS = (".csv", ".xlsx", ".json")


@cache
def error_types() -> dict[str, dict[str, dict[str, str]]]:
    """Error type slug -> {"title": {lang: text}, "rule": {lang: template}}."""
    raw = read_yaml("error_types.yaml")
    return {
        str(slug): {
            part: {lang: str(spec[part][lang]) for lang in LANGUAGES} for part in ("title", "rule")
        }
        for slug, spec in raw.items()
    }


def title(slug: str, lang: str) -> str:
    return error_types().get(slug, {}).get("title", {}).get(lang, slug)


def explain(finding: Finding, lang: str) -> str:
    """The rule a finding broke, in plain words, without the cell's value."""
    schema = load_schema()
    template = error_types().get(finding.type, {}).get("rule", {}).get(lang, finding.type)
    params: dict[str, Any] = dict(finding.params)
    if finding.field:
        f = schema.field(finding.field)
        params |= {
            "field": f.label(lang),
            "name": f.name,
            "codelist": f.codelist or "",
            "min": f.minimum,
            "max": f.maximum,
            "limit": MAX_CODED_CELL,
        }
        params.setdefault("header", f.label(lang))
        if finding.type == "ambiguous-value" and f.codelist:
            params |= _ambiguity_words(str(params.get("value", "")), f, lang)
    return template.format_map(_Blank(params))


def _ambiguity_words(value: str, f: Field, lang: str) -> dict[str, str]:
    """What an ambiguous word could mean and how it is read, in the officer's language."""
    codelist = load_schema().codelist_of(f)
    ambiguity = ambiguous_words(codelist).get(word_key(value))
    if ambiguity is None:
        return {}

    def label(code: str) -> str:
        found = codelist.get(code)
        return found.label(lang) if found else code

    could = (
        " / ".join(label(c) for c in ambiguity.candidates)
        if ambiguity.candidates
        else render("could-placeholder", lang)
    )
    reading = (
        render("reading-missing", lang)
        if ambiguity.reading == "missing"
        else label(ambiguity.reading)
    )
    return {"could": could, "reading": reading}


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


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
    for finding in result.file_findings:
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
            lines.append(
                render("report-example", lang, row=row, field=field, message=explain(finding, lang))
            )
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


def findings_table(result: ValidationResult, lang: str = "en") -> pl.DataFrame:
    """Every finding with the officer's column, its title and plain-words rule in their language."""
    return pl.DataFrame(
        [
            {
                "row": f.row,
                "column": f.params.get("header"),
                "field": f.field,
                "type": f.type,
                "title": title(f.type, lang),
                "message": explain(f, lang),
            }
            for f in result.findings
        ],
        schema={
            "row": pl.Int64,
            "column": pl.String,
            "field": pl.String,
            "type": pl.String,
            "title": pl.String,
            "message": pl.String,
        },
    )


def write_report(result: ValidationResult, path: str | Path, lang: str = "en") -> None:
    """Every finding to CSV, XLSX or JSON, chosen by the file's extension."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in REPORT_FORMATS:
        raise UsageError("usage-error", reason=f"--report must end in {', '.join(REPORT_FORMATS)}")
    if suffix == ".json":
        write_json(result.to_dict(), path)
        return
    table = findings_table(result, lang)
    if suffix == ".csv":
        write_csv(table, path)
    else:
        write_xlsx({"errors": table}, path, rtl=lang in {"ar", "ckb"})
