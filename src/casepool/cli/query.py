"""`casepool query`: one indicator as a differentially private table, or `--list` of the indicators."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from casepool.cli.common import DebugOption, Lang, LangOption, fail, print_json, run, say


class Format(StrEnum):
    table = "table"
    csv = "csv"
    xlsx = "xlsx"
    json = "json"
    hxl = "hxl"
    sdmx = "sdmx"


class PeriodUnit(StrEnum):
    year = "year"
    quarter = "quarter"


def query(
    indicator: Annotated[
        str | None, typer.Argument(help="The indicator, e.g. registered_cases.")
    ] = None,
    warehouse: Annotated[
        Path | None, typer.Option("--warehouse", "-w", help="The warehouse DuckDB file.")
    ] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Dimensions, comma-separated, e.g. governorate,sex.")
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where", help="Filter dimension=code[,code] (repeatable), e.g. period=2025."
        ),
    ] = None,
    period_unit: Annotated[
        PeriodUnit,
        typer.Option("--period-unit", help="The period dimension counts years or quarters."),
    ] = PeriodUnit.year,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="List the indicators and their dimensions.")
    ] = False,
    lang: LangOption = Lang.en,
    debug: DebugOption = False,
) -> None:
    """Count one indicator in the warehouse with differential privacy; print or write it.

    Every figure is an estimate with its margin of error (≈ 27 (± 6)), answered from the
    measurements taken once per registration quarter: asking spends no privacy budget (the first
    question about a quarter measures it, see `casepool budget`). Every answer is recorded in the
    release ledger.

    Example: casepool query registered_cases -w warehouse.duckdb --by governorate,sex --where period=2025
    """
    from casepool.cli.text.publishing import query_summary, render_listing, render_table
    from casepool.publishing import query as publishing  # imported here: --help stays fast

    if list_:
        listing = run(lambda: publishing.list_indicators(lang.value), lang, debug)
        if fmt is Format.json:
            print_json(listing)
        else:
            typer.echo(render_listing(listing))
        return
    if indicator is None or warehouse is None:
        fail("query-needs-indicator", lang)
    if fmt is Format.xlsx and out is None:
        fail("query-xlsx-needs-out", lang)
    from casepool.publishing.dp_answers import RevisionRefused

    def ask() -> publishing.QueryResult:
        try:
            return publishing.query(
                warehouse, indicator, by=by, where=where or (), period_unit=period_unit.value
            )
        except RevisionRefused as exc:  # the data changed and the budget cannot follow: exit 1
            say(exc.message(lang.value))
            raise typer.Exit(1) from None

    result = run(ask, lang, debug)
    for note in result.notes(lang.value):  # e.g. aggregate-only packages left out
        say(note)
    if out is not None:
        run(lambda: publishing.write_query(result, out, fmt.value, lang.value), lang, debug)
        say(query_summary(result, lang.value, out))
    elif fmt is Format.table:
        typer.echo(render_table(result.table, lang.value, result.confidence))
    else:
        typer.echo(publishing.format_text(result, fmt.value, lang.value), nl=False)


def register(app: typer.Typer) -> None:
    app.command("query")(query)
