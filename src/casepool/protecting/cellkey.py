"""Cell-key perturbation for ad-hoc queries: the same records always get the same noise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import polars as pl
from scipy.optimize import minimize

from casepool.core.vocabulary import CELL_KEY, KEY_SCALE
from casepool.protecting.settings import CellKeySettings
from casepool.protecting.tables import VALUE


def _quantised(keys: pl.Expr) -> pl.Expr:
    return (keys * KEY_SCALE).floor().cast(pl.Int64)


def cell_key_expr(record_key: str = "record_key") -> pl.Expr:
    """A cell's key: the fractional part of the sum of its records' keys (exact, order-free)."""
    return (_quantised(pl.col(record_key)).sum() % KEY_SCALE) / KEY_SCALE


@dataclass(frozen=True, eq=False)
class PerturbationTable:
    """For each original count i (rows beyond the last reuse it), the probabilities of adding
    each perturbation -D..D; built once from (D, V, js) and never printed."""

    probabilities: np.ndarray = field(repr=False)  # [count, perturbation + D]
    max_deviation: int = field(repr=False)

    def row(self, count: int) -> np.ndarray:
        return self.probabilities[min(count, self.probabilities.shape[0] - 1)]

    def noise(self, counts: np.ndarray, cell_keys: np.ndarray) -> np.ndarray:
        """The perturbation of each cell: where its key falls in its count's distribution."""
        rows = np.minimum(counts, self.probabilities.shape[0] - 1)
        cumulative = np.cumsum(self.probabilities[rows], axis=1)
        picked = (cumulative <= cell_keys[:, None]).sum(axis=1)
        return np.minimum(picked, 2 * self.max_deviation) - self.max_deviation

    def mean(self, count: int) -> float:
        return float(self.row(count) @ self._steps())

    def variance(self, count: int) -> float:
        return float(self.row(count) @ self._steps() ** 2) - self.mean(count) ** 2

    def _steps(self) -> np.ndarray:
        return np.arange(-self.max_deviation, self.max_deviation + 1, dtype=float)


def _max_entropy(steps: np.ndarray, variance: float) -> np.ndarray:
    """The maximum-entropy distribution on `steps` with mean 0 and the given variance."""

    def dual(lam: np.ndarray) -> tuple[float, np.ndarray]:
        logits = lam[0] * steps + lam[1] * steps**2
        top = logits.max()
        weights = np.exp(logits - top)
        total = weights.sum()
        p = weights / total
        value = top + np.log(total) - lam[1] * variance
        gradient = np.array([p @ steps, p @ steps**2 - variance])
        return value, gradient

    solution = minimize(dual, np.zeros(2), jac=True, method="BFGS", options={"gtol": 1e-12})
    logits = solution.x[0] * steps + solution.x[1] * steps**2
    p = np.exp(logits - logits.max())
    return p / p.sum()


@cache
def _build(max_deviation: int, variance: float, threshold: int) -> np.ndarray:
    d = max_deviation
    steps = np.arange(-d, d + 1)
    rows = []
    for count in range(d + threshold + 2):
        row = np.zeros(2 * d + 1)
        if count == 0:
            row[d] = 1.0  # zeros stay zero
            rows.append(row)
            continue
        after = count + steps
        allowed = (after >= 0) & ((after == 0) | (after > threshold))
        support = steps[allowed].astype(float)
        # Zero mean needs room on both sides; the variance is what the support allows.
        if support.min() >= 0 or support.max() <= 0:
            row[d] = 1.0
            rows.append(row)
            continue
        reachable = -support.min() * support.max()  # the largest variance with mean 0
        target = min(variance, 0.95 * reachable)
        row[allowed] = _max_entropy(support, target)
        rows.append(row)
    return np.array(rows)


def perturbation_table(settings: CellKeySettings | None = None) -> PerturbationTable:
    """The ptable of (D, V, js): zero mean in every row; variance V wherever the count allows
    it (small counts cannot move far down, so their variance is smaller); no perturbed count
    in 1..js; zeros never perturbed."""
    settings = settings or CellKeySettings()
    table = _build(settings.max_deviation, float(settings.variance), settings.threshold)
    return PerturbationTable(table, settings.max_deviation)


def cellkey_perturb(
    cells: pl.DataFrame, settings: CellKeySettings | None = None, *, cell_key: str = CELL_KEY
) -> pl.DataFrame:
    """Perturb the counts of a table that carries each cell's key; the key column is dropped.

    `cells` has `value` (the true count) and `cell_key` (see cell_key_expr and tabulate_with_keys).
    """
    table = perturbation_table(settings)
    counts = cells[VALUE].cast(pl.Int64).to_numpy()
    keys = cells[cell_key].cast(pl.Float64).to_numpy()
    noisy = np.maximum(counts + table.noise(counts, keys), 0)
    return cells.drop(cell_key).with_columns(pl.Series(VALUE, noisy, pl.Int64))


def tabulate_with_keys(
    records: pl.DataFrame,
    dimensions: Sequence[str],
    *,
    record_key: str = "record_key",
    multi_valued: Sequence[str] = (),
    total_code: str = "_T",
) -> pl.DataFrame:
    """Counts and cell keys of every cell and margin of a table, from record-level rows.

    A multi-valued dimension is a list column: a record counts once in each of its categories
    and once in the total.
    """
    frames = []
    dims = list(dimensions)
    for mask in range(2 ** len(dims)):
        kept = [d for i, d in enumerate(dims) if not mask >> i & 1]
        frame = records
        for d in kept:
            if d in multi_valued:
                frame = frame.explode(d)
        agg = [pl.len().alias(VALUE), cell_key_expr(record_key).alias(CELL_KEY)]
        result = frame.group_by(kept).agg(agg) if kept else frame.select(agg)
        result = result.with_columns(
            pl.lit(total_code).alias(d) for d in dims if d not in kept
        ).with_columns(pl.col(d).cast(pl.String) for d in dims)
        frames.append(result.select([*dims, VALUE, CELL_KEY]))
    return pl.concat(frames).with_columns(pl.col(VALUE).cast(pl.Int64)).sort(dims)
