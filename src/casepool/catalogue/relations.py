"""Linear relations between indicators an attacker can state from indicators.yaml alone.

Today: a count restricted by `scope: S` counts the same children as the numerator of a share
whose `numerator` is S (over the whole population, or over `known: f` when S fixes f). The count
table's cells are then the share's `…__outcome = yes` cells: the engine links them as one cell
(casepool.publishing.protect), so a numerator hidden in the share cannot be read from the count
table, nor the reverse.

Sub-populations: a share over `known: f` (or `recorded: f`) counts the children of the whole
population whose field f is known (recorded). Its denominator cells are then cells of the whole
population marked `known:f = yes`; their complement (`no`: f unknown) is a cell of its own that
no table publishes, and denominator + complement = the population's cell of the same codes. An
attacker who subtracts a denominator from the registered cases gets the complement: the engine
holds it as a hidden cell (casepool.publishing.protect builds the hidden table). Where f is a
dimension whose "not stated" category holds the unknown values (population_group: unknown),
the complement is that very category's cell.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from casepool.catalogue.indicators import (
    COLUMN_OF_FIELD,
    Indicator,
    IndicatorCatalogue,
    population_key,
)

YES = "yes"


def _same(a: object, b: object) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def numerator_share(indicator: Indicator, catalogue: IndicatorCatalogue) -> Indicator | None:
    """The share whose numerator counts exactly the children of this scoped count (first in the
    file), or None."""
    if indicator.kind != "count" or not isinstance(indicator.scope, dict):
        return None
    for other in catalogue.indicators.values():
        if other.kind != "percent" or not _same(other.numerator, indicator.scope):
            continue
        denominator = other.denominator
        if denominator is None:
            return other
        if (
            isinstance(denominator, dict)
            and set(denominator) == {"known"}
            and set(indicator.scope) == {denominator["known"]}
        ):
            return other  # the numerator fixes the field, so its children are all "known"
    return None


@dataclass(frozen=True)
class Subpopulation:
    """The children of `base` (a population key) with `field` known or recorded (`marker` = yes)."""

    base: str
    marker: str  # the dimension naming the sub-population in cell identities: "known:f"
    complement_alias: tuple[str, str] | None  # (dimension, code) the complement cell equals


def base_population(catalogue: IndicatorCatalogue) -> str | None:
    """The key of the whole population: the first count without a scope."""
    for other in catalogue.indicators.values():
        if other.kind == "count" and other.scope is None and other.months_between is None:
            return population_key(other, catalogue)
    return None


def subpopulation(indicator: Indicator, catalogue: IndicatorCatalogue) -> Subpopulation | None:
    """How an indicator's records are a part of the whole population, or None (the whole
    population itself, or a part not stated as `known:` / `recorded:` of one field)."""
    records = indicator.scope if indicator.kind == "count" else indicator.denominator
    if not isinstance(records, dict) or len(records) != 1:
        return None
    ((kind, field),) = records.items()
    if kind not in {"known", "recorded"} or not isinstance(field, str):
        return None
    base = base_population(catalogue)
    if base is None or base == population_key(indicator, catalogue):
        return None
    alias = None
    if kind == "known":
        column = COLUMN_OF_FIELD.get(field, field)
        for name, dimension in catalogue.dimensions.items():
            if dimension.column == column and not dimension.multi and dimension.missing:
                alias = (name, dimension.missing)
                break
    return Subpopulation(base, f"{kind}:{field}", alias)


def linked_population(
    indicator: Indicator, catalogue: IndicatorCatalogue
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The population key under which an indicator's count cells are protected, and the codes
    every one of its cells carries besides its own: a scoped count is the `yes` cells of the
    share whose numerator it is (`outcome` named `<share>__outcome`, as protect names it)."""
    key = population_key(indicator, catalogue)
    base = catalogue.indicator(key) if key in catalogue.indicators else indicator
    share = numerator_share(base, catalogue)
    codes: tuple[tuple[str, str], ...] = ()
    if share is not None:
        key = population_key(share, catalogue)
        base = catalogue.indicator(key) if key in catalogue.indicators else share
        codes = ((f"{share.name}__outcome", YES),)
    part = subpopulation(base, catalogue)
    if part is None:
        return key, codes
    return part.base, ((part.marker, YES), *codes)
