"""The attacker's linear program: bounds of suppressed cells under published values, additivity, non-negativity."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from casepool.core.errors import TableError

try:  # scipy's own HiGHS build: same solver as linprog(method="highs"), with warm starts
    from scipy.optimize._highspy import _core as _highs
except ImportError:  # pragma: no cover - a scipy without it falls back to linprog
    _highs = None

TOLERANCE = 1e-6
BATCH_ROUNDS = 4
PROTECTED, TOO_NARROW, DISCLOSED = "protected", "too-narrow", "disclosed"


def integer_bounds(lower: float, upper: float) -> tuple[int, float]:
    """Counts are whole: the attacker may round the LP interval inwards."""
    lo = math.ceil(lower - TOLERANCE)
    hi = math.floor(upper + TOLERANCE) if math.isfinite(upper) else math.inf
    return lo, hi


def verdict(lower: float, upper: float, need: int, own: float | None) -> str:
    """protected, too-narrow (width below `need`) or disclosed (one value left).

    `own` is an insider's own count in the cell: learning that nobody else contributed to a
    cell is no more than a published zero, so a cell pinned at exactly `own` is not disclosed.
    """
    if need <= 0:
        return PROTECTED  # nothing asked of this cell (one never published: see tables.py)
    lo, hi = integer_bounds(lower, upper)
    if hi <= lo:
        return PROTECTED if own is not None and lo == round(own) else DISCLOSED
    return TOO_NARROW if hi - lo < need else PROTECTED


def verdicts_of(
    lower: np.ndarray, upper: np.ndarray, need: np.ndarray, own: np.ndarray | None
) -> list[str]:
    """`verdict` of every cell at once: [verdict(lower[j], upper[j], int(need[j]), own[j])]."""
    lo = np.ceil(lower - TOLERANCE)
    with np.errstate(invalid="ignore"):
        hi = np.where(np.isfinite(upper), np.floor(upper + TOLERANCE), np.inf)
        pinned = hi <= lo
        narrow = hi - lo < need.astype(np.int64)
    known = np.zeros(lo.size, dtype=bool) if own is None else lo == np.round(own)
    found = np.where(
        pinned, np.where(known, PROTECTED, DISCLOSED), np.where(narrow, TOO_NARROW, PROTECTED)
    )
    found[need.astype(np.int64) <= 0] = PROTECTED
    return found.tolist()


@dataclass(eq=False)
class ComponentProblem:
    """The LP of one connected set of suppressed cells for one attacker."""

    a_eq: sparse.csr_matrix
    b_eq: np.ndarray
    a_ub: sparse.csr_matrix
    b_ub: np.ndarray
    lower: np.ndarray
    upper: np.ndarray  # finite: `cap` stands for unbounded
    cap: float
    solver: str = "highs-warm"
    solves: int = 0
    _model: object = None
    _cost: np.ndarray | None = None

    def solve(self, objective: np.ndarray) -> np.ndarray:
        """A minimiser of objective·x by HiGHS; TableError when the table is inconsistent.

        "highs-warm" keeps one HiGHS model per component and re-solves it from the last basis
        after changing the objective (the warm start scipy's linprog cannot offer); "linprog"
        calls scipy.optimize.linprog(method="highs") afresh each time. Both give the same bounds.
        """
        self.solves += 1
        if self.solver == "highs-warm" and _highs is not None:
            return self._solve_warm(objective)
        return self._solve_linprog(objective)

    def __getstate__(self) -> dict[str, object]:
        # The HiGHS model does not travel between processes: the receiver builds its own.
        return {**self.__dict__, "_model": None, "_cost": None}

    def _solve_warm(self, objective: np.ndarray) -> np.ndarray:
        model = self._model
        objective = objective.astype(float)
        if model is None:
            model = self._model = self._build()
            self._cost = np.zeros(self.lower.size)  # the model's objective: zero when built
        # Only the costs that change are passed: the model is the same as after a full update.
        changed = np.flatnonzero(objective != self._cost).astype(np.int32)
        if changed.size:
            model.changeColsCost(changed.size, changed, objective[changed])  # type: ignore[attr-defined]
            self._cost = objective
        model.run()  # type: ignore[attr-defined]
        status = model.getModelStatus()  # type: ignore[attr-defined]
        if status == _highs.HighsModelStatus.kInfeasible:
            raise TableError("audit-inconsistent")
        if status != _highs.HighsModelStatus.kOptimal:
            raise TableError("audit-solver-failed", status=str(status))
        return np.asarray(model.getSolution().col_value, dtype=float)  # type: ignore[attr-defined]

    def _build(self) -> object:
        n = self.lower.size
        rows = sparse.vstack([self.a_eq, self.a_ub]).tocsc()
        lp = _highs.HighsLp()
        lp.num_col_ = n
        lp.num_row_ = rows.shape[0]
        lp.col_cost_ = np.zeros(n)
        lp.col_lower_ = self.lower.astype(float)
        lp.col_upper_ = self.upper.astype(float)
        infinity = _highs.kHighsInf
        lp.row_lower_ = np.concatenate([self.b_eq, np.full(self.b_ub.size, -infinity)]).astype(
            float
        )
        lp.row_upper_ = np.concatenate([self.b_eq, self.b_ub]).astype(float)
        matrix = _highs.HighsSparseMatrix()
        matrix.format_ = _highs.MatrixFormat.kColwise
        matrix.num_col_ = n
        matrix.num_row_ = rows.shape[0]
        matrix.start_ = rows.indptr.astype(np.int32)
        matrix.index_ = rows.indices.astype(np.int32)
        matrix.value_ = rows.data.astype(float)
        lp.a_matrix_ = matrix
        model = _highs._Highs()
        model.setOptionValue("output_flag", False)
        model.passModel(lp)
        return model

    def _solve_linprog(self, objective: np.ndarray) -> np.ndarray:
        result = linprog(
            objective,
            A_ub=self.a_ub if self.a_ub.shape[0] else None,
            b_ub=self.b_ub if self.a_ub.shape[0] else None,
            A_eq=self.a_eq if self.a_eq.shape[0] else None,
            b_eq=self.b_eq if self.a_eq.shape[0] else None,
            bounds=np.column_stack([self.lower, self.upper]),
            method="highs",
        )
        if result.status == 2:
            raise TableError("audit-inconsistent")
        if result.status != 0 or result.x is None:
            raise TableError("audit-solver-failed", status=str(result.status))
        return np.asarray(result.x, dtype=float)


@dataclass(eq=False)
class ComponentResult:
    """Intervals found for the cells of one component and whether each meets its need."""

    lower: np.ndarray
    upper: np.ndarray  # inf = unbounded
    verdicts: list[str]
    points: list[np.ndarray] = field(default_factory=list)  # LP solutions found on the way
    solves: int = 0

    @property
    def ok(self) -> bool:
        return all(v == PROTECTED for v in self.verdicts)


def verdicts_ok(
    lower: np.ndarray, upper: np.ndarray, need: np.ndarray, own: np.ndarray | None
) -> np.ndarray:
    """Whether a cell whose interval contains [lower, upper] is protected, proven from that
    range alone: `verdict(...) == PROTECTED` on the range, except a range pinned at the
    insider's own count, which proves it only where no width is asked (need ≤ 1): the interval
    may be wider than the range and still narrower than the need."""
    lo = np.ceil(lower - TOLERANCE)
    with np.errstate(invalid="ignore"):
        hi = np.where(np.isfinite(upper), np.floor(upper + TOLERANCE), np.inf)
        pinned = hi <= lo
        ok = ~pinned & (hi - lo >= need)
    if own is not None:
        ok |= pinned & (lo == np.round(own)) & (need <= 1)
    return ok | (need <= 0)


def bound_component(
    problem: ComponentProblem,
    need: np.ndarray,
    own: np.ndarray | None,
    truth: np.ndarray | None,
    exact: bool,
    seen: tuple[np.ndarray, np.ndarray] | None = None,
    stop_at_failure: bool = False,
    skip: np.ndarray | None = None,
) -> ComponentResult:
    """Each cell's feasible interval, with as few LPs as the question allows.

    Every LP solution is a feasible table, so the range of values seen across solutions (and
    the true table, when known, and the tables in `seen`) lies inside each cell's interval. A
    cell whose seen range already meets its need is settled without an LP of its own (unless
    `exact` intervals are wanted); a seen value at the lower bound or at the cap is an exact
    bound. Only what is left gets its own maximisation and minimisation. With
    `stop_at_failure`, the first cell found unprotected ends the work (its result is partial).
    Cells in `skip` (the attacker has them from earlier releases already: no verdict on them
    counts) get no LP of their own and never stop the work; their verdicts are not proven.
    """
    return Bounding(problem, need, own, truth, exact, seen, skip).run(stop_at_failure)


class Bounding:
    """`bound_component` as work that can go on: stopped at its first failing cell, it can be
    resumed with more cells skipped (`resume`), from the same HiGHS model and with every cell
    already settled kept, and finds what a fresh `bound_component` with those cells skipped
    finds (the intervals it proves are the attacker's, whatever the order of the LPs)."""

    def __init__(
        self,
        problem: ComponentProblem,
        need: np.ndarray,
        own: np.ndarray | None,
        truth: np.ndarray | None,
        exact: bool,
        seen: tuple[np.ndarray, np.ndarray] | None = None,
        skip: np.ndarray | None = None,
    ) -> None:
        self.problem, self.need, self.own, self.exact, self.skip = problem, need, own, exact, skip
        n = problem.lower.size
        fixed = problem.upper <= problem.lower + TOLERANCE
        self.seen_lo = np.full(n, np.inf) if truth is None else truth.astype(float).copy()
        self.seen_hi = np.full(n, -np.inf) if truth is None else truth.astype(float).copy()
        self.lo_exact = np.where(fixed, problem.lower, np.nan)
        self.hi_exact = np.where(fixed, problem.lower, np.nan)
        self.found: list[np.ndarray] = []
        self.started = False
        self.failed = False
        if seen is not None:
            self._add(*seen)

    def _add(self, low: np.ndarray, high: np.ndarray) -> None:
        problem = self.problem
        np.minimum(self.seen_lo, low, out=self.seen_lo)
        np.maximum(self.seen_hi, high, out=self.seen_hi)
        at_lower = self.seen_lo <= problem.lower + TOLERANCE
        self.lo_exact[at_lower] = problem.lower[at_lower]
        self.hi_exact[self.seen_hi >= problem.cap - 0.5] = np.inf

    def _unsettled(self) -> np.ndarray:
        lo_exact, hi_exact, skip = self.lo_exact, self.hi_exact, self.skip
        both = ~(np.isnan(lo_exact) | np.isnan(hi_exact))
        if self.exact:
            return ~both if skip is None else ~both & ~skip
        lo = np.where(np.isnan(lo_exact), self.seen_lo, lo_exact)
        hi = np.where(np.isnan(hi_exact), self.seen_hi, hi_exact)
        hi = np.where(hi >= self.problem.cap - 0.5, np.inf, hi)
        known = self.seen_lo <= self.seen_hi
        open_cells = ~both & ~(known & verdicts_ok(lo, hi, self.need, self.own))
        return open_cells if skip is None else open_cells & ~skip

    def _solve(self, objective: np.ndarray) -> np.ndarray:
        point = self.problem.solve(objective)
        self.found.append(point)
        self._add(point, point)
        return point

    def resume(self, skip: np.ndarray | None) -> None:
        """Go on with `skip` (the cells skipped before and more): the cell the work stopped at
        is among them, so it no longer stops it."""
        self.skip = skip
        self.failed = False

    def run(self, stop_at_failure: bool = False) -> ComponentResult:
        """The work up to the end (or, with `stop_at_failure`, the first failing cell): the
        result holds the LP solutions and the count of LPs of this call only."""
        problem = self.problem
        n = problem.lower.size
        solves_before, found_before = problem.solves, len(self.found)
        lo_exact, hi_exact = self.lo_exact, self.hi_exact
        if not self.started:
            self.started = True
            pending = np.flatnonzero(self._unsettled())
            if pending.size > 2:
                # LPs that push every open cell up, then down, settle most of them at once; a
                # few more rounds with varied weights (fixed seed: deterministic) while they keep
                # paying off.
                weights = np.zeros(n)
                weights[pending] = 1.0
                self._solve(-weights)
                self._solve(weights)
                rng = np.random.default_rng(len(pending))
                for _ in range(BATCH_ROUNDS):
                    before = np.flatnonzero(self._unsettled())
                    if before.size <= 2:
                        break
                    weights = np.zeros(n)
                    weights[before] = rng.uniform(0.5, 1.5, before.size)
                    self._solve(-weights)
                    self._solve(weights)
                    if np.flatnonzero(self._unsettled()).size > 0.8 * before.size:
                        break
        while not self.failed:
            open_cells = np.flatnonzero(self._unsettled())
            if open_cells.size == 0:
                break
            j = int(open_cells[0])
            if np.isnan(hi_exact[j]):
                objective = np.zeros(n)
                objective[j] = -1.0
                point = self._solve(objective)
                hi_exact[j] = np.inf if point[j] >= problem.cap - 0.5 else point[j]
            if np.isnan(lo_exact[j]) and self._unsettled()[j]:
                objective = np.zeros(n)
                objective[j] = 1.0
                lo_exact[j] = self._solve(objective)[j]
            if stop_at_failure and not np.isnan(lo_exact[j]) and not np.isnan(hi_exact[j]):
                own_j = None if self.own is None else float(self.own[j])
                self.failed = (
                    verdict(lo_exact[j], hi_exact[j], int(self.need[j]), own_j) != PROTECTED
                )
        lower = np.where(np.isnan(lo_exact), self.seen_lo, lo_exact)
        upper = np.where(np.isnan(hi_exact), self.seen_hi, hi_exact)
        upper = np.where(upper >= problem.cap - 0.5, np.inf, upper)
        verdicts = verdicts_of(lower, upper, self.need, self.own)
        return ComponentResult(
            lower, upper, verdicts, self.found[found_before:], problem.solves - solves_before
        )
