"""Server-rendered pages: sign in, the table builder, the catalogue, uploads and the steward's pages."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from casepool.catalogue.indicators import load_indicators
from casepool.core.errors import CasepoolError, UsageError
from casepool.publishing.query import QueryResult, format_text, write_query
from casepool.reporting.map import result_map
from casepool.serving import accounts
from casepool.serving.errors import Refused
from casepool.serving.render import render_page, result_view
from casepool.serving.security import SESSION_COOKIE, Session
from casepool.serving.service import MAX_DIMENSIONS, Service
from casepool.warehouse.ledger import list_releases
from casepool.warehouse.status import warehouse_status

LANGS = ("en", "ar", "ckb", "kmr")
MAX_FILTERS = 2


class Fields:
    """A submitted form's text fields."""

    def __init__(self, lists: dict[str, list[str]]) -> None:
        self._lists = lists

    def get(self, name: str, default: str = "") -> str:
        values = self._lists.get(name)
        return values[0] if values else default

    def getlist(self, name: str) -> list[str]:
        return list(self._lists.get(name, []))


def service_of(request: Request) -> Service:
    return request.app.state.service


def session_of(request: Request) -> Session | None:
    session = service_of(request).sessions.get(request.cookies.get(SESSION_COOKIE))
    lang = request.query_params.get("lang")
    if session is not None and lang in LANGS:
        session.lang = lang
    return session


def set_cookie(request: Request, response: Response, session: Session) -> Response:
    service = service_of(request)
    response.set_cookie(
        SESSION_COOKIE,
        session.sid,
        httponly=True,
        samesite="strict",
        secure=service.secure_cookies or request.url.scheme == "https",
        path="/",
    )
    return response


def signed_in(request: Request, *roles: str) -> tuple[Session, accounts.Account]:
    """The session and its (still active) account, within its rate limit and role."""
    service = service_of(request)
    session = session_of(request)
    if session is None or session.user is None:
        raise Refused(303, "serve-sign-in-first")
    account = service.account_named(session.user)
    if account is None:  # revoked since sign-in
        service.sessions.end(session.sid)
        raise Refused(303, "serve-sign-in-first")
    request.state.user = account.name
    if not service.requests.allow(account.name):
        raise Refused(429, "serve-rate-limited")
    if roles and account.role not in roles:
        raise Refused(403, "serve-forbidden")
    return session, account


async def checked_form(request: Request, session: Session) -> Any:
    """The form's fields (no files) once its CSRF token matches the session's."""
    async with request.form(max_files=0, max_fields=50) as form:
        fields = {"csrf": form.get("csrf")}
        lists = {k: [str(v) for v in form.getlist(k)] for k in form}
    if not session.csrf_ok(fields["csrf"]):
        raise Refused(403, "serve-csrf")
    return Fields(lists)


def page(request: Request, session: Session | None, template: str, **values: Any) -> HTMLResponse:
    lang = session.lang if session else _lang(request)
    account = None
    if session is not None and session.user:
        account = {"name": session.user, "role": session.role, "org": session.org}
    html = render_page(
        template, lang, account=account, csrf=session.csrf if session else "", **values
    )
    status = int(values.get("status", 200))
    return HTMLResponse(html, status_code=status)


def _lang(request: Request) -> str:
    lang = request.query_params.get("lang", "en")
    return lang if lang in LANGS else "en"


# --- signing in ------------------------------------------------------------------------------------


def home(request: Request) -> Response:
    return RedirectResponse("/table", status_code=303)


def sign_in_form(request: Request) -> Response:
    session = session_of(request) or service_of(request).sessions.new(_lang(request))
    return set_cookie(request, page(request, session, "signin.html"), session)


async def sign_in(request: Request) -> Response:
    return await _sign_in(request, first=False)


async def first_sign_in(request: Request) -> Response:
    return await _sign_in(request, first=True)


async def _sign_in(request: Request, *, first: bool) -> Response:
    service = service_of(request)
    session = session_of(request)
    if session is None:
        return RedirectResponse("/signin", status_code=303)
    form = await checked_form(request, session)
    name = str(form.get("name", ""))[:40]
    client = request.client.host if request.client else "-"
    if service.sign_ins.blocked(f"name:{name}", f"ip:{client}"):
        return page(request, session, "signin.html", error="serve-signin-throttled", status=429)

    def check() -> accounts.Account | None:
        with service.warehouse.read() as con:
            if first:
                return accounts.check_first_sign_in(con, name, str(form.get("token", "")))
            return accounts.check_password(con, name, str(form.get("password", "")))

    account = await run_in_threadpool(check)
    if account is None:
        service.sign_ins.failed(f"name:{name}", f"ip:{client}")
        await run_in_threadpool(
            service.audit, "sign-in-failed", actor=name if accounts.NAME.fullmatch(name) else "?"
        )
        return page(request, session, "signin.html", error="serve-signin-failed", status=401)
    if first:
        password = str(form.get("new_password", ""))
        if not accounts.MIN_PASSWORD <= len(password) <= accounts.MAX_PASSWORD:
            return page(request, session, "signin.html", error="serve-password-short", status=400)

        def store() -> None:
            with service.warehouse.write() as con:
                accounts.set_password(con, account.name, password, actor=f"serve:{account.name}")

        await run_in_threadpool(store)
    await run_in_threadpool(service.audit, "sign-in", actor=account.name)
    # A new session id at sign-in: a session fixed before it is worth nothing after.
    service.sessions.end(session.sid)
    fresh = service.sessions.new(session.lang)
    fresh.user, fresh.role, fresh.org = account.name, account.role, account.org
    request.state.user = account.name
    target = "/upload" if account.role == "org" else "/table"
    return set_cookie(request, RedirectResponse(target, status_code=303), fresh)


async def sign_out(request: Request) -> Response:
    session = session_of(request)
    if session is not None:
        await checked_form(request, session)
        service_of(request).sessions.end(session.sid)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- the table builder -----------------------------------------------------------------------------


def builder_choices(indicator: str | None, lang: str) -> dict[str, Any]:
    catalogue = load_indicators()
    chosen = catalogue.indicators.get(indicator or "") or next(iter(catalogue.indicators.values()))
    dims = [d for d in chosen.dimensions if d != "period"]
    return {
        "indicators": [(i.name, i.label(lang)) for i in catalogue.indicators.values()],
        "chosen": chosen.name,
        "dimensions": [(d, catalogue.dimension(d).label(lang)) for d in dims],
        "filters": [
            (
                catalogue.dimension(d).label(lang),
                [(f"{d}={c.code}", c.label(lang)) for c in catalogue.dimension(d).codes],
            )
            for d in dims
            if catalogue.dimension(d).codes
        ],
        "slots": range(MAX_DIMENSIONS),
        "filter_slots": range(MAX_FILTERS),
    }


def table_form(request: Request) -> Response:
    session, _ = signed_in(request, "analyst", "steward")
    service = service_of(request)
    choices = builder_choices(request.query_params.get("indicator"), session.lang)
    return page(request, session, "table.html", periods=service.periods(), **choices, picked={})


async def table_build(request: Request) -> Response:
    session, account = signed_in(request, "analyst", "steward")
    service = service_of(request)
    form = await checked_form(request, session)
    indicator = str(form.get("indicator", ""))
    by = [str(d) for d in form.getlist("by") if d]
    where: list[tuple[str, list[str]]] = []
    period = str(form.get("period", ""))
    if period:
        where.append(("period", [period]))
    for text in form.getlist("filter"):
        dim, _, code = str(text).partition("=")
        if dim and code:
            where.append((dim, [code]))
    choices = builder_choices(indicator, session.lang)
    picked = {"by": by, "period": period, "filter": [str(f) for f in form.getlist("filter")]}
    periods = await run_in_threadpool(service.periods)
    if not service.queries.allow(account.name):
        raise Refused(429, "serve-rate-limited")
    try:
        result = await run_in_threadpool(service.answer, account, indicator, by, where)
    except UsageError as refusal:
        return page(
            request,
            session,
            "table.html",
            periods=periods,
            picked=picked,
            refusal=refusal.message(session.lang),
            status=400,
            **choices,
        )
    rid = session.keep_result(result)
    return page(
        request,
        session,
        "table.html",
        periods=periods,
        picked=picked,
        result=result_view(result, session.lang),
        result_map=Markup(result_map(result, session.lang)),  # inline SVG built from escaped text
        rid=rid,
        **choices,
    )


def table_download(request: Request) -> Response:
    session, _ = signed_in(request, "analyst", "steward")
    rid, fmt = request.path_params["rid"], request.path_params["fmt"]
    result: QueryResult | None = session.results.get(rid)
    if result is None or fmt not in {"csv", "xlsx"}:
        raise Refused(404, "serve-not-found")
    name = f"{result.table.indicator.name}.{fmt}"
    service_of(request).audit_later(
        "download",
        actor=session.user or "?",
        detail={"indicator": result.table.indicator.name, "format": fmt},
    )
    headers = {"content-disposition": f'attachment; filename="{name}"'}
    if fmt == "csv":
        text = format_text(result, "csv", session.lang)
        return Response("\ufeff" + text, media_type="text/csv; charset=utf-8", headers=headers)
    with tempfile.TemporaryDirectory(prefix="casepool-xlsx-") as folder:
        path = Path(folder) / name
        write_query(result, path, "xlsx", session.lang)
        body = path.read_bytes()
    return Response(
        body,
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers=headers,
    )


def catalogue_page(request: Request) -> Response:
    session, _ = signed_in(request)
    catalogue = load_indicators()
    lang = session.lang

    def formula(cond: Any) -> str | None:
        return None if cond is None else json.dumps(cond, ensure_ascii=False)

    items = [
        {
            "name": ind.name,
            "label": ind.label(lang),
            "unit": ind.unit,
            "description": ind.description,
            "numerator": formula(ind.numerator),
            "denominator": formula(ind.denominator),
            "scope": formula(ind.scope),
            "months": " → ".join(ind.months_between) if ind.months_between else None,
            "dimensions": [catalogue.dimension(d).label(lang) for d in ind.dimensions],
        }
        for ind in catalogue.indicators.values()
    ]
    return page(
        request,
        session,
        "catalogue.html",
        items=items,
        population=formula(catalogue.population),
    )


# --- organisations' uploads ------------------------------------------------------------------------


def upload_form(request: Request) -> Response:
    session, _ = signed_in(request, "org")
    return page(request, session, "upload.html")


async def upload(request: Request) -> Response:
    session, account = signed_in(request, "org")
    service = service_of(request)
    async with request.form(max_files=1, max_fields=5, max_part_size=64 * 1024) as form:
        if not session.csrf_ok(form.get("csrf")):
            raise Refused(403, "serve-csrf")
        upload = form.get("package")
        if not isinstance(upload, UploadFile):
            return page(request, session, "upload.html", error="serve-upload-missing", status=400)
        with tempfile.TemporaryDirectory(prefix="casepool-form-") as folder:
            path = Path(folder) / "body"
            with path.open("wb") as out:
                while chunk := await upload.read(1024 * 1024):
                    out.write(chunk)
            try:
                report = await run_in_threadpool(
                    service.upload, account, path, Path(upload.filename or "").name
                )
            except CasepoolError as refusal:
                return page(
                    request,
                    session,
                    "upload.html",
                    refusal=refusal.message(session.lang),
                    status=422,
                )
    lines = [p.message(session.lang) for p in report.packages]
    return page(request, session, "upload.html", outcome=lines, ok=report.ok)


# --- the steward's pages ---------------------------------------------------------------------------


def submissions_page(request: Request) -> Response:
    session, _ = signed_in(request, "steward")
    service = service_of(request)
    status = service.warehouse.shared(
        lambda: warehouse_status(service.warehouse.path, wait=service.warehouse.wait)
    )
    rows = [
        {**r, "ingested_at": r["ingested_at"].strftime("%Y-%m-%d %H:%M")}
        for r in status.submissions.drop("submission_id", "superseded_by").iter_rows(named=True)
    ]
    coverage: dict[str, set[str]] = {}
    for r in rows:
        if r["state"] == "active":
            coverage.setdefault(r["period"], set()).add(r["org"])
    return page(
        request,
        session,
        "submissions.html",
        organisations=status.organisations,
        submissions=rows,
        coverage=sorted((p, len(o)) for p, o in coverage.items()),
        total_orgs=len({o.org for o in status.organisations} | {r["org"] for r in rows}),
        active_cases=status.active_cases,
    )


def ledger_page(request: Request) -> Response:
    from casepool.publishing.dp_answers import budget_report

    session, _ = signed_in(request, "steward")
    service = service_of(request)
    with service.warehouse.read() as con:
        releases = list_releases(con)
    budget = service.warehouse.shared(lambda: budget_report(service.warehouse.path))
    return page(
        request,
        session,
        "ledger.html",
        releases=list(reversed(releases))[:500],
        budget=budget.periods,
    )


def accounts_page(request: Request) -> Response:
    session, _ = signed_in(request, "steward")
    service = service_of(request)
    listing = service.warehouse.shared(
        lambda: accounts.list_accounts(service.warehouse.path, wait=service.warehouse.wait)
    )
    return page(request, session, "accounts.html", accounts=listing)


async def revoke(request: Request) -> Response:
    session, account = signed_in(request, "steward")
    service = service_of(request)
    form = await checked_form(request, session)
    name = str(form.get("name", ""))[:40]
    if name == account.name:
        raise Refused(400, "serve-bad-request")

    def act() -> None:
        with service.warehouse.lock.writing():
            accounts.revoke_account(
                service.warehouse.path,
                name,
                actor=f"serve:{account.name}",
                wait=service.warehouse.wait,
            )

    await run_in_threadpool(act)
    service.forget(name)
    return RedirectResponse("/steward/accounts", status_code=303)
