"""An organisation's mapping from its export's columns and values to the case record, and its draft.

A mapping is YAML (or the XLSX draft with drop-down lists, read back the same way). Every problem
names the line (or sheet row), the value and the field, in the officer's language.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from casepool.core.errors import MappingError
from casepool.core.i18n import render
from casepool.core.schema import CaseSchema, load_schema
from casepool.intake.matching import (
    MISSING,
    match_detail_column,
    match_header,
    weak_header,
)

if TYPE_CHECKING:
    import yaml  # imported where a mapping is read: validate without one never needs PyYAML

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
    import yaml

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
    import yaml

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


def header_score(headers: list[str]) -> int:
    """How many of a candidate header row's cells name a case-record field (to find the header
    row below title rows, and the data sheet among instruction sheets)."""
    return sum(1 for h in headers if h and (match_header(h) is not None or match_detail_column(h)))


def _derivable(field_name: str, resolution: Resolution, schema: CaseSchema) -> bool:
    return any(f.derives == field_name and f.name in resolution.columns for f in schema.fields)


__all__ = [
    "ANY_FIELD",
    "DetailColumn",
    "Mapping",
    "MappingProblem",
    "Resolution",
    "header_score",
    "load_mapping",
    "parse_mapping",
    "resolve_columns",
]
