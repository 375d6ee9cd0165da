"""`casepool audit` over whole publication folders (issue 12): every table read back as counts of
children with the engine's identities, shares through their numerators and denominators, linked
as the catalogue implies (same cells, a year = Σ its quarters), and solved with the project's LP
audit as an attacker would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from casepool.catalogue.indicators import TableRequest
from casepool.cli.main import app
from casepool.publishing.audit_release import _numerator_from_share, audit_releases
from casepool.publishing.publish import publish
from casepool.publishing.recoding import load_recoding
from fixtures.indicators.warehouses import build_random

HEAD = "indicator,region,value,obs_status,conf_status"
SHARE_HEAD = f"{HEAD},numerator,denominator"


def _folder(path: Path, period: str, tables: dict[str, tuple[str, list[str]]]) -> Path:
    """A publication folder as publish lays it out: manifest.json and csv/<table>.csv."""
    (path / "csv").mkdir(parents=True)
    entries = []
    for name, (header, rows) in tables.items():
        (path / "csv" / f"{name}.csv").write_text(
            "\n".join([header, *rows]) + "\n", encoding="utf-8"
        )
        indicator = rows[0].split(",")[0]
        entries.append({"table": name, "indicator": indicator, "written": True})
    manifest = {"period": period, "tables": entries}
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return path


# Online cases by region: KRI (3 children) is primary, federal its complement; the total shown.
COUNTS = [
    "online_cases,KRI,,Q,C",
    "online_cases,federal,,Q,D",
    "online_cases,_T,30,A,F",
]


def test_a_share_that_reveals_a_hidden_count_fails(tmp_path: Path) -> None:
    # The share of online cases in KRI is shown (7.5 % of 40) without its numerator: the
    # numerator is the hidden count of online cases in KRI, 3 children.
    shares = [
        "online_share,KRI,7.5,A,F,,40",
        "online_share,federal,,Q,D,,",
        "online_share,_T,,Q,D,,",
    ]
    folder = _folder(
        tmp_path / "pub",
        "2025",
        {"online_cases_by_region": (HEAD, COUNTS), "online_share_by_region": (SHARE_HEAD, shares)},
    )
    report = audit_releases([folder])
    assert not report.protected
    found = {(f.cell.get("region"), f.verdict) for f in report.findings}
    assert ("KRI", "small-count-published") in found
    assert ("federal", "disclosed") in found  # 30 − 3
    assert any(f.cell.get("region") == "federal" and f.lower == 27 for f in report.findings)


def test_the_same_folder_without_the_share_passes(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "pub", "2025", {"online_cases_by_region": (HEAD, COUNTS)})
    report = audit_releases([folder])
    assert report.protected and report.suppressed == 2


def test_a_share_hidden_with_its_numerator_passes(tmp_path: Path) -> None:
    shares = [
        "online_share,KRI,,Q,C,,40",
        "online_share,federal,,Q,D,,60",
        "online_share,_T,30.0,A,F,30,100",
    ]
    folder = _folder(
        tmp_path / "pub",
        "2025",
        {"online_cases_by_region": (HEAD, COUNTS), "online_share_by_region": (SHARE_HEAD, shares)},
    )
    assert audit_releases([folder]).protected


def test_a_rounded_percentage_gives_its_numerator_only_when_one_fits() -> None:
    assert _numerator_from_share("7.5", 40) == 3
    assert _numerator_from_share("33.3", 3) == 1
    assert _numerator_from_share("0.1", 2000) is None  # 1 and 2 of 2000 both round to 0.1
    assert _numerator_from_share(None, 40) is None


def test_the_command_audits_folders_and_says_why(tmp_path: Path, runner) -> None:
    shares = [
        "online_share,KRI,7.5,A,F,,40",
        "online_share,federal,,Q,D,,",
        "online_share,_T,,Q,D,,",
    ]
    bad = _folder(
        tmp_path / "bad",
        "2025",
        {"online_cases_by_region": (HEAD, COUNTS), "online_share_by_region": (SHARE_HEAD, shares)},
    )
    good = _folder(tmp_path / "good", "2025", {"online_cases_by_region": (HEAD, COUNTS)})
    refused = runner.invoke(app, ["audit", str(bad)])
    assert refused.exit_code == 1, refused.output
    assert "NOT protected together" in refused.output and "region=KRI" in refused.output
    passed = runner.invoke(app, ["audit", str(good), "--json"])
    assert passed.exit_code == 0, passed.output
    assert json.loads(passed.stdout)["protected"] is True
    mixed = runner.invoke(app, ["audit", str(good), str(tmp_path / "good" / "csv" / "x.csv")])
    assert mixed.exit_code == 2


def test_folders_that_publish_one_cell_twice_differently_are_refused(tmp_path: Path) -> None:
    from casepool.core.errors import UsageError

    one = _folder(tmp_path / "one", "2025", {"t": (HEAD, ["online_cases,_T,30,A,F"])})
    two = _folder(tmp_path / "two", "2025", {"t": (HEAD, ["online_cases,_T,31,A,F"])})
    with pytest.raises(UsageError):
        audit_releases([one, two])


TABLES = (
    TableRequest("registered_cases", ("sex", "age_band"), name="cases_by_sex_age"),
    TableRequest("boys_share", ("region",), name="boys_share_by_region"),
)
QUARTERS_THEN_YEAR = ("2025-Q1", "2025-Q2", "2025-Q3", "2025-Q4", "2025")


@pytest.mark.slow
@pytest.mark.parametrize("ledger", [False, True])
def test_quarters_and_their_year_stacked(tmp_path: Path, ledger: bool) -> None:
    """Before the ledger, the year's tables minus three quarters give the fourth quarter's hidden
    cells; protected together with the ledger, the five folders pass the same audit."""
    warehouse = build_random(tmp_path / "w.duckdb", 400, orgs=3)
    off = load_recoding().disabled()
    folders = []
    for period in QUARTERS_THEN_YEAR:
        publish(warehouse, tmp_path / period, period, tables=TABLES, ledger=ledger, recoding=off)
        folders.append(tmp_path / period)
    report = audit_releases(folders)
    assert report.links > 0
    if ledger:
        assert report.protected, [f.to_dict() for f in report.findings[:3]]
    else:
        assert not report.protected
        assert any(f.verdict == "disclosed" and f.attacker == "outsider" for f in report.findings)


def test_an_organisation_that_dominates_a_published_cell_fails_it(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "pub", "2025", {"online_cases_by_region": (HEAD, COUNTS)})
    # ORG-02 registered 28 of the 30 online cases: the published total tells it the other
    # organisations registered 2 (the dominance rule of schemas/protection.yaml).
    own = ["online_cases,KRI,,Q,C", "online_cases,federal,,Q,D", "online_cases,_T,28,A,F"]
    insider = _folder(tmp_path / "ORG-02", "2025", {"online_cases_by_region": (HEAD, own)})
    assert audit_releases([folder]).protected  # the outsider learns nothing
    report = audit_releases([folder], insiders={"ORG-02": [insider]})
    assert not report.protected and report.insiders == ["ORG-02"]
    found = {(f.attacker, f.cell.get("region"), f.verdict) for f in report.findings}
    assert found == {("ORG-02", None, "dominance-published")}
