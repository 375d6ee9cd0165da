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

Numerators that are categories (`numerator_parts`): a share whose numerator is `{field: code}`
or `{field: [codes]}`, where `field` is the column of a dimension d (single- or multi-valued),
counts the children of its population with d = code: the population's cells with d = code (a
list: the sum of those cells over a single-valued d; over a multi-valued d, each is at most the
numerator, the numerator at most their sum). The engine states it as a hidden table whose
categories are those cells and whose total is the share's `…__outcome = yes` cell
(casepool.publishing.protect); the folder audit reads the same table. Linked in indicators.yaml:
- boys_share (`survivor_sex: M`), online_share and travel_tourism_share (`exploitation_types`),
  mhpss_share (`services_received`): over the whole population, so their numerators are the
  registered cases with sex = M, exploitation_type = online / travel_tourism, service = mhpss;
- displaced_share (`population_group` in three codes, over `known: population_group`): the
  codes are all known, so its numerator is the sum of the registered cases of the three groups;
- stigma_barrier_share (`service_barriers: stigma`, over `recorded: service_barriers`): likewise
  the registered cases with service_barrier = stigma;
- police_dismissed_share and conviction_share (`justice_outcome: dismissed / conviction`, over
  `reported_to_police: yes`): their population is the scoped count police_reported_cases, so
  their numerators are its cells with justice_outcome = dismissed / conviction (the justice
  funnel). The parts carry the scoped count's codes (`codes_of_parts`: the `known:` marker and
  police_reported_share's `yes`), a part of a part: dismissed ⊂ reported ⊂ reporting known ⊂
  registered. A cell the link ties moves only together with the share's `yes` and `no` cells,
  another outcome of the funnel and the hidden parts by sex: a move across three tables that no
  hypercube of one table makes, so the engine chooses its complements by a linear program
  (casepool.protecting.secondary.lp_complement). Linked since round 7: before, the search
  added broken cubes and neighbours one by one until nearly every cell was hidden, so the
  relation was left out, and a count hidden in the funnel could be read from the share's
  numerators, and the reverse (tests/test_justice_link.py).
Not linked, and why: working_children_share, police_reported_share and
social_media_referral_share count a field that is no dimension (working_child, referral_source,
reported_to_police), so no table publishes its categories (police_reported_share's numerator is
linked as the scoped count police_reported_cases, above). A numerator code that is a
dimension's "not stated" category (`unknown`) is not linked: that category also holds empty and
unlisted values, so it is not the same children.
A scoped count whose records are such a numerator is linked the same way (`parts_of`):
online_cases (`scope: {exploitation_types: online}`) by platform and sex is the registered cases
with exploitation_type = online by the same codes (cases_by_exploitation_type by sex publishes
its margin). A share over `known:` / `recorded:` of a field
other than its numerator's would count a part of the population no table breaks down by that
dimension (none in the file); a share broken down by its numerator's own dimension would make
every other category a structural zero the engine cannot state (none in the file either).
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


@dataclass(frozen=True)
class NumeratorParts:
    """A share's numerator as cells of a population: its children with `dimension` in `codes`.

    `population` is the indicator whose table by `dimension` holds the parts (tabulated by the
    share's own dimensions besides); `key` and `codes_of_parts` name its cells as the engine does
    (`linked_population`); `extra` are the codes the share's numerator cell carries beyond them
    (the `known:` marker, which every numerator code implies)."""

    share: str
    population: str
    dimension: str
    codes: tuple[str, ...]
    multi: bool  # several codes of a multi-valued dimension: a child may have more than one
    key: str
    codes_of_parts: tuple[tuple[str, str], ...]
    extra: tuple[tuple[str, str], ...]


def numerator_parts(indicator: Indicator, catalogue: IndicatorCatalogue) -> NumeratorParts | None:
    """How a share's numerator is one category (or a sum of categories) of a dimension of its
    population, or None (see the module docstring for which shares and why)."""
    numerator = indicator.numerator
    if indicator.kind != "percent" or not isinstance(numerator, dict) or len(numerator) != 1:
        return None
    ((field, value),) = numerator.items()
    if field in {"all", "any", "not", "known", "recorded"}:
        return None
    listed = value if isinstance(value, list) else [value]
    codes = tuple(str(c) for c in listed)
    if not codes or not all(isinstance(c, str) for c in listed):
        return None
    column = COLUMN_OF_FIELD.get(field, field)
    found = [
        (name, d)
        for name, d in catalogue.dimensions.items()
        if d.derived is None and d.column == column
    ]
    if len(found) != 1:
        return None
    name, dimension = found[0]
    if name in indicator.dimensions or len(set(codes)) != len(codes):
        return None
    if any(c not in dimension.code_values or c in {dimension.missing, "unknown"} for c in codes):
        return None  # a "not stated" category also holds empty and unlisted values
    denominator = indicator.denominator
    if denominator is None:
        population = population_key(indicator, catalogue)
    elif (
        isinstance(denominator, dict)
        and len(denominator) == 1
        and next(iter(denominator)) in {"known", "recorded"}
    ):
        ((_, marked),) = denominator.items()
        if COLUMN_OF_FIELD.get(str(marked), str(marked)) != column:
            return None  # a part of the population by another field: nothing publishes it
        part = subpopulation(indicator, catalogue)
        if part is None:
            return None
        population = part.base  # every numerator code is known (recorded): a part of the base
    else:
        population = population_key(indicator, catalogue)  # the scoped count of these children
    if population not in catalogue.indicators:
        return None
    owner = catalogue.indicator(population)
    if owner.kind != "count" or name not in owner.dimensions:
        return None
    if not set(indicator.dimensions) <= set(owner.dimensions):
        return None
    key, of_parts = linked_population(owner, catalogue)
    share_key, of_share = linked_population(indicator, catalogue)
    if share_key != key or not set(of_parts) <= set(of_share):
        return None
    extra = tuple(c for c in of_share if c not in of_parts)
    if any(c[1] != YES or c[0].split(":", 1)[0] not in {"known", "recorded"} for c in extra):
        return None
    return NumeratorParts(
        share=indicator.name,
        population=owner.name,
        dimension=name,
        codes=codes,
        multi=dimension.multi and len(codes) > 1,
        key=key,
        codes_of_parts=of_parts,
        extra=extra,
    )


def parts_of(indicator: Indicator, catalogue: IndicatorCatalogue) -> NumeratorParts | None:
    """The numerator link of a share (`numerator_parts`), or of a scoped count that is a share's
    numerator (`numerator_share`): online_cases counts the children with exploitation_type =
    online, the same cells as the registered cases by exploitation type. None otherwise, and
    for a table broken down by the dimension itself."""
    if indicator.kind == "percent":
        return numerator_parts(indicator, catalogue)
    share = numerator_share(indicator, catalogue)
    link = numerator_parts(share, catalogue) if share is not None else None
    if link is None or link.dimension in indicator.dimensions:
        return None
    if not set(indicator.dimensions) <= set(catalogue.indicator(link.population).dimensions):
        return None
    return link


NUMERATOR = "__numerator"


def numerator_naming(
    link: NumeratorParts, period: tuple[tuple[str, str], ...]
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[tuple[str, str], tuple[str, str]], ...]]:
    """The `scope` and `aliases` of the hidden table stating Σ parts = numerator: a table by
    (`dimension`, the share's dimensions) whose categories are the parts and whose total is the
    share's numerator cell. The scope gives every cell the parts' codes; the total, which has no
    code of `dimension`, also gets `(dimension, __numerator)` (and one per `extra` code), which
    the aliases rename to the share's `<share>__outcome = yes` (and to the `known:` marker)."""
    d = link.dimension
    marks = ((d, NUMERATOR), *((d, f"__{marker}") for marker, _ in link.extra))
    scope = (*period, *link.codes_of_parts, *marks)
    aliases = (
        ((d, NUMERATOR), (f"{link.share}__outcome", YES)),
        *(((d, f"__{marker}"), (marker, code)) for marker, code in link.extra),
    )
    return scope, aliases
