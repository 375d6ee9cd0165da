"""The package profile: the column layout of cases.parquet, and what each field keeps (and how finely).

The layout (`package_fields`) is fixed by the case record; the profile (schemas/package_profile.yaml)
says which of those columns are sent, at which precision, and the k every package must reach.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import polars as pl

from casepool.core.errors import SchemaError
from casepool.core.schema import CaseSchema, Field, load_codelists, load_schema, read_yaml

ROW = "_row"


PSEUDONYM = "pseudonym"


AGE_BAND = "age_band"


# Age bands as UNICEF's SDMX age codes, cut by the bounds in schemas/codelists/age_band.yaml.
AgeBands = tuple[tuple[int, int, str], ...]

# Wider bands that packages of format 1 generalised with the former --min-k ladder may carry; the
# warehouse still accepts them (tables count them under `_U` and the total).
OLDER_WIDER_BANDS = ("Y0T9", "Y10T17", "Y0T17")


@cache
def standard_bands() -> AgeBands:
    """(min age, max age, code) of each band with bounds in the age_band code list, in order."""
    bands = [
        (int(c.attributes["min_age"]), int(c.attributes["max_age"]), c.code)
        for c in load_codelists()["age_band"].codes
        if "min_age" in c.attributes and "max_age" in c.attributes
    ]
    ages = [age for low, high, _ in bands for age in range(low, high + 1)]
    if not bands or sorted(ages) != list(range(min(ages), max(ages) + 1)):
        raise SchemaError(
            "schema-invalid",
            file="codelists/age_band.yaml",
            reason="age bands overlap or leave gaps",
        )
    return tuple(bands)


def age_band_codes() -> tuple[str, ...]:
    """Every age band a package may carry: today's bands, and wider ones of older packages."""
    return (*(code for _, _, code in standard_bands()), *OLDER_WIDER_BANDS)


def package_fields(schema: CaseSchema) -> list[tuple[str, pl.DataType]]:
    """The columns of cases.parquet in order, with their types: the package's fixed layout."""
    columns: list[tuple[str, pl.DataType]] = [(PSEUDONYM, pl.String())]
    for f in schema.submitted_fields:
        if f.type == "identifier":
            continue
        columns.append(package_column(f))
    return columns


def package_column_names(schema: CaseSchema) -> list[tuple[str, str]]:
    """Each submitted field's name and the name of its package column (age -> age_band)."""
    return [
        (f.name, package_column(f)[0]) for f in schema.submitted_fields if f.type != "identifier"
    ]


def package_column(f: Field) -> tuple[str, pl.DataType]:
    if f.name == "survivor_age":
        return AGE_BAND, pl.String()
    types: dict[str, pl.DataType] = {
        "code": pl.String(),
        "codes": pl.List(pl.String()),
        "integer": pl.Int64(),
        "date": pl.Date(),
        "month": pl.Date(),
    }
    return f.name, types[f.type]


PROFILE_FILE = "package_profile.yaml"


KEEP, OMIT, AGE_BAND_PRECISION, QUARTER, MONTHS_BEFORE = (
    "keep",
    "omit",
    "age_band",
    "quarter",
    "months_before_registration",
)


_PRECISIONS: dict[str, set[str]] = {  # which precisions suit which field types
    KEEP: {"code", "codes", "date", "month"},
    OMIT: {"code", "codes", "integer", "date", "month"},
    AGE_BAND_PRECISION: {"integer"},
    QUARTER: {"date", "month"},
    MONTHS_BEFORE: {"date", "month"},
}


@dataclass(frozen=True)
class PackageProfile:
    """Which fields a package keeps and how finely, and the k its records must reach."""

    name: str
    version: int
    k: int
    risk_threshold: float
    precisions: dict[str, str]  # every submitted non-identifier field
    organisation_k: dict[str, int] = field(default_factory=dict)

    def precision(self, name: str) -> str:
        return self.precisions.get(name, KEEP)

    def kept(self, name: str) -> bool:
        return self.precision(name) != OMIT

    def k_for(self, org: str) -> int:
        return self.organisation_k.get(org, self.k)

    @property
    def omitted(self) -> tuple[str, ...]:
        return tuple(n for n, p in self.precisions.items() if p == OMIT)

    def to_dict(self) -> dict[str, Any]:
        """What the manifest states: the profile's name and version and every field's precision."""
        return {"name": self.name, "version": self.version, "fields": dict(self.precisions)}


def _invalid(reason: str) -> SchemaError:
    return SchemaError("schema-invalid", file=PROFILE_FILE, reason=reason)


def parse_profile(raw: Any, schema: CaseSchema) -> PackageProfile:
    """A profile from its YAML mapping, checked against the case record."""
    if not isinstance(raw, dict) or not isinstance(raw.get("fields"), dict):
        raise _invalid("a profile needs a mapping of fields")
    declared = {str(k): str(v) for k, v in raw["fields"].items()}
    precisions: dict[str, str] = {}
    for f in schema.submitted_fields:
        if f.type == "identifier":
            continue
        precision = declared.pop(f.name, AGE_BAND_PRECISION if f.name == "survivor_age" else KEEP)
        if f.type not in _PRECISIONS.get(precision, set()):
            raise _invalid(f"{f.name}: precision {precision!r} does not suit a {f.type} field")
        if precision == OMIT and f.required:
            raise _invalid(f"{f.name}: a required field cannot be omitted")
        precisions[f.name] = precision
    if declared:
        raise _invalid(f"unknown fields {sorted(declared)}")
    if precisions.get("survivor_age") != AGE_BAND_PRECISION:
        raise _invalid("survivor_age is sent as its age band")
    try:
        k = int(raw.get("k", 3))
        threshold = float(raw.get("risk_threshold", 0.2))
        orgs = {str(o): int(v["k"]) for o, v in (raw.get("organisations") or {}).items()}
    except (TypeError, ValueError, KeyError):
        raise _invalid("k, risk_threshold and organisations' k must be numbers") from None
    if k < 1 or any(v < 1 for v in orgs.values()) or not 0 < threshold <= 1:
        raise _invalid("k must be at least 1 and risk_threshold in (0, 1]")
    return PackageProfile(
        name=str(raw.get("name", "default")),
        version=int(raw.get("version", 1)),
        k=k,
        risk_threshold=threshold,
        precisions=precisions,
        organisation_k=orgs,
    )


@cache
def load_profile() -> PackageProfile:
    """schemas/package_profile.yaml, checked against the case record."""
    return parse_profile(read_yaml(PROFILE_FILE), load_schema())
