"""An organisation's mapping from its export's columns and values to the case record, and its draft.

A mapping is YAML (or the XLSX draft with drop-down lists, read back the same way). Every problem
names the line (or sheet row), the value and the field, in the officer's language.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from casepool.core.errors import MappingError
from casepool.core.i18n import render
from casepool.core.normalising import fold, split_multi
from casepool.core.reading import Export, read_export
from casepool.core.schema import CaseSchema, load_schema, read_yaml
from casepool.intake.matching import (
    MISSING,
    Ambiguity,
    CodeMatcher,
    code_index,
    match_detail_column,
    match_header,
    weak_header,
    word_key,
)
from casepool.intake.pii import personal_data_kind

MAPPING_VERSION = 1
DRAFT_VALUE_LIMIT = 200  # distinct words listed per coded column when drafting
ANY_FIELD = "any_field"  # values that apply to every coded field (e.g. NA: missing)
MISSING_WORDS = {"missing", "null", "~", ""}
TODO = "TODO"


class MappingProblem(MappingError):
    """A mapping names a value, code or field wrongly; says where, with the field in `lang`."""

    def message(self, lang: str) -> str:
        params = dict(self.params)
        name = params.get("field")
        if isinstance(name, str) and name in load_schema().field_names:
            params["field"] = load_schema().field(name).label(lang)
        return render(self.key, lang, **params)


@dataclass(frozen=True)
class DetailColumn:
    """A KoboToolbox select_multiple detail column: 1 when the option was ticked."""

    field: str
    code: str


@dataclass
class Mapping:
    """Export header -> field, detail columns, per-field value overrides and the day/month order."""

    columns: dict[str, str | None] = field(default_factory=dict)
    detail_columns: dict[str, DetailColumn] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    date_order: str = "dmy"

    @property
    def day_first(self) -> bool:
        return self.date_order == "dmy"

    def values_for(self, field_name: str) -> dict[str, str]:
        """The organisation's decisions for one field: its own, over those for any field."""
        return self.values.get(ANY_FIELD, {}) | self.values.get(field_name, {})


# --- reading a mapping ---------------------------------------------------------------------------


def _key_lines(node: yaml.Node | None, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """(key path) -> 1-based line of each mapping key in a composed YAML document."""
    lines: dict[tuple[str, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, str(key.value))
            lines[path] = key.start_mark.line + 1
            lines |= _key_lines(value, path)
    return lines


def load_mapping(path: str | Path, schema: CaseSchema | None = None) -> Mapping:
    """Read and check a mapping (YAML, or the XLSX draft); every field and code must exist."""
    schema = schema or load_schema()
    path = Path(path)
    if path.suffix.lower() in {".xlsx", ".xlsm"}:
        from casepool.intake.mapping_workbook import read_mapping_workbook

        raw, lines = read_mapping_workbook(path)
        return parse_mapping(raw, lines, path.name, schema)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(
            "mapping-unreadable", path=path.name, reason="the file does not exist"
        ) from None
    except UnicodeDecodeError as exc:
        raise MappingError("mapping-unreadable", path=path.name, reason="not UTF-8") from exc
    try:
        raw = yaml.safe_load(text)
        lines = _key_lines(yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise MappingProblem(
            "mapping-yaml-error",
            path=path.name,
            line=mark.line + 1 if mark else "?",
            problem=str(exc.problem or exc.context or ""),
        ) from None
    except yaml.YAMLError as exc:
        raise MappingError("mapping-unreadable", path=path.name, reason="not valid YAML") from exc
    return parse_mapping(raw, lines, path.name, schema)


def parse_mapping(
    raw: Any, lines: dict[tuple[str, ...], int], where: str, schema: CaseSchema
) -> Mapping:
    """A mapping from its parsed document; `lines` gives each key's line for the messages."""

    def refuse(reason: str) -> MappingError:
        return MappingError("mapping-unreadable", path=where, reason=reason)

    def line(*keys: str) -> int | str:
        return lines.get(keys, "?")

    if not isinstance(raw, dict):
        raise refuse("expected keys columns, detail_columns, values")
    if raw.get("mapping_version", MAPPING_VERSION) != MAPPING_VERSION:
        raise refuse(f"unsupported mapping_version (expected {MAPPING_VERSION})")
    names = set(schema.field_names)
    columns: dict[str, str | None] = {}
    for header, target in (raw.get("columns") or {}).items():
        if target is not None and target not in names:
            raise MappingProblem(
                "mapping-unknown-field",
                path=where,
                line=line("columns", str(header)),
                column=str(header),
                target=str(target),
            )
        columns[str(header)] = target
    details: dict[str, DetailColumn] = {}
    for header, spec in (raw.get("detail_columns") or {}).items():
        if not isinstance(spec, dict) or spec.get("field") not in names:
            raise refuse(f"line {line('detail_columns', str(header))}: needs field and code")
        f = schema.field(spec["field"])
        if not f.multi or str(spec.get("code")) not in schema.codelist_of(f).values:
            raise MappingProblem(
                "mapping-unknown-code",
                path=where,
                line=line("detail_columns", str(header)),
                value=str(header),
                code=str(spec.get("code")),
                field=f.name,
                codes=", ".join(schema.codelist_of(f).values) if f.multi else "",
            )
        details[str(header)] = DetailColumn(field=f.name, code=str(spec["code"]))
    values: dict[str, dict[str, str]] = {}
    for field_name, table in (raw.get("values") or {}).items():
        field_name = str(field_name)
        if field_name == ANY_FIELD:
            allowed: set[str] = {"unknown"}
        elif field_name in names and schema.field(field_name).codelist is not None:
            allowed = set(schema.codelist_of(schema.field(field_name)).values)
        else:
            raise MappingProblem(
                "mapping-not-coded",
                path=where,
                line=line("values", field_name),
                target=field_name,
            )
        decided: dict[str, str] = {}
        for word, target in (table or {}).items():
            code = (
                MISSING if target is None or str(target).strip() in MISSING_WORDS else str(target)
            )
            if code != MISSING and code not in allowed:
                raise MappingProblem(
                    "mapping-unknown-code",
                    path=where,
                    line=line("values", field_name, str(word)),
                    value=str(word),
                    code=str(target),
                    field=field_name if field_name != ANY_FIELD else "",
                    codes=", ".join(sorted(allowed)) + ", missing",
                )
            decided[str(word).strip()] = code
        values[field_name] = decided
    order = str(raw.get("date_order", "dmy"))
    if order not in {"dmy", "mdy"}:
        raise refuse(f"line {line('date_order')}: date_order must be dmy or mdy")
    return Mapping(columns=columns, detail_columns=details, values=values, date_order=order)


# --- which header feeds which field --------------------------------------------------------------


@dataclass(frozen=True)
class Resolution:
    """How an export's headers resolve: field -> header, detail columns, headers left out, headers
    too vague to assume (header -> the fields it could be) and mapping columns the file lacks."""

    columns: dict[str, str]
    detail_columns: dict[str, DetailColumn]
    unmapped: list[str]
    asked: dict[str, tuple[str, ...]] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)


def resolve_columns(
    headers: list[str], mapping: Mapping | None, schema: CaseSchema | None = None
) -> Resolution:
    """Which header feeds which field: the mapping first, then names, labels and synonyms.

    A header that could name several fields (`Status`) is asked about, never assumed.
    """
    schema = schema or load_schema()
    mapping = mapping or Mapping()
    columns: dict[str, str] = {}
    details: dict[str, DetailColumn] = {}
    unmapped: list[str] = []
    asked: dict[str, tuple[str, ...]] = {}
    for header in headers:
        if header in mapping.detail_columns:
            details[header] = mapping.detail_columns[header]
            continue
        if header in mapping.columns:
            target = mapping.columns[header]
        else:
            target = match_header(header, schema)
            if target is None and (detail := match_detail_column(header, schema)):
                details[header] = DetailColumn(*detail)
                continue
            if target is None and (candidates := weak_header(header)):
                asked[header] = candidates
        if target is None or target in columns:
            unmapped.append(header)
        else:
            columns[target] = header
    # Detail columns carry the same answer as a KoboToolbox summary column: use one source only.
    for f in {d.field for d in details.values()}:
        if f in columns:
            unmapped.append(columns.pop(f))
    present = set(headers)
    stale = [h for h in [*mapping.columns, *mapping.detail_columns] if h not in present]
    return Resolution(
        columns=columns, detail_columns=details, unmapped=unmapped, asked=asked, stale=stale
    )


# --- drafting a mapping ----------------------------------------------------------------------------

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


def header_score(headers: list[str]) -> int:
    """How many of a candidate header row's cells name a case-record field (to find the header
    row below title rows, and the data sheet among instruction sheets)."""
    return sum(1 for h in headers if h and (match_header(h) is not None or match_detail_column(h)))


def draft_export(
    path: str | Path,
    *,
    encoding: str | None = None,
    sheet: str | None = None,
    preset: str | None = None,
) -> tuple[str, dict[str, Any], Callable[[Path, str], None]]:
    """Read an export and draft its mapping: the YAML text, a summary, and a function writing the
    same draft as a workbook with drop-down lists (path, language)."""
    from casepool.intake.mapping_workbook import write_mapping_workbook

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


def _derivable(field_name: str, resolution: Resolution, schema: CaseSchema) -> bool:
    return any(f.derives == field_name and f.name in resolution.columns for f in schema.fields)


__all__ = [
    "ANY_FIELD",
    "DetailColumn",
    "Draft",
    "Mapping",
    "MappingProblem",
    "Resolution",
    "draft_mapping",
    "load_mapping",
    "looks_personal",
    "parse_mapping",
    "plan_draft",
    "render_draft",
    "resolve_columns",
]
