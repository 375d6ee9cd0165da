"""Pages from templates in four languages (right to left for Arabic and Sorani), and a query's
table turned into labelled rows and a bar chart drawn as inline SVG (no script anywhere)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from casepool.catalogue.indicators import TOTAL, load_indicators
from casepool.catalogue.tabulating import VALUE
from casepool.core.i18n import render
from casepool.publishing.query import QueryResult

HERE = Path(__file__).parent
RTL = {"ar", "ckb"}
LANGUAGE_NAMES = {"en": "English", "ar": "العربية", "ckb": "کوردی (سۆرانی)", "kmr": "Kurmancî"}
MARGIN_COLUMNS = ("margin", "margin_of_error", "moe")


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(template: str, lang: str, **values: Any) -> str:
    def t(key: str, **params: Any) -> str:
        return render(f"serve-{key}", lang, **params)

    values.pop("status", None)
    values.setdefault("error", None)
    return (
        environment()
        .get_template(template)
        .render(
            lang=lang,
            dir="rtl" if lang in RTL else "ltr",
            t=t,
            say=lambda key: render(key, lang),
            languages=LANGUAGE_NAMES,
            **values,
        )
    )


def _number(value: Any, unit: str) -> str:
    if value is None:
        return "x"
    return f"{int(value):,}" if unit == "count" else f"{float(value):.1f}"


def result_view(result: QueryResult, lang: str) -> dict[str, Any]:
    """The table as header and rows of labels (totals labelled and marked), and chart bars."""
    catalogue = load_indicators()
    table = result.table
    dims = list(table.dimensions)
    unit = table.indicator.unit
    margin = next((c for c in MARGIN_COLUMNS if c in table.frame.columns), None)
    header = [catalogue.dimension(d).label(lang) for d in dims]
    rows = []
    for row in table.frame.iter_rows(named=True):
        rows.append(
            {
                "labels": [catalogue.dimension(d).code_label(row[d], lang) for d in dims],
                "total": any(row[d] == TOTAL for d in dims),
                "value": _number(row[VALUE], unit),
                "margin": None if margin is None or row[margin] is None else f"±{row[margin]:,.1f}",
                "flag": "" if row["conf_status"] == "F" else row["conf_status"],
            }
        )
    bars = []
    if dims:
        first = dims[0]
        others = dims[1:]
        shown = [
            r
            for r in table.frame.iter_rows(named=True)
            if r[first] != TOTAL and all(r[d] == TOTAL for d in others)
        ]
        top = max((float(r[VALUE]) for r in shown if r[VALUE] is not None), default=0.0) or 1.0
        for i, r in enumerate(shown[:40]):
            value = r[VALUE]
            bars.append(
                {
                    "label": catalogue.dimension(first).code_label(r[first], lang),
                    "width": 0 if value is None else round(300 * float(value) / top, 1),
                    "text": _number(value, unit),
                    "y": 22 * i,
                }
            )
    return {
        "title": table.indicator.label(lang),
        "unit": unit,
        "header": header,
        "margin": margin is not None,
        "rows": rows,
        "bars": bars,
        "chart_height": 22 * len(bars) + 4,
        "cells": table.cells,
        "suppressed": table.suppressed,
        "notes": result.notes(lang),
    }
