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
from casepool.intake.validating import Finding, ValidationResult

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
