"""Match headers to fields and cell values to codes by their labels and synonyms in all four languages.

Matching never guesses: a placeholder ("NA", "-", "؟") or a word that names more than one code
(schemas/ambiguous_values.yaml) is reported as `ambiguous-value` until the organisation's mapping
says what it means. Matching a cell costs time proportional to its length.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from casepool.core.errors import SchemaError
from casepool.core.normalising import fold, split_multi
from casepool.core.schema import CaseSchema, CodeList, Field, load_schema, read_yaml

_OUTER_SEPARATORS = re.compile(r"[,;،؛|\n]+")
MAX_CODED_CELL = 2000  # characters: longer than any list of codes an export writes
MISSING = ""  # a mapping may decide a word means "no answer": read as an empty cell


def word_key(text: str) -> str:
    """The folded form of a word; punctuation-only words ("-", "؟") keep their characters."""
    return fold(text) or "".join(text.split()).casefold()


@dataclass(frozen=True)
class Ambiguity:
    """Why a word is not read silently: the codes it could name (none for a placeholder) and how
    it is read until the organisation's mapping decides."""

    candidates: tuple[str, ...]
    reading: str  # "missing" or a code such as "unknown"


@cache
def _ambiguous_spec() -> dict[str, object]:
    raw = read_yaml("ambiguous_values.yaml")
    if not isinstance(raw, dict):
        raise SchemaError("schema-invalid", file="ambiguous_values.yaml", reason="not a mapping")
    return raw


@cache
def placeholders() -> frozenset[str]:
    """Folded words exports use for "no answer" (NA, N/A, -, ؟ ...)."""
    spec = _ambiguous_spec().get("placeholders") or {}
    words = spec.get("words", []) if isinstance(spec, dict) else []
    return frozenset(word_key(str(w)) for w in words)


@cache
def ambiguous_words(codelist: CodeList) -> dict[str, Ambiguity]:
    """Folded word -> Ambiguity for the words this code list must not read silently."""
    spec = _ambiguous_spec()
    found: dict[str, Ambiguity] = {}
    entry = (spec.get("codes") or {}).get(codelist.name)  # type: ignore[attr-defined]
    if entry:
        fallback = "unknown" if "unknown" in codelist.values else "missing"
        reading = str(entry.get("reading", fallback))
        if reading not in codelist.values:
            reading = "missing"
        for word, codes in (entry.get("words") or {}).items():
            unknown = [c for c in codes if c not in codelist.values]
            if unknown:
                raise SchemaError(
                    "schema-invalid",
                    file="ambiguous_values.yaml",
                    reason=f"{word}: {unknown} not in {codelist.name}",
                )
            found[word_key(str(word))] = Ambiguity(tuple(str(c) for c in codes), reading)
    placeholder = Ambiguity((), "missing")
    for word in placeholders():
        found.setdefault(word, placeholder)
    return found


@cache
def ambiguous_headers() -> dict[str, tuple[str, ...]]:
    """Folded header word -> the fields it could name (asked about, never assumed)."""
    raw = _ambiguous_spec().get("headers") or {}
    return {word_key(str(k)): tuple(str(f) for f in v) for k, v in raw.items()}  # type: ignore[attr-defined]


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
    """Every way of writing a code of this list (code, labels, synonyms), folded, to the code.

    Words listed as ambiguous are left out: they are never matched silently.
    """
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
def _longest_words(codelist: CodeList) -> int:
    """The most whitespace tokens in any spelling of a code: the widest window matching needs."""
    return max((len(key.split()) for key in code_index(codelist)), default=1)


@dataclass(frozen=True)
class CodeMatcher:
    """Matches cells of one coded field: the mapping's decisions first, then ambiguity, then the
    code list. Built once per field."""

    field: Field
    index: dict[str, str]
    ambiguous: dict[str, Ambiguity]
    overrides: dict[str, str] = dataclasses.field(
        default_factory=dict
    )  # folded word -> code or MISSING
    window: int = 1

    @classmethod
    def of(
        cls, f: Field, schema: CaseSchema, overrides: dict[str, str] | None = None
    ) -> CodeMatcher:
        codelist = schema.codelist_of(f)
        return cls(
            field=f,
            index=code_index(codelist),
            ambiguous=ambiguous_words(codelist),
            overrides={word_key(k): v for k, v in (overrides or {}).items()},
            window=_longest_words(codelist),
        )

    def word(self, text: str) -> str | Ambiguity | None:
        """One word or phrase: its code, MISSING, an Ambiguity, or None when unknown."""
        return self._lookup(word_key(text))

    def parse(self, text: str) -> Parsed:
        """One cell: whole-cell match first, then parts, then tokens (bounded window: linear)."""
        if len(text) > MAX_CODED_CELL:
            return Parsed(error="value-too-long")
        whole = self.word(text)
        if isinstance(whole, Ambiguity):
            return Parsed(error="ambiguous-value", ambiguity=whole)
        if whole is not None:
            return Parsed(codes=(whole,) if whole != MISSING else ())
        codes: list[str] = []
        for outer in _OUTER_SEPARATORS.split(text):
            # "N/A" is one word before "/" separates codes ("health/legal").
            known = self.word(outer) if outer.strip() else None
            parts = [outer.split()] if known is not None else split_multi(outer)
            for tokens in parts:
                part = self.word(" ".join(tokens))
                if isinstance(part, Ambiguity):
                    return Parsed(error="ambiguous-value", ambiguity=part)
                found = [part] if part is not None else self._match_tokens(tokens)
                if found is None:
                    return Parsed(error="unknown-code")
                codes.extend(c for c in found if c != MISSING and c not in codes)
        if not codes:
            return Parsed()
        if not self.field.multi and len(codes) > 1:
            return Parsed(error="too-many-values")
        return Parsed(codes=tuple(codes))

    def _match_tokens(self, tokens: list[str]) -> list[str] | None:
        """Greedy longest match of consecutive tokens; None if any token stays unknown.

        No spelling has more than `window` tokens, so each start tries at most `window` spans,
        and each token is folded once: the cost is linear in the cell's length.
        """
        keys = [word_key(t) for t in tokens]
        found: list[str] = []
        start = 0
        while start < len(keys):
            for end in range(min(len(keys), start + self.window), start, -1):
                code = self._lookup(" ".join(keys[start:end]))
                if isinstance(code, str):
                    found.append(code)
                    start = end
                    break
            else:
                return None
        return found

    def _lookup(self, key: str) -> str | Ambiguity | None:
        if key in self.overrides:
            return self.overrides[key]
        if key in self.ambiguous:
            return self.ambiguous[key]
        return self.index.get(key)


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
    """The field a header names, also as a KoboToolbox group path (group/field, read as words or
    by its last part)."""
    index = header_index(schema)
    if (field_name := index.get(fold(header))) is not None:
        return field_name
    if "/" in header:
        if (field_name := index.get(fold(header.replace("/", " ")))) is not None:
            return field_name
        return index.get(fold(header.rsplit("/", 1)[1]))
    return None


def weak_header(header: str) -> tuple[str, ...]:
    """The fields a header could name when it is too vague to assume one (e.g. `Status`)."""
    if match_header(header) is not None:
        return ()
    words = ambiguous_headers()
    last = header.rsplit("/", 1)[-1]
    return words.get(word_key(header)) or words.get(word_key(last)) or ()


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
    ambiguity: Ambiguity | None = None


def parse_codes(text: str, f: Field, index: dict[str, str], overrides: dict[str, str]) -> Parsed:
    """One cell of a code or codes field (see CodeMatcher.parse)."""
    schema = load_schema()
    codelist = schema.codelist_of(f)
    matcher = CodeMatcher(
        field=f,
        index=index,
        ambiguous=ambiguous_words(codelist),
        overrides={word_key(k): v for k, v in overrides.items()},
        window=_longest_words(codelist) if index is code_index(codelist) else _widest(index),
    )
    return matcher.parse(text)


def _widest(index: dict[str, str]) -> int:
    return max((len(k.split()) for k in index), default=1)
