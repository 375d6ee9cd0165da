"""`casepool demo`: the whole path on synthetic data, one progress line per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from casepool.cli.common import DebugOption, JsonOption, Lang, LangOption, print_json, run, say


def demo(
    workdir: Annotated[
        Path,
        typer.Option("--workdir", help="Folder for everything the demo makes (emptied first)."),
    ] = Path("demo_output"),
    orgs: Annotated[int, typer.Option("--orgs", min=1, help="Synthetic organisations.")] = 6,
    records: Annotated[
        int, typer.Option("--records", min=1, help="Synthetic records in all.")
    ] = 3000,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed: the same seed makes the same data.")
    ] = 2025,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Run synth, validate, keygen, submit, ingest and publish on synthetic data.

    Nothing here is real: every record is made up by `casepool synth`. Ends by saying where the
    warehouse and the publication are.

    Example: casepool demo --workdir demo_output --records 20000
    """
    from casepool.demo import run_demo

    def stage(name: str, detail: str) -> None:
        say(f"[{name}] {detail}")

    result = run(
        lambda: run_demo(workdir, orgs=orgs, records=records, seed=seed, stage=stage), lang, debug
    )
    if as_json:
        print_json(result.to_dict())
        return
    typer.echo(f"Warehouse: {result.warehouse}")
    if result.publication:
        typer.echo(f"Publication: {result.publication}")
    if result.report:
        typer.echo(f"Report: {result.report}")
    for skipped in result.skipped:
        say(f"[{skipped}] not in this version yet")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
