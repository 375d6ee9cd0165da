"""Benchmark: submit and ingest throughput (rows/s) on a synthetic export of 1M records.

Run:  .venv/bin/python bench/submit_ingest_bench.py [--records 1000000] [--workdir DIR]
Makes one canonical CSV with `casepool synth`, then times `submit_export` (read, validate,
de-identify, scan, package) and `ingest_packages` (verify, merge) on it. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    from casepool.exchange.keys import generate_keys
    from casepool.intake.submit import submit_export
    from casepool.synthesis import synthesize
    from casepool.warehouse.ingest import ingest_packages
    from casepool.warehouse.organisations import add_organisation

    work = args.workdir or Path(tempfile.mkdtemp(prefix="casepool-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        synthesize(
            work / "synth",
            orgs=1,
            records=args.records,
            seed=1,
            fmt="csv",
            start="2025-01",
            end="2025-12",
            error_rate=0.001,
        )
        export = next((work / "synth").glob("*.csv"))
        synth_s = time.perf_counter() - started
        paths = generate_keys("BENCH", work / "keys")

        marks: list[tuple[str, float]] = []
        peaks: dict[str, int] = {}  # the process's peak RSS (MB) when each submit stage ended
        submitting = [True]

        def mark(stage: str) -> None:
            if marks and submitting[0]:
                peaks[marks[-1][0]] = _peak_mb()
            marks.append((stage.split(":")[0], time.perf_counter()))

        started = time.perf_counter()
        outcome = submit_export(
            export,
            org="BENCH",
            period="2025",
            key_dir=work / "keys",
            outbox=work / "outbox",
            drop_invalid=True,
            today=date(2025, 12, 31),
            progress=mark,
        )
        submit_s = time.perf_counter() - started
        mark("end")
        submitting[0] = False
        submit_stages = {
            name: round(marks[i + 1][1] - at, 2) for i, (name, at) in enumerate(marks[:-1])
        }
        assert outcome.package is not None, outcome.submission.status

        warehouse = work / "w.duckdb"
        add_organisation(warehouse, "BENCH", "Benchmark", paths.public)
        marks.clear()
        started = time.perf_counter()
        report = ingest_packages([outcome.package], warehouse, stage=mark)
        ingest_s = time.perf_counter() - started
        marks.append(("end", time.perf_counter()))
        ingest_stages = {
            name: round(marks[i + 1][1] - at, 2) for i, (name, at) in enumerate(marks[:-1])
        }
        assert report.ok
        kept = outcome.submission.rows_kept
        print(
            json.dumps(
                {
                    "records_in_export": args.records,
                    "records_submitted": kept,
                    "export_mb": round(export.stat().st_size / 1e6, 1),
                    "package_mb": round(outcome.package.stat().st_size / 1e6, 1),
                    "synth_s": round(synth_s, 2),
                    "submit_s": round(submit_s, 2),
                    "submit_rows_per_s": round(args.records / submit_s),
                    "submit_stages_s": submit_stages,
                    "submit_peak_mb_by_stage": peaks,
                    "submit_peak_x_export": round(
                        max(peaks.values()) * 2**20 / export.stat().st_size, 2
                    ),
                    "ingest_s": round(ingest_s, 2),
                    "ingest_rows_per_s": round(kept / ingest_s),
                    "ingest_stages_s": ingest_stages,
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                    "load_average_1min": round(os.getloadavg()[0], 2),
                    "cpus": os.cpu_count(),
                }
            )
        )
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _peak_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


if __name__ == "__main__":
    sys.exit(main())
