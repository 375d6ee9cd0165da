"""The whole path on synthetic data in one call: synth, validate, keygen, submit, ingest, publish."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from casepool.core.errors import UsageError

Stage = Callable[[str, str], None]  # (stage name, one-line detail)


@dataclass
class DemoResult:
    """Where each stage wrote its output, and what it counted."""

    workdir: Path
    exports: int = 0
    records: int = 0
    invalid_rows: int = 0
    packages: list[Path] = field(default_factory=list)
    refused_submissions: int = 0
    warehouse: Path | None = None
    cases_in_warehouse: int = 0
    publication: Path | None = None
    report: Path | None = None
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir),
            "exports": self.exports,
            "records": self.records,
            "invalid_rows": self.invalid_rows,
            "packages": [str(p) for p in self.packages],
            "refused_submissions": self.refused_submissions,
            "warehouse": str(self.warehouse) if self.warehouse else None,
            "cases_in_warehouse": self.cases_in_warehouse,
            "publication": str(self.publication) if self.publication else None,
            "report": str(self.report) if self.report else None,
            "skipped": self.skipped,
        }


def run_demo(
    workdir: str | Path,
    *,
    orgs: int = 6,
    records: int = 3000,
    seed: int = 2025,
    today: date | None = None,
    fresh: bool = True,
    stage: Stage | None = None,
) -> DemoResult:
    """Run every stage that exists on synthetic data under `workdir` (emptied first when `fresh`)."""
    from casepool.exchange.keys import generate_keys
    from casepool.intake.submit import submit_export
    from casepool.intake.validating import validate_export
    from casepool.synthesis import synthesize
    from casepool.warehouse.ingest import ingest_packages
    from casepool.warehouse.organisations import add_organisation
    from casepool.warehouse.status import table_counts

    notify = stage or (lambda name, detail: None)
    root = Path(workdir)
    if fresh and root.exists():
        if not (root / ".casepool-demo").exists() and any(root.iterdir()):
            raise UsageError(
                "usage-error", reason=f"{root} is not empty and was not made by casepool demo"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / ".casepool-demo").write_text("made by casepool demo\n", encoding="utf-8")
    result = DemoResult(workdir=root)

    start, end = "2023-01", "2025-12"
    synthesis = synthesize(
        root / "exports", orgs=orgs, records=records, seed=seed, start=start, end=end, today=today
    )
    result.exports = len(synthesis.exports)
    notify("synth", f"{synthesis.records:,} records in {result.exports} exports")

    for export in synthesis.exports:
        mapping = root / "exports" / export.mapping if export.mapping else None
        checked = validate_export(root / "exports" / export.file, mapping, today=synthesis.today)
        result.records += checked.rows
        result.invalid_rows += len(checked.invalid_rows)
    notify("validate", f"{result.records:,} rows, {result.invalid_rows:,} with errors")

    warehouse = root / "warehouse.duckdb"
    outbox = root / "outbox"
    years = range(int(start[:4]), int(end[:4]) + 1)
    for number, export in enumerate(synthesis.exports, start=1):
        org = f"ORG-{number:02d}"
        keys = generate_keys(org, root / "keys" / org)
        add_organisation(warehouse, org, f"{export.organisation} (synthetic)", keys.public)
        mapping = root / "exports" / export.mapping if export.mapping else None
        for year in years:
            outcome = submit_export(
                root / "exports" / export.file,
                org=org,
                period=str(year),
                key_dir=root / "keys" / org,
                outbox=outbox,
                mapping=mapping,
                drop_invalid=True,
                today=synthesis.today,
            )
            if outcome.accepted and outcome.package is not None:
                result.packages.append(outcome.package)
            else:
                result.refused_submissions += 1
    notify("submit", f"{len(result.packages)} signed packages in {outbox}")

    report = ingest_packages([outbox], warehouse)
    result.warehouse = warehouse
    result.cases_in_warehouse = table_counts(warehouse).get("active_cases", 0)
    notify("ingest", f"{len(report.refused)} refused; {result.cases_in_warehouse:,} active cases")

    from casepool.catalogue.population import load_synthetic_population
    from casepool.warehouse.store import open_warehouse

    with open_warehouse(warehouse) as con:
        load_synthetic_population(con)  # labelled SYNTHETIC in every output, for the rates
    _publish_and_report(result, warehouse, root, notify)
    return result


def _publish_and_report(result: DemoResult, warehouse: Path, root: Path, notify: Stage) -> None:
    """The analyst's stages, when this version of casepool has them."""
    try:
        from casepool.publishing.publish import publish
    except ImportError:
        result.skipped.append("publish")
        return
    out = root / "publication"
    publish(warehouse, out)
    result.publication = out
    notify("publish", f"protected tables in {out}")
    try:
        from casepool.reporting import write_report
    except ImportError:
        result.skipped.append("report")
        return
    target = root / "report.html"
    write_report(warehouse, target, publication=out)  # the report shows exactly this publication
    result.report = target
    notify("report", str(target))
