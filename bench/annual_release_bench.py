"""The annual release alone: 2025 protected and audited together with its four quarterly releases
already in the ledger (issue 12, goal 5: under 60 s on 2 cores).

`bench/linked_release_bench.py` publishes the quarters and then the year, which takes many
minutes; this one publishes the quarters once into a saved warehouse (`--prepare`), then runs only
the year's protect+audit (`publishing.protect_tabulations`) on a copy of it, optionally under
cProfile. It prints the seconds, the load of the machine and a digest of everything the step
decides (every cell's value and status, every table's audit verdict): a change meant only for
speed must leave the digest as it was.

    .venv/bin/python bench/annual_release_bench.py --prepare /tmp/annual     # once: demo + quarters
    .venv/bin/python bench/annual_release_bench.py --from /tmp/annual       # the year, timed
    .venv/bin/python bench/annual_release_bench.py --from /tmp/annual --profile 40
    .venv/bin/python bench/annual_release_bench.py --from /tmp/annual --without-told

`--without-told` runs the engine blind to what the flags tell (`SystemAudit.at_least`, a
primary cell is not 0), as before round 4's flags reading: the year may then protect other
cells (on `make demo`'s data in round 6 it did not: same digest); it measures a change with and
without that reading. `--profile-file F` keeps the cProfile statistics (for pstats).

Measured (round 7, on the shared 2-core machine; docs/methodology-disclosure-control.md, "Round
7"): before (commit ae681a4) 97,002 LPs, 190.0 CPU s, 1,200 s wall at load 8-15; after, side by
side, 15,465 LPs, 65.2 CPU s; alone on a nearly quiet machine (load 1.4-2.3) 65.3 CPU s and
64.7 s wall (63.8 s with CASEPOOL_AUDIT_WORKERS=2); the same digest (`d87a36eb...`) throughout.
With everything of round 7 merged (the linear-program complement search, the share rule of
recoding, the faster audit; quarters prepared anew with that code, 2025-12-01 06:07 UTC at load
4-4.6): 11,015-11,283 LPs, protect+audit 29.4-31.7 s wall (28.6-30.6 CPU s), the whole build
32.0-35.0 s, 33.7 % suppressed, nothing withheld, digest `1295c6c9...`: **under 60 s**.
Then with the release-share rule of recoding (12v; quarters prepared anew, 06:31 UTC, load
1.4-1.6, nothing else running): 16,805 LPs, protect+audit 47.4-48.5 s wall (49.8-50.9 CPU s,
with the helper processes' share of the audits), 24.5 % suppressed, digest `6dd13ca0...`; the
whole build 61.5-63.4 s, the rest being the tabulations of its more numerous recoding rounds.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from linked_release_bench import demo_warehouse

from casepool.protecting import lp, secondary
from casepool.publishing import publish as publishing

QUARTERS = ("2025-Q1", "2025-Q2", "2025-Q3", "2025-Q4")
YEAR = "2025"
SAVED = "quarters.duckdb"


def prepare(folder: Path, orgs: int, records: int) -> Path:
    """The demo's warehouse with the four quarters published and recorded, saved in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    warehouse = demo_warehouse(folder, orgs, records)
    copy = folder / SAVED
    shutil.copy(warehouse, copy)
    for quarter in QUARTERS:
        publishing.publish(copy, folder / f"pub-{quarter}", quarter)
    return copy


def digest(protected: list[Any]) -> str:
    """SHA-256 of every table's cells, statuses and audit verdict, in order."""
    h = hashlib.sha256()
    for p in protected:
        h.update(p.tabulation.name.encode())
        h.update(p.counts.write_csv().encode())
        h.update(json.dumps([p.audit_ok, p.audit_failures]).encode())
    return h.hexdigest()


def annual(
    saved: Path, profile: int = 0, told: bool = True, profile_file: Path | None = None
) -> dict[str, Any]:
    """Protect and audit the year on a copy of `saved`; seconds, share suppressed and digest."""
    auditor = secondary.SystemAudit
    if not told:

        def blind(*args: Any, **kwargs: Any) -> Any:
            kwargs.pop("at_least", None)
            return auditor(*args, **kwargs)

        secondary.SystemAudit = blind  # type: ignore[assignment,misc]
    try:
        return _annual(saved, profile, told, profile_file)
    finally:
        secondary.SystemAudit = auditor  # type: ignore[misc]


def _annual(saved: Path, profile: int, told: bool, profile_file: Path | None) -> dict[str, Any]:
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory(prefix="casepool-annual-bench-") as tmp:
        copy = Path(tmp) / "warehouse.duckdb"
        shutil.copy(saved, copy)
        timed: list[float] = []
        cpu: list[float] = []
        kept: list[Any] = []
        protect = publishing.protect_tabulations
        profiler = cProfile.Profile() if profile or profile_file else None

        def timing(*args: Any, **kwargs: Any) -> Any:
            started, used = time.perf_counter(), time.process_time()
            if profiler is not None:
                profiler.enable()
            try:
                found = protect(*args, **kwargs)
                kept.append(found)
                return found
            finally:
                if profiler is not None:
                    profiler.disable()
                timed.append(time.perf_counter() - started)
                cpu.append(time.process_time() - used)

        # Every LP solved (engine, KnownBefore and audits), counted by wrapping the one place
        # that calls HiGHS.
        solve = lp.ComponentProblem.solve
        solves = [0]

        def counted(problem: lp.ComponentProblem, objective: Any) -> Any:
            solves[0] += 1
            return solve(problem, objective)

        publishing.protect_tabulations = timing  # type: ignore[assignment]
        lp.ComponentProblem.solve = counted  # type: ignore[method-assign]
        started = time.perf_counter()
        try:
            publication = publishing.build_publication(copy, YEAR)
        finally:
            publishing.protect_tabulations = protect  # type: ignore[assignment]
            lp.ComponentProblem.solve = solve  # type: ignore[method-assign]
        total = time.perf_counter() - started
    cells = sum(o.cells for o in publication.outcomes)
    suppressed = sum(o.suppressed for o in publication.outcomes)
    out = {
        "release": YEAR,
        "flags_told": told,
        "released_before": publication.released_before,
        "protect_audit_seconds": round(sum(timed), 1),
        # CPU seconds of this process (helper processes not counted): less sensitive to the
        # machine's load than the wall clock.
        "protect_audit_cpu_seconds": round(sum(cpu), 1),
        "build_seconds": round(total, 1),
        "lp_solves": solves[0],
        "suppressed_share": round(suppressed / cells, 3) if cells else 0.0,
        "withheld": [o.name for o in publication.outcomes if not o.written],
        "digest": digest(kept[-1]),
        "loadavg_before": load_before,
        "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
    }
    if profiler is not None and profile_file is not None:
        profiler.dump_stats(profile_file)
    if profiler is not None and profile:
        for order in ("cumulative", "tottime"):
            print(f"--- profile by {order} ---", file=sys.stderr)
            pstats.Stats(profiler, stream=sys.stderr).sort_stats(order).print_stats(profile)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", type=Path, help="make the warehouse with the quarters here")
    parser.add_argument("--from", dest="source", type=Path, help="a folder made by --prepare")
    parser.add_argument("--orgs", type=int, default=6)
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--profile", type=int, default=0, help="print this many profile lines")
    parser.add_argument("--profile-file", type=Path, help="save the cProfile statistics here")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--without-told", action="store_true", help="the engine blind to what the flags tell"
    )
    args = parser.parse_args()
    if args.prepare:
        saved = prepare(args.prepare, args.orgs, args.records)
        print(json.dumps({"prepared": str(saved)}), flush=True)
    source = args.prepare or args.source
    if source is None:
        parser.error("give --prepare DIR or --from DIR")
    for _ in range(args.repeat):
        print(
            json.dumps(
                annual(source / SAVED, args.profile, not args.without_told, args.profile_file)
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
