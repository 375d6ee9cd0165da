"""truth.json: every injected error, no-consent row, identifier and double registration placed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from casepool.synthesis.writing import Written


@dataclass
class ExportTruth:
    """What one export holds that a validator or de-identifier must find."""

    file: str
    organisation: str
    dialect: str
    mapping: str | None
    encoding: str | None
    rows: int
    errors: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(
            schema={"row": pl.Int64, "field": pl.String, "type": pl.String}
        )
    )
    no_consent_rows: list[int] = field(default_factory=list)
    identifiers: dict[str, list[str]] = field(default_factory=dict)
    identifier_columns: dict[str, str] = field(default_factory=dict)
    identifiers_file: str | None = None
    notes_mentioning_identifiers: list[int] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return self.errors.height

    def error_list(self) -> list[dict[str, Any]]:
        return self.errors.to_dicts()

    def to_dict(self) -> dict[str, Any]:
        """The export's entry in truth.json (large lists as placeholders, see write_truth)."""
        out: dict[str, Any] = {
            "file": self.file,
            "organisation": self.organisation,
            "dialect": self.dialect,
            "mapping": self.mapping,
            "encoding": self.encoding,
            "rows": self.rows,
            "error_count": self.error_count,
            "errors": self.errors,
            "no_consent_rows": self.no_consent_rows,
            "identifier_columns": self.identifier_columns,
            "notes_mentioning_identifiers": self.notes_mentioning_identifiers,
        }
        if self.identifiers_file:
            # Too many to list: every value of the identifier columns of the file is one.
            out["identifiers"] = None
            out["identifiers_in_columns_of"] = self.identifiers_file
        else:
            out["identifiers"] = self.identifiers
        return out


def identifier_values(written: Written) -> dict[str, pl.Series]:
    """Distinct identifier values per kind, sorted (stable output for the same seed)."""
    return {
        kind: pl.concat(parts).unique().sort()
        for kind, parts in sorted(written.identifiers.items())
    }


def place_identifiers(truth: ExportTruth, written: Written) -> None:
    """List identifier values inline; a big export's are simply its identifier columns."""
    if written.collect:
        truth.identifiers = {k: v.to_list() for k, v in identifier_values(written).items()}
    else:
        truth.identifiers_file = truth.file  # the columns named in identifier_columns


def write_truth(
    path: Path,
    generator: dict[str, Any],
    exports: list[ExportTruth],
    double_registrations: list[list[dict[str, Any]]],
) -> None:
    """Write truth.json (UTF-8, stable key order, one error per line for readable diffs)."""
    # Large lists are written by fast paths and put in place of placeholders: json's indenting
    # encoder runs in pure Python and would take seconds for a million errors.
    large: dict[str, str] = {}

    def placeholder(text: str) -> str:
        key = f"@@large{len(large)}@@"
        large[f'"{key}"'] = text
        return key

    entries = []
    for export in exports:
        entry = export.to_dict()
        entry["errors"] = placeholder(_errors_json(export.errors))
        for key in ("no_consent_rows", "notes_mentioning_identifiers"):
            entry[key] = placeholder(json.dumps(entry[key]))
        entries.append(entry)
    document = {
        "about": (
            "Synthetic data made by casepool synth: no real person. Row numbers are as the user "
            "sees them (header row 1, first record row 2)."
        ),
        "generator": generator,
        "exports": entries,
        "double_registrations": placeholder(json.dumps(double_registrations, ensure_ascii=False)),
    }
    text = json.dumps(document, ensure_ascii=False, indent=1)
    for key, value in large.items():
        text = text.replace(key, value, 1)
    path.write_text(text + "\n", encoding="utf-8")


def _errors_json(errors: pl.DataFrame) -> str:
    """One error object per line; fields and types are plain names, safe without escaping."""
    if errors.height == 0:
        return "[]"
    lines = errors.select(
        pl.concat_str(
            pl.lit('{"row": '),
            pl.col("row").cast(pl.String),
            pl.lit(', "field": "'),
            pl.col("field"),
            pl.lit('", "type": "'),
            pl.col("type"),
            pl.lit('"}'),
        )
    ).to_series()
    return "[\n   " + ",\n   ".join(lines.to_list()) + "\n  ]"
