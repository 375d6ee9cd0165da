"""Linear relations between indicators an attacker can state from indicators.yaml alone.

Today: a count restricted by `scope: S` counts the same children as the numerator of a share
whose `numerator` is S (over the whole population, or over `known: f` when S fixes f). The count
table's cells are then the share's `…__outcome = yes` cells: the engine links them as one cell
(casepool.publishing.protect), so a numerator hidden in the share cannot be read from the count
table, nor the reverse.
"""

from __future__ import annotations

import json

from casepool.catalogue.indicators import Indicator, IndicatorCatalogue, population_key

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


def linked_population(
    indicator: Indicator, catalogue: IndicatorCatalogue
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The population key under which an indicator's count cells are protected, and the codes
    every one of its cells carries besides its own: a scoped count is the `yes` cells of the
    share whose numerator it is (`outcome` named `<share>__outcome`, as protect names it)."""
    key = population_key(indicator, catalogue)
    base = catalogue.indicator(key) if key in catalogue.indicators else indicator
    share = numerator_share(base, catalogue)
    if share is None:
        return key, ()
    return population_key(share, catalogue), ((f"{share.name}__outcome", YES),)
