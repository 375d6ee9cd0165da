"""Labels of indicators, dimensions and codes in four languages, from the schemas as data."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from casepool.catalogue.indicators import load_indicators
from casepool.core.i18n import render
from casepool.core.schema import load_codelists
from casepool.core.vocabulary import TOTAL
from casepool.reporting.numerals import localise_digits


@dataclass(frozen=True)
class Labels:
    """Looks up what a reader sees for a code, a dimension or an indicator, in one language."""

    lang: str

    def text(self, key: str, **params: Any) -> str:
        """A report text from schemas/messages/report.yaml."""
        return render(key, self.lang, **params)

    def indicator(self, name: str) -> str:
        labels = _indicator_labels().get(name)
        return (labels.get(self.lang) or labels["en"]) if labels else name

    def dimension(self, name: str) -> str:
        labels = _dimension_labels().get(name)
        return (labels.get(self.lang) or labels["en"]) if labels else name

    def code(self, dimension: str, code: str) -> str:
        """The label of `code` in `dimension`; totals and periods are spelled by the report."""
        if code == TOTAL:
            return self.text("report-total")
        if dimension == "period":
            return self.period(code)
        labels = _code_labels(dimension).get(code)
        if labels:
            # Labels with numbers (age bands: 0–4 years) take the language's digits.
            return localise_digits(labels.get(self.lang) or labels["en"], self.lang)
        return localise_digits(code, self.lang)

    def period(self, code: str) -> str:
        """2025 -> 2025 (in the language's digits); 2025-Q3 -> "Q3 2025" in the language."""
        year, _, quarter = code.partition("-Q")
        text = self.text("report-quarter", quarter=quarter, year=year) if quarter else code
        return localise_digits(text, self.lang)


@cache
def _indicator_labels() -> dict[str, dict[str, str]]:
    return {name: dict(i.labels) for name, i in load_indicators().indicators.items()}


@cache
def _dimension_labels() -> dict[str, dict[str, str]]:
    return {name: dict(d.labels) for name, d in load_indicators().dimensions.items()}


@cache
def _code_labels(dimension: str) -> dict[str, dict[str, str]]:
    found = load_indicators().dimensions.get(dimension)
    if found is not None and found.codes:
        return {c.code: dict(c.labels) for c in found.codes}
    codelist = load_codelists().get(dimension)
    if codelist is None:
        return {}
    return {c.code: c.labels for c in codelist.codes}
