"""The state of one running service: its warehouse, accounts cache, sessions and limits, and the
library calls its pages and API share (answering a query, uploading a package)."""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casepool.core.errors import PackageError, UsageError
from casepool.exchange.package import SUFFIX, read_package
from casepool.publishing.query import QueryResult
from casepool.serving import accounts
from casepool.serving.access import Warehouse
from casepool.serving.answering import Answers, Entry, LedgerQueue, Served
from casepool.serving.security import RateLimiter, Sessions, SignInThrottle
from casepool.warehouse.ingest import IngestReport, ingest_packages
from casepool.warehouse.organisations import key_lookup
from casepool.warehouse.store import record_audit, utc_now

ACCOUNT_CACHE_SECONDS = 60.0
MAX_DIMENSIONS = 3
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}")


@dataclass
class Limits:
    """Per-account limits and body sizes (all configurable at `casepool serve`)."""

    requests_per_minute: float = 600
    request_burst: int = 60
    queries_per_minute: float = 60
    query_burst: int = 20
    max_body: int = 64 * 1024
    max_package: int = 200 * 1024 * 1024


@dataclass(frozen=True)
class KnownAccounts:
    """The active accounts as read at one moment: by the hash of their token and by name."""

    by_token: dict[str, accounts.Account]
    by_name: dict[str, accounts.Account]
    read_at: float
    epoch: int
    generation: int


@dataclass
class Service:
    """Everything a request handler needs; one per running app."""

    warehouse: Warehouse
    limits: Limits = field(default_factory=Limits)
    secure_cookies: bool = False

    def __post_init__(self) -> None:
        self.sessions = Sessions()
        self.requests = RateLimiter(self.limits.requests_per_minute, self.limits.request_burst)
        self.queries = RateLimiter(self.limits.queries_per_minute, self.limits.query_burst)
        self.sign_ins = SignInThrottle()
        self._known: KnownAccounts | None = None
        self._generation = 0  # moved by `forget`: accounts read before are not kept
        self._reading_accounts = threading.Lock()
        self._cache_lock = threading.Lock()
        self.answers = Answers(self.warehouse)
        self.ledger = LedgerQueue(self.warehouse, self.answers.changes)

    # --- who is asking -------------------------------------------------------------------------

    def account_for_token(self, token: str) -> accounts.Account | None:
        """The active account of an API token (`known_accounts`)."""
        if not accounts.token_plausible(token):
            return None
        return self.known_accounts().by_token.get(accounts.token_hash(token))

    def account_named(self, name: str) -> accounts.Account | None:
        return self.known_accounts().by_name.get(name)

    def known_accounts(self) -> KnownAccounts:
        """The active accounts, read in one look at the warehouse and kept while it is
        unchanged (only the service's own ledger writer wrote to it), at most
        ACCOUNT_CACHE_SECONDS: a revocation on the command line takes effect at the next
        request, one on the steward's page at once (`forget`). One reader at a time: forty
        first requests open the warehouse once (the others wait for its answer)."""
        known = self._known
        if known is not None and self._fresh(known):
            return known
        with self._reading_accounts:
            known = self._known
            if known is not None and self._fresh(known):
                return known
            generation = self._generation
            epoch = self.answers.changes.epoch()
            now = time.monotonic()
            with self.warehouse.read() as con:
                active = accounts.active_accounts(con)
            known = KnownAccounts(
                {token_hash: a for a, token_hash in active},
                {a.name: a for a, _ in active},
                now,
                epoch,
                generation,
            )
            with self._cache_lock:
                if generation == self._generation:  # not forgotten meanwhile
                    self._known = known
            return known

    def _fresh(self, known: KnownAccounts) -> bool:
        return (
            known.generation == self._generation
            and known.epoch == self.answers.changes.epoch()
            and time.monotonic() - known.read_at < ACCOUNT_CACHE_SECONDS
        )

    def forget(self, name: str) -> None:
        with self._cache_lock:
            self._generation += 1
            self._known = None
        self.sessions.end_user(name)

    def audit(self, action: str, *, actor: str, **extra: Any) -> None:
        """One line in the warehouse's audit log for an account's action, written now."""
        with self.warehouse.write() as con:
            record_audit(con, action, actor=f"serve:{actor}", **extra)

    def audit_later(self, action: str, *, actor: str, **extra: Any) -> None:
        """Queue a line for the audit log (downloads): written in batches by the ledger queue, so
        many requests do not each take the warehouse for writing."""
        self.ledger.put(Entry(action, f"serve:{actor}", extra.get("detail") or {}))

    def flush_audit(self) -> int:
        """Write the queued ledger entries and audit lines now, in one transaction (0 when the
        warehouse is busy: they stay queued)."""
        return self.ledger.flush()

    # --- answering -----------------------------------------------------------------------------

    def answer(
        self,
        account: accounts.Account,
        indicator: str,
        by: list[str],
        where: list[tuple[str, list[str]]],
    ) -> QueryResult:
        """The protected table, with the same protection and release ledger as `casepool query`:
        post-processing of the stored measurements (answering.Answers), its ledger entry and
        audit line queued for the one writer (answering.LedgerQueue)."""
        return self.served(account, indicator, by, where).result

    def answer_body(
        self,
        account: accounts.Account,
        indicator: str,
        by: list[str],
        where: list[tuple[str, list[str]]],
    ) -> bytes:
        """`answer` as the JSON API's body (the same columns as `casepool query --format json`)."""
        return self.answers.body(self.served(account, indicator, by, where))

    def served(
        self,
        account: accounts.Account,
        indicator: str,
        by: list[str],
        where: list[tuple[str, list[str]]],
    ) -> Served:
        if len(by) > MAX_DIMENSIONS or len(set(by)) != len(by):
            raise UsageError("serve-too-many-dimensions", most=MAX_DIMENSIONS)
        actor = f"serve:{account.name}"
        served = self.answers.answer(indicator, by, where, actor=actor)
        detail = {
            "indicator": indicator,
            "by": by,
            "where": {d: c for d, c in where},
            "asked_at": utc_now().isoformat(timespec="milliseconds"),
        }
        self.ledger.put(Entry("query", actor, detail, served.answered))
        return served

    def periods(self) -> list[str]:
        """Years that active submissions cover, newest first (for the period choice)."""
        with self.warehouse.read() as con:
            rows = con.execute(
                "SELECT DISTINCT CAST(year(report_date) AS VARCHAR) AS y FROM active_cases "
                "WHERE report_date IS NOT NULL ORDER BY y DESC"
            ).fetchall()
        return [r[0] for r in rows]

    # --- packages ------------------------------------------------------------------------------

    def upload(self, account: accounts.Account, source: Path, filename: str) -> IngestReport:
        """Verify and ingest one uploaded package as `casepool ingest` does, after refusing a
        package of any organisation but the account's own."""
        name = filename if _SAFE_NAME.fullmatch(filename) and filename.endswith(SUFFIX) else ""
        name = name or f"upload{SUFFIX}"
        with tempfile.TemporaryDirectory(prefix="casepool-upload-") as folder:
            package = Path(folder) / name
            shutil.copyfile(source, package)
            with self.warehouse.read() as con:
                keys = key_lookup(con)
                own_only = lambda org: keys(org) if org == account.org else None  # noqa: E731
                try:
                    read_package(package, own_only)
                    other = None
                except PackageError as refusal:
                    other = refusal if refusal.key == "package-unknown-org" else None
            if other is not None:
                self.audit(
                    "refused",
                    actor=account.name,
                    org=account.org,
                    package=name,
                    detail={"reason": "serve-package-other-org"},
                )
                raise PackageError("serve-package-other-org", package=name, org=account.org)
            actor = f"serve:{account.name}"
            return self.warehouse.alone(
                lambda: ingest_packages(
                    [package], self.warehouse.path, actor=actor, wait=self.warehouse.wait
                )
            )
