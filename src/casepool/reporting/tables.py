"""The protected publication tables the report is drawn from (tidy: one row per cell)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casepool.core.errors import UsageError
from casepool.core.vocabulary import STATUS_COLUMNS, TOTAL

# Columns a tidy table may carry besides its dimensions; they are never read as dimensions.
_NOT_DIMENSIONS = frozenset(
    {
        "indicator",
        *STATUS_COLUMNS,
        "unit",
        "table",
        "unit_mult",
        "numerator",
        "denominator",
        "margin",
    }
)


@dataclass(frozen=True)
class Cell:
    """One published cell: its codes, its value (None when suppressed) and its flags."""

    codes: tuple[tuple[str, str], ...]
    value: float | None
    obs_status: str = "A"
    conf_status: str = "F"
    margin: float | None = None  # margin of error of a differentially private estimate

    @property
    def suppressed(self) -> bool:
        return self.value is None or self.obs_status == "Q" or self.conf_status in {"C", "D"}

    def code(self, dimension: str) -> str:
        return dict(self.codes).get(dimension, TOTAL)


@dataclass
class TableView:
    """The report's read-only view of one published table: its cells by their codes.

    Made from a `casepool.publishing.formats.PublishedTable` (the one table class of a release)
    or read back from a publication folder; the report never sees anything else."""

    name: str
    indicator: str
    dimensions: tuple[str, ...]
    cells: list[Cell]
    population: str | None = None  # for a rate: the reference population it divides by
    coarsened: tuple[str, ...] = ()  # how global recoding coarsened it (publishing/recoding.py)
    _index: dict[tuple[str, ...], Cell] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {tuple(c.code(d) for d in self.dimensions): c for c in self.cells}

    def get(self, **codes: str) -> Cell | None:
        """The cell for `codes` (a dimension left out means its total `_T`)."""
        return self._index.get(tuple(codes.get(d, TOTAL) for d in self.dimensions))

    def codes(self, dimension: str) -> list[str]:
        """The categories of `dimension` present in the table, without the total, in order."""
        seen: dict[str, None] = {}
        for cell in self.cells:
            code = cell.code(dimension)
            if code != TOTAL:
                seen.setdefault(code, None)
        return list(seen)


def _value(raw: Any) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, int | float):
        return None if isinstance(raw, float) and math.isnan(raw) else float(raw)
    text = str(raw).strip().lstrip("'")  # a formula-safe CSV may prefix text with '
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return None if math.isnan(number) else number


def catalogue_dimensions() -> dict[str, tuple[str, ...]]:
    """Dimensions of each table in schemas/publication.yaml, by table name."""
    from casepool.catalogue.publication import load_publication

    return {r.table_name: tuple(r.dimensions) for r in load_publication()}


def table_from_rows(
    name: str, rows: Iterable[Mapping[str, Any]], dimensions: Iterable[str] | None = None
) -> TableView:
    """A table from tidy rows (dicts with indicator, dimensions, value, obs_status, conf_status)."""
    rows = list(rows)
    columns = list(rows[0]) if rows else []
    if dimensions is None or (columns and not set(dimensions) <= set(columns)):
        dimensions = tuple(
            c for c in columns if c not in _NOT_DIMENSIONS and not c.endswith("_label")
        )
    dims = tuple(dimensions)
    cells = []
    indicator = ""
    for row in rows:
        indicator = indicator or str(row.get("indicator") or "")
        codes = tuple((d, str(row.get(d) if row.get(d) not in (None, "") else TOTAL)) for d in dims)
        cells.append(
            Cell(
                codes=codes,
                value=_value(row.get("value")),
                obs_status=str(row.get("obs_status") or "A").strip(),
                conf_status=str(row.get("conf_status") or "F").strip(),
                margin=_value(row.get("margin")),
            )
        )
    return TableView(name=name, indicator=indicator, dimensions=dims, cells=cells)


def _json_rows(payload: Any) -> list[Mapping[str, Any]]:
    """Rows from a JSON table: a list of rows, or an object holding them under a common key."""
    if isinstance(payload, list):
        return [r for r in payload if isinstance(r, Mapping)]
    if isinstance(payload, Mapping):
        for key in ("rows", "cells", "data", "records"):
            if isinstance(payload.get(key), list):
                return _json_rows(payload[key])
    return []


def read_publication(folder: str | Path) -> dict[str, TableView]:
    """Every table in a publication folder, from its JSON files (or tidy CSV when no JSON)."""
    root = Path(folder)
    if not root.is_dir():
        raise UsageError("report-no-publication", path=str(root))
    wanted = catalogue_dimensions()
    tables: dict[str, TableView] = {}
    for path in sorted(root.rglob("*.json")):
        payload = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(payload, Mapping) or "rows" not in payload:
            continue  # the manifest, or another file beside the tables
        name = str(payload.get("table") or path.stem)
        dims = [str(d["name"]) for d in payload.get("dimensions") or () if isinstance(d, Mapping)]
        tables[name] = table_from_rows(name, _json_rows(payload), dims or wanted.get(name))
        tables[name].population = payload.get("population") or None
        tables[name].coarsened = tuple(str(c) for c in payload.get("coarsened") or ())
    for path in sorted(root.rglob("*.csv")):
        name = path.stem
        if name in tables or name not in wanted:
            continue
        with path.open(encoding="utf-8-sig", newline="") as handle:
            first = handle.readline()
            handle.seek(0)
            if not first.startswith(("indicator", '"indicator')):
                continue  # HXL or SDMX flavours of the same table
            tables[name] = table_from_rows(name, csv.DictReader(handle), wanted[name])
    if not tables:
        raise UsageError("report-no-publication", path=str(root))
    return tables
