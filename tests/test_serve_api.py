"""`casepool serve`: accounts, the JSON API with bearer tokens, roles, and organisations' uploads."""

from __future__ import annotations

import json

import duckdb
import pytest
from starlette.testclient import TestClient

from casepool.cli.main import app as cli
from casepool.publishing.query import query
from casepool.serving import accounts
from casepool.serving.app import create_app
from casepool.warehouse.status import data_fingerprint
from casepool.warehouse.store import open_warehouse
from fixtures.serve.builders import build_world, sign_in
from fixtures.submit.builders import canonical_records, make_package

QUESTION = {"indicator": "registered_cases", "by": ["region", "sex"], "where": {"period": "2025"}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("serve"))


@pytest.fixture
def client(world):
    return TestClient(create_app(world.warehouse), base_url="http://127.0.0.1")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_api_refuses_a_request_without_a_valid_token(client, world):
    assert client.get("/api/indicators").status_code == 401
    assert client.post("/api/query", json=QUESTION).status_code == 401
    wrong = world.tokens["amira"][:-2] + "xx"
    refused = client.post("/api/query", json=QUESTION, headers=bearer(wrong))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/indicators", headers={"Authorization": "Basic x"}).status_code == 401


def test_the_api_answers_with_the_same_protected_table_as_query(client, world):
    answer = client.post("/api/query", json=QUESTION, headers=bearer(world.tokens["amira"]))
    assert answer.status_code == 200, answer.text
    library = query(
        world.warehouse, "registered_cases", by=("region", "sex"), where=["period=2025"]
    )
    expected = json.loads(json.dumps(library.to_dict(), default=str))
    # What differs between two askings is the asking itself: the ledger entry, and the budget the
    # first asking spent measuring the quarter (the second spends nothing). The figures agree.
    run_specific = {"release_id", "rho_spent"}
    got = {k: v for k, v in answer.json().items() if k not in run_specific}
    assert got == {k: v for k, v in expected.items() if k not in run_specific}
    assert expected["rho_spent"] == 0  # asked again: answered from the measurements, no spend
    assert answer.json()["rows"] and all("conf_status" in r for r in answer.json()["rows"])


def test_the_api_lists_indicators_in_the_asked_language(client, world):
    listing = client.get("/api/indicators?lang=ar", headers=bearer(world.tokens["amira"])).json()
    names = {i["indicator"] for i in listing}
    assert "registered_cases" in names
    assert any("\u0600" <= ch <= "\u06ff" for ch in listing[0]["label"])


@pytest.mark.parametrize(
    "body",
    [
        {"indicator": "no_such_thing"},
        {"indicator": "registered_cases", "by": ["sex", "region", "age_band", "governorate"]},
        {"indicator": "registered_cases", "by": "sex", "extra": 1},
        {"indicator": 3},
        {"indicator": "registered_cases", "where": {"sex": 5}},
    ],
)
def test_a_wrong_question_is_refused_with_a_message_and_nothing_internal(client, world, body):
    refused = client.post("/api/query", json=body, headers=bearer(world.tokens["amira"]))
    assert refused.status_code == 400
    text = refused.text
    assert (
        refused.json()["message"] and "Traceback" not in text and str(world.warehouse) not in text
    )


def test_malformed_json_is_a_bad_request(client, world):
    refused = client.post("/api/query", content=b"{not json", headers=bearer(world.tokens["amira"]))
    assert refused.status_code == 400


def test_an_analyst_cannot_reach_steward_pages_or_upload(world):
    client = TestClient(create_app(world.warehouse), base_url="http://127.0.0.1")
    sign_in(client, "amira", world.tokens["amira"])
    for path in ("/steward/submissions", "/steward/ledger", "/steward/accounts", "/upload"):
        assert client.get(path).status_code == 403, path
    upload = client.post("/api/packages", content=b"x", headers=bearer(world.tokens["amira"]))
    assert upload.status_code == 403
    assert client.get("/table").status_code == 200


def test_the_steward_sees_submissions_ledger_and_accounts(world):
    client = TestClient(create_app(world.warehouse), base_url="http://127.0.0.1")
    sign_in(client, "sam", world.tokens["sam"])
    submissions = client.get("/steward/submissions")
    assert submissions.status_code == 200 and "ORG-01" in submissions.text
    ledger = client.get("/steward/ledger")
    assert ledger.status_code == 200 and 'id="budget"' in ledger.text
    assert "2025-Q" in ledger.text  # a quarter of the data, with its budget spent and left
    listing = client.get("/steward/accounts")
    assert listing.status_code == 200 and "officer1" in listing.text
    assert world.tokens["amira"] not in listing.text


def test_an_org_uploads_its_own_package_and_not_another_organisations(tmp_path, world):
    client = TestClient(create_app(world.warehouse), base_url="http://127.0.0.1")
    own = make_package(tmp_path / "own", world.keys["ORG-01"], canonical_records(12, seed=3))
    other = make_package(tmp_path / "other", world.keys["ORG-02"], canonical_records(12, seed=4))
    token = world.tokens["officer1"]

    before = data_fingerprint(world.warehouse)
    refused = client.post(
        f"/api/packages?name={other.name}", content=other.read_bytes(), headers=bearer(token)
    )
    assert refused.status_code == 422
    assert "ORG-01" in refused.json()["message"]
    assert data_fingerprint(world.warehouse) == before

    loaded = client.post(
        f"/api/packages?name={own.name}", content=own.read_bytes(), headers=bearer(token)
    )
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["packages"][0]["outcome"] == "loaded"
    assert loaded.json()["warehouse"] is None  # the warehouse's path is not told
    assert data_fingerprint(world.warehouse) != before
    with open_warehouse(world.warehouse, read_only=True) as con:
        actions = con.execute(
            "SELECT action, actor FROM audit_log WHERE actor LIKE 'serve:%' ORDER BY seq"
        ).fetchall()
    assert ("refused", "serve:officer1") in actions and ("ingested", "serve:officer1") in actions

    # The same through the page, with the form's CSRF token.
    sign_in(client, "officer1", token)
    page = client.get("/upload")
    from fixtures.serve.builders import csrf_of

    again = client.post(
        "/upload",
        data={"csrf": csrf_of(page.text)},
        files={"package": (other.name, other.read_bytes(), "application/zip")},
    )
    assert again.status_code == 422 and "ORG-01" in again.text
    assert client.get("/table").status_code == 403  # an officer does not query


def test_accounts_keep_only_hashes_and_are_in_the_audit_log(world):
    with open_warehouse(world.warehouse, read_only=True) as con:
        rows = con.execute("SELECT * FROM service_accounts").fetchall()
        audit = {r[0] for r in con.execute("SELECT action FROM audit_log").fetchall()}
    text = repr(rows)
    assert all(token not in text for token in world.tokens.values())
    assert "account-added" in audit


def test_user_cli_adds_lists_and_revokes(runner, world):
    added = runner.invoke(
        cli, ["user", "add", "nour", "--role", "analyst", "-w", str(world.warehouse), "--json"]
    )
    assert added.exit_code == 0, added.output
    made = json.loads(added.stdout)
    assert set(made) == {"user", "role", "token"} and made["role"] == "analyst"
    listing = runner.invoke(cli, ["user", "list", "-w", str(world.warehouse), "--json"])
    assert "nour" in listing.stdout and made["token"] not in listing.stdout

    client = TestClient(create_app(world.warehouse), base_url="http://127.0.0.1")
    assert client.get("/api/indicators", headers=bearer(made["token"])).status_code == 200
    # The account is cached, but a revocation on the command line changes the warehouse: the
    # next request looks the token up again (no waiting out the cache).
    revoked = runner.invoke(cli, ["user", "revoke", "nour", "-w", str(world.warehouse)])
    assert revoked.exit_code == 0, revoked.output
    assert client.get("/api/indicators", headers=bearer(made["token"])).status_code == 401
    with open_warehouse(world.warehouse, read_only=True) as con:
        audit = [r[0] for r in con.execute("SELECT action FROM audit_log ORDER BY seq").fetchall()]
    assert audit[-1] == "account-revoked"

    twice = runner.invoke(
        cli, ["user", "add", "amira", "--role", "analyst", "-w", str(world.warehouse)]
    )
    assert twice.exit_code == 2
    no_org = runner.invoke(cli, ["user", "add", "x1", "--role", "org", "-w", str(world.warehouse)])
    assert no_org.exit_code == 2


def test_passwords_are_argon2_hashes(world):
    client = TestClient(create_app(world.warehouse), base_url="http://127.0.0.1")
    sign_in(client, "sam", world.tokens["sam"])
    with open_warehouse(world.warehouse, read_only=True) as con:
        (stored,) = con.execute(
            "SELECT password_hash FROM service_accounts WHERE name = 'sam'"
        ).fetchone()
    assert stored.startswith("$argon2id$")


def test_a_warehouse_without_accounts_reads_as_empty(tmp_path):
    from fixtures.indicators.warehouses import build_hand_made

    path = build_hand_made(tmp_path / "w.duckdb")
    assert accounts.list_accounts(path) == []
    with duckdb.connect(str(path), read_only=True) as con:
        assert accounts.account_by_token(con, "cpt_x") is None


def test_each_answer_is_in_the_audit_log_with_its_question_and_no_values(world):
    with TestClient(create_app(world.warehouse), base_url="http://127.0.0.1") as client:
        answer = client.post("/api/query", json=QUESTION, headers=bearer(world.tokens["amira"]))
        assert answer.status_code == 200
    # Leaving the client shuts the app down, which writes the queued audit lines.
    with open_warehouse(world.warehouse, read_only=True) as con:
        action, detail = con.execute(
            "SELECT action, detail FROM audit_log WHERE actor = 'serve:amira' ORDER BY seq DESC"
        ).fetchone()
        released = dict(
            con.execute(
                "SELECT release_id, kind || ' ' || actor FROM releases WHERE kind = 'query'"
            ).fetchall()
        )
    assert action == "query"
    detail = json.loads(detail)
    asked_at, release_id = detail.pop("asked_at"), detail.pop("release_id")
    assert detail == {
        "indicator": "registered_cases",
        "by": ["region", "sex"],
        "where": {"period": ["2025"]},
    }
    assert asked_at[:4].isdigit() and "T" in asked_at
    # The audit line names the release ledger entry its answer was written to.
    assert released[release_id] == "query serve:amira"


@pytest.mark.parametrize("lang", ["en", "ar", "ckb", "kmr"])
def test_every_page_speaks_the_four_languages(world, lang):
    from casepool.core.i18n import messages

    client = TestClient(create_app(world.warehouse), base_url="http://127.0.0.1")
    sign_in(client, "sam", world.tokens["sam"])
    for path in (
        "/table",
        "/catalogue",
        "/steward/submissions",
        "/steward/ledger",
        "/steward/accounts",
    ):
        page = client.get(f"{path}?lang={lang}")
        assert page.status_code == 200, path
        assert f'lang="{lang}"' in page.text
        assert ('dir="rtl"' in page.text) == (lang in {"ar", "ckb"})
        assert "serve-" not in page.text.replace("/static/", ""), path  # no key left untranslated
    assert all(
        all(templates.get(code) for code in ("en", "ar", "ckb", "kmr"))
        for key, templates in messages().items()
        if key.startswith("serve-")
    )


def test_serve_refuses_a_missing_warehouse(runner, tmp_path):
    missing = runner.invoke(cli, ["serve", "-w", str(tmp_path / "none.duckdb")])
    assert missing.exit_code == 2
