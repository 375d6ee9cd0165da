"""Global recoding's intermediate steps (issue 12, step 4): coarser categories before a dimension
is merged away, as τ-ARGUS recodes. `age_group` (0-9, 10-17) groups the age bands; each group
is the sum of its categories, a hierarchy the engine protects and an attacker stacking the fine
and the coarse tables is given (laid out here, not by the engine, and solved with the project's
LP audit as the outsider and as each organisation). (A `displacement` grouping of the population
groups was built and measured the same way, and dropped: it cost figures, see the methodology.)"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from casepool import protecting
from casepool.catalogue.indicators import (
    Dimension,
    TableRequest,
    _parse_group,
    check_request,
    hierarchies,
    load_indicators,
)
from casepool.catalogue.tabulating import CONTRIBUTOR, VALUE, tabulate
from casepool.core.errors import SchemaError, UsageError
from casepool.publishing.audit_release import audit_releases
from casepool.publishing.protect import _count_table
from casepool.publishing.publish import publish
from casepool.publishing.recoding import RecodingSettings, Step, coarser, load_recoding
from casepool.warehouse.store import open_warehouse
from fixtures.indicators.warehouses import build_random

K = 5
GROUPS = (("age_group", "age_band"),)


def test_each_group_holds_every_code_of_its_source_once_and_is_a_declared_hierarchy() -> None:
    catalogue = load_indicators()
    declared = {(coarse, fine): dict(pairs) for coarse, fine, pairs in hierarchies(catalogue)}
    assert ("region", "governorate") in declared
    for coarse, fine in GROUPS:
        group, source = catalogue.dimension(coarse), catalogue.dimension(fine)
        assert group.derived == "group" and group.source == fine
        assert declared[(coarse, fine)] == group.group_of
        assert set(group.group_of) == set(source.code_values)  # every code, once (a dict)
        assert set(group.group_of.values()) == set(group.code_values)
        # the source's "not stated" is the group's own category, alone
        assert group.group_of[source.missing] == group.missing
        assert [f for f, g in group.group_of.items() if g == group.missing] == [source.missing]
    assert catalogue.dimension("age_group").group_of == {
        "Y0T4": "Y0T9",
        "Y5T9": "Y0T9",
        "Y10T14": "Y10T17",
        "Y15T17": "Y10T17",
        "_U": "_U",
    }


def test_a_group_and_its_source_are_not_crossed_and_bad_groups_are_refused() -> None:
    catalogue = load_indicators()
    with pytest.raises(UsageError):
        check_request(TableRequest("registered_cases", ("age_group", "age_band")), catalogue)
    source = catalogue.dimension("age_band")
    labels = {"en": "x", "ar": "x", "ckb": "x", "kmr": "x"}

    def group(codes: list[dict], missing: str = "_U") -> Dimension:
        raw = {"derived": "group", "from": "age_band", "missing": missing, "codes": codes}
        return _parse_group("g", raw, "dimensions.g", labels, {"age_band": source})

    whole = [
        {"code": "A", "of": ["Y0T4", "Y5T9"], "labels": labels},
        {"code": "B", "of": ["Y10T14", "Y15T17"], "labels": labels},
        {"code": "_U", "of": ["_U"], "labels": labels},
    ]
    assert group(whole).group_of["Y15T17"] == "B"
    for bad in (
        whole[:1] + whole[2:],  # 10-14 and 15-17 in no group
        [*whole, {"code": "C", "of": ["Y0T4"], "labels": labels}],  # 0-4 in two groups
        [{**whole[0], "of": ["Y0T4", "Y5T9", "Y99"]}, *whole[1:]],  # a code the source lacks
    ):
        with pytest.raises(SchemaError):
            group(bad)
    with pytest.raises(SchemaError):  # "not stated" must stay the group's own category
        group(whole, missing="A")


@pytest.mark.parametrize("seed", [0.25, 0.5, 0.75])
def test_the_fine_cells_of_a_group_sum_to_its_coarse_cell(tmp_path: Path, seed: float) -> None:
    warehouse = build_random(tmp_path / "w.duckdb", 400, orgs=3, seed=seed)
    catalogue = load_indicators()
    with open_warehouse(warehouse, read_only=True) as con:
        for coarse, fine in GROUPS:
            group_of = catalogue.dimension(coarse).group_of
            fine_tab = tabulate(con, TableRequest("registered_cases", (fine, "sex")))
            coarse_tab = tabulate(con, TableRequest("registered_cases", (coarse, "sex")))
            summed = (
                fine_tab.counts.filter(pl.col(fine) != "_T")
                .with_columns(pl.col(fine).replace_strict(group_of).alias(coarse))
                .group_by(coarse, "sex")
                .agg(pl.col(VALUE).sum())
            )
            got = coarse_tab.counts.filter(pl.col(coarse) != "_T").select(coarse, "sex", VALUE)
            assert summed.sort(coarse, "sex").equals(got.sort(coarse, "sex")), coarse
            # and each organisation's own counts too (what an insider knows)
            own = (
                fine_tab.contributions.filter(pl.col(fine) != "_T")
                .with_columns(pl.col(fine).replace_strict(group_of).alias(coarse))
                .group_by(coarse, "sex", CONTRIBUTOR)
                .agg(pl.col(VALUE).sum())
                .filter(pl.col(VALUE) != 0)
            )
            mine = coarse_tab.contributions.filter(pl.col(coarse) != "_T").select(
                coarse, "sex", CONTRIBUTOR, VALUE
            )
            keys = [coarse, "sex", CONTRIBUTOR]
            assert own.sort(keys).equals(mine.sort(keys)), coarse


def _nested(
    fine: pl.DataFrame,
    coarse: pl.DataFrame,
    fine_dim: str,
    coarse_dim: str,
    group_of: dict[str, str],
    keep: list[str],
) -> pl.DataFrame:
    """Both published tables as one table of coarse x fine x sex, as an attacker lays them out:
    each fine category under its group and under the total, each group's own cells as its fine
    total. Absent rows (a fine category under another group) are zeros."""
    inner = fine.filter(pl.col(fine_dim) != "_T").with_columns(
        pl.col(fine_dim).replace_strict(group_of).alias(coarse_dim)
    )
    margin = fine.with_columns(pl.lit("_T").alias(coarse_dim))
    groups = coarse.filter(pl.col(coarse_dim) != "_T").with_columns(pl.lit("_T").alias(fine_dim))
    columns = [coarse_dim, fine_dim, "sex", *keep]
    return pl.concat(
        [inner.select(columns), margin.select(columns), groups.select(columns)],
        how="vertical_relaxed",
    ).with_columns(pl.col("value").cast(pl.Int64, strict=False))


def _attack(tabs, frames, coarse_dim: str, fine_dim: str, group_of) -> list[str]:
    """The outsider and each organisation solve the stacked tables: what they recover or narrow."""
    fine_tab, coarse_tab = tabs
    cols = ["value", "obs_status", "conf_status"]
    linked = _nested(frames[0], frames[1], fine_dim, coarse_dim, group_of, cols)
    own = _nested(
        fine_tab.contributions,
        coarse_tab.contributions,
        fine_dim,
        coarse_dim,
        group_of,
        [CONTRIBUTOR, "value"],
    )
    insiders = {
        str(org): own.filter(pl.col(CONTRIBUTOR) == org).drop(CONTRIBUTOR)
        for org in sorted(own.get_column(CONTRIBUTOR).unique().to_list())
    }
    report = protecting.audit(linked, k=K, protection_interval=K, insiders=insiders)
    return [f"{v.attacker} {v.codes} {v.verdict}" for v in report.failures]


def _stack_and_attack(warehouse: Path, coarse_dim: str, fine_dim: str) -> tuple[int, int]:
    """Cases by the fine dimension and sex beside cases by its group and sex, protected
    together by the engine with the hierarchy (as a release is) and without it (the engine
    linking cells by code only): how many cells the attack recovers or narrows in each."""
    catalogue = load_indicators()
    group_of = catalogue.dimension(coarse_dim).group_of
    with open_warehouse(warehouse, read_only=True) as con:
        tabs = [
            tabulate(con, TableRequest("registered_cases", (d, "sex")), catalogue=catalogue)
            for d in (fine_dim, coarse_dim)
        ]
    settings = protecting.load_protection_settings()
    found = []
    for rollups in (None, ()):
        tables = [_count_table(t, catalogue) for t in tabs]
        if rollups is not None:
            tables = [replace(t, rollups=rollups) for t in tables]
        frames = [
            r.frame.select(t.dimensions[0], "sex", "value", "obs_status", "conf_status")
            for t, r in zip(tabs, protecting.protect(tables, settings), strict=True)
        ]
        assert any(f.get_column("value").is_null().any() for f in frames)  # something hidden
        found.append(len(_attack(tabs, frames, coarse_dim, fine_dim, group_of)))
    return found[0], found[1]


@pytest.mark.parametrize(("coarse_dim", "fine_dim"), GROUPS)
def test_stacking_the_fine_and_the_coarse_table_recovers_nothing(
    tmp_path: Path, coarse_dim: str, fine_dim: str
) -> None:
    """Both levels published together: the attack with the hierarchy finds nothing. The same
    tables protected without the hierarchy leak to the same attack: the link is what protects
    (and the attack can see a leak)."""
    warehouse = build_random(tmp_path / "w.duckdb", 100, orgs=3, seed=0.25)
    linked, unlinked = _stack_and_attack(warehouse, coarse_dim, fine_dim)
    assert linked == 0
    assert unlinked > 0


@pytest.mark.slow
@pytest.mark.parametrize("records", [60, 160])
@pytest.mark.parametrize("seed", [0.1, 0.5, 0.75])
@pytest.mark.parametrize(("coarse_dim", "fine_dim"), GROUPS)
def test_stacking_recovers_nothing_on_other_random_data(
    tmp_path: Path, coarse_dim: str, fine_dim: str, seed: float, records: int
) -> None:
    warehouse = build_random(tmp_path / "w.duckdb", records, orgs=3, seed=seed)
    assert _stack_and_attack(warehouse, coarse_dim, fine_dim)[0] == 0


def test_a_recoded_release_says_which_tables_went_to_a_group(tmp_path: Path) -> None:
    """The step before "→ total": age bands to age groups; the manifest and the methodology note
    name it, the CSV is by age group, and the folder passes the audit (with the hierarchy)."""
    catalogue = load_indicators()
    settings = RecodingSettings(True, 0.0, (Step("age_band", "age_group"),), to_total=False)
    by_age = TableRequest("registered_cases", ("sex", "age_band"), name="cases_by_sex_age")
    share = TableRequest("working_children_share", ("sex", "age_band"), name="working")
    assert coarser(by_age, settings, catalogue)[0].dimensions == ("sex", "age_group")
    # the shipped steps take the group before the total
    shipped = [s.how for s in load_recoding().steps]
    assert shipped.index("age_band → age_group") < shipped.index("age_group → total")
    assert shipped.index("age_group → total") < shipped.index("age_band → total")
    # 600 children: the grouped tables hide a smaller share or show more figures (on 200, both
    # worse, the share rule undoes the step: test_recoding_share)
    warehouse = build_random(tmp_path / "w.duckdb", 600, orgs=3)
    out = tmp_path / "pub"
    result = publish(
        warehouse, out, "2025", tables=(by_age, share), ledger=False, recoding=settings
    )
    assert result.ok
    assert {c.table: c.how for c in result.coarsened} == {
        "cases_by_sex_age": "age_band → age_group",
        "working": "age_band → age_group",
    }
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    listed = {c["table"]: c["dimensions_after"] for c in manifest["coarsened"]}
    assert listed == {"cases_by_sex_age": ["sex", "age_group"], "working": ["sex", "age_group"]}
    header = (out / "csv" / "cases_by_sex_age.csv").read_text(encoding="utf-8-sig")
    assert header.startswith("indicator,sex,age_group,")
    note = (out / "methodology.md").read_text(encoding="utf-8")
    assert "- cases_by_sex_age: age_band → age_group" in note
    assert audit_releases([out]).protected
