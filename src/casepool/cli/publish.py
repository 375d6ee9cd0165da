"""`casepool publish`: the whole publication catalogue, protected together, in every format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from casepool.cli.common import (
    EXIT_REFUSED,
    DebugOption,
    JsonOption,
    Lang,
    LangOption,
    print_json,
    run,
    say,
)


def publish(
    warehouse: Annotated[
        Path, typer.Option("--warehouse", "-w", help="The warehouse DuckDB file.")
    ],
    out: Annotated[Path, typer.Option("--out", help="The folder to write the publication to.")],
    period: Annotated[
        str | None,
        typer.Option("--period", help="Only this year or quarter, e.g. 2025 or 2025-Q3."),
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="suppress (exact figures, secondary suppression) or dp (differential privacy).",
        ),
    ] = "suppress",
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Write the catalogue (schemas/publication.yaml) as CSV, XLSX, JSON, HXL, SDMX-CSV and DuckDB.

    Every table is protected and audited first; a table that fails its audit is not written.
    Example: casepool publish -w warehouse.duckdb --out publication --period 2025
    """
    from casepool.publishing.publish import publish as publish_catalogue

    if method == "dp":
        from casepool.publishing.dp_publish import publish_dp

        result_dp = run(lambda: publish_dp(warehouse, out, period, lang=lang.value), lang, debug)
        if as_json:
            print_json(result_dp.to_dict())
        else:
            from casepool.cli.text.publishing import (
                render_dp_publication,  # here: --help stays fast
            )

            typer.echo(render_dp_publication(result_dp, lang.value))
        if not result_dp.ok:
            raise typer.Exit(EXIT_REFUSED)
        return
    if method != "suppress":
        from casepool.cli.common import fail

        fail("method-invalid", lang, method=method)
    result = run(
        lambda: publish_catalogue(warehouse, out, period=period, progress=say, lang=lang.value),
        lang,
        debug,
    )
    if as_json:
        print_json(result.to_dict())
    else:
        from casepool.cli.text.publishing import render_publication  # here: --help stays fast

        typer.echo(render_publication(result, lang.value))
    if not result.ok:
        raise typer.Exit(EXIT_REFUSED)


def register(app: typer.Typer) -> None:
    app.command("publish")(publish)
