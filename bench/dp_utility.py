"""Utility of differential privacy against suppression on the publication catalogue (not a test).

    .venv/bin/python bench/dp_utility.py demo_output/warehouse.duckdb --period 2025

Works on a copy of the warehouse (measuring spends its budget). For every catalogue table, in the
given year: the share of cells usable (suppression: published; DP: margin of error ≤ 20 % of the
value), over all cells and over cells whose true count is not zero, and the mean absolute error
of DP (suppression publishes exact values or nothing). Then the 90 % margins of a governorate's
count and of the national total, and the differencing attack of issue 13 under DP.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
from pathlib import Path

import polars as pl

from casepool.catalogue.indicators import TOTAL, TableRequest, load_indicators
from casepool.catalogue.publication import load_publication
from casepool.catalogue.tabulating import indicator_values, tabulate
from casepool.core.errors import UsageError
from casepool.protecting.dp_settings import load_dp_settings
from casepool.publishing.publish import publish
from casepool.publishing.query import query
from casepool.warehouse.store import open_warehouse


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("warehouse", type=Path)
    parser.add_argument("--period", default="2025")
    parser.add_argument(
        "--workload-share", type=float, help="instead of protection.yaml's (to compare)"
    )
    args = parser.parse_args()
    catalogue = load_indicators()
    settings = load_dp_settings()
    if args.workload_share:
        settings = dataclasses.replace(settings, workload_share=args.workload_share)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "warehouse.duckdb"
        shutil.copy(args.warehouse, copy)
        publish(copy, Path(tmp) / "pub", period=args.period)
        rows = []
        skipped: list[str] = []
        totals = {"cells": 0, "nonzero": 0, "supp": 0, "supp_nz": 0, "dp": 0, "dp_nz": 0}
        for request in load_publication(catalogue):
            indicator = catalogue.indicator(request.indicator)
            if indicator.kind == "median":
                continue
            dims = list(request.dimensions)
            asked = TableRequest(
                request.indicator,
                request.dimensions,
                (("period", (args.period,)),),
                request.period_unit,
            )
            with open_warehouse(copy, read_only=True) as con:
                tab = tabulate(con, asked, catalogue=catalogue)
            truth = indicator_values(tab).select(*dims, pl.col("value").alias("truth"))
            if indicator.kind == "percent":
                truth = truth.join(
                    indicator_values(tab).select(*dims, pl.col("numerator").alias("n_true")),
                    on=dims,
                )
            path = Path(tmp) / "pub" / "csv" / f"{request.table_name}.csv"
            if path.exists():
                published = pl.read_csv(path, schema_overrides={d: pl.String for d in dims}).select(
                    *dims, pl.col("value").cast(pl.Float64).alias("supp")
                )
            else:  # the table was withheld (its audit failed): no cell published
                published = truth.select(*dims, pl.lit(None, pl.Float64).alias("supp"))
            try:
                answer = query(
                    copy,
                    request.indicator,
                    by=request.dimensions,
                    where=[f"period={args.period}"],
                    period_unit=request.period_unit,
                    settings=settings,
                ).table.frame.select(*dims, pl.col("value").alias("dp"), "margin")
            except UsageError as exc:  # the workload does not measure this table
                skipped.append(f"{request.table_name} ({exc.key})")
                continue
            cells = truth.join(published, on=dims).join(answer, on=dims)
            nonzero = cells.filter(pl.col("truth").fill_null(0) > 0)
            usable = (pl.col("margin") <= 0.2 * pl.col("dp")) & (pl.col("dp") > 0)
            row = {
                "table": request.table_name,
                "cells": cells.height,
                "nonzero": nonzero.height,
                "supp": cells.filter(pl.col("supp").is_not_null()).height,
                "supp_nz": nonzero.filter(pl.col("supp").is_not_null()).height,
                "dp": cells.filter(usable).height,
                "dp_nz": nonzero.filter(usable).height,
                "mae": cells.select((pl.col("dp") - pl.col("truth")).abs().mean()).item(),
                "unit": indicator.unit,
            }
            for k in totals:
                totals[k] += row[k]
            rows.append(row)
        print(
            "| table | unit | cells | non-zero | suppression: published (non-zero) "
            "| DP: margin ≤ 20 % (non-zero) | DP mean abs. error |"
        )
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['table']} | {r['unit']} | {r['cells']} | {r['nonzero']} | "
                f"{r['supp']} ({r['supp_nz']}) | {r['dp']} ({r['dp_nz']}) | {r['mae']:.1f} |"
            )
        t = totals
        print(
            f"| **all** | | {t['cells']} | {t['nonzero']} | "
            f"{t['supp'] / t['cells']:.0%} ({t['supp_nz'] / t['nonzero']:.0%}) | "
            f"{t['dp'] / t['cells']:.0%} ({t['dp_nz'] / t['nonzero']:.0%}) | |"
        )
        if skipped:
            print("\nNot answered (not in the workload): " + ", ".join(skipped))
        by_gov = query(
            copy,
            "registered_cases",
            by="governorate",
            where=[f"period={args.period}"],
            settings=settings,
        ).table.frame
        cross = query(
            copy,
            "registered_cases",
            by="governorate,sex",
            where=[f"period={args.period}"],
            settings=settings,
        ).table.frame
        inner = cross.filter((pl.col("governorate") != TOTAL) & (pl.col("sex") != TOTAL))
        national = by_gov.filter(pl.col("governorate") == TOTAL).row(0, named=True)
        print(
            f"\n{args.period}: national total ≈ {national['value']} (± {national['margin']:.0f}); "
            f"a governorate ± {by_gov.get_column('margin').head(1).item():.0f}; "
            f"governorate × sex cells ± {inner.get_column('margin').median():.0f} (median); "
            f"usable governorate × sex cells: "
            f"{inner.filter((pl.col('margin') <= 0.2 * pl.col('value')) & (pl.col('value') > 0)).height}"
            f" of {inner.height}"
        )


if __name__ == "__main__":
    main()
