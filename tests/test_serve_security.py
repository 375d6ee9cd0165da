"""The service's guards: CSRF, cookies, headers, paths, body limits, throttles, quiet errors, logs,
and `casepool ingest` from the command line while the service answers."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from casepool.publishing.query import query
from casepool.serving import service as service_module
from casepool.serving.app import create_app
from casepool.serving.security import CSP
from casepool.serving.service import Limits
from casepool.warehouse.status import table_counts
from fixtures.serve.builders import build_world, csrf_of, sign_in
from fixtures.submit.builders import canonical_records, make_package

CASEPOOL = str(Path(sys.executable).parent / "casepool")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("guard"), records=600)


def client_for(world, **limits) -> TestClient:
    app = create_app(world.warehouse, limits=Limits(**limits) if limits else None)
    return TestClient(app, base_url="http://127.0.0.1")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_forms_without_the_csrf_token_are_refused(world):
    client = client_for(world)
    sign_in(client, "amira", world.tokens["amira"])
    built = client.post("/table", data={"indicator": "registered_cases", "by": "sex"})
    assert built.status_code == 403
    forged = client.post("/table", data={"csrf": "forged", "indicator": "registered_cases"})
    assert forged.status_code == 403
    assert client.post("/signout", data={}).status_code == 403
    other = client_for(world)
    other.get("/signin")
    assert other.post("/signin", data={"name": "amira", "password": "x"}).status_code == 403


def test_session_cookies_are_httponly_strict_and_secure_under_tls(world):
    plain = client_for(world).get("/signin").headers["set-cookie"]
    assert "HttpOnly" in plain and "SameSite=strict" in plain and "Secure" not in plain
    tls = TestClient(create_app(world.warehouse), base_url="https://service.example")
    answer = tls.get("/signin")
    assert "Secure" in answer.headers["set-cookie"]
    assert answer.headers["strict-transport-security"].startswith("max-age=")


@pytest.mark.parametrize("path", ["/signin", "/static/app.css", "/no/such/page", "/api/query"])
def test_every_response_carries_a_strict_content_security_policy(world, path):
    answer = client_for(world).get(path)
    assert answer.headers["content-security-policy"] == CSP
    assert "script-src" not in CSP and "'unsafe-inline'" not in CSP
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert "server" not in answer.headers


@pytest.mark.parametrize(
    "path",
    [
        "/static/../accounts.py",
        "/static/%2e%2e/accounts.py",
        "/static/..%2faccounts.py",
        "/static/%2e%2e/%2e%2e/%2e%2e/warehouse.duckdb",
        "/static//etc/passwd",
        "/static/....//....//etc/passwd",
        "/warehouse.duckdb",
        "/static/templates/base.html",
    ],
)
def test_no_path_serves_a_file_outside_the_static_assets(world, path):
    answer = client_for(world).get(path)
    assert answer.status_code in {404, 400}
    assert b"DUCK" not in answer.content and b"import" not in answer.content
    assert b"root:" not in answer.content


def test_oversized_bodies_are_refused(world):
    client = client_for(world, max_body=1024, max_package=4096)
    token = world.tokens["amira"]
    declared = client.post("/api/query", content=b"x" * 5000, headers=bearer(token))
    assert declared.status_code == 413

    def chunks():
        for _ in range(10):
            yield b"y" * 1000

    streamed = client.post("/api/query", content=chunks(), headers=bearer(token))
    assert streamed.status_code == 413
    package = client.post(
        "/api/packages", content=b"z" * 10_000, headers=bearer(world.tokens["officer1"])
    )
    assert package.status_code == 413


def test_sign_in_is_throttled_after_five_failures(world, monkeypatch):
    from argon2 import PasswordHasher

    from casepool.serving import accounts
    from fixtures.serve.builders import PASSWORD

    # A cheap hash for this test's account only: the throttle, not argon2, is under test.
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(accounts, "_HASHER", cheap)
    monkeypatch.setattr(accounts, "_DUMMY_HASH", cheap.hash("not a password"))
    token = accounts.add_account(world.warehouse, "tess", "analyst", actor="test").token
    sign_in(client_for(world), "tess", token)  # sets tess's password
    fresh = client_for(world)
    for _ in range(5):
        page = fresh.get("/signin")
        wrong = fresh.post(
            "/signin", data={"csrf": csrf_of(page.text), "name": "tess", "password": "wrong guess!"}
        )
        assert wrong.status_code == 401
    page = fresh.get("/signin")
    right = fresh.post(
        "/signin", data={"csrf": csrf_of(page.text), "name": "tess", "password": PASSWORD}
    )
    assert right.status_code == 429


def test_each_account_has_a_rate_limit(world):
    client = client_for(world, requests_per_minute=60, request_burst=3)
    codes = [
        client.get("/api/indicators", headers=bearer(world.tokens["amira"])).status_code
        for _ in range(5)
    ]
    assert codes[:3] == [200, 200, 200] and codes[-1] == 429
    other = client.get("/api/indicators", headers=bearer(world.tokens["sam"]))
    assert other.status_code == 200  # per account, not for everyone


def test_errors_reveal_nothing_internal(world, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError(f"secret detail in {world.warehouse}")

    monkeypatch.setattr(service_module.Service, "served", explode)  # the API and the pages
    client = TestClient(
        create_app(world.warehouse), base_url="http://127.0.0.1", raise_server_exceptions=False
    )
    answer = client.post(
        "/api/query", json={"indicator": "registered_cases"}, headers=bearer(world.tokens["amira"])
    )
    assert answer.status_code == 500
    assert "secret" not in answer.text and "Traceback" not in answer.text
    assert str(world.warehouse) not in answer.text


def test_the_request_log_names_who_and_what_but_no_values(world, caplog):
    client = client_for(world)
    with caplog.at_level(logging.INFO, logger="casepool.serve"):
        answer = client.post(
            "/api/query?note=private",
            json={"indicator": "registered_cases", "by": ["sex"]},
            headers=bearer(world.tokens["amira"]),
        )
    assert answer.status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "casepool.serve"]
    assert any(line.startswith("amira POST /api/query 200") for line in lines), lines
    values = {str(r["value"]) for r in answer.json()["rows"] if r["value"] not in (None, 0)}
    logged = " ".join(lines)
    assert "private" not in logged
    assert not any(f" {v} " in f" {logged} " for v in values if len(v) > 1)


def figures(answer: dict) -> list[tuple]:
    return [(r.get("sex"), r["value"], r["margin"]) for r in answer["rows"]]


def test_ingest_from_the_command_line_works_while_the_service_answers(tmp_path, world):
    """The service holds no connection between requests: `casepool ingest` gets its turn, nothing
    is lost, and the answers that follow are computed from the new data (the cache sees it)."""
    client = client_for(
        world,
        requests_per_minute=60000,
        request_burst=10000,
        queries_per_minute=60000,
        query_burst=10000,
    )
    token = world.tokens["amira"]
    question = {"indicator": "registered_cases", "by": ["sex"]}
    package = make_package(tmp_path / "out", world.keys["ORG-02"], canonical_records(15, seed=9))
    before = table_counts(world.warehouse)["submissions"]
    first = client.post("/api/query", json=question, headers=bearer(token))
    assert first.status_code == 200, first.text
    statuses: list[int] = []
    stop = threading.Event()

    def ask() -> None:
        while not stop.is_set():
            answer = client.post("/api/query", json=question, headers=bearer(token))
            statuses.append(answer.status_code)

    worker = threading.Thread(target=ask)
    worker.start()
    try:
        done = subprocess.run(
            [CASEPOOL, "ingest", str(package), "-w", str(world.warehouse)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        stop.set()
        worker.join(timeout=60)
    assert done.returncode == 0, done.stderr
    assert table_counts(world.warehouse)["submissions"] == before + 1
    assert statuses and set(statuses) <= {200, 503}
    assert statuses.count(200) >= 1
    after = client.post("/api/query", json=question, headers=bearer(token))
    assert after.status_code == 200, after.text
    # The new cases changed their quarters' data: those were measured again, and the service now
    # answers from the new measurements, as `casepool query` does; not from its cache.
    library = query(world.warehouse, "registered_cases", by=("sex",)).to_dict()
    library = json.loads(json.dumps(library, default=str))
    assert figures(after.json()) == figures(library)
    assert figures(after.json()) != figures(first.json())


def test_sessions_of_strangers_cannot_grow_without_bound(monkeypatch):
    from casepool.serving import security

    monkeypatch.setattr(security, "MAX_SESSIONS", 50)
    sessions = security.Sessions()
    member = sessions.new()
    member.user = "amira"
    for _ in range(200):
        sessions.new()
    assert len(sessions._by_id) <= 50
    assert sessions.get(member.sid) is member  # a signed-in session outlives strangers'


def test_a_download_belongs_to_the_session_that_built_the_table(world):
    import re

    client = client_for(world)
    sign_in(client, "amira", world.tokens["amira"])
    page = client.get("/table")
    built = client.post(
        "/table",
        data={"csrf": csrf_of(page.text), "indicator": "registered_cases", "by": ["sex"]},
    )
    assert built.status_code == 200
    link = re.search(r'href="(/table/download/[^"]+\.csv)"', built.text)[1]
    csv = client.get(link)
    assert csv.status_code == 200 and "attachment" in csv.headers["content-disposition"]
    stranger = client_for(world)
    sign_in(stranger, "sam", world.tokens["sam"])
    assert stranger.get(link).status_code == 404
    assert client_for(world).get(link, follow_redirects=False).status_code == 303
