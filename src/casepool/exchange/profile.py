"""Turn validated records into the de-identified rows of a package, and judge their disclosure risk.

Kept: schema fields only (the allowlist). Transformed: case_id -> HMAC-SHA256 pseudonym under the
organisation's secret key; age -> age band; dates -> months. Dropped and counted: invalid rows
(with --drop-invalid), rows without consent, rows registered outside the period.
"""

from __future__ import annotations

import polars as pl

from casepool.core.schema import CaseSchema, Field

ROW = "_row"


PSEUDONYM = "pseudonym"


AGE_BAND = "age_band"


# Age bands as UNICEF's SDMX age codes; each step of the ladder is coarser than the one before.
AgeBands = tuple[tuple[int, int, str], ...]


STANDARD_BANDS: AgeBands = ((0, 4, "Y0T4"), (5, 9, "Y5T9"), (10, 14, "Y10T14"), (15, 17, "Y15T17"))


WIDE_BANDS: AgeBands = ((0, 9, "Y0T9"), (10, 17, "Y10T17"))


ALL_AGES: AgeBands = ((0, 17, "Y0T17"),)


AGE_BAND_CODES = tuple(
    dict.fromkeys(c for bands in (STANDARD_BANDS, WIDE_BANDS, ALL_AGES) for _, _, c in bands)
)


def package_fields(schema: CaseSchema) -> list[tuple[str, pl.DataType]]:
    """The columns of cases.parquet in order, with their types: the package's fixed layout."""
    columns: list[tuple[str, pl.DataType]] = [(PSEUDONYM, pl.String())]
    for f in schema.submitted_fields:
        if f.type == "identifier":
            continue
        columns.append(package_column(f))
    return columns


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
