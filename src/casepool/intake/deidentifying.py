"""Turn validated records into the de-identified rows of a package, and judge their disclosure risk.

Kept: schema fields the package profile keeps (schemas/package_profile.yaml), at its precision:
case_id -> HMAC-SHA256 pseudonym under the organisation's secret key; age -> age band; registration
-> quarter; incident -> months before registration; the rest omitted or kept. Then local suppression
blanks quasi-identifier values until every record has k-1 look-alikes. Dropped and counted: invalid
rows (with --drop-invalid), rows without consent, rows registered outside the period.
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
    MONTHS_BEFORE,
    OMIT,
    PSEUDONYM,
    QUARTER,
    ROW,
    AgeBands,
    PackageProfile,
    load_profile,
    package_column,
    package_fields,
    standard_bands,
)
from casepool.intake.local_suppression import (
    Suppression,
    distinct_rows,
    encode,
    local_suppression,
    record_frequencies,
)
from casepool.intake.pii import PersonalDataHit, ascii_digits_any_script, scan_values

DEFAULT_K = 3  # the profile's k when it names none; schemas/package_profile.yaml sets it


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
    series = case_ids if isinstance(case_ids, pl.Series) else pl.Series(case_ids, dtype=pl.String)
    if series.len() <= _PSEUDONYM_BATCH:
        return _pseudonyms(series, secret)
    # A batch at a time: the messages, digests and hex texts of a million rows at once would
    # be the peak memory of a whole submission.
    parts = [
        _pseudonyms(series.slice(start, _PSEUDONYM_BATCH), secret)
        for start in range(0, series.len(), _PSEUDONYM_BATCH)
    ]
    return pl.concat(parts, rechunk=True)


_PSEUDONYM_BATCH = 100_000


def _pseudonyms(series: pl.Series, secret: bytes) -> pl.Series:
    import numpy as np

    from casepool.exchange.hashing import HMAC_SHA256_BYTES, hmac_sha256_many

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


@dataclass(frozen=True)
class QuasiIdentifiers:
    """The package columns k-anonymity is computed over: strata never blanked, then the others."""

    strata: tuple[str, ...]  # quasi-identifiers without importance (the registration quarter)
    suppressible: tuple[str, ...]
    importance: tuple[int, ...]  # of each suppressible column, 1 = most important

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.strata, *self.suppressible)


def quasi_identifiers(schema: CaseSchema, profile: PackageProfile) -> QuasiIdentifiers:
    """The declared quasi-identifiers (case_record.yaml) that the profile keeps, as package columns."""
    strata, suppressible, importance = [], [], []
    for f in schema.submitted_fields:
        if not f.quasi_identifier or not profile.kept(f.name):
            continue
        name = package_column(f)[0]
        if f.importance is None:
            strata.append(name)
        else:
            suppressible.append(name)
            importance.append(f.importance)
    return QuasiIdentifiers(tuple(strata), tuple(suppressible), tuple(importance))


def age_band(age: pl.Expr, bands: AgeBands) -> pl.Expr:
    """The age band code of an age (null stays null)."""
    expr: Any = pl
    for low, high, code in bands:
        expr = expr.when(age.is_between(low, high)).then(pl.lit(code))
    return expr.otherwise(None).cast(pl.String)


def _month_index(column: pl.Expr) -> pl.Expr:
    return column.dt.year().cast(pl.Int64) * 12 + column.dt.month().cast(pl.Int64) - 1


def _kept_date(column: pl.Expr, precision: str, period: Period | None) -> pl.Expr:
    """A date at the profile's precision: its month, or its quarter (not before the period)."""
    if precision != QUARTER:
        return column.dt.truncate("1mo").cast(pl.Date)
    quarter = column.dt.truncate("1q").cast(pl.Date)
    if period is None:
        return quarter
    return pl.max_horizontal(quarter, pl.lit(period.start)).cast(pl.Date)


def deidentify(
    records: pl.DataFrame,
    secret: bytes,
    schema: CaseSchema | None = None,
    pseudonyms: pl.Series | None = None,
    *,
    profile: PackageProfile | None = None,
    period: Period | None = None,
) -> pl.DataFrame:
    """The package rows of canonical records: `_row` first, then the package columns in order,
    each at the precision the profile declares (omitted ones empty). No suppression yet.

    `pseudonyms`, when given, are those of `records` already computed.
    """
    schema = schema or load_schema()
    profile = profile or load_profile()
    if pseudonyms is None:
        pseudonyms = pseudonym_series(records.get_column("case_id"), secret)
    report = _kept_date(pl.col("report_date"), profile.precision("report_date"), period)
    out: list[pl.Expr] = [pl.col(ROW), pl.lit(pseudonyms).alias(PSEUDONYM)]
    for f in schema.submitted_fields:
        if f.type == "identifier":
            continue
        name, dtype = package_column(f)
        precision = profile.precision(f.name)
        if precision == OMIT:
            out.append(pl.lit(None, dtype=dtype).alias(name))
        elif name == AGE_BAND:
            out.append(age_band(pl.col(f.name), standard_bands()).alias(AGE_BAND))
        elif precision == MONTHS_BEFORE:
            # The registration (as kept) less the whole months from incident to registration.
            months = _month_index(pl.col("report_date")) - _month_index(pl.col(f.name))
            shifted = _month_index(report) - months
            out.append(pl.date(shifted // 12, shifted % 12 + 1, 1).cast(pl.Date).alias(name))
        elif f.type in {"date", "month"}:
            out.append(_kept_date(pl.col(f.name), precision, period).alias(name))
        else:
            out.append(pl.col(f.name).cast(dtype).alias(name))
    return records.select(out)


@dataclass(frozen=True)
class KAnonymity:
    """How identifiable the package's records are by their quasi-identifiers (blanks match all)."""

    quasi_identifiers: tuple[str, ...]
    threshold: int
    k: int  # the smallest frequency: every record matches at least k records (itself included)
    groups: int
    groups_below: int
    records_below: int
    records: int
    risk_threshold: float = 0.2
    records_above_risk: int = 0  # records whose individual risk 1/f exceeds risk_threshold
    global_risk: float = 0.0  # mean individual risk: the expected number of re-identifications / n

    @property
    def share_below(self) -> float:
        return self.records_below / self.records if self.records else 0.0

    @property
    def share_above_risk(self) -> float:
        return self.records_above_risk / self.records if self.records else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "quasi_identifiers": list(self.quasi_identifiers),
            "threshold": self.threshold,
            "k": self.k,
            "groups": self.groups,
            "groups_below_threshold": self.groups_below,
            "records_below_threshold": self.records_below,
            "share_below_threshold": round(self.share_below, 6),
            "risk_threshold": self.risk_threshold,
            "records_above_risk_threshold": self.records_above_risk,
            "share_above_risk_threshold": round(self.share_above_risk, 6),
            "global_risk": round(self.global_risk, 6),
        }


def k_anonymity(
    frame: pl.DataFrame, columns: Sequence[str], threshold: int, risk_threshold: float = 0.2
) -> KAnonymity:
    """Frequencies over the quasi-identifiers, sdcMicro's way: a missing value matches any value.

    A group is a distinct combination of values (blanks included); records_below counts the
    records whose frequency f is below `threshold`; individual risk is 1/f (a register, not a
    sample, so the population frequency is the package's own).
    """
    if frame.height == 0:
        return KAnonymity(tuple(columns), threshold, 0, 0, 0, 0, 0, risk_threshold)
    values = encode(frame, columns)
    f = record_frequencies(values)
    return _report(values, f, columns, threshold, risk_threshold)


def _report(
    values: Any, f: Any, columns: Sequence[str], threshold: int, risk_threshold: float
) -> KAnonymity:
    import numpy as np

    combos, inverse, _ = distinct_rows(values)
    first = np.zeros(len(combos), dtype=np.int64)
    first[inverse] = np.arange(len(inverse))
    group_f = f[first]
    risk = 1.0 / f
    return KAnonymity(
        quasi_identifiers=tuple(columns),
        threshold=threshold,
        k=int(f.min()),
        groups=len(first),
        groups_below=int((group_f < threshold).sum()),
        records_below=int((f < threshold).sum()),
        records=len(f),
        risk_threshold=risk_threshold,
        records_above_risk=int((risk > risk_threshold).sum()),
        global_risk=float(risk.mean()),
    )


READY = "ready"


REFUSED_INVALID = "invalid-records"


REFUSED_EMPTY = "no-records"


REFUSED_PERSONAL_DATA = "personal-data"


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
    profile: PackageProfile | None = None
    k_anonymity: KAnonymity | None = None  # after local suppression
    risk_before: KAnonymity | None = None  # the same measure before local suppression
    suppression: Suppression | None = None
    min_k: int | None = None
    personal_data: list[PersonalDataHit] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.status == READY

    @property
    def rows_kept(self) -> int:
        return 0 if self.frame is None else self.frame.height

    @property
    def generalisation(self) -> str:
        """The profile applied, as the manifest and the warehouse name it."""
        profile = self.profile or load_profile()
        return f"{profile.name}-v{profile.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "org": self.org,
            "period": self.period.code,
            "rows_in_export": self.rows_in_export,
            "rows_kept": self.rows_kept,
            "dropped": dict(self.dropped),
            "dropped_columns": list(self.dropped_columns),
            "generalisation": self.generalisation,
            "omitted_fields": list(self.profile.omitted) if self.profile else [],
            "min_k": self.min_k,
            "k_anonymity": self.k_anonymity.to_dict() if self.k_anonymity else None,
            "risk_before_suppression": self.risk_before.to_dict() if self.risk_before else None,
            "local_suppression": self.suppression.to_dict() if self.suppression else None,
            "personal_data": [h.to_dict() for h in self.personal_data],
        }


def _filter_freeing(handed: list[pl.DataFrame], keep: pl.Expr) -> pl.DataFrame:
    """`records.filter(keep)` (the one frame in `handed`, taken out of it) a column at a time,
    each source column let go once filtered: when nothing else holds the records (submit
    hands them over), they and their filtered copy never both sit whole in memory."""
    records = handed.pop()
    mask = records.select(keep.alias("keep")).get_column("keep")
    source = records.clone()  # shallow: dropping from it never touches the caller's frame
    del records
    columns = []
    for name in list(source.columns):
        columns.append(source.drop_in_place(name).filter(mask))
    return pl.DataFrame(columns)


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
    k_threshold: int | None = None,
    min_k: int | None = None,
    schema: CaseSchema | None = None,
    profile: PackageProfile | None = None,
    suppress: bool = True,
    unread_rows: int = 0,
) -> Submission:
    """De-identify validated canonical records (with `_row`) for one organisation and period.

    `unread_rows` counts rows of the export that never became records (CSV lines with the wrong
    number of cells, in `invalid_rows` too): they count as rows of the export and as invalid.

    k is `min_k`, else `k_threshold`, else the profile's k for the organisation. With `suppress`
    false (for measuring only) the rows are left as the profile makes them, whatever their k.
    """
    schema = schema or load_schema()
    profile = profile or load_profile()
    k = min_k or k_threshold or profile.k_for(org)
    dropped = {"invalid": 0, "no_consent": 0, "outside_period": 0}
    base = Submission(
        status=READY,
        org=org,
        period=period,
        rows_in_export=records.height + unread_rows,
        dropped=dropped,
        dropped_columns=list(dropped_columns),
        profile=profile,
        min_k=min_k,
    )
    if invalid_rows and not drop_invalid:
        base.status = REFUSED_INVALID
        dropped["invalid"] = len(invalid_rows)
        return base
    # One filter, its drops counted in one pass: a copy of the records per step would be
    # the largest memory of a big submission.
    valid = ~pl.col(ROW).is_in(sorted(invalid_rows)) if invalid_rows else pl.lit(True)
    consented = (pl.col("consent_statistics") == "yes").fill_null(False)
    inside = (
        pl.col("report_date").is_between(pl.lit(period.start), pl.lit(period.end)).fill_null(False)
    )
    counts = records.select(
        (~valid).sum().alias("invalid"),
        (valid & ~consented).sum().alias("no_consent"),
        (valid & consented & ~inside).sum().alias("outside_period"),
    ).row(0, named=True)
    dropped.update({k: int(v) for k, v in counts.items()})
    dropped["invalid"] += unread_rows  # ragged CSV lines: rows of the export that are invalid
    handed = [records]
    del records  # the caller may have handed over its only reference (submit does)
    in_period = _filter_freeing(handed, valid & consented & inside)
    if in_period.height == 0:
        base.status = REFUSED_EMPTY
        return base

    pseudonyms = pseudonym_series(in_period.get_column("case_id"), secret)
    frame = deidentify(in_period, secret, schema, pseudonyms, profile=profile, period=period)
    del in_period, pseudonyms
    qis = quasi_identifiers(schema, profile)
    columns = qis.columns
    base.risk_before = k_anonymity(frame, columns, k, profile.risk_threshold)
    if suppress:
        base.suppression = local_suppression(
            frame, qis.suppressible, qis.importance, k, strata=qis.strata
        )
        frame = base.suppression.frame
        values = encode(frame, columns)
        base.k_anonymity = _report(
            values, base.suppression.frequencies, columns, k, profile.risk_threshold
        )
    else:
        base.k_anonymity = base.risk_before
    base.frame = frame

    scanned = [name for name, _ in package_fields(schema) if name != PSEUDONYM]
    # Values of the dropped columns, and of the case number itself, must not reappear anywhere.
    searched = dropped_columns if identifier_columns is None else identifier_columns
    hits = scan_values(base.frame, scanned, raw, searched, row_column=ROW, schema=schema)
    if hits:
        base.status = REFUSED_PERSONAL_DATA
        base.personal_data = hits
        base.frame = None
    return base
