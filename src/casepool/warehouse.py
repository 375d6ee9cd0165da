"""The steward's DuckDB warehouse: organisations, submissions, cases, and an append-only audit log.

Tables (see docs/steward-guide.md): `organisations`, `submissions`, `cases`, `audit_log`,
`warehouse_info`; views `active_submissions` and `active_cases` (the records analysts count).
Each package is merged in one transaction, so a crash or a kill leaves the warehouse as it was.
DuckDB's own file lock keeps a second process out while one writes; it waits, then says so.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from casepool.deidentifying import PSEUDONYM, package_fields
from casepool.errors import CasepoolError, PackageError, UsageError, WarehouseError
from casepool.keys import load_public_key, org_code, parse_public_key, public_key_id, public_key_pem
from casepool.packaging import SUFFIX, VerifiedPackage, read_package
from casepool.schema import CaseSchema, load_schema

WAREHOUSE_FORMAT = 1
DEFAULT_WAIT_SECONDS = 30.0
_SQL_TYPES = {"String": "VARCHAR", "List(String)": "VARCHAR[]", "Date": "DATE", "Int64": "BIGINT"}

Stage = Callable[[str], None]


# --- opening and creating ------------------------------------------------------------------------


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


def _first(result: duckdb.DuckDBPyConnection) -> Any:
    """The first row of a query, reading the result to its end (duckdb 2.0 refuses new work
    on a connection with an unfinished result)."""
    rows = result.fetchall()
    return rows[0] if rows else None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def current_actor() -> str:
    """Who is acting, for the audit log: the operating-system user at this machine."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in the environment (some containers, services)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _connect(path: Path, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + max(wait, 0.0)
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" not in text.lower():
                raise WarehouseError("warehouse-unreadable", path=str(path)) from None
            if time.monotonic() >= deadline:
                raise WarehouseError("warehouse-locked", path=str(path)) from None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        except duckdb.Error:
            raise WarehouseError("warehouse-unreadable", path=str(path)) from None


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
    try:
        _ensure_schema(con, path, read_only)
        yield con
    finally:
        con.close()


def _ensure_schema(con: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "warehouse_info" in tables:
        row = _first(con.execute("SELECT value FROM warehouse_info WHERE key = 'format'"))
        if row is None or int(row[0]) > WAREHOUSE_FORMAT:
            raise WarehouseError("warehouse-incompatible", path=str(path))
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
                ["created_at", _now().isoformat()],
                ["record_key_secret", secrets.token_hex(32)],
            ],
        )
        con.commit()
    except BaseException:
        con.rollback()
        raise


def _audit(
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
            _now(),
            actor,
            action,
            org,
            period,
            submission_id,
            package,
            json.dumps(detail, ensure_ascii=False, default=str) if detail else None,
        ],
    )


# --- organisations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Organisation:
    """A registered organisation: its code, name and the public key its packages must verify with."""

    org: str
    name: str
    key_id: str
    added_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "org": self.org,
            "name": self.name,
            "key_id": self.key_id,
            "added_at": self.added_at.isoformat(),
        }


def add_organisation(
    warehouse: str | Path,
    code: str,
    name: str,
    public_key: str | Path,
    *,
    replace: bool = False,
    actor: str | None = None,
    wait: float = DEFAULT_WAIT_SECONDS,
) -> Organisation:
    """Register an organisation and its public key (with `replace`, a new key for a known one)."""
    code = org_code(code)
    name = " ".join(str(name).split())
    if not name:
        raise UsageError("org-name-empty")
    key = load_public_key(public_key)
    actor = actor or current_actor()
    now = _now()
    with open_warehouse(warehouse, create=True, wait=wait) as con:
        con.begin()
        try:
            known = _first(con.execute("SELECT key_id FROM organisations WHERE org = ?", [code]))
            if known and not replace:
                raise WarehouseError("org-exists", org=code)
            if known:
                con.execute(
                    "UPDATE organisations SET name = ?, public_key = ?, key_id = ? WHERE org = ?",
                    [name, public_key_pem(key), public_key_id(key), code],
                )
            else:
                con.execute(
                    "INSERT INTO organisations VALUES (?, ?, ?, ?, ?, ?)",
                    [code, name, public_key_pem(key), public_key_id(key), now, actor],
                )
            _audit(
                con,
                "org-key-replaced" if known else "org-added",
                actor=actor,
                org=code,
                detail={
                    "key_id": public_key_id(key),
                    "previous_key_id": known[0] if known else None,
                },
            )
            con.commit()
        except BaseException:
            con.rollback()
            raise
    return Organisation(code, name, public_key_id(key), now)


def list_organisations(
    warehouse: str | Path, *, wait: float = DEFAULT_WAIT_SECONDS
) -> list[Organisation]:
    """Every registered organisation, by code."""
    with open_warehouse(warehouse, read_only=True, wait=wait) as con:
        rows = con.execute(
            "SELECT org, name, key_id, added_at FROM organisations ORDER BY org"
        ).fetchall()
    return [Organisation(*r) for r in rows]


def _key_lookup(con: duckdb.DuckDBPyConnection) -> Callable[[str], Ed25519PublicKey | None]:
    cache: dict[str, Ed25519PublicKey | None] = {}

    def public_key_of(org: str) -> Ed25519PublicKey | None:
        if org not in cache:
            row = _first(con.execute("SELECT public_key FROM organisations WHERE org = ?", [org]))
            cache[org] = parse_public_key(row[0], org) if row else None
        return cache[org]

    return public_key_of


# --- record keys ---------------------------------------------------------------------------------


def record_keys(secret: bytes, org: str, pseudonyms: Iterable[str]) -> list[float]:
    """The secret record key in [0, 1) of each record: keyed BLAKE2b of org and pseudonym, 53 bits.

    Derived, not drawn, so the same pseudonym keeps its key across resubmissions and the
    cell-key method perturbs the same cell the same way every time. Keyed with the warehouse's
    secret, so an organisation that knows its own pseudonyms still cannot compute their keys.
    """
    base = hashlib.blake2b(key=secret, digest_size=8)
    base.update(org.encode("utf-8") + b"\0")
    scale = float(2**53)
    keys = []
    for pseudonym in pseudonyms:
        state = base.copy()
        state.update(pseudonym.encode("ascii"))
        keys.append((int.from_bytes(state.digest(), "big") >> 11) / scale)
    return keys


def _record_key_secret(con: duckdb.DuckDBPyConnection) -> bytes:
    row = _first(con.execute("SELECT value FROM warehouse_info WHERE key = 'record_key_secret'"))
    if row is None:
        raise WarehouseError("warehouse-incompatible", path="record_key_secret")
    return bytes.fromhex(row[0])


# --- ingest --------------------------------------------------------------------------------------

LOADED, UNCHANGED, REFUSED = "loaded", "unchanged", "refused"


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

    def message(self, lang: str) -> str:
        from casepool.i18n import render

        if self.refusal is not None:
            return self.refusal.message(lang)
        key = {LOADED: "ingest-loaded", UNCHANGED: "ingest-unchanged"}[self.outcome]
        text = render(
            key, lang, package=self.package, org=self.org, period=self.period, rows=f"{self.rows:,}"
        )
        extra = []
        if self.superseded:
            extra.append(render("ingest-supersedes", lang, count=len(self.superseded)))
        if self.new_pseudonym_key:
            extra.append(render("ingest-new-pseudonym-key", lang, org=self.org))
        if self.superseded_by:
            extra.append(render("ingest-arrived-late", lang, newer=self.superseded_by[:12]))
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
            "refusal": (
                {"reason": self.refusal.key, **{k: str(v) for k, v in self.refusal.params.items()}}
                if self.refusal
                else None
            ),
        }


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

    def render(self, lang: str) -> str:
        from casepool.i18n import render

        lines = [p.message(lang) for p in self.packages]
        counts = {
            k: sum(p.outcome == k for p in self.packages) for k in (LOADED, UNCHANGED, REFUSED)
        }
        lines.append(
            render(
                "ingest-summary",
                lang,
                loaded=counts[LOADED],
                unchanged=counts[UNCHANGED],
                refused=counts[REFUSED],
            )
        )
        return "\n".join(lines)


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
    """Verify each package and merge it in its own transaction; a refusal changes no data."""
    packages = find_packages(paths)
    actor = actor or current_actor()
    notify = stage or (lambda name: None)
    schema = load_schema()
    outcomes = []
    with open_warehouse(warehouse, create=True, wait=wait) as con:
        public_key_of = _key_lookup(con)
        secret = _record_key_secret(con)
        for path in packages:
            notify(f"verify:{path.name}")
            try:
                verified = read_package(path, public_key_of, schema)
            except PackageError as refusal:
                _audit(
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
                continue
            outcomes.append(_merge(con, verified, secret, actor, notify))
    return IngestReport(Path(warehouse), outcomes)


def _merge(
    con: duckdb.DuckDBPyConnection,
    package: VerifiedPackage,
    secret: bytes,
    actor: str,
    notify: Stage,
) -> PackageOutcome:
    """Insert one verified package, its cases and its supersessions, all or nothing."""
    sid, org, period = package.submission_id, package.org, package.period
    outcome = PackageOutcome(package.path.name, LOADED, sid, org, period.code, package.cases.height)
    con.begin()
    try:
        if _first(con.execute("SELECT 1 FROM submissions WHERE submission_id = ?", [sid])):
            _audit(
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
        now, created = _now(), package.created.astimezone(UTC).replace(tzinfo=None)
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
                package.cases.height,
                manifest.get("generalisation"),
                (manifest.get("schema") or {}).get("version"),
                manifest.get("casepool_version"),
                key_id,
                package.signature,
                package.manifest_text,
            ],
        )
        pseudonyms = package.cases.get_column(PSEUDONYM)
        incoming = package.cases.with_columns(
            pl.lit(sid).alias("submission_id"),
            pl.lit(org).alias("org"),
            pl.lit(period.code).alias("period"),
            pl.Series(
                "record_key", record_keys(secret, org, pseudonyms.to_list()), dtype=pl.Float64
            ),
        )
        notify("insert-cases")
        con.register("incoming_cases", incoming)
        try:
            con.execute("INSERT INTO cases BY NAME SELECT * FROM incoming_cases")
        finally:
            con.unregister("incoming_cases")
        notify("cases-inserted")
        _audit(
            con,
            "ingested",
            actor=actor,
            org=org,
            period=period.code,
            submission_id=sid,
            package=package.path.name,
            detail={
                "rows": package.cases.height,
                "created": manifest.get("created"),
                "new_pseudonym_key": outcome.new_pseudonym_key,
            },
        )
        _supersede(con, outcome, created, now, actor)
        notify("commit")
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return outcome


def _supersede(
    con: duckdb.DuckDBPyConnection,
    outcome: PackageOutcome,
    created: datetime,
    now: datetime,
    actor: str,
) -> None:
    """The newest package (by its signed creation time) of an organisation and period is active."""
    others = con.execute(
        "SELECT submission_id, created_at FROM submissions WHERE org = ? AND period = ? "
        "AND superseded_by IS NULL AND submission_id <> ?",
        [outcome.org, outcome.period, outcome.submission_id],
    ).fetchall()
    mine = (created, outcome.submission_id)
    newer = sorted((c, s) for s, c in others if (c, s) > mine)
    if newer:
        winner = newer[-1][1]
        con.execute(
            "UPDATE submissions SET superseded_by = ?, superseded_at = ? WHERE submission_id = ?",
            [winner, now, outcome.submission_id],
        )
        outcome.superseded_by = winner
        _audit(
            con,
            "superseded",
            actor=actor,
            org=outcome.org,
            period=outcome.period,
            submission_id=outcome.submission_id,
            detail={"superseded_by": winner},
        )
        return
    for old, _ in others:
        con.execute(
            "UPDATE submissions SET superseded_by = ?, superseded_at = ? WHERE submission_id = ?",
            [outcome.submission_id, now, old],
        )
        outcome.superseded.append(old)
        _audit(
            con,
            "superseded",
            actor=actor,
            org=outcome.org,
            period=outcome.period,
            submission_id=old,
            detail={"superseded_by": outcome.submission_id},
        )


# --- status --------------------------------------------------------------------------------------


@dataclass
class WarehouseStatus:
    """Organisations and every submission, active and superseded, with counts and arrival times."""

    warehouse: Path
    organisations: list[Organisation]
    submissions: pl.DataFrame
    audit_entries: int
    active_cases: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "warehouse": str(self.warehouse),
            "organisations": [o.to_dict() for o in self.organisations],
            "submissions": [
                {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
                for row in self.submissions.iter_rows(named=True)
            ],
            "audit_entries": self.audit_entries,
            "active_cases": self.active_cases,
        }

    def render(self, lang: str) -> str:
        from casepool.i18n import render

        lines = [render("status-organisations", lang, count=len(self.organisations))]
        lines += [f"  {o.org:<12} {o.name}  (key {o.key_id})" for o in self.organisations]
        active = self.submissions.filter(pl.col("state") == "active")
        lines.append(
            render(
                "status-submissions",
                lang,
                active=active.height,
                superseded=self.submissions.height - active.height,
                rows=f"{int(active.get_column('rows').sum() or 0):,}",
            )
        )
        lines.append(render("status-counted", lang, count=f"{self.active_cases:,}"))
        for row in self.submissions.iter_rows(named=True):
            state = render(f"status-{row['state']}", lang)
            lines.append(
                f"  {row['org']:<12} {row['period']:<8} {state:<12} {row['rows']:>10,}  "
                f"{row['ingested_at']:%Y-%m-%d %H:%M} UTC  {row['package']}"
            )
        return "\n".join(lines)


def warehouse_status(
    warehouse: str | Path, *, wait: float = DEFAULT_WAIT_SECONDS
) -> WarehouseStatus:
    """What the warehouse holds, for `casepool status`."""
    with open_warehouse(warehouse, read_only=True, wait=wait) as con:
        organisations = [
            Organisation(*r)
            for r in con.execute(
                "SELECT org, name, key_id, added_at FROM organisations ORDER BY org"
            ).fetchall()
        ]
        submissions = con.sql(
            "SELECT org, period, CASE WHEN superseded_by IS NULL THEN 'active' "
            "ELSE 'superseded' END AS state, rows, created_at, ingested_at, package, "
            "submission_id, superseded_by FROM submissions ORDER BY org, period, created_at"
        ).pl()
        audit_row = _first(con.execute("SELECT count(*) FROM audit_log"))
        counted = _first(con.execute("SELECT count(*) FROM active_cases"))
    return WarehouseStatus(
        Path(warehouse),
        organisations,
        submissions,
        int(audit_row[0]) if audit_row else 0,
        int(counted[0]) if counted else 0,
    )


def table_counts(warehouse: str | Path, *, wait: float = DEFAULT_WAIT_SECONDS) -> dict[str, int]:
    """Rows per table and view (for checks and tests)."""
    names = ("organisations", "submissions", "cases", "audit_log", "active_cases")
    with open_warehouse(warehouse, read_only=True, wait=wait) as con:
        return {n: int(_first(con.execute(f"SELECT count(*) FROM {n}"))[0]) for n in names}


def data_fingerprint(warehouse: str | Path, *, wait: float = DEFAULT_WAIT_SECONDS) -> str:
    """A digest of organisations, submissions and cases: equal before and after a no-op."""
    digest = hashlib.sha256()
    with open_warehouse(warehouse, read_only=True, wait=wait) as con:
        for query in (
            "SELECT * FROM organisations ORDER BY org",
            "SELECT * EXCLUDE (manifest) FROM submissions ORDER BY submission_id",
            "SELECT * FROM cases ORDER BY submission_id, pseudonym",
        ):
            frame = con.sql(query).pl()
            digest.update(repr(frame.rows()).encode("utf-8"))
    return digest.hexdigest()
