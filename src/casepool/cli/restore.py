"""`casepool restore`: put a verified backup in place of the warehouse."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from casepool.cli.common import DebugOption, JsonOption, Lang, LangOption, print_json, run, say
from casepool.cli.org import WarehouseOption


def restore(
    backup: Annotated[Path, typer.Argument(help="A file written by `casepool backup`.")],
    warehouse: WarehouseOption,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing warehouse (it is lost).")
    ] = False,
    wait: Annotated[
        float,
        typer.Option("--wait", help="Seconds to wait while another command holds the warehouse."),
    ] = 30.0,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Restore the warehouse from a backup, checking the backup before and the result after.

    Refuses to replace an existing warehouse without --force. A stale write-ahead log
    (warehouse.duckdb.wal) of the replaced warehouse is removed, since it would damage the
    restored file.

    Example: casepool restore backups/warehouse-2025-10-03.duckdb -w warehouse.duckdb --force
    """
    from casepool.warehouse.backup import restore_warehouse

    result = run(lambda: restore_warehouse(backup, warehouse, force=force, wait=wait), lang, debug)
    if as_json:
        print_json(result.to_dict())
    else:
        from casepool.cli.text.warehouse import render_restore  # here: --help stays fast

        say(render_restore(result, lang.value))


def register(app: typer.Typer) -> None:
    app.command("restore")(restore)
