"""Utility of differential privacy against suppression on the publication catalogue (not a test).

    .venv/bin/python bench/dp_utility.py demo_output/warehouse.duckdb --period 2025 --before

Works on a copy of the warehouse (measuring spends its budget). For every catalogue table, in the
given year: the share of cells usable (suppression: published; DP: margin of error ≤ 20 % of the
value), over all cells and over cells whose true count is not zero, and the mean absolute error
of DP (suppression publishes exact values or nothing). Then the 90 % margins of a governorate's
count and of the national total, and of governorate × sex cells. DP *now* is protection.yaml as
it is, with the year measured directly (as the steward does with `casepool budget --measure
2025`; `--no-year` leaves it out); `--before` adds the previous design beside it: workload share
0.6 and the year answered as the sum of its quarters.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

from casepool.catalogue.indicators import TOTAL, TableRequest, load_indicators
from casepool.catalogue.publication import load_publication
from casepool.catalogue.tabulating import indicator_values, tabulate
from casepool.core.errors import UsageError
from casepool.protecting.dp_settings import DPSettings, load_dp_settings
from casepool.publishing.dp_answers import budget_report
from casepool.publishing.publish import publish
from casepool.publishing.query import query
from casepool.warehouse.store import open_warehouse


def dp_side(
    copy: Path, period: str, settings: DPSettings, measure_year: bool, catalogue: Any
) -> tuple[dict[str, pl.DataFrame], list[str], str]:
    """Every catalogue table answered with DP on `copy`: its cells (dp value and margin), the
    tables not answered, and the summary line of margins. With `measure_year` the steward first
    measures the year directly (`casepool budget --measure YEAR`)."""
    if measure_year:
        budget_report(copy, measure=[period], settings=settings, actor="bench")
    answers: dict[str, pl.DataFrame] = {}
    skipped: list[str] = []
    for request in load_publication(catalogue):
        if catalogue.indicator(request.indicator).kind == "median":
            continue
        try:
            answers[request.table_name] = query(
                copy,
                request.indicator,
                by=request.dimensions,
                where=[f"period={period}"],
                period_unit=request.period_unit,
                settings=settings,
            ).table.frame
            extra = ["denominator"] if catalogue.indicator(request.indicator).unit == "rate" else []
            answers[request.table_name] = answers[request.table_name].select(
                *request.dimensions, pl.col("value").alias("dp"), "margin", *extra
            )
        except UsageError as exc:  # the workload does not measure this table
            skipped.append(f"{request.table_name} ({exc.key})")
    by_gov = query(
        copy, "registered_cases", by="governorate", where=[f"period={period}"], settings=settings
    ).table.frame
    cross = query(
        copy,
        "registered_cases",
        by="governorate,sex",
        where=[f"period={period}"],
        settings=settings,
    ).table.frame
    inner = cross.filter((pl.col("governorate") != TOTAL) & (pl.col("sex") != TOTAL))
    national = by_gov.filter(pl.col("governorate") == TOTAL).row(0, named=True)
    usable = (pl.col("margin") <= 0.2 * pl.col("value")) & (pl.col("value") > 0)
    summary = (
        f"national total ≈ {national['value']} (± {national['margin']:.0f}); "
        f"a governorate ± {by_gov.get_column('margin').head(1).item():.0f}; "
        f"governorate × sex cells ± {inner.get_column('margin').median():.0f} (median); "
        f"usable governorate × sex cells: {inner.filter(usable).height} of {inner.height} inner "
        f"({cross.filter(usable).height} of {cross.height} with margins)"
    )
    return answers, skipped, summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("warehouse", type=Path)
    parser.add_argument("--period", default="2025")
    parser.add_argument(
        "--workload-share", type=float, help="instead of protection.yaml's (to compare)"
    )
    parser.add_argument(
        "--before",
        action="store_true",
        help="also the previous design: the year as the sum of its quarters, workload share 0.6",
    )
    parser.add_argument("--no-year", action="store_true", help="do not measure the year directly")
    parser.add_argument(
        "--runs", type=int, default=1, help="DP measured this many times (fresh noise): means"
    )
    args = parser.parse_args()
    catalogue = load_indicators()
    settings = load_dp_settings()
    if args.workload_share:
        settings = dataclasses.replace(settings, workload_share=args.workload_share)
    configs = {"now": (settings, not args.no_year)}
    if args.before:
        old = dataclasses.replace(settings, workload_share=0.6, year_share=0.0)
        configs = {"before": (old, False), **configs}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "warehouse.duckdb"
        shutil.copy(args.warehouse, copy)
        started = time.perf_counter()
        publish(copy, Path(tmp) / "pub", period=args.period)
        print(f"suppression: publish {args.period} took {time.perf_counter() - started:.0f} s")
        results: dict[str, list[Any]] = {}
        for name, (config, year) in configs.items():
            for run in range(args.runs):
                mine = Path(tmp) / f"{name}{run}.duckdb"
                shutil.copy(args.warehouse, mine)
                started = time.perf_counter()
                results.setdefault(name, []).append(
                    dp_side(mine, args.period, config, year, catalogue)
                )
                print(f"DP {name}: answered in {time.perf_counter() - started:.0f} s")
                mine.unlink()
        rows = []
        keys = ["cells", "nonzero", "supp", "supp_nz"]
        keys += [f"{k}_{n}" for n in configs for k in ("dp", "dp_nz", "abs", "n")]
        totals = dict.fromkeys(keys, 0.0)
        skipped = set()
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
            path = Path(tmp) / "pub" / "csv" / f"{request.table_name}.csv"
            if path.exists():
                published = pl.read_csv(path, schema_overrides={d: pl.String for d in dims}).select(
                    *dims, pl.col("value").cast(pl.Float64).alias("supp")
                )
            else:  # the table was withheld (its audit failed): no cell published
                published = truth.select(*dims, pl.lit(None, pl.Float64).alias("supp"))
            if any(request.table_name not in r[0][0] for r in results.values()):
                skipped.add(request.table_name)
                continue
            cells = truth.join(published, on=dims)
            nonzero = cells.filter(pl.col("truth").fill_null(0) > 0)
            row: dict[str, Any] = {
                "table": request.table_name,
                "unit": indicator.unit,
                "cells": cells.height,
                "nonzero": nonzero.height,
                "supp": cells.filter(pl.col("supp").is_not_null()).height,
                "supp_nz": nonzero.filter(pl.col("supp").is_not_null()).height,
            }
            for name, runs in results.items():
                for key in ("dp", "dp_nz", "abs", "n"):
                    row[f"{key}_{name}"] = 0.0
                for answers, _, _ in runs:  # means over the runs
                    both = cells.join(answers[request.table_name], on=dims)
                    if indicator.unit == "rate":  # the tabulated truth is the count: per 100,000
                        both = both.with_columns(
                            (pl.col("truth") * 100_000 / pl.col("denominator")).alias("truth")
                        )
                    usable = (pl.col("margin") <= 0.2 * pl.col("dp")) & (pl.col("dp") > 0)
                    errors = both.select((pl.col("dp") - pl.col("truth")).abs()).to_series()
                    row[f"dp_{name}"] += both.filter(usable).height / len(runs)
                    row[f"dp_nz_{name}"] += both.filter(
                        usable & (pl.col("truth").fill_null(0) > 0)
                    ).height / len(runs)
                    row[f"abs_{name}"] += float(errors.sum() or 0.0)
                    row[f"n_{name}"] += int(errors.len() - errors.null_count())
            for k in totals:
                totals[k] += row[k]
            rows.append(row)
        names = list(configs)
        head = "| table | unit | cells | non-zero | suppression: published (non-zero) |"
        head += "".join(f" DP {n}: usable (non-zero) | DP {n}: mean abs. error |" for n in names)
        print("\n" + head)
        print("|---" * (5 + 2 * len(names)) + "|")
        for r in rows:
            line = (
                f"| {r['table']} | {r['unit']} | {r['cells']} | {r['nonzero']} | "
                f"{r['supp']} ({r['supp_nz']}) |"
            )
            for n in names:
                mae = r[f"abs_{n}"] / max(r[f"n_{n}"], 1)
                line += f" {r[f'dp_{n}']:.3g} ({r[f'dp_nz_{n}']:.3g}) | {mae:.1f} |"
            print(line)
        t = totals
        line = (
            f"| **all** | | {t['cells']:.0f} | {t['nonzero']:.0f} | "
            f"{t['supp'] / t['cells']:.0%} ({t['supp_nz'] / t['nonzero']:.0%}) |"
        )
        for n in names:
            line += f" {t[f'dp_{n}'] / t['cells']:.0%} ({t[f'dp_nz_{n}'] / t['nonzero']:.0%}) | |"
        print(line)
        if skipped:
            print("\nNot answered (not in the workload): " + ", ".join(sorted(skipped)))
        for name, runs in results.items():
            for _, _, summary in runs:
                print(f"\n{args.period}, DP {name}: {summary}")


if __name__ == "__main__":
    main()
