"""Match headers to fields and cell values to codes by their labels and synonyms in all four languages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from casepool.core.errors import SchemaError
from casepool.core.normalising import fold, split_multi
from casepool.core.schema import CaseSchema, CodeList, Field, load_schema


def _index(entries: Iterable[tuple[str, str]], where: str) -> dict[str, str]:
    """Folded text -> target; the same folded text may not point at two targets."""
    index: dict[str, str] = {}
    for text, target in entries:
        key = fold(text)
        if not key:
            continue
        if index.get(key, target) != target:
            raise SchemaError(
                "schema-invalid",
                file=where,
                reason=f"'{text}' matches both {index[key]} and {target}",
            )
        index[key] = target
    return index


@cache
def code_index(codelist: CodeList) -> dict[str, str]:
    """Every way of writing a code of this list (code, labels, synonyms), folded, to the code."""
    entries: list[tuple[str, str]] = []
    for code in codelist.codes:
        entries.append((code.code, code.code))
        entries.extend((label, code.code) for label in code.labels.values())
    # Synonyms come last and may not override a code or label of another code.
    primary = _index(entries, f"codelists/{codelist.name}.yaml")
    synonyms = [(s, c.code) for c in codelist.codes for s in c.synonyms]
    for key, target in _index(synonyms, f"codelists/{codelist.name}.yaml").items():
        if primary.get(key, target) != target:
            raise SchemaError(
                "schema-invalid",
                file=f"codelists/{codelist.name}.yaml",
                reason=f"synonym '{key}' of {target} is a label of {primary[key]}",
            )
        primary.setdefault(key, target)
    return primary


@cache
def header_index(schema: CaseSchema | None = None) -> dict[str, str]:
    """Every way of writing a field's header (name, labels, synonyms), folded, to the field name."""
    schema = schema or load_schema()
    entries: list[tuple[str, str]] = []
    for f in schema.fields:
        entries.append((f.name, f.name))
        entries.extend((label, f.name) for label in f.labels.values())
    primary = _index(entries, "case_record.yaml")
    for key, target in _index(
        [(s, f.name) for f in schema.fields for s in f.synonyms], "case_record.yaml"
    ).items():
        primary.setdefault(key, target)
    return primary


def match_header(header: str, schema: CaseSchema | None = None) -> str | None:
    """The field a header names, also as the last part of a KoboToolbox group path (group/field)."""
    index = header_index(schema)
    if (field := index.get(fold(header))) is not None:
        return field
    if "/" in header:
        return index.get(fold(header.rsplit("/", 1)[1]))
    return None


def match_detail_column(header: str, schema: CaseSchema | None = None) -> tuple[str, str] | None:
    """(field, code) for a KoboToolbox select_multiple detail column such as `grp/exploitation/online`."""
    schema = schema or load_schema()
    parts = header.split("/")
    if len(parts) < 2:
        return None
    field_name = match_header(parts[-2], schema)
    if field_name is None:
        return None
    f = schema.field(field_name)
    if not f.multi:
        return None
    code = code_index(schema.codelist_of(f)).get(fold(parts[-1]))
    return (field_name, code) if code else None


@dataclass(frozen=True)
class Parsed:
    """A cell value parsed against a code list: its codes, or the error slug found."""

    codes: tuple[str, ...] = ()
    error: str | None = None


def parse_codes(text: str, f: Field, index: dict[str, str], overrides: dict[str, str]) -> Parsed:
    """One cell of a code or codes field: whole-cell match first, then parts, then tokens."""
    whole = overrides.get(text.strip()) or index.get(fold(text))
    if whole:
        return Parsed(codes=(whole,))
    codes: list[str] = []
    for tokens in split_multi(text):
        found = _match_tokens(tokens, index, overrides)
        if found is None:
            return Parsed(error="unknown-code")
        codes.extend(c for c in found if c not in codes)
    if not codes:
        return Parsed()
    if not f.multi and len(codes) > 1:
        return Parsed(error="too-many-values")
    return Parsed(codes=tuple(codes))


def _match_tokens(
    tokens: list[str], index: dict[str, str], overrides: dict[str, str]
) -> list[str] | None:
    """Greedy longest match of consecutive tokens against labels; None if any token stays unknown."""
    found: list[str] = []
    start = 0
    while start < len(tokens):
        for end in range(len(tokens), start, -1):
            text = " ".join(tokens[start:end])
            code = overrides.get(text) or index.get(fold(text))
            if code:
                found.append(code)
                start = end
                break
        else:
            return None
    return found
