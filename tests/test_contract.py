"""The run-time contract check (plain polars) gives pandera's verdict on the case record.

`records_schema()` (pandera) is the contract of the canonical records; validate checks it with
`contract_failures`, the same checks in polars, to spare every command pandera's import. These
tests break each field in each way the contract forbids and hold both to the same verdict.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandera.errors
import polars as pl
import pytest

from casepool.core.reading import ROW
from casepool.core.schema import load_schema
from casepool.intake.validating import (
    ContractBroken,
    _check_contract,
    contract_failures,
    records_schema,
    validate_export,
)

FIXTURES = Path(__file__).parent / "fixtures"
TODAY = date(2025, 12, 31)


@pytest.fixture(scope="module")
def records() -> pl.DataFrame:
    return validate_export(FIXTURES / "validate" / "canonical_valid.csv", today=TODAY).records


def pandera_refuses(frame: pl.DataFrame) -> bool:
    try:
        records_schema().validate(frame, lazy=True)
    except (pandera.errors.SchemaErrors, pandera.errors.SchemaError):
        return True
    return False


def broken_frames(records: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    schema = load_schema()
    out: list[tuple[str, pl.DataFrame]] = [("valid", records)]
    out.append(("row duplicated", records.with_columns(pl.lit(2, dtype=pl.Int64).alias(ROW))))
    out.append(("row null", records.with_columns(pl.lit(None, dtype=pl.Int64).alias(ROW))))
    out.append(("column missing", records.drop(schema.fields[-1].name)))
    out.append(("column extra", records.with_columns(pl.lit("x").alias("extra"))))
    out.append(("columns reordered", records.select(reversed(records.columns))))
    for f in schema.fields:
        column = pl.col(f.name)
        if f.type == "code":
            out.append(
                (f"{f.name} unknown code", records.with_columns(pl.lit("nope").alias(f.name)))
            )
            out.append(
                (
                    f"{f.name} null",
                    records.with_columns(pl.lit(None, dtype=pl.String).alias(f.name)),
                )
            )
        elif f.type == "integer":
            for bad in (f.minimum - 1 if f.minimum is not None else None,
                        f.maximum + 1 if f.maximum is not None else None):  # fmt: skip
                if bad is not None:
                    out.append(
                        (
                            f"{f.name} = {bad}",
                            records.with_columns(pl.lit(bad, dtype=pl.Int64).alias(f.name)),
                        )
                    )
            out.append((f"{f.name} as text", records.with_columns(column.cast(pl.String))))
        elif f.type == "codes":
            first = schema.codelist_of(f).values[0]
            out.append(
                (
                    f"{f.name} unknown in list",
                    records.with_columns(pl.lit([first, "nope"]).alias(f.name)),
                )
            )
            out.append(
                (f"{f.name} known list", records.with_columns(pl.lit([first]).alias(f.name)))
            )
        elif f.type in {"date", "month"}:
            out.append((f"{f.name} as text", records.with_columns(column.cast(pl.String))))
    return out


def test_the_polars_check_and_pandera_agree_on_every_broken_frame(records):
    frames = broken_frames(records)
    assert len(frames) > 20
    verdicts = [
        (name, bool(contract_failures(frame)), pandera_refuses(frame)) for name, frame in frames
    ]
    assert [v for v in verdicts if v[1] != v[2]] == []
    assert any(v[1] for v in verdicts) and not verdicts[0][1]


def test_a_broken_contract_names_the_field_and_check_never_a_value(records):
    bad = records.with_columns(pl.lit(40, dtype=pl.Int64).alias("survivor_age"))
    with pytest.raises(ContractBroken) as caught:
        _check_contract(bad, load_schema())
    assert str(caught.value) == "case record contract broken: survivor_age: in_range"


def test_validate_never_imports_pandera(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from casepool.intake.validating import validate_export\n"
        f"validate_export({str(FIXTURES / 'validate' / 'one_error_each.csv')!r})\n"
        "assert 'pandera' not in sys.modules and 'pandas' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
