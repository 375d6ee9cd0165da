"""The worked examples of sdc_fixtures.md (B, C, D), the primary rule, linked and multi-valued tables."""

from __future__ import annotations

import polars as pl
import pytest

from casepool.core.errors import TableError
from casepool.protecting import CountTable, ProtectionSettings, audit, protect, read_tidy_table

FIXTURES = "tests/fixtures/protecting"


def _status(table, **codes):
    frame = table.frame
    for dim, code in codes.items():
        frame = frame.filter(pl.col(dim) == code)
    assert frame.height == 1
    return frame.row(0, named=True)


def _intervals(report, attacker="outsider"):
    return {
        tuple(v.codes.values()): (v.lower, v.upper)
        for v in report.verdicts
        if v.attacker == attacker
    }


def test_b_one_primary_cell_takes_the_cheapest_rectangle_and_all_margins_stay_published(fixtures):
    cells = pl.read_csv(fixtures / "protecting" / "microdata1_b_counts.csv")
    (table,) = protect([CountTable("cases", ("region", "sex"), cells)], ProtectionSettings(k=3))
    hidden = table.frame.filter(pl.col("obs_status") == "Q")
    assert sorted(hidden.select("region", "sex").rows()) == [
        ("A", "female"), ("A", "male"), ("C", "female"), ("C", "male"),
    ]  # fmt: skip
    assert _status(table, region="A", sex="female")["conf_status"] == "C"
    assert table.count("D") == 3
    margins = table.frame.filter((pl.col("region") == "_T") | (pl.col("sex") == "_T"))
    assert margins["value"].null_count() == 0
    report = audit(table.frame, k=3)
    assert report.protected
    # The reference's interval [0, 12]; a reader of the C flag knows the cell is not 0.
    assert _intervals(audit(table.frame, k=3, flags_told=False))[("A", "female")] == (0, 12)
    assert _intervals(report)[("A", "female")] == (1, 12)


def test_c_geurts_intervals_from_the_lp_audit(fixtures):
    report = audit(read_tidy_table(fixtures / "protecting" / "geurts_c_published.csv"), k=3)
    assert _intervals(report) == {
        ("r1", "c1"): (3, 6),
        ("r1", "c2"): (1, 4),
        ("r2", "c1"): (0, 3),
        ("r2", "c2"): (0, 3),
    }


def test_c_same_intervals_with_plain_linprog(fixtures):
    frame = read_tidy_table(fixtures / "protecting" / "geurts_c_published.csv")
    warm = _intervals(audit(frame, k=3))
    assert _intervals(audit(frame, k=3, solver="linprog")) == warm


def _singletons(fixtures):
    cells = pl.read_csv(fixtures / "protecting" / "singletons_d_counts.csv")
    parts = pl.read_csv(fixtures / "protecting" / "singletons_d_contributions.csv")
    return cells, parts


def test_d_two_singletons_alone_are_enough_for_an_outsider(fixtures):
    cells, _ = _singletons(fixtures)
    (table,) = protect([CountTable("cases", ("item",), cells)], ProtectionSettings(k=2))
    # Two singletons flagged C are each ≥ 1 and sum to 2 (4 − b − d): a reader of the flags gets
    # both exactly, so a third cell hides with them (tests/test_flags_told.py).
    assert table.frame.filter(pl.col("obs_status") == "Q")["item"].sort().to_list() == [
        "a",
        "b",
        "c",
    ]


def test_d_singletons_of_different_contributors_get_a_further_suppression(fixtures):
    cells, parts = _singletons(fixtures)
    (table,) = protect(
        [CountTable("cases", ("item",), cells, contributions=parts)], ProtectionSettings(k=2)
    )
    hidden = table.frame.filter(pl.col("obs_status") == "Q")
    # The zero, cheapest of all, no longer helps: a and c flagged C are ≥ 1 each, so with d
    # they would still sum to 2 and be pinned; the total hides instead.
    assert hidden["item"].sort().to_list() == ["_T", "a", "c"]
    assert _status(table, item="_T")["conf_status"] == "D"
    insider = parts.filter(pl.col("contributor") == "org_x").drop("contributor")
    sole = insider.with_columns(pl.col("item").is_in(["a"]).alias("sole"))
    assert audit(table.frame, k=2, insiders={"org_x": sole}).protected


def test_d_without_the_further_suppression_the_insider_recovers_the_other_singleton(fixtures):
    frame = read_tidy_table(fixtures / "protecting" / "singletons_d_only_primaries_suppressed.csv")
    own = read_tidy_table(fixtures / "protecting" / "singletons_d_org_x_own.csv")
    # Read without the flags, only the insider subtracts its own singleton; a reader of the
    # flags (a, c ≥ 1, a + c = 2) gets both from the outside too.
    assert {f.attacker for f in audit(frame, k=2, insiders={"org_x": own}).failures} == {
        "outsider",
        "org_x",
    }
    report = audit(frame, k=2, insiders={"org_x": own}, flags_told=False)
    (failure,) = report.failures
    assert (failure.codes, failure.attacker, failure.verdict) == (
        {"item": "c"},
        "org_x",
        "disclosed",
    )
    assert (failure.lower, failure.upper) == (1, 1)


def test_primary_rule_hides_small_counts_and_publishes_zeros():
    cells = pl.DataFrame({"sex": ["F", "M", "U", "_T"], "value": [30, 4, 0, 34]})
    (table,) = protect([CountTable("cases", ("sex",), cells)], ProtectionSettings(k=5))
    assert _status(table, sex="M")["conf_status"] == "C"
    assert _status(table, sex="U") | {} == {
        "indicator": "cases", "sex": "U", "value": 0, "obs_status": "A", "conf_status": "F",
    }  # fmt: skip
    # the zero cannot hide the 4 (it can only grow), so another cell is suppressed too
    assert audit(table.frame, k=5).protected
    assert table.suppressed >= 2


def test_sensitive_dimension_uses_the_stricter_k():
    cells = pl.DataFrame({"minority_community": ["yes", "no", "_T"], "value": [7, 40, 47]})
    settings = ProtectionSettings(k=5, k_sensitive=10)
    (table,) = protect([CountTable("cases", ("minority_community",), cells)], settings)
    assert _status(table, minority_community="yes")["conf_status"] == "C"
    assert table.k == 10


def test_linked_tables_give_shared_cells_one_status():
    by_sex = pl.DataFrame(
        {"period": ["2024", "2024", "2024", "2025", "2025", "2025", "_T", "_T", "_T"],
         "sex": ["F", "M", "_T"] * 3,
         "value": [20, 3, 23, 30, 12, 42, 50, 15, 65]}
    )  # fmt: skip
    by_period = pl.DataFrame({"period": ["2024", "2025", "_T"], "value": [23, 42, 65]})
    tables = [
        CountTable("cases", ("period", "sex"), by_sex),
        CountTable("cases", ("period",), by_period),
    ]
    first, second = protect(tables, ProtectionSettings(k=5))
    for period in ("2024", "2025", "_T"):
        shared = _status(first, period=period, sex="_T")
        assert _status(second, period=period)["conf_status"] == shared["conf_status"]
    both = pl.concat([first.frame, second.frame], how="diagonal")
    assert audit(both, k=5).protected


def test_multi_valued_dimension_is_not_summed_and_still_protected():
    cells = pl.DataFrame(
        {"form": ["online", "online", "online", "marriage", "marriage", "marriage", "_T", "_T", "_T"],
         "sex": ["F", "M", "_T"] * 3,
         "value": [12, 2, 14, 9, 7, 16, 18, 8, 26]}
    )  # fmt: skip
    table = CountTable("cases", ("form", "sex"), cells, multi_valued={"form"})
    (result,) = protect([table], ProtectionSettings(k=5))
    assert _status(result, form="online", sex="M")["value"] is None
    assert audit(result.frame, k=5, multi_valued=["form"]).protected
    with pytest.raises(TableError) as error:
        protect([CountTable("cases", ("form", "sex"), cells)], ProtectionSettings(k=5))
    assert error.value.key == "protect-not-additive"


@pytest.mark.parametrize(
    ("cells", "key"),
    [
        (pl.DataFrame({"sex": ["F", "_T"], "value": [3, 4]}), "protect-not-additive"),
        (pl.DataFrame({"sex": ["F", "F", "_T"], "value": [3, 3, 6]}), "protect-duplicate-cell"),
        (pl.DataFrame({"sex": ["F", "_T"], "value": [-1, -1]}), "protect-bad-count"),
        (pl.DataFrame({"sex": ["F", None], "value": [1, 1]}), "protect-missing-code"),
        (pl.DataFrame({"sex": ["F", "_T"]}), "protect-missing-column"),
    ],
)
def test_malformed_tables_are_refused_with_a_message_key(cells, key):
    with pytest.raises(TableError) as error:
        protect([CountTable("cases", ("sex",), cells)], ProtectionSettings())
    assert error.value.key == key


def test_contributions_must_add_up():
    cells = pl.DataFrame({"sex": ["F", "M", "_T"], "value": [6, 3, 9]})
    parts = pl.DataFrame({"sex": ["F", "_T"], "contributor": ["org_a", "org_a"], "value": [6, 6]})
    with pytest.raises(TableError) as error:
        protect([CountTable("cases", ("sex",), cells, contributions=parts)], ProtectionSettings())
    assert error.value.key == "protect-contributions-mismatch"


def test_a_single_small_total_and_an_all_small_table_are_hidden_and_pass():
    (total,) = protect(
        [CountTable("cases", (), pl.DataFrame({"value": [3]}))], ProtectionSettings()
    )
    assert total.frame.rows() == [("cases", None, "Q", "C")]
    assert audit(total.frame).protected
    cells = pl.DataFrame({"sex": ["F", "M", "_T"], "value": [3, 1, 4]})
    (small,) = protect([CountTable("cases", ("sex",), cells)], ProtectionSettings())
    assert small.frame["conf_status"].to_list() == ["C", "C", "C"]
    zeros = pl.DataFrame({"sex": ["F", "M", "_T"], "value": [0, 0, 0]})
    (empty,) = protect([CountTable("cases", ("sex",), zeros)], ProtectionSettings())
    assert empty.frame["value"].to_list() == [0, 0, 0]


def test_protection_is_deterministic_whatever_the_row_order(fixtures):
    cells = pl.read_csv(fixtures / "protecting" / "microdata1_b_counts.csv")
    settings = ProtectionSettings(k=15)  # many primary cells, several complements
    (first,) = protect([CountTable("cases", ("region", "sex"), cells)], settings)
    shuffled = cells.sample(fraction=1.0, shuffle=True, seed=3)
    (second,) = protect([CountTable("cases", ("region", "sex"), shuffled)], settings)
    assert first.frame.equals(second.frame)
    assert audit(first.frame, k=15).protected


def test_a_table_of_zeros_has_no_contributions_and_is_protected():
    # A share's numerator can be zero everywhere (no child of that category in the quarter): its
    # hidden table then has no contribution row at all, which is consistent, not a mismatch.
    cells = pl.DataFrame({"sex": ["F", "M", "_T"], "value": [0, 0, 0]})
    parts = pl.DataFrame(
        {"sex": [], "contributor": [], "value": []},
        schema={"sex": pl.String, "contributor": pl.String, "value": pl.Int64},
    )
    (result,) = protect(
        [CountTable("cases", ("sex",), cells, contributions=parts)], ProtectionSettings(k=5)
    )
    assert _status(result, sex="_T")["value"] == 0
    wrong = pl.DataFrame({"sex": ["F"], "contributor": ["org_a"], "value": [1]})
    with pytest.raises(TableError) as error:
        protect([CountTable("cases", ("sex",), cells, contributions=wrong)], ProtectionSettings())
    assert error.value.key == "protect-contributions-mismatch"
