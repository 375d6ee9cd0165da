"""The table builder in a real browser (Debian's headless Chromium driven by Playwright), in English
and Arabic: sign in, build a table, download it, see the page laid out right to left.

Chromium comes from Debian (tests/browser/setup.sh); Playwright never downloads a browser here.
Without chromium or playwright these tests skip and say why. `CASEPOOL_SCREENSHOTS=docs/images`
also writes the screenshots the analyst's guide shows.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from browser import chromium
from casepool.serving.app import create_app
from fixtures.serve.builders import PASSWORD, build_world

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(
    chromium.binary() is None,
    reason="chromium is not installed: run tests/browser/setup.sh (CI does)",
)
SHOTS = os.environ.get("CASEPOOL_SCREENSHOTS")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    import uvicorn

    world = build_world(tmp_path_factory.mktemp("browser"))
    port = _free_port()
    config = uvicorn.Config(
        create_app(world.warehouse), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    yield world, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(
            executable_path=chromium.binary(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield instance
        instance.close()


def _shot(page, name: str, *, full_page: bool = True) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name), full_page=full_page)


@pytest.mark.parametrize(("lang", "user"), [("en", "amira"), ("ar", "sam")])
def test_sign_in_build_a_table_and_download_it(live, browser, tmp_path, lang, user):
    world, base = live
    context = browser.new_context(
        accept_downloads=True, locale=lang, viewport={"width": 1100, "height": 900}
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("requestfailed", lambda r: problems.append(r.url))
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(base) else None)

    page.goto(f"{base}/signin?lang={lang}")
    _shot(page, f"serve-signin-{lang}.png")
    first = page.locator("#first")
    first.locator("input[name=name]").fill(user)
    first.locator("input[name=token]").fill(world.tokens[user])
    first.locator("input[name=new_password]").fill(PASSWORD)
    first.locator("button[type=submit]").click()
    page.wait_for_url(f"{base}/table")

    direction = page.evaluate("getComputedStyle(document.body).direction")
    assert direction == ("rtl" if lang == "ar" else "ltr")
    assert page.locator("html").get_attribute("lang") == lang

    page.select_option("#by-0", "region")
    page.select_option("#by-1", "sex")
    page.select_option("#period", "2025")
    page.click("#build-button")
    table = page.locator("#result-table")
    table.wait_for()
    # every region (KRI, federal, not stated, total) × every sex (F, M, U, total)
    assert table.locator("tbody tr").count() == 16
    total_label = "Total" if lang == "en" else "المجموع"
    assert total_label in table.inner_text()
    assert page.locator("svg.chart rect").count() >= 2
    if lang == "ar":
        # Right to left: the table's first column sits at the right.
        box = table.bounding_box()
        first_cell = table.locator("thead th").first.bounding_box()
        assert (
            box
            and first_cell
            and first_cell["x"] + first_cell["width"] > box["x"] + box["width"] - 5
        )
    _shot(page, f"serve-table-{lang}.png")

    with page.expect_download() as caught:
        page.click("#download-csv")
    saved = tmp_path / "table.csv"
    caught.value.save_as(saved)
    text = saved.read_text(encoding="utf-8-sig")
    # a differentially private answer: every figure with its margin of error
    assert text.startswith("indicator,region,sex,value,margin,obs_status,conf_status")
    with page.expect_download() as caught:
        page.click("#download-xlsx")
    workbook = tmp_path / "table.xlsx"
    caught.value.save_as(workbook)
    assert workbook.read_bytes()[:2] == b"PK"

    page.goto(f"{base}/catalogue")
    assert page.locator("article.indicator").count() >= 10
    if lang == "en":
        _shot(page, "serve-catalogue-en.png", full_page=False)
    else:
        page.goto(f"{base}/steward/submissions")
        _shot(page, "serve-steward-ar.png")
    assert problems == [], problems
    assert outside == [], outside
    context.close()
