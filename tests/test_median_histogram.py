"""Medians read off a histogram of whole months per cell equal DuckDB's quantile_cont over the
raw records, in every cell and margin, with list dimensions unnested (issue 19: publish of 10M)."""

from __future__ import annotations

import random

import duckdb
import polars as pl
import pytest

from casepool.catalogue.tabulating import _medians, _run_groupings


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(
    ("dims", "multi"),
    [((), ()), (("sex",), ()), (("region", "sex"), ()), (("sex", "kind"), ("kind",))],
)
def test_histogram_medians_equal_quantile_cont_over_the_records(seed, dims, multi):
    rng = random.Random(seed)
    rows = 1 + rng.randrange(400)
    frame = pl.DataFrame(
        {
            "region": [rng.choice(["KRI", "federal", "_U"]) for _ in range(rows)],
            "sex": [rng.choice(["F", "M", "U"]) for _ in range(rows)],
            "kind": [rng.sample(["a", "b", "c"], rng.randrange(4)) for _ in range(rows)],
            # Whole months, some negative, few distinct values: ties and even counts abound.
            "months": [rng.choice([-2, 0, 0, 1, 3, 7, 12, 40, 2**40]) for _ in range(rows)],
        }
    )
    con = duckdb.connect()
    con.register("records", frame.to_arrow())
    base = "SELECT " + "".join(f"{d}, " for d in dims) + "months FROM records"
    raw = _run_groupings(con, base, list(dims), list(multi), with_org=False, median=True)
    read = _medians(con, base, list(dims), list(multi))
    expected = raw.select(*dims, pl.col("median").cast(pl.Float64))
    assert read.height == expected.height
    if dims:
        joined = expected.join(read, on=list(dims), how="full", suffix="_h")
        assert joined.get_column("median").to_list() == joined.get_column("median_h").to_list()
    else:
        assert read.get_column("median").to_list() == expected.get_column("median").to_list()
