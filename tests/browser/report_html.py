"""Reads a report back for tests: every element that shows a number or marks a suppressed cell."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

VOID = frozenset({"meta", "br", "img", "input", "link", "hr", "col", "source", "wbr"})
DIGITS = re.compile(r"[0-9\u0660-\u0669\u06f0-\u06f9]")


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str], list[str]]] = []
        self.elements: list[Element] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID:
            self.handle_startendtag(tag, attrs)
            return
        self.stack.append((tag, {k: v or "" for k, v in attrs}, []))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, {k: v or "" for k, v in attrs}, ""))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            name, attrs, parts = self.stack.pop()
            text = "".join(parts)
            if self.stack:
                self.stack[-1][2].append(text)
            self.elements.append(Element(name, attrs, text))
            if name == tag:
                return

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1][0] in {"style", "script"}:
            return
        self.texts.append(data)
        if self.stack:
            self.stack[-1][2].append(data)


def parse(html: str) -> _Collector:
    collector = _Collector()
    collector.feed(html)
    collector.close()
    return collector


def numbers(html: str) -> list[Element]:
    """Elements that show a published number (data-value and data-ref)."""
    return [e for e in parse(html).elements if "data-value" in e.attrs and "data-ref" in e.attrs]


def suppressed_marks(html: str) -> list[Element]:
    return [e for e in parse(html).elements if "data-suppressed" in e.attrs]


def split_ref(ref: str) -> tuple[str, dict[str, str]]:
    """ "cases_by_sex_age|sex=F;age_band=_T" -> ("cases_by_sex_age", {"sex": "F", ...})."""
    table, _, codes = ref.partition("|")
    return table, dict(part.split("=", 1) for part in codes.split(";") if part)
