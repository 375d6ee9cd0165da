"""Fast answers: read-only post-processing of stored measurements, cached, with batched ledger lines.

Every answer is post-processing of the quarters' stored measurements (casepool.publishing.query,
`answer_measured`), so the same question on the same data always gets the same answer. The
service therefore:

- answers from a **read-only** connection when every quarter the question covers holds its
  measurements, taken from the data as it is now, or from the snapshot of that data held in
  memory (`Snapshot`), one answer per core at a time (`COMPUTING`);
- keeps answers in a **cache** keyed by the question (normalised) and the warehouse's *data
  version*: a digest of the active submissions of each quarter, the stored measurements (each
  with its release id) and the reference population, read in the same connection as the answer.
  The data version is read again only when the warehouse file or its write-ahead log changed on
  disk (size, time, inode), so an `ingest`, `revoke` or re-measurement by the command line or by
  the service itself is seen at the next question; an answer is never served for data it was
  not computed from;
- takes the warehouse for **writing** only for the first question after new data, whose
  quarters must be measured (`measure_quarters`); other questions that need it wait for that
  one (a lock), then find the measurements stored and read them;
- writes the ledger entry of each answer (who asked what, when) and its audit line through
  `LedgerQueue`: queued at answering, written by one writer in one transaction when a batch is
  due (`LedgerQueue.due`: FLUSH_SECONDS after its first entry, later while answers keep coming,
  at most MAX_WAIT_SECONDS; at once when MAX_BATCH are waiting), and at shutdown.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb

from casepool.catalogue.indicators import load_indicators
from casepool.publishing import dp_answers
from casepool.publishing.query import (
    Answered,
    NotMeasured,
    QueryResult,
    Snapshot,
    answer_measured,
    answer_release,
    quarters_current,
    resolve_question,
)
from casepool.serving.access import Warehouse, WarehouseBusy
from casepool.warehouse import budget
from casepool.warehouse.ledger import data_fingerprint, record_releases
from casepool.warehouse.store import record_audits

CACHE_SIZE = 1024
FLUSH_SECONDS = 0.5  # an entry waits this long for others to join its batch
QUIET_SECONDS = 0.1  # ... and, while answers keep coming, until none came for this long
MAX_WAIT_SECONDS = 2.0  # ... but never longer than this
WRITER_TURN_SECONDS = 0.1  # how often the writer looks whether a batch is due
MAX_BATCH = 200
SHUTDOWN_WAIT_SECONDS = 60.0
VERSION_MAX_AGE = 10.0  # seconds; a bound on trusting the files' signature
COMPUTING = 0  # answers computed in memory at once (0: one per core)
log = logging.getLogger("casepool.serve")

Where = Sequence[tuple[str, Sequence[str]]]


def question_key(indicator: str, by: Sequence[str], where: Where, period_unit: str) -> str:
    """The question normalised: filters sorted by dimension with their codes sorted and
    repeated codes dropped (`by` keeps its order: it is the order of the table's columns)."""
    filters: dict[str, set[str]] = {}
    for dim, codes in where:
        filters.setdefault(dim, set()).update(codes)
    return json.dumps(
        [indicator, list(by), sorted((d, sorted(c)) for d, c in filters.items()), period_unit]
    )


def data_version(con: duckdb.DuckDBPyConnection, settings: Any) -> str:
    """A digest of everything an answer is computed from: the active submissions (the counted
    cases are theirs: a submission's cases never change, an ingest or revocation changes the
    set), the stored measurements (a new or repeated measurement has a new release id), the
    reference population and the protection settings. Read-only, and cheap: no case is read."""
    digest = hashlib.sha256(repr(settings).encode())
    active = con.execute(
        "SELECT submission_id FROM active_submissions ORDER BY submission_id"
    ).fetchall()
    digest.update(("s|" + data_fingerprint(r[0] for r in active) + "\n").encode())
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if {"dp_measurements", "dp_cells"} <= tables:
        for row in con.execute(
            "SELECT period, measurement, release_id FROM dp_measurements "
            "ORDER BY period, measurement"
        ).fetchall():
            digest.update(("m|" + "|".join(map(str, row)) + "\n").encode())
    for table in ("child_population", "child_population_info"):
        if table in tables:
            (rows, total) = con.execute(
                f"SELECT count(*), sum(hash(t)) FROM {table} AS t"
            ).fetchone() or (0, 0)
            digest.update(f"p|{table}|{rows}|{total}\n".encode())
    return digest.hexdigest()


def _file_signature(path: Path) -> tuple[Any, ...]:
    """What changes on disk whenever a transaction commits to the warehouse (its WAL grows, or a
    checkpoint rewrites the file and empties the WAL)."""
    out: list[Any] = []
    for p in (path, path.with_name(path.name + ".wal")):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            out.append(None)
            continue
        out.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


class Changes:
    """Whether the warehouse changed since a moment: an epoch that moves whenever its files
    change on disk, except by the service's own ledger writer (which writes only the ledger and
    the audit log, from which neither answers nor accounts are read)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._signature = _file_signature(path)
        self._epoch = 0
        self._own = False

    def epoch(self) -> int:
        with self._lock:
            if self._own:  # only the service's ledger writer can change the files now
                return self._epoch
        signature = _file_signature(self.path)
        with self._lock:
            if not self._own and signature != self._signature:
                self._signature = signature
                self._epoch += 1
            return self._epoch

    @contextmanager
    def own_write(self) -> Iterator[None]:
        """The ledger writer's write, entered with the warehouse open for writing (no other
        process can change it until that connection closes). A change found on entering is
        someone else's: the epoch moves. The changes made inside are the writer's own: the
        epoch stays, and questions asked meanwhile need not look at the files. (The writer
        checkpoints inside, so that closing the connection changes nothing more; if it does,
        the epoch moves at the next look, which is only ever too careful.)"""
        signature = _file_signature(self.path)
        with self._lock:
            if signature != self._signature:
                self._signature = signature
                self._epoch += 1
            self._own = True
        try:
            yield
        finally:
            signature = _file_signature(self.path)
            with self._lock:
                self._signature = signature
                self._own = False


@dataclass
class Served:
    """One answer as served: the result (`spent` is what this asking spent measuring) and what the
    ledger entry needs."""

    answered: Answered
    spent: float
    cached: bool
    key: tuple[str, str] = ("", "")  # the question and data version it is cached under

    @property
    def result(self) -> QueryResult:
        return replace(self.answered.result, spent=self.spent)


class Answers:
    """The answer cache and the single-flight measuring of one service."""

    def __init__(self, warehouse: Warehouse, settings: Any = None) -> None:
        from casepool.protecting.dp_settings import load_dp_settings

        self.warehouse = warehouse
        self.settings = settings or load_dp_settings()
        self._cache: OrderedDict[tuple[str, str], Answered] = OrderedDict()
        self._bodies: dict[tuple[str, str], bytes] = {}
        self._states: dict[str, tuple[dict[str, set[str]], set[str]]] = {}
        self._snapshots: dict[str, Snapshot] = {}  # the newest data version's only
        self._cache_lock = threading.Lock()
        self.changes = Changes(warehouse.path)
        self._version: tuple[int, str, float] | None = None
        self._version_lock = threading.Lock()
        self._measuring = threading.Lock()
        # Answers computed in memory at once: one per core. Forty threads computing side by
        # side each pay for the others (the GIL and polars' pool change hands between them):
        # twice the CPU per answer, and every answer late; one per core, each done in turn.
        self._computing = threading.BoundedSemaphore(COMPUTING or os.cpu_count() or 1)
        self.counts = {"hits": 0, "misses": 0, "measured": 0}

    # --- the data version ----------------------------------------------------------------------

    def version(self) -> str:
        """The warehouse's data version, read again when its files changed (`Changes`) or once
        VERSION_MAX_AGE seconds have passed."""
        epoch = self.changes.epoch()
        known = self._version
        if (
            known is not None
            and known[0] == epoch
            and time.monotonic() - known[2] < VERSION_MAX_AGE
        ):
            return known[1]
        with self._version_lock:  # one reader refreshes; the others wait for it
            epoch = self.changes.epoch()
            known = self._version
            if (
                known is not None
                and known[0] == epoch
                and time.monotonic() - known[2] < VERSION_MAX_AGE
            ):
                return known[1]
            # The epoch is taken before the connection opens: anything committed after it
            # changes the files again, and the next question reads the version again.
            read_at = time.monotonic()
            with self.warehouse.read() as con:
                version = data_version(con, self.settings)
            self._version = (epoch, version, read_at)
            return version

    def forget_version(self) -> None:
        with self._version_lock:
            self._version = None

    # --- answering -----------------------------------------------------------------------------

    def answer(
        self,
        indicator: str,
        by: Sequence[str],
        where: Where,
        *,
        actor: str,
        period_unit: str = "year",
    ) -> Served:
        """The answer to a question: from the cache, else read from the stored measurements, else
        (the first question after new data) measured first, once, by one caller."""
        key = question_key(indicator, by, where, period_unit)
        filters = [(d, tuple(sorted(set(c)))) for d, c in sorted(_merged(where).items())]
        version = self.version()
        hit = self._cached(key, version)
        if hit is not None:
            return Served(hit, 0.0, True, (key, version))
        try:
            return self._read(key, indicator, by, filters, period_unit, version)
        except NotMeasured:
            pass
        with self._measuring:
            # Whoever held the lock before may have measured these quarters: look again.
            version = self.version()
            hit = self._cached(key, version)
            if hit is not None:
                return Served(hit, 0.0, True, (key, version))
            try:
                return self._read(key, indicator, by, filters, period_unit)
            except NotMeasured:
                pass
            spent = self._measure(indicator, by, filters, period_unit, actor)
            self.forget_version()
            return replace(self._read(key, indicator, by, filters, period_unit), spent=spent)

    def body(self, served: Served) -> bytes:
        """The answer as the API's JSON body, kept beside the cached answer (the same bytes for
        every asking that spent nothing)."""
        if served.spent == 0:
            with self._cache_lock:
                found = self._bodies.get(served.key)
            if found is not None:
                return found
        with self._computing:
            text = json.dumps(
                served.result.to_dict(), default=str, ensure_ascii=False, separators=(",", ":")
            )
        body = text.encode("utf-8")
        if served.spent == 0:
            with self._cache_lock:
                if served.key in self._cache:
                    self._bodies[served.key] = body
        return body

    def _cached(self, key: str, version: str) -> Answered | None:
        with self._cache_lock:
            found = self._cache.get((key, version))
            if found is not None:
                self._cache.move_to_end((key, version))
                self.counts["hits"] += 1
            return found

    def _read(
        self,
        key: str,
        indicator: str,
        by: Sequence[str],
        filters: Where,
        period_unit: str,
        known: str | None = None,
    ) -> Served:
        """Answer from memory when the warehouse's reads for data version `known` (the one
        `version()` just gave) are held: its `Snapshot` and state, read in one connection whose
        data version was `known`; else on one read-only connection, reading them there. The
        answer is cached under the data version it was computed from (so the answer and its key
        always describe the same data)."""
        memory = self._memory(known, indicator) if known is not None else None
        if memory is not None:
            snapshot, state = memory
            with self._computing:
                question = resolve_question(
                    None, indicator, list(by), filters, period_unit, self.settings, snapshot
                )
                answered = answer_measured(None, question, self.settings, state, snapshot)
            return self._keep(key, str(known), answered)
        with self.warehouse.read() as con:
            question = resolve_question(
                con, indicator, list(by), filters, period_unit, self.settings
            )
            version = data_version(con, self.settings)
            state = self._state(con, version)
            if not quarters_current(question.quarters, self.settings, state):
                raise NotMeasured()  # measured first (no snapshot of data about to change)
            held = self._snapshot(con, version) if not _median(indicator) else None
            answered = answer_measured(con, question, self.settings, state, held)
        return self._keep(key, version, answered)

    def _memory(
        self, version: str, indicator: str
    ) -> tuple[Snapshot, tuple[dict[str, set[str]], set[str]]] | None:
        """The snapshot and state held for `version`, when a question on `indicator` can be
        answered from them alone (not a median)."""
        if _median(indicator):
            return None
        with self._cache_lock:
            snapshot = self._snapshots.get(version)
            state = self._states.get(version)
        return (snapshot, state) if snapshot is not None and state is not None else None

    def _snapshot(self, con: duckdb.DuckDBPyConnection, version: str) -> Snapshot:
        """The warehouse's reads for answering (`Snapshot`), read from `con`, whose data is that
        of `version`, once per version; only the newest version's is kept."""
        with self._cache_lock:
            known = self._snapshots.get(version)
        if known is not None:
            return known
        snapshot = Snapshot.read(con)
        with self._cache_lock:
            self._snapshots = {version: snapshot}
            self.counts["snapshots"] = self.counts.get("snapshots", 0) + 1
        return snapshot

    def _keep(self, key: str, version: str, answered: Answered) -> Served:
        with self._cache_lock:
            self.counts["misses"] += 1
            self._cache[(key, version)] = answered
            while len(self._cache) > CACHE_SIZE:
                old, _ = self._cache.popitem(last=False)
                self._bodies.pop(old, None)
        return Served(answered, 0.0, False, (key, version))

    def _state(
        self, con: duckdb.DuckDBPyConnection, version: str
    ) -> tuple[dict[str, set[str]], set[str]]:
        """Which quarters are measured and which are stale, for the data of `version` (read
        from `con`, whose data it is, once per version: it scans the counted cases)."""
        with self._cache_lock:
            known = self._states.get(version)
        if known is not None:
            return known
        state = (budget.measured_periods(con), budget.stale_periods(con))
        with self._cache_lock:
            self._states = {version: state}  # only the newest data's
        return state

    def _measure(
        self, indicator: str, by: Sequence[str], filters: Where, period_unit: str, actor: str
    ) -> float:
        """Measure the question's quarters (the write path: the warehouse alone)."""
        with self.warehouse.write() as con:
            question = resolve_question(
                con, indicator, list(by), filters, period_unit, self.settings
            )
            measured = dp_answers.measure_quarters(
                con, question.quarters, self.settings, load_indicators(), actor=actor
            )
        with self._cache_lock:
            self.counts["measured"] += 1
        return float(sum(t.rho for t in measured))


def _median(indicator: str) -> bool:
    """Whether `indicator` is a median (answered from its histograms in the warehouse) or not
    one the catalogue knows (refused on the connection path, as before)."""
    known = load_indicators().indicators.get(indicator)
    return known is None or known.kind == "median"


def _merged(where: Where) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for dim, codes in where:
        out.setdefault(dim, set()).update(codes)
    return out


@dataclass
class Entry:
    """One line to write: a release (an answer) with its audit line, or an audit line alone."""

    action: str
    actor: str
    detail: dict[str, Any]
    answered: Answered | None = None
    at: float = 0.0


def _write_batch(con: duckdb.DuckDBPyConnection, batch: Sequence[Entry]) -> None:
    """A batch's releases (one insert into each ledger table) and audit lines (in order), each
    audit line of an answer naming its release, in the caller's transaction."""
    releases = [answer_release(e.answered, e.actor) for e in batch if e.answered is not None]
    ids = iter(record_releases(con, releases))
    lines = []
    for e in batch:
        extra = dict(e.detail)
        if e.answered is not None:
            extra["release_id"] = next(ids)
        lines.append({"action": e.action, "actor": e.actor, "detail": extra})
    record_audits(con, lines)


class LedgerQueue:
    """Ledger entries and audit lines queued by the answering threads and written by one writer,
    in one transaction per batch. A batch that cannot be written (the command line holds the
    warehouse) stays queued, in order, for the next flush; `close` writes what is left, waiting
    up to SHUTDOWN_WAIT_SECONDS for the warehouse."""

    def __init__(
        self, warehouse: Warehouse, changes: Changes | None = None, clock: Any = time.monotonic
    ) -> None:
        self.warehouse = warehouse
        self.changes = changes
        self.clock = clock
        self._first = 0.0  # when the oldest queued entry was queued (clock)
        self._last = 0.0  # when the newest was
        self._queue: list[Entry] = []
        self._lock = threading.Lock()
        self._writing = threading.Lock()  # one writer at a time
        self.full = threading.Event()  # MAX_BATCH waiting: the writer should not wait its turn
        self.written = 0

    def put(self, entry: Entry) -> None:
        entry.at = entry.at or time.time()
        now = self.clock()
        with self._lock:
            if not self._queue:
                self._first = now
            self._last = now
            self._queue.append(entry)
            if len(self._queue) >= MAX_BATCH:
                self.full.set()

    def _own_write(self) -> contextlib.AbstractContextManager[None]:
        return self.changes.own_write() if self.changes is not None else contextlib.nullcontext()

    def due(self) -> bool:
        """Whether the writer should write the queue now: MAX_BATCH entries wait, or the oldest
        has waited FLUSH_SECONDS and no answer came in the last QUIET_SECONDS (a burst of new
        questions is answered first: the write would take its CPU), or the oldest has waited
        MAX_WAIT_SECONDS (the most of the ledger a killed process can lose)."""
        now = self.clock()
        with self._lock:
            if not self._queue:
                return False
            if len(self._queue) >= MAX_BATCH or now - self._first >= MAX_WAIT_SECONDS:
                return True
            return now - self._first >= FLUSH_SECONDS and now - self._last >= QUIET_SECONDS

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def flush(self) -> int:
        """Write everything queued now in one transaction; 0 when nothing was or the warehouse
        is busy (the entries then stay queued)."""
        with self._writing:
            with self._lock:
                batch, self._queue = self._queue, []
                first = self._first
                self.full.clear()
            if not batch:
                return 0
            committed = False
            try:
                with self.warehouse.write() as con, self._own_write():
                    con.begin()
                    try:
                        _write_batch(con, batch)
                        con.commit()
                    except BaseException:
                        con.rollback()
                        raise
                    committed = True
                    # So that closing changes nothing more (`Changes.own_write`); a failure
                    # here (a full disk) is met again when the connection closes.
                    with contextlib.suppress(duckdb.Error):
                        con.execute("CHECKPOINT")
            except BaseException as exc:
                if committed:  # written; only closing failed: never written twice
                    self.written += len(batch)
                    raise
                with self._lock:
                    self._queue[:0] = batch
                    self._first = first  # the batch's oldest entry waits on
                if isinstance(exc, WarehouseBusy):
                    return 0
                raise
            self.written += len(batch)
            return len(batch)

    def close(self, wait: float = SHUTDOWN_WAIT_SECONDS) -> int:
        """Write every queued entry before the service stops; what cannot be written within
        `wait` seconds is logged as lost (a count, never its contents)."""
        deadline = time.monotonic() + wait
        written = 0
        while True:
            try:
                written += self.flush()
            except Exception as exc:  # logged by type; tried until the deadline
                log.error("ledger batch not written: %s", type(exc).__name__)
            if not self.pending():
                return written
            if time.monotonic() > deadline:
                log.error("ledger entries not written at shutdown: %d", self.pending())
                return written
            time.sleep(0.2)
