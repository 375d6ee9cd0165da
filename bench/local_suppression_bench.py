"""Benchmark: information loss and time of local suppression at submit (k = 3 and k = 5).

Run:  .venv/bin/python bench/local_suppression_bench.py [--demo] [--records 200000] [--workdir DIR]
--demo: the demo's exports (`casepool demo`: 6 organisations, 3,000 records, 2023-2025), one package
per organisation and year as the demo submits them. --records N: one organisation's synthetic
export of N records registered in 2025, one package. For each k it reports the share of
quasi-identifier values blanked (of the values the package holds in suppressible columns), the
share of records touched, blanks per field, k reached, and the time of de-identification with and
without local suppression. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any


def _measure(records: Any, org: str, period: Any, ks: tuple[int, ...]) -> dict[str, Any]:
    from casepool.core.schema import load_schema
    from casepool.exchange.profile import load_profile
    from casepool.intake.deidentifying import prepare_submission, quasi_identifiers

    secret = b"bench-secret-key-0123456789abcdef"
    qis = quasi_identifiers(load_schema(), load_profile())
    started = time.perf_counter()
    plain = prepare_submission(
        records, org=org, period=period, secret=secret, drop_invalid=True, suppress=False
    )
    out: dict[str, Any] = {
        "records": plain.rows_kept,
        "seconds_without": time.perf_counter() - started,
    }
    if plain.frame is None:
        return out
    held = int(sum(plain.frame.get_column(c).is_not_null().sum() for c in qis.suppressible))
    out["values_held"] = held
    out["k_before"] = plain.k_anonymity.k if plain.k_anonymity else None
    for k in ks:
        started = time.perf_counter()
        sub = prepare_submission(
            records, org=org, period=period, secret=secret, drop_invalid=True, min_k=k
        )
        assert sub.suppression is not None
        out[f"k{k}"] = sub.suppression.to_dict() | {"seconds": time.perf_counter() - started}
    return out


def _summary(parts: list[dict[str, Any]], ks: tuple[int, ...]) -> dict[str, Any]:
    records = sum(p.get("records", 0) for p in parts)
    held = sum(p.get("values_held", 0) for p in parts)
    out: dict[str, Any] = {"packages": len(parts), "records": records, "values_held": held}
    out["seconds_without"] = round(sum(p["seconds_without"] for p in parts), 3)
    for k in ks:
        done = [p[f"k{k}"] for p in parts if f"k{k}" in p]
        blanks = sum(d["values_suppressed"] for d in done)
        touched = sum(d["records_touched"] for d in done)
        fields: dict[str, int] = {}
        for d in done:
            for name, count in d["suppressed"].items():
                fields[name] = fields.get(name, 0) + count
        out[f"k{k}"] = {
            "share_values_suppressed": round(blanks / held, 4) if held else 0.0,
            "share_records_touched": round(touched / records, 4) if records else 0.0,
            "values_suppressed": blanks,
            "records_touched": touched,
            "suppressed_per_field": fields,
            "packages_below_k": sum(d["k_reached"] < d["k"] for d in done),
            "seconds_with": round(sum(d["seconds"] for d in done), 3),
        }
    return out


def demo(work: Path, ks: tuple[int, ...]) -> dict[str, Any]:
    from casepool.core.periods import parse_period
    from casepool.intake.validating import validate_export
    from casepool.synthesis import synthesize

    synthesis = synthesize(
        work / "exports", orgs=6, records=3000, seed=2025, start="2023-01", end="2025-12"
    )
    parts = []
    for number, export in enumerate(synthesis.exports, start=1):
        mapping = work / "exports" / export.mapping if export.mapping else None
        checked = validate_export(work / "exports" / export.file, mapping, today=synthesis.today)
        for year in (2023, 2024, 2025):
            records = checked.records
            invalid = checked.invalid_rows
            kept = records.filter(~records["_row"].is_in(sorted(invalid))) if invalid else records
            parts.append(_measure(kept, f"ORG-{number:02d}", parse_period(str(year)), ks))
    return _summary(parts, ks)


def large(work: Path, n: int, ks: tuple[int, ...]) -> dict[str, Any]:
    from casepool.core.periods import parse_period
    from casepool.intake.validating import validate_export
    from casepool.synthesis import synthesize

    synthesize(work / "large", orgs=1, records=n, seed=1, fmt="csv", start="2025-01",
               end="2025-12", error_rate=0.0, today=date(2026, 1, 15))  # fmt: skip
    export = next((work / "large").glob("*.csv"))
    checked = validate_export(export, today=date(2026, 1, 15))
    records = checked.records
    if checked.invalid_rows:
        records = records.filter(~records["_row"].is_in(sorted(checked.invalid_rows)))
    return _summary([_measure(records, "BENCH", parse_period("2025"), ks)], ks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--records", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    ks = (3, 5)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="casepool-ls-bench-"))
    result: dict[str, Any] = {}
    if args.demo:
        result["demo"] = demo(work, ks)
    if args.records:
        result[f"synthetic_{args.records}"] = large(work, args.records, ks)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
