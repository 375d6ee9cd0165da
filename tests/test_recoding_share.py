"""Global recoding's share rule (issue 12, step 4: keep the suppressed share below 25 %): a table
goes on to its next step while more than `max_suppressed_share` of its cells would be suppressed,
down to its total as the last resort (the table by the release's period), and stops once it is
under the share. The figures rule (`goal: figures`) is tested in test_recoding.py."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from casepool.catalogue.indicators import TableRequest, load_indicators
from casepool.publishing.audit_release import audit_releases
from casepool.publishing.publish import publish
from casepool.publishing.recoding import (
    RecodingSettings,
    Step,
    coarser,
    load_recoding,
    recode,
    total_of,
)
from fixtures.indicators.warehouses import build_random

STEPS = (Step("governorate", "region"), Step("period"), Step("sex"))
SHARE = RecodingSettings(True, 0.25, STEPS, goal="share")
FIGURES = replace(SHARE, goal="figures")
Q2 = (("period", ("2025-Q2",)),)


def test_the_shipped_rule_is_the_share_rule_with_its_total() -> None:
    settings = load_recoding()
    assert settings.goal == "share" and settings.takes_total and not settings.keep_figures
    assert settings.max_suppressed_share == 0.25


def test_the_total_comes_after_every_listed_step_and_only_with_the_share_rule() -> None:
    catalogue = load_indicators()
    by_region = TableRequest("boys_share", ("region",), Q2, "year", name="b")
    # no listed step applies to a table by region alone: the figures rule stops there
    assert coarser(by_region, FIGURES, catalogue) is None
    assert coarser(by_region, replace(SHARE, to_total=False), catalogue) is None
    found = coarser(by_region, SHARE, catalogue)
    assert found is not None
    total, step = found
    # the table by the release's period at the release's own unit: one quarter and its total
    assert total.dimensions == ("period",) and total.period_unit == "quarter"
    assert total.where == Q2 and total.name == "b" and step.how == "region → total"
    # a listed step comes first
    by_region_sex = replace(by_region, dimensions=("region", "sex"))
    assert coarser(by_region_sex, SHARE, catalogue)[0].dimensions == ("region",)
    # a table with the period keeps it: a year's release of a quarterly table keeps its quarters
    series = TableRequest(
        "registered_cases", ("period", "region"), (("period", ("2025",)),), "quarter", name="t"
    )
    assert coarser(series, SHARE, catalogue)[0].dimensions == ("period",)
    assert coarser(series, SHARE, catalogue)[0].period_unit == "quarter"
    # the whole data (no period chosen): a table without the period has no such total
    assert total_of(TableRequest("registered_cases", ("region",), name="r"), catalogue) is None
    # a table at its total has nothing left
    assert coarser(total, SHARE, catalogue) is None


def test_the_share_rule_moves_a_table_over_the_share_and_leaves_one_under_it() -> None:
    catalogue = load_indicators()
    over = TableRequest("registered_cases", ("region",), Q2, "year", name="over")
    under = TableRequest("registered_cases", ("sex",), Q2, "year", name="under")
    shares = {"over": (4, 2, True), "under": (4, 1, True)}  # 50 %, exactly 25 %
    requests, done = recode([over, under], shares, SHARE, catalogue)
    assert [r.dimensions for r in requests] == [("period",), ("sex",)]
    assert [(c.table, c.how, c.dimensions_after) for c in done] == [
        ("over", "region → total", ("period",))
    ]
    # the figures rule recodes no further than its listed steps
    assert recode([over, under], shares, FIGURES, catalogue) == ([over, under], [])


def test_the_share_rule_undoes_a_step_worse_by_both_measures() -> None:
    """A total hidden as a complement where its finer table published half its cells goes back
    one step; a step that only raises the share (fewer, coarser cells, as many figures) or a
    table hidden whole at both levels stays."""
    from casepool.publishing.recoding import Coarsening, undo_losses

    fine = {n: TableRequest("mhpss_share", ("region",), Q2, "year", name=n) for n in "abc"}
    total = {n: replace(r, dimensions=("period",), period_unit="quarter") for n, r in fine.items()}
    done = [
        Coarsening(n, "mhpss_share", "region", None, share, ("region",), ("period",), figures)
        for n, share, figures in (("a", 0.5, 2), ("b", 0.5, 2), ("c", 1.0, 0))
    ]
    now = {"a": (2, 2, True), "b": (2, 0, True), "c": (2, 2, True)}
    history = {n: [fine[n]] for n in "abc"}
    requests, undone = undo_losses(list(total.values()), done, {}, now, history, SHARE)
    assert [c.table for c in undone] == ["a"]
    assert requests == [fine["a"], total["b"], total["c"]]
    # the total published: a lower share, as many figures: kept
    history = {"a": [fine["a"]]}
    assert undo_losses([total["a"]], done[:1], {}, {"a": (2, 0, True)}, history, SHARE)[1] == []


def _published_shares(result, tables) -> dict[str, tuple[int, int, tuple[str, ...]]]:
    """Each written table: cells, suppressed, and the dimensions it was published with."""
    dims = {r.table_name: r.dimensions for r in tables}
    dims |= {c.table: c.dimensions_after for c in result.coarsened}  # the last one wins
    return {t.name: (t.cells, t.suppressed, dims[t.name]) for t in result.tables if t.written}


@pytest.mark.slow
def test_a_release_goes_on_while_over_the_share_and_says_what_it_coarsened(
    tmp_path: Path,
) -> None:
    """Every table ends under the share or at its total; every step it took was taken while it
    was over the share; a table under the share at full detail is not touched; the release
    says what it coarsened (manifest, methodology note); the folder passes the audit."""
    warehouse = build_random(tmp_path / "w.duckdb", 300, orgs=3)
    tables = (
        TableRequest("registered_cases", ("governorate", "sex"), name="by_governorate_sex"),
        TableRequest("registered_cases", ("sex",), name="by_sex"),
        TableRequest("mhpss_share", ("region", "sex"), name="mhpss"),
        TableRequest("boys_share", ("period", "region"), period_unit="quarter", name="boys"),
    )
    off = publish(
        warehouse,
        tmp_path / "off",
        "2025-Q2",
        tables=tables,
        ledger=False,
        recoding=SHARE.disabled(),
    )
    out = tmp_path / "on"
    said: list[str] = []
    result = publish(
        warehouse, out, "2025-Q2", tables=tables, ledger=False, recoding=SHARE, progress=said.append
    )
    assert result.ok
    before, after = _published_shares(off, tables), _published_shares(result, tables)
    assert result.suppressed_share <= off.suppressed_share
    undone = " ".join(line for line in said if line.startswith("undo "))
    for name, (cells, suppressed, dims) in after.items():
        at_total = dims == ("period",)
        # over the share only at its total, or where its next step was worse and undone
        stopped = at_total or f"{name} (" in undone
        assert suppressed / cells <= 0.25 or stopped, (name, cells, suppressed, dims)
        if before[name][1] / before[name][0] <= 0.25:
            assert name not in {c.table for c in result.coarsened}, name
    assert all(c.suppressed_before > 0.25 for c in result.coarsened)
    totals = [c for c in result.coarsened if c.dimensions_after == ("period",)]
    assert totals, "the data no longer exercise the last resort: choose another seed"
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert [c["how"] for c in manifest["coarsened"]] == [c.how for c in result.coarsened]
    note = (out / "methodology.md").read_text(encoding="utf-8")
    for c in totals:
        assert f"{c.table}: " in note and c.how in note
        frame = pl.read_csv(out / "csv" / f"{c.table}.csv", infer_schema=False)
        assert set(frame["period"]) == {"2025-Q2", "_T"}  # one quarter and its total
        assert frame["value"].n_unique() == 1  # the same children: one figure
    assert audit_releases([out]).protected


@pytest.mark.slow
def test_stacking_a_recoded_release_with_the_earlier_ones_recovers_nothing(
    tmp_path: Path,
) -> None:
    """A quarter at full detail, the next quarter recoded to totals by the share rule, then the
    year (its quarterly table by its quarters): each protected with the ledger. The engine's
    linked system of every release, solved as the outsider and as each organisation, finds
    nothing the newest releases added; the folders stacked pass the project's audit."""
    from test_publish_ledger import _failures, ledger_tables

    warehouse = build_random(tmp_path / "w.duckdb", 300, orgs=3)
    tables = (
        TableRequest("registered_cases", ("governorate",), name="cases_by_governorate"),
        TableRequest("registered_cases", ("sex", "age_band"), name="cases_by_sex_age"),
        TableRequest(
            "registered_cases", ("period", "region"), period_unit="quarter", name="by_period"
        ),
    )
    settings = replace(load_recoding(), max_suppressed_share=0.0)  # any suppression: recode
    folders = []
    coarsened = {}
    for period, recoding in (
        ("2025-Q1", settings.disabled()),
        ("2025-Q2", settings),
        ("2025", settings),
    ):
        folders.append(tmp_path / period)
        result = publish(warehouse, folders[-1], period, tables=tables, recoding=recoding)
        assert result.ok, period
        coarsened[period] = {c.table: c.dimensions_after for c in result.coarsened}
        _, linked = ledger_tables(warehouse)
        assert _failures(linked) - _failures(linked, hide_last=True) == set(), period
    assert ("period",) in coarsened["2025-Q2"].values()  # a table went to its total
    assert coarsened["2025"].get("by_period", ("period",)) == ("period",)  # quarters kept
    report = audit_releases(folders)
    assert report.protected, [f.to_dict() for f in report.findings[:3]]
