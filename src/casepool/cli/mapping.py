"""`casepool mapping init`: draft an organisation's mapping file from one of its exports."""

from __future__ import annotations

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


@mapping_app.command("init")
def init(
    export: Annotated[
        Path, typer.Argument(help="An export of the organisation (CSV, XLSX or Parquet).")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write the draft mapping YAML.")
    ],
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
    """Draft a mapping by matching headers and values against the schema in all four languages.

    Review the draft: lines marked TODO could not be matched. Then use it with
    `casepool validate EXPORT --mapping FILE`.
    """
    from casepool.core.i18n import render
    from casepool.core.reading import read_export
    from casepool.core.writing import write_atomic
    from casepool.intake.mapping import draft_mapping

    if out.exists() and not force:
        fail("usage-error", lang, reason=f"{out} exists; use --force to overwrite it.")
    text, summary = run(
        lambda: draft_mapping(read_export(export, encoding=encoding, sheet=sheet)), lang, debug
    )
    run(lambda: write_atomic(out, lambda h: h.write(text)), lang, debug)
    if as_json:
        print_json(summary | {"path": str(out)})
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
    for column in summary["unmatched_columns"]:
        say(render("mapping-unmatched-column", lang.value, column=column))
    for field, count in summary["unmatched_values"].items():
        say(render("mapping-unmatched-value", lang.value, field=field, count=count))


def register(app: typer.Typer) -> None:
    app.add_typer(mapping_app, name="mapping")
