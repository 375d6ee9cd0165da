"""Local suppression: blank the fewest quasi-identifier values until every record has k-1 look-alikes.

As sdcMicro's `localSuppression`: a blank (a missing value) matches any value, so a record's
frequency f is the number of records (itself included) that agree with it on every quasi-identifier
where both hold a value. Strata (the registration quarter) are never blanked and always compared.

The algorithm has two phases, both over the distinct combinations of values rather than records:

1. **Suppress, least important first.** For each quasi-identifier from the least important
   (highest `importance` in the case record) to the most, blank it in every record still below k,
   then recount. After the last one, a record below k holds no value but its stratum, so it
   matches every record of the stratum: k is reached whenever the stratum has k records.
2. **Restore, most important first.** Phase 1 blanks more than needed. Each blanked value is put
   back, most important field first, whenever every record still matches k: restoring a value
   only ever removes matches, so the check is local (the restored record, and the records it stops
   matching). Passes repeat until none restores anything.

The result is *minimal* in this sense: no single blanked value can be restored without some
record falling below k (tests check it independently, by brute force).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

WILDCARD = -1


@dataclass(frozen=True)
class Suppression:
    """What local suppression did to a package: the frame with blanks, and the cost."""

    frame: pl.DataFrame | None  # None when submit wrote the rows batch by batch
    k: int  # the k asked for
    k_reached: int  # the smallest frequency after suppression (the package's k)
    suppressed: dict[str, int]  # blanked values per quasi-identifier column
    records_touched: int
    frequencies: np.ndarray  # f of each record after suppression, in frame order

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "k_reached": self.k_reached,
            "suppressed": dict(self.suppressed),
            "values_suppressed": sum(self.suppressed.values()),
            "records_touched": self.records_touched,
        }


def encode(frame: pl.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Each column as small non-negative integers (equal values, equal codes); null as WILDCARD."""
    n = frame.height
    out = np.empty((n, len(columns)), dtype=np.int64)
    for j, name in enumerate(columns):
        ranks = frame.get_column(name).rank("dense")
        out[:, j] = (ranks.cast(pl.Int64) - 1).fill_null(WILDCARD).to_numpy()
    return out


def _key(values: np.ndarray, radix: np.ndarray) -> np.ndarray:
    """One int64 per row: the mixed-radix number of its (non-negative) values."""
    key = np.zeros(values.shape[0], dtype=np.int64)
    for j in range(values.shape[1]):
        key = key * radix[j] + values[:, j]
    return key


def frequencies(combos: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """f of each distinct combination: the records of all combinations it matches (wildcards)."""
    d, m = combos.shape
    f = np.zeros(d, dtype=np.int64)
    if d == 0:
        return f
    radix = combos.max(axis=0) + 2
    null = combos < 0
    weights = 1 << np.arange(m, dtype=np.int64)
    pattern = (null * weights).sum(axis=1)
    members = {int(p): np.flatnonzero(pattern == p) for p in np.unique(pattern)}
    for p, rows_p in members.items():
        for q, rows_q in members.items():
            shared = [j for j in range(m) if not (p | q) >> j & 1]
            if not shared:
                f[rows_p] += counts[rows_q].sum()
                continue
            cols = np.array(shared)
            key_q = _key(combos[np.ix_(rows_q, cols)], radix[cols])
            key_p = _key(combos[np.ix_(rows_p, cols)], radix[cols])
            uniq, inverse = np.unique(key_q, return_inverse=True)
            sums = np.bincount(inverse, weights=counts[rows_q]).astype(np.int64)
            pos = np.searchsorted(uniq, key_p)
            pos[pos == len(uniq)] = 0
            hit = uniq[pos] == key_p
            f[rows_p[hit]] += sums[pos[hit]]
    return f


def distinct_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """np.unique(values, axis=0) with inverse and counts, sorting one int64 key per row when the
    values fit in one (a row-wise sort is many times slower on a million rows)."""
    radix = values.max(axis=0) + 2 if values.size else np.zeros(values.shape[1], dtype=np.int64)
    if math.prod(int(r) for r in radix) >= 2**62:
        combos, inverse, counts = np.unique(values, axis=0, return_inverse=True, return_counts=True)
        return combos, inverse.reshape(-1), counts
    _, first, inverse, counts = np.unique(
        _key(values + 1, radix), return_index=True, return_inverse=True, return_counts=True
    )
    return values[first], inverse.reshape(-1), counts


def record_frequencies(values: np.ndarray) -> np.ndarray:
    """f of each record (rows of encoded values, WILDCARD for a blank)."""
    if values.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    combos, inverse, counts = distinct_rows(values)
    return frequencies(combos, counts)[inverse]


class _Combinations:
    """The distinct combinations present, their record counts and frequencies, kept up to date.

    Combinations are filed in blocks by their strata and one quasi-identifier (the most important,
    rarely blank), so finding the combinations one may match reads a block, not all of them.
    """

    def __init__(self, values: np.ndarray, strata: int, block: int) -> None:
        combos, inverse, counts = distinct_rows(values)
        self.size = combos.shape[0]
        capacity = max(16, 2 * self.size)
        self.combos = np.zeros((capacity, values.shape[1]), dtype=np.int64)
        self.combos[: self.size] = combos
        self.counts = np.zeros(capacity, dtype=np.int64)
        self.counts[: self.size] = counts
        self.f = np.zeros(capacity, dtype=np.int64)
        self.f[: self.size] = frequencies(combos, counts)
        self.index = {tuple(row): i for i, row in enumerate(combos.tolist())}
        self.of_record = inverse.astype(np.int64)
        self.strata, self.block = strata, block
        lists: dict[tuple[int, ...], dict[int, list[int]]] = {}
        for i, row in enumerate(combos.tolist()):
            lists.setdefault(tuple(row[:strata]), {}).setdefault(row[block], []).append(i)
        self.blocks = {
            s: {b: np.array(ids, dtype=np.int64) for b, ids in by.items()}
            for s, by in lists.items()
        }

    def matching(self, combo: np.ndarray) -> np.ndarray:
        """The live combinations `combo` matches (a blank matches anything), as indices."""
        by = self.blocks.get(tuple(combo[: self.strata].tolist()), {})
        value = int(combo[self.block])
        empty = np.zeros(0, dtype=np.int64)
        if value >= 0:
            ids = np.concatenate([by.get(value, empty), by.get(WILDCARD, empty)])
        else:
            ids = np.concatenate([empty, *by.values()])
        rows = self.combos[ids]
        keep = ((rows == combo) | (rows < 0) | (combo < 0)).all(axis=1) & (self.counts[ids] > 0)
        return ids[keep]

    def add(self, combo: np.ndarray, f: int) -> int:
        key = tuple(combo.tolist())
        found = self.index.get(key)
        if found is not None:
            self.f[found] = f  # a combination emptied earlier kept a stale f
            return found
        if self.size == self.combos.shape[0]:
            grow = self.combos.shape[0]
            self.combos = np.vstack([self.combos, np.zeros_like(self.combos[:grow])])
            self.counts = np.concatenate([self.counts, np.zeros(grow, dtype=np.int64)])
            self.f = np.concatenate([self.f, np.zeros(grow, dtype=np.int64)])
        i = self.size
        self.combos[i], self.f[i] = combo, f
        self.index[key] = i
        self.size += 1
        by = self.blocks.setdefault(tuple(key[: self.strata]), {})
        value = key[self.block]
        by[value] = np.append(by.get(value, np.zeros(0, dtype=np.int64)), i)
        return i


def _restore_pass(
    state: _Combinations,
    current: np.ndarray,
    original: np.ndarray,
    order: Sequence[int],
    k: int,
) -> int:
    """Put back every blanked value that keeps all records at k or above; returns how many."""
    restored = 0
    for v in order:
        blanked = np.flatnonzero((current[:, v] < 0) & (original[:, v] >= 0))
        if blanked.size == 0:
            continue
        groups: dict[tuple[int, int], list[int]] = {}
        for r, c, a in zip(
            blanked.tolist(),
            state.of_record[blanked].tolist(),
            original[blanked, v].tolist(),
            strict=True,
        ):
            groups.setdefault((c, a), []).append(r)
        for (c, a), records in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0])):
            combo = state.combos[c].copy()
            matches = state.matching(combo)
            values = state.combos[matches, v]
            lost = matches[(values >= 0) & (values != a)]  # stop matching the restored record
            f_restored = int(state.counts[matches].sum() - state.counts[lost].sum())
            if f_restored < k:
                continue
            slack = state.f[lost] - k
            n = min(len(records), int(slack.min()) if slack.size else len(records))
            if n <= 0:
                continue
            combo[v] = a
            target = state.add(combo, f_restored)
            state.f[lost] -= n
            state.counts[c] -= n
            state.counts[target] += n
            moved = np.array(records[:n])
            state.of_record[moved] = target
            current[moved, v] = a
            restored += n
    return restored


def suppress(
    original: np.ndarray, k: int, importance: Sequence[int], strata: int = 0
) -> np.ndarray:
    """Encoded values with blanks (WILDCARD) so that every record's f is at least k when possible.

    `original`: one row per record, the first `strata` columns never blanked, the others
    quasi-identifiers whose `importance` (1 = most important) orders the suppression.
    """
    current = original.copy()
    n, m = original.shape
    if n == 0:
        return current
    qis = list(range(strata, m))
    least_first = sorted(qis, key=lambda j: (-importance[j - strata], j))
    for v in least_first:
        below = record_frequencies(current) < k
        if not below.any():
            break
        current[below, v] = WILDCARD
    if (current == original).all():
        return current
    most_first = least_first[::-1]
    state = _Combinations(current, strata, block=most_first[0])
    while _restore_pass(state, current, original, most_first, k):
        pass
    return current


@dataclass(frozen=True)
class SuppressedCodes:
    """Local suppression over encoded values: which values it blanked, and the records' f after."""

    current: np.ndarray  # the values with blanks (WILDCARD)
    blanked: np.ndarray  # bool, per record and suppressible column: a value blanked here
    suppressed: dict[str, int]
    frequencies: np.ndarray

    def suppression(self, frame: pl.DataFrame | None, k: int) -> Suppression:
        f = self.frequencies
        return Suppression(
            frame=frame,
            k=k,
            k_reached=int(f.min()) if f.size else 0,
            suppressed=self.suppressed,
            records_touched=int(self.blanked.any(axis=1).sum()),
            frequencies=f,
        )


def suppress_codes(
    original: np.ndarray,
    quasi_identifiers: Sequence[str],
    importance: Sequence[int],
    k: int,
    strata: int = 0,
) -> SuppressedCodes:
    """`suppress` over encoded values (the first `strata` columns the strata, then the
    `quasi_identifiers` in order), with what the package reports of it. Submit in batches
    calls this on the codes it gathered over the whole file, then blanks each batch."""
    current = suppress(original, k, importance, strata=strata)
    blanked = (current[:, strata:] < 0) & (original[:, strata:] >= 0)
    suppressed = {name: int(blanked[:, j].sum()) for j, name in enumerate(quasi_identifiers)}
    return SuppressedCodes(current, blanked, suppressed, record_frequencies(current))


def blank(frame: pl.DataFrame, columns: Sequence[str], blanked: np.ndarray) -> pl.DataFrame:
    """`frame` with the values of `columns` where `blanked` (one row per record) set to null."""
    masks = {
        name: pl.Series(blanked[:, j]) for j, name in enumerate(columns) if blanked[:, j].any()
    }
    return frame.with_columns(
        pl.when(pl.lit(mask)).then(None).otherwise(pl.col(name)).alias(name)
        for name, mask in masks.items()
    )


def local_suppression(
    frame: pl.DataFrame,
    quasi_identifiers: Sequence[str],
    importance: Sequence[int],
    k: int,
    strata: Sequence[str] = (),
) -> Suppression:
    """Blank quasi-identifier values of `frame` (columns of any type) until every record reaches k."""
    columns = [*strata, *quasi_identifiers]
    done = suppress_codes(
        encode(frame, columns), quasi_identifiers, importance, k, strata=len(strata)
    )
    return done.suppression(blank(frame, quasi_identifiers, done.blanked), k)
