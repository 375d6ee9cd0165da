"""Labels of indicators, dimensions and codes in four languages, from the schemas as data."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from casepool.core.i18n import render
from casepool.core.schema import load_codelists, read_yaml
from casepool.reporting.numerals import localise_digits

TOTAL = "_T"


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
        labels = _dimensions().get(name, {}).get("labels")
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
def _indicators_yaml() -> dict[str, Any]:
    return read_yaml("indicators.yaml") or {}


@cache
def _indicator_labels() -> dict[str, dict[str, str]]:
    return {
        str(i["name"]): dict(i.get("labels") or {})
        for i in _indicators_yaml().get("indicators") or ()
    }


@cache
def _dimensions() -> dict[str, dict[str, Any]]:
    return {str(k): dict(v) for k, v in (_indicators_yaml().get("dimensions") or {}).items()}


@cache
def _code_labels(dimension: str) -> dict[str, dict[str, str]]:
    spec = _dimensions().get(dimension, {})
    if spec.get("codes"):
        return {str(c["code"]): dict(c["labels"]) for c in spec["codes"]}
    codelist = load_codelists().get(str(spec.get("codelist") or dimension))
    if codelist is None:
        return {}
    return {c.code: c.labels for c in codelist.codes}
