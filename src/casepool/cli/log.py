"""`casepool log`: read the warehouse's audit log, filtered by organisation, action and date."""

from __future__ import annotations

from typing import Annotated

import typer

from casepool.cli.common import DebugOption, JsonOption, Lang, LangOption, print_json, run
from casepool.cli.org import WarehouseOption


def log(
    warehouse: WarehouseOption,
    org: Annotated[str | None, typer.Option("--org", help="Only this organisation.")] = None,
    action: Annotated[
        list[str] | None,
        typer.Option(
            "--action",
            help="Only this action (repeatable): ingested, refused, superseded, reinstated, "
            "revoked, reactivated, already-ingested, org-added, org-key-replaced, backed-up, "
            "restored.",
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="From this day (YYYY-MM-DD, UTC), inclusive.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="To this day (YYYY-MM-DD, UTC), inclusive.")
    ] = None,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Show the audit log: who did what, when, to which organisation, period and submission.

    Example: casepool log -w warehouse.duckdb --org ORG-01 --action refused --since 2025-10-01
    """
    from casepool.warehouse.auditlog import read_audit_log

    result = run(
        lambda: read_audit_log(
            warehouse, org=org, actions=tuple(action or ()), since=since, until=until
        ),
        lang,
        debug,
    )
    if as_json:
        print_json(result.to_dict())
    else:
        from casepool.cli.text.warehouse import render_log  # here: --help stays fast

        typer.echo(render_log(result, lang.value))


def register(app: typer.Typer) -> None:
    app.command("log")(log)
