"""`casepool log`: the audit log, filtered by organisation, action and day, as text or JSON."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from casepool.cli.main import app
from casepool.core.errors import UsageError
from casepool.warehouse.auditlog import read_audit_log
from casepool.warehouse.ingest import ingest_packages
from casepool.warehouse.organisations import add_organisation
from casepool.warehouse.submissions import revoke_submission
from fixtures.submit.builders import canonical_records, make_package, org_keys

T0 = datetime(2025, 8, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def warehouse(tmp_path):
    w = tmp_path / "w.duckdb"
    for org in ("ORG-01", "ORG-02"):
        keys = org_keys(tmp_path / "keys", org)
        add_organisation(w, org, org, tmp_path / "keys" / f"{org}.pub")
        ingest_packages([make_package(tmp_path / org, keys, canonical_records(4), created=T0)], w)
    stranger = org_keys(tmp_path / "keys", "ORG-09")
    ingest_packages([make_package(tmp_path / "x", stranger, canonical_records(3), created=T0)], w)
    sid = read_audit_log(w, org="ORG-02", actions=["ingested"]).entries[0].submission_id
    revoke_submission(w, sid, "sent twice by mistake")
    return w


def test_filters_by_organisation_action_and_day(warehouse):
    everything = read_audit_log(warehouse)
    assert [e.action for e in everything.entries] == [
        "org-added",
        "ingested",
        "org-added",
        "ingested",
        "refused",
        "revoked",
    ]
    assert [e.seq for e in everything.entries] == sorted(e.seq for e in everything.entries)
    org2 = read_audit_log(warehouse, org="org-02")
    assert {e.org for e in org2.entries} == {"ORG-02"} and len(org2.entries) == 3
    refused = read_audit_log(warehouse, actions=["refused"]).entries
    assert len(refused) == 1 and refused[0].detail["reason"] == "package-unknown-org"
    revoked = read_audit_log(warehouse, actions=["revoked", "reactivated"]).entries
    assert revoked[0].detail["reason"] == "sent twice by mistake"
    today = datetime.now(UTC).date()
    assert len(read_audit_log(warehouse, since=today, until=today).entries) == 6
    assert read_audit_log(warehouse, since=today + timedelta(days=1)).entries == []
    assert read_audit_log(warehouse, until=str(today - timedelta(days=1))).entries == []


def test_bad_filters_are_refused(warehouse):
    with pytest.raises(UsageError) as caught:
        read_audit_log(warehouse, since="1st of October")
    assert caught.value.key == "log-date-invalid"
    with pytest.raises(UsageError) as caught:
        read_audit_log(warehouse, since=date(2025, 2, 1), until=date(2025, 1, 1))
    assert caught.value.key == "log-dates-reversed"
    with pytest.raises(UsageError) as caught:
        read_audit_log(warehouse, actions=["deleted"])
    assert caught.value.key == "log-action-unknown"


def test_the_cli_prints_text_or_json(warehouse, runner):
    text = runner.invoke(app, ["log", "-w", str(warehouse), "--action", "revoked"])
    assert text.exit_code == 0, text.output
    lines = text.stdout.strip().splitlines()
    assert len(lines) == 2 and "revoked" in lines[1] and "sent twice by mistake" in lines[1]
    as_json = json.loads(
        runner.invoke(app, ["log", "-w", str(warehouse), "--org", "ORG-01", "--json"]).stdout
    )
    assert [e["action"] for e in as_json["entries"]] == ["org-added", "ingested"]
    assert as_json["filters"]["org"] == "ORG-01"
    bad = runner.invoke(app, ["log", "-w", str(warehouse), "--since", "yesterday"])
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.stderr
    none = runner.invoke(app, ["log", "-w", str(warehouse), "--org", "ORG-77"])
    assert none.exit_code == 0 and "No audit-log entries match." in none.stdout
