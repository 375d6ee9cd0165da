"""`casepool synth`: write realistic synthetic CSO exports with mappings and truth.json."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer

from casepool.cli.common import DebugOption, JsonOption, Lang, LangOption, print_json, run, say
from casepool.core.i18n import render


def synth(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the exports into.")],
    orgs: Annotated[
        int, typer.Option("--orgs", help="Number of organisations (one export each).")
    ] = 6,
    records: Annotated[
        int, typer.Option("--records", help="Number of case records in all.")
    ] = 3000,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same bytes.")] = 2025,
    error_rate: Annotated[
        float, typer.Option("--error-rate", help="Share of rows given each kind of error.")
    ] = 0.01,
    start: Annotated[
        str, typer.Option("--start", help="First month of registrations, YYYY-MM.")
    ] = "2023-01",
    end: Annotated[
        str, typer.Option("--end", help="Last month of registrations, YYYY-MM.")
    ] = "2025-12",
    today: Annotated[
        str | None,
        typer.Option("--today", help="Date future dates are judged by (default: end of --end)."),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="mixed: every dialect (CSV, XLSX, Windows-1256, Kobo, Sorani); "
            "csv or parquet: canonical files only, for millions of rows.",
        ),
    ] = "mixed",
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Write synthetic exports (no real person) with the truth about every injected error.

    One export per organisation in the dialects CSOs really send (CSV, XLSX, Windows-1256,
    KoboToolbox, Sorani), a mapping for each non-canonical one, and truth.json listing every
    injected error, row without consent and identifier. The same seed gives the same bytes.

    Example: casepool synth --out sample_data --orgs 6 --records 3000 --seed 2025
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from casepool.synthesis import synthesize

    code = lang.value
    when: date | None = None
    if today:
        when = run(lambda: _parse_day(today), code, debug)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=as_json,
    ) as bar:
        task = bar.add_task(render("synth-progress", code), total=records)
        result = run(
            lambda: synthesize(
                out,
                orgs=orgs,
                records=records,
                seed=seed,
                error_rate=error_rate,
                start=start,
                end=end,
                today=when,
                fmt=fmt,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            ),
            code,
            debug,
        )
    if as_json:
        print_json(result.to_dict())
        return
    say(
        render(
            "synth-done",
            code,
            exports=len(result.exports),
            records=result.records,
            errors=result.error_count,
            out=str(out),
        )
    )


def _parse_day(text: str) -> date:
    from casepool.core.errors import UsageError

    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise UsageError("synth-bad-day", option="--today", value=text) from None


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
