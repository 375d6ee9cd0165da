"""Benchmark `casepool synth`: wall time, CPU time and peak memory per size and format.

Usage: .venv/bin/python bench/synth_bench.py [--sizes 1000000,10000000] [--formats csv,mixed]
       [--workdir DIR] [--keep]
Each run is its own `casepool synth` process (peak memory is that process's ru_maxrss); output
goes to a temporary folder (or --workdir) and is deleted unless --keep. Prints one JSON line per
run and a table. CPU seconds are reported too: on a shared machine wall time depends on what
else runs, CPU time much less.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASEPOOL = str(Path(sys.executable).with_name("casepool"))


def measure(records: int, fmt: str, orgs: int, work: Path) -> dict[str, object]:
    """Run one `casepool synth` and measure it."""
    out = work / f"synth_{fmt}_{records}"
    shutil.rmtree(out, ignore_errors=True)
    command = [
        CASEPOOL, "synth", "--out", str(out), "--records", str(records), "--orgs", str(orgs),
        "--seed", "1", "--format", fmt,
    ]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        error = process.stderr.read().decode() if process.stderr else ""
        raise SystemExit(f"synth failed at {records} rows ({fmt}): {error}")
    size = sum(p.stat().st_size for p in out.iterdir())
    return {
        "records": records,
        "format": fmt,
        "orgs": orgs,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_mb": round(usage.ru_maxrss / 1024, 1),
        "output_mb": round(size / 1e6, 1),
        "records_per_second": round(records / seconds),
        "command": " ".join(["casepool", *command[1:]]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--formats", default="csv")
    parser.add_argument("--orgs", type=int, default=6)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="casepool-synth-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for fmt in args.formats.split(","):
            for size in (int(s) for s in args.sizes.split(",")):
                result = measure(size, fmt, args.orgs, work)
                print(json.dumps(result), flush=True)
                rows.append(result)
                if not args.keep:
                    shutil.rmtree(work / f"synth_{fmt}_{size}", ignore_errors=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n{'records':>12} {'format':>7} {'seconds':>8} {'cpu s':>8} {'peak MB':>8} {'out MB':>8}"
    )
    for r in rows:
        print(
            f"{r['records']:>12,} {r['format']:>7} {r['seconds']:>8} {r['cpu_seconds']:>8} "
            f"{r['peak_mb']:>8} {r['output_mb']:>8}"
        )


if __name__ == "__main__":
    main()
