"""casepool: pool de-identified case records into protected nationwide statistics.

The verbs a notebook user needs, one per stage of the path data takes::

    import casepool
    checked = casepool.validate("export.xlsx")            # intake: a ValidationResult
    outcome = casepool.submit("export.xlsx", org="ORG-01", period="2025", key_dir="keys", outbox="out")
    report = casepool.ingest(["out/"], "warehouse.duckdb")  # warehouse: an IngestReport
    result = casepool.publish("warehouse.duckdb", "publication/")
    answer = casepool.query("warehouse.duckdb", indicator="registered_cases", by=("governorate",))
    casepool.report("warehouse.duckdb", "report.html")
    casepool.synthesize("exports/", orgs=3, records=500)

Each returns data with `to_dict()`; nothing prints and nothing exits. The verbs are imported on
first use, so `import casepool` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from casepool.core.resources import VERSION as __version__

# verb or result type -> (module, name)
_FACADE: dict[str, tuple[str, str]] = {
    "validate": ("casepool.intake.validating", "validate_export"),
    "ValidationResult": ("casepool.intake.validating", "ValidationResult"),
    "submit": ("casepool.intake.submit", "submit_export"),
    "SubmitOutcome": ("casepool.intake.submit", "SubmitOutcome"),
    "ingest": ("casepool.warehouse.ingest", "ingest_packages"),
    "IngestReport": ("casepool.warehouse.ingest", "IngestReport"),
    "publish": ("casepool.publishing.publish", "publish"),
    "PublishResult": ("casepool.publishing.publish", "PublishResult"),
    "query": ("casepool.publishing.query", "query"),
    "QueryResult": ("casepool.publishing.query", "QueryResult"),
    "report": ("casepool.reporting", "write_report"),
    "ReportResult": ("casepool.reporting", "ReportResult"),
    "synthesize": ("casepool.synthesis", "synthesize"),
    "SynthesisResult": ("casepool.synthesis", "SynthesisResult"),
    "CasepoolError": ("casepool.core.errors", "CasepoolError"),
}

__all__ = ["__version__", *_FACADE]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _FACADE[name]
    except KeyError:
        raise AttributeError(f"module 'casepool' has no attribute {name!r}") from None
    value = getattr(import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
