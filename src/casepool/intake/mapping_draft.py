"""Drafting an organisation's mapping from one of its exports, word by word.

Multi-select cells are split into words, each listed once with how many cells hold it; values
that look personal are never copied. The draft is written as commented YAML and as a workbook
with drop-down lists; both are read back by load_mapping (mapping.py, mapping_workbook.py).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from casepool.core.i18n import render
from casepool.core.normalising import fold, split_multi
from casepool.core.reading import Export, read_export
from casepool.core.schema import CaseSchema, load_schema, read_yaml
from casepool.intake.mapping import (
    MAPPING_VERSION,
    TODO,
    DetailColumn,
    Mapping,
    Resolution,
    header_score,
    parse_mapping,
    resolve_columns,
)
from casepool.intake.mapping_workbook import LEAVE_OUT, MISSING_ENTRY, SEPARATOR
from casepool.intake.matching import Ambiguity, CodeMatcher, code_index, word_key
from casepool.intake.pii import personal_data_kind

DRAFT_VALUE_LIMIT = 200  # distinct words listed per coded column when drafting

_LETTERS_ONLY = re.compile(r"^[^\W\d_]+(?:[ '\-.][^\W\d_]+)*$")
PERSONAL_COLUMN_SHARE = 0.5


@dataclass(frozen=True)
class DraftWord:
    """One word of a coded column the code list does not settle: how often it occurs and why."""

    word: str
    count: int
    ambiguity: Ambiguity | None = None


@dataclass
class Draft:
    """A drafted mapping: columns, words to decide per field, and what was left out as personal."""

    columns: dict[str, str | None]
    detail_columns: dict[str, DetailColumn]
    words: dict[str, list[DraftWord]]
    personal_columns: list[str]
    personal_values: dict[str, int]
    asked: dict[str, tuple[str, ...]]
    missing_required: list[str]
    decided: dict[str, dict[str, str]] = field(default_factory=dict)  # by a preset

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "unmatched_columns": [h for h, f in self.columns.items() if f is None],
            "unmatched_values": {k: len(v) for k, v in self.words.items()},
            "words": {
                k: [{"word": w.word, "count": w.count} for w in v] for k, v in self.words.items()
            },
            "personal_columns": self.personal_columns,
            "personal_values": self.personal_values,
            "asked_columns": {h: list(f) for h, f in self.asked.items()},
            "missing_required": self.missing_required,
        }


def _vocabulary_tokens(schema: CaseSchema) -> frozenset[str]:
    tokens: set[str] = set()
    for codelist in schema.codelists.values():
        for key in code_index(codelist):
            tokens.update(key.split())
    return frozenset(tokens)


def looks_personal(word: str, count: int, vocabulary: frozenset[str]) -> bool:
    """A phone, e-mail or long number, or a rare name-like word that no code list knows."""
    if personal_data_kind(word) is not None:
        return True
    if sum(c.isdigit() for c in word) >= 6:
        return True
    if count > 2 or not _LETTERS_ONLY.match(word.strip()):
        return False
    tokens = fold(word).split()
    if any(t in vocabulary for t in tokens):
        return False
    latin = [t for t in word.split() if t.isascii()]
    # Latin names are capitalised; Arabic-script words carry no case, so any rare one may be a name.
    return all(t[:1].isupper() for t in latin) if latin else True


def load_preset(name: str, schema: CaseSchema | None = None) -> Mapping:
    """A mapping preset shipped in schemas/mapping_presets/ (kobo, primero)."""
    schema = schema or load_schema()
    where = f"mapping_presets/{name}.yaml"
    return parse_mapping(read_yaml(where), {}, where, schema)


def plan_draft(
    export: Export, schema: CaseSchema | None = None, preset: Mapping | None = None
) -> Draft:
    """Match an export's headers and words: what the officer must still decide, word by word."""
    schema = schema or load_schema()
    preset = preset or Mapping()
    resolution = resolve_columns(export.headers, preset, schema)
    decided: dict[str, dict[str, str]] = {}
    vocabulary = _vocabulary_tokens(schema)
    words: dict[str, list[DraftWord]] = {}
    personal_columns: list[str] = []
    personal_values: dict[str, int] = {}
    for field_name, header in resolution.columns.items():
        f = schema.field(field_name)
        if f.codelist is None:
            continue
        matcher = CodeMatcher.of(f, schema, preset.values_for(f.name))
        preset_words = {word_key(w): c for w, c in preset.values_for(f.name).items()}
        counts: Counter[str] = Counter()
        cells = export.frame.get_column(header).drop_nulls().value_counts(sort=True)
        for text, n in cells.iter_rows():
            parts = split_multi(text) if f.multi else [[text.strip()]]
            if f.multi and isinstance(matcher.word(text), (str, Ambiguity)):
                parts = [[text.strip()]]
            for tokens in parts:
                counts[" ".join(tokens)] += n
        undecided: list[DraftWord] = []
        personal = 0
        for word, n in counts.most_common():
            found = matcher.word(word)
            if isinstance(found, str):
                if word_key(word) in preset_words:
                    decided.setdefault(field_name, {})[word] = found
                continue
            if isinstance(found, Ambiguity):
                undecided.append(DraftWord(word, n, found))
                continue
            if matcher.parse(word).error is None:
                continue  # several codes written with spaces, each known
            if looks_personal(word, n, vocabulary):
                personal += 1
                continue
            undecided.append(DraftWord(word, n))
        unknown = personal + sum(1 for w in undecided if w.ambiguity is None)
        if personal and personal >= PERSONAL_COLUMN_SHARE * unknown:
            personal_columns.append(header)
            continue
        if personal:
            personal_values[field_name] = personal
        if undecided:
            words[field_name] = undecided[:DRAFT_VALUE_LIMIT]
    columns: dict[str, str | None] = {
        header: name
        for name, header in resolution.columns.items()
        if header not in personal_columns
    }
    columns |= {header: None for header in resolution.unmapped}
    columns |= {header: None for header in personal_columns}
    columns = {
        h: columns[h] for h in export.headers if h in columns and h not in resolution.detail_columns
    }
    missing_required = [
        f.name
        for f in schema.fields
        if f.required
        and f.name not in resolution.columns
        and not _derivable(f.name, resolution, schema)
        and f.name not in {d.field for d in resolution.detail_columns.values()}
    ]
    return Draft(
        columns=columns,
        detail_columns=dict(resolution.detail_columns),
        words=words,
        personal_columns=personal_columns,
        personal_values=personal_values,
        asked=dict(resolution.asked),
        missing_required=missing_required,
        decided=decided,
    )


def _yaml_line(key: str, value: str | None) -> str:
    return yaml.safe_dump({key: value}, allow_unicode=True, width=10_000).strip()


def render_draft(draft: Draft, schema: CaseSchema | None = None) -> str:
    """The draft as commented YAML: comments in four languages, counts beside each word."""
    schema = schema or load_schema()
    out = ["# casepool mapping, drafted by `casepool mapping init`."]
    for lang in ("en", "ar", "ckb", "kmr"):
        out += [f"# {line}" for line in render("mapping-draft-help", lang).splitlines()]
    if draft.missing_required:
        out.append("# Required fields without a column: " + ", ".join(draft.missing_required))
    out += [f"mapping_version: {MAPPING_VERSION}", "columns:"]
    for header, target in draft.columns.items():
        note = ""
        if header in draft.personal_columns:
            note = "  # column looks personal: leave it unmapped"
        elif header in draft.asked:
            note = "  # TODO which field? could be " + " or ".join(draft.asked[header])
        out.append("  " + _yaml_line(header, target) + note)
    out.append("detail_columns:" + ("" if draft.detail_columns else " {}"))
    for header, d in draft.detail_columns.items():
        spec = yaml.safe_dump(
            {header: {"field": d.field, "code": d.code}},
            allow_unicode=True,
            width=10_000,
            default_flow_style=True,
        ).strip()[1:-1]
        out.append("  " + spec)
    out.append("values:" + ("" if draft.words or draft.decided else " {}"))
    for field_name in dict.fromkeys([*draft.decided, *draft.words]):
        out.append(f"  {field_name}:")
        for word, code in draft.decided.get(field_name, {}).items():
            out.append("    " + _yaml_line(word, code) + "  # preset")
        for w in draft.words.get(field_name, []):
            note = f"  # {w.count} cells"
            if w.ambiguity is not None:
                could = " or ".join(w.ambiguity.candidates) or "no answer"
                note += f"; ambiguous: {could}; read as {w.ambiguity.reading} until decided"
            out.append("    " + _yaml_line(w.word, TODO) + note)
    out.append("date_order: dmy")
    return "\n".join(out) + "\n"


def draft_export(
    path: str | Path,
    *,
    encoding: str | None = None,
    sheet: str | None = None,
    preset: str | None = None,
) -> tuple[str, dict[str, Any], Callable[[Path, str], None]]:
    """Read an export and draft its mapping: the YAML text, a summary, and a function writing the
    same draft as a workbook with drop-down lists (path, language)."""
    schema = load_schema()
    chosen = load_preset(preset, schema) if preset else None
    export = read_export(path, encoding=encoding, sheet=sheet, header_score=header_score)
    draft = plan_draft(export, schema, chosen)
    summary = draft.to_dict()
    summary["fields"] = len([t for t in draft.columns.values() if t]) + len(
        {d.field for d in draft.detail_columns.values()}
    )
    summary["layout"] = export.notes

    def write_workbook(target: Path, lang: str) -> None:
        write_mapping_workbook(draft, target, lang, schema)

    return render_draft(draft, schema), summary, write_workbook


def draft_mapping(export: Export, schema: CaseSchema | None = None) -> tuple[str, dict[str, Any]]:
    """A draft mapping YAML for an export, and a summary of what could not be matched.

    Words the code lists do not settle are listed one by one (multi-select cells split first)
    with the code TODO and how often they occur; values that look personal are never copied.
    """
    schema = schema or load_schema()
    draft = plan_draft(export, schema)
    summary = draft.to_dict()
    summary["fields"] = len([t for t in draft.columns.values() if t]) + len(
        {d.field for d in draft.detail_columns.values()}
    )
    return render_draft(draft, schema), summary


# --- the workbook draft ---------------------------------------------------------------------------


def _entry(code: str, label: str) -> str:
    return f"{code}{SEPARATOR}{label}"


def _cell_ref(col: int, row: int) -> str:
    letters = ""
    col += 1
    while col:
        col, rest = divmod(col - 1, 26)
        letters = chr(65 + rest) + letters
    return f"{letters}{row + 1}"


def write_mapping_workbook(
    draft: Draft, path: str | Path, lang: str = "en", schema: CaseSchema | None = None
) -> None:
    """Write the draft as a workbook whose code cells are drop-down lists."""
    import xlsxwriter

    schema = schema or load_schema()
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    workbook = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False})
    try:
        bold = workbook.add_format({"bold": True})
        lists = workbook.add_worksheet("lists")
        fields = [LEAVE_OUT, *schema.field_names]
        lists.write_column(0, 0, fields)
        ranges: dict[str, str] = {}
        coded = [f for f in schema.fields if f.codelist]
        for i, f in enumerate(coded, start=1):
            codelist = schema.codelist_of(f)
            entries = [_entry(c.code, c.label(lang)) for c in codelist.codes] + [MISSING_ENTRY]
            lists.write_column(0, i, entries)
            ranges[f.name] = f"=lists!{_abs(i, 0)}:{_abs(i, len(entries) - 1)}"
        lists.hide()

        columns = workbook.add_worksheet("columns")
        columns.write_row(0, 0, ["header", "field", "label", "note"], bold)
        for row, (header, target) in enumerate(draft.columns.items(), start=1):
            columns.write_string(row, 0, header)
            columns.write_string(row, 1, target or LEAVE_OUT)
            if target:
                columns.write_string(row, 2, schema.field(target).label(lang))
            if header in draft.personal_columns:
                columns.write_string(row, 3, "column looks personal: leave it unmapped")
            elif header in draft.asked:
                columns.write_string(row, 3, "which field? " + " / ".join(draft.asked[header]))
            columns.data_validation(
                row, 1, row, 1, {"validate": "list", "source": f"=lists!$A$1:$A${len(fields)}"}
            )
        columns.set_column(0, 0, 30)
        columns.set_column(1, 2, 28)

        values = workbook.add_worksheet("values")
        values.write_row(0, 0, ["field", "word", "cells", "code", "note"], bold)
        row = 1
        for field_name, words in draft.words.items():
            for w in words:
                values.write_string(row, 0, field_name)
                values.write_string(row, 1, w.word)
                values.write_number(row, 2, w.count)
                values.write_string(row, 3, TODO)
                if w.ambiguity is not None:
                    could = " / ".join(w.ambiguity.candidates) or "no answer"
                    values.write_string(row, 4, f"ambiguous: {could}")
                values.data_validation(
                    row, 3, row, 3, {"validate": "list", "source": ranges[field_name]}
                )
                row += 1
        values.set_column(0, 1, 28)
        values.set_column(3, 4, 36)

        settings = workbook.add_worksheet("settings")
        settings.write_row(0, 0, ["setting", "value"], bold)
        settings.write_row(1, 0, ["mapping_version", str(MAPPING_VERSION)])
        settings.write_row(2, 0, ["date_order", "dmy"])
        settings.data_validation(2, 1, 2, 1, {"validate": "list", "source": ["dmy", "mdy"]})
        if draft.detail_columns:
            settings.write_row(3, 0, ["detail column", "field", "code"], bold)
            for i, (header, d) in enumerate(draft.detail_columns.items(), start=4):
                settings.write_row(i, 0, [header, d.field, d.code])
        columns.activate()
    finally:
        workbook.close()
    tmp.replace(path)


def _abs(col: int, row: int) -> str:
    ref = _cell_ref(col, row)
    letters = "".join(c for c in ref if c.isalpha())
    digits = ref[len(letters) :]
    return f"${letters}${digits}"


def _derivable(field_name: str, resolution: Resolution, schema: CaseSchema) -> bool:
    return any(f.derives == field_name and f.name in resolution.columns for f in schema.fields)


__all__ = [
    "Draft",
    "DraftWord",
    "draft_export",
    "draft_mapping",
    "load_preset",
    "looks_personal",
    "plan_draft",
    "render_draft",
    "write_mapping_workbook",
]
