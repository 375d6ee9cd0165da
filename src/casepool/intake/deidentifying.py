"""Turn validated records into the de-identified rows of a package, and judge their disclosure risk.

Kept: schema fields only (the allowlist). Transformed: case_id -> HMAC-SHA256 pseudonym under the
organisation's secret key; age -> age band; dates -> months. Dropped and counted: invalid rows
(with --drop-invalid), rows without consent, rows registered outside the period.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from casepool.core.normalising import DIGIT_SOURCES, DIGIT_TARGETS
from casepool.core.periods import Period
from casepool.core.schema import CaseSchema, load_schema
from casepool.exchange.profile import (
    AGE_BAND,
    ALL_AGES,
    PSEUDONYM,
    ROW,
    STANDARD_BANDS,
    WIDE_BANDS,
    AgeBands,
    package_column,
    package_fields,
)
from casepool.intake.pii import PersonalDataHit, ascii_digits_any_script, scan_values

DEFAULT_K = 3


@dataclass(frozen=True)
class Generalisation:
    """One step of the ladder --min-k climbs: drop district, then widen the age bands."""

    name: str
    drop_district: bool
    bands: AgeBands


LADDER: tuple[Generalisation, ...] = (
    Generalisation("none", False, STANDARD_BANDS),
    Generalisation("district-dropped", True, STANDARD_BANDS),
    Generalisation("district-dropped-age-0-9-10-17", True, WIDE_BANDS),
    Generalisation("district-dropped-age-0-17", True, ALL_AGES),
)


def normalise_case_id(text: str) -> str:
    """The case number as the key input: Unicode NFKC, any digit script as ASCII, spaces folded."""
    return " ".join(ascii_digits_any_script(unicodedata.normalize("NFKC", text)).split())


def _case_key(column: pl.Expr) -> pl.Expr:
    """normalise_case_id, vectorised for the common scripts (the rest is finished in Python)."""
    return (
        column.str.normalize("NFKC")
        .str.replace_many(DIGIT_SOURCES, DIGIT_TARGETS)
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def keyed_hasher(secret: bytes) -> Callable[[bytes], bytes]:
    """HMAC-SHA256 under `secret` (RFC 2104) with the padded key states computed once.

    Equal to hmac.digest(secret, message, "sha256") and about twice as fast per message,
    which matters for millions of case numbers.
    """
    block = (hashlib.sha256(secret).digest() if len(secret) > 64 else secret).ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def keyed(message: bytes, inner_copy: Any = inner.copy, outer_copy: Any = outer.copy) -> bytes:
        state = inner_copy()
        state.update(message)
        result = outer_copy()
        result.update(state.digest())
        return bytes(result.digest())

    return keyed


def pseudonymise(case_ids: Sequence[str | None] | pl.Series, secret: bytes) -> list[str | None]:
    """HMAC-SHA256 of each case number under the organisation's secret key, as 64 hex digits."""
    return pseudonym_series(case_ids, secret).to_list()


def pseudonym_series(case_ids: Sequence[str | None] | pl.Series, secret: bytes) -> pl.Series:
    """`pseudonymise` as a String series named PSEUDONYM, without a Python object per row.

    The case numbers are normalised in polars (the rare ones outside the common scripts are
    finished in Python), hashed in batches over the cores, and hex-encoded by numpy and polars.
    """
    import numpy as np

    from casepool.exchange.hashing import HMAC_SHA256_BYTES, hmac_sha256_many

    series = case_ids if isinstance(case_ids, pl.Series) else pl.Series(case_ids, dtype=pl.String)
    keys = series.to_frame("c").select(_case_key(pl.col("c")).alias("k")).to_series()
    unusual = keys.str.contains(r"[^\x00-\x7F]").fill_null(False)
    if unusual.any():
        fixed = [normalise_case_id(c) for c in keys.filter(unusual).to_list()]
        keys = keys.scatter(unusual.arg_true(), fixed)
    present = keys.is_not_null()
    messages = keys.filter(present).cast(pl.Binary).to_list()
    digests = hmac_sha256_many(secret, messages)
    assert len(digests) == HMAC_SHA256_BYTES * len(messages)
    # Hex digits never hold a zero byte, so numpy's fixed-width "S64" cuts nothing off.
    hexed = pl.Series(PSEUDONYM, np.frombuffer(digests.hex().encode("ascii"), dtype="S64"))
    hexed = hexed.cast(pl.String)
    if hexed.len() == series.len():
        return hexed
    out = pl.Series(PSEUDONYM, [None] * series.len(), dtype=pl.String)
    return out.scatter(present.arg_true(), hexed) if hexed.len() else out


def refining_fields(schema: CaseSchema) -> tuple[str, ...]:
    """Fields that refine a quasi-identifier (district inside governorate): they count as one too."""
    qis = set(schema.quasi_identifiers)
    return tuple(f.name for f in schema.fields if f.parent in qis)


def quasi_identifier_columns(schema: CaseSchema, step: Generalisation) -> list[str]:
    """The package columns k-anonymity is computed over at this generalisation step."""
    columns = []
    for f in schema.fields:
        if f.quasi_identifier:
            columns.append(AGE_BAND if f.name == "survivor_age" else f.name)
        elif f.name in refining_fields(schema) and not step.drop_district:
            columns.append(f.name)
    return columns


def age_band(age: pl.Expr, bands: AgeBands) -> pl.Expr:
    """The age band code of an age (null stays null)."""
    expr: Any = pl
    for low, high, code in bands:
        expr = expr.when(age.is_between(low, high)).then(pl.lit(code))
    return expr.otherwise(None).cast(pl.String)


def deidentify(
    records: pl.DataFrame,
    secret: bytes,
    step: Generalisation = LADDER[0],
    schema: CaseSchema | None = None,
    pseudonyms: pl.Series | None = None,
) -> pl.DataFrame:
    """The package rows of canonical records: `_row` first, then the package columns in order.

    `pseudonyms`, when given, are those of `records` already computed (each ladder step reuses them).
    """
    schema = schema or load_schema()
    if pseudonyms is None:
        pseudonyms = pseudonym_series(records.get_column("case_id"), secret)
    out: list[pl.Expr] = [pl.col(ROW), pl.lit(pseudonyms).alias(PSEUDONYM)]
    for f in schema.submitted_fields:
        if f.type == "identifier":
            continue
        name, dtype = package_column(f)
        if name == AGE_BAND:
            out.append(age_band(pl.col(f.name), step.bands).alias(AGE_BAND))
        elif f.type in {"date", "month"}:
            out.append(pl.col(f.name).dt.truncate("1mo").cast(pl.Date).alias(name))
        elif step.drop_district and f.name in refining_fields(schema):
            out.append(pl.lit(None, dtype=dtype).alias(name))
        else:
            out.append(pl.col(f.name).cast(dtype).alias(name))
    return records.select(out)


@dataclass(frozen=True)
class KAnonymity:
    """How identifiable the package's records are by their quasi-identifiers."""

    quasi_identifiers: tuple[str, ...]
    threshold: int
    k: int  # size of the smallest group
    groups: int
    groups_below: int
    records_below: int
    records: int

    @property
    def share_below(self) -> float:
        return self.records_below / self.records if self.records else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "quasi_identifiers": list(self.quasi_identifiers),
            "threshold": self.threshold,
            "k": self.k,
            "groups": self.groups,
            "groups_below_threshold": self.groups_below,
            "records_below_threshold": self.records_below,
            "share_below_threshold": round(self.share_below, 6),
        }


def k_anonymity(frame: pl.DataFrame, columns: Sequence[str], threshold: int) -> KAnonymity:
    """Group by the quasi-identifiers (a missing value is its own group) and measure the groups."""
    if frame.height == 0:
        return KAnonymity(tuple(columns), threshold, 0, 0, 0, 0, 0)
    sizes = frame.group_by(list(columns)).len().get_column("len")
    small = sizes.filter(sizes < threshold)
    return KAnonymity(
        quasi_identifiers=tuple(columns),
        threshold=threshold,
        k=int(sizes.min()),  # type: ignore[arg-type]
        groups=sizes.len(),
        groups_below=small.len(),
        records_below=int(small.sum()),
        records=frame.height,
    )


READY = "ready"


REFUSED_INVALID = "invalid-records"


REFUSED_EMPTY = "no-records"


REFUSED_PERSONAL_DATA = "personal-data"


REFUSED_K = "k-anonymity"


@dataclass
class Submission:
    """The de-identified rows of one submission, what was dropped and why, or why it is refused."""

    status: str
    org: str
    period: Period
    rows_in_export: int
    dropped: dict[str, int]
    dropped_columns: list[str]
    frame: pl.DataFrame | None = None  # package rows, with `_row` (dropped before writing)
    step: Generalisation = LADDER[0]
    k_anonymity: KAnonymity | None = None
    min_k: int | None = None
    personal_data: list[PersonalDataHit] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.status == READY

    @property
    def rows_kept(self) -> int:
        return 0 if self.frame is None else self.frame.height

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "org": self.org,
            "period": self.period.code,
            "rows_in_export": self.rows_in_export,
            "rows_kept": self.rows_kept,
            "dropped": dict(self.dropped),
            "dropped_columns": list(self.dropped_columns),
            "generalisation": self.step.name,
            "min_k": self.min_k,
            "k_anonymity": self.k_anonymity.to_dict() if self.k_anonymity else None,
            "personal_data": [h.to_dict() for h in self.personal_data],
        }


def prepare_submission(
    records: pl.DataFrame,
    *,
    org: str,
    period: Period,
    secret: bytes,
    invalid_rows: set[int] | frozenset[int] = frozenset(),
    drop_invalid: bool = False,
    raw: pl.DataFrame | Callable[[], pl.DataFrame] | None = None,
    dropped_columns: Sequence[str] = (),
    identifier_columns: Sequence[str] | None = None,
    k_threshold: int = DEFAULT_K,
    min_k: int | None = None,
    schema: CaseSchema | None = None,
) -> Submission:
    """De-identify validated canonical records (with `_row`) for one organisation and period."""
    schema = schema or load_schema()
    dropped = {"invalid": 0, "no_consent": 0, "outside_period": 0}
    base = Submission(
        status=READY,
        org=org,
        period=period,
        rows_in_export=records.height,
        dropped=dropped,
        dropped_columns=list(dropped_columns),
        min_k=min_k,
    )
    if invalid_rows:
        if not drop_invalid:
            base.status = REFUSED_INVALID
            dropped["invalid"] = len(invalid_rows)
            return base
        kept = records.filter(~pl.col(ROW).is_in(sorted(invalid_rows)))
        dropped["invalid"] = records.height - kept.height
        records = kept
    consented = records.filter(pl.col("consent_statistics") == "yes")
    dropped["no_consent"] = records.height - consented.height
    in_period = consented.filter(
        pl.col("report_date").is_between(pl.lit(period.start), pl.lit(period.end))
    )
    dropped["outside_period"] = consented.height - in_period.height
    if in_period.height == 0:
        base.status = REFUSED_EMPTY
        return base

    pseudonyms = pseudonym_series(in_period.get_column("case_id"), secret)
    for step in LADDER:
        frame = deidentify(in_period, secret, step, schema, pseudonyms)
        report = k_anonymity(frame, quasi_identifier_columns(schema, step), min_k or k_threshold)
        base.frame, base.step, base.k_anonymity = frame, step, report
        if min_k is None or report.k >= min_k:
            break
    else:
        base.status = REFUSED_K
        base.frame = None
        return base

    scanned = [name for name, _ in package_fields(schema) if name != PSEUDONYM]
    # Values of the dropped columns, and of the case number itself, must not reappear anywhere.
    searched = dropped_columns if identifier_columns is None else identifier_columns
    hits = scan_values(base.frame, scanned, raw, searched, row_column=ROW, schema=schema)
    if hits:
        base.status = REFUSED_PERSONAL_DATA
        base.personal_data = hits
        base.frame = None
    return base
