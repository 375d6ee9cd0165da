"""`casepool audit`: every suppressed cell's interval by linear programming, and a verdict."""

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
    fail,
    print_json,
    run,
    say,
)
from casepool.core.i18n import render


def audit(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="A tidy table (CSV, XLSX or Parquet), or one or more publication folders "
            "audited together as one stacked release."
        ),
    ],
    k: Annotated[
        int | None,
        typer.Option("--k", min=2, help="Threshold k (default: schemas/protection.yaml)."),
    ] = None,
    interval: Annotated[
        int | None, typer.Option("--interval", min=1, help="Protection interval (default k).")
    ] = None,
    multi: Annotated[
        list[str] | None, typer.Option("--multi", help="A multi-valued dimension (repeat).")
    ] = None,
    insider: Annotated[
        list[Path] | None,
        typer.Option(
            "--insider",
            help="One contributor's own counts (repeat): a tidy table, or with folders a folder "
            "laid out as the publication and named after the organisation.",
        ),
    ] = None,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Prove a published table, or whole publications together, protected: exit 0 if so, 1
    naming a disclosed or too narrow cell.

    Given folders, every table of every folder is read (shares through their numerators and
    denominators), linked as the catalogue implies (same cells, a year = Σ its quarters) and
    solved together by the outsider and each --insider organisation.

    Examples: casepool audit cases_by_sex_age.csv --insider org_a_counts.csv;
    casepool audit pub-2025-Q1 pub-2025-Q2 pub-2025-Q3 pub-2025-Q4 pub-2025
    """
    from casepool.protecting import audit as audit_table
    from casepool.protecting import load_protection_settings, read_tidy_table

    if all(p.is_dir() for p in paths):
        _audit_folders(paths, k, interval, insider or [], lang, as_json, debug)
        return
    if len(paths) != 1:
        fail("audit-one-table", lang)
    table = paths[0]

    def action():
        from casepool.publishing.audit_release import table_flags

        settings = load_protection_settings()
        frame = read_tidy_table(table)
        insiders = {path.stem: read_tidy_table(path) for path in insider or []}
        return audit_table(
            frame,
            k=k or settings.k,
            protection_interval=interval,
            multi_valued=multi or (),
            insiders=insiders,
            total_code=settings.total_code,
            flags_told=table_flags(table) != "combined",
        )

    report = run(action, lang, debug)
    code = lang.value
    if as_json:
        print_json({"path": table.name, **report.to_dict()})
    else:
        for cell in report.verdicts:
            typer.echo(_line(cell, report, code))
    if report.protected:
        suppressed = len({(c.indicator, tuple(c.codes.items())) for c in report.verdicts})
        say(
            render(
                "audit-protected",
                code,
                path=table.name,
                width=report.protection_interval,
                k=report.k,
                cells=suppressed,
                attackers=1 + len(report.insiders),
            )
        )
        raise typer.Exit(EXIT_OK)
    failures = report.failures
    say(
        render(
            "audit-not-protected",
            code,
            path=table.name,
            failures=len(failures),
            first=_line(failures[0], report, code),
        )
    )
    raise typer.Exit(EXIT_REFUSED)


def _audit_folders(
    folders: list[Path],
    k: int | None,
    interval: int | None,
    insiders: list[Path],
    lang: Lang,
    as_json: bool,
    debug: bool,
) -> None:
    from casepool.cli.text.audit import render_release_audit
    from casepool.publishing.audit_release import audit_releases

    report = run(
        lambda: audit_releases(
            folders,
            insiders={p.name: [p] for p in insiders},
            k=k,
            protection_interval=interval,
        ),
        lang,
        debug,
    )
    if as_json:
        print_json(report.to_dict())
    else:
        say(render_release_audit(report, lang.value))
    raise typer.Exit(EXIT_OK if report.protected else EXIT_REFUSED)


def _line(cell, report, code: str) -> str:
    attacker = (
        render("audit-attacker-outsider", code)
        if cell.attacker == "outsider"
        else render("audit-attacker-insider", code, name=cell.attacker)
    )
    verdict = render(
        f"audit-verdict-{cell.verdict}",
        code,
        width=report.protection_interval,
        k_minus_one=report.k - 1,
    )
    upper = render("audit-unbounded", code) if cell.upper is None else cell.upper
    # A big set of linked cells gives bounds proven feasible, not the interval's ends.
    return render(
        "audit-line" if cell.exact else "audit-line-within",
        code,
        cell=cell.cell_label(),
        status=cell.conf_status,
        attacker=attacker,
        lower=cell.lower,
        upper=upper,
        verdict=verdict,
    )


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)
