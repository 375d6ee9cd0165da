"""Seconds to publish the whole catalogue over a warehouse of N synthetic records (default 1M and 10M).

The warehouse is made directly in SQL (tests/fixtures/indicators/warehouses.py: random records
over 12 organisations and two years, realistic shares of sex, age, displacement, exploitation),
then `casepool.publishing.publish` writes every table in every format. Stage times come from
publish's own progress lines.

    .venv/bin/python bench/publish_bench.py                 # 1M and 10M
    .venv/bin/python bench/publish_bench.py --records 1000000 --keep /tmp/w1m.duckdb
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


def bench(records: int, orgs: int, keep: Path | None) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="casepool-publish-bench-") as folder:
        warehouse = keep or Path(folder) / "warehouse.duckdb"
        if not warehouse.exists():
            started = time.perf_counter()
            build_random(warehouse, records, orgs=orgs)
            built = time.perf_counter() - started
        else:
            built = 0.0
        stages: list[tuple[str, float]] = []
        started = time.perf_counter()
        result = publish(
            warehouse,
            Path(folder) / "publication",
            progress=lambda line: stages.append((line, time.perf_counter() - started)),
        )
        seconds = time.perf_counter() - started
        marks = {line.split()[0]: at for line, at in stages}
        return {
            "records": records,
            "organisations": orgs,
            "build_seconds": round(built, 1),
            "publish_seconds": round(seconds, 1),
            "tabulate_seconds": round(marks.get("protect", 0.0), 1),
            "protect_and_audit_seconds": round(
                marks.get("write", 0.0) - marks.get("protect", 0.0), 1
            ),
            "write_seconds": round(seconds - marks.get("write", 0.0), 1),
            "tables": len(result.tables),
            "cells": sum(t.cells for t in result.tables),
            "suppressed_share": round(result.suppressed_share, 4),
            "ok": result.ok,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="*", default=[1_000_000, 10_000_000])
    parser.add_argument("--orgs", type=int, default=12)
    parser.add_argument("--keep", type=Path, help="reuse or keep the warehouse at this path")
    args = parser.parse_args()
    if args.keep and len(args.records) > 1:
        parser.error("--keep holds one warehouse: give one --records size with it")
    for records in args.records:
        print(json.dumps(bench(records, args.orgs, args.keep)), flush=True)


if __name__ == "__main__":
    main()
