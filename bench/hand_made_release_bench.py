"""The slow small case: the whole catalogue's report on the hand-made warehouse of
`tests/test_dp_report.py` (187 cells, all suppressed), protection included.

    .venv/bin/python bench/hand_made_release_bench.py [--profile-file F]

Prints wall and CPU seconds, the LPs solved and a digest of the report's HTML: a change meant
only for speed must leave the digest as it was.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from casepool.protecting import lp
from casepool.reporting import write_report
from fixtures.indicators.warehouses import build_hand_made


def run(profile_file: Path | None = None) -> dict[str, Any]:
    solve = lp.ComponentProblem.solve
    solves = [0]

    def counted(problem: lp.ComponentProblem, objective: Any) -> Any:
        solves[0] += 1
        return solve(problem, objective)

    load_before = Path("/proc/loadavg").read_text().split()[:3]
    lp.ComponentProblem.solve = counted  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory(prefix="casepool-hand-made-bench-") as tmp:
            warehouse = build_hand_made(Path(tmp) / "warehouse.duckdb")
            target = Path(tmp) / "report.html"
            profiler = cProfile.Profile() if profile_file else None
            started, used = time.perf_counter(), time.process_time()
            if profiler is not None:
                profiler.enable()
            write_report(warehouse, target, lang="en")
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile_file)
            wall, cpu = time.perf_counter() - started, time.process_time() - used
            html = target.read_bytes()
    finally:
        lp.ComponentProblem.solve = solve  # type: ignore[method-assign]
    return {
        "report_seconds": round(wall, 1),
        "report_cpu_seconds": round(cpu, 1),
        "lp_solves": solves[0],
        "digest": hashlib.sha256(html).hexdigest(),
        "loadavg_before": load_before,
        "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile-file", type=Path, help="save the cProfile statistics here")
    args = parser.parse_args()
    print(json.dumps(run(args.profile_file)), flush=True)


if __name__ == "__main__":
    main()
