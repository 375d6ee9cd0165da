"""The LP audit of whole publication folders, one or several stacked, as an attacker reads them.

Every table of every folder (its tidy CSV) is read back into counts of children with identities,
exactly as the engine names them when it protects (casepool.publishing.protect): a count table's
cells; a share's numerator (`<share>__outcome = yes`) and denominator (`_T`) from the columns
published beside it, or the numerator worked out from the percentage and the denominator when
the rounding leaves one value; a median's or rate's count. A table without a period dimension,
and a period total, carry the period the folder covers. The engine's own link derivation
(`build_system`, which links cells of the same identity, and `protecting.releases.link`: a year
is the sum of its quarters and months) states what the catalogue implies across the tables and
folders; nothing is re-derived here.

The outsider, and each organisation whose own counts are given (a folder of the same layout with
its own counts), then solve the system with the project's LP audit: a hidden cell recovered
exactly, a primary cell narrower than the protection interval, or a published count in 1..k-1 is
a failure. The folders are taken to count the same data (releases made from changed data are
linked by the ledger, which keeps versions; folders alone cannot tell them apart).

What the flags tell depends on the folder's manifest (`flags`, schemas/protection.yaml). With
`distinct` flags (C primary, D secondary; a folder that does not say is read so, the
conservative side) every attacker reads a hidden count flagged C as ≥ 1, and a C cell needs the
protection interval. With `combined` flags (C for every suppressed cell) a flag tells nothing:
no cell is read as ≥ 1, and since any C cell may be primary, each needs the protection interval
unless the attacker's own bounds show that what it does not know of the cell is k or more (its
least value, less the attacker's own count): such a cell is no small count, and only its exact
recovery is a failure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from casepool.catalogue.indicators import IndicatorCatalogue, hierarchies, load_indicators
from casepool.catalogue.relations import linked_population, parts_of, subpopulation
from casepool.catalogue.tabulating import IN_NUMERATOR, NOT_IN_NUMERATOR
from casepool.core.errors import TableError, UsageError

TOTAL = "_T"
PERIOD = "period"
RESERVED = {"indicator", "unit", "value", "obs_status", "conf_status", "numerator", "denominator"}
PERCENT_DECIMALS = 1  # as published (casepool.publishing.protect)


@dataclass(frozen=True)
class ReleaseFinding:
    """One cell an attacker recovers or narrows too far, or a small count published."""

    attacker: str
    indicator: str  # the population the cell counts (as the engine names it)
    cell: dict[str, str]
    tables: list[str]  # folder/table where the cell appears
    conf_status: str
    lower: int
    upper: int | None
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "attacker": self.attacker,
            "indicator": self.indicator,
            "cell": self.cell,
            "tables": self.tables,
            "conf_status": self.conf_status,
            "lower": self.lower,
            "upper": self.upper,
            "verdict": self.verdict,
        }

    def label(self) -> str:
        codes = ", ".join(f"{d}={c}" for d, c in self.cell.items())
        return f"{self.indicator}[{codes}]"


@dataclass
class ReleaseAudit:
    """The verdict over one or more publication folders."""

    folders: list[str]
    tables: int
    cells: int
    suppressed: int
    links: int  # linear relations stated between cells (sums, periods)
    k: int
    protection_interval: int
    insiders: list[str] = field(default_factory=list)
    findings: list[ReleaseFinding] = field(default_factory=list)

    @property
    def protected(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "folders": self.folders,
            "protected": self.protected,
            "tables": self.tables,
            "cells": self.cells,
            "suppressed": self.suppressed,
            "links": self.links,
            "k": self.k,
            "protection_interval": self.protection_interval,
            "insiders": self.insiders,
            "failures": [f.to_dict() for f in self.findings],
        }


@dataclass
class _Read:
    """One published table as count cells: the engine's CountTable and, per row of its cells,
    whether the count is hidden and whether it is primary."""

    table: Any  # CountTable
    hidden: np.ndarray
    primary: np.ndarray
    # Hidden counts of a count table flagged C: primary, so never 0 (the methodology's "the
    # attacker reads the flags too"); not shares, whose C may stand for a small denominator.
    told: np.ndarray | None = None
    # From a folder with combined flags: its C marks a suppressed cell, primary or not.
    combined: bool = False


def _text(frame: pl.DataFrame, column: str) -> list[str | None]:
    if column not in frame.columns:
        return [None] * frame.height
    return [
        None if v is None or str(v).strip() == "" else str(v).strip()
        for v in frame[column].to_list()
    ]


def _ints(values: Sequence[str | None], label: str) -> list[int | None]:
    out: list[int | None] = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        try:
            number = float(v)
        except ValueError:
            raise TableError("protect-bad-count", table=label) from None
        if number < 0 or number != int(number):
            raise TableError("protect-bad-count", table=label)
        out.append(int(number))
    return out


def _numerator_from_share(percent: str | None, denominator: int | None) -> int | None:
    """The one numerator a published percentage (rounded to PERCENT_DECIMALS) allows, if one."""
    if percent is None or denominator is None or denominator <= 0:
        return None
    try:
        shown = float(percent)
    except ValueError:
        return None
    half = 0.5 * 10**-PERCENT_DECIMALS
    candidates = [
        n
        for n in range(denominator + 1)
        if abs(round(100 * n / denominator, PERCENT_DECIMALS) - shown) <= half / 10
    ]
    return candidates[0] if len(candidates) == 1 else None


def _scope(manifest: Mapping[str, Any], covers: Mapping[str, Any]) -> str:
    """The period a folder covers, named as the engine names it (publishing.releases)."""
    from casepool.publishing.releases import release_scope

    period = manifest.get("period")
    if period:
        return str(period)
    first, last = covers.get("first"), covers.get("last")
    return release_scope(
        None,
        date.fromisoformat(first) if first else None,
        date.fromisoformat(last) if last else None,
    )


def table_flags(path: str | Path) -> str:
    """The flags of a published table file as its publication's manifest says them (the table
    in `<folder>/csv/`, `<folder>/json/`... or beside the manifest); `distinct` when no manifest
    is found or it does not say."""
    here = Path(path).resolve().parent
    for folder in (here, here.parent):
        manifest = folder / "manifest.json"
        if manifest.is_file():
            try:
                said = json.loads(manifest.read_text(encoding="utf-8"))
                return folder_flags(said) if isinstance(said, dict) else "distinct"
            except (ValueError, UnicodeDecodeError):
                return "distinct"
    return "distinct"


def read_release_folder(
    folder: str | Path, catalogue: IndicatorCatalogue | None = None
) -> list[_Read]:
    """Every table of a publication folder as count cells with identities (see the module)."""
    from casepool.protecting import read_tidy_table

    catalogue = catalogue or load_indicators()
    root = Path(folder)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise UsageError("audit-not-a-publication", folder=root.name)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    combined = folder_flags(manifest) == "combined"
    out: list[_Read] = []
    for entry in manifest.get("tables") or []:
        name = str(entry.get("table"))
        if not entry.get("written", True):
            continue
        csv = root / "csv" / f"{name}.csv"
        if not csv.is_file():
            continue
        covers: Mapping[str, Any] = {}
        meta = root / "json" / f"{name}.json"
        if meta.is_file():
            covers = json.loads(meta.read_text(encoding="utf-8")).get("covers") or {}
        frame = read_tidy_table(csv)
        scope = _scope(manifest, covers)
        reads = _read_table(frame, f"{root.name}/{name}", catalogue, scope)
        if combined:
            reads = [replace(r, told=None, combined=True) for r in reads]
        out.extend(reads)
    return out


def folder_flags(manifest: Mapping[str, Any]) -> str:
    """The flags a publication folder's manifest says its suppressed cells carry: `combined`
    (C for every one) or `distinct` (C primary, D secondary); a manifest that does not say
    is read as distinct (a reader may have taken its C cells for ≥ 1)."""
    return "combined" if manifest.get("flags") == "combined" else "distinct"


def _read_table(
    frame: pl.DataFrame, label: str, catalogue: IndicatorCatalogue, scope: str
) -> list[_Read]:
    from casepool.protecting import CountTable

    if frame.height == 0:
        return []
    names = {str(v) for v in _text(frame, "indicator") if v}
    if len(names) != 1:
        raise TableError("protect-missing-column", table=label, column="indicator")
    indicator = catalogue.indicator(names.pop())
    dims = [c for c in frame.columns if c not in RESERVED and not c.startswith("_")]
    codes = [[c or TOTAL for c in _text(frame, d)] for d in dims]
    value = _text(frame, "value")
    obs = _text(frame, "obs_status")
    conf = [c or "C" for c in _text(frame, "conf_status")]
    shown = [v is not None and o != "Q" for v, o in zip(value, obs, strict=True)]
    key, extra = linked_population(indicator, catalogue)
    scope_codes = ((PERIOD, scope), *extra)
    multi = frozenset(d for d in dims if catalogue.dimension(d).multi)
    rows: list[tuple[list[str], int | None, bool]] = []  # codes, count (None hidden), primary
    out_dims = list(dims)
    kind = indicator.kind
    column: str | None = None  # the count column read (None for a share)
    if kind == "percent":
        outcome = f"{indicator.name}__outcome"
        out_dims.append(outcome)
        numerators = _ints(_text(frame, "numerator"), label)
        denominators = _ints(_text(frame, "denominator"), label)
        for r in range(frame.height):
            row = [c[r] for c in codes]
            num, den = numerators[r], denominators[r]
            if num is None and shown[r]:
                num = _numerator_from_share(value[r], den)
            first = conf[r] == "C"  # primary: the hidden part that made the share primary
            rows.append(([*row, IN_NUMERATOR], num, first and (den is not None or num is None)))
            rows.append(([*row, TOTAL], den, first and num is not None and den is None))
            # The children outside the numerator: known when both parts are, else hidden.
            rest = den - num if num is not None and den is not None else None
            rows.append(([*row, NOT_IN_NUMERATOR], rest, False))
    else:
        column = "value" if kind == "count" and "numerator" not in frame.columns else None
        column = column or ("numerator" if "numerator" in frame.columns else "denominator")
        counts = _ints(_text(frame, column), label)
        for r in range(frame.height):
            count = counts[r] if (column != "value" or shown[r]) else None
            rows.append(([c[r] for c in codes], count, conf[r] == "C" and count is None))
    cells = pl.DataFrame(
        {
            **{d: [row[0][i] for row in rows] for i, d in enumerate(out_dims)},
            "value": [row[1] or 0 for row in rows],
        },
        schema={**{d: pl.String for d in out_dims}, "value": pl.Int64},
    )
    table = CountTable(
        indicator=key,
        dimensions=tuple(out_dims),
        cells=cells,
        multi_valued=multi,
        name=label,
        scope=scope_codes,
        rollups=hierarchies(catalogue),  # a region is Σ its governorates, an age group Σ its bands
    )
    hidden = np.array([row[1] is None for row in rows], dtype=bool)
    primary = np.array([row[2] for row in rows], dtype=bool)
    told = primary & hidden if kind == "count" and column == "value" else None
    reads = [_Read(table, hidden, primary, told)]
    part = subpopulation(indicator, catalogue) if kind != "count" else None
    if part is not None:
        reads.append(_complement_read(part, dims, codes, multi, label, scope, table.rollups))
    link = parts_of(indicator, catalogue) if kind != "median" else None
    if link is not None and link.dimension not in dims:
        reads.append(_numerator_read(link, dims, codes, multi, label, scope, table.rollups))
    return reads


def _numerator_read(
    link: Any,
    dims: Sequence[str],
    codes: Sequence[Sequence[str]],
    multi: frozenset[str],
    label: str,
    scope: str,
    rollups: Any = (),
) -> _Read:
    """A share whose numerator is categories of its population, or a scoped count that is such a
    numerator (catalogue.relations.parts_of): those categories' cells by the table's codes sum
    to its numerator (the count's cells), as the engine states it (casepool.publishing.protect:
    a hidden table named by catalogue.relations.numerator_naming). The cells are read from the
    tables that publish them."""
    from casepool.catalogue.relations import numerator_naming

    d = link.dimension
    naming, aliases = numerator_naming(link, ((PERIOD, scope),))
    return _hidden_read(
        d,
        (*link.codes, TOTAL),
        dims,
        codes,
        indicator=link.key,
        multi_valued=multi | ({d} if link.multi else set()),
        name=f"{label}~{d}",
        scope=naming,
        aliases=aliases,
        rollups=rollups,  # the hierarchies, as the engine's hidden tables carry them
    )


def _complement_read(
    part: Any,
    dims: Sequence[str],
    codes: Sequence[Sequence[str]],
    multi: frozenset[str],
    label: str,
    scope: str,
    rollups: Any = (),
) -> _Read:
    """A share over `known:` / `recorded:` part of the population: its denominators + their
    complement = the population's cells of the same codes, as the engine states it
    (casepool.publishing.protect, a hidden table). The complement is published nowhere (or is
    the "not stated" category of a table that publishes it); the reader knows the relation."""
    from casepool.catalogue.relations import YES

    return _hidden_read(
        part.marker,
        (YES, "no", TOTAL),
        dims,
        codes,
        indicator=part.base,
        multi_valued=multi,
        name=f"{label}~{part.marker}",
        scope=((PERIOD, scope),),
        aliases=(((part.marker, "no"), part.complement_alias),) if part.complement_alias else (),
        rollups=rollups,
    )


def _hidden_read(
    first: str,
    first_codes: Sequence[str],
    dims: Sequence[str],
    codes: Sequence[Sequence[str]],
    **table: Any,
) -> _Read:
    """A hidden table stating a relation the reader knows: `first` (each of `first_codes`) by
    every row of the published table's codes, values unknown (zeros: the audit reads the
    relation, the values come from the tables that publish the cells), every cell hidden."""
    from casepool.protecting import CountTable

    rows = [
        (code, *(c[r] for c in codes))
        for r in range(len(codes[0]) if codes else 1)
        for code in first_codes
    ]
    out_dims = (first, *dims)
    cells = pl.DataFrame(
        {
            **{name: [row[i] for row in rows] for i, name in enumerate(out_dims)},
            "value": [0] * len(rows),
        },
        schema={**{name: pl.String for name in out_dims}, "value": pl.Int64},
    )
    hidden = CountTable(dimensions=out_dims, cells=cells, hidden=True, **table)
    return _Read(hidden, np.ones(len(rows), dtype=bool), np.zeros(len(rows), dtype=bool))


def _row_ids(grid: Any, table: Any) -> np.ndarray:
    lookups = [{c: i for i, c in enumerate(codes)} for codes in grid.codes]
    rows = table.cells.select(table.dimensions).iter_rows()
    return np.array(
        [grid.ids[tuple(lookups[d][c] for d, c in enumerate(row))] for row in rows],
        dtype=np.int64,
    )


def audit_releases(
    folders: Sequence[str | Path],
    *,
    insiders: Mapping[str, Sequence[str | Path]] | None = None,
    settings: Any = None,
    k: int | None = None,
    protection_interval: int | None = None,
) -> ReleaseAudit:
    """Audit one or more publication folders together (see the module docstring).

    `insiders`: organisation -> folders of its own counts, laid out as the publications (the
    same table names, the organisation's own count in `value`, `numerator` and `denominator`)."""
    from casepool import protecting
    from casepool.protecting.audit import (
        DOMINANCE_PUBLISHED,
        EXACT_LIMIT,
        OUTSIDER,
        SMALL_COUNT,
        Attacker,
        SystemAudit,
    )
    from casepool.protecting.lp import PROTECTED, TOO_NARROW, integer_bounds
    from casepool.protecting.releases import link
    from casepool.protecting.tables import build_system

    if not folders:
        raise UsageError("audit-no-folders")
    settings = settings or protecting.load_protection_settings()
    if k is not None:
        settings = settings.with_k(k)
    catalogue = load_indicators()
    reads = [r for folder in folders for r in read_release_folder(folder, catalogue)]
    if not reads:
        raise UsageError("audit-no-tables")
    system = build_system([r.table for r in reads], settings, check_margins=False)
    n = system.size
    hidden_somewhere = np.zeros(n, dtype=bool)
    shown_somewhere = np.zeros(n, dtype=bool)
    primary = np.zeros(n, dtype=bool)
    surely = np.zeros(n, dtype=bool)  # flagged primary by a folder with distinct flags
    told = np.zeros(n, dtype=bool)
    for grid, read in zip(system.grids, reads, strict=True):
        ids = _row_ids(grid, read.table)
        np.logical_or.at(hidden_somewhere, ids, read.hidden)
        np.logical_or.at(shown_somewhere, ids, ~read.hidden)
        np.logical_or.at(primary, ids, read.primary & read.hidden)
        if not read.combined:
            np.logical_or.at(surely, ids, read.primary & read.hidden)
        if read.told is not None:
            np.logical_or.at(told, ids, read.told)
    suppressed = hidden_somewhere & ~shown_somewhere  # a value shown anywhere is known
    conflict = _conflicting(system, reads)
    if conflict:
        raise UsageError("audit-folders-differ", table=conflict)
    linked = link(system, settings)
    width = np.array([settings.interval_for(int(x)) for x in linked.k])
    width = width if protection_interval is None else np.full(linked.k.size, protection_interval)
    need = np.where(primary, width, 1)
    if linked.unpublished is not None:
        need[linked.unpublished] = 0  # a `known:` complement: a relation, published nowhere
    findings: list[ReleaseFinding] = []
    for cell in np.flatnonzero(~suppressed & (system.value > 0) & (system.value < system.k)):
        value = int(system.value[cell])
        findings.append(_finding(system, int(cell), OUTSIDER, "F", value, value, SMALL_COUNT))
    attackers = [Attacker(OUTSIDER)]
    shown = ~suppressed & (system.value >= system.k)
    for name, own_folders in sorted((insiders or {}).items()):
        own = _own_counts(system, own_folders, catalogue, settings)
        if settings.dominance:
            # A published cell this organisation dominates gives it the others' small count.
            others = system.value - own
            for cell in np.flatnonzero(shown & (others >= 1) & (others < system.k) & (own > 0)):
                value = int(system.value[cell])
                findings.append(
                    _finding(system, int(cell), name, "F", value, value, DOMINANCE_PUBLISHED)
                )
        relations_only = None if linked.unpublished is None else np.where(linked.unpublished, 0, 1)
        attackers.append(Attacker(name, own, None, relations_only))
    owns = {a.name: a.own for a in attackers}
    # C cells only combined folders flag: maybe primary, maybe not (see the module docstring).
    unsure = primary & ~surely
    at_least = np.zeros(linked.size)
    at_least[:n] = np.where(told, 1.0, 0.0)
    auditor = SystemAudit(
        linked.equations,
        linked.inequalities,
        linked.value,
        floor=linked.floor,
        at_least=at_least,
    )
    for finding in auditor.check(
        suppressed, need, attackers, truth=None, exact=True, exact_limit=EXACT_LIMIT
    ):
        result = finding.result
        for j, cell in enumerate(finding.cells.tolist()):
            if result.verdicts[j] == PROTECTED:
                continue
            lo, hi = integer_bounds(result.lower[j], result.upper[j])
            if cell < n and unsure[cell] and result.verdicts[j] == TOO_NARROW:
                # A failing cell's bounds are its exact interval (bound_component solves both).
                mine = owns.get(finding.attacker)
                unknown = lo - (0 if mine is None else int(mine[cell]))
                if unknown >= int(system.k[cell]):
                    continue  # not a small count, whichever flag it had: only exactness counts
            status = "C" if primary[cell] else "D"
            findings.append(
                _finding(system, cell, finding.attacker, status, lo, hi, result.verdicts[j])
            )
    return ReleaseAudit(
        folders=[Path(f).name for f in folders],
        tables=len(reads),
        cells=n,
        # Published cells hidden; not the cells only a relation holds (hidden tables).
        suppressed=int(
            (suppressed if system.unpublished is None else suppressed & ~system.unpublished).sum()
        ),
        links=int(linked.equations.shape[0] + linked.inequalities.shape[0]),
        k=settings.k,
        protection_interval=settings.interval_for(settings.k)
        if protection_interval is None
        else protection_interval,
        insiders=sorted(insiders or {}),
        findings=findings,
    )


def _conflicting(system: Any, reads: Sequence[_Read]) -> str | None:
    """The first table that publishes a value another table publishes differently."""
    seen: dict[int, int] = {}
    for grid, read in zip(system.grids, reads, strict=True):
        ids = _row_ids(grid, read.table)
        values = read.table.cells["value"].to_list()
        for cell, value, hidden in zip(ids.tolist(), values, read.hidden.tolist(), strict=True):
            if hidden:
                continue
            if seen.setdefault(cell, value) != value:
                return str(read.table.label)
    return None


def _own_counts(
    system: Any, folders: Sequence[str | Path], catalogue: IndicatorCatalogue, settings: Any
) -> np.ndarray:
    """An organisation's own count in every cell of the system (0 where it did not say)."""
    index = {key: i for i, key in enumerate(system.keys)}
    own = np.zeros(system.size, dtype=np.int64)
    for folder in folders:
        for read in read_release_folder(folder, catalogue):
            table = read.table
            dims = list(table.dimensions)
            for row, value in zip(
                table.cells.select(dims).iter_rows(), table.cells["value"].to_list(), strict=True
            ):
                named = [(d, c) for d, c in zip(dims, row, strict=True) if c != TOTAL]
                present = {d for d, _ in named}
                named += [(d, c) for d, c in table.scope if d not in present]
                cell = index.get((table.indicator, tuple(sorted(named))))
                if cell is not None:
                    own[cell] = max(own[cell], int(value))
    return own


def _finding(
    system: Any, cell: int, attacker: str, status: str, lo: float, hi: float, verdict: str
) -> ReleaseFinding:
    indicator, codes = system.keys[cell]
    tables = sorted({str(system.grids[t].table.label) for t, _ in system.locations[cell]})
    upper = None if not np.isfinite(hi) else int(hi)
    return ReleaseFinding(attacker, indicator, dict(codes), tables, status, int(lo), upper, verdict)
