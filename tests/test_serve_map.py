"""The service's table builder draws the governorate map when the table is by governorate."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from casepool.core.i18n import render
from casepool.serving.app import create_app
from fixtures.serve.builders import build_world, csrf_of, sign_in

AREA = re.compile(r'<g class="area" data-governorate="(IQG\d\d)"([^>]*)>')


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    world = build_world(tmp_path_factory.mktemp("serve-map"), records=600)
    client = TestClient(create_app(world.warehouse), base_url="http://127.0.0.1")
    sign_in(client, "amira", world.tokens["amira"])
    return client


def build(client: TestClient, lang: str, by: list[str], indicator: str = "registered_cases"):
    form = client.get(f"/table?indicator={indicator}&lang={lang}")
    return client.post(
        "/table",
        data={"csrf": csrf_of(form.text), "indicator": indicator, "by": by, "period": ""},
    )


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_a_table_by_governorate_is_drawn_on_the_map(client, lang):
    page = build(client, lang, ["governorate"])
    assert page.status_code == 200, page.text[:500]
    assert page.text.count('<svg class="map" id="result-map"') == 1
    areas = dict(AREA.findall(page.text))
    assert len(areas) == 18
    # Each governorate's value on the map is the one in the table (or it is hatched).
    for attrs in areas.values():
        assert "data-class=" in attrs or "data-suppressed=" in attrs or "data-missing" in attrs
    if lang == "en":
        body = page.text[page.text.index('id="result-table"') :]
        rows = re.findall(r'<tr><td>([^<]+)</td><td class="num">([^<]+)</td>', body)
        titles = set(re.findall(r"<g class=\"area\"[^>]*><title>([^<]+)</title>", page.text))
        shown = [(label, value) for label, value in rows if value != "x" and label != "Total"]
        assert len(shown) >= 10
        for label, value in shown:
            if label != "Governorate not stated":
                assert f"{label}: {value}" in titles, (label, value)
    assert render("map-source", lang).split(".")[0].split("،")[0][:20] in page.text
    assert ('direction="rtl"' in page.text) == (lang == "ar")
    assert "<script" not in page.text


def test_a_table_not_by_governorate_has_no_map(client):
    page = build(client, "en", ["sex"])
    assert page.status_code == 200 and 'id="result-table"' in page.text
    assert '<svg class="map"' not in page.text


# The laid-out service page: no sideways scroll, the map inside the page, its labels inside it.
MAP_PROBE = """<script>
document.fonts.ready.then(() => {
  const root = document.documentElement, map = document.querySelector('svg.map');
  const m = map ? map.getBoundingClientRect() : null;
  const out = map ? [...map.querySelectorAll('g.labels text, text.map-source')].filter(t => {
    const b = t.getBoundingClientRect(); return b.left < m.left - 1 || b.right > m.right + 1;
  }).map(t => t.textContent) : ['no map'];
  parent.postMessage(JSON.stringify({scrollWidth: root.scrollWidth, innerWidth: innerWidth,
    left: m ? m.left : -1, right: m ? m.right : 1e9, out: out,
    areas: map ? map.querySelectorAll('path[data-governorate]').length : 0}), '*');
});
</script>"""


@pytest.mark.parametrize("width", [1280, 390])
@pytest.mark.parametrize("lang", ["en", "ar"])
def test_the_service_map_fits_a_desktop_and_a_phone(client, tmp_path, monkeypatch, lang, width):
    from browser import chromium

    if chromium.binary() is None:
        pytest.skip("chromium is not installed: run tests/browser/setup.sh (CI does)")
    page = build(client, lang, ["governorate"])
    css = client.get("/static/app.css").text
    html = page.text.replace(
        '<link rel="stylesheet" href="/static/app.css">', f"<style>{css}</style>"
    )
    path = tmp_path / f"service-{lang}.html"
    path.write_text(html, "utf-8")
    monkeypatch.setattr(chromium, "PROBE", MAP_PROBE)
    facts = chromium.probe(path, tmp_path, width)
    assert facts["innerWidth"] == width
    assert facts["scrollWidth"] <= width, "the page scrolls sideways"
    assert facts["areas"] == 18
    assert facts["left"] >= 0 and facts["right"] <= width
    assert facts["out"] == [], "a map label falls outside the map"
