"""The console script's quick start: only the invoked command's module is registered, and
parameters are converted without pydantic. What is printed and what commands receive stay
exactly what the whole app with typer's own conversion gives."""

from __future__ import annotations

import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import pytest
import typer
import typer.core
from typer.testing import CliRunner

from casepool.cli import _params
from casepool.cli.main import app, app_for, command_modules, registered_names, whole_app

FIXTURES = Path(__file__).parent / "fixtures"
RUNNER = CliRunner(env={"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"})


def _help_paths() -> list[list[str]]:
    """Every command and sub-command of the whole app, as argument lists."""
    paths: list[list[str]] = []

    def visit(command: object, path: list[str]) -> None:
        if path:
            paths.append(path)
        children = getattr(command, "commands", {})
        for name in sorted(children):
            visit(children[name], [*path, name])

    visit(typer.main.get_command(whole_app()), [])
    return paths


def test_commands_named_like_their_module_start_alone():
    # `casepool NAME` loads cli/NAME.py alone when that module registers NAME (and nothing
    # else); any other command runs in the whole app.
    names = registered_names(whole_app())
    alone = [n for n in names if app_for([n]) is not whole_app()]
    assert "validate" in alone and "submit" in alone and "org" in alone
    assert set(alone) <= set(command_modules())
    assert app is whole_app()


@pytest.mark.parametrize("path", _help_paths(), ids=" ".join)
def test_help_of_every_command_is_unchanged(path):
    lone = app_for(path)
    quick = RUNNER.invoke(lone, [*path, "--help"], prog_name="casepool")
    whole = RUNNER.invoke(whole_app(), [*path, "--help"], prog_name="casepool")
    assert quick.exit_code == whole.exit_code == 0
    assert quick.output == whole.output


@pytest.mark.parametrize(
    "argv",
    [[], ["--help"], ["validat", "x.csv"], ["main"], ["common"], ["text"], ["_params"], ["../x"]],
)
def test_anything_but_a_command_gets_the_whole_app(argv):
    assert app_for(argv) is whole_app()
    quick = RUNNER.invoke(app_for(argv), argv, prog_name="casepool")
    assert quick.exit_code in (0, 2)
    assert quick.output == RUNNER.invoke(whole_app(), argv, prog_name="casepool").output


def test_a_lone_command_still_needs_its_name():
    # typer runs a lone command as the program itself; the app must stay a group.
    lone = app_for(["validate"])
    export = str(FIXTURES / "validate" / "canonical_valid.csv")
    assert RUNNER.invoke(lone, [export], prog_name="casepool").exit_code == 2
    ran = RUNNER.invoke(lone, ["validate", export, "--json"], prog_name="casepool")
    assert ran.exit_code == 0, ran.output
    assert ran.output == RUNNER.invoke(whole_app(), ["validate", export, "--json"]).output


class Colour(StrEnum):
    red = "red"
    green = "green"


def _probe_app() -> typer.Typer:
    probe = typer.Typer(add_completion=False, rich_markup_mode=None)

    @probe.command()
    def show(
        target: Path,
        maybe: Annotated[Path | None, typer.Option("--maybe")] = None,
        existing: Annotated[Path | None, typer.Option("--existing", exists=True)] = None,
        a_file: Annotated[
            Path | None, typer.Option("--file", exists=True, dir_okay=False, readable=True)
        ] = None,
        a_dir: Annotated[Path | None, typer.Option("--dir", file_okay=False)] = None,
        resolved: Annotated[Path | None, typer.Option("--resolved", resolve_path=True)] = None,
        dash: Annotated[Path | None, typer.Option("--dash", allow_dash=True)] = None,
        text: Annotated[str | None, typer.Option("--text")] = None,
        colour: Annotated[Colour, typer.Option("--colour")] = Colour.red,
        loose: Annotated[Colour | None, typer.Option("--loose", case_sensitive=False)] = None,
        number: Annotated[int, typer.Option("--number", min=0)] = 1,
        flag: Annotated[bool, typer.Option("--flag")] = False,
    ) -> None:
        values = (target, maybe, existing, a_file, a_dir, resolved, dash, text, colour, loose)
        typer.echo(repr([(type(v).__name__, v) for v in (*values, number, flag)]))

    @probe.command()
    def other() -> None:
        pass

    return probe


def _arguments(tmp: Path) -> list[list[str]]:
    folder = tmp / "folder"
    folder.mkdir()
    afile = tmp / "ملف أ.csv"
    afile.write_text("x", encoding="utf-8")
    paths = [str(afile), str(folder), str(tmp / "missing.csv"), "a//b/../c", "~/x", "", "-", "."]
    cases = [["show", p] for p in paths]
    for option in ("--maybe", "--existing", "--file", "--dir", "--resolved", "--dash"):
        cases += [["show", "t", option, p] for p in paths]
    for value in ("", "x y", "ق", "-"):
        cases.append(["show", "t", "--text", value])
    for value in ("green", "GREEN", "blue", ""):
        cases += [["show", "t", "--colour", value], ["show", "t", "--loose", value]]
    cases += [["show", "t", "--number", "3"], ["show", "t", "--number", "-1"], ["show", "t"]]
    cases += [["show", "t", "--flag"], ["show"], ["show", "t", "--text"]]
    return cases


def test_quick_conversion_equals_typers_own(tmp_path, monkeypatch):
    assert _params.install()
    own = _params.typer_own_builder()
    assert own is not None and typer.core.build_runtime_param is not own
    cases = _arguments(tmp_path)
    quick = [RUNNER.invoke(_probe_app(), case) for case in cases]
    monkeypatch.setattr(typer.core, "build_runtime_param", own)
    slow = [RUNNER.invoke(_probe_app(), case) for case in cases]
    for case, q, s in zip(cases, quick, slow, strict=True):
        assert (q.exit_code, q.output) == (s.exit_code, s.output), case
    assert any(q.exit_code == 0 for q in quick) and any(q.exit_code == 2 for q in quick)


def test_validate_imports_neither_pydantic_nor_other_commands(tmp_path):
    code = (
        "import sys\n"
        "sys.argv = ['casepool', 'validate', "
        f"{str(FIXTURES / 'validate' / 'one_error_each.csv')!r}, '--json']\n"
        "from casepool.cli.main import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 1, exit.code\n"
        "loaded = {m for m in sys.modules if m.startswith(('pydantic', 'casepool.cli.'))}\n"
        "assert not {m for m in loaded if m.startswith('pydantic')}, sorted(loaded)\n"
        "assert 'casepool.cli.submit' not in loaded, sorted(loaded)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
