"""`casepool mapping init`: draft an organisation's mapping file from one of its exports."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from casepool.cli.common import (
    DebugOption,
    JsonOption,
    Lang,
    LangOption,
    fail,
    print_json,
    run,
    say,
)

mapping_app = typer.Typer(
    help="Mapping files: how an organisation's export columns and values map to the case record.",
    no_args_is_help=True,
)


class Preset(StrEnum):
    kobo = "kobo"
    primero = "primero"


@mapping_app.command("init")
def init(
    export: Annotated[
        Path, typer.Argument(help="An export of the organisation (CSV, XLSX or Parquet).")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Where to write the draft mapping YAML; a workbook with drop-down lists is "
            "written beside it (same name, .xlsx). Either can be given to --mapping.",
        ),
    ],
    preset: Annotated[
        Preset | None,
        typer.Option("--preset", help="Start from a preset: kobo (XLSForm export) or primero."),
    ] = None,
    encoding: Annotated[
        str | None, typer.Option("--encoding", help="Encoding of a CSV file.")
    ] = None,
    sheet: Annotated[str | None, typer.Option("--sheet", help="XLSX sheet name.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing mapping file.")
    ] = False,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Draft a mapping by matching headers and words against the schema in all four languages.

    Multi-select cells are split into words, each listed once with how many cells hold it.
    Values that look personal (phones, e-mail, long numbers, names) are never copied. Replace
    every TODO, then use it with `casepool validate EXPORT --mapping FILE`.
    """
    from casepool.core.i18n import render
    from casepool.core.writing import write_atomic
    from casepool.intake.mapping_draft import draft_export

    workbook = out.with_suffix(".xlsx")
    if (out.exists() or workbook.exists()) and not force:
        fail("usage-error", lang, reason=f"{out} exists; use --force to overwrite it.")
    text, summary, write_workbook = run(
        lambda: draft_export(
            export,
            encoding=encoding,
            sheet=sheet,
            preset=preset.value if preset else None,
        ),
        lang,
        debug,
    )
    run(lambda: write_atomic(out, lambda h: h.write(text)), lang, debug)
    run(lambda: write_workbook(workbook, lang.value), lang, debug)
    if as_json:
        print_json(summary | {"path": str(out), "workbook": str(workbook)})
        return
    say(
        render(
            "mapping-drafted",
            lang.value,
            path=str(out),
            fields=summary["fields"],
            unmatched_columns=len(summary["unmatched_columns"]),
            unmatched_values=sum(summary["unmatched_values"].values()),
        )
    )
    say(render("mapping-workbook-drafted", lang.value, path=str(workbook)))
    for column in summary["personal_columns"]:
        say(render("mapping-personal-column", lang.value, column=column))
    for column, fields in summary["asked_columns"].items():
        say(render("mapping-asked-column", lang.value, column=column, fields=" / ".join(fields)))
    for column in summary["unmatched_columns"]:
        if column not in summary["personal_columns"] and column not in summary["asked_columns"]:
            say(render("mapping-unmatched-column", lang.value, column=column))
    for field, count in summary["unmatched_values"].items():
        say(render("mapping-unmatched-value", lang.value, field=field, count=count))
    for field, count in summary["personal_values"].items():
        say(render("mapping-personal-values", lang.value, field=field, count=count))


def register(app: typer.Typer) -> None:
    app.add_typer(mapping_app, name="mapping")
