"""`casepool report`: one self-contained HTML report with charts, from the protected tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from casepool.cli.common import DebugOption, JsonOption, Lang, LangOption, print_json, run, say
from casepool.cli.org import WarehouseOption
from casepool.core.i18n import render


def report(
    warehouse: WarehouseOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    period: Annotated[
        str | None,
        typer.Option(
            "--period",
            help="Only this year (2025) or quarter (2025-Q3), compared with the one before. "
            "Default: every period, headlines for the latest quarter.",
        ),
    ] = None,
    publication: Annotated[
        Path | None,
        typer.Option(
            "--publication",
            help="Use a folder already written by `casepool publish` instead of publishing again.",
        ),
    ] = None,
    synthetic: Annotated[
        bool | None,
        typer.Option(
            "--synthetic/--not-synthetic",
            help="Show (or hide) the synthetic-data banner. Default: shown when an organisation "
            "is registered with a name ending in '(synthetic)', as `casepool demo` does.",
        ),
    ] = None,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Write the report: headline figures, charts with their tables, coverage, methodology.

    The report is built only from the tables `casepool publish` would publish (suppressed cells
    are marked, never shown), in the language of --lang (Arabic and Sorani right to left). It is
    one HTML file with no link to the network: open it in any browser, print it on A4.

    Example: casepool report --warehouse warehouse.duckdb --out report.html --lang ar
    """
    from casepool.reporting import write_report

    result = run(
        lambda: write_report(
            warehouse,
            out,
            lang=lang.value,
            period=period,
            publication=publication,
            synthetic=synthetic,
        ),
        lang,
        debug,
    )
    if as_json:
        print_json(result.to_dict())
        return
    say(
        render(
            "report-saved",
            lang.value,
            path=str(result.path),
            size=f"{result.size_bytes / 1024:,.0f}",
            lang=result.lang,
            period=result.period,
        )
    )


def register(app: typer.Typer) -> None:
    app.command("report")(report)
