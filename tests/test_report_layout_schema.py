"""The report's figures are data (schemas/report.yaml): every figure is drawable and every table exists."""

from __future__ import annotations

from casepool.catalogue.publication import load_publication
from casepool.reporting.page import _FIGURES, report_layout


def test_every_figure_of_the_report_has_a_drawing_and_its_table_is_published():
    published = {r.table_name for r in load_publication()}
    figures = [f for section in report_layout() for f in section["figures"]]
    assert figures and all(f["kind"] in _FIGURES for f in figures)
    tables = [f["table"] for f in figures if f["kind"] == "by_sex"]
    assert tables and set(tables) <= published
    assert len({f.get("id") for f in figures if "id" in f}) == len(
        [f for f in figures if "id" in f]
    )
