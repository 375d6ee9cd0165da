"""`casepool submissions list|revoke|reactivate`: the steward's decisions on submissions."""

from __future__ import annotations

from typing import Annotated

import typer

from casepool.cli.common import DebugOption, JsonOption, Lang, LangOption, print_json, run, say
from casepool.cli.org import WarehouseOption

submissions_app = typer.Typer(
    help="List submissions; revoke one from every count, or reactivate it (steward).",
    no_args_is_help=True,
)
IdArgument = Annotated[
    str, typer.Argument(help="The submission id, or its first 12 characters as `list` shows.")
]


@submissions_app.command("list")
def list_(
    warehouse: WarehouseOption,
    org: Annotated[str | None, typer.Option("--org", help="Only this organisation.")] = None,
    state: Annotated[
        str | None, typer.Option("--state", help="Only active, superseded or revoked.")
    ] = None,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """List every submission: id, organisation, period, state, records, signed and ingested times.

    Example: casepool submissions list -w warehouse.duckdb --state active
    """
    from casepool.core.i18n import render
    from casepool.warehouse.submissions import list_submissions

    rows = run(lambda: list_submissions(warehouse, org=org, state=state), lang, debug)
    if as_json:
        print_json([r.to_dict() for r in rows])
        return
    if not rows:
        say(render("submissions-none", lang.value))
        return
    typer.echo(render("submissions-columns", lang.value))
    for row in rows:
        typer.echo(row.line(lang.value))


@submissions_app.command("revoke")
def revoke(
    submission: IdArgument,
    reason: Annotated[
        str, typer.Option("--reason", help="Why (kept in the audit log); never a case's details.")
    ],
    warehouse: WarehouseOption,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Take a submission out of every count (its records are kept as history).

    When it was the active one, the newest other submission of that organisation and period (by
    signed time) becomes active. Recorded in the audit log and the release ledger.

    Example: casepool submissions revoke 3f2a9c1d0b7e --reason "sent in error" -w warehouse.duckdb
    """
    from casepool.warehouse.submissions import revoke_submission

    decision = run(lambda: revoke_submission(warehouse, submission, reason), lang, debug)
    if as_json:
        print_json(decision.to_dict())
    else:
        from casepool.cli.text.warehouse import render_decision  # here: --help stays fast

        say(render_decision(decision, lang.value))


@submissions_app.command("reactivate")
def reactivate(
    submission: IdArgument,
    warehouse: WarehouseOption,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (kept in the audit log).")
    ] = None,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Undo a revocation: the submission counts again if it is the newest by signed time.

    Example: casepool submissions reactivate 3f2a9c1d0b7e -w warehouse.duckdb
    """
    from casepool.warehouse.submissions import reactivate_submission

    decision = run(lambda: reactivate_submission(warehouse, submission, reason=reason), lang, debug)
    if as_json:
        print_json(decision.to_dict())
    else:
        from casepool.cli.text.warehouse import render_decision  # here: --help stays fast

        say(render_decision(decision, lang.value))


def register(app: typer.Typer) -> None:
    app.add_typer(submissions_app, name="submissions")
