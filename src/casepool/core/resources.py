"""Where the schema files live and how a YAML file among them is parsed; imports nothing of casepool."""

from __future__ import annotations

import hashlib
import marshal
import os
import tempfile
from pathlib import Path
from typing import Any

VERSION = "0.1.0"  # the one place the version is written; casepool.__version__ reads it

_PACKAGE = Path(__file__).resolve().parents[1]  # src/casepool (or site-packages/casepool)

LANGUAGES: tuple[str, ...] = ("en", "ar", "ckb", "kmr")
RTL_LANGUAGES = frozenset({"ar", "ckb"})


def schemas_dir() -> Path:
    """Where the schema files are: $CASEPOOL_SCHEMAS, the installed copy, or the source tree."""
    override = os.environ.get("CASEPOOL_SCHEMAS")
    if override:
        return Path(override)
    installed = _PACKAGE / "_schemas"
    if installed.is_dir():
        return installed
    return _PACKAGE.parents[1] / "schemas"


def load_yaml(name: str) -> Any:
    """Parse schemas/`name` with a safe loader; OSError and yaml.YAMLError pass to the caller.

    What a file's text parses to is kept in the user's cache (cache_dir), named by the
    SHA-256 of that text: a command reads a dozen schema files, and importing PyYAML and
    parsing them cost about 0.05 s CPU, a twentieth of a 100k-record validate. A changed file
    has another name; an entry that cannot be read or written is parsed as before.
    """
    text = (schemas_dir() / name).read_bytes()
    entry = _cache_entry(text)
    if entry is not None:
        try:
            return marshal.loads(entry.read_bytes())
        except (OSError, ValueError, EOFError, TypeError):
            pass  # missing or unreadable: parse
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster
    data = yaml.load(text.decode("utf-8"), Loader=loader)
    if entry is not None:
        _keep(entry, data)
    return data


_CACHE_FORMAT = "1"  # part of every entry's name: a new layout of entries changes it


def cache_dir() -> Path | None:
    """Where parsed schema files are kept: $CASEPOOL_CACHE_DIR (empty: nowhere), else
    $XDG_CACHE_HOME/casepool, else ~/.cache/casepool."""
    override = os.environ.get("CASEPOOL_CACHE_DIR")
    if override is not None:
        return Path(override) if override else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "casepool"


def _cache_entry(text: bytes) -> Path | None:
    folder = cache_dir()
    if folder is None:
        return None
    digest = hashlib.sha256(text).hexdigest()
    return folder / f"yaml-{_CACHE_FORMAT}-{digest}.marshal"


def _keep(entry: Path, data: Any) -> None:
    """Write the entry (atomically: others may read it meanwhile); never fails the caller."""
    try:
        blob = marshal.dumps(data)
        if marshal.loads(blob) != data:  # e.g. a float NaN: not worth keeping
            return
        entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(blob)
            os.replace(temporary, entry)
        except BaseException:
            os.unlink(temporary)
            raise
    except (OSError, ValueError):
        pass  # a value marshal cannot hold (a date), or no writable cache: parsed each time
