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


def test_an_undone_step_is_passed_over_and_the_table_tries_its_later_steps() -> None:
    """Round 7, item 4: a table whose step was undone is not frozen at its finer level under
    the share rule; it tries its later steps and its total, never the undone step again."""
    catalogue = load_indicators()
    fine = TableRequest("registered_cases", ("governorate", "sex"), Q2, "year", name="g")
    assert coarser(fine, SHARE, catalogue)[0].dimensions == ("region", "sex")
    later, step = coarser(fine, SHARE, catalogue, skip=frozenset({"governorate → region"}))
    assert later.dimensions == ("governorate",) and step.how == "sex → total"
    # every listed step skipped: the total is left
    skip = frozenset({"governorate → region", "sex → total"})
    total, step = coarser(fine, SHARE, catalogue, skip=skip)
    assert total.dimensions == ("period",) and step.how == "governorate × sex → total"
    assert coarser(fine, SHARE, catalogue, skip=skip | {step.how}) is None
    # recode passes each table's skipped steps over; another table is not concerned
    other = replace(fine, name="h")
    shares = {"g": (80, 40, True), "h": (80, 40, True)}
    requests, done = recode(
        [fine, other], shares, SHARE, catalogue, skipped={"g": frozenset({"governorate → region"})}
    )
    assert [r.dimensions for r in requests] == [("governorate",), ("region", "sex")]
    assert [c.how for c in done] == ["sex → total", "governorate → region"]
    assert [c.cells_before for c in done] == [80, 80]


def test_a_step_worse_for_its_table_is_kept_when_it_lowers_a_release_over_the_share() -> None:
    """The goal is the release's share: a table of 20 cells with 19 hidden that becomes 4
    cells all hidden (a larger share, one figure fewer) is kept while the release without
    the step is over the share and the step lowers it; undone when the release without it is
    under the share (then the table's figures count)."""
    from casepool.publishing.recoding import Coarsening, undo_losses

    fine = TableRequest("police_reported_share", ("region", "violence_type"), Q2, "year", name="p")
    coarse = replace(fine, dimensions=("region",))
    step = Coarsening(
        "p", fine.indicator, "violence_type", None, 0.95, fine.dimensions, ("region",), 1, 20
    )
    # the release over the share without the step: 19 + 5 hidden of 20 + 20 cells
    now = {"p": (4, 4, True), "q": (20, 5, True)}
    requests, undone = undo_losses([coarse], [step], {}, now, {"p": [fine]}, SHARE)
    assert undone == [] and requests == [coarse]
    # the release under the share without the step: 19 + 0 hidden of 20 + 100 cells
    now = {"p": (4, 4, True), "q": (100, 0, True)}
    requests, undone = undo_losses([coarse], [step], {}, now, {"p": [fine]}, SHARE)
    assert undone == [step] and requests == [fine]
    # a step that raises the release's share is undone even over the share: 19 of 20 hidden
    # becomes 40 of 40 cells hidden
    now = {"p": (40, 40, True), "q": (20, 5, True)}
    requests, undone = undo_losses([coarse], [step], {}, now, {"p": [fine]}, SHARE)
    assert undone == [step]


def test_the_last_pass_tries_first_the_tables_whose_step_cost_most_figures() -> None:
    """With the release under the share, the coarsened tables are tried one step finer, those
    whose last step cost the most figures first; a table tried already, or whose step cost no
    figure, is left as it is. The release's share counts written tables only."""
    from casepool.publishing.recoding import Coarsening, refinement_order, written_share

    fine = {n: TableRequest("registered_cases", ("governorate", "sex"), Q2, name=n) for n in "abc"}
    coarse = {n: replace(r, dimensions=("governorate",)) for n, r in fine.items()}
    steps = [
        Coarsening(n, "registered_cases", "sex", None, 0.3, ("governorate", "sex"), dims, f, 80)
        for n, f, dims in (("a", 59, ("governorate",)), ("b", 70, ("governorate",)))
    ] + [Coarsening("c", "registered_cases", "sex", None, 0.3, ("g", "s"), ("g",), 10, 80)]
    history = {n: [fine[n]] for n in "abc"}
    now = {"a": (20, 2, True), "b": (20, 2, True), "c": (20, 2, True)}
    requests = list(coarse.values())
    # b regains 70 - 18 figures, a 59 - 18; c's step cost none (10 figures before, 18 now)
    assert refinement_order(requests, steps, history, now) == ["b", "a"]
    assert refinement_order(requests, steps, history, now, frozenset({"b"})) == ["a"]
    assert refinement_order(requests, steps, {"a": [], "b": []}, now) == []
    share, written = written_share({"a": (20, 2, True), "b": (80, 21, True), "w": (10, 0, False)})
    assert written == 2 and share == pytest.approx(23 / 100)


def test_the_last_pass_gives_back_figures_and_keeps_the_release_under_the_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the release is under the share, a coarsened table tried one step finer stays finer
    only while the release stays under the share (`refine`), else it goes back (`keep`); the
    release publishes at least as many figures as without the pass, stays under the share,
    says what it coarsened and passes the folder audit."""
    warehouse = build_random(tmp_path / "w.duckdb", 600, orgs=3, seed=0.25)
    tables = (
        TableRequest("registered_cases", ("governorate", "sex"), name="by_governorate_sex"),
        TableRequest("registered_cases", ("governorate",), name="by_governorate"),
        TableRequest("registered_cases", ("sex",), name="by_sex"),
        TableRequest("registered_cases", ("exploitation_type", "sex"), name="by_type"),
        TableRequest("mhpss_share", ("region", "sex"), name="mhpss"),
        TableRequest("boys_share", ("period", "region"), period_unit="quarter", name="boys"),
    )
    out = tmp_path / "on"
    said: list[str] = []
    result = publish(
        warehouse, out, "2025-Q2", tables=tables, ledger=False, recoding=SHARE, progress=said.append
    )
    refined = [line.split()[1] for line in said if line.startswith("refine ")]
    kept = [line.split()[1] for line in said if line.startswith("keep ")]
    assert refined and kept, "the data no longer exercise the last pass: choose another seed"
    assert result.ok and result.suppressed_share <= 0.25
    last = {c.table: c for c in result.coarsened}
    for name in refined:  # finer again: by governorate × sex → by region × sex
        assert last[name].dimensions_after == ("region", "sex")
        assert "sex → total" not in {c.how for c in result.coarsened if c.table == name}
    for name in kept:
        line = next(x for x in said if x.startswith(f"keep {name} "))
        assert last[name].how in line
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert [c["how"] for c in manifest["coarsened"]] == [c.how for c in result.coarsened]
    assert audit_releases([out]).protected
    # without the last pass: fewer figures
    import casepool.publishing.publish as publishing

    monkeypatch.setattr(publishing, "refinement_order", lambda *args, **kw: [])
    without = publish(
        warehouse, tmp_path / "off", "2025-Q2", tables=tables, ledger=False, recoding=SHARE
    )
    figures = sum(t.cells - t.suppressed for t in result.tables if t.written)
    assert figures > sum(t.cells - t.suppressed for t in without.tables if t.written)
