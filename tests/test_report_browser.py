"""The report in a real browser (headless Chromium): no console error, right to left in Arabic,
charts drawn, the Arabic font loaded, no horizontal overflow on a phone.

Chromium comes from Debian (tests/browser/setup.sh, which CI runs first); without it these tests
skip and say why.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from browser import chromium
from casepool.reporting import build_page
from casepool.reporting.coverage import Coverage
from casepool.reporting.tables import read_publication

pytestmark = pytest.mark.skipif(
    chromium.binary() is None,
    reason="chromium is not installed: run tests/browser/setup.sh (CI does)",
)
FIXTURE = Path(__file__).parent / "fixtures" / "report"
PURPLE = (0x7B, 0x32, 0x94)  # the first series colour of the charts
PHONE = 390


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("reports")
    tables = read_publication(FIXTURE)
    coverage = Coverage([("ORG-01", "Amal Centre (synthetic)")], {("ORG-01", "2025"): 1})
    paths = {}
    for lang in ("en", "ar", "ckb"):
        html = build_page(tables, coverage, lang=lang, synthetic=True, generated=date(2026, 1, 15))
        paths[lang] = folder / f"report-{lang}.html"
        paths[lang].write_text(html, "utf-8")
    return paths


def _ink_margins(rows: list[bytes], top: int, bottom: int) -> tuple[int, int]:
    """Blank pixels left and right of the dark text between two rows (a heading)."""
    xs = [
        i // 3
        for row in rows[top:bottom]
        for i in range(0, len(row), 3)
        if row[i] < 80 and row[i + 1] < 80 and row[i + 2] < 80
    ]
    assert xs, "no text drawn there"
    return min(xs), len(rows[0]) // 3 - 1 - max(xs)


def _purple_pixels(rows: list[bytes]) -> int:
    r, g, b = PURPLE
    return sum(
        1
        for row in rows
        for i in range(0, len(row), 3)
        if abs(row[i] - r) < 12 and abs(row[i + 1] - g) < 12 and abs(row[i + 2] - b) < 12
    )


def test_the_console_check_would_see_an_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<script>console.error("boom")</script><img src="missing.png">', "utf-8")
    assert chromium.run(page, "--dump-dom").console


@pytest.mark.parametrize(("lang", "rtl"), [("en", False), ("ar", True)])
def test_the_report_renders_without_console_errors_and_looks_right(reports, tmp_path, lang, rtl):
    png = tmp_path / f"{lang}.png"
    run = chromium.screenshot(reports[lang], png, width=900, height=1000)
    assert run.console == []
    _, _, rows = chromium.read_png(png, max_rows=1000)
    # The title (top rows) starts at the left edge in English and at the right edge in Arabic.
    left, right = _ink_margins(rows, 10, 45)
    start, end = (right, left) if rtl else (left, right)
    assert start < 30 and end > start + 20, (left, right)
    # Charts are drawn: the bars of the first series (purple) fill a visible area.
    assert _purple_pixels(rows[400:1000]) > 5000


@pytest.mark.parametrize(("lang", "direction"), [("en", "ltr"), ("ar", "rtl"), ("ckb", "rtl")])
def test_on_a_phone_nothing_overflows_and_every_chart_is_laid_out(
    reports, tmp_path, lang, direction
):
    facts = chromium.probe(reports[lang], tmp_path, PHONE)
    assert facts["direction"] == direction
    assert facts["scrollWidth"] <= facts["innerWidth"] == PHONE
    assert len(facts["charts"]) == 8 and all(300 < w <= PHONE for w in facts["charts"])
    assert facts["tables"] >= 10
    # The first heading's text ("Headline figures") starts at the reading side's edge.
    start = facts["innerWidth"] - facts["h2Right"] if direction == "rtl" else facts["h2Left"]
    end = facts["h2Left"] if direction == "rtl" else facts["innerWidth"] - facts["h2Right"]
    assert start < 20 < 100 < end
    if direction == "rtl":
        assert "Report Arabic 400 loaded" in facts["fonts"]
