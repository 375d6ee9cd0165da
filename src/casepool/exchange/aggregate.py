"""The aggregate-only package: counts instead of records (`submit --aggregate`).

Its zip holds aggregate.parquet instead of cases.parquet, with the same manifest.json (with
`kind: aggregate`) and manifest.sig, signed and verified like a record package. Each row of
aggregate.parquet is one cell of one *spec* (an indicator and the dimensions of the publication's
tables, the period aside) for one registration date the package profile keeps:

| column | type | meaning |
|---|---|---|
| spec | text | `indicator:dim1,dim2` (dimensions sorted; empty after the colon for none) |
| registered | date | the registration date as the profile keeps it (first day of the quarter) |
| cell | text | the codes of the spec's dimensions in order, `|`-separated; `_T` a margin |
| months | integer or null | for a median: a whole number of months (a histogram bin); else null |
| den | integer ≥ 1 | records counted in the cell (of the bin) |
| num | integer in 0..den | of those, records in a percentage's numerator (= den otherwise) |

No pseudonym, no record and no record key is sent; casepool.catalogue.aggregating says how the
steward's tabulations add these rows, docs/methodology-deidentification.md what they reveal.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import polars as pl

from casepool.core.errors import PackageError
from casepool.core.periods import Period

KIND = "aggregate"
"""`kind` in the manifest of an aggregate package (a record package has none, or `records`)."""

RECORDS = "records"

AGGREGATE = "aggregate.parquet"

CELL_SEPARATOR = "|"

COLUMNS: dict[str, pl.DataType] = {
    "spec": pl.String(),
    "registered": pl.Date(),
    "cell": pl.String(),
    "months": pl.Int64(),
    "den": pl.Int64(),
    "num": pl.Int64(),
}

MAX_MONTHS = 12 * 18  # a child's whole life: a larger gap is not a record of a child

_NAME = r"[a-z_][a-z0-9_]*"
_SPEC = re.compile(rf"^{_NAME}:({_NAME}(,{_NAME})*)?$")
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def kind_of(manifest: dict[str, Any]) -> str:
    """`aggregate` or `records`: what a (signed) manifest says the package holds."""
    return KIND if manifest.get("kind") == KIND else RECORDS


def empty_aggregate() -> pl.DataFrame:
    return pl.DataFrame(schema=COLUMNS)


def aggregate_bytes(rows: pl.DataFrame) -> bytes:
    """aggregate.parquet of `rows` (the COLUMNS, in order)."""
    buffer = io.BytesIO()
    rows.select(list(COLUMNS)).cast(COLUMNS).write_parquet(  # type: ignore[arg-type]
        buffer, compression="zstd", statistics=True
    )
    return buffer.getvalue()


def aggregate_manifest(rows: pl.DataFrame, records: int) -> dict[str, Any]:
    """The manifest entries of an aggregate package (added to the record manifest's)."""
    specs = sorted(set(rows.get_column("spec").to_list())) if rows.height else []
    return {
        "kind": KIND,
        "aggregate": {
            "level": "publication specs by registration date, every margin; medians by month",
            "specs": specs,
            "rows": rows.height,
            "records_counted": records,
        },
        "columns": [{"name": n, "type": str(t)} for n, t in COLUMNS.items()],
    }


def _bad(path: Path, reason: str) -> PackageError:
    return PackageError("package-bad-data", package=path.name, reason=reason)


def read_aggregate(
    data: bytes, manifest: dict[str, Any], period: Period, path: Path
) -> pl.DataFrame:
    """The rows of aggregate.parquet, checked against the layout, the manifest and the period."""
    try:
        rows = pl.read_parquet(io.BytesIO(data))
    except Exception:  # any decoding failure of a signed but broken file is a refusal
        raise _bad(path, "aggregate.parquet cannot be read") from None
    if [(n, t) for n, t in rows.schema.items()] != list(COLUMNS.items()):
        raise _bad(path, "columns differ from the aggregate layout")
    declared = manifest.get("aggregate")
    if not isinstance(declared, dict) or declared.get("rows") != rows.height:
        raise _bad(path, "row count differs from the manifest")
    if rows.height == 0:
        return rows
    facts = rows.select(
        pl.col("spec").str.contains(_SPEC.pattern).fill_null(False).all().alias("spec"),
        pl.col("registered").null_count().alias("no_date"),
        pl.col("registered").min().alias("first"),
        pl.col("registered").max().alias("last"),
        pl.col("cell").null_count().alias("no_cell"),
        ((pl.col("den") >= 1) & (pl.col("num") >= 0) & (pl.col("num") <= pl.col("den")))
        .fill_null(False)
        .all()
        .alias("counts"),
        pl.col("months").is_between(0, MAX_MONTHS).fill_null(True).all().alias("months"),
        pl.struct("spec", "registered", "cell", "months").is_duplicated().any().alias("twice"),
    ).row(0, named=True)
    if not facts["spec"] or facts["no_cell"]:
        raise _bad(path, "specs or cells malformed")
    if not facts["counts"] or not facts["months"]:
        raise _bad(path, "counts out of range")
    if facts["twice"]:
        raise _bad(path, "a cell repeated")
    if facts["no_date"] or not (period.start <= facts["first"] <= facts["last"] <= period.end):
        raise _bad(path, "registrations outside the period")
    # Every cell has one code per dimension of its spec, each a plain code.
    shapes = rows.select(
        pl.col("spec").str.split(":").list.get(1).str.split(",").list.len().alias("dims"),
        (pl.col("spec").str.ends_with(":")).alias("none"),
        pl.col("cell").str.split(CELL_SEPARATOR).alias("codes"),
    )
    wrong = shapes.filter(
        pl.when(pl.col("none"))
        .then(pl.col("codes").list.len() != 1)
        .otherwise(pl.col("codes").list.len() != pl.col("dims"))
    )
    if wrong.height:
        raise _bad(path, "cells do not match their specs")
    codes = shapes.filter(~pl.col("none")).get_column("codes").explode().unique().to_list()
    if any(not _CODE.match(str(c)) for c in codes):
        raise _bad(path, "cells hold malformed codes")
    if shapes.filter(pl.col("none")).get_column("codes").explode().ne("").any():
        raise _bad(path, "cells do not match their specs")
    return rows
