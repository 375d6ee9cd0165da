"""The `casepool` command: finds every command module under cli/ and registers it.

`app` (what tests and the reference pages use) holds every command. The console script
(`main`) registers only the module of the command it was asked for when that is the first
argument (`casepool validate …`): importing every command module and building every command
is paid by each run otherwise. Anything else (`casepool`, `casepool --help`, an unknown or misspelt
command) gets the whole app, so what is printed never changes.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from functools import cache
from typing import Any

import typer

import casepool.cli as cli_package
from casepool.cli import _params

_params.install()  # text, paths and choices converted without importing pydantic

HELP = (
    "Pool de-identified case records of child survivors into protected nationwide statistics.\n\n"
    "Data officers: validate, then submit. Stewards: org, ingest, status. "
    "Analysts: query, publish, report, audit."
)

_NOT_COMMANDS = {"main", "common", "reference_docs", "text"}


def _new_app() -> typer.Typer:
    return typer.Typer(
        name="casepool",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        pretty_exceptions_show_locals=False,
        rich_markup_mode=None,
    )


def command_modules() -> list[str]:
    """The modules under cli/ that may register commands, by name."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(cli_package.__path__)
        if info.name not in _NOT_COMMANDS and not info.name.startswith("_")
    )


def _register(target: typer.Typer, module_name: str) -> None:
    module = importlib.import_module(f"casepool.cli.{module_name}")
    register = getattr(module, "register", None)
    if register is not None:
        register(target)


def _register_commands(target: typer.Typer) -> None:
    for name in command_modules():
        _register(target, name)


def registered_names(target: typer.Typer) -> list[str]:
    """The names of the commands and groups registered on `target`."""
    names = [c.name or "" for c in target.registered_commands]
    return names + [g.name or "" for g in target.registered_groups]


@cache
def whole_app() -> typer.Typer:
    """The app with every command registered."""
    whole = _new_app()
    _register_commands(whole)
    return whole


def __getattr__(name: str) -> Any:
    # `app` is built on first use: the console script may not need every command.
    if name == "app":
        return whole_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _only(command: str) -> typer.Typer | None:
    """An app with only `command`'s module registered, when the module of that name registers
    exactly that command (else None: the caller uses the whole app)."""
    if not command.isidentifier() or command in _NOT_COMMANDS or command.startswith("_"):
        return None
    if importlib.util.find_spec(f"casepool.cli.{command}") is None:
        return None
    lone = _new_app()
    _register(lone, command)
    if registered_names(lone) != [command]:
        return None
    # A callback keeps it a group of commands (typer runs a lone command as the program itself);
    # it has no parameters and no help of its own, so nothing printed changes.
    lone.callback()(_no_options)
    return lone


def _no_options() -> None:
    pass


def app_for(argv: list[str]) -> typer.Typer:
    """The app the console script runs for these arguments (see the module's docstring)."""
    if argv and not argv[0].startswith("-"):
        lone = _only(argv[0])
        if lone is not None:
            return lone
    return whole_app()


def main() -> None:
    """Console-script entry point."""
    app_for(sys.argv[1:])()
