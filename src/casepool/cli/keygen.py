"""`casepool keygen`: make an organisation's secret pseudonym key and signing key pair."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from casepool.cli.common import (
    DebugOption,
    JsonOption,
    Lang,
    LangOption,
    fail,
    print_json,
    run,
    say,
)


def passphrase_for(lang: Lang, *, confirm: bool, keys: tuple[Path, str] | None = None) -> str:
    """The keys' passphrase: from CASEPOOL_KEY_PASSPHRASE (scripts), else from the OS keyring
    where `keygen --keyring` put it (for `keys`, a folder and org), else asked without echo."""
    from casepool.core.i18n import render
    from casepool.exchange.keys import PASSPHRASE_ENV, keyring_passphrase

    given = os.environ.get(PASSPHRASE_ENV)
    if given:
        return given
    if keys is not None:
        kept = keyring_passphrase(*keys)
        if kept:
            return kept
    return str(
        typer.prompt(
            render("passphrase-prompt", lang.value),
            hide_input=True,
            confirmation_prompt=confirm,
            err=True,
        )
    )


def _keep_in_keyring(out: Path, org: str, passphrase: str, lang: Lang) -> str | None:
    """Store the passphrase in the OS keyring and say so; without one, say that in one line."""
    from casepool.core.errors import UsageError
    from casepool.core.i18n import render
    from casepool.exchange.keys import store_passphrase

    try:
        backend = store_passphrase(out, org, passphrase)
    except UsageError as exc:  # no keyring here: the passphrase path goes on working
        say(exc.message(lang.value))
        return None
    say(render("keyring-stored", lang.value, backend=backend))
    return backend


def keygen(
    org: Annotated[str, typer.Option("--org", help="Your organisation's code, e.g. ORG-01.")],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the keys (kept private, backed up).")
    ],
    rotate: Annotated[
        bool,
        typer.Option(
            "--rotate",
            help="Make a new signing key for existing keys; pseudonyms stay the same.",
        ),
    ] = False,
    no_passphrase: Annotated[
        bool,
        typer.Option(
            "--no-passphrase", help="Leave the secret files unprotected (test setups only)."
        ),
    ] = False,
    use_keyring: Annotated[
        bool,
        typer.Option(
            "--keyring",
            help="Also keep the passphrase in the OS keyring (Windows Credential Manager, "
            "macOS Keychain, Secret Service), from where submit reads it on this computer.",
        ),
    ] = False,
    lang: LangOption = Lang.en,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Make your organisation's keys: a secret pseudonym key, a signing key, and a .pub file.

    Both secret files are encrypted under a passphrase you type (or CASEPOOL_KEY_PASSPHRASE for
    scripts); submit asks for it, or with --keyring reads it from the OS keyring. Give the .pub
    file to the data steward. keygen never overwrites keys; --rotate makes a new signing key
    (the steward runs `org add --replace`) and keeps the pseudonym key, so your records keep
    their pseudonyms.

    Example: casepool keygen --org ORG-01 --out keys/ --keyring
    """
    from casepool.core.i18n import render
    from casepool.exchange.keys import generate_keys, public_key_id, rotate_signing_key

    if use_keyring and no_passphrase:
        fail("keyring-needs-passphrase", lang)
    kept_in: str | None = None
    if rotate:
        from casepool.exchange.keys import keys_protected, load_keys

        current = (
            passphrase_for(lang, confirm=False, keys=(out, org))
            if keys_protected(out, org)
            else None
        )
        old = run(lambda: public_key_id(load_keys(out, org, current).public_key), lang, debug)
        paths = run(lambda: rotate_signing_key(org, out, current), lang, debug)
        if not as_json:
            say(
                render(
                    "keygen-rotated",
                    lang.value,
                    org=org.upper(),
                    folder=str(out),
                    public=paths.public.name,
                    old=old,
                )
            )
        if use_keyring and current:
            kept_in = _keep_in_keyring(out, org, current, lang)
    else:
        passphrase = None if no_passphrase else passphrase_for(lang, confirm=True)
        paths = run(lambda: generate_keys(org, out, passphrase), lang, debug)
        if not as_json:
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
            if passphrase is None:
                say(render("keygen-unprotected", lang.value))
        if use_keyring and passphrase:
            kept_in = _keep_in_keyring(out, org, passphrase, lang)
    if as_json:
        shown: dict[str, str | None] = {k: str(v) for k, v in vars(paths).items()}
        if use_keyring:
            shown["keyring"] = kept_in
        print_json(shown)


def register(app: typer.Typer) -> None:
    app.command("keygen")(keygen)
