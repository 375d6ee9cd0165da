"""The differential-privacy budget and workload from the `differential_privacy:` section of schemas/protection.yaml."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from casepool.core.errors import SchemaError
from casepool.core.schema import read_yaml

SETTINGS_FILE = "protection.yaml"


@dataclass(frozen=True)
class Measurement:
    """One table of the workload: an indicator's counts over the full grid of `by`, with its weight."""

    indicator: str
    by: tuple[str, ...]
    weight: float

    @property
    def name(self) -> str:
        return "__".join((self.indicator, *self.by))


@dataclass(frozen=True)
class DPSettings:
    """Budget per registration quarter (ρ, zCDP), the share the workload spends, and the workload."""

    rho_per_quarter: float
    workload_share: float
    confidence: float
    delta: float
    measurements: tuple[Measurement, ...]
    # Revisions (a quarter measured again after its data changed): each spends `revision_share`
    # of what is left of the quarter's budget above `extras_reserve` (a geometric reserve, so a
    # quarter never runs dry in one step), at most what the first measurement spent; a revision
    # that would get less than `min_revision` of the first measurement's ρ is refused.
    revision_share: float = 0.5
    extras_reserve: float = 0.1
    min_revision: float = 1 / 16
    # A year measured directly once its four quarters are in (`casepool budget --measure YEAR`):
    # its workload tables at `year_share` of ρ, charged to each of its quarters (a child is in
    # one quarter), combined with the sum of the quarters by inverse-variance weighting. 0: off.
    year_share: float = 0.0

    def year_rho_of(
        self, measurement: Measurement, among: Sequence[Measurement] | None = None
    ) -> float:
        """The ρ a year measurement of `measurement` charges each of its quarters: its weight's
        share of `year_share`, among the tables the year measures (`among`; all by default)."""
        total = sum(m.weight for m in among) if among is not None else self.total_weight
        return self.rho_per_quarter * self.year_share * measurement.weight / total

    @property
    def total_weight(self) -> float:
        return sum(m.weight for m in self.measurements)

    def rho_of(self, measurement: Measurement) -> float:
        """The ρ one quarter spends on `measurement`."""
        return self.rho_per_quarter * self.workload_share * measurement.weight / self.total_weight

    def for_indicator(self, indicator: str) -> list[Measurement]:
        return [m for m in self.measurements if m.indicator == indicator]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rho_per_quarter": self.rho_per_quarter,
            "workload_share": self.workload_share,
            "confidence": self.confidence,
            "delta": self.delta,
            "revision_share": self.revision_share,
            "extras_reserve": self.extras_reserve,
            "min_revision": self.min_revision,
            "year_share": self.year_share,
            "measurements": [
                {"name": m.name, "indicator": m.indicator, "by": list(m.by), "rho": self.rho_of(m)}
                for m in self.measurements
            ],
        }


def _fraction(raw: Any, name: str, where: str, *, upper_open: bool = False) -> float:
    ok = isinstance(raw, int | float) and not isinstance(raw, bool) and 0 < raw <= 1
    if not ok or (upper_open and raw >= 1):
        raise SchemaError("schema-invalid", file=where, reason=f"{name} must be in (0, 1]")
    return float(raw)


def dp_settings_from_mapping(raw: Any, where: str = SETTINGS_FILE) -> DPSettings:
    """Build the settings from the parsed `differential_privacy` mapping (SchemaError if wrong)."""
    if not isinstance(raw, dict):
        raise SchemaError(
            "schema-invalid", file=where, reason="differential_privacy must be a mapping"
        )
    rho = raw.get("rho_per_quarter")
    if isinstance(rho, bool) or not isinstance(rho, int | float) or rho <= 0:
        raise SchemaError("schema-invalid", file=where, reason="rho_per_quarter must be > 0")
    measurements = []
    seen = set()
    for i, item in enumerate(raw.get("measurements") or []):
        if not isinstance(item, dict) or not isinstance(item.get("indicator"), str):
            raise SchemaError(
                "schema-invalid", file=where, reason=f"measurements[{i}] needs an indicator"
            )
        by = item.get("by") or []
        weight = item.get("weight", 1)
        if not isinstance(by, list) or "period" in by:
            raise SchemaError(
                "schema-invalid",
                file=where,
                reason=f"measurements[{i}].by must list dimensions (not period)",
            )
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
            raise SchemaError(
                "schema-invalid", file=where, reason=f"measurements[{i}].weight must be > 0"
            )
        m = Measurement(str(item["indicator"]), tuple(str(d) for d in by), float(weight))
        if m.name in seen:
            raise SchemaError("schema-invalid", file=where, reason=f"{m.name} is listed twice")
        seen.add(m.name)
        measurements.append(m)
    if not measurements:
        raise SchemaError("schema-invalid", file=where, reason="the workload has no measurements")
    return DPSettings(
        rho_per_quarter=float(rho),
        workload_share=_fraction(raw.get("workload_share", 1.0), "workload_share", where),
        confidence=_fraction(raw.get("confidence", 0.9), "confidence", where, upper_open=True),
        delta=_fraction(raw.get("delta", 1e-6), "delta", where, upper_open=True),
        measurements=tuple(measurements),
        revision_share=_fraction(raw.get("revision_share", 0.5), "revision_share", where),
        extras_reserve=_fraction(
            raw.get("extras_reserve", 0.1), "extras_reserve", where, upper_open=True
        ),
        min_revision=_fraction(raw.get("min_revision", 1 / 16), "min_revision", where),
        year_share=_year_share(raw, where),
    )


def _year_share(raw: dict[str, Any], where: str) -> float:
    """`year_share` (0 turns year measurements off); the first measurement, the year and the
    steward's reserve must fit in one quarter's ρ."""
    share = raw.get("year_share", 0.0)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share < 1:
        raise SchemaError("schema-invalid", file=where, reason="year_share must be in [0, 1)")
    used = raw.get("workload_share", 1.0) + share + raw.get("extras_reserve", 0.1)
    if share and used > 1 + 1e-9:
        raise SchemaError(
            "schema-invalid",
            file=where,
            reason="workload_share + year_share + extras_reserve must be at most 1",
        )
    return float(share)


def load_dp_settings() -> DPSettings:
    """The `differential_privacy` section of schemas/protection.yaml."""
    raw = read_yaml(SETTINGS_FILE)
    return dp_settings_from_mapping((raw or {}).get("differential_privacy"))
