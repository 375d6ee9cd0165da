"""What every command shares: language, --json, --debug, one-line errors and exit codes."""

from __future__ import annotations

import errno
import json
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from casepool.core.errors import CasepoolError
from casepool.core.i18n import render

EXIT_OK, EXIT_REFUSED, EXIT_CANNOT_RUN = 0, 1, 2
T = TypeVar("T")


class Lang(StrEnum):
    en = "en"
    ar = "ar"
    ckb = "ckb"
    kmr = "kmr"


LangOption = Annotated[
    Lang, typer.Option("--lang", help="Language of messages: en, ar, ckb (Sorani), kmr (Kurmanji).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON for machines.")]
DebugOption = Annotated[
    bool, typer.Option("--debug", help="Show a traceback (never with local values) on failure.")
]


def say(text: str) -> None:
    """One line for the user, on stderr so stdout stays clean for data."""
    typer.echo(text, err=True)


def fail(key: str, lang: Lang | str, **params: Any) -> NoReturn:
    """Print one message in the user's language and exit 2 (the command could not run)."""
    say(render(key, str(getattr(lang, "value", lang)), **params))
    raise typer.Exit(EXIT_CANNOT_RUN)


def run(action: Callable[[], T], lang: Lang | str, debug: bool = False) -> T:
    """Call one library function; turn its errors into one line and exit code 2.

    While it runs, a wait for a warehouse lock is announced on stderr. A full disk or a
    read-only file is named as such. Unexpected exceptions print their type only: their text
    could hold a cell value. With `debug`, the traceback shows the whole chain of causes.
    """
    from casepool.warehouse.lock_notice import LOCK_WAIT_NOTICE  # not store: DuckDB's import

    code = str(getattr(lang, "value", lang))
    token = LOCK_WAIT_NOTICE.set(
        lambda path, holder, wait: say(wait_message(code, path, holder, wait))
    )
    try:
        return action()
    except CasepoolError as exc:
        if debug:
            traceback.print_exc(file=sys.stderr)
        say(exc.message(code))
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    except KeyboardInterrupt:
        say(render("interrupted", code))
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except OSError as exc:
        if debug:
            traceback.print_exc(file=sys.stderr)
        key = {
            errno.ENOSPC: "file-disk-full",
            errno.EROFS: "file-read-only",
            errno.EACCES: "file-read-only",
            errno.EPERM: "file-read-only",
        }.get(exc.errno or 0)
        if key and exc.filename:
            say(render(key, code, path=str(exc.filename)))
        else:
            say(render("internal-error", code, kind=type(exc).__name__))
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    except Exception as exc:
        if debug:
            traceback.print_exc(file=sys.stderr)
        say(render("internal-error", code, kind=type(exc).__name__))
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    finally:
        LOCK_WAIT_NOTICE.reset(token)


def wait_message(lang: str, path: Any, holder: Any, wait: float) -> str:
    """ "Held by pid N (program); waiting up to S s…" in the user's language."""
    if holder.pid is None:
        return render("warehouse-waiting-unknown", lang, path=str(path), wait=f"{wait:g}")
    return render(
        "warehouse-waiting",
        lang,
        path=str(path),
        pid=holder.pid,
        program=holder.program or "?",
        wait=f"{wait:g}",
    )


def print_json(payload: Any) -> None:
    """JSON on stdout, UTF-8, non-ASCII kept readable."""
    typer.echo(json.dumps(payload, ensure_ascii=False, indent=2, default=str))


PROGRESS_THRESHOLD_BYTES = 20 * 1024 * 1024


@contextmanager
def progress_stages(path: Path | None = None) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr naming the current stage, for inputs big enough to take a moment."""
    big = path is not None and path.is_file() and path.stat().st_size >= PROGRESS_THRESHOLD_BYTES
    if not big or not sys.stderr.isatty():
        yield lambda stage: None
        return
    from rich.console import Console

    console = Console(stderr=True)
    with console.status("…") as status:
        yield lambda stage: status.update(f"{stage} {path.name if path else ''} …")
