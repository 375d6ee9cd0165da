"""`casepool status`: organisations, periods, active and superseded submissions in the warehouse."""

from __future__ import annotations

import typer

from casepool.cli.common import DebugOption, JsonOption, Lang, LangOption, print_json, run
from casepool.cli.org import WarehouseOption


def status(
    warehouse: WarehouseOption,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Show registered organisations and every submission: period, state, records, arrival.

    Example: casepool status --warehouse warehouse.duckdb
    """
    from casepool.warehouse.status import warehouse_status

    result = run(lambda: warehouse_status(warehouse), lang, debug)
    if as_json:
        print_json(result.to_dict())
    else:
        from casepool.cli.text.warehouse import render_status  # here: --help stays fast

        typer.echo(render_status(result, lang.value))


def register(app: typer.Typer) -> None:
    app.command("status")(status)
