"""A share over a `known:` part of the population publishes its denominators: the children whose
field is known. Subtracted from the registered cases of the same codes, they give the children
whose field is unknown. Where a table publishes that "not stated" category (cases by population
group: `unknown`), the subtraction recovered its hidden cells exactly (found by the lead in round
5: unknown x F = 104 − 97 = 7, a complement of the primary unknown x M = 1). The engine now holds
denominator + complement = population as a hidden table, and `casepool audit` reads the same
relation from the folders."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from casepool.catalogue.indicators import TableRequest, load_indicators
from casepool.catalogue.relations import linked_population, subpopulation
from casepool.protecting import CountTable, load_protection_settings
from casepool.protecting.secondary import suppress
from casepool.protecting.tables import build_system
from casepool.publishing import protect as protect_module
from casepool.publishing.audit_release import audit_releases
from casepool.publishing.publish import publish
from casepool.publishing.recoding import load_recoding
from casepool.publishing.releases import upgraded_identity
from fixtures.indicators.warehouses import build_random

TABLES = (
    TableRequest("registered_cases", ("population_group", "sex"), name="cases_by_population_group"),
    TableRequest("displaced_share", ("sex",), name="displaced_share_by_sex"),
)


def test_a_known_part_is_named_as_part_of_the_population() -> None:
    catalogue = load_indicators()
    displaced = catalogue.indicator("displaced_share")
    assert linked_population(displaced, catalogue) == (
        "registered_cases",
        (("known:population_group", "yes"),),
    )
    part = subpopulation(displaced, catalogue)
    assert part is not None and part.complement_alias == ("population_group", "unknown")
    # A scoped count is the numerator of its share, itself over a known part.
    reported = catalogue.indicator("police_reported_cases")
    key, codes = linked_population(reported, catalogue)
    assert key == "registered_cases"
    assert ("known:reported_to_police", "yes") in codes
    assert ("police_reported_share__outcome", "yes") in codes
    # No field with a "not stated" category: the complement is a cell of its own.
    barriers = subpopulation(catalogue.indicator("stigma_barrier_share"), catalogue)
    assert barriers is not None and barriers.complement_alias is None
    assert subpopulation(catalogue.indicator("boys_share"), catalogue) is None
    assert subpopulation(catalogue.indicator("registered_cases"), catalogue) is None
    # Releases recorded before the link are read back under today's names.
    assert upgraded_identity("displaced_share", (("period", "2025"),)) == (
        "registered_cases",
        (("known:population_group", "yes"), ("period", "2025")),
    )
    assert upgraded_identity("registered_cases", ()) == ("registered_cases", ())


def _frame(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["a", "b", "value"], orient="row")


def test_a_cell_only_a_hidden_table_holds_is_hidden_and_asks_nothing() -> None:
    settings = load_protection_settings()
    visible = CountTable(
        "pop", ("a",), pl.DataFrame({"a": ["x", "y", "_T"], "value": [40, 30, 70]})
    )
    # part + complement = population: the complement of x is 2, of y is 0.
    hidden = CountTable(
        "pop",
        ("k", "a"),
        pl.DataFrame(
            {
                "k": ["yes", "yes", "yes", "no", "no", "no", "_T", "_T", "_T"],
                "a": ["x", "y", "_T"] * 3,
                "value": [38, 30, 68, 2, 0, 2, 40, 30, 70],
            }
        ),
        hidden=True,
    )
    system = build_system([visible, hidden], settings)
    assert system.unpublished is not None
    named = {
        dict(codes).get("k", "") + dict(codes).get("a", ""): i
        for i, (_, codes) in enumerate(system.keys)
    }
    assert not system.unpublished[named["x"]]  # the population's cell is published
    assert system.unpublished[named["nox"]] and system.unpublished[named["yesx"]]
    primary, suppressed = suppress(system, settings)
    assert not primary[system.unpublished].any()  # the complement of 2 is no primary cell
    assert suppressed[system.unpublished].all()  # and never published
    assert not suppressed[~system.unpublished].any()  # nothing to hide for it


def _recovered(folder: Path) -> list[tuple[str, int]]:
    """The attack by hand: registered (sex) − known (sex) = unknown (sex), where the table by
    population group hides the unknown cell."""
    groups = pl.read_csv(folder / "csv" / "cases_by_population_group.csv", infer_schema=False)
    share = pl.read_csv(folder / "csv" / "displaced_share_by_sex.csv", infer_schema=False)
    total = {
        r["sex"]: r["value"]
        for r in groups.filter(pl.col("population_group") == "_T").iter_rows(named=True)
    }
    unknown = {
        r["sex"]: r["value"]
        for r in groups.filter(pl.col("population_group") == "unknown").iter_rows(named=True)
    }
    known = {r["sex"]: r["denominator"] for r in share.iter_rows(named=True)}
    return [
        (sex, int(total[sex]) - int(known[sex]))
        for sex in total
        if total[sex] and known.get(sex) and not unknown.get(sex)
    ]


def _publish(tmp_path: Path, seed: float, name: str) -> Path:
    warehouse = build_random(tmp_path / f"{name}.duckdb", 150, orgs=3, seed=seed)
    folder = tmp_path / name
    off = load_recoding().disabled()
    publish(warehouse, folder, None, tables=TABLES, ledger=False, recoding=off)
    return folder


@pytest.mark.parametrize(
    "seed",
    [0.3, pytest.param(0.6, marks=pytest.mark.slow), pytest.param(0.4, marks=pytest.mark.slow)],
)
def test_known_denominators_and_registered_cases_give_no_hidden_cell_away(
    tmp_path: Path, seed: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _publish(tmp_path, seed, "linked")
    assert _recovered(folder) == []
    report = audit_releases([folder])
    assert report.protected, [f.to_dict() for f in report.findings[:3]]
    # The same tables protected without the link: the subtraction works, and the audit sees it.
    monkeypatch.setattr(protect_module, "_complement_table", lambda *args, **kwargs: None)
    unlinked = _publish(tmp_path, seed, "unlinked")
    assert _recovered(unlinked), "the data no longer exercise the attack: choose another seed"
    report = audit_releases([unlinked])
    assert not report.protected
    assert any(
        f.cell.get("population_group") == "unknown" and f.verdict == "disclosed"
        for f in report.findings
    )


def test_the_audit_asks_nothing_of_a_complement_itself(tmp_path: Path) -> None:
    """A complement published nowhere may be worked out (the children of a sex whose population
    group is unknown, where no table shows population group by sex): that is no finding."""
    warehouse = build_random(tmp_path / "w.duckdb", 150, orgs=3, seed=0.3)
    folder = tmp_path / "pub"
    tables = (
        TableRequest("registered_cases", ("sex",), name="cases_by_sex"),
        TableRequest("displaced_share", ("sex",), name="displaced_share_by_sex"),
    )
    publish(
        warehouse, folder, None, tables=tables, ledger=False, recoding=load_recoding().disabled()
    )
    shown = pl.read_csv(folder / "csv" / "cases_by_sex.csv", infer_schema=False)
    share = pl.read_csv(folder / "csv" / "displaced_share_by_sex.csv", infer_schema=False)
    known = {r["sex"]: r["denominator"] for r in share.iter_rows(named=True)}
    worked_out = [
        int(r["value"]) - int(known[r["sex"]])
        for r in shown.iter_rows(named=True)
        if r["value"] and known.get(r["sex"])
    ]
    assert worked_out  # some complement is worked out exactly from the folder
    report = audit_releases([folder])
    assert report.protected, [f.to_dict() for f in report.findings[:3]]
