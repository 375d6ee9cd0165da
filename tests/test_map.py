"""The governorate map: real boundaries shipped with casepool (18 P-coded paths whose shared borders
stay shared after simplification), drawn in every language with hidden governorates hatched and
uncertain ones hatched over their shade, and never mirrored."""

from __future__ import annotations

import json
import re
from datetime import date
from importlib import resources
from pathlib import Path

import pytest

from casepool.core.i18n import render
from casepool.core.schema import load_codelists
from casepool.reporting import build_page
from casepool.reporting.coverage import Coverage
from casepool.reporting.map import Area, boundaries, choropleth, is_uncertain
from casepool.reporting.tables import read_publication

FIXTURE = Path(__file__).parent / "fixtures" / "report"
LANGS = ("en", "ar", "ckb", "kmr")
ASSETS = resources.files("casepool.reporting") / "assets"
AREA = re.compile(r'<g class="area" data-governorate="(IQG\d\d)"([^>]*)>(.*?)</g>', re.S)


def points(d: str) -> list[list[tuple[int, int]]]:
    """The rings of a path written as `M x y l dx dy … z` (the asset's only form)."""
    rings = []
    for part in re.findall(r"M[^z]*z", d):
        numbers = [int(n) for n in re.findall(r"-?\d+", part)]
        x, y = numbers[0], numbers[1]
        ring = [(x, y)]
        for dx, dy in zip(numbers[2::2], numbers[3::2], strict=True):
            x, y = x + dx, y + dy
            ring.append((x, y))
        rings.append(ring)
    return rings


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    tables = read_publication(FIXTURE)
    coverage = Coverage([("ORG-01", "Amal Centre (synthetic)")], {("ORG-01", "2025"): 1})
    return {
        lang: build_page(tables, coverage, lang=lang, synthetic=True, generated=date(2026, 1, 15))
        for lang in LANGS
    }


def the_map(page: str) -> str:
    start = page.index('<svg class="map"')
    return page[start : page.index("</svg>", start) + 6]


# --- the boundary file -------------------------------------------------------------------------


def test_the_boundaries_are_the_18_governorates_of_the_code_list_small_and_well_formed():
    raw = (ASSETS / "iraq_governorates.json").read_bytes()
    assert len(raw) < 8_000  # a few KB, simplified offline
    governorates = set(load_codelists()["governorate"].values)
    shapes = boundaries()
    assert {s.code for s in shapes.shapes} == governorates and len(shapes.shapes) == 18
    for shape in shapes.shapes:
        assert re.fullmatch(r"(M\d+ \d+l(-?\d+ -?\d+ ?)+z)+", shape.d), shape.code
        ring = max(points(shape.d), key=len)
        assert len(ring) >= 8, shape.code  # a shape, not a tile
        for x, y in ring:
            assert 0 <= x <= shapes.width and 0 <= y <= shapes.height, shape.code
        assert 0 < shape.label[0] < shapes.width and 0 < shape.label[1] < shapes.height
    readme = (ASSETS / "README.md").read_text("utf-8")
    assert "Natural Earth" in readme and "public domain" in readme
    assert json.loads(raw)["licence"].startswith("public domain")


def test_shared_borders_stay_shared_after_simplification():
    """Baghdad, Babil and Kerbala touch no foreign border: every corner of theirs is a corner of a
    neighbour too, so the simplified map has no gaps or slivers between governorates."""
    corners = {s.code: {p for ring in points(s.d) for p in ring} for s in boundaries().shapes}
    for inland in ("IQG08", "IQG07", "IQG12"):
        others = set().union(*(c for code, c in corners.items() if code != inland))
        assert corners[inland] <= others, inland


# --- the map in the report ---------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_the_report_map_has_every_governorate_and_hatches_the_suppressed(pages, lang):
    svg = the_map(pages[lang])
    areas = {code: (attrs, body) for code, attrs, body in AREA.findall(svg)}
    assert len(areas) == 18 and len(AREA.findall(svg)) == 18
    paths = re.findall(r'<path d="[^"]+" fill="([^"]+)"[^>]*data-governorate="(IQG\d\d)"', svg)
    assert sorted(code for _, code in paths) == sorted(areas)
    fills = {code: fill for fill, code in paths}
    # The fixture suppresses Al-Basrah (secondary, D) and Diyala (primary, C).
    for code in ("IQG02", "IQG10"):
        assert "data-suppressed=" in areas[code][0] and fills[code] == "url(#fig-map-hatch)"
    for code in ("IQG01", "IQG08"):  # shown: shaded, with their value
        assert "data-class=" in areas[code][0] and fills[code].startswith("#")
    # Not in the table at all: hatched as missing, never shaded as if it were small.
    assert 'data-missing="1"' in areas["IQG03"][0] and fills["IQG03"].startswith("url(")
    source = " ".join(re.findall(r'class="map-source">([^<]*)</text>', svg))
    assert source == render("map-source", lang)
    assert render("report-map-hidden", lang) in svg
    assert "<script" not in svg and "http" not in svg.replace("http://www.w3.org", "")
    baghdad = {"en": "Baghdad", "ar": "بغداد"}.get(lang)
    if baghdad:
        assert f">{baghdad}</text>" in svg


def test_the_map_is_never_mirrored(pages):
    shapes = {lang: re.findall(r'<path d="([^"]+)"', the_map(pages[lang])) for lang in LANGS}
    assert shapes["ar"] == shapes["en"] == shapes["ckb"] == shapes["kmr"]
    assert 'direction="rtl"' in the_map(pages["ar"]) and 'direction="ltr"' in the_map(pages["en"])


# --- uncertain values --------------------------------------------------------------------------


def test_a_margin_over_a_fifth_of_the_value_is_uncertain():
    assert is_uncertain(10.0, 2.5) and not is_uncertain(10.0, 2.0)
    assert is_uncertain(0.0, 1.0) and not is_uncertain(0.0, 0.0)
    assert not is_uncertain(None, 5.0) and not is_uncertain(10.0, None)


def test_an_uncertain_governorate_is_shaded_and_hatched_over_and_the_legend_says_so():
    areas = {
        "IQG01": Area("IQG01", "Al-Anbar", 40.0, "40", uncertain=True),
        "IQG08": Area("IQG08", "Baghdad", 100.0, "100"),
        "IQG15": Area("IQG15", "Ninewa", None, "", True, "t|governorate=IQG15"),
    }
    svg = choropleth(
        "m",
        "title",
        areas,
        rtl=False,
        legend_format=lambda v: f"{v:.0f}",
        hidden_text="not shown",
        uncertain_text="uncertain <20 %>",
        source_text="source",
    )
    found = {code: (attrs, body) for code, attrs, body in AREA.findall(svg)}
    attrs, body = found["IQG01"]
    assert 'data-uncertain="1"' in attrs and 'data-class="' in attrs
    assert 'fill="url(#m-unsure)"' in body and 'fill="#' in body
    assert "data-uncertain" not in found["IQG08"][0]
    assert 'data-suppressed="t|governorate=IQG15"' in found["IQG15"][0]
    assert "uncertain &lt;20 %&gt;" in svg  # legend text, escaped
    plain = choropleth(
        "m",
        "title",
        {k: v for k, v in areas.items() if k != "IQG01"},
        rtl=False,
        legend_format=str,
        hidden_text="not shown",
        uncertain_text="uncertain",
        source_text="source",
    )
    assert "uncertain" not in plain.replace("url(#m-unsure)", "").split("</defs>", 1)[1]
