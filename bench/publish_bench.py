"""Seconds to publish the whole catalogue over a warehouse of N synthetic records (default 1M and 10M).

Two ways to make the warehouse:
- by default directly in SQL (tests/fixtures/indicators/warehouses.py: random records over 12
  organisations and two years, realistic shares of sex, age, displacement, exploitation; its
  rows carry no `active` flags, so publish reads the counted cases through the window fallback);
- with `--from-package`, as ingest makes it: the package is ingested (a real `casepool synth` →
  `casepool submit` package, e.g. bench/data/1000000/work/outbox), then its rows are copied in
  SQL as further organisations until there are N records. **Each copy is the same records** with
  new pseudonyms (SHA-256 of pseudonym and copy number) and new record keys (a hash of the new
  pseudonym, uniform in [0, 1)), each organisation with its own submission, flags refreshed as
  ingest leaves them. Counts per cell are the package's times the copies, so protection
  suppresses less than real data of that size would: a cost bench, not a utility bench.

Then `casepool.publishing.publish` writes every table in every format. Stage times come from
publish's own progress lines; CPU seconds (this process and its children) beside the wall time,
because the machine may be shared.

    .venv/bin/python bench/publish_bench.py                 # 1M and 10M, random SQL rows
    .venv/bin/python bench/publish_bench.py --records 1000000 --keep /tmp/w1m.duckdb
    .venv/bin/python bench/publish_bench.py --records 10000000 \
        --from-package bench/data/1000000/work/outbox --public-key bench/data/1000000/work/keys/BENCH.pub
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from casepool.publishing.publish import publish  # noqa: E402
from fixtures.indicators.warehouses import build_random  # noqa: E402


def build_from_package(warehouse: Path, package: Path, public_key: Path, records: int) -> int:
    """Ingest `package` (a file or an outbox folder) into a new warehouse, then copy its rows as
    further organisations (new pseudonyms and record keys) until at least `records`; returns the
    records in the warehouse."""
    from casepool.warehouse.ingest import ingest_packages
    from casepool.warehouse.organisations import add_organisation
    from casepool.warehouse.store import open_warehouse, refresh_active_cases

    add_organisation(warehouse, "BENCH", "Benchmark", public_key)
    report = ingest_packages([package], warehouse)
    assert report.ok and len(report.packages) == 1, report.to_dict()
    source = report.packages[0]
    rows = source.rows
    copies = max(1, -(-records // rows))
    with open_warehouse(warehouse) as con:
        con.begin()
        for copy in range(1, copies):
            org, sid = f"BENCH-{copy:02d}", f"{source.submission_id[:56]}copy{copy:04d}"
            con.execute(
                "INSERT INTO organisations SELECT * REPLACE (? AS org) FROM organisations "
                "WHERE org = 'BENCH'",
                [org],
            )
            con.execute(
                "INSERT INTO submissions SELECT * REPLACE (? AS submission_id, ? AS org) "
                "FROM submissions WHERE submission_id = ?",
                [sid, org, source.submission_id],
            )
            con.execute(
                "INSERT INTO cases SELECT * REPLACE (? AS submission_id, ? AS org, "
                "sha256(pseudonym || ?) AS pseudonym, "
                "(hash(pseudonym || ?) >> 11)::DOUBLE / 9007199254740992 AS record_key) "
                "FROM cases WHERE submission_id = ?",
                [sid, org, f":{copy}", f"#{copy}", source.submission_id],
            )
        refresh_active_cases(con)
        con.commit()
        total = con.execute("SELECT count(*) FROM active_cases").fetchone()
    return int(total[0]) if total else 0


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench(
    records: int,
    orgs: int,
    keep: Path | None,
    package: Path | None = None,
    public_key: Path | None = None,
) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="casepool-publish-bench-") as folder:
        warehouse = keep or Path(folder) / "warehouse.duckdb"
        made = "reused"
        if not warehouse.exists():
            started = time.perf_counter()
            if package is not None:
                assert public_key is not None, "--from-package needs --public-key"
                records = build_from_package(warehouse, package, public_key, records)
                made = "from-package"
            else:
                build_random(warehouse, records, orgs=orgs)
                made = "random-sql"
            built = time.perf_counter() - started
        else:
            built = 0.0
        stages: list[tuple[str, float]] = []
        cpu = _cpu()
        started = time.perf_counter()
        result = publish(
            warehouse,
            Path(folder) / "publication",
            progress=lambda line: stages.append((line, time.perf_counter() - started)),
        )
        seconds = time.perf_counter() - started
        cpu = _cpu() - cpu
        marks = {line.split()[0]: at for line, at in stages}
        return {
            "records": records,
            "warehouse": made,
            "organisations": orgs if made == "random-sql" else None,
            "build_seconds": round(built, 1),
            "publish_seconds": round(seconds, 1),
            "publish_cpu_seconds": round(cpu, 1),
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "load_average_1min": round(os.getloadavg()[0], 1),
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
    parser.add_argument(
        "--from-package", type=Path, help="build from this package (or outbox) by copying its rows"
    )
    parser.add_argument("--public-key", type=Path, help="the package organisation's public key")
    args = parser.parse_args()
    if args.keep and len(args.records) > 1:
        parser.error("--keep holds one warehouse: give one --records size with it")
    for records in args.records:
        result = bench(records, args.orgs, args.keep, args.from_package, args.public_key)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
