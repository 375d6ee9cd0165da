"""The report on the real thing: a warehouse, `publish`, and every number checked against the
publication's own CSV files (read independently of the report's reader)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from browser.report_html import DIGITS, numbers, parse, split_ref, suppressed_marks
from casepool.catalogue.indicators import load_indicators
from casepool.reporting import write_report
from casepool.reporting.numerals import parse_number
from fixtures.indicators.warehouses import build_random

publishing = pytest.importorskip("casepool.publishing.publish")


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("report-publish")
    warehouse = build_random(root / "warehouse.duckdb", 1500, orgs=3)
    publishing.publish(warehouse, root / "publication")
    return warehouse, root / "publication"


def _csv_cells(folder: Path, table: str) -> dict[tuple[tuple[str, str], ...], dict[str, str]]:
    frame = pl.read_csv(folder / "csv" / f"{table}.csv", infer_schema=False)
    meta = {"indicator", "unit", "value", "obs_status", "conf_status", "numerator", "denominator"}
    dims = [c for c in frame.columns if c not in meta]
    return {tuple((d, str(row[d])) for d in dims): row for row in frame.iter_rows(named=True)}


def test_every_number_in_the_demo_report_is_in_the_demo_publication(demo_run):
    # conftest's session demo writes its report from its own publication (English). Its 400
    # records leave few numbers shown (4 when written) and many cells suppressed (263): every
    # one is checked against the publication's CSV files.
    html = (demo_run.folder / "report.html").read_text("utf-8")
    _every_number_is_published(html, demo_run.folder / "publication", "en", at_least=0)
    assert suppressed_marks(html)


# The default run's smaller check: test_every_number_in_the_demo_report_is_in_the_demo_publication
# (the session demo's report, English only, few numbers shown and many suppressed).
@pytest.mark.slow  # publishes the whole catalogue of 1,500 records, then two reports
@pytest.mark.parametrize("lang", ["en", "ar"])
def test_every_number_in_the_report_is_in_the_publication(published, tmp_path, lang):
    warehouse, folder = published
    target = tmp_path / f"report-{lang}.html"
    write_report(warehouse, target, lang=lang, publication=folder)
    _every_number_is_published(target.read_text("utf-8"), folder, lang, at_least=150)


def _every_number_is_published(html: str, folder: Path, lang: str, at_least: int) -> None:
    shown = numbers(html)
    assert len(shown) > at_least
    cache: dict[str, dict] = {}
    for element in shown:
        table, codes = split_ref(element.attrs["data-ref"])
        cells = cache.setdefault(table, _csv_cells(folder, table))
        row = cells[tuple(codes.items())]
        assert row["obs_status"] == "A" and row["value"] not in (None, "")
        published_value = float(row["value"])
        assert float(element.attrs["data-value"]) == published_value
        unit = load_indicators().indicator(row["indicator"]).unit  # tidy CSVs carry no unit
        decimals = 1 if unit != "count" else 0
        assert parse_number(element.text, lang) == pytest.approx(round(published_value, decimals))
    for mark in suppressed_marks(html):
        table, codes = split_ref(mark.attrs["data-suppressed"])
        row = _csv_cells(folder, table)[tuple(codes.items())]
        assert row["obs_status"] == "Q" and row["value"] in (None, "")
        assert not DIGITS.search(mark.text)


# No cheaper equivalent: publishing two periods of the whole catalogue is what it checks.
@pytest.mark.slow  # the whole catalogue for 2025 and for 2024
def test_the_report_publishes_by_itself_for_a_period_and_the_one_before(published, tmp_path):
    warehouse, _ = published
    result = write_report(warehouse, tmp_path / "r.html", period="2025")
    html = (tmp_path / "r.html").read_text("utf-8")
    assert result.period == "2025"
    assert "Registrations in 2025" in html
    changes = [e for e in parse(html).elements if "data-derived" in e.attrs]
    assert changes or "No comparison with 2024" in html or "No earlier period" in html
