"""`casepool population load`: the reference child population that rates per 100,000 divide by."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from casepool.cli.common import DebugOption, JsonOption, Lang, LangOption, print_json, run, say
from casepool.cli.org import WarehouseOption

population_app = typer.Typer(
    help="Load the child population that rates are computed with (steward).",
    no_args_is_help=True,
)


@population_app.command("load")
def load(
    file: Annotated[Path, typer.Argument(help="A COD-PS file (CSV or XLSX) of children.")],
    warehouse: WarehouseOption,
    source: Annotated[
        str, typer.Option("--source", help="Where the figures come from (publisher, dataset).")
    ],
    year: Annotated[int, typer.Option("--year", help="The year the figures describe.")],
    synthetic: Annotated[
        bool | None,
        typer.Option(
            "--synthetic/--not-synthetic",
            help="Label the population synthetic (default: when its name or source says so).",
        ),
    ] = None,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Replace the warehouse's child population with a COD-PS file: one row per governorate
    (ADM1_PCODE) and columns F_00_04 ... M_15_17. Exit 1 when the file is refused.

    Example: casepool population load iraq_children_2025.csv -w w.duckdb --source "CSO, 2025" --year 2025
    """
    from casepool.catalogue.population import PopulationLoad, load_population
    from casepool.core.i18n import render
    from casepool.warehouse.store import open_warehouse

    def action() -> PopulationLoad:
        with open_warehouse(warehouse) as con:
            return load_population(con, file, source=source, year=year, synthetic=synthetic)

    loaded = run(action, lang, debug)
    if as_json:
        print_json(loaded.to_dict())
    elif loaded.ok and loaded.population is not None:
        p = loaded.population
        say(
            render(
                "population-loaded",
                lang.value,
                year=p.year,
                source=p.source,
                children=f"{p.total:,}",
                governorates=p.frame.get_column("governorate").n_unique(),
            )
        )
        if p.synthetic:
            say(render("population-synthetic", lang.value))
    else:
        for problem in loaded.problems:
            say(render(problem["type"], lang.value, **problem))
        say(render("population-refused", lang.value))
    if not loaded.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(population_app, name="population")
