"""Where the schema files live and how a YAML file among them is parsed; imports nothing of casepool."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

VERSION = "0.1.0"  # the one place the version is written; casepool.__version__ reads it

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster
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
    """Parse schemas/`name` with a safe loader; OSError and yaml.YAMLError pass to the caller."""
    with (schemas_dir() / name).open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_Loader)
