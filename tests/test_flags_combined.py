"""One confidential flag for every suppressed cell (schemas/protection.yaml `flags: combined`), as
Eurostat and most statistical offices publish it (SDMX CONF_STATUS C): a flag tells nothing about
a value, so the engine need not protect against a reader who takes a C cell for ≥ 1 (issue 12,
tests/test_flags_told.py). The engine's own statuses stay in the ledger; the ledger records each
release's flags, and a release published with distinct flags is read as "C ≥ 1" for ever."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from casepool.catalogue.indicators import TableRequest
from casepool.core.errors import SchemaError
from casepool.protecting import CountTable, ProtectionSettings, audit, protect
from casepool.protecting.releases import told_cells
from casepool.protecting.settings import load_protection_settings, settings_from_mapping
from casepool.protecting.tables import build_system
from casepool.publishing.audit_release import audit_releases, table_flags
from casepool.publishing.protect import published_flags
from casepool.publishing.publish import publish
from casepool.publishing.recoding import load_recoding
from casepool.publishing.releases import release_flags
from casepool.warehouse.ledger import list_releases, release_cells
from casepool.warehouse.store import open_warehouse
from fixtures.indicators.warehouses import build_random
from test_flags_told import _table
from test_publish_ledger import _failures, ledger_tables
from test_release_audit import HEAD as FOLDER_HEAD
from test_release_audit import _folder

DISTINCT = ProtectionSettings(k=5, k_sensitive=5, protection_interval=5)
COMBINED = replace(DISTINCT, flags="combined")
TABLES = (
    TableRequest("registered_cases", ("sex", "age_band"), name="cases_by_sex_age"),
    TableRequest("registered_cases", ("governorate",), name="cases_by_governorate"),
)


def test_the_setting_is_read_and_a_file_that_does_not_say_is_distinct() -> None:
    assert settings_from_mapping({}).flags == "distinct"
    assert settings_from_mapping({"flags": "combined"}).flags == "combined"
    assert not settings_from_mapping({"flags": "combined"}).flags_told
    assert settings_from_mapping({"flags": "distinct"}).flags_told
    with pytest.raises(SchemaError):
        settings_from_mapping({"flags": "some"})
    assert load_protection_settings().flags in ("combined", "distinct")


def test_published_flags_turn_every_suppressed_cell_into_c() -> None:
    frame = pl.DataFrame(
        {"value": [None, None, 5], "obs_status": ["Q", "Q", "A"], "conf_status": ["C", "D", "F"]}
    )
    assert published_flags(frame, "combined")["conf_status"].to_list() == ["C", "C", "F"]
    assert published_flags(frame, "distinct")["conf_status"].to_list() == ["C", "D", "F"]


def _suppressed(frame: pl.DataFrame) -> int:
    return int(frame["value"].is_null().sum())


def test_with_combined_flags_the_engine_reads_nothing_from_them() -> None:
    # The table of test_flags_told: with distinct flags the engine must widen a primary cell the
    # C flag narrows to [1, 5]; with combined flags nobody can read that, so it need not.
    table = _table([[24, 11, 4], [11, 0, 2]])
    distinct = protect([table], DISTINCT)[0].frame
    combined = protect([table], COMBINED)[0].frame
    assert audit(distinct, k=5).protected
    assert audit(combined, k=5, flags_told=False).protected  # the engine's statuses, no ≥ 1
    assert _suppressed(combined) <= _suppressed(distinct)
    # Published with one flag for all, the table keeps no D; the same audit still passes.
    shown = published_flags(combined, "combined")
    assert set(shown.filter(pl.col("value").is_null())["conf_status"].to_list()) == {"C"}


def test_an_earlier_release_with_distinct_flags_still_tells_its_c_cells() -> None:
    cells = pl.DataFrame({"region": ["A", "B", "_T"], "value": [3, 2, 5]})
    new = CountTable("cases", ("region",), cells)
    old_told = CountTable("cases", ("region",), cells, name="old", flags_told=True)
    old_quiet = CountTable("cases", ("region",), cells, name="old", flags_told=False)
    assert told_cells(build_system([new], DISTINCT), DISTINCT).all()
    assert not told_cells(build_system([new], COMBINED), COMBINED).any()
    assert told_cells(build_system([new, old_told], COMBINED), COMBINED).all()
    assert not told_cells(build_system([new, old_quiet], COMBINED), COMBINED).any()
    hidden = CountTable("cases", ("region",), cells, name="h", hidden=True)
    assert not told_cells(build_system([hidden], DISTINCT), DISTINCT).any()


def test_an_old_release_without_the_mode_reads_as_distinct() -> None:
    assert release_flags({}) == "distinct"
    assert release_flags({"flags": "distinct"}) == "distinct"
    assert release_flags({"flags": "combined"}) == "combined"


# A hidden pair under a published total of 5: KRI 3 (primary), federal 2 (its complement).
# Read as C ≥ 1 (distinct flags), KRI lies in [1, 5], narrower than k = 5; with one C for both
# (combined) nothing says KRI is not 0: [0, 5].
PAIR_DISTINCT = ["online_cases,KRI,,Q,C", "online_cases,federal,,Q,D", "online_cases,_T,5,A,F"]
PAIR_COMBINED = ["online_cases,KRI,,Q,C", "online_cases,federal,,Q,C", "online_cases,_T,5,A,F"]


def _flagged(folder: Path, flags: str | None) -> Path:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    if flags is not None:
        manifest["flags"] = flags
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def test_the_folder_audit_reads_c_as_at_least_one_only_in_a_distinct_folder(tmp_path) -> None:
    tables = {"online_by_region": (FOLDER_HEAD, PAIR_COMBINED)}
    combined = _flagged(_folder(tmp_path / "c", "2025", tables), "combined")
    assert audit_releases([combined]).protected
    # The same C cells in a folder that says its flags are distinct, or does not say: ≥ 1 each.
    for name, flags in (("d", "distinct"), ("silent", None)):
        folder = _flagged(_folder(tmp_path / name, "2025", tables), flags)
        report = audit_releases([folder])
        assert not report.protected
        assert {(f.lower, f.upper) for f in report.findings} == {(1, 4)}  # both ≥ 1, sum 5
    distinct = {"online_by_region": (FOLDER_HEAD, PAIR_DISTINCT)}
    report = audit_releases([_flagged(_folder(tmp_path / "dd", "2025", distinct), "distinct")])
    assert [(f.lower, f.upper, f.verdict) for f in report.findings] == [(1, 5, "too-narrow")]
    # `casepool audit` on one table of the folder reads its manifest's flags too.
    assert table_flags(combined / "csv" / "online_by_region.csv") == "combined"
    assert table_flags(tmp_path / "silent" / "csv" / "online_by_region.csv") == "distinct"


def test_a_combined_folder_still_fails_a_cell_it_gives_away(tmp_path) -> None:
    # KRI hidden, federal shown: KRI = 5 - 2 whatever the flags say.
    rows = ["online_cases,KRI,,Q,C", "online_cases,federal,2,A,F", "online_cases,_T,5,A,F"]
    folder = _flagged(_folder(tmp_path / "c", "2025", {"t": (FOLDER_HEAD, rows)}), "combined")
    report = audit_releases([folder])
    assert {(f.lower, f.upper, f.verdict) for f in report.findings if f.lower == 3} == {
        (3, 3, "disclosed")
    }


def test_a_combined_c_cell_bounded_at_k_or_more_needs_only_not_to_be_exact(tmp_path) -> None:
    # KRI girls 10 hidden among small neighbours: the margins pin it to [9, 12]. Flagged C in a
    # distinct folder it is primary and 3 wide is too narrow; in a combined folder its C says
    # nothing, and a cell of at least 9 children is no small count: only exactness would fail.
    head = "indicator,region,sex,value,obs_status,conf_status"
    cells = {("KRI", "F"): 10, ("KRI", "M"): 2, ("federal", "F"): 2, ("federal", "M"): 1}

    def rows(flag_of_others: str) -> list[str]:
        out = ["online_cases,KRI,F,,Q,C"]
        out += [
            f"online_cases,{r},{s},,Q,{flag_of_others}"
            for (r, s) in cells
            if (r, s) != ("KRI", "F")
        ]
        for region in ("KRI", "federal"):
            total = sum(v for (r, _), v in cells.items() if r == region)
            out.append(f"online_cases,{region},_T,{total},A,F")
        for sex in ("F", "M"):
            total = sum(v for (_, s), v in cells.items() if s == sex)
            out.append(f"online_cases,_T,{sex},{total},A,F")
        out.append(f"online_cases,_T,_T,{sum(cells.values())},A,F")
        return out

    def kri_girls(folder: Path) -> set[tuple[int, int | None, str]]:
        return {
            (f.lower, f.upper, f.verdict)
            for f in audit_releases([folder]).findings
            if (f.cell.get("region"), f.cell.get("sex")) == ("KRI", "F")
        }

    distinct = _flagged(_folder(tmp_path / "d", "2025", {"t": (head, rows("D"))}), "distinct")
    combined = _flagged(_folder(tmp_path / "c", "2025", {"t": (head, rows("C"))}), "combined")
    assert kri_girls(distinct) == {(9, 12, "too-narrow")}
    assert kri_girls(combined) == set()
    # Its small neighbours may be primary: they still need the full interval.
    found = audit_releases([combined]).findings
    assert any(f.verdict == "too-narrow" and f.cell.get("sex") == "M" for f in found)


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def test_a_combined_publication_flags_every_suppressed_cell_c_and_the_ledger_keeps_d(
    tmp_path,
) -> None:
    warehouse = build_random(tmp_path / "w.duckdb", 300, orgs=3)
    settings = replace(load_protection_settings(), flags="combined")
    out = tmp_path / "pub"
    result = publish(warehouse, out, tables=TABLES, settings=settings, recoding=_off())
    assert result.ok and result.suppressed > 0
    manifest = _manifest(out)
    assert manifest["flags"] == "combined"
    # How many cells of a table are primary is the steward's alone: not in the manifest.
    assert "suppressed_by" not in manifest
    assert all("suppressed_by" not in t for t in manifest["tables"])
    text = "\n".join(
        p.read_text(encoding="utf-8-sig")
        for p in sorted(out.rglob("*"))
        if p.suffix in {".csv", ".json", ".md", ".txt"}
    )
    for name in ("cases_by_sex_age", "cases_by_governorate"):
        frame = pl.read_csv(out / "csv" / f"{name}.csv", infer_schema=False)
        hidden = frame.filter(pl.col("value").is_null())
        assert hidden.height and set(hidden["conf_status"].to_list()) == {"C"}
        sdmx = pl.read_csv(out / "sdmx" / f"{name}.csv", infer_schema=False)
        assert set(sdmx["CONF_STATUS"].to_list()) <= {"F", "C"}
    assert ",D," not in text and '"D"' not in text
    import duckdb

    analysts = next(out.rglob("*.duckdb"))
    with duckdb.connect(str(analysts), read_only=True) as con:
        tables = [r[0] for r in con.execute("SHOW TABLES").fetchall()]
        checked = False
        for table in tables:
            columns = [r[0] for r in con.execute(f'DESCRIBE "{table}"').fetchall()]
            if "conf_status" in columns:
                query = f'SELECT DISTINCT conf_status FROM "{table}"'
                assert "D" not in {r[0] for r in con.execute(query).fetchall()}
                checked = True
    assert checked
    import zipfile

    with zipfile.ZipFile(next(out.rglob("*.xlsx"))) as book:
        strings = book.read("xl/sharedStrings.xml").decode("utf-8")
    assert ">D<" not in strings and ">C<" in strings
    with open_warehouse(warehouse, read_only=True) as con:
        release = list_releases(con)[-1]
        statuses = set(release_cells(con, release.release_id)["conf_status"].to_list())
    assert release.detail["flags"] == "combined"
    assert "D" in statuses  # the steward's ledger keeps primary and secondary apart


def _off():
    return load_recoding().disabled()


@pytest.mark.slow
def test_quarters_and_year_with_combined_flags_give_nothing_away(tmp_path) -> None:
    """Quarters then their year, all with combined flags: solved together from the ledger as the
    outsider and each organisation would (no ≥ 1 reading): no hidden cell recovered, no primary
    narrower than k; the stacked folders pass `casepool audit`."""
    warehouse = build_random(tmp_path / "w.duckdb", 400, orgs=3)
    settings = replace(load_protection_settings(), flags="combined")
    folders = []
    for period in ("2025-Q1", "2025-Q2", "2025-Q3", "2025-Q4", "2025"):
        publish(
            warehouse, tmp_path / period, period, tables=TABLES, settings=settings, recoding=_off()
        )
        folders.append(tmp_path / period)
    _, tables = ledger_tables(warehouse)
    assert _failures(tables) == set()
    report = audit_releases(folders)
    assert report.protected, [f.to_dict() for f in report.findings[:3]]


@pytest.mark.slow
def test_a_combined_release_linked_to_distinct_ones_reads_their_flags(tmp_path) -> None:
    """Two quarters published with distinct flags, the rest and the year with combined: the
    ledger says which; the engine reads C ≥ 1 from the first two only, and the whole stack
    still gives nothing away to the outsider or any organisation."""
    warehouse = build_random(tmp_path / "w.duckdb", 400, orgs=3)
    distinct = replace(load_protection_settings(), flags="distinct")
    combined = replace(distinct, flags="combined")
    folders = []
    for period, settings in (
        ("2025-Q1", distinct),
        ("2025-Q2", distinct),
        ("2025-Q3", combined),
        ("2025-Q4", combined),
        ("2025", combined),
    ):
        publish(
            warehouse, tmp_path / period, period, tables=TABLES, settings=settings, recoding=_off()
        )
        folders.append(tmp_path / period)
    with open_warehouse(warehouse, read_only=True) as con:
        modes = [release_flags(r.detail) for r in list_releases(con)]
    assert modes == ["distinct", "distinct", "combined", "combined", "combined"]
    _, tables = ledger_tables(warehouse)
    told = {t.name.split("@")[1]: t.flags_told for t in tables if t.name}
    assert sorted(told.values()) == [False, False, False, True, True]
    assert _failures(tables) == set()
    report = audit_releases(folders)
    assert report.protected, [f.to_dict() for f in report.findings[:3]]
    assert [_manifest(f).get("flags") for f in folders] == [
        "distinct",
        "distinct",
        "combined",
        "combined",
        "combined",
    ]


def test_the_report_says_only_protected_when_no_cell_is_flagged_d() -> None:
    from datetime import date

    from casepool.reporting.charts import Bar
    from casepool.reporting.page import Page, _cell, _note
    from casepool.reporting.tables import table_from_rows

    def page_of(flags: list[str]) -> Page:
        rows = [
            {"indicator": "registered_cases", "sex": s, "value": None, "conf_status": f}
            for s, f in zip(("F", "M"), flags, strict=True)
        ]
        table = table_from_rows("t", rows, ("sex",))
        return Page({"t": table}, None, "en", "2025", None, ["2025"], False, date(2026, 1, 1))

    bars = [
        Bar(None, "suppressed", "t|sex=F", "", "C"),
        Bar(None, "suppressed", "t|sex=M", "", "C"),
    ]
    combined = page_of(["C", "C"])
    assert not combined.distinct_flags
    assert "2 cell(s) suppressed to protect children" in _note(combined, bars)
    assert "too few children to publish safely" not in _note(combined, bars)
    assert "Too few children" not in _cell(combined, bars[0])
    distinct = page_of(["C", "D"])
    assert distinct.distinct_flags
    shown = [bars[0], Bar(None, "suppressed", "t|sex=M", "", "D")]
    assert "1 cell(s) suppressed because they count too few children" in _note(distinct, shown)
