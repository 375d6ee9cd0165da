"""The primary rules: a count in 1..k-1 is confidential; so is a cell dominated by one contributor."""

from __future__ import annotations

import numpy as np


def primary_cells(values: np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """Which cells the primary rule suppresses, given each cell's threshold k."""
    return (values >= 1) & (values < k)


def dominated_cells(
    values: np.ndarray, own: np.ndarray, k: np.ndarray | int, small_cells: bool = False
) -> np.ndarray:
    """Cells where everyone but this contributor together counts 1..k-1 (the contributor would
    learn the others' small count from the cell): primary against it. Cells below k are
    primary anyway; `small_cells` flags them too, so the contributor also needs the full interval.
    """
    others = values - own
    found = (others >= 1) & (others < k) & (own > 0)
    if not small_cells:
        found &= values >= k
    return found
