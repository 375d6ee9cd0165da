"""`casepool ingest`: verify signed packages and merge them into the warehouse."""

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
    run,
    say,
)
from casepool.cli.org import WarehouseOption


def ingest(
    packages: Annotated[
        list[Path], typer.Argument(help="Packages (*.casepool.zip) or folders holding them.")
    ],
    warehouse: WarehouseOption,
    wait: Annotated[
        float,
        typer.Option("--wait", help="Seconds to wait while another command holds the warehouse."),
    ] = 30.0,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Verify each package and merge it into the warehouse (created on first use).

    A package from an unregistered organisation, with a bad signature or checksum, or malformed,
    is refused and changes nothing; the others still load. Ingesting a package twice changes
    nothing; a newer package for the same organisation and period supersedes the older one.
    Exit code 0: all loaded. 1: some were refused. 2: could not run.

    Example: casepool ingest inbox/ --warehouse warehouse.duckdb
    """
    from casepool.warehouse.ingest import ingest_packages

    progress = IngestProgress(lang.value)
    report = run(
        lambda: ingest_packages(packages, warehouse, wait=wait, stage=progress), lang, debug
    )
    if as_json:
        print_json(report.to_dict())
    else:
        from casepool.cli.text.warehouse import render_ingest  # here: --help stays fast

        typer.echo(render_ingest(report, lang.value))
    raise typer.Exit(EXIT_OK if report.ok else EXIT_REFUSED)


class IngestProgress:
    """One line on stderr per package: "[2/5] ORG-01_2025_….casepool.zip: verifying", then its outcome."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.total = 0
        self.index = 0

    def __call__(self, event: str) -> None:
        from casepool.core.i18n import render

        kind, _, rest = event.partition(":")
        if kind == "found":
            self.total = int(rest)
        elif kind == "verify":
            self.index += 1
            say(
                render(
                    "ingest-progress-verify",
                    self.lang,
                    n=self.index,
                    total=self.total,
                    package=rest,
                )
            )
        elif kind == "done":
            outcome, _, name = rest.partition(":")
            say(
                render(
                    f"ingest-progress-{outcome}",
                    self.lang,
                    n=self.index,
                    total=self.total,
                    package=name,
                )
            )


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
