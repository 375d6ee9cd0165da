"""Suppression share and protect+audit seconds per release on the demo's warehouse: the whole
catalogue alone, then (on a fresh copy) 2025-Q1…Q4 and the year 2025, each protected together
with the releases before it in the ledger (issue 12: the annual release linked to its quarters in
under 60 s on 2 cores; suppression share per release).

The warehouse is `casepool demo`'s (synthetic exports, validated, signed, ingested, synthetic
population), made once without its publication so the ledger starts empty.

    .venv/bin/python bench/linked_release_bench.py                      # make demo's data: 6 orgs
    .venv/bin/python bench/linked_release_bench.py --orgs 3 --records 400
    .venv/bin/python bench/linked_release_bench.py --sequence 2025-Q1 2025   # any order

`bench/annual_release_bench.py` times the annual step alone, from a warehouse saved after the
quarters.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from casepool import demo
from casepool.publishing import publish as publishing

QUARTERS_THEN_YEAR = ("2025-Q1", "2025-Q2", "2025-Q3", "2025-Q4", "2025")


def demo_warehouse(root: Path, orgs: int, records: int) -> Path:
    """The demo's warehouse with nothing published yet."""
    skip = demo._publish_and_report
    demo._publish_and_report = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        result = demo.run_demo(root / "demo", orgs=orgs, records=records)
    finally:
        demo._publish_and_report = skip  # type: ignore[assignment]
    assert result.warehouse is not None
    return result.warehouse


def releases(
    warehouse: Path, folder: Path, periods: tuple[str | None, ...]
) -> list[dict[str, Any]]:
    """Publish each period in turn on a copy of the warehouse; seconds spent protecting and
    auditing (publish's call of protect_tabulations) and the share of cells suppressed."""
    copy = folder / "warehouse.duckdb"
    shutil.copy(warehouse, copy)
    timed: list[float] = []
    protect = publishing.protect_tabulations

    def timing(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return protect(*args, **kwargs)
        finally:
            timed.append(time.perf_counter() - started)

    publishing.protect_tabulations = timing  # type: ignore[assignment]
    found = []
    try:
        for period in periods:
            started = time.perf_counter()
            result = publishing.publish(copy, folder / f"pub-{period or 'all'}", period)
            found.append(
                {
                    "release": period or "whole catalogue",
                    "cells": sum(t.cells for t in result.tables if t.written),
                    "suppressed_share": round(result.suppressed_share, 3),
                    "withheld": [t.name for t in result.tables if not t.written],
                    "protect_audit_seconds": round(timed[-1], 1),
                    "publish_seconds": round(time.perf_counter() - started, 1),
                    # The machine is shared: its load says how far the seconds are to be trusted.
                    "loadavg": Path("/proc/loadavg").read_text().split()[:3],
                }
            )
            print(json.dumps(found[-1]), flush=True)
    finally:
        publishing.protect_tabulations = protect  # type: ignore[assignment]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=6)
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--sequence", nargs="+", default=list(QUARTERS_THEN_YEAR))
    parser.add_argument("--no-catalogue", action="store_true", help="skip the whole catalogue")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="casepool-linked-bench-") as tmp:
        root = Path(tmp)
        warehouse = demo_warehouse(root, args.orgs, args.records)
        out: dict[str, Any] = {"orgs": args.orgs, "records": args.records}
        if not args.no_catalogue:
            (root / "whole").mkdir()
            out["catalogue"] = releases(warehouse, root / "whole", (None,))
        (root / "linked").mkdir()
        out["linked"] = releases(warehouse, root / "linked", tuple(args.sequence))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
