"""Signed submission packages: write one from an export (`submit`), open and verify one (`ingest`).

A package is a zip holding exactly three members: cases.parquet (the de-identified rows),
manifest.json (what, who, when, counts, SHA-256 of the data) and manifest.sig (the organisation's
Ed25519 signature over the exact bytes of manifest.json, base64).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from casepool.core.errors import PackageError
from casepool.core.periods import parse_period
from casepool.core.reading import BATCH_ROWS
from casepool.core.resources import VERSION
from casepool.core.schema import CaseSchema, load_schema
from casepool.exchange.aggregate import AGGREGATE, aggregate_bytes, aggregate_manifest
from casepool.exchange.keys import OrgKeys, load_keys, org_code, public_key_id
from casepool.exchange.package import (
    DATA,
    FORMAT_VERSION,
    MANIFEST,
    SIGNATURE,
    SUFFIX,
    package_name,
    write_rows,
)
from casepool.exchange.profile import ROW, package_fields
from casepool.intake.deidentifying import BatchedSubmission, Submission, prepare_submission

# Submit holds more per record than validate (pseudonyms, spilled rows, local suppression's
# codes), so it reads in half validate's batches: at 1M records its peak fell from 675-693 MB
# (2.0-2.1x the 337 MB input) to about 590 MB (1.76x), its time unchanged (bench/run.py, quiet
# machine, 2026-12-01). The package is the same whatever the batch size.
SUBMIT_BATCH_ROWS = BATCH_ROWS // 2


def build_manifest(
    submission: Submission,
    keys: OrgKeys,
    data: bytes | tuple[str, int],
    created: datetime,
    schema: CaseSchema,
) -> dict[str, Any]:
    """The manifest of a package: everything the steward checks before trusting the data.

    `data` is the data member's bytes, or its SHA-256 (hex) and size when it was written to a
    file rather than held in memory."""
    assert submission.k_anonymity is not None
    digest, size = (
        (hashlib.sha256(data).hexdigest(), len(data)) if isinstance(data, bytes) else data
    )
    return {
        "package_format": FORMAT_VERSION,
        "schema": {"name": schema.name, "version": schema.version},
        "casepool_version": VERSION,
        "org": submission.org,
        "period": submission.period.code,
        "created": created.astimezone(UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z"),
        "signing_key_id": public_key_id(keys.public_key),
        "pseudonym_key_id": keys.pseudonym_key_id,
        "rows": {"in_export": submission.rows_in_export, "submitted": submission.rows_kept},
        "dropped": dict(submission.dropped),
        "dropped_columns": len(submission.dropped_columns),
        "generalisation": submission.generalisation,
        "profile": submission.profile.to_dict() if submission.profile else None,
        "k_anonymity": submission.k_anonymity.to_dict(),
        "local_suppression": submission.suppression.to_dict() if submission.suppression else None,
        "risk_before_suppression": (
            submission.risk_before.to_dict() if submission.risk_before else None
        ),
        "columns": [{"name": n, "type": str(t)} for n, t in package_fields(schema)],
        "data": {"file": DATA, "sha256": digest, "bytes": size},
    }


def write_package(
    submission: Submission,
    keys: OrgKeys,
    outbox: str | Path,
    *,
    created: datetime | None = None,
    schema: CaseSchema | None = None,
    aggregate: pl.DataFrame | None = None,
) -> Path:
    """Write the signed package to `outbox`; a temporary name is renamed only when complete.
    With `aggregate` (intake/aggregate.py) the package carries those counts instead of the rows."""
    schema = schema or load_schema()
    if not submission.ready or (submission.frame is None and submission.rows_file is None):
        raise PackageError("package-not-ready", status=submission.status)
    created = created or datetime.now(UTC)
    member = DATA if aggregate is None else AGGREGATE
    outbox = Path(outbox)
    try:
        outbox.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=".", suffix=".partial", dir=outbox)
    except OSError as exc:
        raise PackageError("package-unwritable", path=str(outbox), reason=exc.strerror) from exc
    temp = Path(temp_name)
    rows_file: Path | None = None
    source: Path | None = None
    try:
        data: bytes | tuple[str, int]
        if aggregate is None and submission.frame is None:
            # Written batch by batch already (BatchedSubmission); its owner removes the file.
            source = submission.rows_file
            assert source is not None
            data = (_sha256_of(source), source.stat().st_size)
        elif aggregate is None:
            assert submission.frame is not None
            # The rows' Parquet goes to a file beside the package, never whole in memory: it is
            # hashed and copied into the zip a block at a time (the same bytes as in memory).
            fd, rows_name = tempfile.mkstemp(prefix=".", suffix=".parquet.partial", dir=outbox)
            os.close(fd)
            rows_file = source = Path(rows_name)
            write_rows(rows_file, [submission.frame.drop(ROW)], schema)
            data = (_sha256_of(rows_file), rows_file.stat().st_size)
        else:
            data = aggregate_bytes(aggregate)
        manifest = build_manifest(submission, keys, data, created, schema)
        if aggregate is not None:
            manifest |= aggregate_manifest(aggregate, submission.rows_kept)
            manifest["data"]["file"] = AGGREGATE
        manifest_bytes = json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True).encode()
        signature = base64.b64encode(keys.sign(manifest_bytes)) + b"\n"
        stamp = created.astimezone(UTC).timetuple()[:6]
        with os.fdopen(handle, "wb") as raw, zipfile.ZipFile(raw, "w") as archive:
            for name, payload, method in (
                (MANIFEST, manifest_bytes, zipfile.ZIP_DEFLATED),
                (SIGNATURE, signature, zipfile.ZIP_STORED),
                (member, data, zipfile.ZIP_STORED),  # Parquet is compressed already
            ):
                info = zipfile.ZipInfo(name, date_time=stamp)
                info.compress_type = method
                if isinstance(payload, bytes):
                    archive.writestr(info, payload)
                else:  # as writestr does it: the size set first, then the bytes streamed
                    assert source is not None
                    info.file_size = payload[1]
                    with archive.open(info, "w") as dest, source.open("rb") as block:
                        shutil.copyfileobj(block, dest, _COPY_BYTES)
            archive.close()
            raw.flush()
            os.fsync(raw.fileno())
        target = _free_name(outbox, package_name(submission.org, submission.period, created))
        os.replace(temp, target)
    except OSError as exc:
        raise PackageError("package-unwritable", path=str(outbox), reason=exc.strerror) from exc
    finally:
        temp.unlink(missing_ok=True)
        if rows_file is not None:
            rows_file.unlink(missing_ok=True)
    return target


_COPY_BYTES = 1 << 20


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_COPY_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _free_name(outbox: Path, name: str) -> Path:
    """`name` in `outbox`, or name-2, name-3... when a package was written in the same second."""
    target = outbox / name
    stem = name.removesuffix(SUFFIX)
    n = 1
    while target.exists():
        n += 1
        target = outbox / f"{stem}-{n}{SUFFIX}"
    return target


@dataclass
class SubmitOutcome:
    """What submit did: the validation it ran, the submission it prepared, the package it wrote."""

    validation: Any  # casepool.intake.validating.ValidationResult
    submission: Submission
    package: Path | None
    counts: int | None = None  # rows of aggregate.parquet when the package is aggregate-only

    @property
    def accepted(self) -> bool:
        return self.package is not None

    def to_dict(self) -> dict[str, Any]:
        out = self.submission.to_dict() | {"package": str(self.package) if self.package else None}
        out["kind"] = "aggregate" if self.counts is not None else "records"
        if self.counts is not None:
            out["aggregate_rows"] = self.counts
        if self.submission.status == "invalid-records":
            out["validation"] = self.validation.to_dict()
        return out


def _hand_over_records(result: Any) -> Any:
    """The validated records, leaving the result only the columns its report reads (`_row`,
    case number, consent): de-identification then holds the only reference to the rest and
    frees it once filtered, instead of keeping a second copy through the whole submission."""
    records = result.records
    result.records = records.select(ROW, "case_id", "consent_statistics")
    return records


def submit_export(
    export: str | Path,
    *,
    org: str,
    period: str,
    key_dir: str | Path,
    outbox: str | Path,
    passphrase: str | None = None,
    mapping: str | Path | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    drop_invalid: bool = False,
    min_k: int | None = None,
    k_threshold: int | None = None,
    suppress: bool = True,
    today: date | None = None,
    created: datetime | None = None,
    progress: Callable[[str], None] | None = None,
    aggregate: bool = False,
    batch_rows: int | None = SUBMIT_BATCH_ROWS,
) -> SubmitOutcome:
    """Validate an export exactly as `validate` does, de-identify it, and write a signed package.

    `batch_rows` is validate's (None: the whole file at once); the package is the same. Read in
    batches, each validated batch is de-identified at once and spilled beside the package
    (BatchedSubmission): neither the records nor the package rows are ever whole in memory.
    """
    from casepool.intake.validating import validate_export

    code = org_code(org)
    when = parse_period(period)
    # Before reading a big export: fail fast on missing keys or a wrong passphrase.
    keys = load_keys(key_dir, code, passphrase)
    schema = load_schema()
    outbox = Path(outbox)
    spill: Path | None = None
    builder: BatchedSubmission | None = None
    if batch_rows:
        try:
            outbox.mkdir(parents=True, exist_ok=True)
            spill = Path(tempfile.mkdtemp(prefix=".", suffix=".partial", dir=outbox))
        except OSError as exc:
            raise PackageError("package-unwritable", path=str(outbox), reason=exc.strerror) from exc
        builder = BatchedSubmission(
            org=code,
            period=when,
            secret=keys.pseudonym_secret,
            spill_dir=spill,
            k_threshold=k_threshold,
            min_k=min_k,
            schema=schema,
            suppress=suppress,
        )
    try:
        result = validate_export(
            export,
            mapping,
            encoding=encoding,
            sheet=sheet,
            today=today,
            progress=progress,
            batch_rows=batch_rows,
            keep_records=builder is None,
            on_records=None if builder is None else builder.add,
        )
        if builder is not None and not result.export.batched:
            builder = None  # read whole after all (XLSX, lines with the wrong number of cells)
        if progress:
            progress("de-identify")
        # Input-only columns (date of birth) are dropped too, once turned into what they derive.
        sources = result.mapped_columns
        dropped = list(result.extra_columns) + [
            sources[f.name] for f in schema.fields if f.input_only and f.name in sources
        ]
        transformed = [
            sources[f.name] for f in schema.fields if f.type == "identifier" and f.name in sources
        ]
        options: dict[str, Any] = {
            "invalid_rows": result.invalid_rows,
            "drop_invalid": drop_invalid,
            "raw": lambda: result.raw,  # the whole export is read again only if the scan needs it
            "dropped_columns": dropped,
            "identifier_columns": [*dropped, *transformed],
            "unread_rows": len(result.export.ragged),
        }
        if builder is not None:
            assert spill is not None
            submission = builder.finish(
                rows_file=spill / DATA,
                write=lambda path, frames: write_rows(path, frames, schema),
                **options,
            )
        else:
            if spill is not None:  # a batch or two may have been spilled before the whole read
                for path in spill.glob("spill-*.parquet"):
                    path.unlink()
            submission = prepare_submission(
                _hand_over_records(result),
                org=code,
                period=when,
                secret=keys.pseudonym_secret,
                k_threshold=k_threshold,
                min_k=min_k,
                schema=schema,
                suppress=suppress,
                **options,
            )
        package, counts = None, None
        if submission.ready:
            if progress:
                progress("write")
            if aggregate:  # counts instead of records (docs/data-officer-guide.md)
                from casepool.intake.aggregate import aggregate_rows

                counts = aggregate_rows(submission)
            package = write_package(
                submission, keys, outbox, created=created, schema=schema, aggregate=counts
            )
    finally:
        if spill is not None:
            shutil.rmtree(spill, ignore_errors=True)
    submission.rows_file = None  # removed with the spill
    return SubmitOutcome(
        validation=result,
        submission=submission,
        package=package,
        counts=counts.height if aggregate and counts is not None else None,
    )
