"""Messages in the user's language, from schemas/messages/*.yaml (en, ar, ckb, kmr)."""

from __future__ import annotations

from functools import cache
from typing import Any

from casepool.core.resources import LANGUAGES, load_yaml, schemas_dir


@cache
def _catalogue() -> tuple[dict[str, dict[str, str]], tuple[str, ...]]:
    """Templates from all files in schemas/messages/, and the keys defined more than once.

    Never raises: this is what error messages themselves are rendered with, so a broken file must
    not hide the error being reported (or recurse into itself). The schema tests fail on problems.
    """
    merged: dict[str, dict[str, str]] = {}
    problems: list[str] = []
    for path in sorted((schemas_dir() / "messages").glob("*.yaml")):
        try:
            raw = load_yaml(f"messages/{path.name}") or {}
        except Exception:
            problems.append(f"{path.name}: unreadable")
            continue
        for key, templates in raw.items():
            if key in merged:
                problems.append(f"{path.name}: {key} defined twice")
                continue
            merged[str(key)] = {str(lang): str(t) for lang, t in templates.items()}
    return merged, tuple(problems)


def messages() -> dict[str, dict[str, str]]:
    """Every message template by key, then language (the first definition of a key wins)."""
    return _catalogue()[0]


def message_problems() -> tuple[str, ...]:
    """Keys defined twice and unreadable files in schemas/messages/ (tested to be empty)."""
    return _catalogue()[1]


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
