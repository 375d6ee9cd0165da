"""truth.json: every injected error, no-consent row, identifier and double registration placed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from casepool.synthesis.writing import Written

INLINE_IDENTIFIERS = 100_000  # rows per export above which identifiers go to a Parquet side file


@dataclass
class ExportTruth:
    """What one export holds that a validator or de-identifier must find."""

    file: str
    organisation: str
    dialect: str
    mapping: str | None
    encoding: str | None
    rows: int
    errors: list[dict[str, Any]] = field(default_factory=list)
    no_consent_rows: list[int] = field(default_factory=list)
    identifiers: dict[str, list[str]] = field(default_factory=dict)
    identifier_columns: dict[str, str] = field(default_factory=dict)
    identifiers_file: str | None = None
    notes_mentioning_identifiers: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": self.file,
            "organisation": self.organisation,
            "dialect": self.dialect,
            "mapping": self.mapping,
            "encoding": self.encoding,
            "rows": self.rows,
            "error_count": len(self.errors),
            "errors": self.errors,
            "no_consent_rows": self.no_consent_rows,
            "identifier_columns": self.identifier_columns,
            "notes_mentioning_identifiers": self.notes_mentioning_identifiers,
        }
        if self.identifiers_file:
            out["identifiers_file"] = self.identifiers_file
        else:
            out["identifiers"] = self.identifiers
        return out


def identifier_values(written: Written) -> dict[str, pl.Series]:
    """Distinct identifier values per kind, sorted (stable output for the same seed)."""
    return {
        kind: pl.concat(parts).unique().sort() for kind, parts in sorted(written.identifiers.items())
    }


def place_identifiers(truth: ExportTruth, written: Written, folder: Path, stem: str) -> None:
    """Put identifier values inline, or in `<stem>.identifiers.parquet` for big exports."""
    values = identifier_values(written)
    if truth.rows <= INLINE_IDENTIFIERS:
        truth.identifiers = {k: v.to_list() for k, v in values.items()}
        return
    name = f"{stem}.identifiers.parquet"
    frame = pl.concat(
        [pl.DataFrame({"kind": [k] * len(v), "value": v}) for k, v in values.items()]
    ) if values else pl.DataFrame({"kind": [], "value": []}, schema={"kind": pl.String, "value": pl.String})
    frame.write_parquet(folder / name, compression="zstd", statistics=False)
    truth.identifiers_file = name


def write_truth(
    path: Path,
    generator: dict[str, Any],
    exports: list[ExportTruth],
    double_registrations: list[list[dict[str, Any]]],
) -> None:
    """Write truth.json (UTF-8, stable key order, one error per line for readable diffs)."""
    document = {
        "about": (
            "Synthetic data made by casepool synth: no real person. Row numbers are as the user "
            "sees them (header row 1, first record row 2)."
        ),
        "generator": generator,
        "exports": [e.to_dict() for e in exports],
        "double_registrations": double_registrations,
    }
    text = json.dumps(document, ensure_ascii=False, indent=1)
    path.write_text(text + "\n", encoding="utf-8")
