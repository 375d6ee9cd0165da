"""`casepool report` from hand-made protected tables: numbers match, suppressed cells stay hidden,
nothing points to the network, four languages with the right direction, digits and labels."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from browser.report_html import DIGITS, numbers, parse, split_ref, suppressed_marks
from casepool.cli.main import app
from casepool.core.errors import UsageError
from casepool.reporting import build_page, write_report
from casepool.reporting.coverage import Coverage
from casepool.reporting.numerals import (
    ARABIC_INDIC_DIGITS,
    format_number,
    format_percent,
    format_signed,
    parse_number,
)
from casepool.reporting.page import choose_periods, previous_period
from casepool.reporting.tables import Cell, TableView, read_publication, table_from_rows

FIXTURE = Path(__file__).parent / "fixtures" / "report"
LANGS = ("en", "ar", "ckb", "kmr")
COVERAGE = Coverage(
    [("ORG-01", "Amal Centre (synthetic)"), ("ORG-02", 'Noor <script>alert("x")</script> & Co')],
    {("ORG-01", "2024"): 1, ("ORG-01", "2025"): 2, ("ORG-02", "2025"): 1},
)


@pytest.fixture(scope="module")
def tables():
    return read_publication(FIXTURE)


@pytest.fixture(scope="module")
def pages(tables) -> dict[str, str]:
    return {
        lang: build_page(tables, COVERAGE, lang=lang, synthetic=True, generated=date(2026, 1, 15))
        for lang in LANGS
    }


# --- numbers ---------------------------------------------------------------------------------


@given(st.integers(min_value=-(10**9), max_value=10**9), st.sampled_from(LANGS))
def test_a_count_reads_back_as_itself_in_every_language(value, lang):
    assert parse_number(format_number(value, lang), lang) == value


@given(st.floats(min_value=0, max_value=100, allow_nan=False), st.sampled_from(LANGS))
def test_a_percentage_reads_back_rounded_to_one_decimal(value, lang):
    assert parse_number(format_percent(value, lang), lang) == pytest.approx(round(value, 1))


def test_digits_follow_each_languages_custom():
    assert format_number(1234567, "en") == "1,234,567"
    assert format_number(1234.5, "kmr", 1) == "1.234,5"
    assert format_number(1234.5, "ar", 1) == "١٬٢٣٤٫٥"
    assert format_percent(12.5, "ckb") == "١٢٫٥٪"
    assert format_signed(-3, "en") == "−3"
    assert format_signed(7, "ar").endswith("+٧")


@pytest.mark.parametrize(
    ("code", "before"),
    [("2025", "2024"), ("2025-Q1", "2024-Q4"), ("2025-Q3", "2025-Q2"), ("2025-01", "2024-12")],
)
def test_the_period_before(code, before):
    assert previous_period(code) == before


def test_headline_is_the_latest_quarter_against_the_one_before(tables):
    assert choose_periods(tables, None)[:2] == ("2025-Q4", "2025-Q3")
    assert choose_periods(tables, None, "2025-Q1")[:2] == ("2025-Q1", "2024-Q4")
    with pytest.raises(UsageError) as refused:
        choose_periods(tables, None, "2031-Q1")
    assert refused.value.key == "report-unknown-period"


@pytest.mark.parametrize("lang", LANGS)
def test_every_number_shown_equals_its_published_cell(pages, tables, lang):
    shown = numbers(pages[lang])
    assert len(shown) > 150  # every chart and every table beside it
    for element in shown:
        name, codes = split_ref(element.attrs["data-ref"])
        cell = tables[name].get(**codes)
        assert cell is not None and not cell.suppressed, element.attrs["data-ref"]
        assert float(element.attrs["data-value"]) == cell.value
        decimals = 1 if tables[name].indicator.endswith("share") else 0
        assert parse_number(element.text, lang) == pytest.approx(round(cell.value, decimals))


@pytest.mark.parametrize("lang", LANGS)
def test_a_suppressed_cell_never_appears_as_a_number(pages, tables, lang):
    html = pages[lang]
    marks = suppressed_marks(html)
    shown_refs = {e.attrs["data-ref"] for e in numbers(html)}
    assert marks, "the fixtures hold suppressed cells: they must be marked"
    for mark in marks:
        name, codes = split_ref(mark.attrs["data-suppressed"])
        assert tables[name].get(**codes).suppressed
        assert not DIGITS.search(mark.text), mark.text
        assert mark.attrs["data-suppressed"] not in shown_refs
    # Every suppressed cell of a table drawn in full is marked, in the chart and in its table.
    exploitation = tables["cases_by_exploitation_type"]
    hidden = [c for c in exploitation.cells if c.suppressed]
    marked = [m.attrs["data-suppressed"] for m in marks]
    for cell in hidden:
        ref = "cases_by_exploitation_type|" + ";".join(f"{d}={c}" for d, c in cell.codes)
        assert marked.count(ref) >= 1 + (cell.code("sex") != "_T"), ref


def test_suppression_is_explained_with_primary_and_secondary_reasons(pages):
    text = " ".join(parse(pages["en"]).texts)
    assert "suppressed because they count too few children" in text
    assert "so that the small ones cannot be worked out from the totals" in text
    cells = [e for e in parse(pages["en"]).elements if e.tag == "td" and "data-status" in e.attrs]
    titles = {e.attrs["data-status"]: e.attrs["title"] for e in cells}
    assert titles["C"].startswith("Too few children")
    assert titles["D"].startswith("Hidden so that another")


def test_changes_between_periods_are_worked_out_from_two_published_cells(pages, tables):
    changes = [e for e in parse(pages["en"]).elements if "data-derived" in e.attrs]
    assert {e.attrs["data-derived"] for e in changes} == {"count", "points"}
    for change in changes:
        now, before = (split_ref(r) for r in change.attrs["data-from"].split())
        a, b = tables[now[0]].get(**now[1]), tables[before[0]].get(**before[1])
        assert float(change.attrs["data-change"]) == pytest.approx(a.value - b.value)
    # The online share of 2025-Q3 is suppressed: no change is worked out from it.
    text = " ".join(parse(pages["en"]).texts)
    assert "No comparison with Q3 2025: one of the two figures is suppressed." in text
    assert "+7 (+6.9%) compared with Q3 2025" in text


# --- self-contained and safe -------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_the_report_fetches_nothing_from_any_network(pages, lang):
    html = pages[lang]
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html.lower()  # no code at all (an org name holds one: escaped)
    assert "<link" not in html and "<iframe" not in html and "<img" not in html
    assert "default-src 'none'" in html  # the browser refuses any request the page might make
    for element in parse(html).elements:
        for attr in ("src", "href", "xlink:href", "action"):
            assert attr not in element.attrs or element.attrs[attr].startswith(("#", "data:"))
    assert all(u.startswith(("data:", "#")) for u in re.findall(r"url\(([^)]{0,8})", html))


def test_every_inserted_text_is_escaped(pages):
    html = pages["en"]
    assert '<script>alert("x")</script>' not in html
    assert "Noor &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in html


# --- languages -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "direction"), [("en", "ltr"), ("ar", "rtl"), ("ckb", "rtl"), ("kmr", "ltr")]
)
def test_arabic_and_sorani_pages_run_right_to_left(pages, lang, direction):
    html = pages[lang]
    assert f'<html lang="{lang}" dir="{direction}">' in html
    charts = [e for e in parse(html).elements if e.tag == "svg"]
    assert len(charts) == 9  # eight charts and the map
    assert {c.attrs["direction"] for c in charts} == {direction}


def test_rtl_charts_are_mirrored(pages):
    """The first quarter sits at the left in English and at the right in Arabic."""

    def first_column_x(html: str) -> float:
        svg = html[html.index('id="fig-time"') :]
        return float(
            re.search(
                r'<rect x="([\d.]+)" y="[\d.]+" width="[\d.]+" height="[\d.]+" fill="#7b3294"', svg
            )[1]
        )

    assert first_column_x(pages["en"]) < 260 < first_column_x(pages["ar"])


@pytest.mark.parametrize("lang", ["ar", "ckb"])
def test_numbers_use_arabic_indic_digits_in_arabic_and_sorani(pages, lang):
    for element in numbers(pages[lang]):
        assert not re.search(r"[0-9]", element.text), element.text
        assert any(d in element.text for d in ARABIC_INDIC_DIGITS)


def test_labels_come_from_the_schemas_in_each_language(pages):
    assert "Ninewa" in pages["en"] and "نينوى" in pages["ar"]
    assert "نەینەوا" in pages["ckb"] or "نەینەوا" in pages["ckb"].replace("ي", "ی")
    assert "Registered cases (children counted once)" in pages["en"]
    assert "Dozên tomarkirî (her zarok carekê)" in pages["kmr"]
    assert "کەیسە تۆمارکراوەکان (هەر منداڵێک یەکجار)" in pages["ckb"]


def test_the_arabic_font_is_embedded_only_when_arabic_script_is_shown(pages, tables):
    assert pages["ar"].count("@font-face") == 2 and "data:font/woff;base64," in pages["ar"]
    latin_only = Coverage([("ORG-01", "Hope")], {("ORG-01", "2025"): 1})
    english = build_page(tables, latin_only, lang="en", generated=date(2026, 1, 15))
    assert "@font-face" not in english
    assert len(english.encode()) < 150_000
    assert len(pages["ar"].encode()) < 300_000


def test_the_synthetic_banner_shows_only_for_synthetic_data(pages, tables):
    assert "SYNTHETIC DATA" in pages["en"]
    real = build_page(tables, COVERAGE, lang="en", synthetic=False, generated=date(2026, 1, 15))
    assert "SYNTHETIC DATA" not in real
    assert COVERAGE.synthetic and not Coverage([("A", "Hope")], {}).synthetic


def test_coverage_counts_submissions_per_organisation_and_period(pages):
    cells = [e for e in parse(pages["en"]).elements if "data-coverage" in e.attrs]
    assert [int(c.attrs["data-coverage"]) for c in cells] == [1, 2, 0, 1]
    assert [c.text for c in cells] == ["1", "2", "—", "1"]


def test_every_text_exists_in_four_languages():
    import yaml

    messages = yaml.safe_load(
        (Path(__file__).parents[1] / "schemas/messages/report.yaml").read_text("utf-8")
    )
    for key, texts in messages.items():
        assert set(texts) == set(LANGS) and all(texts.values()), key


def test_a_report_without_some_tables_leaves_their_figures_out(tables):
    few = {k: v for k, v in tables.items() if k in {"cases_by_period_region", "justice_funnel"}}
    html = build_page(few, None, lang="en", generated=date(2026, 1, 15))
    ids = {e.attrs.get("id") for e in parse(html).elements if e.tag == "svg"}
    assert ids == {"fig-time", "fig-justice"}


def test_tables_are_read_from_publish_json(tmp_path):
    payload = {
        "table": "justice_funnel",
        "dimensions": [{"name": "justice_outcome"}, {"name": "violence_type"}],
        "rows": [
            {
                "indicator": "police_reported_cases",
                "unit": "count",
                "justice_outcome": "_T",
                "violence_type": "_T",
                "value": 12,
                "obs_status": "A",
                "conf_status": "F",
            },
            {
                "indicator": "police_reported_cases",
                "unit": "count",
                "justice_outcome": "conviction",
                "violence_type": "_T",
                "value": None,
                "obs_status": "Q",
                "conf_status": "C",
            },
        ],
    }
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "justice_funnel.json").write_text(json.dumps(payload), "utf-8")
    (tmp_path / "manifest.json").write_text("{}", "utf-8")
    table = read_publication(tmp_path)["justice_funnel"]
    assert table.get().value == 12
    assert table.get(justice_outcome="conviction").suppressed
    assert (
        table_from_rows("t", [{"indicator": "x", "sex": "F", "value": "'3"}]).get(sex="F").value
        == 3
    )


# --- the command -------------------------------------------------------------------------------


@pytest.fixture
def warehouse(tmp_path) -> Path:
    from casepool.exchange.keys import generate_keys
    from casepool.warehouse.organisations import add_organisation

    path = tmp_path / "warehouse.duckdb"
    keys = generate_keys("ORG-01", tmp_path / "keys")
    add_organisation(path, "ORG-01", "Amal Centre (synthetic)", keys.public)
    return path


def test_the_command_writes_the_report_and_its_json_matches_the_library(
    runner, warehouse, tmp_path
):
    out = tmp_path / "out" / "report.html"
    args = ["report", "-w", str(warehouse), "--publication", str(FIXTURE), "--out", str(out)]
    result = runner.invoke(app, [*args, "--lang", "ar", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    html = out.read_text("utf-8")
    assert payload["size_bytes"] == len(html.encode()) and payload["synthetic"] is True
    assert payload["period"] == "2025-Q4" and 'dir="rtl"' in html
    library = write_report(warehouse, tmp_path / "lib.html", lang="ar", publication=FIXTURE)
    assert {**library.to_dict(), "path": ""} == {**payload, "path": ""}


def test_the_command_refuses_an_unknown_period_in_one_line(runner, warehouse, tmp_path):
    args = ["report", "-w", str(warehouse), "--publication", str(FIXTURE), "--period", "2019-Q1"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert "No period 2019-Q1 in the publication" in result.output
    assert not (tmp_path / "r.html").exists()
    bad = runner.invoke(app, ["report", "-w", str(warehouse), "--period", "last year"])
    assert bad.exit_code == 2 and "is not a period" in bad.output


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.randoms(use_true_random=False), st.sampled_from(LANGS))
def test_law_whatever_is_suppressed_no_hidden_cell_shows_and_every_shown_number_is_published(
    tables, rnd, lang
):
    shuffled = {}
    for name, table in tables.items():
        cells = []
        for cell in table.cells:
            if rnd.random() < 0.3:
                cells.append(Cell(cell.codes, None, "Q", rnd.choice("CD")))
            else:  # counts get any value; percentages keep theirs
                counts = table.indicator.endswith("cases")
                value = float(rnd.randint(0, 5000)) if counts else cell.value
                cells.append(Cell(cell.codes, value, "A", "F"))
        shuffled[name] = TableView(table.name, table.indicator, table.dimensions, cells)
    html = build_page(shuffled, COVERAGE, lang=lang, generated=date(2026, 1, 15))
    for element in numbers(html):
        name, codes = split_ref(element.attrs["data-ref"])
        cell = shuffled[name].get(**codes)
        assert not cell.suppressed and float(element.attrs["data-value"]) == cell.value
    for mark in suppressed_marks(html):
        name, codes = split_ref(mark.attrs["data-suppressed"])
        assert shuffled[name].get(**codes).suppressed and not DIGITS.search(mark.text)
    for change in (e for e in parse(html).elements if "data-derived" in e.attrs):
        for ref in change.attrs["data-from"].split():
            name, codes = split_ref(ref)
            assert not shuffled[name].get(**codes).suppressed
