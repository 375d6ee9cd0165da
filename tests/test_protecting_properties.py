"""Laws of the engine on generated tables: no small count shown, audit passes, nothing suppressed in vain."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casepool.protecting import CountTable, ProtectionSettings, audit, protect

K = 5


def with_margins(grid: np.ndarray) -> np.ndarray:
    for axis in range(grid.ndim):
        grid = np.concatenate([grid, grid.sum(axis=axis, keepdims=True)], axis=axis)
    return grid


@st.composite
def tables(draw, max_dims: int = 3):
    dims = draw(st.integers(1, max_dims))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=dims, max_size=dims)))
    size = int(np.prod(shape))
    # Many zeros and small counts, a few big ones: what child-survivor tables look like.
    cell = st.one_of(st.integers(0, 4), st.integers(0, 4), st.integers(5, 40))
    values = np.array(draw(st.lists(cell, min_size=size, max_size=size))).reshape(shape)
    contributors = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    owner_share = rng.multinomial
    parts = np.zeros((contributors, *shape), dtype=np.int64)
    for position in np.ndindex(*shape):
        parts[(slice(None), *position)] = owner_share(
            values[position], np.ones(contributors) / contributors
        )
    names = [f"d{i}" for i in range(dims)]
    labels = [[f"c{j}" for j in range(n)] + ["_T"] for n in shape]
    full = with_margins(values)
    own = [with_margins(parts[c]) for c in range(contributors)]
    rows, part_rows = [], []
    for position in itertools.product(*(range(n + 1) for n in shape)):
        codes = [labels[d][position[d]] for d in range(dims)]
        rows.append([*codes, int(full[position])])
        for c in range(contributors):
            part_rows.append([*codes, f"org{c}", int(own[c][position])])
    cells = pl.DataFrame(rows, schema=[*names, "value"], orient="row")
    contributions = pl.DataFrame(part_rows, schema=[*names, "contributor", "value"], orient="row")
    return CountTable("cases", tuple(names), cells, contributions=contributions)


def insiders_of(table: CountTable) -> dict[str, pl.DataFrame]:
    """Each contributor's own counts, knowing where it is alone and where it dominates (the
    engine's insider)."""
    assert table.contributions is not None
    joined = table.contributions.join(
        table.cells.rename({"value": "total"}), on=list(table.dimensions)
    )
    out = {}
    for (name,), group in joined.group_by("contributor", maintain_order=True):
        sole = (group["value"] == group["total"]) & (group["value"] > 0)
        others = group["total"] - group["value"]
        dominant = (others >= 1) & (others < K) & (group["total"] >= K) & (group["value"] > 0)
        out[str(name)] = group.select(*table.dimensions, "value").with_columns(
            sole.alias("sole"), dominant.alias("dominant")
        )
    return out


def check_protected(table: CountTable) -> None:
    (result,) = protect([table], ProtectionSettings(k=K, k_sensitive=K))
    frame = result.frame
    shown = frame.filter(pl.col("value").is_not_null())["value"]
    assert not ((shown >= 1) & (shown < K)).any(), "a count in 1..k-1 is published"
    truth = frame.drop("value").join(table.cells, on=list(table.dimensions))
    small = truth.filter((pl.col("value") >= 1) & (pl.col("value") < K))
    assert (small["conf_status"] == "C").all()
    insiders = insiders_of(table)
    for own in insiders.values():  # a cell an organisation dominates is primary
        dominated = own.filter("dominant").join(frame, on=list(table.dimensions))
        assert (dominated["conf_status"] == "C").all()
    report = audit(frame, k=K, insiders=insiders)
    assert report.protected, [v.to_dict() for v in report.failures]
    # Nothing suppressed in vain: showing any one secondary cell again breaks the audit.
    for row in truth.filter(pl.col("conf_status") == "D").iter_rows(named=True):
        match = pl.all_horizontal(pl.col(d) == row[d] for d in table.dimensions)
        shown_again = frame.with_columns(
            pl.when(match).then(pl.lit(row["value"])).otherwise(pl.col("value")).alias("value"),
            pl.when(match).then(pl.lit("A")).otherwise(pl.col("obs_status")).alias("obs_status"),
            pl.when(match).then(pl.lit("F")).otherwise(pl.col("conf_status")).alias("conf_status"),
        )
        assert not audit(shown_again, k=K, insiders=insiders).protected, row


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_generated_tables_are_protected_for_everyone_and_minimal(table):
    check_protected(table)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(max_dims=3))
def test_many_generated_tables_are_protected(table):
    check_protected(table)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(max_dims=2).filter(lambda t: len(t.dimensions) == 2))
def test_a_table_and_its_margin_table_protected_together_agree_and_pass(table):
    first, last = table.dimensions
    assert table.contributions is not None
    margin = CountTable(
        "cases",
        (first,),
        table.cells.filter(pl.col(last) == "_T").drop(last),
        contributions=table.contributions.filter(pl.col(last) == "_T").drop(last),
    )
    both = protect([table, margin], ProtectionSettings(k=K, k_sensitive=K))
    shared = (
        both[0]
        .frame.filter(pl.col(last) == "_T")
        .select(first, "conf_status")
        .join(both[1].frame.select(first, "conf_status"), on=first)
    )
    assert (shared["conf_status"] == shared["conf_status_right"]).all()
    frame = pl.concat([both[0].frame, both[1].frame], how="diagonal")
    assert audit(frame, k=K, insiders=insiders_of(table)).protected
