"""Messages in the user's language, from schemas/messages/*.yaml (en, ar, ckb, kmr)."""

from __future__ import annotations

from functools import cache
from typing import Any

from casepool.errors import SchemaError
from casepool.schema import LANGUAGES, read_yaml, schemas_dir


@cache
def messages() -> dict[str, dict[str, str]]:
    """Every message template by key, then language, from all files in schemas/messages/."""
    merged: dict[str, dict[str, str]] = {}
    for path in sorted((schemas_dir() / "messages").glob("*.yaml")):
        raw = read_yaml(f"messages/{path.name}") or {}
        for key, templates in raw.items():
            if key in merged:
                raise SchemaError("schema-invalid", file=path.name, reason=f"{key} defined twice")
            merged[str(key)] = {str(lang): str(t) for lang, t in templates.items()}
    return merged


class _Keep(dict[str, Any]):
    """Leaves unknown placeholders visible instead of failing."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render(key: str, lang: str = "en", /, **params: Any) -> str:
    """The message `key` in `lang` (English when that language lacks it), with `params` filled in."""
    if lang not in LANGUAGES:
        lang = "en"
    try:
        templates = messages().get(key)
    except Exception:  # a broken messages file must not hide the error being reported
        templates = None
    if not templates:
        detail = ", ".join(f"{k}={v}" for k, v in params.items())
        return f"{key}: {detail}" if detail else key
    template = templates.get(lang) or templates.get("en", key)
    return template.format_map(_Keep(params))
