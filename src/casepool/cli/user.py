"""`casepool user add|list|revoke`: accounts of the web service (`casepool serve`)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from casepool.cli.common import DebugOption, JsonOption, Lang, LangOption, print_json, run, say

WarehouseOption = Annotated[
    Path, typer.Option("--warehouse", "-w", help="The warehouse DuckDB file.")
]
user_app = typer.Typer(
    help="Accounts of the web service: analysts, stewards and organisations' officers (steward).",
    no_args_is_help=True,
)


class Role(StrEnum):
    analyst = "analyst"
    steward = "steward"
    org = "org"


@user_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The account's name, e.g. amira.")],
    role: Annotated[Role, typer.Option("--role", help="analyst, steward or org.")],
    warehouse: WarehouseOption,
    org: Annotated[
        str | None, typer.Option("--org", help="For role org: the organisation, e.g. ORG-01.")
    ] = None,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Add an account and print its API token once; the person sets a password at first sign-in.

    Example: casepool user add amira --role analyst -w warehouse.duckdb
    """
    from casepool.core.i18n import render
    from casepool.serving.accounts import add_account
    from casepool.warehouse.store import current_actor

    made = run(
        lambda: add_account(warehouse, name, role.value, org=org, actor=current_actor()),
        lang,
        debug,
    )
    if as_json:
        print_json(made.to_dict())
        return
    say(render("serve-user-added", lang.value, user=made.account.name, role=made.account.role))
    typer.echo(made.token)


@user_app.command("list")
def list_(
    warehouse: WarehouseOption,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """List the accounts, revoked ones too (never a password or token)."""
    from casepool.core.i18n import render
    from casepool.serving.accounts import list_accounts

    listing = run(lambda: list_accounts(warehouse), lang, debug)
    if as_json:
        print_json([a.to_dict() for a in listing])
        return
    if not listing:
        say(render("serve-user-list-empty", lang.value))
    for a in listing:
        state = "revoked" if not a.active else "active" if a.password_set else "no-password-yet"
        typer.echo(f"{a.name}\t{a.role}\t{a.org or '-'}\t{a.created_at:%Y-%m-%d}\t{state}")


@user_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="The account to revoke.")],
    warehouse: WarehouseOption,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Revoke an account: its token, password and sessions stop working (within 5 seconds)."""
    from casepool.core.i18n import render
    from casepool.serving.accounts import revoke_account
    from casepool.warehouse.store import current_actor

    account = run(lambda: revoke_account(warehouse, name, actor=current_actor()), lang, debug)
    if as_json:
        print_json(account.to_dict())
    else:
        say(render("serve-user-revoked", lang.value, user=account.name))


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")
