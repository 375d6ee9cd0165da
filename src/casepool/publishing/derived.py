"""Derived dimensions answered from a measured table of their finer dimension (post-processing).

A dimension of `schemas/indicators.yaml` that is the sum of another one's categories — a region
of its governorates (`derived: region`), an age group of its age bands or any other `derived:
group` — has a hierarchy (`Dimension.rollup`). A measured table by the finer dimension then
answers every cell by the coarser one: the cell is the sum of its finer cells, so its noisy
value is the sum of theirs and its variance the sum of their variances (the differential-privacy
answers count the cells they sum). Nothing new is measured and no budget is spent.

Used by `dp_answers` (counts and shares) and `dp_medians` (histograms of months): one rule for
every derived dimension, not a case per name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import polars as pl

from casepool.catalogue.indicators import IndicatorCatalogue

Sources = dict[str, tuple[str, Mapping[str, str]]]
# The last catalogue's sources: answering asks them for every table and pattern of a question,
# always of the one catalogue `load_indicators` keeps (a tuple, replaced whole).
_last: tuple[IndicatorCatalogue, Sources] | None = None


def sources(catalogue: IndicatorCatalogue) -> Sources:
    """Each derived dimension with a hierarchy: (the finer dimension it sums, fine code → its
    code). Region: (governorate, {DI: federal, ...}); age group: (age_band, {Y0T4: Y0T9, ...})."""
    global _last
    last = _last
    if last is not None and last[0] is catalogue:
        return last[1]
    out: Sources = {}
    for name, dimension in catalogue.dimensions.items():
        rollup = dimension.rollup
        if rollup is not None:
            fine, pairs = rollup
            out[name] = (fine, dict(pairs))
    _last = (catalogue, out)
    return out


def _chain(
    name: str, have: set[str], derived: Mapping[str, tuple[str, Mapping[str, str]]]
) -> list[str] | None:
    """The finer dimensions `name` is read through down to one in `have` ([] when `name` is in
    `have` itself), or None when `have` cannot give it."""
    chain: list[str] = []
    seen = {name}
    while name not in have:
        found = derived.get(name)
        if found is None or found[0] in seen:
            return None
        name = found[0]
        seen.add(name)
        chain.append(name)
    return chain


def covers(dims: Iterable[str], need: Iterable[str], catalogue: IndicatorCatalogue) -> bool:
    """A table of `dims` can give every cell fixing `need`: each needed dimension is one of
    `dims` or derived from one of them (a region from governorate, an age group from age band)."""
    have, derived = set(dims), sources(catalogue)
    return all(_chain(n, have, derived) is not None for n in need)


def summed(dims: Iterable[str], need: Iterable[str], catalogue: IndicatorCatalogue) -> set[str]:
    """The dimensions of a table of `dims` that a cell fixing `need` sums over (a question by
    region fixes a table's governorate through its region: governorate is not summed over)."""
    have, derived = set(dims), sources(catalogue)
    rest = have - set(need)
    for n in need:
        rest -= set(_chain(n, have, derived) or ())
    return rest


def with_derived(frame: pl.DataFrame, catalogue: IndicatorCatalogue) -> pl.DataFrame:
    """A measured table's cells with a column for each derived dimension its dimensions give
    (region beside governorate, age group beside age band), so cells can be grouped by either.
    A code outside the hierarchy gives a null (the stored grids hold only listed codes)."""
    derived = sources(catalogue)
    added = True
    while added:  # a dimension derived from a derived one: one more round
        added = False
        for name, (fine, mapping) in derived.items():
            if name not in frame.columns and fine in frame.columns:
                frame = frame.with_columns(
                    pl.col(fine).replace_strict(dict(mapping), default=None).alias(name)
                )
                added = True
    return frame


def lies_in(catalogue: IndicatorCatalogue, fine: str, coarse: str) -> dict[str, str] | None:
    """Each code of `fine` → the code of `coarse` it lies in, when `coarse` is derived from
    `fine` (directly or through another derived dimension); None when it is not."""
    derived = sources(catalogue)
    chain: list[Mapping[str, str]] = []
    name = coarse
    while name != fine:
        found = derived.get(name)
        if found is None or len(chain) > len(derived):
            return None
        chain.append(found[1])
        name = found[0]
    if not chain:
        return None
    out: dict[str, str] = {}
    for code in chain[-1]:
        up: str | None = code
        for mapping in reversed(chain):
            up = mapping.get(up) if up is not None else None
        if up is not None:
            out[code] = up
    return out


def within(
    catalogue: IndicatorCatalogue,
    name: str,
    code: str,
    where: Iterable[tuple[str, Iterable[str]]],
) -> bool:
    """Whether category `code` of `name` can hold a record the filters `where` keep: a filter
    on a coarser dimension keeps the finer categories inside it (region = KRI keeps KRI's
    governorates), a filter on a finer one the coarser categories holding it (age band = 0-4
    keeps the age group 0-9)."""
    for other, codes in where:
        if other == name:
            continue
        kept = set(codes)
        up = lies_in(catalogue, name, other)
        if up is not None and up.get(code) not in kept:
            return False
        down = lies_in(catalogue, other, name)
        if down is not None and not any(down.get(c) == code for c in kept):
            return False
    return True
