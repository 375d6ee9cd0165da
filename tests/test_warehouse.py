"""The steward's commands: org registry, ingest and status through the CLI; the warehouse's views."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from casepool.cli.main import app
from casepool.core.errors import WarehouseError
from casepool.exchange.keys import record_keys
from casepool.warehouse.ingest import ingest_packages
from casepool.warehouse.organisations import add_organisation
from casepool.warehouse.status import table_counts, warehouse_status
from casepool.warehouse.store import open_warehouse
from fixtures.submit.builders import canonical_records, make_package, org_keys

T0 = datetime(2025, 8, 1, tzinfo=UTC)


@pytest.fixture
def pub(tmp_path, keys):
    return tmp_path / "keys" / f"{keys.org}.pub"


def invoke(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


def test_org_add_then_list(tmp_path, runner, pub):
    w = tmp_path / "w.duckdb"
    added = invoke(runner, "org", "add", "org-01", "--name", "Amal  Centre", "--public-key", pub,
                   "--warehouse", w)  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "Registered ORG-01 (Amal Centre)" in added.output
    listed = invoke(runner, "org", "list", "--warehouse", w, "--json")
    assert [o["org"] for o in json.loads(listed.stdout)] == ["ORG-01"]


def test_registering_twice_needs_replace_and_is_audited(tmp_path, runner, pub):
    w = tmp_path / "w.duckdb"
    invoke(runner, "org", "add", "ORG-01", "--name", "A", "--public-key", pub, "-w", w)
    again = invoke(runner, "org", "add", "ORG-01", "--name", "A", "--public-key", pub, "-w", w)
    assert again.exit_code == 2 and "already registered" in again.output
    org_keys(tmp_path / "new", "ORG-01")
    replaced = invoke(runner, "org", "add", "ORG-01", "--name", "A", "--public-key",
                      tmp_path / "new" / "ORG-01.pub", "-w", w, "--replace")  # fmt: skip
    assert replaced.exit_code == 0
    with open_warehouse(w, read_only=True) as con:
        actions = [
            r[0] for r in con.execute("SELECT action FROM audit_log ORDER BY seq").fetchall()
        ]
    assert actions == ["org-added", "org-key-replaced"]


def test_a_public_key_file_that_is_not_a_key_is_refused(tmp_path, runner):
    fake = tmp_path / "fake.pub"
    fake.write_text("hello")
    result = invoke(runner, "org", "add", "ORG-01", "--name", "A", "--public-key", fake, "-w",
                    tmp_path / "w.duckdb")  # fmt: skip
    assert result.exit_code == 2 and "not a casepool key file" in result.output


def test_ingest_cli_exit_codes_and_status(tmp_path, runner, keys, pub):
    w = tmp_path / "w.duckdb"
    invoke(runner, "org", "add", "ORG-01", "--name", "Amal", "--public-key", pub, "-w", w)
    make_package(tmp_path / "in", keys, canonical_records(7), created=T0)
    make_package(tmp_path / "in", keys, canonical_records(9), created=T0 + timedelta(days=1))
    loaded = invoke(runner, "ingest", tmp_path / "in", "-w", w)
    assert loaded.exit_code == 0, loaded.output
    assert "Packages loaded: 2; already in: 0; refused: 0." in loaded.output
    stranger = org_keys(tmp_path / "keys", "ORG-09")
    bad = make_package(tmp_path / "bad", stranger, canonical_records(3), created=T0)
    refused = invoke(runner, "ingest", bad, "-w", w)
    assert refused.exit_code == 1
    assert f"Refused {bad.name}: organisation ORG-09 is not registered" in refused.output

    status = invoke(runner, "status", "-w", w)
    assert status.exit_code == 0
    assert "Submissions: 1 active (9 records), 1 superseded" in status.output
    assert "Records counted in statistics (each case of an organisation once): 9" in status.output
    as_json = json.loads(invoke(runner, "status", "-w", w, "--json").stdout)
    assert [s["state"] for s in as_json["submissions"]] == ["superseded", "active"]
    assert as_json == json.loads(json.dumps(warehouse_status(w).to_dict(), default=str))


def test_status_of_a_missing_warehouse_exits_2(tmp_path, runner):
    result = invoke(runner, "status", "-w", tmp_path / "none.duckdb")
    assert result.exit_code == 2 and "No warehouse at" in result.output
    assert not (tmp_path / "none.duckdb").exists()


def test_status_speaks_the_users_language(tmp_path, runner, pub):
    w = tmp_path / "w.duckdb"
    invoke(runner, "org", "add", "ORG-01", "--name", "A", "--public-key", pub, "-w", w)
    assert "المنظمات: 1" in invoke(runner, "status", "-w", w, "--lang", "ar").output


def test_active_cases_counts_a_case_once_across_overlapping_periods(tmp_path, keys, pub):
    w = tmp_path / "w.duckdb"
    add_organisation(w, keys.org, "A", pub)
    records = canonical_records(10, seed=3)
    make_package(tmp_path / "in", keys, records, period="2025-07", created=T0)
    make_package(tmp_path / "in", keys, records, period="2025-Q3", created=T0 + timedelta(1))
    make_package(
        tmp_path / "in",
        keys,
        canonical_records(4, seed=8, month=date(2025, 9, 1)),
        period="2025-Q3",
        created=T0 - timedelta(1),
    )
    ingest_packages([tmp_path / "in"], w)
    counts = table_counts(w)
    assert counts["cases"] == 24
    with open_warehouse(w, read_only=True) as con:
        active = con.sql("SELECT period, count(*) AS n FROM active_cases GROUP BY 1").pl()
        submissions = con.sql("SELECT count(*) FROM active_submissions").fetchall()[0][0]
    assert dict(active.rows()) == {"2025-Q3": 10}  # the older Q3 package was superseded
    assert submissions == 2
    assert warehouse_status(w).active_cases == 10


def test_the_audit_log_only_grows(tmp_path, keys, pub):
    w = tmp_path / "w.duckdb"
    add_organisation(w, keys.org, "A", pub)
    package = make_package(tmp_path / "in", keys, canonical_records(3), created=T0)
    seen: list[tuple] = []
    for _ in range(3):
        ingest_packages([package], w)
        with open_warehouse(w, read_only=True) as con:
            rows = con.execute("SELECT * FROM audit_log ORDER BY seq").fetchall()
        assert rows[: len(seen)] == seen and len(rows) == len(seen) + (2 if not seen else 1)
        seen = rows


def test_record_keys_are_uniform_looking_and_depend_on_the_warehouse_secret():
    pseudonyms = [f"{i:064x}" for i in range(2000)]
    a = record_keys(b"s" * 32, "ORG-01", pseudonyms)
    assert all(0 <= k < 1 for k in a)
    assert 0.45 < sum(a) / len(a) < 0.55
    assert sum(k < 0.1 for k in a) in range(150, 250)
    assert record_keys(b"t" * 32, "ORG-01", pseudonyms) != a
    assert record_keys(b"s" * 32, "ORG-01", pseudonyms) == a


def test_read_only_status_never_creates_a_warehouse(tmp_path):
    with pytest.raises(WarehouseError):
        warehouse_status(tmp_path / "w.duckdb")
    assert not (tmp_path / "w.duckdb").exists()


def test_ingest_json_matches_the_library_report(tmp_path, runner, keys, pub):
    w = tmp_path / "w.duckdb"
    add_organisation(w, keys.org, "A", pub)
    package = make_package(tmp_path / "in", keys, canonical_records(4), created=T0)
    first = json.loads(invoke(runner, "ingest", package, "-w", w, "--json").stdout)
    assert first["ok"] and first["packages"][0]["outcome"] == "loaded"
    again = invoke(runner, "ingest", package, "-w", w, "--json")
    assert again.exit_code == 0
    library = ingest_packages([package], w).to_dict()
    assert json.loads(again.stdout) == json.loads(json.dumps(library, default=str))
