"""The service's fast answers: the cache keyed by question and data version, measuring once for
many askers, and the ledger entries written in batches by one writer and at shutdown."""

from __future__ import annotations

import threading

import pytest
from starlette.testclient import TestClient

from casepool.serving import answering
from casepool.serving.access import WarehouseBusy
from casepool.serving.accounts import add_account
from casepool.serving.app import create_app
from casepool.warehouse.ledger import has_ledger
from casepool.warehouse.store import open_warehouse
from fixtures.serve.builders import build_world

QUESTION = {"indicator": "registered_cases", "by": ["region", "sex"], "where": {"period": "2025"}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("answering"), records=500)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def counts(warehouse) -> dict[str, int]:
    with open_warehouse(warehouse, read_only=True) as con:
        if not has_ledger(con):
            return {"releases": 0, "audit": 0}
        queries = con.execute(
            "SELECT count(*) FROM releases WHERE kind = 'query' AND actor = 'serve:amira'"
        ).fetchone()[0]
        audit = con.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'query' AND actor = 'serve:amira'"
        ).fetchone()[0]
    return {"releases": queries, "audit": audit}


def test_the_question_is_normalised_but_keeps_the_order_of_its_columns():
    key = answering.question_key
    assert key("x", ["a", "b"], [("s", ["M", "F"]), ("p", ["2025"])], "year") == key(
        "x", ["a", "b"], [("p", ["2025"]), ("s", ["F", "M", "F"])], "year"
    )
    assert key("x", ["a", "b"], [], "year") != key("x", ["b", "a"], [], "year")
    assert key("x", ["a"], [("s", ["M"])], "year") != key("x", ["a"], [("s", ["F"])], "year")


def test_every_answer_is_in_the_ledger_after_shutdown(world):
    before = counts(world.warehouse)
    with TestClient(create_app(world.warehouse), base_url="http://127.0.0.1") as client:
        for _ in range(12):
            answer = client.post("/api/query", json=QUESTION, headers=bearer(world.tokens["amira"]))
            assert answer.status_code == 200, answer.text
    # Leaving the client ends the lifespan: the writer writes what is still queued.
    assert counts(world.warehouse) == {
        "releases": before["releases"] + 12,
        "audit": before["audit"] + 12,
    }


def test_a_repeated_question_is_answered_from_the_cache_with_the_same_figures(world):
    app = create_app(world.warehouse)
    service = app.app.state.service
    account = service.account_named("amira")
    where = [("period", ["2025"])]
    first = service.answers.answer("registered_cases", ["sex"], where, actor="t")
    again = service.answers.answer("registered_cases", ["sex"], where, actor="t")
    assert not first.cached and again.cached
    assert again.result.table.frame.equals(first.result.table.frame)
    assert service.answer_body(account, "registered_cases", ["sex"], where) == service.answer_body(
        account, "registered_cases", ["sex"], [("period", ["2025", "2025"])]
    )
    # The service's own ledger writes leave the data as it was: still answered from the cache.
    assert service.ledger.flush() >= 2
    assert service.answers.answer("registered_cases", ["sex"], where, actor="t").cached
    # Another process writing what no answer reads (an account): the data version is read
    # again, is the same, and the cached answer still serves.
    epoch = service.answers.changes.epoch()
    add_account(world.warehouse, "cache-probe", "analyst", actor="test")
    assert service.answers.changes.epoch() > epoch
    assert service.answers.answer("registered_cases", ["sex"], where, actor="t").cached


def test_a_busy_warehouse_keeps_the_entries_queued_in_order(world, monkeypatch):
    app = create_app(world.warehouse)
    service = app.app.state.service
    account = service.account_named("amira")
    before = counts(world.warehouse)
    for _ in range(3):
        service.answer(account, "registered_cases", ["sex"], [("period", ["2025"])])
    real_write = service.warehouse.write

    def busy():
        raise WarehouseBusy()

    monkeypatch.setattr(service.warehouse, "write", busy)
    assert service.flush_audit() == 0
    assert service.ledger.pending() == 3
    monkeypatch.setattr(service.warehouse, "write", real_write)
    assert service.ledger.close(wait=5) == 3
    assert service.ledger.pending() == 0
    assert counts(world.warehouse)["releases"] == before["releases"] + 3


def test_many_askers_after_new_data_measure_once(tmp_path):
    """On a warehouse nobody asked yet, concurrent questions on the same quarters: one takes the
    write path and spends; the others wait for it and read its measurements."""
    fresh = build_world(tmp_path, records=300)
    app = create_app(fresh.warehouse)
    service = app.app.state.service
    account = service.account_named("amira")
    questions = [["sex"], ["governorate"], ["region", "sex"], ["age_band", "sex"], [], ["sex"]]
    results: list = [None] * len(questions)
    start = threading.Barrier(len(questions))

    def ask(i: int) -> None:
        start.wait()
        results[i] = service.answer(account, "registered_cases", questions[i], [])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert all(r is not None for r in results)
    assert service.answers.counts["measured"] == 1
    assert sum(r.spent > 0 for r in results) == 1
    with open_warehouse(fresh.warehouse, read_only=True) as con:
        spent = dict(con.execute("SELECT period, rho_spent FROM dp_budget").fetchall())
    rho = sum(service.answers.settings.rho_of(m) for m in service.answers.settings.measurements)
    assert spent and all(v == pytest.approx(rho) for v in spent.values())
    assert service.ledger.close(wait=30) == len(questions)


@pytest.mark.slow
def test_stopping_the_service_writes_every_queued_entry(tmp_path, world):
    """`casepool serve` in its own process, stopped with SIGTERM (as systemd stops it) right after
    answering: every answer is in the ledger."""
    import http.client
    import json
    import shutil
    import signal
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    warehouse = tmp_path / "w.duckdb"
    shutil.copyfile(world.warehouse, warehouse)
    before = counts(warehouse)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    casepool = str(Path(sys.executable).parent / "casepool")
    server = subprocess.Popen(
        [casepool, "serve", "-w", str(warehouse), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    headers = {**bearer(world.tokens["amira"]), "Content-Type": "application/json"}

    def ask() -> int:
        con = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            con.request("POST", "/api/query", body=json.dumps(QUESTION), headers=headers)
            return con.getresponse().status
        except OSError:
            return 0
        finally:
            con.close()

    try:
        deadline = time.monotonic() + 60
        while ask() != 200:
            assert time.monotonic() < deadline and server.poll() is None, "did not start"
            time.sleep(0.3)
        assert [ask() for _ in range(9)] == [200] * 9
    finally:
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully (the lifespan ends), then re-raises the signal.
        assert server.wait(timeout=90) in (0, -signal.SIGTERM)
    assert counts(warehouse) == {
        "releases": before["releases"] + 10,
        "audit": before["audit"] + 10,
    }


def test_a_revocation_and_its_undoing_reach_the_cached_answers(tmp_path):
    """The steward revokes a submission (another connection, as the command line does): the next
    answer is computed from the data without it; reactivating it brings the first figures back."""
    from casepool.publishing.query import query
    from casepool.warehouse.ingest import ingest_packages
    from casepool.warehouse.submissions import reactivate_submission, revoke_submission
    from fixtures.submit.builders import canonical_records, make_package

    fresh = build_world(tmp_path, records=300)
    package = make_package(tmp_path / "out", fresh.keys["ORG-02"], canonical_records(15, seed=9))
    assert ingest_packages([package], fresh.warehouse, actor="test").ok
    service = create_app(fresh.warehouse).app.state.service
    account = service.account_named("amira")

    def ask():
        return service.served(account, "registered_cases", ["sex"], [])

    def figures(result) -> list:
        return result.table.frame.rows()

    first = ask()
    assert ask().cached
    with open_warehouse(fresh.warehouse, read_only=True) as con:
        (submission,) = con.execute(
            "SELECT submission_id FROM active_submissions WHERE length(submission_id) > 6"
        ).fetchone()
    revoke_submission(fresh.warehouse, submission, "sent in error", actor="test")
    without = ask()
    assert not without.cached and without.spent > 0  # its quarters were measured again
    library = query(fresh.warehouse, "registered_cases", by=("sex",))
    assert figures(without.result) == figures(library)
    assert figures(without.result) != figures(first.result)
    reactivate_submission(fresh.warehouse, submission, reason="found", actor="test")
    back = ask()
    assert not back.cached and back.spent == 0  # the earlier measurements put back, free
    assert figures(back.result) == figures(first.result)
    assert service.ledger.close(wait=30) == 4


# Questions of every kind the snapshot answers (counts, percentages, a region summed from
# governorates, filters, the latest year, a rate when the warehouse has a population) and a
# median (read from the warehouse, not the snapshot).
MEMORY_QUESTIONS = [
    ("registered_cases", ["governorate", "sex"], [("period", ["2025"])]),
    ("registered_cases", ["governorate", "sex"], []),
    ("registered_cases", ["region", "sex"], [("period", ["2024", "2025"])]),
    ("registered_cases", ["age_band", "sex"], [("sex", ["F"]), ("period", ["2025"])]),
    ("registered_cases", ["service", "sex"], [("period", ["latest"])]),
    ("registered_cases", ["period", "sex"], []),
    ("registered_cases", [], [("region", ["KRI"])]),
    ("online_cases", ["online_platform", "sex"], []),
    ("mhpss_share", ["region", "sex"], [("period", ["2025"])]),
    ("police_dismissed_share", ["violence_type"], []),
    ("registered_cases_rate", ["governorate"], []),
    ("months_to_registration", ["region"], []),
    # Quarters of one year, several years, several filters, three dimensions: the shapes each
    # quarter gives are computed for every quarter at once and must match quarter by quarter.
    ("registered_cases", ["governorate", "sex"], [("period", ["2025-Q1"])]),
    ("registered_cases", ["age_band", "sex"], [("period", ["2025", "2024"])]),
    ("registered_cases", ["sex"], [("governorate", ["IQG02", "IQG01"]), ("period", ["2024"])]),
    ("registered_cases", ["period", "region", "sex"], [("period", ["2024"])]),
    ("registered_cases", ["period", "age_band"], [("sex", ["M"])]),
    ("mhpss_share", ["sex"], [("period", ["2024-Q4", "2025-Q1"])]),
]


def reference(warehouse, settings, indicator, by, where):
    """The question answered as the library does, on its own read-only connection, without any
    snapshot or memo (None when the question is refused)."""
    from casepool.core.errors import UsageError
    from casepool.publishing.query import answer_measured, resolve_question

    # The filters as the service passes them on (sorted, as its cache key has them).
    where = [(d, tuple(sorted(set(c)))) for d, c in sorted(answering._merged(where).items())]
    with open_warehouse(warehouse, read_only=True) as con:
        try:
            question = resolve_question(con, indicator, by, where, "year", settings)
        except UsageError as exc:
            return exc.key
        return answer_measured(con, question, settings)


def same_answer(served, expected) -> None:
    got = served.answered
    assert got.result.to_dict() == expected.result.to_dict()
    assert got.result.table.frame.equals(expected.result.table.frame)
    assert got.cells.equals(expected.cells)
    assert got.detail == expected.detail
    assert got.question == expected.question


def test_new_questions_are_answered_from_memory_with_the_warehouse_figures(world, monkeypatch):
    """After the first question on some data, questions nobody asked before are answered without
    opening the warehouse (the snapshot of that data version), with exactly the figures read from
    the warehouse; a median still reads the warehouse."""
    from casepool.core.errors import UsageError

    monkeypatch.setattr(answering, "VERSION_MAX_AGE", 3600.0)
    answers = create_app(world.warehouse).app.state.service.answers
    answers.answer("registered_cases", ["sex"], [], actor="t")  # measures what it must
    answers.answer("registered_cases", ["sex"], [("period", ["2025"])], actor="t")
    assert answers.counts.get("snapshots") == 1
    real_read = answers.warehouse.read
    opened: list[str] = []

    def counting_read():
        opened.append("read")
        return real_read()

    monkeypatch.setattr(answers.warehouse, "read", counting_read)
    served, refused = {}, {}
    for i, (indicator, by, where) in enumerate(MEMORY_QUESTIONS):
        try:
            served[i] = answers.answer(indicator, by, where, actor="t")
        except UsageError as exc:
            refused[i] = exc.key
    assert len(served) >= 17, refused
    assert all(not s.cached for s in served.values())
    medians = [i for i, q in enumerate(MEMORY_QUESTIONS) if q[0] == "months_to_registration"]
    assert len(opened) == len([i for i in medians if i in served])  # only the median read
    assert answers.counts.get("snapshots") == 1
    monkeypatch.setattr(answers.warehouse, "read", real_read)
    for i, (indicator, by, where) in enumerate(MEMORY_QUESTIONS):
        expected = reference(world.warehouse, answers.settings, indicator, by, where)
        if i in refused:
            assert expected == refused[i]
        else:
            same_answer(served[i], expected)


def test_a_new_data_version_replaces_the_snapshot(tmp_path, monkeypatch):
    """An ingest (another connection, as the command line does) makes a new data version: the
    next question, one nobody asked, is answered from the new data, not the old snapshot."""
    from casepool.warehouse.ingest import ingest_packages
    from fixtures.submit.builders import canonical_records, make_package

    monkeypatch.setattr(answering, "VERSION_MAX_AGE", 3600.0)
    fresh = build_world(tmp_path, records=300)
    answers = create_app(fresh.warehouse).app.state.service.answers
    answers.answer("registered_cases", ["sex"], [], actor="t")
    old = answers.version()
    assert set(answers._snapshots) == {old}
    before = answers.answer("registered_cases", ["governorate"], [], actor="t")
    assert not before.cached and before.key[1] == old
    package = make_package(tmp_path / "out", fresh.keys["ORG-02"], canonical_records(40, seed=3))
    assert ingest_packages([package], fresh.warehouse, actor="test").ok
    new = answers.version()
    assert new != old
    after = answers.answer("registered_cases", ["region", "sex"], [], actor="t")
    assert not after.cached and after.spent > 0  # measured again: a newer version still
    newest = answers.version()
    assert after.key[1] == newest and newest not in (old, new)
    assert set(answers._snapshots) == {newest}
    fresh_question = answers.answer("registered_cases", ["governorate"], [], actor="t")
    assert not fresh_question.cached and fresh_question.key[1] == newest
    for served, by in ((after, ["region", "sex"]), (fresh_question, ["governorate"])):
        same_answer(
            served, reference(fresh.warehouse, answers.settings, "registered_cases", by, [])
        )
    assert fresh_question.result.table.frame.rows() != before.result.table.frame.rows()


@pytest.mark.parametrize(
    ("by", "where"),
    [
        (["period", "sex"], []),
        (["governorate", "sex"], [("period", ("2025-Q2", "2024-Q4"))]),
        (["period", "region"], [("sex", ("F",)), ("period", ("2025",))]),
    ],
)
def test_quarterly_answers_from_memory_match_the_warehouse(world, by, where):
    """By quarter (`period_unit="quarter"`), the cells summed for every quarter at once from the
    snapshot equal those read from the warehouse quarter by quarter, row for row."""
    from casepool.catalogue.indicators import load_indicators
    from casepool.protecting.dp_settings import load_dp_settings
    from casepool.publishing import dp_answers
    from casepool.publishing.query import Snapshot, resolve_question

    settings, catalogue = load_dp_settings(), load_indicators()
    answers = create_app(world.warehouse).app.state.service.answers
    answers.answer("registered_cases", ["sex"], [], actor="t")  # measures what it must
    with open_warehouse(world.warehouse, read_only=True) as con:
        memory = Snapshot.read(con).stored
        question = resolve_question(con, "registered_cases", by, where, "quarter", settings)
        quarters = list(question.quarters)
        expected = dp_answers.answer(con, question.request, quarters, settings, catalogue)
    for _ in range(2):  # computed, then from the memo
        got = dp_answers.answer(None, question.request, quarters, settings, catalogue, memory)
        assert got.frame.equals(expected.frame)
        assert (got.quarters, got.tables) == (expected.quarters, expected.tables)


def test_the_ledger_writer_does_not_make_the_service_look_again_but_others_writes_do(
    tmp_path, world, monkeypatch
):
    """The service's own ledger writes leave the epoch (and so the cached accounts, the data
    version and the snapshot) as they are, also for questions asked while it writes; a write by
    another process moves it, even when the ledger writer wrote after it before anyone looked."""
    import shutil

    from casepool.warehouse.store import record_audit

    warehouse = tmp_path / "w.duckdb"
    shutil.copyfile(world.warehouse, warehouse)
    service = create_app(warehouse).app.state.service
    changes = service.answers.changes
    account = service.account_named("amira")
    service.answer(account, "registered_cases", ["sex"], [("period", ["2025"])])  # measures
    assert service.flush_audit() == 1
    start = changes.epoch()
    seen_while_writing: list[int] = []
    real_batch = answering._write_batch

    def writing(con, batch):
        real_batch(con, batch)
        seen_while_writing.append(changes.epoch())

    monkeypatch.setattr(answering, "_write_batch", writing)
    for _ in range(2):
        service.answer(account, "registered_cases", ["sex"], [("period", ["2025"])])
        assert service.flush_audit() == 1
    assert seen_while_writing == [start, start] and changes.epoch() == start

    def other_process_writes() -> None:
        with open_warehouse(warehouse) as con:
            record_audit(con, "other", actor="cli")

    other_process_writes()
    moved = changes.epoch()
    assert moved == start + 1
    other_process_writes()  # nobody looks before the ledger writer writes
    service.answer(account, "registered_cases", ["sex"], [("period", ["2025"])])
    assert service.flush_audit() == 1
    assert seen_while_writing[-1] == moved + 1 and changes.epoch() == moved + 1


def test_a_token_revoked_on_the_command_line_stops_at_the_next_request(tmp_path, world, runner):
    """The token's account is cached (no warehouse read per request), but a revocation by the
    command line is seen at the next request, also when the ledger writer wrote in between and
    when the cache is young (the documented bound, ACCOUNT_CACHE_SECONDS, is only the longest)."""
    import shutil

    from casepool.cli.main import app as cli
    from casepool.serving.accounts import add_account as add

    warehouse = tmp_path / "w.duckdb"
    shutil.copyfile(world.warehouse, warehouse)
    token = add(warehouse, "nadia", "analyst", actor="test").token
    app = create_app(warehouse)
    service = app.app.state.service
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.post("/api/query", json=QUESTION, headers=bearer(token)).status_code == 200
        service.flush_audit()
        # The first question measured the quarters: the data changed, the account is read again.
        assert client.get("/api/indicators", headers=bearer(token)).status_code == 200
        reads: list[int] = []
        real_read = service.warehouse.read

        def counting_read():
            reads.append(1)
            return real_read()

        service.warehouse.read = counting_read  # type: ignore[method-assign]
        for _ in range(3):  # the cached account: no read of the warehouse
            assert client.get("/api/indicators", headers=bearer(token)).status_code == 200
        assert reads == []
        service.warehouse.read = real_read  # type: ignore[method-assign]
        service.answer(service.account_named("amira"), "registered_cases", ["sex"], [])
        revoked = runner.invoke(cli, ["user", "revoke", "nadia", "-w", str(warehouse)])
        assert revoked.exit_code == 0, revoked.output
        service.flush_audit()  # the ledger writer writes before the next request
        assert client.get("/api/indicators", headers=bearer(token)).status_code == 401
        assert client.post("/api/query", json=QUESTION, headers=bearer(token)).status_code == 401


def test_a_batch_is_due_after_a_burst_of_answers_and_never_waits_too_long(world, monkeypatch):
    """The ledger writer lets a burst of new questions be answered before it writes (the write
    would take their CPU), but writes within MAX_WAIT_SECONDS however busy, at once when
    MAX_BATCH wait, and keeps a refused batch's age."""
    now = [100.0]
    queue = answering.LedgerQueue(
        create_app(world.warehouse).app.state.service.warehouse, clock=lambda: now[0]
    )
    assert not queue.due()  # nothing queued

    def put_at(t: float) -> None:
        now[0] = t
        queue.put(answering.Entry("query", "serve:t", {}))

    put_at(100.0)
    now[0] = 100.3
    assert not queue.due()  # younger than FLUSH_SECONDS
    now[0] = 100.0 + answering.FLUSH_SECONDS
    assert queue.due()  # and nothing came since
    for i in range(1, 40):  # answers keep coming, one every 0.05 s
        put_at(100.0 + answering.FLUSH_SECONDS + 0.05 * i)
        now[0] += 0.01
        assert queue.due() == (now[0] - 100.0 >= answering.MAX_WAIT_SECONDS)
    now[0] += answering.QUIET_SECONDS
    assert queue.due()
    monkeypatch.setattr(queue.warehouse, "write", lambda: (_ for _ in ()).throw(WarehouseBusy()))
    assert queue.flush() == 0 and queue.pending() == 40
    put_at(now[0])  # a new entry behind the refused batch: the batch's age counts
    assert queue.due()

    fresh = answering.LedgerQueue(queue.warehouse, clock=lambda: now[0])
    monkeypatch.setattr(answering, "MAX_BATCH", 3)
    for _ in range(3):
        assert not fresh.due()
        fresh.put(answering.Entry("query", "serve:t", {}))
    assert fresh.due()


def test_forty_first_requests_of_new_accounts_read_the_accounts_once(tmp_path, world):
    """Accounts are read in one look for every token (no warehouse read per request, nor per new
    account): forty requests at once of accounts not seen before open the warehouse once; a
    token that is no account's is refused without reading it again."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    from casepool.serving.accounts import add_account as add

    warehouse = tmp_path / "w.duckdb"
    shutil.copyfile(world.warehouse, warehouse)
    tokens = [add(warehouse, f"user{i}", "analyst", actor="test").token for i in range(4)]
    service = create_app(warehouse).app.state.service
    real_read = service.warehouse.read
    reads: list[int] = []

    def counting_read():
        reads.append(1)
        return real_read()

    service.warehouse.read = counting_read  # type: ignore[method-assign]
    with ThreadPoolExecutor(40) as pool:
        found = list(pool.map(lambda i: service.account_for_token(tokens[i % 4]), range(40)))
    assert [a.name for a in found] == [f"user{i % 4}" for i in range(40)]
    assert service.account_for_token("cpt_" + "x" * 40) is None
    assert service.account_for_token("not a token") is None
    assert service.account_named("user2").name == "user2"
    assert reads == [1]
    service.forget("user1")  # as the steward's page does after revoking: read again
    assert service.account_for_token(tokens[1]).name == "user1"
    assert reads == [1, 1]


def test_a_batch_committed_before_closing_fails_is_not_written_twice(tmp_path, world, monkeypatch):
    """When closing the connection fails after the batch committed (a full disk at the
    checkpoint), the entries are in the ledger: they are not queued again."""
    import contextlib
    import shutil

    warehouse = tmp_path / "w.duckdb"
    shutil.copyfile(world.warehouse, warehouse)
    service = create_app(warehouse).app.state.service
    account = service.account_named("amira")
    service.answer(account, "registered_cases", ["sex"], [("period", ["2025"])])
    assert service.flush_audit() == 1
    before = counts(warehouse)
    real_write = service.warehouse.write

    @contextlib.contextmanager
    def failing_close():
        with real_write() as con:
            yield con
        raise OSError("no space left on device")

    monkeypatch.setattr(service.warehouse, "write", failing_close)
    for _ in range(2):
        service.answer(account, "registered_cases", ["sex"], [("period", ["2025"])])
    with pytest.raises(OSError):
        service.flush_audit()
    assert service.ledger.pending() == 0
    monkeypatch.setattr(service.warehouse, "write", real_write)
    assert service.ledger.close(wait=5) == 0
    assert counts(warehouse) == {
        "releases": before["releases"] + 2,
        "audit": before["audit"] + 2,
    }
