"""Differential privacy for counts: discrete Gaussian noise (OpenDP), margins, consistent post-processing.

The privacy unit is one child. A table of counts over the full grid of its categories (from the
public code lists, so a zero is noised like any count) changes by at most `sensitivity` in L2
norm when one child is added or removed: 1 when every dimension is single-valued (the child is in
one cell), √k when a multi-valued dimension lets the child be in up to k of its categories. The
noise is OpenDP's discrete Gaussian (`dp.m.then_gaussian` over integer vectors); its ρ (zCDP) is
OpenDP's own `map` of the sensitivity, and the margin of error OpenDP's accuracy function.

Everything after the noise is post-processing (free): fitting a table to the total it must add up
to, making it non-negative whole numbers, summing cells, ratios.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

_CONTRIB_ENABLED = False


def _dp() -> Any:
    """OpenDP with its contrib features (the discrete Gaussian is contrib in 0.16)."""
    global _CONTRIB_ENABLED
    import opendp.prelude as dp

    if not _CONTRIB_ENABLED:
        dp.enable_features("contrib")
        _CONTRIB_ENABLED = True
    return dp


def _space(sensitivity: float) -> tuple[Any, Any, Any]:
    """Integer count vectors; the L2 metric is integral when the sensitivity is (one cell per child)."""
    dp = _dp()
    whole = float(sensitivity).is_integer()
    metric = dp.l2_distance(T=int) if whole else dp.l2_distance(T=float)
    d_in: Any = int(sensitivity) if whole else float(sensitivity)
    return dp.vector_domain(dp.atom_domain(T=int)), metric, d_in


def gaussian_measurement(scale: float, sensitivity: float) -> tuple[Any, Any]:
    """OpenDP's discrete Gaussian measurement on integer counts, and the d_in of one child."""
    dp = _dp()
    domain, metric, d_in = _space(sensitivity)
    return (domain, metric) >> dp.m.then_gaussian(scale=float(scale)), d_in


@lru_cache(maxsize=256)
def rho_of(scale: float, sensitivity: float) -> float:
    """ρ (zCDP) OpenDP charges for one child's change of L2 size `sensitivity` at `scale`."""
    measurement, d_in = gaussian_measurement(scale, sensitivity)
    return float(measurement.map(d_in))


@lru_cache(maxsize=256)
def scale_for(rho: float, sensitivity: float) -> float:
    """The smallest noise scale whose ρ for one child is at most `rho` (OpenDP's binary search)."""
    if rho <= 0:
        raise ValueError("rho must be positive")
    dp = _dp()
    domain, metric, d_in = _space(sensitivity)
    scale = float(
        dp.binary_search_param(
            lambda s: (domain, metric) >> dp.m.then_gaussian(scale=s),
            d_in=d_in,
            d_out=float(rho),
            T=float,
        )
    )
    assert rho_of(scale, sensitivity) <= rho * (1 + 1e-9)
    return scale


def noisy_counts(counts: Sequence[int], scale: float, sensitivity: float) -> list[int]:
    """The counts with independent discrete Gaussian noise of `scale` on every cell."""
    measurement, _ = gaussian_measurement(scale, sensitivity)
    return [int(v) for v in measurement([int(c) for c in counts])]


def margin_of_scale(scale: float, confidence: float) -> float:
    """Half-width m of the `confidence` interval of one noisy count: |noise| ≤ m with that
    probability. OpenDP's accuracy a for integer noise satisfies P(|noise| < a) ≥ confidence (a
    strict bound), so the inclusive margin is a − 1."""
    if scale <= 0:
        return 0.0
    dp = _dp()
    accuracy = dp.discrete_gaussian_scale_to_accuracy(scale=float(scale), alpha=1 - confidence)
    return float(max(accuracy - 1, 0))


def margin_of_variance(variance: float, confidence: float) -> float:
    """Margin of a sum of independent noisy counts of total `variance`: OpenDP's accuracy at the
    scale √variance (the sum of discrete Gaussians is close to one of that scale)."""
    return margin_of_scale(math.sqrt(max(variance, 0.0)), confidence)


def rho_to_epsilon(rho: float, delta: float) -> float:
    """ε of (ε, δ)-DP implied by ρ-zCDP: ε = ρ + 2√(ρ ln(1/δ)) (Bun and Steinke 2016)."""
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


# --- post-processing -------------------------------------------------------------------------------


def fit_to_total(noisy: Sequence[float], total: int) -> list[int]:
    """Non-negative whole numbers that add up to `total` and lie nearest to `noisy`.

    The least-squares fit under a fixed sum and x ≥ 0 is the projection onto the scaled simplex:
    x = max(y − τ, 0) with τ so that Σx = total. Whole numbers by largest remainder: round every
    cell down, then give the missing units to the cells with the largest fractional parts (ties to
    the earlier cell), so the sum stays `total` exactly.
    """
    y = np.asarray(noisy, dtype=float)
    n = y.size
    total = int(max(total, 0))
    if n == 0:
        return []
    if total == 0:
        return [0] * n
    # Projection onto {x ≥ 0, Σx = total} (Duchi et al. 2008).
    ordered = np.sort(y)[::-1]
    cumulative = np.cumsum(ordered) - total
    steps = np.arange(1, n + 1)
    valid = ordered - cumulative / steps > 0
    rank = int(np.nonzero(valid)[0][-1]) + 1
    tau = cumulative[rank - 1] / rank
    x = np.maximum(y - tau, 0.0)
    return _largest_remainder(x, total)


def _largest_remainder(x: np.ndarray, total: int) -> list[int]:
    floors = np.floor(x + 1e-9).astype(np.int64)
    missing = total - int(floors.sum())
    if missing > 0:
        remainders = x - floors
        order = sorted(range(x.size), key=lambda i: (-remainders[i], i))
        for i in order[:missing]:
            floors[i] += 1
    elif missing < 0:  # only from float error: take units from the smallest remainders
        remainders = x - floors
        order = sorted(range(x.size), key=lambda i: (remainders[i], i))
        for i in order:
            if missing == 0:
                break
            if floors[i] > 0:
                floors[i] -= 1
                missing += 1
    return [int(v) for v in floors]


def non_negative(noisy: Sequence[float]) -> list[int]:
    """Each count on its own: negative noise results become 0, the rest stay whole numbers."""
    return [max(round(v), 0) for v in noisy]


def margin_of_share(variance: float, confidence: float) -> float:
    """Margin of a share (a ratio of noisy counts, not a count itself) of `variance`: OpenDP's
    continuous Gaussian accuracy at the scale √variance (the delta method's normal interval)."""
    if variance <= 0:
        return 0.0
    dp = _dp()
    return float(dp.gaussian_scale_to_accuracy(scale=math.sqrt(variance), alpha=1 - confidence))


def fit_two_margins(
    noisy: Sequence[Sequence[float]], rows: Sequence[int], columns: Sequence[int]
) -> list[list[int]]:
    """A two-way table of non-negative whole numbers whose row and column sums are `rows` and
    `columns` (both already fitted to the same total), near `noisy`.

    Raking (iterative proportional fitting) from the non-negative noisy table gives a real table
    with those margins; controlled rounding then picks, for every cell, its value rounded down or
    up so that every margin still holds and the total rounding change is least (a transportation
    problem, whose corners are whole numbers). Falls back to fitting rows only when the margins
    disagree.
    """
    y = np.asarray(noisy, dtype=float)
    r = np.asarray(rows, dtype=float)
    c = np.asarray(columns, dtype=float)
    if y.size == 0:
        return [[] for _ in rows]
    if int(r.sum()) != int(c.sum()):
        return [fit_to_total(y[i], int(r[i])) for i in range(y.shape[0])]
    x = np.maximum(y, 0.0) + 1e-3
    for _ in range(1000):
        x *= (r / np.maximum(x.sum(axis=1), 1e-300))[:, None]
        x *= (c / np.maximum(x.sum(axis=0), 1e-300))[None, :]
        if np.abs(x.sum(axis=1) - r).max() < 1e-9:
            break
    return _controlled_rounding(x, r.astype(int), c.astype(int))


def _controlled_rounding(x: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> list[list[int]]:
    from scipy.optimize import linprog

    n_rows, n_cols = x.shape
    low = np.floor(x + 1e-9)
    frac = np.clip(x - low, 0.0, 1.0)
    # Cost of rounding up rather than down: |ceil − x| − |floor − x| = 1 − 2·frac.
    cost = (1 - 2 * frac).ravel()
    a_rows = np.kron(np.eye(n_rows), np.ones(n_cols))
    a_cols = np.kron(np.ones(n_rows), np.eye(n_cols))
    a_eq = np.vstack([a_rows, a_cols])
    b_eq = np.concatenate([rows - low.sum(axis=1), columns - low.sum(axis=0)])
    upper = (frac > 1e-9).astype(float).ravel()
    found = linprog(
        cost,
        A_eq=a_eq,
        b_eq=b_eq,
        bounds=list(zip(np.zeros(upper.size), upper, strict=True)),
        method="highs",
    )
    if found.status == 0:
        z = low + np.rint(found.x).reshape(n_rows, n_cols)
        if (z.sum(axis=1) == rows).all() and (z.sum(axis=0) == columns).all() and (z >= 0).all():
            return [[int(v) for v in row] for row in z]
    return [fit_to_total(x[i], int(rows[i])) for i in range(n_rows)]
