"""One linked system over a new release and the releases before it (see docs/methodology-disclosure-control.md).

`build_system` links the cells of tables by identity; this module adds what links releases:

- cells already released keep their status: a published cell cannot be suppressed now (it is
  known), a suppressed one stays suppressed (`CountTable.statuses`);
- a year is the sum of its quarters and of its months, a quarter the sum of its months, and a
  release over a span of months (the whole data: `2024-01..2025-12`) the sum of the months,
  quarters and years it meets, for every cell of the same data (same version) whose other codes
  agree: stacking a year's release on its quarters' releases, or the years' on the cumulative
  release, is one system;
- a cell the earlier releases alone already give away to an attacker is no failure of the new
  release (`KnownBefore`): nothing in it could change that;
- a cell counted again from changed data (a late or superseding package, a new organisation) is a
  cell of its own (`CountTable.version`), tied to the current one by a difference cell
  d = new − old. A difference in 1..k-1 (in absolute value) is primary: the change itself must
  not be recoverable within less than the protection interval. The difference may be negative
  (records removed by a supersession); when every difference between the two data versions is
  ≥ 0 (records only added), the attacker is assumed to know it and the difference cells are
  bounded below by 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import sparse

from casepool.core.errors import UsageError
from casepool.core.periods import parse_period
from casepool.protecting.audit import SystemAudit, engine_attackers
from casepool.protecting.lp import PROTECTED, ComponentProblem, verdict
from casepool.protecting.settings import ProtectionSettings
from casepool.protecting.tables import (
    CONF_STATUS,
    FREE,
    PRIMARY,
    CellSystem,
    CountTable,
)

PERIOD = "period"


def needs_linking(tables: Sequence[CountTable]) -> bool:
    return any(t.statuses is not None or t.version or t.scope for t in tables)


def _unpublished(system: CellSystem, blocked: np.ndarray, extra: int) -> np.ndarray | None:
    """Cells only hidden tables hold, less any released before as published (those are known)."""
    if system.unpublished is None:
        return None
    return np.concatenate([system.unpublished & ~blocked, np.zeros(extra, dtype=bool)])


def _status_masks(system: CellSystem, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells released before as published (blocked), as suppressed (forced), and as primary."""
    blocked = np.zeros(n, dtype=bool)
    forced = np.zeros(n, dtype=bool)
    primary = np.zeros(n, dtype=bool)
    for grid in system.grids:
        table = grid.table
        if table.statuses is None:
            continue
        dims = list(table.dimensions)
        lookups = [{c: i for i, c in enumerate(codes)} for codes in grid.codes]
        frame = table.statuses.select(*(pl.col(d).cast(pl.String) for d in dims), CONF_STATUS)
        for row in frame.iter_rows():
            try:
                position = tuple(lookups[d][c] for d, c in enumerate(row[:-1]))
            except KeyError:
                continue
            cell = int(grid.ids[position])
            if row[-1] == FREE:
                blocked[cell] = True
            else:
                forced[cell] = True
                primary[cell] |= row[-1] == PRIMARY
    return blocked, forced, primary


def _span_parts(code: str) -> list[list[str]]:
    """Ways a release's span of months (`2024-01..2025-12`, casepool.publishing.releases.
    release_scope) is the sum of periods: its months, the quarters it meets, the years it meets.

    A span is the first to the last registration month of the data it counts, so no child of the
    same data lies outside it: a quarter or year it only partly covers counts the same children
    as its part inside the span. An attacker who holds the whole-period release and the
    releases of its years (or quarters, or months) can therefore subtract; the engine links them.
    """
    first, sep, last = code.partition("..")
    if not sep:
        return []
    try:
        start, end = parse_period(first), parse_period(last)
    except UsageError:
        return []
    if start.kind != "month" or end.kind != "month" or end.start < start.start:
        return []
    months = []
    year, month = start.start.year, start.start.month
    while (year, month) <= (end.start.year, end.start.month):
        months.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    quarters = list(dict.fromkeys(f"{y}-Q{(m - 1) // 3 + 1}" for y, m in months))
    years = list(dict.fromkeys(str(y) for y, _ in months))
    return [[f"{y}-{m:02d}" for y, m in months], quarters, years]


def _period_parts(code: str) -> list[list[str]]:
    """Ways a period is the sum of smaller ones: a year of quarters and of months, a quarter of
    months, a release's span of months of its months, quarters and years."""
    if ".." in code:
        return _span_parts(code)
    try:
        period = parse_period(code)
    except UsageError:
        return []
    year = period.start.year
    if period.kind == "year":
        return [[f"{year}-Q{q}" for q in range(1, 5)], [f"{year}-{m:02d}" for m in range(1, 13)]]
    if period.kind == "quarter":
        first = period.start.month
        return [[f"{year}-{m:02d}" for m in range(first, first + 3)]]
    return []


def _hierarchy_rows(keys: list[tuple[str, tuple[tuple[str, str], ...]]]) -> list[list[int]]:
    """[parent, part, part, ...] for every period that is the sum of parts all present."""
    index = {key: i for i, key in enumerate(keys)}
    rows = []
    for cell, (tag, codes) in enumerate(keys):
        named = dict(codes)
        code = named.get(PERIOD)
        if code is None:
            continue
        for parts in _period_parts(code):
            found = []
            for part in parts:
                other = dict(named)
                other[PERIOD] = part
                found.append(index.get((tag, tuple(sorted(other.items())))))
            if all(f is not None for f in found):
                rows.append([cell, *(int(f) for f in found if f is not None)])
    return rows


def _without_span(codes: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...] | None:
    """The codes without their period when the period is a span of months, else None."""
    named = dict(codes)
    if ".." not in named.get(PERIOD, ""):
        return None
    return tuple(item for item in codes if item[0] != PERIOD)


def _current_whole_data_cells(
    keys: list[tuple[str, tuple[tuple[str, str], ...]]],
) -> dict[tuple[str, tuple[tuple[str, str], ...] | None], int]:
    """Current-data cells of a whole-data release, by indicator and codes other than the span.

    The current data have one span; should two appear, neither is used (fail towards more
    versioned cells without a difference, never towards a wrong equation)."""
    found: dict[tuple[str, tuple[tuple[str, str], ...] | None], int] = {}
    spans: set[str] = set()
    for cell, (tag, codes) in enumerate(keys):
        rest = _without_span(codes)
        if "#" in tag or rest is None:
            continue
        spans.add(dict(codes)[PERIOD])
        found[(tag, rest)] = cell
    return found if len(spans) == 1 else {}


def link(system: CellSystem, settings: ProtectionSettings) -> CellSystem:
    """The system with earlier releases' statuses fixed, period hierarchies and difference cells."""
    n = system.size
    blocked, forced, old_primary = _status_masks(system, n)
    if system.unpublished is not None:
        forced |= system.unpublished & ~blocked
    index = {key: i for i, key in enumerate(system.keys)}
    # Difference cells: a versioned cell and the current cell of the same identity. A release
    # over the whole data is named by its span, which grows with the data (2024-01..2025-12,
    # then 2024-01..2026-01): its cells and the current whole-data cells count "every child"
    # both, so they are the same identity for the difference.
    whole = _current_whole_data_cells(system.keys)
    pairs: list[tuple[int, int, str]] = []
    for cell, (tag, codes) in enumerate(system.keys):
        if "#" not in tag:
            continue
        base, version = tag.split("#", 1)
        current = index.get((base, codes))
        if current is None:
            current = whole.get((base, _without_span(codes)))
        if current is not None:
            pairs.append((current, cell, version))
    added_only: dict[str, bool] = {}
    for current, old, version in pairs:
        if system.value[current] < system.value[old]:
            added_only[version] = False
        else:
            added_only.setdefault(version, True)
    # Only a difference in 1..k-1 needs a cell of its own; any other change of data known to
    # add records only is an inequality old ≤ new, and one that may remove records says nothing.
    ordered: list[tuple[int, int]] = []
    small: list[tuple[int, int, str]] = []
    for current, old, version in pairs:
        change = abs(int(system.value[current]) - int(system.value[old]))
        if 1 <= change < int(system.k[current]):
            small.append((current, old, version))
        elif added_only.get(version, False):
            ordered.append((old, current))
    pairs = small
    m = len(pairs)
    total = n + m
    diff_value = np.array(
        [system.value[c] - system.value[o] for c, o, _ in pairs], dtype=np.int64
    ).reshape(-1)
    value = np.concatenate([system.value, diff_value])
    k = np.concatenate([system.k, np.array([system.k[c] for c, _, _ in pairs], dtype=np.int64)])
    cost = np.concatenate([system.cost, np.full(m, np.inf)])
    floor = np.zeros(total)
    for j, (_, _, version) in enumerate(pairs):
        if not added_only.get(version, False):
            floor[n + j] = -np.inf
    keys = list(system.keys) + [
        (f"{system.keys[c][0]}~{version}", system.keys[c][1]) for c, _, version in pairs
    ]
    rows: list[tuple[list[int], list[float]]] = []
    for j, (current, old, _) in enumerate(pairs):
        rows.append(([current, old, n + j], [1.0, -1.0, -1.0]))  # new − old − d = 0
    for row in _hierarchy_rows(system.keys):
        rows.append((row, [-1.0] + [1.0] * (len(row) - 1)))  # Σ parts − whole = 0
    equations = sparse.hstack([system.equations, sparse.csr_matrix((system.equations.shape[0], m))])
    if rows:
        data = np.concatenate([np.asarray(c, dtype=float) for _, c in rows])
        indices = np.concatenate([np.asarray(r, dtype=np.int64) for r, _ in rows])
        indptr = np.concatenate([[0], np.cumsum([len(r) for r, _ in rows])])
        extra = sparse.csr_matrix((data, indices, indptr), shape=(len(rows), total))
        equations = sparse.vstack([equations, extra])
    inequalities = sparse.hstack(
        [system.inequalities, sparse.csr_matrix((system.inequalities.shape[0], m))]
    )
    if ordered:
        data = np.tile([1.0, -1.0], len(ordered))
        indices = np.asarray(ordered, dtype=np.int64).reshape(-1)
        indptr = np.arange(0, 2 * len(ordered) + 1, 2)
        extra = sparse.csr_matrix((data, indices, indptr), shape=(len(ordered), total))
        inequalities = sparse.vstack([inequalities, extra])
    difference_primary = np.zeros(total, dtype=bool)
    magnitude = np.abs(value[n:])
    difference_primary[n:] = (magnitude >= 1) & (magnitude < k[n:])
    primary_extra = np.concatenate([old_primary, np.zeros(m, dtype=bool)]) | difference_primary
    own = {
        name: np.concatenate([mine, np.zeros(m, dtype=np.int64)])
        for name, mine in system.own.items()
    }
    linked = CellSystem(
        keys=keys,
        value=value,
        cost=cost,
        k=k,
        grids=system.grids,
        locations=list(system.locations) + [[] for _ in range(m)],
        equations=equations.tocsr(),
        inequalities=inequalities.tocsr(),
        own=own,
        blocked=np.concatenate([blocked, np.zeros(m, dtype=bool)]),
        forced=np.concatenate([forced, np.ones(m, dtype=bool)]),
        floor=floor,
        primary_extra=primary_extra,
        unpublished=_unpublished(system, blocked, m),
    )
    return linked


def told_cells(system: CellSystem, settings: ProtectionSettings) -> np.ndarray:
    """Cells some published table flags with a status that tells a reader something: a table of
    a release with distinct flags (C primary, D secondary) tells that a C cell is not 0, for
    ever; one with combined flags (C for every suppressed cell) tells nothing. A table of the
    release being made tells what the settings' `flags` say; an earlier one what the ledger
    recorded for its release (`CountTable.flags_told`); a hidden table tells nothing."""
    telling = np.array(
        [
            not grid.table.hidden
            and (settings.flags_told if grid.table.flags_told is None else grid.table.flags_told)
            for grid in system.grids
        ],
        dtype=bool,
    )
    out = np.zeros(system.size, dtype=bool)
    if not telling.any():
        return out
    for cell, where in enumerate(system.locations):
        out[cell] = any(telling[t] for t, _ in where)
    return out


class KnownBefore:
    """Whether the earlier releases alone already give a cell away to an attacker: the cell's
    interval with every cell of the new release hidden. Asked only for cells the engine cannot
    protect, so the big system is solved for a few cells, not for all."""

    def __init__(
        self,
        system: CellSystem,
        settings: ProtectionSettings,
        at_least: np.ndarray | None = None,
    ) -> None:
        # `at_least`: what the flags tell (a cell flagged C is not 0). A cell those flags and
        # the earlier releases pin is no more the new release's to protect than one the
        # earlier releases pin alone: no choice of suppressions can widen it.
        assert system.blocked is not None
        self.system = system
        self.hidden = ~system.blocked
        self.auditor = SystemAudit(
            system.equations,
            system.inequalities,
            system.value,
            floor=system.floor,
            at_least=at_least,
        )
        self.attackers = {a.name: a for a in engine_attackers(system, settings)}
        self.width = np.array([settings.interval_for(int(k)) for k in system.k])
        self._components: list[np.ndarray] | None = None
        self._seen: dict[tuple[str, int], bool] = {}
        self._label = np.empty(0, dtype=np.int64)  # each cell's component (−1: published)
        self._problems: dict[tuple[str, int], ComponentProblem] = {}

    def __call__(self, cell: int, attacker: str, need: int) -> bool:
        key = (attacker, cell)
        if key not in self._seen:
            self._seen[key] = self._given_away(cell, attacker, need)
        return self._seen[key]

    def _given_away(self, cell: int, attacker: str, need: int) -> bool:
        if self._components is None:
            self._components = self.auditor.components(self.hidden)
            self._label = np.full(self.system.size, -1, dtype=np.int64)
            for i, group in enumerate(self._components):
                self._label[group] = i
        which = int(self._label[cell])
        if which < 0:
            return True  # published by an earlier release
        component = self._components[which]
        # One LP model per component and attacker, re-solved warm for each cell asked about.
        problem = self._problems.get((attacker, which))
        if problem is None:
            problem = self.auditor.problem(component, self.hidden, self.attackers[attacker])
            self._problems[(attacker, which)] = problem
        j = int(np.searchsorted(component, cell))
        objective = np.zeros(component.size)
        objective[j] = -1.0
        high = problem.solve(objective)[j]
        objective[j] = 1.0
        low = problem.solve(objective)[j]
        high = np.inf if high >= problem.cap - 0.5 else high
        own = self.attackers[attacker].own
        mine = None if own is None else float(own[cell])
        return verdict(low, high, need, mine) != PROTECTED
