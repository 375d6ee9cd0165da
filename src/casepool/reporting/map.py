"""A choropleth of Iraq's 18 governorates as inline SVG, drawn from boundaries shipped with casepool.

The boundaries are Natural Earth's admin-1 polygons (public domain), simplified offline and
projected once into SVG path data: `assets/iraq_governorates.json` (its README says how). Each
path carries its governorate's P-code. Nothing is fetched at run time and the SVG has no script.
East stays right in every language: a map is never mirrored; only the legend follows the reading
direction.

Shading: five equal classes from 0 to the largest shown value. A suppressed governorate (or one
with no value, e.g. no population) is hatched on white, never shaded as if it were small. An
uncertain value (a differentially private answer whose margin of error is more than 20 % of it) is
shaded by its value and hatched over.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from html import escape
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from casepool.publishing.query import QueryResult

SHADES = ("#f2e6f5", "#d9b8e0", "#b981c6", "#9950aa", "#6a1b7f")  # light to dark (accent hue)
MUTED = "#595959"
INK = "#1a1a1a"
UNCERTAIN_SHARE = 0.2  # a margin of error above this share of the value makes the value uncertain
ASSET = "iraq_governorates.json"


@dataclass(frozen=True)
class Area:
    """One governorate on the map: its name, its value (None when hidden) and the text shown."""

    code: str
    name: str
    value: float | None
    text: str
    hidden: bool = False  # suppressed or without a value: hatched
    ref: str = ""  # the published cell (table|dimension=code) when it is suppressed
    uncertain: bool = False  # shown, but its margin of error is more than 20 % of it


@dataclass(frozen=True)
class Shape:
    """One governorate's outline as SVG path data, and where its label goes."""

    code: str
    d: str
    label: tuple[float, float]


@dataclass(frozen=True)
class Boundaries:
    width: float
    height: float
    shapes: tuple[Shape, ...]
    source: str
    licence: str


@cache
def boundaries() -> Boundaries:
    """The shipped governorate outlines, keyed by P-code (IQG01 … IQG18)."""
    text = (resources.files("casepool.reporting") / "assets" / ASSET).read_text("utf-8")
    raw: dict[str, Any] = json.loads(text)
    _, _, width, height = raw["viewBox"]
    shapes = tuple(
        Shape(code, item["d"], (float(item["label"][0]), float(item["label"][1])))
        for code, item in raw["governorates"].items()
    )
    return Boundaries(float(width), float(height), shapes, raw["source"], raw["licence"])


def governorate_codes() -> set[str]:
    """The P-codes the map draws."""
    return {shape.code for shape in boundaries().shapes}


def is_uncertain(value: float | None, margin: float | None) -> bool:
    """True when a shown value's margin of error is more than 20 % of it (or it is 0 ± something)."""
    if value is None or margin is None or math.isnan(margin):
        return False
    if value <= 0:
        return margin > 0
    return margin > UNCERTAIN_SHARE * value


def _wrap(text: str, limit: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > limit:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        lines.append(line)
    return lines or [""]


def classes(values: list[float], count: int = len(SHADES)) -> list[float]:
    """Upper bounds of `count` equal classes from 0 to the largest value."""
    top = max(values, default=0.0) or 1.0
    return [top * (i + 1) / count for i in range(count)]


def shade_of(value: float, bounds: list[float]) -> int:
    for index, bound in enumerate(bounds):
        if value <= bound + 1e-9:
            return index
    return len(bounds) - 1


def _patterns(map_id: str) -> str:
    """Two hatchings: on white for a hidden governorate, over the shade for an uncertain one."""
    return (
        f'<defs><pattern id="{map_id}-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff"/>'
        f'<line x1="0" y1="0" x2="0" y2="6" stroke="{MUTED}" stroke-width="2"/></pattern>'
        f'<pattern id="{map_id}-unsure" width="7" height="7" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(-45)"><line x1="0" y1="0" x2="0" y2="7" stroke="#ffffff" '
        f'stroke-width="2.2"/></pattern></defs>'
    )


def _legend(
    top: float,
    width: float,
    bounds: list[float],
    *,
    rtl: bool,
    legend_format: Callable[[float], str],
    extra: Sequence[tuple[str, str, str]],
) -> tuple[list[str], float]:
    """The five classes on one row, then the hatchings on the next; in reading order."""
    parts: list[str] = []
    swatch = 22.0
    rows: list[list[tuple[str, str, str]]] = [
        [
            (
                SHADES[i],
                "",
                f"{legend_format(0.0 if i == 0 else bounds[i - 1])}–{legend_format(b)}",
            )
            for i, b in enumerate(bounds)
        ],
        list(extra),
    ]
    y = top
    for row in rows:
        if not row:
            continue
        step = (width - 8) / max(len(SHADES), len(row))
        for index, (fill, overlay, text) in enumerate(row):
            if rtl:  # the first item at the right, its text to the left of its swatch
                sx = width - index * step - swatch - 4
                tx = sx - 4
            else:
                sx = index * step + 4
                tx = sx + swatch + 4
            parts.append(
                f'<rect x="{sx:.1f}" y="{y:.1f}" width="{swatch}" height="14" fill="{fill}" '
                f'stroke="{MUTED}"/>'
            )
            if overlay:
                parts.append(
                    f'<rect x="{sx:.1f}" y="{y:.1f}" width="{swatch}" height="14" '
                    f'fill="{overlay}"/>'
                )
            parts.append(
                f'<text x="{tx:.1f}" y="{y + 12:.1f}" font-size="11" fill="{INK}">'
                f"{escape(text)}</text>"
            )
        y += 22
    return parts, y


def choropleth(
    map_id: str,
    title: str,
    areas: Mapping[str, Area],
    *,
    rtl: bool,
    legend_format: Callable[[float], str],
    hidden_text: str,
    uncertain_text: str,
    source_text: str,
) -> str:
    """The map as one <svg class="map">: a path per governorate (data-governorate=P-code), its name
    and value, a legend of the classes and of the hatchings, and the boundaries' source."""
    shapes = boundaries()
    width, map_height = shapes.width, shapes.height
    shown = [a.value for a in areas.values() if a.value is not None and not a.hidden]
    bounds = classes(shown)
    hatch, unsure = f"url(#{map_id}-hatch)", f"url(#{map_id}-unsure)"
    paths: list[str] = []
    labels: list[str] = []
    any_uncertain = False
    for shape in shapes.shapes:
        area = areas.get(shape.code) or Area(shape.code, shape.code, None, "", True)
        hidden = area.hidden or area.value is None
        overlay = ""
        if hidden:
            mark = f'data-suppressed="{escape(area.ref)}"' if area.ref else 'data-missing="1"'
            fill, state = hatch, f" {mark}"
        else:
            assert area.value is not None
            shade = shade_of(area.value, bounds)
            fill, state = SHADES[shade], f' data-class="{shade}"'
            if area.uncertain:
                any_uncertain = True
                state += ' data-uncertain="1"'
                overlay = f'<path d="{shape.d}" fill="{unsure}" stroke="none" class="unsure"/>'
        value_text = area.text if area.text and not hidden else hidden_text
        label = f"{area.name}: {value_text}"
        paths.append(
            f'<g class="area" data-governorate="{escape(shape.code)}"{state}>'
            f"<title>{escape(label)}</title>"
            f'<path d="{shape.d}" fill="{fill}" stroke="#ffffff" stroke-width="1.2" '
            f'stroke-linejoin="round" data-governorate="{escape(shape.code)}"/>{overlay}</g>'
        )
        x, y = shape.label
        halo = 'paint-order="stroke" stroke="#ffffff" stroke-width="3" stroke-linejoin="round"'
        # A hidden governorate shows its name only: the hatching (and the legend) say the rest.
        labels.append(
            f'<text x="{x:.0f}" y="{y + (4 if hidden else -3):.0f}" text-anchor="middle" '
            f'font-size="10" fill="{INK}" {halo} class="map-name">{escape(area.name)}</text>'
        )
        if not hidden:
            labels.append(
                f'<text x="{x:.0f}" y="{y + 9:.0f}" text-anchor="middle" font-size="11" '
                f'font-weight="700" fill="{INK}" {halo} class="map-value">'
                f"{escape(value_text)}</text>"
            )
    extra = [("#ffffff", hatch, hidden_text)]
    if any_uncertain:
        extra.append((SHADES[2], unsure, uncertain_text))
    legend, bottom = _legend(
        map_height + 12,
        width,
        bounds,
        rtl=rtl,
        legend_format=legend_format,
        extra=extra,
    )
    # With direction=rtl, text-anchor start is the right edge.
    note_x = width - 4 if rtl else 4
    notes = [
        f'<text x="{note_x:.1f}" y="{bottom + 10 + i * 13:.1f}" font-size="10" fill="{MUTED}" '
        f'class="map-source">{escape(line)}</text>'
        for i, line in enumerate(_wrap(source_text, 100))
    ]
    height = bottom + 10 + 13 * len(notes)
    return (
        f'<svg class="map" id="{escape(map_id)}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'direction="{"rtl" if rtl else "ltr"}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{_patterns(map_id)}"
        f'<g class="areas">{"".join(paths)}</g><g class="labels">{"".join(labels)}</g>'
        f"{''.join(legend)}{''.join(notes)}</svg>"
    )


def result_map(result: QueryResult, lang: str) -> str:
    """The map of a query's answer when it is broken down by governorate ('' otherwise): one value
    per governorate, every other dimension at its total (or at its only category)."""
    from casepool.catalogue.indicators import TOTAL, load_indicators
    from casepool.core.i18n import render
    from casepool.core.schema import RTL_LANGUAGES
    from casepool.publishing.dp_answers import MARGIN
    from casepool.reporting.numerals import format_number, localise_digits

    table = result.table
    if "governorate" not in table.dimensions:
        return ""
    frame = table.frame
    fixed = [
        d for d in table.dimensions if d != "governorate" and frame.get_column(d).n_unique() > 1
    ]
    names = load_indicators().dimension("governorate")
    decimals = 0 if table.indicator.unit == "count" else 1
    areas: dict[str, Area] = {}
    for row in frame.iter_rows(named=True):
        code = row["governorate"]
        if code == TOTAL or any(row[d] != TOTAL for d in fixed):
            continue
        value = row.get("value")
        hidden = value is None or row.get("conf_status") in {"C", "D"}
        number = None if value is None or hidden else float(value)
        areas[code] = Area(
            code,
            names.code_label(code, lang),
            number,
            "" if number is None else format_number(number, lang, decimals),
            hidden,
            f"{table.indicator.name}|governorate={code}" if hidden else "",
            uncertain=is_uncertain(number, row.get(MARGIN)),
        )
    for code in sorted(governorate_codes() - areas.keys()):
        areas[code] = Area(code, names.code_label(code, lang), None, "", True)
    return choropleth(
        "result-map",
        table.indicator.label(lang),
        areas,
        rtl=lang in RTL_LANGUAGES,
        legend_format=lambda v: format_number(v, lang, decimals),
        hidden_text=render("report-map-hidden", lang),
        uncertain_text=localise_digits(render("map-uncertain", lang), lang),
        source_text=render("map-source", lang),
    )
