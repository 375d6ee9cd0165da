"""`casepool serve`: the analysts' web service (table builder and JSON API) over one warehouse."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from casepool.cli.common import DebugOption, Lang, LangOption, fail, say


def serve(
    warehouse: Annotated[
        Path, typer.Option("--warehouse", "-w", help="The warehouse DuckDB file.")
    ],
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; keep 127.0.0.1 behind a proxy.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    secure_cookies: Annotated[
        bool,
        typer.Option(
            "--secure-cookies", help="Mark cookies Secure (set when a TLS proxy is in front)."
        ),
    ] = False,
    proxy: Annotated[
        str,
        typer.Option(
            "--proxy", help="Address of the TLS reverse proxy whose X-Forwarded-* to trust."
        ),
    ] = "127.0.0.1",
    requests_per_minute: Annotated[
        int, typer.Option("--requests-per-minute", help="Requests per account per minute.")
    ] = 600,
    queries_per_minute: Annotated[
        int, typer.Option("--queries-per-minute", help="Table queries per account per minute.")
    ] = 60,
    lang: LangOption = Lang.en,
    debug: DebugOption = False,
) -> None:
    """Serve the table builder, the JSON API and the steward's pages over a warehouse.

    The warehouse is opened for each request and closed after it, so `casepool ingest` and
    `casepool user` work while the service runs. Example: casepool serve -w warehouse.duckdb
    """
    import copy

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from casepool.core.i18n import render
    from casepool.serving.app import create_app
    from casepool.serving.service import Limits

    if not warehouse.is_file():
        fail("warehouse-missing", lang, path=str(warehouse))
    limits = Limits(requests_per_minute=requests_per_minute, queries_per_minute=queries_per_minute)
    app = create_app(warehouse, limits=limits, secure_cookies=secure_cookies)
    if host not in {"127.0.0.1", "localhost", "::1"}:
        say(render("serve-public-host", lang.value, host=host))
    say(render("serve-listening", lang.value, url=f"http://{host}:{port}/"))
    # uvicorn configures logging itself: the request log joins its configuration, with the time.
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["formatters"]["requests"] = {"format": "%(asctime)s %(message)s"}
    log_config["handlers"]["requests"] = {
        "formatter": "requests",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    log_config["loggers"]["casepool.serve"] = {
        "handlers": ["requests"],
        "level": "INFO",
        "propagate": False,
    }
    uvicorn.run(
        app,
        log_config=log_config,
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=proxy,
        server_header=False,
        access_log=False,  # the service logs each request itself, without query strings
        log_level="debug" if debug else "info",
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
