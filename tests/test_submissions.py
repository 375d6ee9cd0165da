"""Revoke and reactivate: decisions in the audit log and ledger; indicators follow."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from casepool.cli.main import app
from casepool.core.errors import UsageError, WarehouseError
from casepool.publishing.query import query
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


def test_indicators_follow_a_revocation(loaded):
    w, ids = loaded

    def registered_total():
        frame = query(w, "registered_cases", by="sex").table.frame
        return frame.filter(frame["sex"] == "_T").get_column("value").to_list()

    before = registered_total()  # 65 records, a child in both organisations counted once
    assert 40 < before[0] <= 65
    revoke_submission(w, ids[("ORG-02", 0)], "organisation withdrew consent for sharing")
    assert table_counts(w)["active_cases"] == 40
    after = registered_total()
    assert after[0] < before[0] and after[0] <= 40
    reactivate_submission(w, ids[("ORG-02", 0)])
    assert registered_total() == before


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
