"""Seconds to write the report over a warehouse of N synthetic records (default 1M).

The warehouse is made directly in SQL (tests/fixtures/indicators/warehouses.py: random records over
12 organisations), then `casepool.reporting.write_report` runs as `casepool report` does: it
publishes the whole catalogue into a temporary folder (protect, audit), reads the tables back,
counts submissions for coverage and writes one HTML file. Measured apart: the report's own share
(from an existing publication folder, as `--publication` does), and the file size per language.

    .venv/bin/python bench/report_bench.py                      # 1M records
    .venv/bin/python bench/report_bench.py --records 100000 --keep /tmp/w100k.duckdb
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from casepool.reporting import write_report  # noqa: E402
from fixtures.indicators.warehouses import build_random  # noqa: E402


def bench(records: int, orgs: int, keep: Path | None) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="casepool-report-bench-") as folder:
        root = Path(folder)
        warehouse = keep or root / "warehouse.duckdb"
        built = 0.0
        if not warehouse.exists():
            started = time.perf_counter()
            build_random(warehouse, records, orgs=orgs)
            built = time.perf_counter() - started
        stages: list[tuple[str, float]] = []
        started = time.perf_counter()
        result = write_report(
            warehouse,
            root / "report-en.html",
            progress=lambda stage: stages.append((stage, time.perf_counter() - started)),
        )
        total = time.perf_counter() - started

        from casepool.publishing.publish import publish

        publish(warehouse, root / "publication")
        sizes, own = {}, {}
        for lang in ("en", "ar", "ckb", "kmr"):
            started = time.perf_counter()
            done = write_report(
                warehouse, root / f"report-{lang}.html", lang=lang, publication=root / "publication"
            )
            own[lang] = round(time.perf_counter() - started, 3)
            sizes[lang] = done.size_bytes
    return {
        "records": records,
        "organisations": orgs,
        "build_warehouse_s": round(built, 2),
        "report_total_s": round(total, 2),
        "stages_s": {name: round(at, 2) for name, at in stages},
        "report_from_publication_s": own,
        "size_bytes": sizes,
        "period": result.period,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--orgs", type=int, default=12)
    parser.add_argument("--keep", type=Path, help="Reuse (or keep) the warehouse at this path.")
    args = parser.parse_args()
    print(json.dumps(bench(args.records, args.orgs, args.keep), indent=2))


if __name__ == "__main__":
    main()
