"""The LP audit: every suppressed cell's feasible interval, for an outsider and for each insider."""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from casepool.core.errors import TableError
from casepool.protecting.lp import (
    DISCLOSED,
    PROTECTED,
    TOO_NARROW,
    Bounding,
    ComponentProblem,
    ComponentResult,
    integer_bounds,
)
from casepool.protecting.primary import dominated_cells
from casepool.protecting.settings import ProtectionSettings
from casepool.protecting.tables import (
    CONF_STATUS,
    INDICATOR,
    OBS_STATUS,
    PRIMARY,
    RESERVED_COLUMNS,
    SECONDARY,
    VALUE,
    CellSystem,
    CountTable,
    build_system,
    frame_key,
    reused,
)

OUTSIDER = "outsider"
PARALLEL_MIN_WORK = 600  # cells × attackers in one check below which no helper process is used
EXACT_LIMIT = 400  # linked suppressed cells up to which the audit reports exact intervals
SOLE = "sole"  # in an insider's file: the insider knows it is the only contributor to the cell
# In an insider's file: the insider dominates the cell (the others count 1..k-1 children there),
# so its interval must be as wide as the protection interval.
DOMINANT = "dominant"
DOMINANCE_PUBLISHED = "dominance-published"
SMALL_COUNT = "small-count-published"
__all__ = [
    "DISCLOSED",
    "DOMINANCE_PUBLISHED",
    "PROTECTED",
    "SMALL_COUNT",
    "TOO_NARROW",
    "AuditReport",
    "audit",
]


@dataclass(frozen=True, eq=False)
class Attacker:
    """Who tries to recover suppressed cells: an outsider, or an insider with its own counts."""

    name: str
    own: np.ndarray | None = None  # lower bounds: the insider's own count in every cell
    fixed: np.ndarray | None = None  # cells the insider knows exactly (its own alone)
    # Interval width the insider must not get below, per cell (None: 1, i.e. not recovered);
    # the protection interval where the insider dominates the cell (primary.dominated_cells).
    need: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class ComponentFinding:
    """The audit of one connected set of suppressed cells against one attacker."""

    cells: np.ndarray
    attacker: str
    result: ComponentResult
    exact: bool = False


def _cap(published: np.ndarray) -> float:
    # Stands for "unbounded": far above any value the published cells allow for a bounded cell.
    return 1000.0 + 10.0 * float(np.abs(published).sum())


@dataclass(eq=False)
class SystemAudit:
    """Audits one linked system of cells under changing sets of suppressed cells, with a cache."""

    equations: sparse.csr_matrix
    inequalities: sparse.csr_matrix
    values: np.ndarray  # true or published values; entries of suppressed cells are never read
    cache: dict[tuple[str, bytes], ComponentFinding] = field(default_factory=dict)
    # Audits that stopped at their first failure (`first_failure`, `stop_at_failure`), with the
    # failing cell: partial, so only for those modes, and only while that cell is not exempt.
    failed: dict[tuple[str, bytes], tuple[ComponentFinding, int]] = field(default_factory=dict)
    # The stopped work of those audits, for the components of the last check: when the failing
    # cell becomes exempt, the audit goes on from where it stopped (same HiGHS model, every cell
    # settled kept) instead of starting again.
    stopped: dict[tuple[str, bytes], Bounding] = field(default_factory=dict)
    solver: str = "highs-warm"
    solves: int = 0
    # Least value of each cell: 0 for counts, −∞ for a difference that may be negative.
    floor: np.ndarray | None = None
    # Least value the published flags tell every attacker, where it is above the floor: a
    # count flagged C (primary) is 1..k-1 or dominated, so never 0 (the engine sets 1 there).
    at_least: np.ndarray | None = None
    # Feasible tables seen so far, as deviations from the truth (cells, values): a table found
    # feasible stays feasible while every cell it moves stays suppressed.
    pool: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    pool_limit: int = 2000
    # Processes for the components of one check (None: audit_workers()), and the least work
    # (cells × attackers to solve) worth sending to a helper process.
    workers: int | None = None
    parallel_min_work: int = PARALLEL_MIN_WORK
    _flat: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    _repeats: bool = False  # a pooled table moves a cell twice (`_seen` then takes the grid)

    def remember(self, cells: np.ndarray, points: Sequence[np.ndarray], truth: np.ndarray) -> None:
        """Keep feasible tables (values of `cells`) to settle later audits without an LP."""
        base = truth[cells]
        for point in points:
            moved = np.abs(point - base) > 1e-9
            if moved.any():
                self.add_table(cells[moved], point[moved])

    def add_table(self, cells: np.ndarray, values: np.ndarray) -> None:
        """Keep one feasible table, given by the cells it moves away from the truth (a table
        that moves a cell below what the flags tell, `at_least`, is not feasible: dropped)."""
        if self.at_least is not None and (values < self.at_least[cells] - 1e-9).any():
            return
        if np.unique(cells).size != cells.size:
            self._repeats = True
        self.pool.append((cells, values.astype(float)))
        if len(self.pool) > self.pool_limit:
            del self.pool[: len(self.pool) - self.pool_limit]
        self._flat = None

    def _flattened(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._flat is None:
            if self.pool:
                cells = np.concatenate([c for c, _ in self.pool])
                values = np.concatenate([v for _, v in self.pool])
                owner = np.repeat(np.arange(len(self.pool)), [c.size for c, _ in self.pool])
            else:
                cells, values, owner = (np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64))
            self._flat = (cells, values, owner)
        return self._flat

    def _pooled(
        self, components: list[np.ndarray], suppressed: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per component, the pooled entries (table, cell, value) still feasible, in pool order.

        One pass: a table is stale when it moves a cell now published; the entries left are
        sorted by component (stably, so each keeps the pool's order) and cut."""
        cells, values, owner = self._flattened()
        labels = np.full(suppressed.size, -1, dtype=np.int64)
        for i, group in enumerate(components):
            labels[group] = i
        stale = np.zeros(len(self.pool), dtype=bool)
        stale[owner[~suppressed[cells]]] = True
        label = labels[cells]
        chosen = np.flatnonzero(~stale[owner] & (label >= 0))
        chosen = chosen[np.argsort(label[chosen], kind="stable")]
        edges = np.searchsorted(label[chosen], np.arange(len(components) + 1))
        out = []
        for i in range(len(components)):
            part = chosen[edges[i] : edges[i + 1]]
            out.append((owner[part], cells[part], values[part]))
        return out

    @staticmethod
    def _seen(
        entries: tuple[np.ndarray, np.ndarray, np.ndarray],
        cells: np.ndarray,
        truth: np.ndarray,
        problem: ComponentProblem,
        repeats: bool = False,
        layout: _Layout | None = None,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The range of the pooled tables within `cells` that respect this attacker's bounds,
        and of the truth (`truth[cells]`): what `_seen_dense` gives once the truth is added,
        which `bound_component` always does. Computed on the moved entries alone (`repeats`:
        some table moves a cell twice, where the grid keeps one value: the grid is used);
        `layout` is `_Layout.of(entries, cells)`, the same for every attacker of a component."""
        if repeats:
            return SystemAudit._seen_dense(entries, cells, truth, problem)
        owner = entries[0]
        if owner.size == 0:
            return None
        if layout is None:
            layout = _Layout.of(entries, cells)
        # The entries in the layout's order (by cell): the same set, so the same tables found.
        row, at, ordered, tables = layout.row, layout.at, layout.values, layout.tables
        lower, upper = problem.lower - 1e-9, problem.upper + 1e-9
        base = truth[cells].astype(float)
        bad = np.zeros(tables, dtype=bool)
        bad[row[(ordered < lower[at]) | (ordered > upper[at])]] = True
        off = (base < lower) | (base > upper)  # a table must move these cells to be feasible
        if off.any():
            bad |= np.bincount(row[off[at]], minlength=tables) < int(off.sum())
        if bad.all():
            return None
        # Each cell's least and greatest value over the tables kept (np.minimum.at and
        # np.maximum.at over the entries, as sorted runs per cell: the same numbers).
        if bad.any():
            dropped = bad[row]
            least = np.minimum.reduceat(np.where(dropped, np.inf, ordered), layout.starts)
            most = np.maximum.reduceat(np.where(dropped, -np.inf, ordered), layout.starts)
        else:
            least, most = layout.ranges()
        low, high = base.copy(), base.copy()
        where = layout.cells
        low[where] = np.minimum(low[where], least)
        high[where] = np.maximum(high[where], most)
        return low, high

    @staticmethod
    def _seen_dense(
        entries: tuple[np.ndarray, np.ndarray, np.ndarray],
        cells: np.ndarray,
        truth: np.ndarray,
        problem: ComponentProblem,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """`_seen` on a dense grid of every pooled table (the plain path, kept for the tests and
        for a table that moves a cell twice)."""
        owner, moved, values = entries
        if owner.size == 0:
            return None
        row = _runs(owner)  # np.unique(owner, return_inverse=True)[1], without sorting
        grid = np.tile(truth[cells].astype(float), (int(row.max()) + 1, 1))
        grid[row, np.searchsorted(cells, moved)] = values
        within = (grid >= problem.lower - 1e-9).all(axis=1) & (grid <= problem.upper + 1e-9).all(
            axis=1
        )
        if not within.any():
            return None
        grid = grid[within]
        return grid.min(axis=0), grid.max(axis=0)

    def __post_init__(self) -> None:
        self._eq_csc = self.equations.tocsc()
        self._ub_csc = self.inequalities.tocsc()
        self._cap = _cap(self.values)

    def components(self, suppressed: np.ndarray) -> list[np.ndarray]:
        """Sets of suppressed cells linked through additivity rows; each is audited on its own."""
        cells = np.flatnonzero(suppressed)
        if cells.size == 0:
            return []
        incidence = sparse.vstack([self._eq_csc[:, cells], self._ub_csc[:, cells]]).tocsr()
        incidence.data[:] = 1.0
        linked = (incidence.T @ incidence).tocsr()
        count, labels = connected_components(linked, directed=False)
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(count + 1))
        groups = [cells[order[bounds[i] : bounds[i + 1]]] for i in range(count)]
        return sorted(groups, key=lambda g: int(g[0]))

    def rows_of(
        self, cells: np.ndarray, suppressed: np.ndarray
    ) -> list[tuple[sparse.csr_matrix, np.ndarray]]:
        """The equations and inequalities of a component: its columns and right-hand sides
        (the same for every attacker)."""
        published = np.where(suppressed, 0, self.values).astype(float)
        parts = []
        for csc, csr in ((self._eq_csc, self.equations), (self._ub_csc, self.inequalities)):
            rows = np.unique(csc[:, cells].indices)
            block = csr[rows]
            parts.append((block[:, cells].tocsr(), -(block @ published)))
        return parts

    def problem(
        self,
        cells: np.ndarray,
        suppressed: np.ndarray,
        attacker: Attacker,
        rows: list[tuple[sparse.csr_matrix, np.ndarray]] | None = None,
    ) -> ComponentProblem:
        """The attacker's LP over one component (`rows`: `rows_of` it, when already known)."""
        parts = self.rows_of(cells, suppressed) if rows is None else rows
        n = cells.size
        lower = np.zeros(n) if attacker.own is None else attacker.own[cells].astype(float)
        if self.floor is not None:
            free = ~np.isfinite(self.floor[cells])
            lower = np.where(free, -self._cap, lower)
        if self.at_least is not None:
            told = self.at_least[cells]
            lower = np.where(told > 0, np.maximum(lower, told), lower)
        upper = np.full(n, self._cap)
        if attacker.fixed is not None:
            upper = np.where(attacker.fixed[cells], lower, upper)
        (a_eq, b_eq), (a_ub, b_ub) = parts
        return ComponentProblem(a_eq, b_eq, a_ub, b_ub, lower, upper, self._cap, self.solver)

    def check(
        self,
        suppressed: np.ndarray,
        need: np.ndarray,
        attackers: Sequence[Attacker],
        truth: np.ndarray | None = None,
        exact: bool = False,
        stop_at_failure: bool = False,
        exact_limit: int | None = None,
        exempt: Mapping[str, np.ndarray] | None = None,
        first_failure: bool = False,
    ) -> list[ComponentFinding]:
        """Audit every component for every attacker that knows something in it.

        `stop_at_failure` answers only "is everything protected?": it returns at the first
        failure, whose findings are partial. `first_failure` audits every component for every
        attacker but stops each audit at its first failing cell: what `_failures` reads of the
        findings (each finding's first failing cell, exempt cells left out) is what the full
        audit gives, for fewer LPs. With `exact_limit`, exact intervals
        are computed only for components of at most that many cells. `exempt` (per attacker:
        cells earlier releases already give it) are cells whose verdicts the caller ignores:
        no LP is spent on them, no failure there stops the work, and their verdicts in the
        findings are not proven. A caller passing `exempt` must pass, on later calls to the
        same auditor, the same cells or more (cached findings are re-used).
        """
        components = self.components(suppressed)
        pooled = _Pool(self, components, suppressed) if truth is not None else None
        current = {cells.tobytes() for cells in components}
        for key in [key for key in self.stopped if key[1] not in current]:
            del self.stopped[key]  # bounded memory: a component gone keeps no HiGHS model
        if stop_at_failure:
            return self._check_in_order(
                components, pooled, suppressed, need, attackers, truth, exact, exact_limit, exempt
            )
        # Every component's audit is planned first (the pooled tables are those at the start, as
        # in order), then run here and, for a share of the components, in a helper process;
        # results are taken in component and attacker order, so the outcome is the same.
        plans: list[list[ComponentFinding | _Job]] = []
        for c, cells in enumerate(components):
            plan: list[ComponentFinding | _Job] = []
            rows: list[tuple[sparse.csr_matrix, np.ndarray]] | None = None
            for attacker in attackers:
                if attacker.own is not None and not attacker.own[cells].any():
                    continue  # knows nothing here beyond the outsider: the outsider audit covers it
                key = (attacker.name, cells.tobytes())
                found = self.cache.get(key)
                if found is None and first_failure:
                    found = self._failed(key, exempt)
                if found is not None:
                    plan.append(found)
                    continue
                job = self._resumed(key, cells, exempt) if first_failure else None
                if job is None:
                    rows = rows if rows is not None else self.rows_of(cells, suppressed)
                    job = self._job(
                        cells, suppressed, need, attacker, truth, exact, exact_limit, rows
                    )
                    job.skip = _skip(exempt, attacker.name, cells)
                    job.stop = first_failure
                    if pooled is not None and truth is not None:
                        job.seen = pooled.seen(c, truth, job.problem)
                plan.append(job)
            plans.append(plan)
        results = _run_jobs(
            [[j for j in plan if isinstance(j, _Job)] for plan in plans],
            shared=truth is None,
            workers=self.workers,
            min_work=self.parallel_min_work,
        )
        findings: list[ComponentFinding] = []
        for cells, plan, done in zip(components, plans, results, strict=True):
            made = iter(done)
            for step in plan:
                if isinstance(step, ComponentFinding):
                    findings.append(step)
                    continue
                result, work = next(made)
                self.solves += result.solves
                if truth is not None:
                    self.remember(cells, result.points, truth)
                found = ComponentFinding(cells, step.attacker, result, step.exact)
                failing = _first_failing(result, step.skip) if step.stop else None
                key = (step.attacker, cells.tobytes())
                if failing is None:
                    self.cache[key] = found
                    self.stopped.pop(key, None)
                else:
                    self.failed[key] = (found, int(cells[failing]))
                    if work is not None:
                        self.stopped[key] = work
                findings.append(found)
        return findings

    def _resumed(
        self, key: tuple[str, bytes], cells: np.ndarray, exempt: Mapping[str, np.ndarray] | None
    ) -> _Job | None:
        """The stopped audit of this component and attacker, to go on with the cells exempt now
        (its failing cell among them: `_failed` found it no longer counts), or None."""
        work = self.stopped.pop(key, None)
        if work is None:
            return None
        skip = None if exempt is None else exempt.get(key[0])
        here = None if skip is None else skip[cells].copy()
        job = _Job(key[0], work.problem, work.need, work.own, None, work.exact)
        job.skip, job.stop, job.work = here, True, work
        return job

    def _failed(
        self, key: tuple[str, bytes], exempt: Mapping[str, np.ndarray] | None
    ) -> ComponentFinding | None:
        """A kept audit that stopped at its first failure, while that cell is still not exempt
        (exempt cells only ever grow: cells before it stay protected or exempt)."""
        kept = self.failed.get(key)
        if kept is None:
            return None
        mask = None if exempt is None else exempt.get(key[0])
        if mask is not None and mask[kept[1]]:
            return None
        return kept[0]

    def _job(
        self,
        cells: np.ndarray,
        suppressed: np.ndarray,
        need: np.ndarray,
        attacker: Attacker,
        truth: np.ndarray | None,
        exact: bool,
        exact_limit: int | None,
        rows: list[tuple[sparse.csr_matrix, np.ndarray]] | None = None,
    ) -> _Job:
        """One component's audit against one attacker, ready to run anywhere."""
        problem = self.problem(cells, suppressed, attacker, rows)
        if attacker.own is None:
            cell_need = need[cells]
        elif attacker.need is not None:
            cell_need = attacker.need[cells].astype(float)
        else:
            cell_need = np.ones(cells.size)
        own = None if attacker.own is None else attacker.own[cells]
        cell_truth = None if truth is None else truth[cells]
        exact_here = exact and (exact_limit is None or cells.size <= exact_limit)
        return _Job(attacker.name, problem, cell_need, own, cell_truth, exact_here)

    def _check_in_order(
        self,
        components: list[np.ndarray],
        pooled: _Pool | None,
        suppressed: np.ndarray,
        need: np.ndarray,
        attackers: Sequence[Attacker],
        truth: np.ndarray | None,
        exact: bool,
        exact_limit: int | None,
        exempt: Mapping[str, np.ndarray] | None = None,
    ) -> list[ComponentFinding]:
        """`check` one audit after the other, returning at the first failure (not in `exempt`)."""
        findings: list[ComponentFinding] = []
        for c, cells in enumerate(components):
            shared: list[np.ndarray] = []  # without the truth: tables found for earlier attackers
            rows: list[tuple[sparse.csr_matrix, np.ndarray]] | None = None
            for attacker in attackers:
                if attacker.own is not None and not attacker.own[cells].any():
                    continue  # knows nothing here beyond the outsider: the outsider audit covers it
                key = (attacker.name, cells.tobytes())
                found = self.cache.get(key)
                if found is None:
                    stopped = self._failed(key, exempt)
                    if stopped is not None:  # what solving it again would find
                        findings.append(stopped)
                        return findings
                if found is None:
                    job = self._resumed(key, cells, exempt)
                    if job is None:
                        rows = rows if rows is not None else self.rows_of(cells, suppressed)
                        job = self._job(
                            cells, suppressed, need, attacker, truth, exact, exact_limit, rows
                        )
                        job.skip = _skip(exempt, attacker.name, cells)
                        if pooled is not None and truth is not None:
                            job.seen = pooled.seen(c, truth, job.problem)
                        elif shared:
                            job.seen = _within(shared, job.problem)
                    result = job.run(stop_at_failure=True)
                    self.solves += result.solves
                    if truth is not None:
                        self.remember(cells, result.points, truth)
                    else:
                        shared.extend(result.points)
                    found = ComponentFinding(cells, attacker.name, result, job.exact)
                    failing = _first_failing(result, job.skip)
                    if failing is not None:
                        self.failed[key] = (found, int(cells[failing]))
                        if job.work is not None:
                            self.stopped[key] = job.work
                        findings.append(found)
                        return findings
                    self.cache[key] = found
                findings.append(found)
        return findings


@dataclass(eq=False)
class _Job:
    """One component's LP audit against one attacker (picklable: run in a helper process)."""

    attacker: str
    problem: ComponentProblem
    need: np.ndarray
    own: np.ndarray | None
    truth: np.ndarray | None
    exact: bool
    seen: tuple[np.ndarray, np.ndarray] | None = None
    skip: np.ndarray | None = None  # cells whose verdict nobody reads (see SystemAudit.check)
    stop: bool = False  # stop at the first failing cell (SystemAudit.check's first_failure)
    work: Bounding | None = None  # the work itself, once started (or resumed)

    def run(self, stop_at_failure: bool = False) -> ComponentResult:
        if self.work is None:
            self.work = Bounding(
                self.problem, self.need, self.own, self.truth, self.exact, self.seen, self.skip
            )
        else:
            self.work.resume(self.skip)
        return self.work.run(stop_at_failure or self.stop)


def _skip(
    exempt: Mapping[str, np.ndarray] | None, attacker: str, cells: np.ndarray
) -> np.ndarray | None:
    """The cells of a component exempt for this attacker, or None when there are none."""
    mask = None if exempt is None else exempt.get(attacker)
    if mask is None:
        return None
    here = mask[cells]
    return here.copy() if here.any() else None


def _first_failing(result: ComponentResult, skip: np.ndarray | None) -> int | None:
    """The first cell (position in the component) outside `skip` that is unprotected."""
    bad = np.array([v != PROTECTED for v in result.verdicts], dtype=bool)
    if skip is not None:
        bad &= ~skip
    found = np.flatnonzero(bad)
    return int(found[0]) if found.size else None


def _run_component(jobs: list[_Job], shared: bool) -> list[tuple[ComponentResult, Bounding | None]]:
    """One component's jobs in attacker order, each with its work when it stopped at a failure
    (to be resumed); with `shared` (the truth unknown), the tables found for one attacker serve
    the next as feasible points."""
    points: list[np.ndarray] = []
    out = []
    for job in jobs:
        if shared and points:
            job.seen = _within(points, job.problem)
        result = job.run()
        if shared:
            points.extend(result.points)
        out.append((result, job.work if job.stop and job.work and job.work.failed else None))
    return out


def _run_components(
    groups: list[list[_Job]], shared: bool
) -> list[list[tuple[ComponentResult, Bounding | None]]]:
    return [_run_component(jobs, shared) for jobs in groups]


def audit_workers() -> int:
    """Processes the LP audit may use: CASEPOOL_AUDIT_WORKERS, else 1 (everything in this
    process: on the demo's annual release a helper process saved nothing, in round 4 splitting
    components, nor in round 7 splitting single attackers' audits: most audits there stop at
    their first failure and are small)."""
    told = os.environ.get("CASEPOOL_AUDIT_WORKERS", "").strip()
    if told.isdigit() and int(told) >= 1:
        return int(told)
    return 1


_HELPERS: dict[int, ProcessPoolExecutor] = {}


def _helpers(count: int) -> ProcessPoolExecutor:
    """A pool of `count` helper processes, started once. Spawned: fresh interpreters, not forks
    of this process with its open warehouse and threads; they talk through pipes (a forkserver
    would open a socket, and nothing here touches the network)."""
    pool = _HELPERS.get(count)
    if pool is None:
        context = multiprocessing.get_context("spawn")
        pool = _HELPERS[count] = ProcessPoolExecutor(max_workers=count, mp_context=context)
    return pool


def _run_jobs(
    groups: list[list[_Job]], shared: bool, workers: int | None, min_work: int
) -> list[list[tuple[ComponentResult, Bounding | None]]]:
    """Every component's results, in order. With more than one worker and enough work, the
    work is split by size between this process and helper processes: each audit of a component
    against one attacker on its own when the truth is known (they share nothing), whole
    components otherwise (an attacker's tables serve the next). Each audit is solved exactly as
    it would be here, so the results do not depend on the split."""
    count = audit_workers() if workers is None else workers
    units = (
        [[(i, j)] for i, jobs in enumerate(groups) for j in range(len(jobs))]
        if not shared
        else [[(i, j) for j in range(len(jobs))] for i, jobs in enumerate(groups)]
    )
    work = [sum(groups[i][j].problem.lower.size for i, j in unit) for unit in units]
    busy = [u for u, w in enumerate(work) if w]
    if count < 2 or len(busy) < 2 or sum(work) < min_work:
        return _run_components(groups, shared)
    # Largest first, each to the least loaded of the processes (0: this one).
    load = [0] * count
    share: list[list[int]] = [[] for _ in range(count)]
    for u in sorted(range(len(units)), key=lambda u: (-work[u], u)):
        target = min(range(count), key=lambda p: (load[p], p))
        load[target] += work[u]
        share[target].append(u)

    def batch(part: list[int]) -> list[list[_Job]]:
        return [[groups[i][j] for i, j in units[u]] for u in part]

    pool = _helpers(count - 1)
    futures = [
        (part, pool.submit(_run_components, batch(part), shared)) for part in share[1:] if part
    ]
    done: dict[tuple[int, int], tuple[ComponentResult, Bounding | None]] = {}
    for u, found in zip(share[0], _run_components(batch(share[0]), shared), strict=True):
        done.update(zip(units[u], found, strict=True))
    for part, future in futures:
        for u, found in zip(part, future.result(), strict=True):
            done.update(zip(units[u], found, strict=True))
    return [[done[(i, j)] for j in range(len(jobs))] for i, jobs in enumerate(groups)]


class _Pool:
    """The pooled tables of one check, cut per component only when a component is audited
    (most checks audit few of their components: the others are cached), with each component's
    `_Layout` made once for all its attackers."""

    def __init__(self, auditor: SystemAudit, components: list[np.ndarray], suppressed: np.ndarray):
        self.auditor, self.components, self.suppressed = auditor, components, suppressed
        # The pool as it is now: audits of this check add tables to it (`remember`), and every
        # component is read against the pool at the start, as `_pooled` would.
        self._flat = auditor._flattened()
        self._tables = len(auditor.pool)
        self._repeats = auditor._repeats
        self._fresh: np.ndarray | None = None
        self._entries: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._layouts: dict[int, _Layout] = {}

    def entries(self, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`SystemAudit._pooled(components, suppressed)[c]`, for this component alone."""
        found = self._entries.get(c)
        if found is None:
            cells, values, owner = self._flat
            if self._fresh is None:  # entries of tables that move no cell published now
                stale = np.zeros(self._tables, dtype=bool)
                stale[owner[~self.suppressed[cells]]] = True
                self._fresh = ~stale[owner]
            inside = np.zeros(self.suppressed.size, dtype=bool)
            inside[self.components[c]] = True
            part = np.flatnonzero(self._fresh & inside[cells])
            found = self._entries[c] = (owner[part], cells[part], values[part])
        return found

    def seen(
        self, c: int, truth: np.ndarray, problem: ComponentProblem
    ) -> tuple[np.ndarray, np.ndarray] | None:
        entries, cells = self.entries(c), self.components[c]
        if self._repeats or entries[0].size == 0:
            return SystemAudit._seen(entries, cells, truth, problem, self._repeats)
        layout = self._layouts.get(c)
        if layout is None:
            layout = self._layouts[c] = _Layout.of(entries, cells)
        return SystemAudit._seen(entries, cells, truth, problem, layout=layout)


@dataclass(frozen=True, eq=False)
class _Layout:
    """A component's pooled entries sorted by cell (stably): each entry's table (0, 1, …),
    cell (position in the component) and value, the start of each cell's run and that cell.
    The same for every attacker: made once per component and check."""

    row: np.ndarray
    tables: int
    at: np.ndarray
    values: np.ndarray
    starts: np.ndarray
    cells: np.ndarray
    _ranges: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    @staticmethod
    def of(entries: tuple[np.ndarray, np.ndarray, np.ndarray], cells: np.ndarray) -> _Layout:
        owner, moved, values = entries
        row = _runs(owner)
        at = np.searchsorted(cells, moved)
        # Positions in a component fit 16 bits nearly always: numpy sorts those stably by radix.
        key = at.astype(np.int16) if cells.size < 2**15 else at
        order = np.argsort(key, kind="stable")
        ranked = at[order]
        starts = np.flatnonzero(np.concatenate([[True], ranked[1:] != ranked[:-1]]))
        return _Layout(row[order], int(row[-1]) + 1, ranked, values[order], starts, ranked[starts])

    def ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Each cell's least and greatest value over every table (no table dropped)."""
        if not self._ranges:
            self._ranges.append(
                (
                    np.minimum.reduceat(self.values, self.starts),
                    np.maximum.reduceat(self.values, self.starts),
                )
            )
        return self._ranges[0]


def _runs(owner: np.ndarray) -> np.ndarray:
    """Each entry's table as 0, 1, 2, … in order of table: what np.unique(owner,
    return_inverse=True) gives, in one pass when `owner` is sorted (pooled entries are)."""
    if owner.size > 1 and bool((owner[1:] < owner[:-1]).any()):
        return np.unique(owner, return_inverse=True)[1].reshape(-1)
    starts = np.empty(owner.size, dtype=np.int64)
    starts[0] = 0
    starts[1:] = owner[1:] != owner[:-1]
    return np.cumsum(starts)


def _within(
    points: list[np.ndarray], problem: ComponentProblem
) -> tuple[np.ndarray, np.ndarray] | None:
    """The range of the tables in `points` that respect this attacker's bounds."""
    grid = np.vstack(points)
    inside = (grid >= problem.lower - 1e-9).all(axis=1) & (grid <= problem.upper + 1e-9).all(axis=1)
    if not inside.any():
        return None
    return grid[inside].min(axis=0), grid[inside].max(axis=0)


def engine_attackers(
    system: CellSystem, settings: ProtectionSettings | None = None
) -> list[Attacker]:
    """The outsider and every contributor, who knows its own counts and, conservatively, that it
    is alone in any cell whose whole count is its own. With `settings` (dominance on), a
    contributor must not narrow a cell it dominates below the protection interval."""
    attackers = [Attacker(OUTSIDER)]
    for name in sorted(system.own):
        own = system.own[name]
        need = None
        if settings is not None and settings.dominance:
            dominated = dominated_cells(system.value, own, system.k, settings.dominance_small_cells)
            if dominated.any():
                width = np.array([settings.interval_for(int(k)) for k in system.k])
                need = np.where(dominated, width, 1)
        if system.unpublished is not None:  # a cell never published: nothing asked of it
            need = np.where(system.unpublished, 0, 1 if need is None else need)
        attackers.append(Attacker(name, own, (own == system.value) & (system.value > 0), need))
    return attackers


# --- the audit of a published tidy table ---------------------------------------------------


@dataclass(frozen=True)
class CellVerdict:
    """One suppressed (or wrongly published) cell, who attacked it, its interval and verdict."""

    indicator: str
    codes: dict[str, str]
    conf_status: str
    attacker: str
    lower: int
    upper: int | None  # None: unbounded
    verdict: str
    exact: bool = True  # False: lower/upper are feasible values inside the interval

    def to_dict(self) -> dict[str, Any]:
        return {
            "exact": self.exact,
            "indicator": self.indicator,
            "cell": self.codes,
            "conf_status": self.conf_status,
            "attacker": self.attacker,
            "lower": self.lower,
            "upper": self.upper,
            "verdict": self.verdict,
        }

    def cell_label(self) -> str:
        codes = ", ".join(f"{d}={c}" for d, c in self.codes.items())
        return f"{self.indicator}[{codes}]" if self.indicator else f"[{codes}]"


@dataclass(frozen=True)
class AuditReport:
    """Every suppressed cell's interval per attacker; protected when every verdict is."""

    verdicts: list[CellVerdict]
    k: int
    protection_interval: int
    insiders: list[str]

    @property
    def protected(self) -> bool:
        return all(v.verdict == PROTECTED for v in self.verdicts)

    @property
    def failures(self) -> list[CellVerdict]:
        return [v for v in self.verdicts if v.verdict != PROTECTED]

    def to_dict(self) -> dict[str, Any]:
        return {
            "protected": self.protected,
            "k": self.k,
            "protection_interval": self.protection_interval,
            "insiders": self.insiders,
            "cells": [v.to_dict() for v in self.verdicts],
            "failures": [v.to_dict() for v in self.failures],
        }


def _dimension_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in RESERVED_COLUMNS and not c.startswith("_")]


def _split_indicators(frame: pl.DataFrame) -> list[tuple[str, list[str], pl.DataFrame]]:
    """One table per indicator and set of filled dimension columns (tables of one indicator
    with fewer dimensions leave the others empty); they are audited together, linked."""
    if INDICATOR not in frame.columns:
        frame = frame.with_columns(pl.lit("").alias(INDICATOR))
    frame = frame.with_columns(pl.col(INDICATOR).fill_null(""))
    dims = _dimension_columns(frame)
    pattern = pl.concat_str(
        [pl.col(d).is_null().cast(pl.Int8).cast(pl.String) for d in dims] or [pl.lit("")]
    )
    frame = frame.with_columns(pattern.alias("_pattern"))
    parts = []
    for (name, shape), group in frame.group_by([INDICATOR, "_pattern"], maintain_order=True):
        filled = [d for d, flag in zip(dims, str(shape), strict=False) if flag == "0"]
        parts.append((str(name), filled, group.drop("_pattern")))
    return parts


def _parse_counts(column: pl.Series, label: str) -> pl.Series:
    text = column.cast(pl.String).str.strip_chars()
    text = pl.Series(
        column.name, [None if t in (None, "") else t for t in text.to_list()], pl.String
    )
    parsed = text.cast(pl.Float64, strict=False)
    bad = (parsed.is_null() & text.is_not_null()) | (parsed.fill_null(0) % 1 != 0)
    if bad.any() or (parsed.fill_null(0) < 0).any():
        raise TableError("protect-bad-count", table=label)
    return parsed.cast(pl.Int64)


def audit(
    table: pl.DataFrame,
    *,
    k: int = 5,
    protection_interval: int | None = None,
    multi_valued: Sequence[str] = (),
    insiders: Mapping[str, pl.DataFrame] | None = None,
    total_code: str = "_T",
    solver: str = "highs-warm",
    exact_limit: int | None = EXACT_LIMIT,
    dominance: bool = True,
    flags_told: bool = True,
) -> AuditReport:
    """Audit a published tidy table: the LP interval of every suppressed cell, for an outsider and
    for each insider whose own counts are given (dimension columns + `value`, optionally
    `indicator`; used as lower bounds, and as the exact value where an optional `sole` column
    says yes: the insider knows it is the only contributor there). Where an optional `dominant`
    column says yes, the insider dominates the cell (the others count 1..k-1 children there) and
    its interval must be `protection_interval` wide; with `dominance`, a published cell of k or
    more where the others' part (value − own) is 1..k-1 fails as dominance-published.

    A cell is suppressed when `value` is empty or `obs_status` is Q. Primary cells (`conf_status`
    C, or every suppressed cell when the column is absent) need an interval at least
    `protection_interval` wide (default k); every suppressed cell must not be recoverable; no
    published count may lie in 1..k-1. Rows absent from the table count as published zeros.
    With `flags_told`, every attacker also reads the flags: a suppressed count flagged C is
    primary, so 1..k-1 or dominated, never 0 (its least value is 1).
    `solver` is "highs-warm" (HiGHS with warm starts) or "linprog" (scipy's linprog, HiGHS).
    Intervals are exact for sets of linked suppressed cells up to `exact_limit` cells (None:
    always); beyond, each verdict is proven with as few LPs as it needs and the bounds reported
    are feasible values inside the interval (marked exact=False), which keeps big tables quick.
    """

    def run() -> AuditReport:
        return _audit(
            table,
            k,
            protection_interval,
            multi_valued,
            insiders,
            total_code,
            solver,
            exact_limit,
            dominance,
            flags_told,
        )

    memo = reused()
    if memo is None:
        return run()
    # Within reusing_results: the same table, insiders and options give the same report.
    options = (k, protection_interval, tuple(multi_valued), total_code, solver, exact_limit)
    names = [str(name) for name in (insiders or {})]
    described = repr((options, dominance, flags_told, names)).encode()
    parts = [described, frame_key(table), *(frame_key(f) for f in (insiders or {}).values())]
    key = ("audit", hashlib.sha256(b"\0".join(parts)).digest())
    found = memo.get(key)
    if found is None:
        found = memo[key] = run()
    return found  # type: ignore[return-value]


def _audit(
    table: pl.DataFrame,
    k: int,
    protection_interval: int | None,
    multi_valued: Sequence[str],
    insiders: Mapping[str, pl.DataFrame] | None,
    total_code: str,
    solver: str,
    exact_limit: int | None,
    dominance: bool,
    flags_told: bool,
) -> AuditReport:
    """`audit` itself, without the memo."""
    if VALUE not in table.columns:
        raise TableError("protect-missing-column", table="", column=VALUE)
    width = protection_interval if protection_interval is not None else k
    settings = ProtectionSettings(
        k=k, k_sensitive=k, protection_interval=width, total_code=total_code
    )
    tables: list[CountTable] = []
    statuses: list[list[str]] = []
    told_rows: list[list[bool]] = []
    suppressed_rows: list[np.ndarray] = []
    for name, dims, group in _split_indicators(table):
        counts = _parse_counts(group[VALUE], name)
        hidden = counts.is_null()
        if OBS_STATUS in group.columns:
            hidden = hidden | (group[OBS_STATUS].cast(pl.String) == "Q").fill_null(False)
        conf = (
            group[CONF_STATUS].cast(pl.String).fill_null(PRIMARY)
            if CONF_STATUS in group.columns
            else pl.Series([PRIMARY] * group.height)
        )
        shown_values = counts.fill_null(0).to_numpy() * ~hidden.to_numpy()
        cells = pl.DataFrame([*(group[d] for d in dims), pl.Series(VALUE, shown_values)])
        multi = frozenset(d for d in multi_valued if d in dims)
        tables.append(CountTable(name, tuple(dims), cells, multi, name=name or "table"))
        statuses.append(conf.to_list())
        told_rows.append(
            (group[CONF_STATUS].cast(pl.String) == PRIMARY).fill_null(False).to_list()
            if flags_told and CONF_STATUS in group.columns
            else [False] * group.height
        )
        suppressed_rows.append(hidden.to_numpy())
    system = build_system(tables, settings, check_margins=False)
    n = system.size
    hidden_somewhere = np.zeros(n, dtype=bool)
    shown_somewhere = np.zeros(n, dtype=bool)
    primary = np.zeros(n, dtype=bool)
    cell_status = [""] * n
    told = np.zeros(n)
    for grid, table_obj, conf_list, told_list, hidden_rows in zip(
        system.grids, tables, statuses, told_rows, suppressed_rows, strict=True
    ):
        ids = _row_ids(system, grid, table_obj, total_code)
        rows = zip(ids.tolist(), conf_list, told_list, hidden_rows.tolist(), strict=True)
        for cell, status, flagged, is_hidden in rows:
            shown_somewhere[cell] |= not is_hidden
            if is_hidden and flagged:
                told[cell] = 1.0
            if is_hidden:
                hidden_somewhere[cell] = True
                status = status if status in (PRIMARY, SECONDARY) else PRIMARY
                primary[cell] |= status == PRIMARY
                cell_status[cell] = PRIMARY if primary[cell] else SECONDARY
    suppressed = hidden_somewhere & ~shown_somewhere  # a value shown in any table is known
    verdicts: list[CellVerdict] = []
    for cell in np.flatnonzero(~suppressed & (system.value > 0) & (system.value < k)).tolist():
        value = int(system.value[cell])
        verdicts.append(_verdict_of(system, cell, "F", OUTSIDER, value, value, SMALL_COUNT))
    attackers = [Attacker(OUTSIDER)]
    for name, own_frame in (insiders or {}).items():
        own, sole, dominant = _own_counts(system, own_frame, name, total_code)
        if dominance:
            # A published cell the insider dominates gives it the others' small count at once.
            shown = ~suppressed & (system.value >= k)
            others = system.value - own
            for cell in np.flatnonzero(shown & (others >= 1) & (others < k) & (own > 0)).tolist():
                value = int(system.value[cell])
                verdicts.append(
                    _verdict_of(system, cell, "F", name, value, value, DOMINANCE_PUBLISHED)
                )
        need_here = np.where(dominant & suppressed, width, 1) if dominant.any() else None
        attackers.append(Attacker(name, own, sole, need_here))
    need = np.where(primary, width, 1)
    auditor = SystemAudit(
        system.equations, system.inequalities, system.value, solver=solver, at_least=told
    )
    findings = auditor.check(
        suppressed, need, attackers, truth=None, exact=True, exact_limit=exact_limit
    )
    for finding in findings:
        result = finding.result
        for j, cell in enumerate(finding.cells.tolist()):
            lo, hi = integer_bounds(result.lower[j], result.upper[j])
            verdicts.append(
                _verdict_of(
                    system,
                    cell,
                    cell_status[cell],
                    finding.attacker,
                    lo,
                    hi,
                    result.verdicts[j],
                    finding.exact,
                )
            )
    verdicts.sort(
        key=lambda v: (v.attacker != OUTSIDER, v.attacker, v.indicator, list(v.codes.items()))
    )
    return AuditReport(verdicts, k, width, list(insiders or {}))


def _verdict_of(
    system: CellSystem,
    cell: int,
    status: str,
    attacker: str,
    lo: float,
    hi: float,
    verdict: str,
    exact: bool = True,
) -> CellVerdict:
    indicator, codes = system.keys[cell]
    table = system.grids[system.locations[cell][0][0]].table
    named = dict(codes)
    total = system.grids[system.locations[cell][0][0]].codes
    full = {d: named.get(d, total[i][-1]) for i, d in enumerate(table.dimensions)}
    upper = None if not math.isfinite(hi) else int(hi)
    return CellVerdict(indicator, full, status, attacker, int(lo), upper, verdict, exact)


def _row_ids(system: CellSystem, grid: Any, table: CountTable, total: str) -> np.ndarray:
    ids = np.empty(table.cells.height, dtype=np.int64)
    frame = table.cells.with_columns(pl.col(d).cast(pl.String) for d in table.dimensions)
    lookups = [{c: i for i, c in enumerate(codes)} for codes in grid.codes]
    for r, row in enumerate(frame.select(table.dimensions).iter_rows()):
        ids[r] = grid.ids[tuple(lookups[d][c] for d, c in enumerate(row))]
    return ids


def _flag(frame: pl.DataFrame, column: str) -> list[bool]:
    if column not in frame.columns:
        return [False] * frame.height
    return frame[column].cast(pl.String).str.to_lowercase().is_in(["1", "true", "yes"]).to_list()


def _own_counts(
    system: CellSystem, frame: pl.DataFrame, name: str, total: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An insider's own count per cell, the cells it knows it is alone in (column `sole`) and
    those it dominates (column `dominant`)."""
    own = np.zeros(system.size, dtype=np.int64)
    sole = np.zeros(system.size, dtype=bool)
    dominant = np.zeros(system.size, dtype=bool)
    if VALUE not in frame.columns:
        raise TableError("protect-missing-column", table=name, column=VALUE)
    index = {key: i for i, key in enumerate(system.keys)}
    counts = _parse_counts(frame[VALUE], name).fill_null(0).to_list()
    alone = _flag(frame, SOLE)
    dominates = _flag(frame, DOMINANT)
    indicator = (
        frame[INDICATOR].cast(pl.String).fill_null("").to_list()
        if INDICATOR in frame.columns
        else None
    )
    dims = [d for d in _dimension_columns(frame) if d not in (SOLE, DOMINANT)]
    rows = frame.select(pl.col(d).cast(pl.String) for d in dims).iter_rows()
    every_indicator = sorted({k[0] for k in system.keys})
    for r, (row, count) in enumerate(zip(rows, counts, strict=True)):
        named = tuple(
            sorted((d, c) for d, c in zip(dims, row, strict=True) if c not in (None, total))
        )
        names = [indicator[r]] if indicator is not None else every_indicator
        for ind in names:
            cell = index.get((ind, named))
            if cell is not None:
                own[cell] = count
                sole[cell] = bool(alone[r]) and count > 0
                dominant[cell] = bool(dominates[r])
    return own, sole, dominant


def read_tidy_table(path: str | Path) -> pl.DataFrame:
    """A tidy table from CSV, XLSX or Parquet, as text; UnreadableFileError when it cannot be read."""
    from casepool.core.reading import ROW, read_export

    frame = read_export(path).frame
    return frame.drop(ROW) if ROW in frame.columns else frame
