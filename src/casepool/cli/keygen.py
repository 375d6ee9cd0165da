"""`casepool keygen`: make an organisation's secret pseudonym key and signing key pair."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from casepool.cli.common import DebugOption, JsonOption, Lang, LangOption, print_json, run, say


def keygen(
    org: Annotated[str, typer.Option("--org", help="Your organisation's code, e.g. ORG-01.")],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the keys (kept private, backed up).")
    ],
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Make your organisation's keys: a secret pseudonym key, a signing key, and a .pub file.

    The secret files are readable by you only and never leave the organisation; give the .pub
    file to the data steward. keygen never overwrites existing keys.

    Example: casepool keygen --org ORG-01 --out keys/
    """
    from casepool.core.i18n import render
    from casepool.exchange.keys import generate_keys

    paths = run(lambda: generate_keys(org, out), lang, debug)
    if as_json:
        print_json({k: str(v) for k, v in vars(paths).items()})
        return
    say(
        render(
            "keygen-done",
            lang.value,
            org=org.upper(),
            folder=str(out),
            secret=paths.pseudonym.name,
            signing=paths.signing.name,
            public=paths.public.name,
        )
    )


def register(app: typer.Typer) -> None:
    app.command("keygen")(keygen)
