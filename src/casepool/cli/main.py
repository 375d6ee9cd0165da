"""The `casepool` command: finds every command module under cli/ and registers it."""

from __future__ import annotations

import importlib
import pkgutil

import typer

import casepool.cli as cli_package

app = typer.Typer(
    name="casepool",
    help=(
        "Pool de-identified case records of child survivors into protected nationwide statistics.\n\n"
        "Data officers: validate, then submit. Stewards: org, ingest, status. "
        "Analysts: query, publish, report, audit."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)

_NOT_COMMANDS = {"main", "common", "reference_docs", "text"}


def _register_commands() -> None:
    for info in sorted(pkgutil.iter_modules(cli_package.__path__), key=lambda m: m.name):
        if info.name in _NOT_COMMANDS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"casepool.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    app()
