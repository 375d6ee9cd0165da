"""Share of cells suppressed per release on the `make demo` data, with global recoding (issue 12,
step 4: keep it below 25 % for the quarterly and annual releases).

The warehouse is the demo's (synthetic exports of 6 organisations, validated, signed, ingested:
`casepool.demo.run_demo` without its own catalogue publication). Each 2025 quarter is then
published, then 2025, each protected together with the earlier releases in the ledger. Printed
per release: cells, suppressed share, figures published (cells not suppressed), tables coarsened
(and how), tables withheld, seconds.

    .venv/bin/python bench/release_utility_bench.py                 # with recoding
    .venv/bin/python bench/release_utility_bench.py --no-recoding   # as before recoding
    .venv/bin/python bench/release_utility_bench.py --periods 2025  # one release alone
    .venv/bin/python bench/release_utility_bench.py --periods 2025-Q1 --keep /tmp/wh
        # builds the demo warehouse once under /tmp/wh (ledger empty) and reuses it next time
    .venv/bin/python bench/release_utility_bench.py --periods 2025-Q1 2025-Q2 2025-Q3 2025-Q4 \
        --keep /tmp/wh --save /tmp/quarters.duckdb      # the warehouse with the quarters' ledger
    .venv/bin/python bench/release_utility_bench.py --periods 2025 --start /tmp/quarters.duckdb
        # the year alone, linked to the quarters already in that warehouse's ledger (a copy)
    .venv/bin/python bench/release_utility_bench.py --periods all --flags distinct
        # the whole catalogue (every period), published with distinct flags (C primary, D
        # secondary) instead of the shipped `flags` of schemas/protection.yaml

`protect_cpu` is the CPU seconds of the engine and its audits (protect_tabulations, every
round of recoding), `cpu` those of the whole publication.

Each release's suppressed cells are decomposed by cause (`suppressed_by`, from
casepool.publishing.publish.suppression_causes): primary by the threshold rule (1..k-1 children),
primary by contributor dominance, secondary (complements), and for percentages and medians a
denominator below the minimum or a hidden numerator/denominator count; per table and in total.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from unittest import mock

from casepool import demo
from casepool.publishing.publish import publish

QUARTERS_THEN_YEAR = ("2025-Q1", "2025-Q2", "2025-Q3", "2025-Q4", "2025")


def demo_warehouse(folder: Path, orgs: int, records: int) -> Path:
    """The demo's warehouse before it publishes anything (its ledger is empty)."""
    with mock.patch.object(demo, "_publish_and_report", lambda *args: None):
        result = demo.run_demo(folder / "demo", orgs=orgs, records=records)
    assert result.warehouse is not None
    return result.warehouse


def kept_warehouse(keep: Path, orgs: int, records: int) -> Path:
    """The demo warehouse kept under `keep` (built the first time), with its ledger empty."""
    marker = keep / f"warehouse-{orgs}-{records}.path"
    if not marker.exists():
        built = demo_warehouse(keep, orgs, records)
        marker.write_text(str(built), encoding="utf-8")
    return Path(marker.read_text(encoding="utf-8"))


def bench(
    periods: tuple[str, ...],
    orgs: int,
    records: int,
    recoding: bool,
    keep: Path | None = None,
    start: Path | None = None,
    save: Path | None = None,
    flags: str | None = None,
) -> list[dict]:
    from casepool import protecting
    from casepool.publishing import publish as publishing
    from casepool.publishing.recoding import load_recoding

    protection = protecting.load_protection_settings()
    if flags is not None:
        protection = replace(protection, flags=flags)
    spent = [0.0]
    engine = publishing.protect_tabulations

    def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
        began = time.process_time()
        try:
            return engine(*args, **kwargs)
        finally:
            spent[0] += time.process_time() - began

    shipped = load_recoding()  # its steps and share; the bench decides whether it is on
    settings = replace(shipped, enabled=True) if recoding else shipped.disabled()
    releases = []
    with tempfile.TemporaryDirectory(prefix="casepool-utility-bench-") as tmp:
        if start is not None:  # a copy of a prepared warehouse, its ledger as it is
            warehouse = Path(tmp) / start.name
            shutil.copy2(start, warehouse)
        elif keep is None:
            warehouse = demo_warehouse(Path(tmp), orgs, records)
        else:  # a copy of the kept one: every run starts from an empty ledger
            source = kept_warehouse(keep, orgs, records)
            warehouse = Path(tmp) / source.name
            shutil.copy2(source, warehouse)
        for period in periods:
            started = time.perf_counter()
            cpu = time.process_time()
            spent[0] = 0.0
            with mock.patch.object(publishing, "protect_tabulations", timed):
                result = publish(
                    warehouse,
                    Path(tmp) / f"pub-{period}",
                    None if period == "all" else period,
                    recoding=settings,
                    settings=protection,
                )
            row = {
                "period": period,
                "flags": protection.flags,
                "cells": result.cells,
                "suppressed_share": round(result.suppressed_share, 3),
                "published": result.cells - result.suppressed,  # figures a reader gets
                "coarsened": [c.to_dict() for c in result.coarsened],
                "suppressed_by": result.causes,
                "withheld": [t.name for t in result.tables if not t.written],
                "tables": {
                    t.name: {"cells": t.cells, "suppressed": t.suppressed, **t.causes}
                    for t in result.tables
                    if t.written
                },
                "seconds": round(time.perf_counter() - started, 1),
                "cpu": round(time.process_time() - cpu, 1),
                "protect_cpu": round(spent[0], 1),
            }
            print(json.dumps(row), flush=True)
            releases.append(row)
        if save is not None:
            shutil.copy2(warehouse, save)
    return releases


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--periods", nargs="+", default=list(QUARTERS_THEN_YEAR))
    parser.add_argument("--orgs", type=int, default=6)
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--no-recoding", action="store_true")
    parser.add_argument("--keep", type=Path, help="build the demo warehouse here once, reuse it")
    parser.add_argument("--start", type=Path, help="a copy of this warehouse, ledger and all")
    parser.add_argument("--save", type=Path, help="copy the warehouse here at the end")
    parser.add_argument("--flags", choices=("combined", "distinct"), help="published flags")
    args = parser.parse_args()
    releases = bench(
        tuple(args.periods),
        args.orgs,
        args.records,
        not args.no_recoding,
        args.keep,
        args.start,
        args.save,
        args.flags,
    )
    print(
        "\n".join(
            f"{r['period']:>8}  {r['cells']:5d} cells  {100 * r['suppressed_share']:5.1f} % suppressed"
            f"  {r['published']:4d} published  flags {r['flags']}"
            f"  protect CPU {r['protect_cpu']} s (publish CPU {r['cpu']} s)"
            f"  by cause: {', '.join(f'{k} {v}' for k, v in r['suppressed_by'].items() if v)}"
            f"  coarsened: {', '.join(c['table'] + ' (' + c['how'] + ')' for c in r['coarsened']) or '-'}"
            for r in releases
        )
    )


if __name__ == "__main__":
    main()
