"""Synthetic CSO exports with ground truth: `synthesize` writes exports, mappings and truth.json."""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from casepool.core.errors import UsageError
from casepool.core.schema import CaseSchema, load_schema
from casepool.synthesis.dialects import DIALECTS, Dialect
from casepool.synthesis.distributions import (
    Cases,
    Organisation,
    add_cross_org_copies,
    day_number,
    draw_children,
    draw_ethnicity,
    load_settings,
)
from casepool.synthesis.errors import check_kinds, inject
from casepool.synthesis.identities import arabic_pools, draw_identity_keys, kurdish_pools
from casepool.synthesis.truth import ExportTruth, place_identifiers, write_truth
from casepool.synthesis.writing import (
    XLSX_MAX_ROWS,
    Context,
    layout,
    write_export,
)

FORMATS = ("mixed", "csv", "parquet")
EARLIEST_START = date(2012, 1, 1)
Progress = Callable[[int, int], None]


@dataclass
class SynthesisResult:
    """What `synthesize` wrote."""

    out: Path
    records: int
    today: date
    exports: list[ExportTruth] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return sum(e.error_count for e in self.exports)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "records": self.records,
            "today": self.today.isoformat(),
            "truth": "truth.json",
            "exports": [
                {
                    "file": e.file,
                    "mapping": e.mapping,
                    "dialect": e.dialect,
                    "rows": e.rows,
                    "errors": e.error_count,
                    "no_consent": len(e.no_consent_rows),
                }
                for e in self.exports
            ],
        }


def parse_month(text: str, option: str) -> tuple[int, int]:
    """(year, month) from "2024-03"."""
    try:
        year, month = (int(part) for part in text.split("-"))
        date(year, month, 1)
    except ValueError:
        raise UsageError("synth-bad-month", option=option, value=text) from None
    return year, month


def _check(
    orgs: int, records: int, error_rate: float, fmt: str, start: date, end: date, today: date
) -> None:
    if orgs < 1:
        raise UsageError("synth-bad-count", option="--orgs", minimum=1)
    if records < orgs:
        raise UsageError("synth-bad-count", option="--records", minimum=orgs)
    if not 0 <= error_rate <= 0.05:
        raise UsageError("synth-bad-error-rate", value=error_rate)
    if fmt not in FORMATS:
        raise UsageError("synth-bad-format", value=fmt, formats=", ".join(FORMATS))
    # Validate reads dates before 1990 as errors: a child 17 at an incident up to three years
    # before a 2012 registration was born after 1990, so clean rows stay clean.
    if start < EARLIEST_START or end < start:
        raise UsageError("synth-bad-period", start=start.isoformat(), end=end.isoformat())
    if today < end:
        raise UsageError("synth-bad-today", today=today.isoformat(), end=end.isoformat())


def _dialect(org: Organisation, fmt: str) -> Dialect:
    if fmt == "csv":
        return DIALECTS["canonical_csv"]
    if fmt == "parquet":
        return DIALECTS["canonical_parquet"]
    return DIALECTS[org.dialect]


def synthesize(
    out: str | Path,
    *,
    orgs: int = 6,
    records: int = 3000,
    seed: int = 2025,
    error_rate: float = 0.01,
    start: str = "2023-01",
    end: str = "2025-12",
    today: date | None = None,
    fmt: str = "mixed",
    progress: Progress | None = None,
) -> SynthesisResult:
    """Write one export per organisation, a mapping for each non-canonical one, and truth.json.

    The same arguments give byte-identical files. `error_rate` is the share of rows given each
    kind of error (so 0.01 puts about 12% of rows in error); `today` (default: the last day of
    `end`) is the date future dates are judged against.
    """
    y0, m0 = parse_month(start, "--start")
    y1, m1 = parse_month(end, "--end")
    first, last = date(y0, m0, 1), date(y1, m1, calendar.monthrange(y1, m1)[1])
    today = today or last
    _check(orgs, records, error_rate, fmt, first, last, today)
    check_kinds()
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    notify = progress or (lambda done, total: None)

    schema = load_schema()
    settings = load_settings()
    organisations = settings.organisations(orgs)
    dialects = [_dialect(o, fmt) for o in organisations]
    rng = np.random.default_rng(seed)

    cases = draw_children(settings, schema, organisations, records, first, last, rng)
    for name, values in draw_identity_keys(records, rng).items():
        cases[f"key_{name}"] = values
    draw_ethnicity(cases, organisations, rng)
    add_cross_org_copies(cases, organisations, settings["reported_elsewhere_copies"], rng)
    bounds = np.searchsorted(cases["org"], np.arange(orgs + 1), side="left")
    for i, dialect in enumerate(dialects):
        if dialect.suffix == ".xlsx" and bounds[i + 1] - bounds[i] > XLSX_MAX_ROWS:
            raise UsageError("synth-xlsx-too-large", records=records)
    _number_cases(cases, bounds, rng)

    pools = {
        "arabic": arabic_pools(seed),
        "kurdish": kurdish_pools("ckb"),
        "kurdish_latin": kurdish_pools("latin"),
    }
    ctx = Context(schema=schema, settings=settings, pools=pools, seed=seed)
    result = SynthesisResult(out=folder, records=records, today=today)
    done = 0

    def advance(rows: int) -> None:
        nonlocal done
        done += rows
        notify(done, records)

    for i, (org, dialect) in enumerate(zip(organisations, dialects, strict=True)):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        injected, overrides = inject(
            cases, lo, hi, dialect, schema, error_rate, day_number(today), rng
        )
        file_name = f"{org.slug}{dialect.suffix}"
        written = write_export(
            folder / file_name, org, dialect, cases, lo, hi, overrides, ctx, advance
        )
        mapping_name = None
        if dialect.mapping:
            mapping_name = f"{org.slug}.mapping.yaml"
            (folder / mapping_name).write_text(mapping_yaml(dialect, schema, org), encoding="utf-8")
        truth = ExportTruth(
            file=file_name,
            organisation=org.name,
            dialect=dialect.name,
            mapping=mapping_name,
            encoding=dialect.encoding if dialect.suffix == ".csv" else None,
            rows=hi - lo,
            errors=injected.with_columns(pl.col("row") - lo + 2),
            no_consent_rows=(np.flatnonzero(cases["consent_statistics"][lo:hi] == 1) + 2).tolist(),
            identifier_columns={
                c.name: c.header
                for c in layout(dialect, schema)
                if c.kind == "identifier" or c.name in {"case_id", "date_of_birth"}
            },
            notes_mentioning_identifiers=[
                int(r) + 2
                for r in np.sort(np.concatenate([np.zeros(0, np.int64), *written.mention_rows]))
            ],
        )
        place_identifiers(truth, written)
        result.exports.append(truth)
    doubles = _double_registrations(cases, bounds, [e.file for e in result.exports])
    write_truth(
        folder / "truth.json",
        {
            "seed": seed,
            "organisations": orgs,
            "records": records,
            "error_rate": error_rate,
            "start": start,
            "end": end,
            "today": today.isoformat(),
            "format": fmt,
            "schema_version": schema.version,
        },
        result.exports,
        doubles,
    )
    return result


def _number_cases(cases: Cases, bounds: np.ndarray, rng: np.random.Generator) -> None:
    """Case numbers per organisation, in registration order, starting somewhere realistic."""
    seq = np.zeros(cases.size, dtype=np.int64)
    for i in range(len(bounds) - 1):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        seq[lo:hi] = np.arange(1, hi - lo + 1) + int(rng.integers(0, 400))
    cases["case_seq"] = seq
    years = cases["report_date"].astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64)
    cases["case_year"] = years + 1970


def _double_registrations(
    cases: Cases, bounds: np.ndarray, files: list[str]
) -> list[list[dict[str, Any]]]:
    """Pairs of rows in two exports that are the same child (flagged reported_elsewhere)."""
    copied = np.unique(cases["child"][cases["copy"]])
    rows = np.flatnonzero(np.isin(cases["child"], copied) & (cases["reported_elsewhere"] == 0))
    org = cases["org"][rows].astype(np.int64)
    pairs = (
        pl.DataFrame({"child": cases["child"][rows], "org": org, "row": rows - bounds[org] + 2})
        .sort("child", "org")
        .group_by("child", maintain_order=True)
        .agg("org", "row")
        .filter(pl.col("row").list.len() == 2)
    )
    return [
        [{"file": files[o], "row": r} for o, r in zip(orgs, rows_, strict=True)]
        for orgs, rows_ in pairs.select("org", "row").iter_rows()
    ]


def mapping_yaml(dialect: Dialect, schema: CaseSchema, org: Organisation) -> str:
    """The mapping an organisation would write for its export (casepool mapping format 1)."""
    columns: dict[str, str | None] = {}
    details: dict[str, dict[str, str]] = {}
    for c in layout(dialect, schema):
        if c.kind == "field":
            columns[c.header] = c.name
        elif c.kind == "detail" and c.name in dialect.detail_fields:
            details[c.header] = {"field": c.name, "code": c.code or ""}
        else:
            columns[c.header] = None  # identifiers, system and unused summary/detail columns
    values = {
        name: {text: code for code, text in table.items()}
        for name, table in dialect.value_overrides.items()
    }
    document: dict[str, Any] = {"mapping_version": 1, "columns": columns}
    if details:
        document["detail_columns"] = details
    if values:
        document["values"] = values
    document["date_order"] = dialect.date_order
    header = (
        f"# Mapping of {org.name}'s {dialect.name} export (synthetic, made by casepool synth).\n"
        "# columns: export header -> case-record field; null: not submitted.\n"
    )
    return header + yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=120)


__all__ = ["FORMATS", "SynthesisResult", "mapping_yaml", "synthesize"]
