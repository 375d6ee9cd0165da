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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from casepool.core.errors import PackageError
from casepool.core.normalising import DIGIT_SOURCES, DIGIT_TARGETS
from casepool.core.periods import Period
from casepool.core.schema import CaseSchema, load_schema
from casepool.exchange.package import ROW_GROUP_ROWS
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
    WILDCARD,
    Suppression,
    blank,
    distinct_rows,
    encode,
    local_suppression,
    record_frequencies,
    suppress_codes,
)
from casepool.intake.pii import (
    PersonalDataHit,
    ValueScanner,
    ascii_digits_any_script,
    scan_values,
)

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
    # Or, written batch by batch (BatchedSubmission): the package's Parquet and its rows.
    rows_file: Path | None = None
    rows_written: int = 0
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
        return self.rows_written if self.frame is None else self.frame.height

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
        assert base.suppression.frame is not None
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


_KEPT, _NO_CONSENT, _OUTSIDE = 0, 1, 2
_SPILL_ROWS = ROW_GROUP_ROWS  # what became of each record (before invalid rows)


class BatchedSubmission:
    """`prepare_submission` fed a batch of validated records at a time: the same submission and
    the same package rows, without the records or the package rows ever whole in memory.

    Each batch (`add`) is de-identified (pseudonyms, profile) at once and its package rows
    spilled to a Parquet file in `spill_dir`; kept across batches are only what spans the file:
    each record's `_row` and what became of it (consent, period), and the quasi-identifiers of
    the spilled rows as small integer codes. `finish` (once validation knows the invalid rows)
    runs k-anonymity and local suppression over those codes, as prepare_submission does over
    the whole frame, then reads the spill back a batch at a time, blanks it, scans it for
    personal data and writes the package's cases.parquet (`Submission.rows_file`).
    """

    def __init__(
        self,
        *,
        org: str,
        period: Period,
        secret: bytes,
        spill_dir: Path,
        k_threshold: int | None = None,
        min_k: int | None = None,
        schema: CaseSchema | None = None,
        profile: PackageProfile | None = None,
        suppress: bool = True,
    ) -> None:
        self.org, self.period, self.secret = org, period, secret
        self.spill_dir = spill_dir
        self.schema = schema or load_schema()
        self.profile = profile or load_profile()
        self.min_k = min_k
        self.k = min_k or k_threshold or self.profile.k_for(org)
        self.suppress = suppress
        self.qis = quasi_identifiers(self.schema, self.profile)
        self.dtypes = [dict(package_fields(self.schema))[name] for name in self.qis.columns]
        self.rows: list[Any] = []  # numpy int64: `_row` of every record, in order
        self.fates: list[Any] = []  # numpy int8: _KEPT, _NO_CONSENT or _OUTSIDE
        self.codes: list[Any] = []  # numpy int32 (rows x quasi-identifiers): ids in `values`
        self.values: list[dict[Any, int]] = [{} for _ in self.qis.columns]
        self.spills: list[tuple[Path, int]] = []  # the spilled pieces and their rows, in order

    def add(self, records: pl.DataFrame) -> None:
        """De-identify one batch of canonical records (with `_row`) and spill its package rows."""
        import numpy as np

        consented = (pl.col("consent_statistics") == "yes").fill_null(False)
        inside = (
            pl.col("report_date")
            .is_between(pl.lit(self.period.start), pl.lit(self.period.end))
            .fill_null(False)
        )
        fate = (
            pl.when(~consented)
            .then(pl.lit(_NO_CONSENT))
            .when(~inside)
            .then(pl.lit(_OUTSIDE))
            .otherwise(pl.lit(_KEPT))
            .cast(pl.Int8)
        )
        flags = records.select(pl.col(ROW).cast(pl.Int64), fate.alias("fate"))
        self.rows.append(flags.get_column(ROW).to_numpy())
        fates = flags.get_column("fate").to_numpy()
        self.fates.append(fates)
        if not (fates == _KEPT).any():
            return
        kept = records.filter(consented & inside)
        pseudonyms = pseudonym_series(kept.get_column("case_id"), self.secret)
        frame = deidentify(
            kept, self.secret, self.schema, pseudonyms, profile=self.profile, period=self.period
        )
        codes = np.empty((frame.height, len(self.qis.columns)), dtype=np.int32)
        for j, name in enumerate(self.qis.columns):
            codes[:, j] = self._ids(frame.get_column(name), self.values[j])
        self.codes.append(codes)
        # Spilled in pieces no larger than a row group of the package: the last pass holds one
        # piece at a time, with the row group being written.
        for start in range(0, frame.height, _SPILL_ROWS):
            piece = frame.slice(start, _SPILL_ROWS)
            path = self.spill_dir / f"spill-{len(self.spills):06d}.parquet"
            try:
                piece.write_parquet(path, compression="lz4", statistics=False)
            except OSError as exc:  # a full disk: the package could not be written either
                raise PackageError(
                    "package-unwritable", path=str(self.spill_dir.parent), reason=exc.strerror
                ) from exc
            self.spills.append((path, piece.height))

    @staticmethod
    def _ids(column: pl.Series, known: dict[Any, int]) -> Any:
        """Each value's id in `known` (new values added), WILDCARD for null."""
        for value in column.drop_nulls().unique(maintain_order=True).to_list():
            known.setdefault(value, len(known))
        if not known:
            return column.is_null().cast(pl.Int32).to_numpy() * WILDCARD
        keys = pl.Series(list(known), dtype=column.dtype)
        ids = pl.Series(list(known.values()), dtype=pl.Int32)
        return (
            column.replace_strict(keys, ids, default=None, return_dtype=pl.Int32)
            .fill_null(WILDCARD)
            .to_numpy()
        )

    def _dense(self, keep: Any) -> Any:
        """The gathered ids of the kept rows (`keep`, over the spilled rows) as `encode` codes
        them over the whole frame: dense ranks of the values present, so the codes, and every
        tie local suppression breaks by them, are the same. Filled a batch at a time, each
        batch's ids let go once copied."""
        import numpy as np

        m = len(self.values)
        parts, at = [], 0
        for codes in self.codes:
            parts.append(keep[at : at + codes.shape[0]])
            at += codes.shape[0]
        present = []  # of each column, the ids the kept rows hold
        for j in range(m):
            seen = [np.unique(c[p, j]) for c, p in zip(self.codes, parts, strict=True)]
            ids = np.unique(np.concatenate(seen)) if seen else np.zeros(0, dtype=np.int32)
            present.append(ids[ids >= 0])
        lookups = []
        for j, known in enumerate(self.values):
            lookup = np.full(len(known) + 1, WILDCARD, dtype=np.int64)  # the last: WILDCARD
            if present[j].size:
                values = list(known)
                ranks = pl.Series([values[i] for i in present[j].tolist()], dtype=self.dtypes[j])
                lookup[present[j]] = (ranks.rank("dense").cast(pl.Int64) - 1).to_numpy()
            lookups.append(lookup)
        out = np.empty((int(keep.sum()), m), dtype=np.int64)
        row = 0
        codes_left, self.codes = self.codes, []
        while codes_left:
            codes = codes_left.pop(0)[parts.pop(0)]
            for j in range(m):  # WILDCARD (-1) indexes the lookup's last entry, WILDCARD
                out[row : row + codes.shape[0], j] = lookups[j][codes[:, j]]
            row += codes.shape[0]
        return out

    def finish(
        self,
        *,
        rows_file: Path,
        write: Callable[[Path, Iterator[pl.DataFrame]], int],
        invalid_rows: set[int] | frozenset[int] = frozenset(),
        drop_invalid: bool = False,
        raw: pl.DataFrame | Callable[[], pl.DataFrame] | None = None,
        dropped_columns: Sequence[str] = (),
        identifier_columns: Sequence[str] | None = None,
        unread_rows: int = 0,
    ) -> Submission:
        """The submission of every batch added, as prepare_submission makes it of the whole;
        when ready, its rows written to `rows_file` by `write` (package rows without `_row`)."""
        import numpy as np

        rows = np.concatenate(self.rows) if self.rows else np.zeros(0, dtype=np.int64)
        fates = np.concatenate(self.fates) if self.fates else np.zeros(0, dtype=np.int8)
        dropped = {"invalid": 0, "no_consent": 0, "outside_period": 0}
        base = Submission(
            status=READY,
            org=self.org,
            period=self.period,
            rows_in_export=len(rows) + unread_rows,
            dropped=dropped,
            dropped_columns=list(dropped_columns),
            profile=self.profile,
            min_k=self.min_k,
        )
        try:
            if invalid_rows and not drop_invalid:
                base.status = REFUSED_INVALID
                dropped["invalid"] = len(invalid_rows)
                return base
            if invalid_rows:
                valid = ~np.isin(rows, np.fromiter(invalid_rows, dtype=np.int64))
            else:
                valid = np.ones(len(rows), dtype=bool)
            dropped["invalid"] = int((~valid).sum()) + unread_rows
            dropped["no_consent"] = int((valid & (fates == _NO_CONSENT)).sum())
            dropped["outside_period"] = int((valid & (fates == _OUTSIDE)).sum())
            keep = valid[fates == _KEPT]  # of the spilled rows, in spill order
            if not keep.any():
                base.status = REFUSED_EMPTY
                return base
            return self._finish_rows(
                base, keep, rows_file, write, raw, dropped_columns, identifier_columns
            )
        finally:
            for path, _ in self.spills:
                path.unlink(missing_ok=True)

    def _finish_rows(
        self,
        base: Submission,
        keep: Any,
        rows_file: Path,
        write: Callable[[Path, Iterator[pl.DataFrame]], int],
        raw: pl.DataFrame | Callable[[], pl.DataFrame] | None,
        dropped_columns: Sequence[str],
        identifier_columns: Sequence[str] | None,
    ) -> Submission:
        qis, k, risk = self.qis, self.k, self.profile.risk_threshold
        original = self._dense(keep)
        columns = qis.columns
        base.risk_before = _report(original, record_frequencies(original), columns, k, risk)
        blanked = None
        if self.suppress:
            done = suppress_codes(
                original, qis.suppressible, qis.importance, k, strata=len(qis.strata)
            )
            base.suppression = done.suppression(None, k)
            base.k_anonymity = _report(done.current, done.frequencies, columns, k, risk)
            blanked = done.blanked
        else:
            base.k_anonymity = base.risk_before
        del original

        def batches() -> Iterator[pl.DataFrame]:
            at = done_rows = 0
            for path, n in self.spills:
                mask = keep[at : at + n]
                at += n
                if not mask.any():
                    continue
                frame = pl.read_parquet(path)
                if not mask.all():
                    frame = frame.filter(pl.Series(mask))
                if blanked is not None:
                    part = blanked[done_rows : done_rows + frame.height]
                    frame = blank(frame, qis.suppressible, part)
                done_rows += frame.height
                yield frame

        scanned = [name for name, _ in package_fields(self.schema) if name != PSEUDONYM]
        scanner = ValueScanner(scanned, self.schema, ROW)

        def scanned_batches() -> Iterator[pl.DataFrame]:
            for frame in batches():
                scanner.scan(frame)
                yield frame.drop(ROW)

        try:
            written = write(rows_file, scanned_batches())
        except OSError as exc:
            raise PackageError(
                "package-unwritable", path=str(rows_file.parent.parent), reason=exc.strerror
            ) from exc
        # Values of the dropped columns, and of the case number itself, must not reappear anywhere.
        searched = dropped_columns if identifier_columns is None else identifier_columns
        also_dropped = scanner.also_dropped(raw, searched)
        if also_dropped:
            for frame in batches():
                scanner.scan_dropped(frame, also_dropped)
        hits = scanner.hits()
        if hits:
            rows_file.unlink(missing_ok=True)
            base.status = REFUSED_PERSONAL_DATA
            base.personal_data = hits
            return base
        base.rows_file, base.rows_written = rows_file, written
        return base
