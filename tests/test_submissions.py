"""Revoke and reactivate: decisions in the audit log and ledger; indicators follow."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl
import pytest

from casepool.catalogue.indicators import load_indicators
from casepool.cli.main import app
from casepool.core.errors import UsageError, WarehouseError
from casepool.protecting import dp
from casepool.protecting.dp_settings import dp_settings_from_mapping, load_dp_settings
from casepool.publishing import dp_answers
from casepool.publishing.dp_answers import budget_report
from casepool.publishing.query import query
from casepool.warehouse import budget
from casepool.warehouse.ingest import ingest_packages
from casepool.warehouse.ledger import list_releases
from casepool.warehouse.organisations import add_organisation
from casepool.warehouse.status import table_counts
from casepool.warehouse.store import open_warehouse
from casepool.warehouse.submissions import (
    list_submissions,
    reactivate_submission,
    revoke_submission,
)
from fixtures.submit.builders import canonical_records, make_package, org_keys

T0 = datetime(2025, 8, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def loaded(tmp_path):
    """ORG-01 sent 2025-07 twice (30 then 40 records); ORG-02 sent 2025-07 once (25)."""
    w = tmp_path / "w.duckdb"
    ids = {}
    for org, sizes in (("ORG-01", (30, 40)), ("ORG-02", (25,))):
        keys = org_keys(tmp_path / "keys", org)
        add_organisation(w, org, org, tmp_path / "keys" / f"{org}.pub")
        for i, n in enumerate(sizes):
            package = make_package(
                tmp_path / f"{org}-{i}",
                keys,
                canonical_records(n, seed=10 * i + len(org)),
                created=T0 + timedelta(days=i),
            )
            ids[(org, i)] = ingest_packages([package], w).packages[0].submission_id
    return w, ids


def audit(w, action):
    with open_warehouse(w, read_only=True) as con:
        return con.execute(
            "SELECT submission_id, detail FROM audit_log WHERE action = ? ORDER BY seq", [action]
        ).fetchall()


def test_revoking_the_active_submission_brings_back_the_previous_one(loaded):
    w, ids = loaded
    assert table_counts(w)["active_cases"] == 40 + 25
    decision = revoke_submission(w, ids[("ORG-01", 1)][:12], "sent in error")
    assert decision.active == ids[("ORG-01", 0)]
    assert decision.submission.state == "revoked"
    assert table_counts(w)["active_cases"] == 30 + 25
    states = {s.submission_id: s.state for s in list_submissions(w)}
    assert states[ids[("ORG-01", 1)]] == "revoked"
    assert states[ids[("ORG-01", 0)]] == "active"
    [(sid, detail)] = audit(w, "revoked")
    assert sid == ids[("ORG-01", 1)] and json.loads(detail)["reason"] == "sent in error"
    assert [r[0] for r in audit(w, "reinstated")] == [ids[("ORG-01", 0)]]
    [release] = list_releases_of(w)
    assert release.kind == "revocation" and release.submissions == [ids[("ORG-01", 1)]]
    # reactivating puts the newest (by signed time) back in front
    again = reactivate_submission(w, ids[("ORG-01", 1)])
    assert again.active == ids[("ORG-01", 1)]
    assert table_counts(w)["active_cases"] == 40 + 25
    assert len(audit(w, "reactivated")) == 1 and len(list_releases_of(w)) == 2


def list_releases_of(w):
    with open_warehouse(w, read_only=True) as con:
        return list_releases(con, kind="revocation")


def test_reactivating_an_older_submission_leaves_it_superseded(loaded):
    w, ids = loaded
    revoke_submission(w, ids[("ORG-01", 0)], "duplicate")  # the superseded one
    assert table_counts(w)["active_cases"] == 40 + 25
    decision = reactivate_submission(w, ids[("ORG-01", 0)])
    assert decision.active == ids[("ORG-01", 1)]
    assert decision.submission.state == "superseded"


def spent_on(w, period="2025-Q3"):
    with open_warehouse(w, read_only=True) as con:
        return budget.spent_on(con, period)


def measurement_releases(w):
    with open_warehouse(w, read_only=True) as con:
        return [r for r in list_releases(con, kind="measurement") if r.method == "dp"]


def registered_total(w, settings=None):
    frame = query(w, "registered_cases", by="sex", settings=settings).table.frame
    return frame.filter(frame["sex"] == "_T").get_column("value").to_list()


def test_indicators_follow_a_revocation(loaded, monkeypatch):
    w, ids = loaded
    # Without noise the answers are the true counts: the revoked children must stop counting.
    monkeypatch.setattr(dp, "noisy_counts", lambda values, scale, sensitivity: list(values))
    before = registered_total(w)  # 65 records, a child in both organisations counted once
    assert 40 < before[0] <= 65
    assert spent_on(w) == pytest.approx(0.5)  # workload_share of protection.yaml
    revoke_submission(w, ids[("ORG-02", 0)], "organisation withdrew consent for sharing")
    assert table_counts(w)["active_cases"] == 40
    report = budget_report(w)
    assert [r["measurements"] for r in report.periods] == ["stale"]
    after = registered_total(w)
    assert after[0] < before[0] and after[0] <= 40
    # The quarter was measured again once, from its own budget, and the ledger says so.
    assert spent_on(w) == pytest.approx(0.7)
    first, again = measurement_releases(w)
    assert again.detail["revision_of"] == [first.release_id] and again.periods == ["2025-Q3"]
    row = budget_report(w).periods[0]
    assert row["measurements"] == "current" and row["revisions"] == 1
    assert registered_total(w) == after and spent_on(w) == pytest.approx(0.7)
    # Undoing the revocation brings back the data of the first measurement: it is put back, free.
    reactivate_submission(w, ids[("ORG-02", 0)])
    assert registered_total(w) == before
    assert spent_on(w) == pytest.approx(0.7)
    assert measurement_releases(w)[-1].detail["restored"] == [first.release_id]


def test_a_revocation_moves_a_noisy_answer_beyond_its_noise(tmp_path):
    """With noise: 400 children of one organisation revoked, the total drops far beyond the
    margin, and the margin says how far the answer may be from the true count."""
    w = tmp_path / "w.duckdb"
    sids = {}
    for org, n in (("ORG-01", 60), ("ORG-02", 400)):
        keys = org_keys(tmp_path / "keys", org)
        add_organisation(w, org, org, tmp_path / "keys" / f"{org}.pub")
        package = make_package(
            tmp_path / org, keys, canonical_records(n, seed=len(org) + n), created=T0
        )
        sids[org] = ingest_packages([package], w).packages[0].submission_id
    before = registered_total(w)[0]
    revoke_submission(w, sids["ORG-02"], "organisation withdrew consent for sharing")
    result = query(w, "registered_cases", by="sex")
    frame = result.table.frame.filter(pl.col("sex") == "_T")
    after, margin = frame.get_column("value")[0], frame.get_column("margin")[0]
    assert before - after > 300 and abs(after - 60) <= 4 * margin
    assert result.spent == pytest.approx(
        0.2
    )  # half of what is left above the reserve: (0.9 - 0.5) / 2


def test_a_late_package_is_measured_again_once(loaded):
    w, _ = loaded
    registered_total(w)
    assert spent_on(w) == pytest.approx(0.5)
    keys = org_keys(tmp_path_of(w) / "keys", "ORG-03")
    add_organisation(w, "ORG-03", "ORG-03", tmp_path_of(w) / "keys" / "ORG-03.pub")
    late = make_package(tmp_path_of(w) / "late", keys, canonical_records(20, seed=77), created=T0)
    ingest_packages([late], w)
    assert budget_report(w).periods[0]["measurements"] == "stale"
    first = query(w, "registered_cases", by="sex")
    assert first.spent == pytest.approx(0.2) and spent_on(w) == pytest.approx(0.7)
    for _ in range(2):
        assert query(w, "registered_cases", by="governorate").spent == 0.0
    assert spent_on(w) == pytest.approx(0.7)
    assert len(measurement_releases(w)) == 2
    assert budget_report(w).periods[0]["measurements"] == "current"


def tmp_path_of(w):
    return w.parent


def test_a_stale_quarter_without_budget_is_refused_with_nothing_spent(loaded, runner):
    w, ids = loaded
    settings = dp_settings_from_mapping(
        {
            "rho_per_quarter": 1.0,
            "workload_share": 0.9,
            "measurements": [{"indicator": "registered_cases", "by": ["sex"]}],
        }
    )
    registered_total(w, settings)
    revoke_submission(w, ids[("ORG-02", 0)], "organisation withdrew consent for sharing")
    with pytest.raises(UsageError) as caught:
        registered_total(w, settings)
    assert caught.value.key == "dp-revision-over-budget"
    assert "2025-Q3" in caught.value.message("en") and "rho_per_quarter" in caught.value.message(
        "en"
    )
    assert spent_on(w) == pytest.approx(0.9) and len(measurement_releases(w)) == 1
    assert budget_report(w, settings=settings).periods[0]["measurements"] == "stale"
    # The default workload on the CLI: 0.9 spent, nothing left above the reserve for extras.
    cli = runner.invoke(app, ["query", "registered_cases", "-w", str(w), "--by", "sex"])
    assert cli.exit_code == 1, cli.output
    assert "2025-Q3" in cli.stderr and "nothing was spent" in cli.stderr
    assert spent_on(w) == pytest.approx(0.9)
    shown = runner.invoke(app, ["budget", "-w", str(w)])
    assert "stale" in shown.stdout


def test_concurrent_questions_on_a_stale_quarter_measure_it_once(loaded, monkeypatch):
    w, ids = loaded
    registered_total(w)
    revoke_submission(w, ids[("ORG-02", 0)], "organisation withdrew consent for sharing")
    barrier = threading.Barrier(2, timeout=10)
    original = budget.spend
    synced: set[int] = set()

    def racing_spend(con, period, rho, limit):
        con.execute("SELECT rho_spent FROM dp_budget").fetchall()  # both read the same state
        if threading.get_ident() not in synced:
            synced.add(threading.get_ident())
            barrier.wait()
        return original(con, period, rho, limit)

    monkeypatch.setattr(budget, "spend", racing_spend)
    settings = load_dp_settings()
    db = duckdb.connect(str(w))  # one database, two connections, as in a web service
    outcomes: list[object] = []

    def ask() -> None:
        con = db.cursor()
        try:
            done = dp_answers.measure_quarters(
                con, ["2025-Q3"], settings, load_indicators(), actor="t"
            )
            outcomes.append(sum(t.rho for t in done))
        except UsageError as exc:
            outcomes.append(exc.key)
        finally:
            con.close()

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.close()
    assert sorted(map(str, outcomes)) == sorted(["0", str(outcomes[0] or outcomes[1])])
    assert spent_on(w) == pytest.approx(0.7)
    assert len(measurement_releases(w)) == 2


def test_refusals_name_the_problem(loaded):
    w, ids = loaded
    sid = ids[("ORG-02", 0)]
    with pytest.raises(UsageError) as caught:
        revoke_submission(w, sid, "   ")
    assert caught.value.key == "revoke-reason-empty"
    with pytest.raises(UsageError) as caught:
        revoke_submission(w, "abc", "x")
    assert caught.value.key == "submission-id-too-short"
    with pytest.raises(UsageError) as caught:
        revoke_submission(w, "ffffffffffff", "x")
    assert caught.value.key == "submission-unknown"
    with pytest.raises(WarehouseError) as caught:
        reactivate_submission(w, sid)
    assert caught.value.key == "submission-not-revoked"
    revoke_submission(w, sid, "x")
    with pytest.raises(WarehouseError) as caught:
        revoke_submission(w, sid, "x")
    assert caught.value.key == "submission-already-revoked"


def test_the_cli_lists_revokes_and_reactivates(loaded, runner):
    w, ids = loaded
    sid = ids[("ORG-01", 1)]
    listed = runner.invoke(app, ["submissions", "list", "-w", str(w), "--json"])
    assert listed.exit_code == 0
    assert {r["state"] for r in json.loads(listed.stdout)} == {"active", "superseded"}
    text = runner.invoke(app, ["submissions", "list", "-w", str(w), "--org", "ORG-01"])
    assert sid[:12] in text.stdout and ids[("ORG-02", 0)][:12] not in text.stdout
    revoked = runner.invoke(
        app, ["submissions", "revoke", sid[:12], "--reason", "wrong period", "-w", str(w)]
    )
    assert revoked.exit_code == 0, revoked.output
    assert f"Revoked {sid[:12]} (ORG-01, 2025-07)" in revoked.stderr
    assert ids[("ORG-01", 0)][:12] in revoked.stderr
    only = runner.invoke(app, ["submissions", "list", "-w", str(w), "--state", "revoked", "--json"])
    assert [r["submission_id"] for r in json.loads(only.stdout)] == [sid]
    status = runner.invoke(app, ["status", "-w", str(w)])
    assert "1 revoked" in status.stdout
    assert any(sid[:12] in x and "revoked" in x for x in status.stdout.splitlines())
    again = runner.invoke(app, ["submissions", "reactivate", sid[:12], "-w", str(w)])
    assert again.exit_code == 0 and "Reactivated" in again.stderr
    missing = runner.invoke(app, ["submissions", "revoke", "abcdef", "--reason", "x", "-w", str(w)])
    assert missing.exit_code == 2 and "no submission abcdef" in missing.stderr
