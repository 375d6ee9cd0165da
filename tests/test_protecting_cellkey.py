"""Cell-key perturbation: a zero-mean ptable of the stated variance, the same noise for the same records."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casepool.exchange.keys import record_keys
from casepool.protecting import CellKeySettings
from casepool.protecting.cellkey import (
    cellkey_perturb,
    perturbation_table,
    tabulate_with_keys,
)

PARAMS = CellKeySettings(max_deviation=3, variance=2.0, threshold=2)


@pytest.mark.parametrize("count", range(0, 30))
def test_every_row_of_the_ptable_is_a_zero_mean_distribution(count):
    table = perturbation_table(PARAMS)
    assert table.row(count).sum() == pytest.approx(1.0)
    assert table.mean(count) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("count", [6, 7, 10, 100, 10_000])
def test_counts_that_can_move_freely_get_the_stated_variance(count):
    assert perturbation_table(PARAMS).variance(count) == pytest.approx(2.0, abs=1e-6)


def test_other_parameters_give_their_own_variance():
    wide = CellKeySettings(max_deviation=5, variance=4.5, threshold=3)
    assert perturbation_table(wide).variance(50) == pytest.approx(4.5, abs=1e-6)


@pytest.mark.parametrize("count", range(1, 12))
def test_no_perturbed_count_lands_in_one_to_js_and_zeros_stay_zero(count):
    table = perturbation_table(PARAMS)
    keys = np.linspace(0, 0.999999, 5000)
    noisy = count + table.noise(np.full(keys.size, count), keys)
    assert not ((noisy >= 1) & (noisy <= PARAMS.threshold)).any()
    assert (noisy >= 0).all() and (np.abs(noisy - count) <= PARAMS.max_deviation).all()
    assert (table.noise(np.zeros(10, dtype=np.int64), keys[:10]) == 0).all()


def test_parameters_are_never_in_the_printed_settings_or_table():
    text = repr(PARAMS) + repr(perturbation_table(PARAMS))
    assert "2.0" not in text and "max_deviation" not in text and "variance" not in text


def _records(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "pseudonym": [f"p{i}" for i in range(n)],
            "sex": rng.choice(["F", "M"], n).tolist(),
            "governorate": rng.choice(["IQG01", "IQG02", "IQG03"], n).tolist(),
            "age_band": rng.choice(["0-9", "10-14", "15-17"], n).tolist(),
        }
    ).with_columns(
        pl.Series(
            "record_key", record_keys(b"steward secret", "ORG-01", [f"p{i}" for i in range(n)])
        )
    )


@settings(max_examples=20, deadline=None)
@given(st.integers(5, 200), st.integers(0, 1000))
def test_the_same_records_get_the_same_noise_in_different_tables(n, seed):
    records = _records(n, seed)
    by_sex_gov = cellkey_perturb(tabulate_with_keys(records, ["sex", "governorate"]))
    by_sex_age = cellkey_perturb(tabulate_with_keys(records.reverse(), ["sex", "age_band"]))
    # The cells sex=F (all governorates) and sex=F (all ages) hold the same records.
    for sex in ("F", "M", "_T"):
        left = by_sex_gov.filter((pl.col("sex") == sex) & (pl.col("governorate") == "_T"))
        right = by_sex_age.filter((pl.col("sex") == sex) & (pl.col("age_band") == "_T"))
        assert left["value"].to_list() == right["value"].to_list()


def test_cell_keys_are_the_fraction_of_the_sum_of_record_keys_and_are_dropped():
    records = pl.DataFrame({"sex": ["F", "F", "M"], "record_key": [0.75, 0.5, 0.125]})
    cells = tabulate_with_keys(records, ["sex"])
    keys = dict(zip(cells["sex"], cells["cell_key"], strict=True))
    assert keys == {"F": 0.25, "M": 0.125, "_T": 0.375}
    assert "cell_key" not in cellkey_perturb(cells).columns
