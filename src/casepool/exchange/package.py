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
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from casepool.core.errors import PackageError, UsageError
from casepool.core.periods import Period, parse_period
from casepool.core.schema import CaseSchema, load_schema
from casepool.exchange.aggregate import AGGREGATE, kind_of, read_aggregate
from casepool.exchange.keys import verify
from casepool.exchange.profile import (
    AGE_BAND,
    OMIT,
    PSEUDONYM,
    age_band_codes,
    package_column_names,
    package_fields,
)

FORMAT_VERSION = 1


SUPPORTED_FORMATS = frozenset({1})


DATA, MANIFEST, SIGNATURE = "cases.parquet", "manifest.json", "manifest.sig"


MEMBERS = frozenset({DATA, MANIFEST, SIGNATURE})


# An aggregate-only package (exchange/aggregate.py) holds aggregate.parquet instead of cases.parquet.
AGGREGATE_MEMBERS = frozenset({AGGREGATE, MANIFEST, SIGNATURE})


SUFFIX = ".casepool.zip"


# Size limits guard the steward's machine against hostile or broken packages (zip bombs).
MAX_PACKAGE_BYTES = 2 * 1024**3


MAX_DATA_BYTES = 2 * 1024**3


MAX_MANIFEST_BYTES = 1024**2


MAX_SIGNATURE_BYTES = 1024


MAX_COMPRESSION_RATIO = 200


_LIMITS = {
    DATA: MAX_DATA_BYTES,
    AGGREGATE: MAX_DATA_BYTES,
    MANIFEST: MAX_MANIFEST_BYTES,
    SIGNATURE: MAX_SIGNATURE_BYTES,
}


_CHUNK = 1024**2


def package_name(org: str, period: Period, created: datetime) -> str:
    return f"{org}_{period.code}_{created.astimezone(UTC):%Y%m%dT%H%M%SZ}{SUFFIX}"


@dataclass
class VerifiedPackage:
    """A package whose signature, checksum, versions and contents have all been checked.

    The rows are checked without being held as a frame: `data` keeps the verified bytes of
    cases.parquet (ingest hands them to DuckDB's own Parquet reader) and `cases` reads them into
    polars only when asked.

    `read_package(..., check_rows=False)` leaves the checks of the rows' values (codes, dates,
    omitted columns, the pseudonyms' form and uniqueness) to `check_rows`, so a caller can run
    them beside other work: until it returns, `rows_checked` is False and nothing may be kept.
    """

    path: Path
    submission_id: str  # SHA-256 of the signed manifest: the same package always has the same id
    manifest: dict[str, Any]
    manifest_text: str
    data: bytes  # the verified cases.parquet (empty for an aggregate-only package)
    rows: int  # the records in cases.parquet (0 for an aggregate-only package)
    pseudonyms: pl.Series  # the pseudonym column, in the rows' order (checked: hex, unique)
    signature: str = ""  # base64 Ed25519 signature over manifest_text, kept for later checks
    aggregate: pl.DataFrame | None = None  # the counts of an aggregate-only package (no cases)
    rows_checked: bool = True  # False until `check_rows` has passed (read with check_rows=False)

    def check_rows(self, *, distinct: bool = False) -> None:
        """Check the rows' values as `read_package` does, raising the same refusal it would.

        `distinct=True` says the caller has shown the pseudonyms distinct (different record keys
        of the same secret cannot come from equal pseudonyms), so only their form is checked.
        """
        if self.rows_checked or not self.data:
            return
        manifest, schema = self.manifest, load_schema()
        found = _data_columns(self.data, self.path, schema)
        _check_values(
            self.data, found, self.pseudonyms, manifest, self.period, self.path, schema, distinct
        )
        self.rows_checked = True

    @property
    def cases(self) -> pl.DataFrame:
        """The rows of cases.parquet as a frame (read from the verified bytes on each call)."""
        if not self.data:
            return pl.DataFrame(schema=dict(package_fields(load_schema())))
        try:
            return pl.read_parquet(io.BytesIO(self.data))
        except Exception:
            raise _refuse(
                "package-bad-data", self.path, reason="cases.parquet cannot be read"
            ) from None

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
            expected = AGGREGATE_MEMBERS if AGGREGATE in names else MEMBERS
            unexpected = (
                sorted(set(names) - expected) or ([n for n in names if names.count(n) > 1][:1])
            )
            if unexpected:
                raise _refuse("package-unexpected-member", path, member=unexpected[0][:80])
            missing = sorted(expected - set(names))
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
    *,
    check_rows: bool = True,
) -> VerifiedPackage:
    """Open a package and verify it completely; raises PackageError naming the first problem.

    With `check_rows=False` the rows' values are left to `VerifiedPackage.check_rows` (ingest
    runs them beside its insert, in the same transaction, committed only once they pass); the
    archive, signature, manifest, checksum, columns and the pseudonym column are read and
    checked here either way."""
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

    aggregate = kind_of(manifest) == "aggregate"
    if aggregate != (AGGREGATE in members):  # the signed kind decides which member is the data
        raise _refuse("package-missing-member", path, member=AGGREGATE if aggregate else DATA)
    data = members[AGGREGATE if aggregate else DATA]
    declared_data = manifest.get("data") or {}
    if (
        not isinstance(declared_data, dict)
        or declared_data.get("sha256") != hashlib.sha256(data).hexdigest()
    ):
        raise _refuse("package-checksum-mismatch", path)
    if aggregate:
        counts = read_aggregate(data, manifest, period, path)
        data, pseudonyms = b"", pl.Series(PSEUDONYM, [], dtype=pl.String)
    else:
        counts = None
        if check_rows:
            pseudonyms = _check_cases(data, manifest, period, path, schema)
        else:
            _data_columns(data, path, schema)
            pseudonyms = _read_pseudonyms(data, path)
    return VerifiedPackage(
        path=path,
        submission_id=hashlib.sha256(members[MANIFEST]).hexdigest(),
        manifest=manifest,
        manifest_text=members[MANIFEST].decode("utf-8"),
        data=data,
        rows=pseudonyms.len(),
        pseudonyms=pseudonyms,
        signature=base64.b64encode(signature).decode("ascii"),
        aggregate=counts,
        rows_checked=check_rows or aggregate,
    )


def _check_cases(
    data: bytes, manifest: dict[str, Any], period: Period, path: Path, schema: CaseSchema
) -> pl.Series:
    """Check cases.parquet against the package layout and the manifest; its pseudonym column.

    The columns are scanned, not held: the pseudonym column is read whole (ingest derives the
    record keys from it), every other check reads only each column's distinct values or a count.
    """
    found = _data_columns(data, path, schema)
    pseudonyms = _read_pseudonyms(data, path)
    _check_values(data, found, pseudonyms, manifest, period, path, schema, distinct=False)
    return pseudonyms


def _data_columns(data: bytes, path: Path, schema: CaseSchema) -> Mapping[str, pl.DataType]:
    """The columns of cases.parquet (from its footer), refused unless the package layout's."""
    try:
        found = pl.read_parquet_schema(io.BytesIO(data))
    except Exception:  # any decoding failure of a signed but broken file is a refusal
        raise _refuse("package-bad-data", path, reason="cases.parquet cannot be read") from None
    if list(found.items()) != package_fields(schema):
        raise _refuse("package-bad-data", path, reason="columns differ from the case record")
    return found


def _read_pseudonyms(data: bytes, path: Path) -> pl.Series:
    try:
        return pl.read_parquet(io.BytesIO(data), columns=[PSEUDONYM]).get_column(PSEUDONYM)
    except Exception:
        raise _refuse("package-bad-data", path, reason="cases.parquet cannot be read") from None


def _check_values(
    data: bytes,
    found: Mapping[str, pl.DataType],
    pseudonyms: pl.Series,
    manifest: dict[str, Any],
    period: Period,
    path: Path,
    schema: CaseSchema,
    distinct: bool,
) -> None:
    """The checks of the rows' values, in the order that decides which refusal is named."""
    omitted = _omitted_columns(manifest, schema)
    allowed = _allowed_codes(schema)
    try:
        facts = _row_facts(data, found, omitted, list(allowed))
    except Exception:
        raise _refuse("package-bad-data", path, reason="cases.parquet cannot be read") from None
    height = pseudonyms.len()
    rows = manifest.get("rows") or {}
    if not isinstance(rows, dict) or rows.get("submitted") != height:
        raise _refuse("package-bad-data", path, reason="row count differs from the manifest")
    if any(facts[f"_omitted_{n}"] != height for n in omitted):
        raise _refuse("package-bad-data", path, reason="holds values its profile omits")
    well_formed = height == 0 or (
        pseudonyms.str.contains("^[0-9a-f]{64}$").fill_null(False).all()
        and (distinct or pseudonyms.cast(pl.Binary).n_unique() == height)
    )
    if not well_formed:
        raise _refuse("package-bad-data", path, reason="pseudonyms malformed or repeated")
    for name, codes in allowed.items():
        if not set(facts[name]) <= set(codes):
            raise _refuse("package-bad-data", path, reason=f"{name} holds unknown codes")
    if facts["_no_date"] or not (
        height == 0 or period.start <= facts["_first"] <= facts["_last"] <= period.end
    ):
        raise _refuse("package-bad-data", path, reason="registrations outside the period")


def _row_facts(
    data: bytes, found: Mapping[str, pl.DataType], omitted: list[str], coded: list[str]
) -> dict[str, Any]:
    """What the value checks need, one row group at a time: the registration dates' missing
    count, first and last; each omitted column's missing count; each coded column's distinct
    values (of its list items for a list column), missing ones left out.

    The coded columns are read as dictionaries, and a row group's distinct values are the
    dictionary entries its rows point at: no text is compared or hashed per row, and only one
    row group is held at a time (a whole-file polars scan took twice the CPU and ~500 MB at 1M
    rows).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    lists = {n for n in coded if isinstance(found[n], pl.List)}
    parquet = pq.ParquetFile(
        io.BytesIO(data),
        read_dictionary=[f"{n}.list.element" if n in lists else n for n in coded],
    )
    wanted = list(dict.fromkeys(["report_date", *omitted, *coded]))
    facts: dict[str, Any] = {"_no_date": 0, "_first": None, "_last": None}
    facts |= {f"_omitted_{n}": 0 for n in omitted}
    values: dict[str, set[str]] = {n: set() for n in coded}
    for group in range(parquet.metadata.num_row_groups):
        table = parquet.read_row_group(group, columns=wanted)
        dates = table.column("report_date")
        facts["_no_date"] += dates.null_count
        span = pc.min_max(dates).as_py()
        if span["min"] is not None:
            first, last = facts["_first"], facts["_last"]
            facts["_first"] = span["min"] if first is None else min(first, span["min"])
            facts["_last"] = span["max"] if last is None else max(last, span["max"])
        for name in omitted:
            facts[f"_omitted_{name}"] += table.column(name).null_count
        for name in coded:
            for chunk in table.column(name).chunks:
                if name in lists:
                    chunk = chunk.flatten()
                if not isinstance(chunk, pa.DictionaryArray):
                    values[name].update(v for v in chunk.unique().to_pylist() if v is not None)
                    continue
                used = pc.drop_null(pc.unique(chunk.indices))
                values[name].update(
                    v for v in chunk.dictionary.take(used).to_pylist() if v is not None
                )
    return facts | {n: sorted(v) for n, v in values.items()}


def _omitted_columns(manifest: dict[str, Any], schema: CaseSchema) -> list[str]:
    """The columns the package's profile (as its manifest states it) leaves empty."""
    profile = manifest.get("profile")
    fields = profile.get("fields") if isinstance(profile, dict) else None
    if not isinstance(fields, dict):
        return []  # packages written before profiles
    columns = dict(package_column_names(schema))
    return [columns[n] for n, p in sorted(fields.items()) if p == OMIT and n in columns]


def _allowed_codes(schema: CaseSchema) -> dict[str, list[str]]:
    allowed = {AGE_BAND: list(age_band_codes())}
    for f in schema.submitted_fields:
        if f.type in {"code", "codes"}:
            allowed[f.name] = list(schema.codelist_of(f).values)
    return allowed


# --- writing cases.parquet (intake/submit.py) ------------------------------------------------------

# Rows of each Parquet row group of cases.parquet (the last fewer): a row group is built whole in
# memory (polars, then Arrow), so this bounds what writing a package adds to the peak.
ROW_GROUP_ROWS = 32_768


def write_rows(
    path: Path | BinaryIO,
    frames: Iterable[pl.DataFrame],
    schema: CaseSchema,
    row_group_rows: int | None = None,
) -> int:
    """Write cases.parquet at `path` from package rows (the package columns, in any number of
    frames) and return how many rows it holds.

    Row groups hold exactly `row_group_rows` (default ROW_GROUP_ROWS) rows (the last fewer), each written from one
    contiguous block: the bytes depend on the rows alone, not on how they were cut into frames,
    so a package written batch by batch is byte for byte the one written from a whole frame.
    """
    import pyarrow.parquet as pq

    row_group_rows = row_group_rows or ROW_GROUP_ROWS
    fields = package_fields(schema)
    columns = [pl.col(name).cast(dtype) for name, dtype in fields]
    arrow_schema = pl.DataFrame(schema=dict(fields)).to_arrow().schema
    pending: list[pl.DataFrame] = []
    pending_rows = written = 0
    with pq.ParquetWriter(path, arrow_schema, compression="zstd", write_statistics=True) as writer:

        def flush() -> None:
            block = pl.concat(pending, rechunk=True) if len(pending) > 1 else pending[0].rechunk()
            table = block.to_arrow().cast(arrow_schema).combine_chunks()
            writer.write_table(table, row_group_size=block.height)
            pending.clear()

        for frame in frames:
            frame = frame.select(columns)
            start = 0
            while start < frame.height:
                take = min(row_group_rows - pending_rows, frame.height - start)
                pending.append(frame.slice(start, take))
                pending_rows += take
                start += take
                if pending_rows == row_group_rows:
                    flush()
                    written += pending_rows
                    pending_rows = 0
        if pending_rows:
            flush()
            written += pending_rows
    return written
