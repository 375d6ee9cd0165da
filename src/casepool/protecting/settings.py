"""Protection settings from schemas/protection.yaml: thresholds, protection interval, costs, cell key."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from casepool.core.errors import SchemaError
from casepool.core.schema import read_yaml

SETTINGS_FILE = "protection.yaml"
# How published files flag suppressed cells (schemas/protection.yaml `flags`): `combined`, one
# conf_status C for every suppressed cell; `distinct`, C primary and D secondary apart.
FLAG_MODES = ("combined", "distinct")


@dataclass(frozen=True)
class CellKeySettings:
    """Parameters of the perturbation table (D, V, js); hidden from repr so they are never printed."""

    max_deviation: int = field(default=3, repr=False)
    variance: float = field(default=2.0, repr=False)
    threshold: int = field(default=2, repr=False)


@dataclass(frozen=True)
class ProtectionSettings:
    """What a published table must satisfy; see docs/methodology-disclosure-control.md."""

    k: int = 5
    k_sensitive: int = 10
    sensitive_dimensions: frozenset[str] = frozenset({"minority_community"})
    protection_interval: int | None = None
    total_code: str = "_T"
    cost_per_cell: float = 1.0
    cost_per_count: float = 1.0
    margin_factor: float = 2.0
    prune_secondary: bool = True
    prune_max_component: int = 300
    ratio_min_denominator: int | None = None
    # Contributor dominance: a cell where all contributors but one together count 1..k-1
    # children is primary against the one (see primary.dominated_cells).
    dominance: bool = True
    dominance_small_cells: bool = False
    cell_key: CellKeySettings = field(default_factory=CellKeySettings, repr=False)
    # `distinct` unless a file says otherwise: a reader of distinct flags knows a C cell is ≥ 1,
    # so settings that do not say protect against that reading (the conservative side).
    flags: str = "distinct"

    @property
    def flags_told(self) -> bool:
        """Whether a published flag tells a reader anything about a cell's value: with distinct
        flags a C cell is primary, so 1..k-1 or dominated, never 0."""
        return self.flags != "combined"

    def k_for(self, dimensions: tuple[str, ...] | list[str], sensitive: bool | None = None) -> int:
        """The threshold of a table: k_sensitive when it involves a sensitive field."""
        if sensitive is None:
            sensitive = any(d in self.sensitive_dimensions for d in dimensions)
        return self.k_sensitive if sensitive else self.k

    def interval_for(self, k: int) -> int:
        """The protection interval a primary cell of a table with threshold k needs."""
        return self.protection_interval if self.protection_interval is not None else k

    def with_k(self, k: int) -> ProtectionSettings:
        """These settings with another k (and the same stricter k, never below k)."""
        return replace(self, k=k, k_sensitive=max(k, self.k_sensitive))


def _positive_int(raw: Any, name: str, where: str, minimum: int = 1) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
        raise SchemaError(
            "schema-invalid", file=where, reason=f"{name} must be an integer ≥ {minimum}"
        )
    return raw


def _number(raw: Any, name: str, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
        raise SchemaError("schema-invalid", file=where, reason=f"{name} must be a number ≥ 0")
    return float(raw)


def settings_from_mapping(raw: Any, where: str = SETTINGS_FILE) -> ProtectionSettings:
    """Build settings from the parsed YAML mapping, refusing wrong types with SchemaError."""
    if not isinstance(raw, dict):
        raise SchemaError("schema-invalid", file=where, reason="must be a mapping")
    k = _positive_int(raw.get("k", 5), "k", where, minimum=2)
    k_sensitive = _positive_int(raw.get("k_sensitive", k), "k_sensitive", where, minimum=k)
    interval = raw.get("protection_interval")
    if interval is not None:
        interval = _positive_int(interval, "protection_interval", where)
    ratio_min = raw.get("ratio_min_denominator")
    if ratio_min is not None:
        ratio_min = _positive_int(ratio_min, "ratio_min_denominator", where)
    costs = raw.get("costs") or {}
    key = raw.get("cell_key") or {}
    if not isinstance(costs, dict) or not isinstance(key, dict):
        raise SchemaError(
            "schema-invalid", file=where, reason="costs and cell_key must be mappings"
        )
    dominance = raw.get("dominance") or {}
    if not isinstance(dominance, dict):
        raise SchemaError("schema-invalid", file=where, reason="dominance must be a mapping")
    sensitive = raw.get("sensitive_dimensions") or []
    if not isinstance(sensitive, list):
        raise SchemaError(
            "schema-invalid", file=where, reason="sensitive_dimensions must be a list"
        )
    cell_key = CellKeySettings(
        max_deviation=_positive_int(key.get("max_deviation", 3), "cell_key.max_deviation", where),
        variance=_number(key.get("variance", 2.0), "cell_key.variance", where),
        threshold=_positive_int(key.get("threshold", 2), "cell_key.threshold", where, minimum=0),
    )
    flags = raw.get("flags", "distinct")
    if flags not in FLAG_MODES:
        raise SchemaError("schema-invalid", file=where, reason="flags must be combined or distinct")
    return ProtectionSettings(
        flags=str(flags),
        k=k,
        k_sensitive=k_sensitive,
        sensitive_dimensions=frozenset(str(d) for d in sensitive),
        protection_interval=interval,
        total_code=str(raw.get("total_code", "_T")),
        cost_per_cell=_number(costs.get("per_cell", 1.0), "costs.per_cell", where),
        cost_per_count=_number(costs.get("per_count", 1.0), "costs.per_count", where),
        margin_factor=max(
            1.0, _number(costs.get("margin_factor", 2.0), "costs.margin_factor", where)
        ),
        prune_secondary=bool(raw.get("prune_secondary", True)),
        prune_max_component=_positive_int(
            raw.get("prune_max_component", 300), "prune_max_component", where
        ),
        ratio_min_denominator=ratio_min,
        dominance=bool(dominance.get("enabled", True)),
        dominance_small_cells=bool(dominance.get("small_cells", False)),
        cell_key=cell_key,
    )


def load_protection_settings(path: str | Path | None = None) -> ProtectionSettings:
    """Settings from schemas/protection.yaml, or from `path` (e.g. a steward's private file)."""
    if path is None:
        return settings_from_mapping(read_yaml(SETTINGS_FILE))
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SchemaError("schema-missing", file=path.name) from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SchemaError("schema-invalid", file=path.name, reason=type(exc).__name__) from exc
    return settings_from_mapping(raw, path.name)
