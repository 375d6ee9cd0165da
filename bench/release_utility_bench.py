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

`at_total` counts the tables the share rule (`recoding: goal: share`) took to their total (the
table by the release's period), `at_total_suppressed` those whose total itself stays hidden.
`--goal figures` measures the figures rule (`goal: figures`) instead of the shipped one.

`--breakdown` prints, per release and table, the suppressed cells by primary cause (threshold,
dominance; for shares and medians no children, small denominator, a primary part) against
secondary (a complement; a share over one), and how many lie in a "not stated" category (a
code such as `_U`, `U` or `unknown` in a dimension), for what is released (after recoding). `--no-flags` is an
estimate only, never what casepool ships: the engine and its audits stop reading the published
flags (a cell flagged C is not 0, helper 12f's `at_least`), which shows the share a release
would have if the secondary suppression fell to what a release without that reading needs.

    .venv/bin/python bench/release_utility_bench.py --periods 2025-Q1 --keep /tmp/wh --breakdown
    .venv/bin/python bench/release_utility_bench.py --periods 2025-Q1 --keep /tmp/wh --no-flags
    .venv/bin/python bench/release_utility_bench.py --recoding-file /tmp/steps.yaml --breakdown
        # recoding steps to try (the `recoding:` section of that file; the engine as shipped)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import polars as pl

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


def not_stated_codes() -> dict[str, set[str]]:
    """Each dimension's "not stated" categories (its `missing` code: `_U`, `U`, `unknown`)."""
    from casepool.catalogue.indicators import load_indicators

    return {
        name: {d.missing}
        for name, d in load_indicators().dimensions.items()
        if d.missing is not None
    }


def cell_breakdown(protected: Any, table: Any, missing: dict[str, set[str]]) -> dict[str, int]:
    """The suppressed cells of one released table by their published flag (conf_status C:
    primary, D: secondary) and how many lie in a "not stated" category (`not_stated`, whatever
    the cause). Read from the published frame; `causes` (suppression_causes) gives the causes."""
    frame = table.frame
    dims = [d for d in table.dimensions if d in frame.columns]
    stated = pl.lit(False)
    for d in dims:
        if missing.get(d):
            stated = stated | pl.col(d).is_in(sorted(missing[d]))
    hidden = frame.filter(pl.col("value").is_null()).with_columns(stated.alias("_not_stated"))
    flagged_c = hidden.filter(pl.col("conf_status") == "C")
    return {
        "flagged_C": flagged_c.height,
        "flagged_D": hidden.height - flagged_c.height,
        "not_stated": int(hidden.get_column("_not_stated").sum()),
        "not_stated_C": int(flagged_c.get_column("_not_stated").sum()),
    }


@contextlib.contextmanager
def flags_unread() -> Iterator[None]:
    """The engine and its audits blind to the published flags (an estimate only: a suppressed
    count flagged C tells a reader it is not 0; a release protected without that reading would
    fail the shipped audit)."""
    audit, releases, secondary = (
        importlib.import_module(f"casepool.protecting.{name}")
        for name in ("audit", "releases", "secondary")
    )
    shipped = audit.SystemAudit

    def blind(*args: Any, **kw: Any) -> Any:
        kw.pop("at_least", None)
        return shipped(*args, **kw)

    with (
        mock.patch.object(audit, "SystemAudit", blind),
        mock.patch.object(secondary, "SystemAudit", blind),
        mock.patch.object(releases, "SystemAudit", blind),
    ):
        yield


def bench(
    periods: tuple[str, ...],
    orgs: int,
    records: int,
    recoding: bool,
    keep: Path | None = None,
    start: Path | None = None,
    save: Path | None = None,
    flags: str | None = None,
    no_flags: bool = False,
    recoding_file: Path | None = None,
    goal: str | None = None,
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

    shipped = load_recoding(recoding_file)  # steps and share; the bench decides if it is on
    settings = replace(shipped, enabled=True) if recoding else shipped.disabled()
    if goal is not None:
        settings = replace(settings, goal=goal)
    releases = []
    missing = not_stated_codes()
    seen: dict[str, dict[str, int]] = {}  # table -> breakdown of its last protection
    causes = publishing.suppression_causes

    def recorded(protected: Any, table: Any, settings: Any) -> dict[str, int]:
        seen[table.name] = cell_breakdown(protected, table, missing)
        return causes(protected, table, settings)

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(publishing, "suppression_causes", recorded))
        if no_flags:
            stack.enter_context(flags_unread())
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="casepool-utility-bench-"))
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
            seen.clear()
            with mock.patch.object(publishing, "protect_tabulations", timed):
                result = publish(
                    warehouse,
                    Path(tmp) / f"pub-{period}",
                    None if period == "all" else period,
                    recoding=settings,
                    settings=protection,
                )
            final = {c.table: c.dimensions_after for c in result.coarsened}  # the last wins
            at_total = [t for t in result.tables if final.get(t.name) == ("period",)]
            row = {
                "period": period,
                "flags": protection.flags,
                "cells": result.cells,
                "suppressed_share": round(result.suppressed_share, 3),
                "published": result.cells - result.suppressed,  # figures a reader gets
                "coarsened": [c.to_dict() for c in result.coarsened],
                "suppressed_by": result.causes,
                "withheld": [t.name for t in result.tables if not t.written],
                # the share rule's last resort: tables published as their total (by period),
                # and those whose total is itself hidden (every cell suppressed)
                "at_total": len(at_total),
                "at_total_suppressed": sum(
                    1 for t in at_total if not t.written or t.suppressed == t.cells
                ),
                "tables": {
                    t.name: {
                        "cells": t.cells,
                        "suppressed": t.suppressed,
                        "coarsened": list(t.coarsened),
                        **t.causes,
                        **seen.get(t.name, {}),
                    }
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


PRIMARY = ("threshold", "dominance", "no_children", "small_denominator", "primary_part")
SECONDARY = ("secondary", "secondary_part")


def breakdown(releases: list[dict]) -> str:
    """Per release and table: cells, suppressed, primary causes (threshold, dominance; for
    shares and medians no children, small denominator, a primary part) and secondary causes
    (a complement; a share over a complement), the suppressed cells in a "not stated" category;
    then the release's shares of cells: all suppressed, primary alone, secondary."""
    lines = []
    for r in releases:
        lines.append(
            f"{r['period']}: {'table':40s} cells supp   thr dom  n/s/p  | sec  s.part | not-stated"
            "  coarsened"
        )
        total = dict.fromkeys(("cells", "suppressed", "primary", "secondary", "not_stated"), 0)
        for name, t in r["tables"].items():
            primary = sum(t.get(c, 0) for c in PRIMARY)
            secondary = sum(t.get(c, 0) for c in SECONDARY)
            shares = "/".join(
                str(t.get(c, 0)) for c in ("no_children", "small_denominator", "primary_part")
            )
            lines.append(
                f"  {name:46s} {t['cells']:4d} {t['suppressed']:4d}  {t.get('threshold', 0):3d}"
                f" {t.get('dominance', 0):3d}  {shares:6s} | {t.get('secondary', 0):3d}"
                f"  {t.get('secondary_part', 0):3d}    | {t.get('not_stated', 0):3d}"
                f"         {'; '.join(t.get('coarsened', [])) or '-'}"
            )
            total["cells"] += t["cells"]
            total["suppressed"] += t["suppressed"]
            total["primary"] += primary
            total["secondary"] += secondary
            total["not_stated"] += t.get("not_stated", 0)
        cells = max(total["cells"], 1)
        lines.append(
            f"  all: {total['cells']} cells, {total['suppressed']} suppressed"
            f" ({100 * total['suppressed'] / cells:.1f} %): primary causes {total['primary']}"
            f" ({100 * total['primary'] / cells:.1f} %), secondary causes {total['secondary']}"
            f" ({100 * total['secondary'] / cells:.1f} %); in a not-stated category"
            f" {total['not_stated']} ({100 * total['not_stated'] / cells:.1f} %)"
        )
    return "\n".join(lines)


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
    parser.add_argument("--breakdown", action="store_true", help="primary/secondary per table")
    parser.add_argument(
        "--no-flags", action="store_true", help="estimate: the engine blind to the flags"
    )
    parser.add_argument(
        "--recoding-file", type=Path, help="a protection.yaml whose recoding: steps to try"
    )
    parser.add_argument("--goal", choices=("share", "figures"), help="recoding's rule to measure")
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
        args.no_flags,
        args.recoding_file,
        args.goal,
    )
    if args.breakdown:
        print(breakdown(releases))
    print(
        "\n".join(
            f"{r['period']:>8}  {r['cells']:5d} cells  {100 * r['suppressed_share']:5.1f} % suppressed"
            f"  {r['published']:4d} published  flags {r['flags']}"
            f"  at total {r['at_total']} ({r['at_total_suppressed']} hidden)"
            f"  protect CPU {r['protect_cpu']} s (publish CPU {r['cpu']} s)"
            f"  by cause: {', '.join(f'{k} {v}' for k, v in r['suppressed_by'].items() if v)}"
            f"  coarsened: {', '.join(c['table'] + ' (' + c['how'] + ')' for c in r['coarsened']) or '-'}"
            for r in releases
        )
    )


if __name__ == "__main__":
    main()
