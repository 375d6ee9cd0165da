"""The report in Chromium at a desktop (1280 px) and a phone (390 px) width, in every language: no
page overflows, every table fits or scrolls inside its own box, no chart label is cut, and the map
is drawn with its 18 governorates, its hidden ones hatched and every label inside it."""

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
LANGS = ("en", "ar", "ckb", "kmr")

# Facts of the laid-out page: the page's width against the frame's, each table against its box
# (a table may be wider only when its box scrolls), the map's governorates and whether any of its
# labels falls outside it.
LAYOUT_PROBE = """<script>
document.fonts.ready.then(() => {
  const root = document.documentElement;
  const boxes = [...document.querySelectorAll('.table-box')].map(b => ({
    box: b.clientWidth, table: b.querySelector('table').scrollWidth,
    scrolls: getComputedStyle(b).overflowX === 'auto',
    right: b.getBoundingClientRect().right, left: b.getBoundingClientRect().left}));
  const map = document.querySelector('svg.map');
  const facts = {
    scrollWidth: root.scrollWidth, innerWidth: window.innerWidth, boxes: boxes,
    mapWidth: map ? map.getBoundingClientRect().width : 0,
    areas: map ? map.querySelectorAll('g.area path[data-governorate]').length : 0,
    hatched: map ? map.querySelectorAll('g.area[data-suppressed]').length : 0,
    mapOut: map ? [...map.querySelectorAll('g.labels text, text.map-source')].filter(t => {
      const b = t.getBoundingClientRect(), m = map.getBoundingClientRect();
      return b.left < m.left - 1 || b.right > m.right + 1; }).map(t => t.textContent) : ['no map'],
    labels: [...document.querySelectorAll('svg.chart text.label')].map(t => t.textContent),
  };
  parent.postMessage(JSON.stringify(facts), '*');
});
</script>"""


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("layout")
    tables = read_publication(FIXTURE)
    coverage = Coverage([("ORG-01", "Amal Centre (synthetic)")], {("ORG-01", "2025"): 1})
    paths = {}
    for lang in LANGS:
        html = build_page(tables, coverage, lang=lang, synthetic=True, generated=date(2026, 1, 15))
        paths[lang] = folder / f"report-{lang}.html"
        paths[lang].write_text(html, "utf-8")
    return paths


@pytest.mark.parametrize("width", [1280, 390])
@pytest.mark.parametrize("lang", LANGS)
def test_nothing_overflows_and_the_map_is_drawn(reports, tmp_path, monkeypatch, lang, width):
    monkeypatch.setattr(chromium, "PROBE", LAYOUT_PROBE)
    facts = chromium.probe(reports[lang], tmp_path, width)
    assert facts["innerWidth"] == width
    assert facts["scrollWidth"] <= width, "the page scrolls sideways"
    for box in facts["boxes"]:
        assert box["table"] <= box["box"] or box["scrolls"], box
        assert box["left"] >= 0 and box["right"] <= width, box
    assert facts["areas"] == 18 and facts["hatched"] >= 1
    assert facts["mapOut"] == [], "a map label falls outside the map"
    assert 300 < facts["mapWidth"] <= min(width, 600)
    assert facts["labels"] and not any(label.endswith("…") for label in facts["labels"])


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_a_desktop_screenshot_has_no_console_error(reports, tmp_path, lang):
    png = tmp_path / f"{lang}-1280.png"
    run = chromium.screenshot(reports[lang], png, width=1280, height=1400)
    assert run.console == []
    width, _, _ = chromium.read_png(png, max_rows=1)
    assert width == 1280
