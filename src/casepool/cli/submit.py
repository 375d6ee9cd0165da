"""`casepool submit`: validate, de-identify and sign an export into one package for the steward."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from casepool.cli.common import (
    EXIT_OK,
    EXIT_REFUSED,
    DebugOption,
    JsonOption,
    Lang,
    LangOption,
    print_json,
    progress_stages,
    run,
)
from casepool.cli.validate import EncodingOption, ExportArgument, MappingOption, SheetOption


def submit(
    export: ExportArgument,
    org: Annotated[str, typer.Option("--org", help="Your organisation's code, e.g. ORG-01.")],
    period: Annotated[
        str, typer.Option("--period", help="Reporting period: 2025, 2025-Q3 or 2025-07.")
    ],
    key: Annotated[Path, typer.Option("--key", help="Folder holding the keys from keygen.")],
    out: Annotated[Path, typer.Option("--out", help="Outbox folder for the package.")],
    mapping: MappingOption = None,
    encoding: EncodingOption = None,
    sheet: SheetOption = None,
    drop_invalid: Annotated[
        bool, typer.Option("--drop-invalid", help="Leave invalid records out (counted).")
    ] = False,
    min_k: Annotated[
        int | None,
        typer.Option(
            "--min-k",
            min=2,
            help="Blank the fewest quasi-identifier values until every record has K-1 "
            "look-alikes (default: the package profile's k, 3).",
        ),
    ] = None,
    aggregate: Annotated[
        bool,
        typer.Option(
            "--aggregate",
            help="Send only the counts the catalogue needs, no records (for protocols that "
            "forbid record-level sharing; see the data officer's guide).",
        ),
    ] = False,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """De-identify an export and write one signed package for an organisation and period.

    Runs exactly the checks of `validate`; keeps only the fields the package profile keeps, at its
    precision; replaces case numbers with keyed pseudonyms, ages with age bands, the registration
    date with its quarter; blanks quasi-identifier values until every record has k-1 look-alikes;
    refuses personal data in coded fields. Exit code 0: package written. 1: refused (the output says why). 2: could not run.

    Example: casepool submit export.xlsx --org ORG-01 --period 2025-Q3 --key keys/ --out outbox/
    """
    from casepool.cli.keygen import passphrase_for
    from casepool.cli.text.intake import render_submission
    from casepool.exchange.keys import keys_protected
    from casepool.intake.submit import submit_export

    protected = run(lambda: keys_protected(key, org), lang, debug)
    passphrase = passphrase_for(lang, confirm=False, keys=(key, org)) if protected else None
    with progress_stages(export) as notify:
        outcome = run(
            lambda: submit_export(
                export,
                org=org,
                period=period,
                key_dir=key,
                passphrase=passphrase,
                outbox=out,
                mapping=mapping,
                encoding=encoding,
                sheet=sheet,
                drop_invalid=drop_invalid,
                min_k=min_k,
                progress=notify,
                aggregate=aggregate,
            ),
            lang,
            debug,
        )
    if as_json:
        print_json(outcome.to_dict())
    else:
        typer.echo(render_submission(outcome, lang.value))
        if outcome.accepted and aggregate:
            from casepool.core.i18n import render

            typer.echo(render("submit-aggregate-written", lang.value, rows=outcome.counts))
    raise typer.Exit(EXIT_OK if outcome.accepted else EXIT_REFUSED)


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)
