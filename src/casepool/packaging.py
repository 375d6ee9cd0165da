"""Signed submission packages: write one from an export (`submit`), open and verify one (`ingest`).

A package is a zip holding exactly three members: cases.parquet (the de-identified rows),
manifest.json (what, who, when, counts, SHA-256 of the data) and manifest.sig (the organisation's
Ed25519 signature over the exact bytes of manifest.json, base64).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import casepool
from casepool.deidentifying import (
    AGE_BAND,
    AGE_BAND_CODES,
    DEFAULT_K,
    PSEUDONYM,
    ROW,
    Submission,
    package_fields,
    prepare_submission,
)
from casepool.errors import PackageError, UsageError
from casepool.keys import OrgKeys, load_keys, org_code, public_key_id, verify
from casepool.periods import Period, parse_period
from casepool.schema import CaseSchema, load_schema

FORMAT_VERSION = 1
SUPPORTED_FORMATS = frozenset({1})
DATA, MANIFEST, SIGNATURE = "cases.parquet", "manifest.json", "manifest.sig"
MEMBERS = frozenset({DATA, MANIFEST, SIGNATURE})
SUFFIX = ".casepool.zip"
# Size limits guard the steward's machine against hostile or broken packages (zip bombs).
MAX_PACKAGE_BYTES = 2 * 1024**3
MAX_DATA_BYTES = 2 * 1024**3
MAX_MANIFEST_BYTES = 1024**2
MAX_SIGNATURE_BYTES = 1024
MAX_COMPRESSION_RATIO = 200
_LIMITS = {DATA: MAX_DATA_BYTES, MANIFEST: MAX_MANIFEST_BYTES, SIGNATURE: MAX_SIGNATURE_BYTES}
_CHUNK = 1024**2


# --- writing -------------------------------------------------------------------------------------


def build_manifest(
    submission: Submission,
    keys: OrgKeys,
    data: bytes,
    created: datetime,
    schema: CaseSchema,
) -> dict[str, Any]:
    """The manifest of a package: everything the steward checks before trusting the data."""
    assert submission.k_anonymity is not None
    return {
        "package_format": FORMAT_VERSION,
        "schema": {"name": schema.name, "version": schema.version},
        "casepool_version": casepool.__version__,
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
        "generalisation": submission.step.name,
        "k_anonymity": submission.k_anonymity.to_dict(),
        "columns": [{"name": n, "type": str(t)} for n, t in package_fields(schema)],
        "data": {"file": DATA, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)},
    }


def package_name(org: str, period: Period, created: datetime) -> str:
    return f"{org}_{period.code}_{created.astimezone(UTC):%Y%m%dT%H%M%SZ}{SUFFIX}"


def write_package(
    submission: Submission,
    keys: OrgKeys,
    outbox: str | Path,
    *,
    created: datetime | None = None,
    schema: CaseSchema | None = None,
) -> Path:
    """Write the signed package to `outbox`; a temporary name is renamed only when complete."""
    schema = schema or load_schema()
    if not submission.ready or submission.frame is None:
        raise PackageError("package-not-ready", status=submission.status)
    created = created or datetime.now(UTC)
    rows = submission.frame.drop(ROW)
    buffer = io.BytesIO()
    rows.write_parquet(buffer, compression="zstd", statistics=True)
    data = buffer.getvalue()
    manifest = build_manifest(submission, keys, data, created, schema)
    manifest_bytes = json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True).encode()
    signature = base64.b64encode(keys.sign(manifest_bytes)) + b"\n"

    outbox = Path(outbox)
    try:
        outbox.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=".", suffix=".partial", dir=outbox)
    except OSError as exc:
        raise PackageError("package-unwritable", path=str(outbox), reason=exc.strerror) from exc
    temp = Path(temp_name)
    stamp = created.astimezone(UTC).timetuple()[:6]
    try:
        with os.fdopen(handle, "wb") as raw, zipfile.ZipFile(raw, "w") as archive:
            for name, payload, method in (
                (MANIFEST, manifest_bytes, zipfile.ZIP_DEFLATED),
                (SIGNATURE, signature, zipfile.ZIP_STORED),
                (DATA, data, zipfile.ZIP_STORED),  # Parquet is compressed already
            ):
                info = zipfile.ZipInfo(name, date_time=stamp)
                info.compress_type = method
                archive.writestr(info, payload)
            archive.close()
            raw.flush()
            os.fsync(raw.fileno())
        target = _free_name(outbox, package_name(submission.org, submission.period, created))
        os.replace(temp, target)
    except OSError as exc:
        raise PackageError("package-unwritable", path=str(outbox), reason=exc.strerror) from exc
    finally:
        temp.unlink(missing_ok=True)
    return target


def _free_name(outbox: Path, name: str) -> Path:
    """`name` in `outbox`, or name-2, name-3... when a package was written in the same second."""
    target = outbox / name
    stem = name.removesuffix(SUFFIX)
    n = 1
    while target.exists():
        n += 1
        target = outbox / f"{stem}-{n}{SUFFIX}"
    return target


# --- submit: validate, de-identify, write --------------------------------------------------------


@dataclass
class SubmitOutcome:
    """What submit did: the validation it ran, the submission it prepared, the package it wrote."""

    validation: Any  # casepool.validating.ValidationResult
    submission: Submission
    package: Path | None

    @property
    def accepted(self) -> bool:
        return self.package is not None

    def to_dict(self) -> dict[str, Any]:
        out = self.submission.to_dict() | {"package": str(self.package) if self.package else None}
        if self.submission.status == "invalid-records":
            out["validation"] = self.validation.to_dict()
        return out


def submit_export(
    export: str | Path,
    *,
    org: str,
    period: str,
    key_dir: str | Path,
    outbox: str | Path,
    mapping: str | Path | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    drop_invalid: bool = False,
    min_k: int | None = None,
    k_threshold: int = DEFAULT_K,
    today: date | None = None,
    created: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> SubmitOutcome:
    """Validate an export exactly as `validate` does, de-identify it, and write a signed package."""
    from casepool.validating import validate_export

    code = org_code(org)
    when = parse_period(period)
    keys = load_keys(key_dir, code)  # before reading a big export: fail fast on missing keys
    schema = load_schema()
    result = validate_export(
        export, mapping, encoding=encoding, sheet=sheet, today=today, progress=progress
    )
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
    submission = prepare_submission(
        result.records,
        org=code,
        period=when,
        secret=keys.pseudonym_secret,
        invalid_rows=result.invalid_rows,
        drop_invalid=drop_invalid,
        raw=lambda: result.raw,  # the whole export is read again only if the scan needs it
        dropped_columns=dropped,
        identifier_columns=[*dropped, *transformed],
        k_threshold=k_threshold,
        min_k=min_k,
        schema=schema,
    )
    package = None
    if submission.ready:
        if progress:
            progress("write")
        package = write_package(submission, keys, outbox, created=created, schema=schema)
    return SubmitOutcome(validation=result, submission=submission, package=package)


# --- reading and verifying -----------------------------------------------------------------------


@dataclass
class VerifiedPackage:
    """A package whose signature, checksum, versions and contents have all been checked."""

    path: Path
    submission_id: str  # SHA-256 of the signed manifest: the same package always has the same id
    manifest: dict[str, Any]
    manifest_text: str
    cases: pl.DataFrame
    signature: str = ""  # base64 Ed25519 signature over manifest_text, kept for later checks

    @property
    def org(self) -> str:
        return str(self.manifest["org"])

    @property
    def period(self) -> Period:
        return parse_period(self.manifest["period"])

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(str(self.manifest["created"]).replace("Z", "+00:00"))


def _refuse(key: str, path: Path, **params: object) -> PackageError:
    return PackageError(key, package=path.name, **params)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> bytes:
    """A member's bytes, reading no more than its size limit whatever its header claims."""
    limit = _LIMITS[info.filename]
    if info.file_size > limit:
        raise _refuse("package-too-large", path, member=info.filename)
    if info.compress_size and info.file_size / info.compress_size > MAX_COMPRESSION_RATIO:
        raise _refuse("package-too-large", path, member=info.filename)
    chunks, total = [], 0
    with archive.open(info) as stream:
        while chunk := stream.read(_CHUNK):
            total += len(chunk)
            if total > limit:
                raise _refuse("package-too-large", path, member=info.filename)
            chunks.append(chunk)
    return b"".join(chunks)


def _open_members(path: Path) -> dict[str, bytes]:
    """The three members of a package, after checking the archive's shape and sizes."""
    try:
        size = path.stat().st_size
    except OSError:
        raise _refuse("package-unreadable", path) from None
    if size > MAX_PACKAGE_BYTES:
        raise _refuse("package-too-large", path, member=path.name)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            names = [i.filename for i in infos]
            unexpected = (
                sorted(set(names) - MEMBERS) or ([n for n in names if names.count(n) > 1][:1])
            )
            if unexpected:
                raise _refuse("package-unexpected-member", path, member=unexpected[0][:80])
            missing = sorted(MEMBERS - set(names))
            if missing:
                raise _refuse("package-missing-member", path, member=missing[0])
            if any(i.flag_bits & 0x1 for i in infos):
                raise _refuse("package-unreadable", path)
            return {i.filename: _read_member(archive, i, path) for i in infos}
    except PackageError:
        raise
    except Exception:  # any failure to unpack hostile or damaged bytes (zlib, struct...) refuses
        raise _refuse("package-unreadable", path) from None


def _parse_manifest(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: hostile nesting
        raise _refuse("package-manifest-invalid", path) from None
    if not isinstance(manifest, dict) or any(
        not isinstance(manifest.get(name), kind) for name, kind in _MANIFEST_TYPES.items()
    ):
        raise _refuse("package-manifest-invalid", path)
    optional_text = ("generalisation", "casepool_version")
    if any(not isinstance(manifest.get(n, ""), str) for n in optional_text):
        raise _refuse("package-manifest-invalid", path)
    return manifest


_MANIFEST_TYPES: dict[str, type | tuple[type, ...]] = {
    "package_format": int,
    "schema": dict,
    "org": str,
    "period": str,
    "created": str,
    "rows": dict,
    "data": dict,
}


def _shown_org(org: object) -> str:
    """The org code a manifest claims, only if it looks like one (it is untrusted text)."""
    text = str(org)
    return text if re.fullmatch(r"[A-Z0-9][A-Z0-9-]{1,31}", text) else "?"


def read_package(
    path: str | Path,
    public_key_of: Callable[[str], Ed25519PublicKey | None],
    schema: CaseSchema | None = None,
) -> VerifiedPackage:
    """Open a package and verify it completely; raises PackageError naming the first problem."""
    path = Path(path)
    schema = schema or load_schema()
    members = _open_members(path)
    manifest = _parse_manifest(members[MANIFEST], path)

    org = manifest.get("org")
    key = public_key_of(org) if isinstance(org, str) else None
    if key is None:
        raise _refuse("package-unknown-org", path, org=_shown_org(org))
    try:
        signature = base64.b64decode(members[SIGNATURE].strip(), validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if not verify(key, signature, members[MANIFEST]):
        raise _refuse("package-bad-signature", path, org=org)

    # Only a signed manifest is read further: everything below is the organisation's word.
    if manifest["package_format"] not in SUPPORTED_FORMATS:
        raise _refuse(
            "package-unsupported",
            path,
            what="package format",
            version=str(manifest["package_format"])[:20],
        )
    declared = manifest.get("schema") or {}
    if (
        not isinstance(declared, dict)
        or declared.get("name") != schema.name
        or declared.get("version") != schema.version
    ):
        raise _refuse("package-unsupported", path, what="schema", version=str(declared)[:40])
    try:
        period = parse_period(manifest["period"])
        datetime.fromisoformat(str(manifest["created"]).replace("Z", "+00:00"))
    except (UsageError, ValueError, TypeError):
        raise _refuse("package-manifest-invalid", path) from None
    if period.code != manifest["period"]:
        raise _refuse("package-manifest-invalid", path)

    data = members[DATA]
    declared_data = manifest.get("data") or {}
    if (
        not isinstance(declared_data, dict)
        or declared_data.get("sha256") != hashlib.sha256(data).hexdigest()
    ):
        raise _refuse("package-checksum-mismatch", path)
    cases = _read_cases(data, manifest, period, path, schema)
    return VerifiedPackage(
        path=path,
        submission_id=hashlib.sha256(members[MANIFEST]).hexdigest(),
        manifest=manifest,
        manifest_text=members[MANIFEST].decode("utf-8"),
        cases=cases,
        signature=base64.b64encode(signature).decode("ascii"),
    )


def _read_cases(
    data: bytes, manifest: dict[str, Any], period: Period, path: Path, schema: CaseSchema
) -> pl.DataFrame:
    """The rows of cases.parquet, checked against the package layout and the manifest."""
    try:
        cases = pl.read_parquet(io.BytesIO(data))
    except Exception:  # any decoding failure of a signed but broken file is a refusal
        raise _refuse("package-bad-data", path, reason="cases.parquet cannot be read") from None
    expected = package_fields(schema)
    if [(n, t) for n, t in cases.schema.items()] != expected:
        raise _refuse("package-bad-data", path, reason="columns differ from the case record")
    rows = manifest.get("rows") or {}
    if not isinstance(rows, dict) or rows.get("submitted") != cases.height:
        raise _refuse("package-bad-data", path, reason="row count differs from the manifest")
    allowed = _allowed_codes(schema)
    # One parallel pass: every check below reads only its column's distinct values or a flag.
    facts = cases.select(
        pl.col(PSEUDONYM).str.contains("^[0-9a-f]{64}$").fill_null(False).all().alias("_hex"),
        pl.col(PSEUDONYM).n_unique().alias("_unique"),
        pl.col("report_date").null_count().alias("_no_date"),
        pl.col("report_date").min().alias("_first"),
        pl.col("report_date").max().alias("_last"),
        *[
            (pl.col(n).explode() if isinstance(cases.schema[n], pl.List) else pl.col(n))
            .drop_nulls()
            .unique()
            .implode()
            .alias(n)
            for n in allowed
        ],
    ).row(0, named=True)
    if not facts["_hex"] or facts["_unique"] != cases.height:
        raise _refuse("package-bad-data", path, reason="pseudonyms malformed or repeated")
    for name, codes in allowed.items():
        if not set(facts[name]) <= set(codes):
            raise _refuse("package-bad-data", path, reason=f"{name} holds unknown codes")
    if facts["_no_date"] or not (
        cases.height == 0 or period.start <= facts["_first"] <= facts["_last"] <= period.end
    ):
        raise _refuse("package-bad-data", path, reason="registrations outside the period")
    return cases


def _allowed_codes(schema: CaseSchema) -> dict[str, list[str]]:
    allowed = {AGE_BAND: list(AGE_BAND_CODES)}
    for f in schema.submitted_fields:
        if f.type in {"code", "codes"}:
            allowed[f.name] = list(schema.codelist_of(f).values)
    return allowed


# --- the terminal summary of submit --------------------------------------------------------------

PERSONAL_DATA_SHOWN = 20


def render_submission(outcome: SubmitOutcome, lang: str = "en") -> str:
    """What submit kept, dropped and why, in the user's language (never a cell value)."""
    from casepool.i18n import render
    from casepool.schema import load_schema

    schema = load_schema()
    sub = outcome.submission
    lines: list[str] = []
    if sub.status == "invalid-records":
        from casepool.validation_report import render_report

        lines.append(render_report(outcome.validation, lang))
        lines.append(render("submit-refused-invalid", lang, count=f"{sub.dropped['invalid']:,}"))
        return "\n".join(lines)
    lines.append(
        render(
            "submit-kept",
            lang,
            rows=f"{sub.rows_in_export:,}",
            org=sub.org,
            period=sub.period.code,
            kept=f"{sub.rows_kept:,}",
        )
    )
    for reason, key in (
        ("invalid", "submit-dropped-invalid"),
        ("no_consent", "submit-dropped-no-consent"),
        ("outside_period", "submit-dropped-outside-period"),
    ):
        if sub.dropped.get(reason):
            lines.append(
                render(key, lang, count=f"{sub.dropped[reason]:,}", period=sub.period.code)
            )
    if sub.dropped_columns:
        lines.append(render("submit-dropped-columns", lang, columns=", ".join(sub.dropped_columns)))
    if sub.status == "no-records":
        lines.append(render("submit-refused-empty", lang, period=sub.period.code))
        return "\n".join(lines)
    report = sub.k_anonymity
    if report is not None:
        labels = [
            schema.field("survivor_age").label(lang)
            if q == "age_band"
            else schema.field(q).label(lang)
            for q in report.quasi_identifiers
        ]
        lines.append(
            render(
                "submit-k-report",
                lang,
                quasi_identifiers=" × ".join(labels),
                k=report.k,
                records=f"{report.records_below:,}",
                share=f"{report.share_below:.1%}",
                threshold=report.threshold,
            )
        )
        if sub.step.name != "none":
            lines.append(
                render(
                    "submit-generalised",
                    lang,
                    min_k=sub.min_k,
                    step=render(f"generalisation-{sub.step.name}", lang),
                )
            )
    if sub.status == "k-anonymity":
        lines.append(
            render(
                "submit-refused-k",
                lang,
                records=f"{report.records_below:,}" if report else "?",
                min_k=sub.min_k,
            )
        )
        return "\n".join(lines)
    if sub.status == "personal-data":
        lines.append(render("submit-refused-personal-data", lang, count=len(sub.personal_data)))
        for hit in sub.personal_data[:PERSONAL_DATA_SHOWN]:
            label = (
                schema.field("survivor_age").label(lang)
                if hit.field == "age_band"
                else schema.field(hit.field).label(lang)
            )
            lines.append(
                "  "
                + render(
                    "submit-personal-data-hit",
                    lang,
                    row=hit.row,
                    field=label,
                    kind=render(f"pii-{hit.kind}", lang),
                )
            )
        if len(sub.personal_data) > PERSONAL_DATA_SHOWN:
            lines.append(
                "  "
                + render("submit-more", lang, count=len(sub.personal_data) - PERSONAL_DATA_SHOWN)
            )
        return "\n".join(lines)
    lines.append(render("submit-transformed", lang))
    if outcome.package is not None:
        lines.append(render("submit-written", lang, path=str(outcome.package)))
    return "\n".join(lines)
