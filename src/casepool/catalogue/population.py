"""The reference child population: read a COD-PS file, keep it in the warehouse, sum it per cell.

Rates per 100,000 children divide a protected count by the number of children aged 0–17 living in
the same governorate, sex and age band. The population arrives in the layout of OCHA's common
operational dataset on subnational population statistics (COD-PS): one row per governorate with
its P-code in `ADM1_PCODE` (IQG01–IQG18) and one column per sex and age band, `F_00_04`,
`M_10_14`, ... The child bands must match the case record's age bands (0–4, 5–9, 10–14, 15–17):
a file with only a 15–19 band is refused rather than guessed from. An HXL hashtag row under the
header (as HDX files carry) is skipped.

The population is public data, not case data: it is stored in the warehouse beside the cases
(`child_population`, `child_population_info`, created on first load) with its source, reference
year and checksum, and every rate says which population it used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from casepool.catalogue.indicators import load_indicators
from casepool.core.errors import UsageError
from casepool.core.reading import ROW, read_export
from casepool.core.schema import load_codelists

SEXES = ("F", "M")
# COD-PS column suffix -> the case record's age band code.
AGE_COLUMNS = {"00_04": "Y0T4", "05_09": "Y5T9", "10_14": "Y10T14", "15_17": "Y15T17"}
PCODE_COLUMNS = ("ADM1_PCODE", "admin1Pcode", "adm1_pcode", "ADM1_PCODE_")

_DDL = (
    """CREATE TABLE IF NOT EXISTS child_population (
  governorate VARCHAR NOT NULL, sex VARCHAR NOT NULL, age_band VARCHAR NOT NULL,
  population BIGINT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS child_population_info (key VARCHAR PRIMARY KEY, value VARCHAR)",
)


POPULATION_COLUMNS = ("governorate", "sex", "age_band")  # the reference population's breakdown


@dataclass(frozen=True)
class Population:
    """Children by governorate, sex (F, M) and age band, with where the figures come from."""

    frame: pl.DataFrame  # governorate, sex, age_band, population (Int64)
    source: str
    year: int
    sha256: str = ""
    synthetic: bool = False

    @property
    def total(self) -> int:
        return int(self.frame.get_column("population").sum())

    def citation(self) -> str:
        label = "SYNTHETIC reference population" if self.synthetic else "Reference population"
        return f"{label}: {self.source}, {self.year}"

    def children(self, cell: Mapping[str, str], regions: Mapping[str, str]) -> int | None:
        """The children of one table cell (`_T` for a margin); None when the population does not
        have that category (sex U, an age band not available at that detail)."""
        frame = self.frame
        for dimension, code in cell.items():
            if code == "_T" or dimension == "period":
                continue  # one reference year serves every period
            if dimension == "region":
                inside = [g for g, r in regions.items() if r == code]
                frame = frame.filter(pl.col("governorate").is_in(inside))
            elif dimension in POPULATION_COLUMNS:
                known = self.frame.get_column(dimension).unique().to_list()
                if code not in known:
                    return None
                frame = frame.filter(pl.col(dimension) == code)
            elif (finer := _group_of(dimension)) is not None:
                # A derived group (an age group): the children of the categories it holds.
                source, group_of = finer
                inside = [f for f, g in group_of.items() if g == code]
                listed = set(self.frame.get_column(source).unique().to_list())
                if not inside or not set(inside) <= listed:
                    return None  # not stated, or a category the population does not have
                frame = frame.filter(pl.col(source).is_in(inside))
            else:
                return None
        return int(frame.get_column("population").sum()) if frame.height else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "year": self.year,
            "sha256": self.sha256,
            "synthetic": self.synthetic,
            "children": self.total,
            "governorates": self.frame.get_column("governorate").n_unique(),
        }


def _group_of(dimension: str) -> tuple[str, dict[str, str]] | None:
    """(the population column a `derived: group` dimension groups, its code → group code) when
    that column is one of the population's (age_band); None otherwise."""
    found = load_indicators().dimensions.get(dimension)
    if found is None or found.derived != "group" or found.source not in POPULATION_COLUMNS:
        return None
    return str(found.source), dict(found.group_of)


@dataclass
class PopulationLoad:
    """What `casepool population load` found in a file: the population, or why it was refused."""

    path: Path
    population: Population | None
    problems: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.population is not None and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.path.name,
            "ok": self.ok,
            "population": self.population.to_dict() if self.population else None,
            "problems": self.problems,
        }


def _problem(kind: str, **detail: Any) -> dict[str, str]:
    return {"type": kind, **{k: str(v) for k, v in detail.items()}}


def _number(text: Any) -> int | None:
    cleaned = str(text or "").strip().replace(",", "").replace(" ", "")
    if not cleaned:
        return None
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return int(value) if value >= 0 and value.is_integer() else None


def read_population_file(
    path: str | Path, *, source: str, year: int, synthetic: bool | None = None
) -> PopulationLoad:
    """Read a COD-PS file of children by governorate, sex and age band (CSV or XLSX).

    Problems (a missing P-code column or band, an unknown or repeated governorate, a count that
    is not a whole number) are reported, never guessed around; `synthetic` defaults to whether
    the file's name or the source says so."""
    path = Path(path)
    export = read_export(path)
    frame = export.frame
    if not source.strip():
        raise UsageError("population-needs-source")
    if not 1990 <= int(year) <= 2100:
        raise UsageError("population-year-invalid", year=str(year)[:8])
    problems: list[dict[str, str]] = []
    pcode = next((c for c in PCODE_COLUMNS if c in frame.columns), None)
    if pcode is None:
        return PopulationLoad(path, None, [_problem("population-no-pcode")])
    needed = [f"{s}_{band}" for s in SEXES for band in AGE_COLUMNS]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        return PopulationLoad(
            path, None, [_problem("population-missing-bands", columns=", ".join(missing))]
        )
    governorates = set(load_codelists()["governorate"].values)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for record in frame.iter_rows(named=True):
        code = str(record[pcode] or "").strip().upper()
        if not code or code.startswith("#"):
            continue  # an HXL hashtag row or an empty line
        if code not in governorates:
            problems.append(_problem("population-unknown-governorate", row=record[ROW]))
            continue
        if code in seen:
            problems.append(_problem("population-repeated-governorate", row=record[ROW]))
            continue
        seen.add(code)
        for sex in SEXES:
            for suffix, band in AGE_COLUMNS.items():
                column = f"{sex}_{suffix}"
                value = _number(record[column])
                if value is None:
                    problems.append(
                        _problem("population-not-a-count", row=record[ROW], column=column)
                    )
                    continue
                rows.append(
                    {"governorate": code, "sex": sex, "age_band": band, "population": value}
                )
    absent = sorted(governorates - seen)
    if absent and not problems:
        problems.append(_problem("population-governorates-missing", governorates=", ".join(absent)))
    if problems:
        return PopulationLoad(path, None, problems)
    table = pl.DataFrame(
        rows,
        schema={
            "governorate": pl.String,
            "sex": pl.String,
            "age_band": pl.String,
            "population": pl.Int64,
        },
    )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    is_synthetic = (
        synthetic
        if synthetic is not None
        else ("synthetic" in path.name.lower() or "synthetic" in source.lower())
    )
    return PopulationLoad(
        path, Population(table, source.strip(), int(year), digest, bool(is_synthetic))
    )


def store_population(con: duckdb.DuckDBPyConnection, population: Population) -> None:
    """Replace the warehouse's reference population with `population` (one transaction)."""
    for statement in _DDL:
        con.execute(statement)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM child_population")
        con.execute("DELETE FROM child_population_info")
        con.register("population_rows", population.frame)
        con.execute("INSERT INTO child_population SELECT * FROM population_rows")
        con.unregister("population_rows")
        info = {
            "source": population.source,
            "year": str(population.year),
            "sha256": population.sha256,
            "synthetic": "yes" if population.synthetic else "no",
            "loaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        con.executemany("INSERT INTO child_population_info VALUES (?, ?)", list(info.items()))
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def read_population(con: duckdb.DuckDBPyConnection) -> Population | None:
    """The warehouse's reference population, or None when none was loaded (also in a warehouse
    made before populations existed, opened read-only)."""
    names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "child_population" not in names or "child_population_info" not in names:
        return None
    frame = con.sql(
        "SELECT governorate, sex, age_band, CAST(population AS BIGINT) AS population "
        "FROM child_population ORDER BY governorate, sex, age_band"
    ).pl()
    info = dict(con.execute("SELECT key, value FROM child_population_info").fetchall())
    if frame.height == 0 or "year" not in info:
        return None
    return Population(
        frame,
        str(info.get("source", "")),
        int(info["year"]),
        str(info.get("sha256", "")),
        info.get("synthetic") == "yes",
    )


def load_population(
    con: duckdb.DuckDBPyConnection,
    path: str | Path,
    *,
    source: str,
    year: int,
    synthetic: bool | None = None,
) -> PopulationLoad:
    """Read a COD-PS file and, when it has no problem, make it the warehouse's population."""
    loaded = read_population_file(path, source=source, year=year, synthetic=synthetic)
    if loaded.ok and loaded.population is not None:
        store_population(con, loaded.population)
    return loaded


def rate_cells(
    cells: Iterable[Mapping[str, str]], population: Population, regions: Mapping[str, str]
) -> list[int | None]:
    """The children of each cell, in order (None where the population has no such category)."""
    return [population.children(cell, regions) for cell in cells]


SYNTHETIC_FILE = "reference/synthetic_child_population_2025.csv"
SYNTHETIC_SOURCE = "made-up figures shipped with casepool for its demo (not real data)"


def synthetic_population_path() -> Path:
    """The synthetic child population shipped with casepool (see schemas/reference/README.md)."""
    from casepool.core.resources import schemas_dir

    return schemas_dir() / SYNTHETIC_FILE


def load_synthetic_population(con: duckdb.DuckDBPyConnection) -> PopulationLoad:
    """Load the shipped SYNTHETIC population (for `casepool demo` and tests), labelled so."""
    return load_population(
        con, synthetic_population_path(), source=SYNTHETIC_SOURCE, year=2025, synthetic=True
    )
