"""Command-line values converted without pydantic where typer's conversion is plain.

typer 0.29 converts every parameter through a pydantic TypeAdapter: importing pydantic and
building the adapters costs about 0.1 s CPU on every run, a tenth of a 100k-record validate.
casepool's parameters are text, paths, flags and choices, whose conversion needs none of it.
`install()` wraps typer's builder of a parameter's conversion: a text, a path or a choice given
as text on the command line is converted as typer's own adapter converts it (the same typer
helpers, called directly); any other value or annotation, and every refusal (whose message
pydantic words), goes to typer's own conversion, built only then. tests/test_cli_startup.py
holds the two to the same results and messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

_UNSURE = object()
_TYPER_OWN: list[Any] = []  # typer's own builder, once install() has wrapped it


def typer_own_builder() -> Any:
    """typer's own conversion builder (what install() wrapped), for tests; None before."""
    return _TYPER_OWN[0] if _TYPER_OWN else None


def _quick(annotation: Any, info: Any, value: Any, ctx: Any, param: Any) -> Any:
    """The converted value, or _UNSURE when typer's own conversion must decide."""
    from typer._param_types import coerce_cli_choice, coerce_cli_path

    if not isinstance(value, str) or getattr(info, "parser", None) is not None:
        return _UNSURE
    if annotation is str:
        return value
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        try:
            return coerce_cli_choice(
                value, choices=list(annotation), case_sensitive=info.case_sensitive, ctx=ctx
            )
        except ValueError:
            return _UNSURE  # the refusal's message comes from pydantic
    if (
        annotation is Path
        and info.path_type is None
        and value not in ("", "-")
        and "\0" not in value
    ):
        # pydantic makes Path(value) first; typer then checks the text it was given.
        checked = coerce_cli_path(value, info, path_type=None, param=param, ctx=ctx)
        return Path(checked) if isinstance(checked, str) else _UNSURE
    return _UNSURE


def install() -> bool:
    """Wrap typer's conversion builder once; False when this typer lacks the hooks (then
    typer converts as it always does)."""
    try:
        import typer.core as core
        from typer._coercion import RuntimeParam
    except ImportError:
        return False
    original: Any = getattr(core, "build_runtime_param", None)
    if original is None or not hasattr(core._TyperParameter, "get_runtime_param"):
        return False
    if getattr(original, "_casepool_quick", False):
        return True
    _TYPER_OWN.append(original)

    @dataclass(frozen=True)
    class QuickParam(RuntimeParam):
        descriptor: Any = None
        _built: list[Any] = field(default_factory=list)

        def typer_own(self) -> Any:
            if not self._built:
                self._built.append(original(self.descriptor))
            return self._built[0]

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            quick = _quick(self.annotation, self.parameter_info, value, ctx, param)
            if quick is _UNSURE:
                return self.typer_own()._coerce_value(value, param, ctx)
            return quick

    def build(descriptor: Any) -> Any:
        if descriptor.file_annotation is not None:
            return original(descriptor)
        return QuickParam(
            parameter_info=descriptor.parameter_info,
            annotation=descriptor.annotation,
            descriptor=descriptor,
        )

    build._casepool_quick = True  # type: ignore[attr-defined]
    core.build_runtime_param = build
    return True
