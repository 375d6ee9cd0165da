"""Local suppression on synthetic exports: every package reaches k, and no blank is superfluous.

k is checked here by brute force, record against record, without the suppression module's
counting: a record's frequency is the number of records that agree with it on every declared
quasi-identifier where both hold a value (a blank matches anything), the registration quarter
always compared.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casepool.core.periods import parse_period
from casepool.intake.deidentifying import prepare_submission
from casepool.intake.local_suppression import suppress
from casepool.intake.validating import validate_export
from casepool.synthesis import synthesize

# The declared quasi-identifiers the profile keeps, as package columns (case_record.yaml).
STRATUM = "report_date"
QUASI_IDENTIFIERS = ["survivor_sex", "age_band", "population_group", "governorate", "incident_date"]
TODAY = date(2026, 1, 15)


def _export(folder: Path, records: int, seed: int) -> pl.DataFrame:
    result = synthesize(folder, orgs=1, records=records, seed=seed, fmt="csv", start="2025-01",
                        end="2025-12", error_rate=0.0, today=TODAY)  # fmt: skip
    checked = validate_export(folder / result.exports[0].file, today=TODAY)
    valid = checked.records
    if checked.invalid_rows:
        valid = valid.filter(~pl.col("_row").is_in(sorted(checked.invalid_rows)))
    return valid


def _packages(folder: Path, records: int, seed: int, k: int | None = None):
    valid = _export(folder, records, seed)
    options = {"org": "ORG-01", "period": parse_period("2025"), "secret": b"k" * 32}
    plain = prepare_submission(valid, suppress=False, **options)
    done = prepare_submission(valid, min_k=k, **options)
    assert plain.ready and done.ready
    return plain.frame, done.frame, done


def _codes(frame: pl.DataFrame, reference: pl.DataFrame | None = None) -> np.ndarray:
    """The stratum and quasi-identifiers as integers, -1 for a blank (independently of the code),
    numbered by the values of `reference` (the package before suppression) when given."""
    columns = []
    for name in [STRATUM, *QUASI_IDENTIFIERS]:
        values = frame.get_column(name).to_list()
        known = (reference if reference is not None else frame).get_column(name).to_list()
        index = {v: i for i, v in enumerate(sorted({v for v in known if v is not None}))}
        columns.append([-1 if v is None else index[v] for v in values])
    return np.array(columns, dtype=np.int64).T


def _matches(codes: np.ndarray, i: int) -> np.ndarray:
    row = codes[i]
    return ((codes == row) | (codes < 0) | (row < 0)).all(axis=1)


def _frequencies(codes: np.ndarray) -> np.ndarray:
    return np.array([_matches(codes, i).sum() for i in range(len(codes))])


@pytest.mark.parametrize(("records", "seed"), [(50, 1), (500, 2), (5000, 3)])
def test_every_package_reaches_k_over_the_declared_quasi_identifiers(tmp_path, records, seed):
    plain, done, sub = _packages(tmp_path, records, seed)
    assert done.height == plain.height
    f = _frequencies(_codes(done))
    assert f.min() >= 3
    assert sub.k_anonymity.k == f.min() and sub.suppression.k_reached == f.min()
    # Only quasi-identifier values were blanked, and the report counts each one.
    for name in plain.columns:
        blanked = plain.get_column(name).is_not_null() & done.get_column(name).is_null()
        expected = sub.suppression.suppressed.get(name, 0)
        assert int(blanked.sum()) == expected, name
        if name not in QUASI_IDENTIFIERS:
            assert plain.get_column(name).equals(done.get_column(name)), name


def _restorable(original: np.ndarray, current: np.ndarray, k: int) -> list[tuple[int, int]]:
    """Blanked values that could be put back with every record still at k or above."""
    f = _frequencies(current)
    found = []
    for i, j in zip(*np.nonzero((current < 0) & (original >= 0)), strict=True):
        trial = current.copy()
        trial[i, j] = original[i, j]
        before, after = _matches(current, i), _matches(trial, i)
        # Only record i's matches change: i loses some, and those records lose i.
        lost = before & ~after
        if after.sum() >= k and (f[lost] - 1 >= k).all():
            found.append((int(i), int(j)))
    return found


@pytest.mark.parametrize(("records", "seed", "k"), [(50, 4, 3), (500, 5, 3), (500, 6, 5)])
def test_no_blank_can_be_restored_without_breaking_k(tmp_path, records, seed, k):
    plain, done, _ = _packages(tmp_path, records, seed, k)
    original, current = _codes(plain), _codes(done, plain)
    assert (current[original < 0] < 0).all()  # nothing filled in
    assert _restorable(original, current, k) == []


def test_minimal_by_full_recount_on_a_small_package(tmp_path):
    plain, done, _ = _packages(tmp_path, 50, 7)
    original, current = _codes(plain), _codes(done, plain)
    for i, j in zip(*np.nonzero((current < 0) & (original >= 0)), strict=True):
        trial = current.copy()
        trial[i, j] = original[i, j]
        assert _frequencies(trial).min() < 3


def test_5000_records_minimal(tmp_path):
    plain, done, _ = _packages(tmp_path, 5000, 8)
    assert _restorable(_codes(plain), _codes(done, plain), 3) == []


def test_the_least_important_field_is_blanked_first():
    # One record differs in the least important field only: that one value is blanked.
    original = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
    current = suppress(original, 3, importance=[1, 2, 3], strata=1)
    assert (current[:, :3] == original[:, :3]).all()
    assert current[2, 3] == -1 and (current[[0, 1, 3], 3] == 0).all()
    # When two fields could each fix it, the less important one goes.
    original = np.array([[0, 0, 0]] * 3 + [[0, 1, 1]] * 3 + [[0, 0, 1]])
    current = suppress(original, 3, importance=[1, 2], strata=1)
    assert current[6].tolist() == [0, 0, -1]
    assert (current[:6] == original[:6]).all()


def test_a_stratum_smaller_than_k_cannot_reach_it_and_says_so():
    original = np.array([[0, 1], [0, 1], [0, 1], [1, 0], [1, 1]])
    current = suppress(original, 3, importance=[1], strata=1)
    assert (current[:3] == original[:3]).all()
    assert (current[3:, 1] == -1).all()


@st.composite
def _packages_of_codes(draw):
    n = draw(st.integers(1, 40))
    width = draw(st.integers(1, 4))
    cell = st.integers(-1, 2)
    rows = draw(st.lists(st.lists(cell, min_size=width, max_size=width), min_size=n, max_size=n))
    strata = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    importance = draw(st.permutations(list(range(1, width + 1))))
    return np.array([[s, *r] for s, r in zip(strata, rows, strict=True)]), importance


@settings(max_examples=150, deadline=None)
@given(_packages_of_codes(), st.integers(2, 5))
def test_any_package_reaches_k_where_its_stratum_allows_and_no_blank_is_superfluous(case, k):
    original, importance = case
    current = suppress(original, k, importance, strata=1)
    assert (current[:, 0] == original[:, 0]).all()  # the stratum is never blanked
    assert ((current == original) | (current < 0)).all()  # values are only ever blanked
    f = _frequencies(current)
    stratum_size = np.array([(original[:, 0] == s).sum() for s in original[:, 0]])
    assert (f >= np.minimum(k, stratum_size)).all()
    if (stratum_size >= k).all():
        assert _restorable(original, current, k) == []
