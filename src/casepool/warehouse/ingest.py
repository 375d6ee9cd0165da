"""The steward's DuckDB warehouse: organisations, submissions, cases, and an append-only audit log.

Tables (see docs/steward-guide.md): `organisations`, `submissions`, `cases`, `audit_log`,
`warehouse_info`; views `active_submissions` and `active_cases` (the records analysts count).
Each package is merged in one transaction, so a crash or a kill leaves the warehouse as it was.
DuckDB's own file lock keeps a second process out while one writes; it waits, then says so.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from casepool.core.errors import CasepoolError, PackageError, UsageError, WarehouseError
from casepool.core.schema import load_schema
from casepool.exchange.keys import record_keys
from casepool.exchange.package import SUFFIX, VerifiedPackage, read_package
from casepool.warehouse.aggregates import store_aggregate
from casepool.warehouse.organisations import key_lookup
from casepool.warehouse.store import (
    ACTIVE_COLUMN,
    DEFAULT_WAIT_SECONDS,
    LOADED,
    REFUSED,
    REVOKED,
    UNCHANGED,
    clock_skew,
    current_actor,
    open_warehouse,
    record_audit,
    refresh_active_cases,
    rollback,
    scalar,
    utc_now,
)

Stage = Callable[[str], None]


def record_key_secret(con: duckdb.DuckDBPyConnection) -> bytes:
    row = scalar(con.execute("SELECT value FROM warehouse_info WHERE key = 'record_key_secret'"))
    if row is None:
        raise WarehouseError("warehouse-incompatible", path="record_key_secret")
    return bytes.fromhex(row[0])


@dataclass
class PackageOutcome:
    """What ingest did with one package."""

    package: str
    outcome: str  # loaded, unchanged (already ingested) or refused
    submission_id: str | None = None
    org: str | None = None
    period: str | None = None
    rows: int = 0
    superseded: list[str] = field(default_factory=list)  # submissions this one replaced
    superseded_by: str | None = None  # set when a newer package for the period was already in
    new_pseudonym_key: bool = False  # the organisation changed its pseudonym key
    refusal: CasepoolError | None = None
    signed_at: datetime | None = None  # the creation time in the signed manifest (UTC)
    newer_signed_at: datetime | None = None  # signed time of the package that stays active

    def event(self) -> str:
        """The progress event of this outcome: `done:<outcome>:<package>`."""
        return f"done:{self.outcome}:{self.package}"

    def message(self, lang: str) -> str:
        from casepool.core.i18n import render

        if self.refusal is not None:
            return self.refusal.message(lang)
        key = {LOADED: "ingest-loaded", UNCHANGED: "ingest-unchanged"}[self.outcome]
        text = render(
            key, lang, package=self.package, org=self.org, period=self.period, rows=f"{self.rows:,}"
        )
        extra = []
        if self.superseded:
            extra.append(
                render(
                    "ingest-supersedes-signed",
                    lang,
                    count=len(self.superseded),
                    signed=_stamp(self.signed_at),
                )
            )
        if self.new_pseudonym_key:
            extra.append(render("ingest-new-pseudonym-key", lang, org=self.org))
        if self.superseded_by:
            extra.append(
                render(
                    "ingest-arrived-late-signed",
                    lang,
                    newer=self.superseded_by[:12],
                    signed=_stamp(self.signed_at),
                    newer_signed=_stamp(self.newer_signed_at),
                )
            )
        return " ".join([text, *extra])

    def to_dict(self) -> dict[str, Any]:
        return {
            "package": self.package,
            "outcome": self.outcome,
            "submission_id": self.submission_id,
            "org": self.org,
            "period": self.period,
            "rows": self.rows,
            "supersedes": self.superseded,
            "superseded_by": self.superseded_by,
            "new_pseudonym_key": self.new_pseudonym_key,
            "signed_at": _stamp(self.signed_at, iso=True),
            "newer_signed_at": _stamp(self.newer_signed_at, iso=True),
            "refusal": (
                {"reason": self.refusal.key, **{k: str(v) for k, v in self.refusal.params.items()}}
                if self.refusal
                else None
            ),
        }


def _stamp(moment: datetime | None, *, iso: bool = False) -> str | None:
    if moment is None:
        return None
    return moment.isoformat(timespec="seconds") if iso else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


@dataclass
class IngestReport:
    """The outcome of every package given to one ingest run."""

    warehouse: Path
    packages: list[PackageOutcome]

    @property
    def refused(self) -> list[PackageOutcome]:
        return [p for p in self.packages if p.outcome == REFUSED]

    @property
    def ok(self) -> bool:
        return not self.refused

    def to_dict(self) -> dict[str, Any]:
        return {
            "warehouse": str(self.warehouse),
            "ok": self.ok,
            "packages": [p.to_dict() for p in self.packages],
        }


def find_packages(paths: Sequence[str | Path]) -> list[Path]:
    """The packages named, and those inside named folders (by name, so oldest first)."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found.extend(
                sorted(
                    p for p in path.glob(f"*{SUFFIX}") if p.is_file() and not p.name.startswith(".")
                )
            )
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError("ingest-path-missing", path=str(path))
    if not found:
        raise UsageError("ingest-nothing-found", path=", ".join(str(p) for p in paths)[:200])
    return list(dict.fromkeys(found))


def ingest_packages(
    paths: Sequence[str | Path],
    warehouse: str | Path,
    *,
    actor: str | None = None,
    wait: float = DEFAULT_WAIT_SECONDS,
    stage: Stage | None = None,
) -> IngestReport:
    """Verify each package and merge it in its own transaction; a refusal changes no data.

    `stage` hears `found:<n>`, then for each package `verify:<name>`, the merge's stages and
    `done:<outcome>:<name>` once its outcome is final (after the commit when it loaded).
    A package signed with a creation time beyond now plus the warehouse's clock skew is refused.
    """
    packages = find_packages(paths)
    actor = actor or current_actor()
    notify = stage or (lambda name: None)
    schema = load_schema()
    outcomes = []
    notify(f"found:{len(packages)}")
    with open_warehouse(warehouse, create=True, wait=wait) as con:
        public_key_of = key_lookup(con)
        secret = record_key_secret(con)
        skew = clock_skew(con)
        for path in packages:
            notify(f"verify:{path.name}")
            try:
                # The rows' value checks run later, beside the insert (`_insert_cases`).
                verified = read_package(path, public_key_of, schema, check_rows=False)
                _refuse_future(verified, skew)
                outcome = _merge(con, verified, secret, actor, notify)  # rolled back if refused
            except PackageError as refusal:
                record_audit(
                    con,
                    "refused",
                    actor=actor,
                    package=path.name,
                    detail={
                        "reason": refusal.key,
                        **{k: str(v) for k, v in refusal.params.items()},
                    },
                )
                outcomes.append(PackageOutcome(path.name, REFUSED, refusal=refusal))
                notify(outcomes[-1].event())
                continue
            outcomes.append(outcome)
            notify(outcomes[-1].event())
    return IngestReport(Path(warehouse), outcomes)


def _refuse_future(package: VerifiedPackage, skew: timedelta) -> None:
    """A signed creation time later than now + skew cannot be true: the package is refused."""
    signed = package.created.astimezone(UTC).replace(tzinfo=None)
    now = utc_now()
    if signed > now + skew:
        package.check_rows()  # a refusal of its rows is named first, as a whole read names it
        raise PackageError(
            "package-from-the-future",
            package=package.path.name,
            org=package.org,
            signed=f"{signed:%Y-%m-%d %H:%M:%S}",
            now=f"{now:%Y-%m-%d %H:%M:%S}",
            skew=int(skew.total_seconds()),
        )


def _merge(
    con: duckdb.DuckDBPyConnection,
    package: VerifiedPackage,
    secret: bytes,
    actor: str,
    notify: Stage,
) -> PackageOutcome:
    """Insert one verified package, its cases and its supersessions, all or nothing."""
    sid, org, period = package.submission_id, package.org, package.period
    outcome = PackageOutcome(package.path.name, LOADED, sid, org, period.code, package.rows)
    outcome.signed_at = package.created.astimezone(UTC).replace(tzinfo=None)
    con.begin()
    try:
        if scalar(con.execute("SELECT 1 FROM submissions WHERE submission_id = ?", [sid])):
            package.check_rows()  # refused rows are refused, as before, even if seen already
            record_audit(
                con,
                "already-ingested",
                actor=actor,
                org=org,
                period=period.code,
                submission_id=sid,
                package=package.path.name,
            )
            con.commit()
            outcome.outcome = UNCHANGED
            return outcome
        now, created = utc_now(), package.created.astimezone(UTC).replace(tzinfo=None)
        manifest = package.manifest
        key_id = str(manifest.get("pseudonym_key_id") or "") or None
        earlier = {
            r[0]
            for r in con.execute(
                "SELECT DISTINCT pseudonym_key_id FROM submissions "
                "WHERE org = ? AND pseudonym_key_id IS NOT NULL",
                [org],
            ).fetchall()
        }
        # Another pseudonym key gives the same child another pseudonym: a double count ahead.
        outcome.new_pseudonym_key = bool(earlier) and key_id not in earlier
        # The organisation's first submission supersedes nothing: its rows go in counted.
        first = not scalar(con.execute("SELECT 1 FROM submissions WHERE org = ? LIMIT 1", [org]))
        con.execute(
            "INSERT INTO submissions (submission_id, org, period, period_start, period_end, "
            "package, created_at, ingested_at, ingested_by, rows, generalisation, schema_version, "
            "casepool_version, pseudonym_key_id, signature, manifest) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                sid,
                org,
                period.code,
                period.start,
                period.end,
                package.path.name,
                created,
                now,
                actor,
                package.rows,
                manifest.get("generalisation"),
                (manifest.get("schema") or {}).get("version"),
                manifest.get("casepool_version"),
                key_id,
                package.signature,
                package.manifest_text,
            ],
        )
        notify("insert-cases")
        _insert_cases(con, package, secret)
        notify("cases-inserted")
        outcome.rows = store_aggregate(con, package, secret)  # counts of an aggregate package
        record_audit(
            con,
            "ingested",
            actor=actor,
            org=org,
            period=period.code,
            submission_id=sid,
            package=package.path.name,
            detail={
                "rows": package.rows,
                "created": manifest.get("created"),
                "new_pseudonym_key": outcome.new_pseudonym_key,
            },
        )
        _supersede(con, org, period.code, now, actor, outcome)
        refresh_active_cases(con, org, rows_flagged=first)
        notify("commit")
        con.commit()
    except BaseException:
        rollback(con)
        raise
    return outcome


def _insert_cases(con: duckdb.DuckDBPyConnection, package: VerifiedPackage, secret: bytes) -> None:
    """Insert a verified package's rows with their record keys, in the caller's transaction.

    DuckDB reads the verified cases.parquet itself (from a private temporary copy of the bytes
    whose checksum the signed manifest gave), so the rows never become a frame in Python. Only
    the pseudonym column is in Python, for the record keys (keyed BLAKE2b, which DuckDB lacks);
    the keys are matched to the rows by position, and a row whose pseudonym differs from its
    key's stops the ingest, so a key can never land on another record.

    The rows' value checks (`VerifiedPackage.check_rows`, polars) run in a thread while DuckDB
    inserts (both release the GIL: the second core does them); the caller commits only after
    they pass, and a refusal they find is the one a whole read names, before any DuckDB error.
    Distinct record keys show the pseudonyms distinct, so that check needs no hash of its own.
    """
    if not package.rows:
        package.check_rows()
        return
    keys = pa.array(record_keys(secret, package.org, package.pseudonyms), pa.float64())
    distinct = pc.count_distinct(keys).as_py() == package.rows
    checks = _RowChecks(package, distinct)
    failed = False
    inserted = None
    try:
        with tempfile.TemporaryDirectory(prefix="casepool-ingest-") as folder:
            data = Path(folder) / "cases.parquet"
            data.write_bytes(package.data)
            con.register(
                "incoming_keys",
                pa.table({"key_pseudonym": package.pseudonyms.to_arrow(), "record_key": keys}),
            )
            try:
                # Counted unless the refresh after the insert says otherwise: the usual newest
                # package then needs no update of its own rows.
                inserted = scalar(
                    con.execute(
                        "INSERT INTO cases BY NAME SELECT p.*, k.record_key, "
                        "?::VARCHAR AS submission_id, ?::VARCHAR AS org, ?::VARCHAR AS period, "
                        f"true AS {ACTIVE_COLUMN} "
                        "FROM read_parquet(?, hive_partitioning = false) p "
                        "POSITIONAL JOIN incoming_keys k WHERE p.pseudonym = k.key_pseudonym",
                        [package.submission_id, package.org, package.period.code, str(data)],
                    )
                )
            except duckdb.Error as exc:
                rollback(con)  # the failed statement aborted the transaction: end it to go on
                if str(data) not in str(exc) and "parquet" not in str(exc).lower():
                    raise
                failed = True  # bytes polars could check but DuckDB cannot decode
            finally:
                con.unregister("incoming_keys")
    finally:
        checks.wait()  # raises the rows' refusal, which comes first
    if failed:
        raise PackageError(
            "package-bad-data", package=package.path.name, reason="cases.parquet cannot be read"
        )
    if inserted is None or inserted[0] != package.rows:
        # A row out of step with its key: never expected (both are the same file's rows in order).
        raise WarehouseError("warehouse-incompatible", path="cases")


class _RowChecks:
    """`package.check_rows` in a thread beside the insert (none when the rows are checked)."""

    def __init__(self, package: VerifiedPackage, distinct: bool) -> None:
        self.package, self.distinct = package, distinct
        self.failure: BaseException | None = None
        self.thread: threading.Thread | None = None
        if not package.rows_checked:
            self.thread = threading.Thread(target=self._run, name="casepool-row-checks")
            self.thread.start()

    def _run(self) -> None:
        try:
            self.package.check_rows(distinct=self.distinct)
        except BaseException as exc:  # handed to the ingest's own thread by `wait`
            self.failure = exc

    def wait(self) -> None:
        """Wait for the checks; raise what they raised (a PackageError names the refusal)."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure


def _supersede(
    con: duckdb.DuckDBPyConnection,
    org: str,
    period: str,
    now: datetime,
    actor: str,
    outcome: PackageOutcome | None = None,
) -> str | None:
    """Decide which submission of an organisation and period is active; returns its id.

    The one rule, used by ingest, revoke and reactivate: among the accepted submissions (not
    revoked) the newest by its *signed* creation time (ties: the larger submission id) is
    active, and every other accepted one is superseded by it. Only rows whose state changes
    are written, each with an audit line saying which signed times decided. `outcome`, when
    given, learns what happened to the package being ingested.
    """
    rows = con.execute(
        "SELECT submission_id, created_at, superseded_by FROM submissions "
        "WHERE org = ? AND period = ? AND (superseded_by IS NULL OR superseded_by <> ?)",
        [org, period, REVOKED],
    ).fetchall()
    if not rows:
        return None
    winner_signed, winner = max((created, sid) for sid, created, _ in rows)
    for sid, created, by in rows:
        if sid == winner and by is not None:
            con.execute(
                "UPDATE submissions SET superseded_by = NULL, superseded_at = NULL "
                "WHERE submission_id = ?",
                [sid],
            )
            action = "reinstated"
        elif sid != winner and by is None:
            con.execute(
                "UPDATE submissions SET superseded_by = ?, superseded_at = ? "
                "WHERE submission_id = ?",
                [winner, now, sid],
            )
            action = "superseded"
        else:
            continue
        record_audit(
            con,
            action,
            actor=actor,
            org=org,
            period=period,
            submission_id=sid,
            detail={
                "superseded_by": None if sid == winner else winner,
                "ordered_by": "signed creation time",
                "signed": created,
                "active_signed": winner_signed,
            },
        )
        if outcome is not None and sid == outcome.submission_id:
            outcome.superseded_by = winner
            outcome.newer_signed_at = winner_signed
        elif outcome is not None and winner == outcome.submission_id:
            outcome.superseded.append(sid)
    return winner
