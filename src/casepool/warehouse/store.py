"""The steward's DuckDB warehouse: organisations, submissions, cases, and an append-only audit log.

Tables (see docs/steward-guide.md): `organisations`, `submissions`, `cases`, `audit_log`,
`warehouse_info`; views `active_submissions` and `active_cases` (the records analysts count).
Each package is merged in one transaction, so a crash or a kill leaves the warehouse as it was.
DuckDB's own file lock keeps a second process out while one writes; it waits, then says so.
"""

from __future__ import annotations

import errno
import getpass
import json
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from casepool.core.errors import WarehouseError
from casepool.core.schema import CaseSchema, load_schema
from casepool.exchange.profile import PSEUDONYM, package_fields

# The CLI sets the lock notice without importing DuckDB: it lives in lock_notice.py.
from casepool.warehouse.lock_notice import LOCK_WAIT_NOTICE as LOCK_WAIT_NOTICE

WAREHOUSE_FORMAT = 1


DEFAULT_WAIT_SECONDS = 30.0

DEFAULT_CLOCK_SKEW_SECONDS = 600
"""How far past this computer's clock a signed creation time may lie (10 min); a warehouse may
set its own in `warehouse_info` under the key `clock_skew_seconds`."""

REVOKED = "revoked"
"""`superseded_by` of a submission the steward revoked: out of the active views, kept as history."""


_SQL_TYPES = {"String": "VARCHAR", "List(String)": "VARCHAR[]", "Date": "DATE", "Int64": "BIGINT"}


def _ddl(schema: CaseSchema) -> list[str]:
    case_columns = ",\n  ".join(
        f"{name} {_SQL_TYPES[str(dtype)]}"
        for name, dtype in package_fields(schema)
        if name != PSEUDONYM
    )
    return [
        "CREATE TABLE warehouse_info (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
        """CREATE TABLE organisations (
  org VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, public_key VARCHAR NOT NULL,
  key_id VARCHAR NOT NULL, added_at TIMESTAMP NOT NULL, added_by VARCHAR NOT NULL)""",
        """CREATE TABLE submissions (
  submission_id VARCHAR PRIMARY KEY, org VARCHAR NOT NULL, period VARCHAR NOT NULL,
  period_start DATE NOT NULL, period_end DATE NOT NULL, package VARCHAR NOT NULL,
  created_at TIMESTAMP NOT NULL, ingested_at TIMESTAMP NOT NULL, ingested_by VARCHAR NOT NULL,
  rows BIGINT NOT NULL, generalisation VARCHAR, schema_version INTEGER, casepool_version VARCHAR,
  pseudonym_key_id VARCHAR, signature VARCHAR,
  superseded_by VARCHAR, superseded_at TIMESTAMP, manifest VARCHAR NOT NULL)""",
        f"""CREATE TABLE cases (
  submission_id VARCHAR NOT NULL, org VARCHAR NOT NULL, period VARCHAR NOT NULL,
  pseudonym VARCHAR NOT NULL, record_key DOUBLE NOT NULL,
  {case_columns})""",
        "CREATE SEQUENCE audit_seq START 1",
        """CREATE TABLE audit_log (
  seq BIGINT PRIMARY KEY DEFAULT nextval('audit_seq'), logged_at TIMESTAMP NOT NULL,
  actor VARCHAR NOT NULL, action VARCHAR NOT NULL, org VARCHAR, period VARCHAR,
  submission_id VARCHAR, package VARCHAR, detail VARCHAR)""",
        """CREATE VIEW active_submissions AS
  SELECT * FROM submissions WHERE superseded_by IS NULL""",
        # A case resubmitted under an overlapping period (2025 and 2025-Q3) counts once: the row
        # from the newest active submission of its organisation wins.
        """CREATE VIEW active_cases AS
  SELECT c.* FROM cases c JOIN active_submissions s USING (submission_id)
  QUALIFY row_number() OVER (
    PARTITION BY c.org, c.pseudonym ORDER BY s.created_at DESC, s.submission_id DESC) = 1""",
    ]


def scalar(result: duckdb.DuckDBPyConnection) -> Any:
    """The first row of a query, reading the result to its end (duckdb 2.0 refuses new work
    on a connection with an unfinished result)."""
    rows = result.fetchall()
    return rows[0] if rows else None


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def current_actor() -> str:
    """Who is acting, for the audit log: the operating-system user at this machine."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in the environment (some containers, services)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class LockHolder:
    """The process DuckDB names as holding the warehouse's lock (either may be unknown)."""

    pid: int | None
    program: str | None


LockWaitNotice = Callable[[Path, LockHolder, float], None]

_LOCK_PID = re.compile(r"lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


def lock_holder(text: str) -> LockHolder:
    """Pid and program from DuckDB's "Conflicting lock is held in /usr/bin/python3 (PID 12)"."""
    found = _LOCK_PID.search(text)
    if not found:
        return LockHolder(None, None)
    return LockHolder(int(found["pid"]), Path(found["program"]).name)


def _is_lock_error(text: str) -> bool:
    lowered = text.lower()
    return "could not set lock" in lowered or "conflicting lock" in lowered


def _looks_like_duckdb(path: Path) -> bool:
    """DuckDB files carry the magic bytes DUCK at offset 8."""
    try:
        with path.open("rb") as handle:
            return handle.read(12)[8:12] == b"DUCK"
    except OSError:
        return False


def storage_error(exc: BaseException, path: Path) -> WarehouseError | None:
    """The cause of a failed read or write of the warehouse, named for the steward (or None).

    Disk full, read-only file or file system, damaged or truncated file, and a lock held by
    another process each have their own message; the caller chains the original exception.
    """
    text = str(exc)
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC or "No space left on device" in text:
        return WarehouseError("warehouse-disk-full", path=str(path))
    if code in (errno.EROFS, errno.EACCES, errno.EPERM) or any(
        marker in text
        for marker in ("Read-only file system", "Permission denied", "Operation not permitted")
    ):
        return WarehouseError("warehouse-read-only", path=str(path))
    if _is_lock_error(text):
        return locked_error(path, lock_holder(text), 0.0)
    if "not a valid DuckDB database file" in text:
        return WarehouseError("warehouse-unreadable", path=str(path))
    if isinstance(exc, duckdb.Error) and (
        "Could not read enough bytes" in text
        or "Corrupt" in text
        or "checksum" in text.lower()
        or isinstance(exc, duckdb.SerializationException)
        or (isinstance(exc, duckdb.IOException) and _looks_like_duckdb(path))
    ):
        return WarehouseError("warehouse-damaged", path=str(path))
    return None


def locked_error(path: Path, holder: LockHolder, waited: float) -> WarehouseError:
    if holder.pid is None:
        return WarehouseError("warehouse-locked", path=str(path), waited=f"{waited:g}")
    return WarehouseError(
        "warehouse-locked-by",
        path=str(path),
        pid=holder.pid,
        program=holder.program or "?",
        waited=f"{waited:g}",
    )


def _connect(path: Path, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + max(wait, 0.0)
    delay = 0.05
    told = False
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            text = str(exc)
            if not _is_lock_error(text):
                raise storage_error(exc, path) or WarehouseError(
                    "warehouse-unreadable", path=str(path)
                ) from exc
            holder = lock_holder(text)
            if time.monotonic() >= deadline:
                raise locked_error(path, holder, wait) from exc
            notice = LOCK_WAIT_NOTICE.get()
            if notice is not None and not told:
                notice(path, holder, wait)
                told = True
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


@contextmanager
def open_warehouse(
    path: str | Path,
    *,
    create: bool = False,
    read_only: bool = False,
    wait: float = DEFAULT_WAIT_SECONDS,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the warehouse (created when `create`), waiting up to `wait` s for a lock."""
    path = Path(path)
    if not path.exists() and not create:
        raise WarehouseError("warehouse-missing", path=str(path))
    if create:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WarehouseError(
                "warehouse-unwritable", path=str(path), reason=exc.strerror
            ) from exc
    con = _connect(path, read_only and path.exists(), wait)
    failed = False
    try:
        # A library never prints: DuckDB would draw a progress bar on stdout for long work.
        con.execute("SET enable_progress_bar = false")
        _ensure_schema(con, path, read_only)
        yield con
    except (duckdb.Error, OSError) as exc:
        failed = True
        named = storage_error(exc, path)
        if named is None:
            raise
        raise named from exc
    except BaseException:
        failed = True
        raise
    finally:
        try:
            con.close()  # a close may checkpoint: it can meet a full disk too
        except (duckdb.Error, OSError) as exc:
            named = storage_error(exc, path)
            if not failed:
                if named is None:
                    raise
                raise named from exc


def _ensure_schema(con: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "warehouse_info" in tables:
        row = scalar(con.execute("SELECT value FROM warehouse_info WHERE key = 'format'"))
        if row is None or int(row[0]) > WAREHOUSE_FORMAT:
            raise WarehouseError("warehouse-incompatible", path=str(path))
        if not read_only:
            keep_active_flags(con)
        return
    if tables:
        raise WarehouseError("warehouse-incompatible", path=str(path))
    if read_only:
        raise WarehouseError("warehouse-missing", path=str(path))
    con.begin()
    try:
        for statement in _ddl(load_schema()):
            con.execute(statement)
        con.executemany(
            "INSERT INTO warehouse_info VALUES (?, ?)",
            [
                ["format", str(WAREHOUSE_FORMAT)],
                ["created_at", utc_now().isoformat()],
                ["record_key_secret", secrets.token_hex(32)],
            ],
        )
        keep_active_flags(con, in_transaction=True)
        con.commit()
    except BaseException:
        rollback(con)
        raise


def rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction; a commit that failed (a full disk) has already ended it,
    and the error to report is that failure, not "no transaction is active"."""
    with suppress(duckdb.TransactionException):
        con.rollback()


def clock_skew(con: duckdb.DuckDBPyConnection) -> timedelta:
    """The clock skew this warehouse allows for signed creation times."""
    row = scalar(con.execute("SELECT value FROM warehouse_info WHERE key = 'clock_skew_seconds'"))
    try:
        seconds = int(row[0]) if row else DEFAULT_CLOCK_SKEW_SECONDS
    except ValueError:
        seconds = DEFAULT_CLOCK_SKEW_SECONDS
    return timedelta(seconds=max(seconds, 0))


def record_audit(
    con: duckdb.DuckDBPyConnection,
    action: str,
    *,
    actor: str,
    org: str | None = None,
    period: str | None = None,
    submission_id: str | None = None,
    package: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one line to the audit log (the code never updates or deletes audit rows)."""
    con.execute(
        "INSERT INTO audit_log (logged_at, actor, action, org, period, submission_id, package, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            utc_now(),
            actor,
            action,
            org,
            period,
            submission_id,
            package,
            json.dumps(detail, ensure_ascii=False, default=str) if detail else None,
        ],
    )


def record_audits(con: duckdb.DuckDBPyConnection, lines: Sequence[Mapping[str, Any]]) -> None:
    """Append many lines to the audit log, in order, in few statements (each line: the arguments
    of `record_audit` by name)."""
    columns = ("actor", "action", "org", "period", "submission_id", "package")
    for start in range(0, len(lines), 250):  # one statement per 250 lines, in order
        chunk = lines[start : start + 250]
        params: list[Any] = []
        for line in chunk:
            detail = line.get("detail")
            params += [utc_now(), *(line.get(c) for c in columns)]
            params.append(json.dumps(detail, ensure_ascii=False, default=str) if detail else None)
        con.execute(
            "INSERT INTO audit_log (logged_at, actor, action, org, period, submission_id, "
            "package, detail) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
            params,
        )


LOADED, UNCHANGED, REFUSED = "loaded", "unchanged", "refused"


# --- the counted cases, kept at ingest -----------------------------------------------------------

# `cases.active` marks the rows `active_cases` returns: the row of the newest active submission
# of its organisation for each pseudonym. Ingest keeps it in the same transaction as the change
# that moves it, so reading the counted cases is a plain filter, not a window over every row.
# `active_cases_basis` lists the active submissions the flags were computed for; while it differs
# from `active_submissions` (a write that did not refresh the flags) the view falls back to the
# window, so a stale flag can slow a query but never change a count.
ACTIVE_COLUMN = "active"
BASIS = "active_cases_basis"
_WINNER_ORDER = "ORDER BY s.created_at DESC, s.submission_id DESC"
_FRESH = f"""NOT EXISTS (
    SELECT submission_id FROM active_submissions EXCEPT SELECT submission_id FROM {BASIS})
  AND NOT EXISTS (
    SELECT submission_id FROM {BASIS} EXCEPT SELECT submission_id FROM active_submissions)"""
_ACTIVE_CASES_VIEW = f"""CREATE OR REPLACE VIEW active_cases AS
  SELECT * EXCLUDE ({ACTIVE_COLUMN}) FROM cases WHERE {ACTIVE_COLUMN} AND ({_FRESH})
  UNION ALL
  SELECT c.* EXCLUDE ({ACTIVE_COLUMN}) FROM cases c
  JOIN (SELECT * FROM active_submissions WHERE NOT ({_FRESH})) s USING (submission_id)
  QUALIFY row_number() OVER (PARTITION BY c.org, c.pseudonym {_WINNER_ORDER}) = 1"""


def keep_active_flags(con: duckdb.DuckDBPyConnection, *, in_transaction: bool = False) -> None:
    """Give a warehouse made before the flag its `active` column, basis table and view (once)."""
    has_flag = scalar(
        con.execute(
            "SELECT 1 FROM duckdb_columns() WHERE table_name = 'cases' AND column_name = ?",
            [ACTIVE_COLUMN],
        )
    )
    if has_flag:
        return
    if not in_transaction:
        con.begin()
    try:
        con.execute(f"ALTER TABLE cases ADD COLUMN {ACTIVE_COLUMN} BOOLEAN")
        con.execute(f"CREATE TABLE IF NOT EXISTS {BASIS} (submission_id VARCHAR PRIMARY KEY)")
        refresh_active_cases(con)
        con.execute(_ACTIVE_CASES_VIEW)
        if not in_transaction:
            con.commit()
    except BaseException:
        if not in_transaction:
            con.rollback()
        raise


def refresh_active_cases(
    con: duckdb.DuckDBPyConnection, org: str | None = None, *, rows_flagged: bool = False
) -> None:
    """Recompute `cases.active` for one organisation (all when None), in the caller's transaction.

    Call it after anything that changes which submissions are active. When the basis of another
    organisation was stale too, every organisation is recomputed. `rows_flagged`: the caller
    knows the organisation's rows already carry their flags (its first submission, inserted
    counted), so only the basis is brought up to date, without a pass over its rows.
    """
    if org is None:
        orgs = [r[0] for r in con.execute("SELECT DISTINCT org FROM cases").fetchall()]
        for each in orgs:
            _flag(con, each)
        con.execute(f"DELETE FROM {BASIS}")
        con.execute(f"INSERT INTO {BASIS} SELECT submission_id FROM active_submissions")
        return
    if not rows_flagged:
        _flag(con, org)
    con.execute(
        f"DELETE FROM {BASIS} WHERE submission_id IN "
        "(SELECT submission_id FROM submissions WHERE org = ?) "
        "OR submission_id NOT IN (SELECT submission_id FROM submissions)",
        [org],
    )
    con.execute(
        f"INSERT INTO {BASIS} SELECT submission_id FROM active_submissions WHERE org = ?", [org]
    )
    if not scalar(con.execute(f"SELECT {_FRESH}"))[0]:
        refresh_active_cases(con)


def _flag(con: duckdb.DuckDBPyConnection, org: str) -> None:
    """Set `cases.active` of one organisation's rows, touching only the rows whose flag changes."""
    live = [
        r[0]
        for r in con.execute(
            "SELECT submission_id FROM active_submissions WHERE org = ?", [org]
        ).fetchall()
    ]
    if len(live) <= 1:
        # One active submission (the usual case): its rows are the counted ones (a package's
        # pseudonyms are unique, verified at ingest), no window needed.
        keep = "coalesce(submission_id = ?, false)"
        only = live[0] if live else None
        con.execute(
            f"UPDATE cases SET {ACTIVE_COLUMN} = {keep} "
            f"WHERE org = ? AND {ACTIVE_COLUMN} IS DISTINCT FROM {keep}",
            [only, org, only],
        )
        return
    con.execute(
        f"""UPDATE cases SET {ACTIVE_COLUMN} = fresh.keep FROM (
  SELECT c.rowid AS rid, coalesce(s.submission_id IS NOT NULL AND row_number() OVER (
    PARTITION BY c.pseudonym, s.submission_id IS NOT NULL {_WINNER_ORDER}) = 1, false) AS keep
  FROM cases c LEFT JOIN active_submissions s USING (submission_id) WHERE c.org = ?) fresh
WHERE cases.rowid = fresh.rid AND cases.{ACTIVE_COLUMN} IS DISTINCT FROM fresh.keep""",
        [org],
    )


def active_flags_fresh(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether `cases.active` says exactly which rows `active_cases` returns (the flags exist and
    were computed for today's active submissions), so readers may filter on it directly."""
    has_flag = scalar(
        con.execute(
            "SELECT 1 FROM duckdb_columns() WHERE table_name = 'cases' AND column_name = ?",
            [ACTIVE_COLUMN],
        )
    )
    has_basis = scalar(con.execute("SELECT 1 FROM duckdb_tables() WHERE table_name = ?", [BASIS]))
    return bool(has_flag and has_basis and scalar(con.execute(f"SELECT {_FRESH}"))[0])
