"""`casepool backup`: a checkpointed, verified copy of the warehouse, write-ahead log included."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from casepool.cli.common import DebugOption, JsonOption, Lang, LangOption, print_json, run, say
from casepool.cli.org import WarehouseOption


def backup(
    warehouse: WarehouseOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="The backup file to write.")],
    wait: Annotated[
        float,
        typer.Option("--wait", help="Seconds to wait while another command holds the warehouse."),
    ] = 30.0,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Copy the warehouse to a backup file that holds every committed package, and verify it.

    The write-ahead log (warehouse.duckdb.wal) is checkpointed into the copy; the copy is opened
    and compared table by table before it replaces an older backup of the same name. Safe while
    no other command writes (it waits for them).

    Example: casepool backup -w warehouse.duckdb --out backups/warehouse-2025-10-03.duckdb
    """
    from casepool.warehouse.backup import backup_warehouse

    result = run(lambda: backup_warehouse(warehouse, out, wait=wait), lang, debug)
    if as_json:
        print_json(result.to_dict())
    else:
        from casepool.cli.text.warehouse import render_backup  # here: --help stays fast

        say(render_backup(result, lang.value))


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
