"""`casepool releases`: the release ledger, every figure that left the warehouse and what from."""

from __future__ import annotations

from typing import Annotated

import typer

from casepool.cli.common import DebugOption, JsonOption, Lang, LangOption, print_json, run
from casepool.cli.org import WarehouseOption


def releases(
    warehouse: WarehouseOption,
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="Only releases of this kind (publication, query, report, …)."),
    ] = None,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """List the release ledger: when, what kind, by whom, which periods, how many cells, the
    share suppressed and the submissions each release was made from.

    Example: casepool releases --warehouse warehouse.duckdb --json
    """
    from casepool.warehouse.ledger import read_ledger

    result = run(lambda: read_ledger(warehouse, kind), lang, debug)
    if as_json:
        print_json(result.to_dict())
    else:
        from casepool.cli.text.publishing import render_releases  # here: --help stays fast

        typer.echo(render_releases(result, lang.value))


def register(app: typer.Typer) -> None:
    app.command("releases")(releases)
