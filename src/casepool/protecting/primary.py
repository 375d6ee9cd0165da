"""The primary rule: a count in 1..k-1 is confidential; zeros and counts of k or more are not."""

from __future__ import annotations

import numpy as np


def primary_cells(values: np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """Which cells the primary rule suppresses, given each cell's threshold k."""
    return (values >= 1) & (values < k)
