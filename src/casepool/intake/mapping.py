"""An organisation's mapping from its export's columns and values to the case record, and its draft."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from casepool.core.errors import MappingError
from casepool.core.reading import Export
from casepool.core.schema import CaseSchema, load_schema
from casepool.intake.matching import code_index, match_detail_column, match_header, parse_codes

MAPPING_VERSION = 1
DRAFT_VALUE_LIMIT = 200  # distinct values examined per coded column when drafting


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


def load_mapping(path: str | Path, schema: CaseSchema | None = None) -> Mapping:
    """Read and check a mapping YAML; every field and code it names must exist in the schema."""
    schema = schema or load_schema()
    path = Path(path)

    def refuse(reason: str) -> MappingError:
        return MappingError("mapping-unreadable", path=path.name, reason=reason)

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise refuse("the file does not exist") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise refuse("not valid UTF-8 YAML") from exc
    if not isinstance(raw, dict):
        raise refuse("expected keys columns, detail_columns, values")
    if raw.get("mapping_version", MAPPING_VERSION) != MAPPING_VERSION:
        raise refuse(f"unsupported mapping_version (expected {MAPPING_VERSION})")
    names = set(schema.field_names)
    columns: dict[str, str | None] = {}
    for header, target in (raw.get("columns") or {}).items():
        if target is not None and target not in names:
            raise refuse(f"column mapped to unknown field '{target}'")
        columns[str(header)] = target
    details: dict[str, DetailColumn] = {}
    for header, spec in (raw.get("detail_columns") or {}).items():
        if not isinstance(spec, dict) or spec.get("field") not in names:
            raise refuse("a detail column needs field and code")
        f = schema.field(spec["field"])
        if not f.multi or str(spec.get("code")) not in schema.codelist_of(f).values:
            raise refuse(f"detail column for {f.name} names an unknown code")
        details[str(header)] = DetailColumn(field=f.name, code=str(spec["code"]))
    values: dict[str, dict[str, str]] = {}
    for field_name, table in (raw.get("values") or {}).items():
        if field_name not in names or schema.field(field_name).codelist is None:
            raise refuse(f"values given for '{field_name}', which is not a coded field")
        allowed = set(schema.codelist_of(schema.field(field_name)).values)
        for target in (table or {}).values():
            if str(target) not in allowed:
                raise refuse(f"a value of {field_name} is mapped to a code not in its code list")
        values[field_name] = {str(k).strip(): str(v) for k, v in (table or {}).items()}
    order = str(raw.get("date_order", "dmy"))
    if order not in {"dmy", "mdy"}:
        raise refuse("date_order must be dmy or mdy")
    return Mapping(columns=columns, detail_columns=details, values=values, date_order=order)


@dataclass(frozen=True)
class Resolution:
    """How an export's headers resolve: field -> header, detail columns, and headers left out."""

    columns: dict[str, str]
    detail_columns: dict[str, DetailColumn]
    unmapped: list[str]


def resolve_columns(
    headers: list[str], mapping: Mapping | None, schema: CaseSchema | None = None
) -> Resolution:
    """Which header feeds which field: the mapping first, then names, labels and synonyms."""
    schema = schema or load_schema()
    mapping = mapping or Mapping()
    columns: dict[str, str] = {}
    details: dict[str, DetailColumn] = {}
    unmapped: list[str] = []
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
        if target is None or target in columns:
            unmapped.append(header)
        else:
            columns[target] = header
    # Detail columns carry the same answer as a KoboToolbox summary column: use one source only.
    for f in {d.field for d in details.values()}:
        if f in columns:
            unmapped.append(columns.pop(f))
    return Resolution(columns=columns, detail_columns=details, unmapped=unmapped)


def draft_mapping(export: Export, schema: CaseSchema | None = None) -> tuple[str, dict[str, Any]]:
    """A draft mapping YAML for an export, and a summary of what could not be matched.

    Unmatched values are listed with the code TODO for the data officer to fill in; unmatched
    columns are listed as null (left out of the submission).
    """
    schema = schema or load_schema()
    resolution = resolve_columns(export.headers, None, schema)
    unmatched_values: dict[str, list[str]] = {}
    for field_name, header in resolution.columns.items():
        f = schema.field(field_name)
        if f.codelist is None:
            continue
        index = code_index(schema.codelist_of(f))
        distinct = export.frame.get_column(header).drop_nulls().str.strip_chars().unique()
        misses = sorted(
            value
            for value in distinct.head(DRAFT_VALUE_LIMIT).to_list()
            if value and parse_codes(value, f, index, {}).error == "unknown-code"
        )
        if misses:
            unmatched_values[field_name] = misses
    document: dict[str, Any] = {
        "mapping_version": MAPPING_VERSION,
        "columns": {header: name for name, header in resolution.columns.items()}
        | {header: None for header in resolution.unmapped},
        "detail_columns": {
            header: {"field": d.field, "code": d.code}
            for header, d in resolution.detail_columns.items()
        },
        "values": {name: {v: "TODO" for v in misses} for name, misses in unmatched_values.items()},
        "date_order": "dmy",
    }
    missing_required = [
        f.name
        for f in schema.fields
        if f.required
        and f.name not in resolution.columns
        and not _derivable(f.name, resolution, schema)
        and f.name not in {d.field for d in resolution.detail_columns.values()}
    ]
    header = (
        "# casepool mapping, drafted by `casepool mapping init`. Review every line:\n"
        "# columns: export header -> case-record field (null: not submitted).\n"
        "# values: export value -> code; replace each TODO with a code from docs/schema-reference.md.\n"
        "# date_order: dmy reads 03/05/2024 as 3 May; mdy as 5 March.\n"
    )
    if missing_required:
        header += "# Required fields without a column: " + ", ".join(missing_required) + "\n"
    text = header + yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=120)
    summary = {
        "fields": len(resolution.columns)
        + len({d.field for d in resolution.detail_columns.values()}),
        "unmatched_columns": list(resolution.unmapped),
        "unmatched_values": {k: len(v) for k, v in unmatched_values.items()},
        "missing_required": missing_required,
    }
    return text, summary


def _derivable(field_name: str, resolution: Resolution, schema: CaseSchema) -> bool:
    return any(f.derives == field_name and f.name in resolution.columns for f in schema.fields)
