"""Load the data model in schemas/ (case record, code lists) into typed, validated objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from casepool.core.errors import SchemaError
from casepool.core.resources import LANGUAGES as LANGUAGES
from casepool.core.resources import RTL_LANGUAGES as RTL_LANGUAGES
from casepool.core.resources import load_yaml
from casepool.core.resources import schemas_dir as schemas_dir

FIELD_TYPES = frozenset({"identifier", "code", "codes", "integer", "date", "month"})


def read_yaml(name: str) -> Any:
    """Parse one YAML file under schemas/ (e.g. "case_record.yaml")."""
    try:
        return load_yaml(name)
    except FileNotFoundError as exc:
        raise SchemaError("schema-missing", file=name) from exc
    except Exception as exc:
        import yaml  # only here: a parsed file is usually cached (load_yaml)

        if isinstance(exc, yaml.YAMLError):
            reason = str(exc).splitlines()[0]
            raise SchemaError("schema-invalid", file=name, reason=reason) from exc
        raise


def _labels(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise SchemaError("schema-invalid", file=where, reason="labels must be a mapping")
    labels = {lang: str(raw.get(lang, "")).strip() for lang in LANGUAGES}
    missing = [lang for lang, text in labels.items() if not text]
    if missing:
        raise SchemaError("schema-invalid", file=where, reason=f"labels missing {missing}")
    return labels


@dataclass(frozen=True)
class Code:
    """One code of a code list, its labels in every language, and spellings real exports use."""

    code: str
    labels: dict[str, str]
    synonyms: tuple[str, ...] = ()
    parent: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    def label(self, lang: str) -> str:
        return self.labels.get(lang) or self.labels["en"]


@dataclass(frozen=True, eq=False)  # hashed by identity: loaded once, cached
class CodeList:
    """A named, ordered set of codes."""

    name: str
    codes: tuple[Code, ...]

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.codes)

    def get(self, code: str) -> Code | None:
        return self._by_code().get(code)

    @cache  # noqa: B019 - code lists are immutable and loaded once per process
    def _by_code(self) -> dict[str, Code]:
        return {c.code: c for c in self.codes}


@dataclass(frozen=True)
class Field:
    """One field of the case record."""

    name: str
    type: str
    labels: dict[str, str]
    hxl: str
    required: bool = False
    unique: bool = False
    codelist: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    quasi_identifier: bool = False
    sensitive: bool = False
    importance: int | None = None  # quasi-identifiers: 1 is suppressed last (sdcMicro's order)
    input_only: bool = False
    derives: str | None = None
    parent: str | None = None
    synonyms: tuple[str, ...] = ()

    @property
    def multi(self) -> bool:
        return self.type == "codes"

    def label(self, lang: str) -> str:
        return self.labels.get(lang) or self.labels["en"]


RULE_CHECKS = frozenset(
    {"not-after-month", "within-parent", "only-with-code", "required-with-code", "unique"}
)
_RULE_FIELDS = ("than", "parent", "when")  # arguments of a rule that name other fields


@dataclass(frozen=True)
class Rule:
    """A rule over several fields (schemas/case_record.yaml `rules:`); its check lives in intake."""

    check: str
    field: str
    error: str
    args: tuple[tuple[str, str], ...] = ()

    def arg(self, name: str) -> str:
        return dict(self.args)[name]

    @property
    def reads(self) -> tuple[str, ...]:
        """Every field the rule reads: its own and those its arguments name."""
        return (self.field, *(v for k, v in self.args if k in _RULE_FIELDS))


@dataclass(frozen=True, eq=False)
class CaseSchema:
    """The case record: its fields in order and the code lists they draw on."""

    name: str
    version: int
    fields: tuple[Field, ...]
    codelists: dict[str, CodeList]
    rules: tuple[Rule, ...] = ()  # cross-field rules, checked by casepool.intake.rules

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def submitted_fields(self) -> tuple[Field, ...]:
        """Fields that a package carries (input-only fields are turned into others first)."""
        return tuple(f for f in self.fields if not f.input_only)

    @property
    def quasi_identifiers(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.quasi_identifier)

    def codelist_of(self, f: Field) -> CodeList:
        if f.codelist is None:
            raise KeyError(f.name)
        return self.codelists[f.codelist]


def _parse_codelist(raw: Any, file: str) -> CodeList:
    if not isinstance(raw, Mapping) or "name" not in raw or not raw.get("codes"):
        raise SchemaError("schema-invalid", file=file, reason="a code list needs name and codes")
    codes = []
    for item in raw["codes"]:
        code = str(item["code"])
        attributes = {
            k: str(v) for k, v in item.items() if k not in {"code", "labels", "synonyms", "parent"}
        }
        codes.append(
            Code(
                code=code,
                labels=_labels(item.get("labels"), f"{file}:{code}"),
                synonyms=tuple(str(s) for s in item.get("synonyms") or ()),
                parent=item.get("parent"),
                attributes=attributes,
            )
        )
    values = [c.code for c in codes]
    if len(set(values)) != len(values):
        raise SchemaError("schema-invalid", file=file, reason="duplicate code")
    return CodeList(name=str(raw["name"]), codes=tuple(codes))


def load_codelists() -> dict[str, CodeList]:
    """Every code list in schemas/codelists/, by name."""
    folder = schemas_dir() / "codelists"
    if not folder.is_dir():
        raise SchemaError("schema-missing", file="codelists/")
    lists = {}
    for path in sorted(folder.glob("*.yaml")):
        codelist = _parse_codelist(read_yaml(f"codelists/{path.name}"), path.name)
        lists[codelist.name] = codelist
    return lists


def _parse_field(raw: Mapping[str, Any]) -> Field:
    name = str(raw["name"])
    if raw.get("type") not in FIELD_TYPES:
        raise SchemaError("schema-invalid", file="case_record.yaml", reason=f"{name}: bad type")
    return Field(
        name=name,
        type=str(raw["type"]),
        labels=_labels(raw.get("labels"), f"case_record.yaml:{name}"),
        hxl=str(raw.get("hxl", "")),
        required=bool(raw.get("required", False)),
        unique=bool(raw.get("unique", False)),
        codelist=raw.get("codelist"),
        minimum=raw.get("min"),
        maximum=raw.get("max"),
        quasi_identifier=bool(raw.get("quasi_identifier", False)),
        sensitive=bool(raw.get("sensitive", False)),
        importance=None if raw.get("importance") is None else int(raw["importance"]),
        input_only=bool(raw.get("input_only", False)),
        derives=raw.get("derives"),
        parent=raw.get("parent"),
        synonyms=tuple(str(s) for s in raw.get("synonyms") or ()),
    )


@cache
def load_schema() -> CaseSchema:
    """The case record schema with its code lists, checked for internal consistency."""
    raw = read_yaml("case_record.yaml")
    codelists = load_codelists()
    fields = tuple(_parse_field(f) for f in raw["fields"])
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise SchemaError("schema-invalid", file="case_record.yaml", reason="duplicate field")
    for f in fields:
        if f.type in {"code", "codes"} and f.codelist not in codelists:
            raise SchemaError(
                "schema-invalid", file="case_record.yaml", reason=f"{f.name}: unknown code list"
            )
        if f.parent and f.parent not in names:
            raise SchemaError(
                "schema-invalid", file="case_record.yaml", reason=f"{f.name}: unknown parent"
            )
    rules = tuple(_parse_rule(r, set(names)) for r in raw.get("rules") or ())
    return CaseSchema(
        name=str(raw["name"]),
        version=int(raw["version"]),
        fields=fields,
        codelists=codelists,
        rules=rules,
    )


def _parse_rule(raw: Any, names: set[str]) -> Rule:
    where = "case_record.yaml"
    if not isinstance(raw, Mapping) or not {"check", "field", "error"} <= set(raw):
        raise SchemaError("schema-invalid", file=where, reason="a rule needs check, field, error")
    rule = Rule(
        check=str(raw["check"]),
        field=str(raw["field"]),
        error=str(raw["error"]),
        args=tuple(
            (str(k), str(v)) for k, v in raw.items() if k not in {"check", "field", "error"}
        ),
    )
    if rule.check not in RULE_CHECKS:
        raise SchemaError("schema-invalid", file=where, reason=f"rule check {rule.check} unknown")
    unknown = [f for f in rule.reads if f not in names]
    if unknown:
        raise SchemaError("schema-invalid", file=where, reason=f"rule reads unknown {unknown}")
    return rule
