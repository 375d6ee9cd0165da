"""`casepool report` on a differentially private publication (`publish --method dp`): every figure
is shown as an estimate with its margin of error, ≈ value (± margin), in the reader's language."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from browser.report_html import numbers, split_ref, suppressed_marks
from casepool.core.i18n import messages
from casepool.publishing.dp_publish import publish_dp
from casepool.reporting import write_report
from casepool.reporting.numerals import parse_number
from fixtures.indicators.warehouses import build_hand_made


@pytest.fixture(scope="module")
def dp_publication(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dp-report")
    warehouse = build_hand_made(root / "warehouse.duckdb")
    result = publish_dp(warehouse, root / "publication")
    assert result.ok
    return warehouse, root / "publication"


def _published(folder: Path, table: str) -> dict[tuple[tuple[str, str], ...], dict]:
    payload = json.loads((folder / "json" / f"{table}.json").read_text("utf-8"))
    dims = [d["name"] for d in payload["dimensions"]]
    return {tuple((d, str(r[d])) for d in dims): r for r in payload["rows"]}


@pytest.mark.parametrize("lang", ["en", "ar", "ckb", "kmr"])
def test_a_dp_report_shows_every_figure_with_its_margin(dp_publication, tmp_path, lang):
    warehouse, folder = dp_publication
    target = tmp_path / f"report-{lang}.html"
    write_report(warehouse, target, lang=lang, publication=folder)
    html = target.read_text("utf-8")
    shown = numbers(html)
    assert len(shown) > 50
    # Differential privacy withholds nothing. A share whose noisy denominator came out 0 has no
    # value to show (the hand-made data have quarters of about 5 children): the report marks it
    # like a hidden cell; nothing else may be marked.
    for mark in suppressed_marks(html):
        table, codes = split_ref(mark.attrs["data-suppressed"])
        row = _published(folder, table)[tuple(codes.items())]
        assert row["value"] is None and row.get("denominator") == 0, row
    for element in shown:
        table, codes = split_ref(element.attrs["data-ref"])
        row = _published(folder, table)[tuple(codes.items())]
        assert row["obs_status"] == "E" and row["margin"] is not None
        text = element.text
        assert text.startswith("≈ ") and "(± " in text and text.endswith(")"), text
        value, margin = (part.strip("%٪) ") for part in text[2:].split(" (± "))
        assert parse_number(value, lang) == pytest.approx(row["value"], abs=0.051)
        assert parse_number(margin, lang) == pytest.approx(row["margin"], abs=0.51)
    # The methodology says what ± means, in the reader's language.
    assert messages()["report-method-dp"][lang] in html


def test_a_suppressed_publication_has_no_margins(tmp_path, monkeypatch):
    from casepool.publishing import publish as publish_module

    # Three of the catalogue's tables the report draws (the whole catalogue on this warehouse
    # took 150 s of protection; what is checked is how a suppressed figure is written).
    whole = publish_module.load_publication
    drawn = {"cases_by_period_region", "cases_by_governorate", "cases_by_sex_age"}
    monkeypatch.setattr(
        publish_module,
        "load_publication",
        lambda catalogue=None: tuple(r for r in whole(catalogue) if r.table_name in drawn),
    )
    warehouse = build_hand_made(tmp_path / "warehouse.duckdb")
    target = tmp_path / "report.html"
    write_report(warehouse, target, lang="en")
    html = target.read_text("utf-8")
    assert numbers(html) or suppressed_marks(html)  # the report drew the tables
    assert "(± " not in html and "Differential privacy." not in html
