"""`casepool validate`: check an export and report what to fix, in the user's language."""

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
    say,
)

ExportArgument = Annotated[
    Path,
    typer.Argument(help="The export to check: CSV/TXT (any common encoding), XLSX or Parquet."),
]
MappingOption = Annotated[
    Path | None,
    typer.Option(
        "--mapping",
        "-m",
        help="Mapping YAML for this organisation's export (see `casepool mapping init`).",
    ),
]
EncodingOption = Annotated[
    str | None,
    typer.Option("--encoding", help="Encoding of a CSV file, e.g. cp1256; detected when omitted."),
]
SheetOption = Annotated[
    str | None, typer.Option("--sheet", help="XLSX sheet name (default: the first sheet).")
]


def validate(
    export: ExportArgument,
    mapping: MappingOption = None,
    encoding: EncodingOption = None,
    sheet: SheetOption = None,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Also write every error to FILE (.csv, .xlsx or .json)."),
    ] = None,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Check an export against the case record and say what to fix.

    Exit code 0: every record is valid. 1: some records are invalid (the report says which
    rows and why). 2: the file could not be read.

    Example: casepool validate export.xlsx --mapping mapping.yaml --lang ar --report errors.xlsx
    """
    from casepool.cli.text.intake import render_report
    from casepool.intake.validating import validate_export
    from casepool.intake.validation_report import write_report

    with progress_stages(export) as notify:
        result = run(
            lambda: validate_export(
                export,
                mapping,
                encoding=encoding,
                sheet=sheet,
                progress=notify,
                keep_records=False,  # the report needs findings only: memory flat in rows
            ),
            lang,
            debug,
        )
    if report is not None:
        run(lambda: write_report(result, report, lang.value), lang, debug)
    if as_json:
        print_json(result.to_dict())
    else:
        typer.echo(render_report(result, lang.value))
        if report is not None:
            from casepool.core.i18n import render

            say(render("report-written", lang.value, path=str(report)))
    raise typer.Exit(EXIT_OK if result.valid else EXIT_REFUSED)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
