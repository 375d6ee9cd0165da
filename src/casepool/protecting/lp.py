"""The attacker's linear program: bounds of suppressed cells under published values, additivity, non-negativity."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from casepool.errors import TableError

TOLERANCE = 1e-6
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
    lo, hi = integer_bounds(lower, upper)
    if hi <= lo:
        return PROTECTED if own is not None and lo == round(own) else DISCLOSED
    return TOO_NARROW if hi - lo < need else PROTECTED


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

    def solve(self, objective: np.ndarray) -> np.ndarray:
        """A minimiser of objective·x (scipy's HiGHS); TableError when the table is inconsistent."""
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

    @property
    def ok(self) -> bool:
        return all(v == PROTECTED for v in self.verdicts)


def bound_component(
    problem: ComponentProblem,
    need: np.ndarray,
    own: np.ndarray | None,
    truth: np.ndarray | None,
    exact: bool,
) -> ComponentResult:
    """Each cell's feasible interval, with as few LPs as the question allows.

    Every LP solution is a feasible table, so the range of values seen across solutions (and
    the true table, when known) lies inside each cell's interval. A cell whose seen range
    already meets its need is settled without an LP of its own (unless `exact` intervals are
    wanted); a seen value at the lower bound or at the cap is an exact bound. Only what is left
    gets its own maximisation and minimisation.
    """
    n = problem.lower.size
    fixed = problem.upper <= problem.lower + TOLERANCE
    seen_lo = np.full(n, np.inf) if truth is None else truth.astype(float).copy()
    seen_hi = np.full(n, -np.inf) if truth is None else truth.astype(float).copy()
    lo_exact = np.where(fixed, problem.lower, np.nan)
    hi_exact = np.where(fixed, problem.lower, np.nan)

    def add(point: np.ndarray) -> None:
        np.minimum(seen_lo, point, out=seen_lo)
        np.maximum(seen_hi, point, out=seen_hi)
        at_lower = seen_lo <= problem.lower + TOLERANCE
        lo_exact[at_lower] = problem.lower[at_lower]
        at_cap = seen_hi >= problem.cap - 0.5
        hi_exact[at_cap] = np.inf

    def own_of(j: int) -> float | None:
        return None if own is None else float(own[j])

    def settled(j: int) -> bool:
        if not (np.isnan(lo_exact[j]) or np.isnan(hi_exact[j])):
            return True
        if exact or seen_lo[j] > seen_hi[j]:
            return False
        lo = seen_lo[j] if np.isnan(lo_exact[j]) else lo_exact[j]
        hi = seen_hi[j] if np.isnan(hi_exact[j]) else hi_exact[j]
        hi = np.inf if hi >= problem.cap - 0.5 else hi
        return verdict(lo, hi, int(need[j]), own_of(j)) == PROTECTED

    if truth is not None:
        add(truth.astype(float))
    pending = [j for j in range(n) if not settled(j)]
    if len(pending) > 2:
        # Two LPs that push every open cell up, then down, settle most of them at once.
        weights = np.zeros(n)
        weights[pending] = 1.0
        add(problem.solve(-weights))
        add(problem.solve(weights))
    for j in pending:
        if settled(j):
            continue
        objective = np.zeros(n)
        if np.isnan(hi_exact[j]):
            objective[j] = -1.0
            point = problem.solve(objective)
            hi_exact[j] = np.inf if point[j] >= problem.cap - 0.5 else point[j]
            add(point)
        if settled(j):
            continue
        if np.isnan(lo_exact[j]):
            objective[j] = 1.0
            point = problem.solve(objective)
            lo_exact[j] = point[j]
            add(point)
    lower = np.where(np.isnan(lo_exact), seen_lo, lo_exact)
    upper = np.where(np.isnan(hi_exact), seen_hi, hi_exact)
    upper = np.where(upper >= problem.cap - 0.5, np.inf, upper)
    verdicts = [verdict(lower[j], upper[j], int(need[j]), own_of(j)) for j in range(n)]
    return ComponentResult(lower, upper, verdicts)
