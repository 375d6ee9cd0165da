"""`casepool budget`: the differential-privacy budget per registration quarter, spent and left."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from casepool.cli.common import (
    DebugOption,
    JsonOption,
    Lang,
    LangOption,
    print_json,
    run,
    say,
)
from casepool.cli.org import WarehouseOption
from casepool.core.i18n import render


def budget(
    warehouse: WarehouseOption,
    measure: Annotated[
        list[str] | None,
        typer.Option(
            "--measure",
            help="Measure this period (year or quarter) now, spending its budget (repeatable).",
        ),
    ] = None,
    table: Annotated[
        list[str] | None,
        typer.Option(
            "--table",
            help="With --measure: only this extra table, indicator:dim,dim (repeatable).",
        ),
    ] = None,
    rho: Annotated[
        float | None, typer.Option("--rho", help="With --table: the ρ each extra table spends.")
    ] = None,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Show the privacy budget (ρ, zCDP) of every registration quarter: spent and left.

    The first question about a quarter measures its declared workload (schemas/protection.yaml);
    --measure does so now. --table with --rho adds a measurement for a new need from what is
    left: a recorded decision of the steward (written to the release ledger).

    Example: casepool budget -w warehouse.duckdb --measure 2025 --table registered_cases:governorate,age_band --rho 0.05
    """
    from casepool.cli.text.publishing import render_budget
    from casepool.publishing.dp_answers import RevisionRefused, budget_report

    def measure_and_report() -> Any:
        try:
            return budget_report(warehouse, measure=measure or (), tables=table or (), rho=rho)
        except RevisionRefused as exc:  # a changed quarter the budget cannot measure again
            say(exc.message(lang.value))
            raise typer.Exit(1) from None

    report = run(measure_and_report, lang, debug)
    if report.measured_now:
        say(
            render(
                "budget-measured",
                lang.value,
                tables=len(report.measured_now),
                periods=", ".join(sorted({m.split(" ")[0] for m in report.measured_now})),
                rho=f"{report.spent_now:.4g}",
            )
        )
    if as_json:
        print_json(report.to_dict())
    else:
        typer.echo(render_budget(report, lang.value))


def register(app: typer.Typer) -> None:
    app.command("budget")(budget)
