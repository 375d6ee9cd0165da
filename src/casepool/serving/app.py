"""The ASGI app of `casepool serve`: a small routing table, error handlers that reveal nothing
internal, and the Guard middleware around everything (body limits, headers, request log)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from casepool.core.errors import CasepoolError, PackageError, UsageError
from casepool.core.i18n import render
from casepool.serving import answering, api, pages
from casepool.serving.access import Warehouse, WarehouseBusy
from casepool.serving.errors import Refused
from casepool.serving.render import HERE, render_page
from casepool.serving.security import Guard, TooLarge
from casepool.serving.service import Limits, Service

PACKAGE_PATHS = ("/upload", "/api/packages")
log = logging.getLogger("casepool.serve")


def _lang(request: Request) -> str:
    session = request.app.state.service.sessions.get(request.cookies.get(pages.SESSION_COOKIE))
    return session.lang if session else pages._lang(request)


def _refusal(request: Request, status: int, key: str, extra: str | None = None) -> Response:
    lang = _lang(request)
    if request.url.path.startswith("/api/"):
        body: dict[str, Any] = {
            "error": key.removeprefix("serve-"),
            "message": extra or render(key, lang),
        }
        headers = {"www-authenticate": "Bearer"} if status == 401 else {}
        if status == 503:
            headers["retry-after"] = "5"
        return JSONResponse(body, status_code=status, headers=headers)
    if status == 303:
        return RedirectResponse("/signin", status_code=303)
    html = render_page("error.html", lang, account=None, csrf="", key=key, message=extra)
    headers = {"retry-after": "5"} if status == 503 else {}
    return HTMLResponse(html, status_code=status, headers=headers)


async def on_refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    return _refusal(request, exc.status, exc.key)


async def on_usage(request: Request, exc: Exception) -> Response:
    # Only refusals of what the user asked (an unknown indicator, a dimension not allowed) are
    # shown; a warehouse or package problem is told without paths or internals.
    assert isinstance(exc, CasepoolError)
    lang = _lang(request)
    if isinstance(exc, UsageError):
        return _refusal(request, 400, exc.key, exc.message(lang))
    if isinstance(exc, PackageError):  # about the uploader's own package: its name and org only
        return _refusal(request, 422, exc.key, exc.message(lang))
    log.warning("refused: %s", exc.key)
    return _refusal(request, 500, "serve-internal")


async def on_busy(request: Request, exc: Exception) -> Response:
    return _refusal(request, 503, "serve-busy")


async def on_large(request: Request, exc: Exception) -> Response:
    return _refusal(request, 413, "serve-too-large")


async def on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    key = {404: "serve-not-found", 405: "serve-bad-request"}.get(
        exc.status_code, "serve-bad-request"
    )
    return _refusal(request, exc.status_code if exc.status_code < 500 else 500, key)


async def on_error(request: Request, exc: Exception) -> Response:
    log.error("internal error: %s", type(exc).__name__)  # the type only: text may hold values
    return _refusal(request, 500, "serve-internal")


def routes() -> list[Any]:
    return [
        Route("/", pages.home),
        Route("/signin", pages.sign_in_form, methods=["GET"]),
        Route("/signin", pages.sign_in, methods=["POST"]),
        Route("/signin/first", pages.first_sign_in, methods=["POST"]),
        Route("/signout", pages.sign_out, methods=["POST"]),
        Route("/table", pages.table_form, methods=["GET"]),
        Route("/table", pages.table_build, methods=["POST"]),
        Route("/table/download/{rid:str}.{fmt:str}", pages.table_download, methods=["GET"]),
        Route("/catalogue", pages.catalogue_page, methods=["GET"]),
        Route("/upload", pages.upload_form, methods=["GET"]),
        Route("/upload", pages.upload, methods=["POST"]),
        Route("/steward/submissions", pages.submissions_page, methods=["GET"]),
        Route("/steward/ledger", pages.ledger_page, methods=["GET"]),
        Route("/steward/accounts", pages.accounts_page, methods=["GET"]),
        Route("/steward/accounts/revoke", pages.revoke, methods=["POST"]),
        Route("/api/indicators", api.indicators, methods=["GET"]),
        Route("/api/query", api.query, methods=["POST"]),
        Route("/api/packages", api.packages, methods=["POST"]),
        # Only the files of serving/static; StaticFiles refuses any path that leaves that folder.
        Mount(
            "/static", StaticFiles(directory=HERE / "static", follow_symlink=False), name="static"
        ),
    ]


def lifespan(service: Service) -> Any:
    """One writer for the ledger entries and audit lines of answers: it writes what is queued
    when a batch is due (`LedgerQueue.due`), and everything left at shutdown."""

    @contextlib.asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[None]:
        queue = service.ledger

        async def writer() -> None:
            while True:
                await asyncio.sleep(answering.WRITER_TURN_SECONDS)
                if not queue.due():
                    continue
                try:
                    await run_in_threadpool(queue.flush)
                except Exception as exc:  # kept queued; tried again at the next turn
                    log.error("ledger batch not written: %s", type(exc).__name__)
                    await asyncio.sleep(answering.FLUSH_SECONDS)

        task = asyncio.create_task(writer())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await run_in_threadpool(queue.close)

    return run


def create_app(
    warehouse: str | Path,
    *,
    limits: Limits | None = None,
    secure_cookies: bool = False,
    wait: float = 5.0,
) -> Guard:
    """The service for one warehouse (it is opened per request, never held)."""
    limits = limits or Limits()
    service = Service(Warehouse(warehouse, wait=wait), limits, secure_cookies)
    app = Starlette(
        debug=False,
        routes=routes(),
        lifespan=lifespan(service),
        exception_handlers={
            Refused: on_refused,
            CasepoolError: on_usage,
            WarehouseBusy: on_busy,
            TooLarge: on_large,
            HTTPException: on_http,
            Exception: on_error,
        },
    )
    app.state.service = service
    return Guard(
        app,
        max_body=limits.max_body,
        max_package=limits.max_package,
        package_paths=PACKAGE_PATHS,
        secure_cookies=secure_cookies,
    )
