"""The JSON API: `GET /api/indicators`, `POST /api/query`, `POST /api/packages` (bearer tokens)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from casepool.core.errors import UsageError
from casepool.publishing.query import list_indicators
from casepool.serving.accounts import Account
from casepool.serving.errors import Refused
from casepool.serving.service import Service

LANGS = ("en", "ar", "ckb", "kmr")


def service_of(request: Request) -> Service:
    return request.app.state.service


def bearer(request: Request, *roles: str) -> Account:
    """The account of the request's bearer token, within its rate limit and role; else refused."""
    service = service_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    account = (
        service.account_for_token(token.strip()) if scheme.lower() == "bearer" and token else None
    )
    if account is None:
        raise Refused(401, "serve-unauthorised")
    request.state.user = account.name
    if not service.requests.allow(account.name):
        raise Refused(429, "serve-rate-limited")
    if roles and account.role not in roles:
        raise Refused(403, "serve-forbidden")
    return account


def lang_of(request: Request) -> str:
    lang = request.query_params.get("lang", "en")
    return lang if lang in LANGS else "en"


def indicators(request: Request) -> JSONResponse:
    bearer(request)
    return JSONResponse(list_indicators(lang_of(request)))


def parse_query(body: Any) -> tuple[str, list[str], list[tuple[str, list[str]]]]:
    """`{"indicator": str, "by": [str], "where": {dim: code | [codes]}}`, strictly typed."""
    if not isinstance(body, dict) or set(body) - {"indicator", "by", "where"}:
        raise UsageError("serve-query-invalid")
    indicator, by, where = body.get("indicator"), body.get("by", []), body.get("where", {})
    if isinstance(by, str):
        by = [by]
    if (
        not isinstance(indicator, str)
        or not isinstance(by, list)
        or not all(isinstance(d, str) for d in by)
        or not isinstance(where, dict)
    ):
        raise UsageError("serve-query-invalid")
    filters: list[tuple[str, list[str]]] = []
    for dim, codes in where.items():
        codes = [codes] if isinstance(codes, str) else codes
        if not isinstance(codes, list) or not codes or not all(isinstance(c, str) for c in codes):
            raise UsageError("serve-query-invalid")
        filters.append((str(dim), codes))
    return indicator, by, filters


async def query(request: Request) -> Response:
    account = bearer(request)
    service = service_of(request)
    if not service.queries.allow(account.name):
        raise Refused(429, "serve-rate-limited")
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise UsageError("serve-query-invalid") from None
    indicator, by, where = parse_query(body)
    from starlette.concurrency import run_in_threadpool

    body = await run_in_threadpool(service.answer_body, account, indicator, by, where)
    return Response(body, media_type="application/json")


async def packages(request: Request) -> JSONResponse:
    """An organisation's signed package as the raw body (`Content-Type: application/zip`)."""
    account = bearer(request, "org")
    service = service_of(request)
    name = Path(request.query_params.get("name", "")).name
    from starlette.concurrency import run_in_threadpool

    with tempfile.TemporaryDirectory(prefix="casepool-body-") as folder:
        path = Path(folder) / "body"
        with path.open("wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
        report = await run_in_threadpool(service.upload, account, path, name)
    return JSONResponse(
        report.to_dict() | {"warehouse": None}, status_code=200 if report.ok else 422
    )
