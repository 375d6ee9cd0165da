"""Seconds to publish four quarterly releases and then their year, each protected together with
the release ledger (issue 12's target: the annual release linked to its quarters in under 60 s on
2 cores), with the share of cells suppressed per release.

The warehouse is made in SQL (tests/fixtures/indicators/warehouses.py: random records over two
years). Each release is `casepool.publishing.publish(..., period=...)`, which protects the new
tables together with every earlier publication in the ledger, audits them and records them.

    .venv/bin/python bench/release_bench.py                         # 2,000 records, 6 organisations
    .venv/bin/python bench/release_bench.py --records 20000 --orgs 12
    .venv/bin/python bench/release_bench.py --periods 2025          # the year alone, for comparison
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from casepool.publishing.publish import publish  # noqa: E402
from fixtures.indicators.warehouses import build_random  # noqa: E402

QUARTERS_THEN_YEAR = ("2025-Q1", "2025-Q2", "2025-Q3", "2025-Q4", "2025")


def bench(records: int, orgs: int, periods: tuple[str, ...]) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="casepool-release-bench-") as folder:
        warehouse = build_random(Path(folder) / "warehouse.duckdb", records, orgs=orgs)
        releases = []
        for period in periods:
            started = time.perf_counter()
            result = publish(warehouse, Path(folder) / f"pub-{period}", period)
            releases.append(
                {
                    "period": period,
                    "seconds": round(time.perf_counter() - started, 1),
                    "cells": sum(t.cells for t in result.tables if t.written),
                    "suppressed_share": round(result.suppressed_share, 3),
                    "withheld": [t.name for t in result.tables if not t.written],
                }
            )
            print(json.dumps(releases[-1]), flush=True)
    return {"records": records, "orgs": orgs, "releases": releases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--orgs", type=int, default=6)
    parser.add_argument("--periods", nargs="+", default=list(QUARTERS_THEN_YEAR))
    args = parser.parse_args()
    print(json.dumps(bench(args.records, args.orgs, tuple(args.periods)), indent=1))


if __name__ == "__main__":
    main()
