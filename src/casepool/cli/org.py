"""`casepool org add|list`: the steward's registry of organisations and their public keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from casepool.cli.common import DebugOption, JsonOption, Lang, LangOption, print_json, run, say

WarehouseOption = Annotated[
    Path, typer.Option("--warehouse", "-w", help="The warehouse DuckDB file.")
]
org_app = typer.Typer(
    help="Register organisations and their public keys (steward).", no_args_is_help=True
)


@org_app.command("add")
def add(
    code: Annotated[str, typer.Argument(help="The organisation's code, e.g. ORG-01.")],
    name: Annotated[str, typer.Option("--name", help="The organisation's name.")],
    public_key: Annotated[
        Path, typer.Option("--public-key", help="The .pub file the organisation gave you.")
    ],
    warehouse: WarehouseOption,
    replace: Annotated[
        bool, typer.Option("--replace", help="Give a registered organisation a new key.")
    ] = False,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Register an organisation so that its signed packages can be ingested.

    Example: casepool org add ORG-01 --name "Example CSO" --public-key ORG-01.pub -w w.duckdb
    """
    from casepool.core.i18n import render
    from casepool.warehouse.organisations import add_organisation

    org = run(
        lambda: add_organisation(warehouse, code, name, public_key, replace=replace), lang, debug
    )
    if as_json:
        print_json(org.to_dict())
    else:
        say(render("org-added", lang.value, org=org.org, name=org.name, key_id=org.key_id))
    if org.shares_key_with:
        say(
            render(
                "org-key-shared",
                lang.value,
                org=org.org,
                others=", ".join(org.shares_key_with),
                key_id=org.key_id,
            )
        )


@org_app.command("list")
def list_(
    warehouse: WarehouseOption,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """List registered organisations with their public key fingerprints."""
    from casepool.core.i18n import render
    from casepool.warehouse.organisations import list_organisations

    orgs = run(lambda: list_organisations(warehouse), lang, debug)
    if as_json:
        print_json([o.to_dict() for o in orgs])
    elif not orgs:
        say(render("org-list-empty", lang.value))
    for o in [] if as_json else orgs:
        typer.echo(f"{o.org}\t{o.name}\t{o.key_id}\t{o.added_at:%Y-%m-%d}")


def register(app: typer.Typer) -> None:
    app.add_typer(org_app, name="org")
