"""A schematic map of Iraq's 18 governorates (a tile grid) as inline SVG, shaded by a published value.

No licensed boundary file could be brought into the project offline, so the map does not draw
borders: each governorate is one equal tile placed where it lies relative to its neighbours
(Duhok top, Basrah bottom right, Al-Anbar west). The map says so on its face. Tile size shows
neither area nor population. East stays right in every language: a map is never mirrored.

Shading: five equal classes from 0 to the largest shown value. A suppressed cell (or one with no
value, e.g. no population) is hatched, never shaded as if it were small.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html import escape

# Governorate P-code -> (column, row) of its tile: west to east, north to south.
TILES: dict[str, tuple[int, int]] = {
    "IQG09": (2, 0),  # Duhok
    "IQG15": (1, 1),  # Ninewa
    "IQG11": (2, 1),  # Erbil
    "IQG06": (3, 1),  # Al-Sulaymaniyah
    "IQG16": (1, 2),  # Salah Al-Din
    "IQG13": (2, 2),  # Kirkuk
    "IQG10": (3, 2),  # Diyala
    "IQG01": (0, 3),  # Al-Anbar
    "IQG08": (2, 3),  # Baghdad
    "IQG18": (3, 3),  # Wassit
    "IQG12": (1, 4),  # Kerbala
    "IQG07": (2, 4),  # Babil
    "IQG14": (4, 4),  # Maysan
    "IQG04": (1, 5),  # Al-Najaf
    "IQG05": (2, 5),  # Al-Qadissiya
    "IQG17": (3, 5),  # Thi Qar
    "IQG02": (4, 5),  # Al-Basrah
    "IQG03": (2, 6),  # Al-Muthanna
}
SHADES = ("#f2e6f5", "#d9b8e0", "#b981c6", "#9950aa", "#6a1b7f")  # light to dark (accent hue)
TEXT_ON = ("#1a1a1a", "#1a1a1a", "#1a1a1a", "#ffffff", "#ffffff")
MUTED = "#595959"
TILE_W, TILE_H, GAP = 104.0, 66.0, 6.0


@dataclass(frozen=True)
class Area:
    """One governorate on the map: its name, its value (None when hidden) and the text shown."""

    code: str
    name: str
    value: float | None
    text: str
    hidden: bool = False  # suppressed or without a value: hatched
    ref: str = ""  # the published cell (table|dimension=code) when it is suppressed


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
    return lines[:2] or [""]


def classes(values: list[float], count: int = len(SHADES)) -> list[float]:
    """Upper bounds of `count` equal classes from 0 to the largest value."""
    top = max(values, default=0.0) or 1.0
    return [top * (i + 1) / count for i in range(count)]


def shade_of(value: float, bounds: list[float]) -> int:
    for index, bound in enumerate(bounds):
        if value <= bound + 1e-9:
            return index
    return len(bounds) - 1


def choropleth(
    map_id: str,
    title: str,
    areas: Mapping[str, Area],
    *,
    rtl: bool,
    legend_format: Callable[[float], str],
    hidden_text: str,
    schematic_text: str,
) -> str:
    """The tile map as one <svg class="map">: a tile per governorate, a legend of the classes and
    of the hatching, and the note that the map is schematic."""
    columns = max(c for c, _ in TILES.values()) + 1
    rows = max(r for _, r in TILES.values()) + 1
    width = columns * (TILE_W + GAP)
    legend_top = rows * (TILE_H + GAP) + 10
    height = legend_top + 64
    shown = [a.value for a in areas.values() if a.value is not None and not a.hidden]
    bounds = classes(shown)
    hatch = f"{map_id}-hatch"
    parts = [
        f'<defs><pattern id="{hatch}" width="6" height="6" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff"/>'
        f'<line x1="0" y1="0" x2="0" y2="6" stroke="{MUTED}" stroke-width="2"/></pattern></defs>'
    ]
    anchor = "middle"
    for code, (column, row) in TILES.items():
        area = areas.get(code) or Area(code, code, None, "", True)
        x, y = column * (TILE_W + GAP), row * (TILE_H + GAP)
        if area.hidden or area.value is None:
            mark = f'data-suppressed="{escape(area.ref)}"' if area.ref else 'data-missing="1"'
            fill, ink, state = f"url(#{hatch})", "#1a1a1a", f" {mark}"
        else:
            shade = shade_of(area.value, bounds)
            fill, ink, state = SHADES[shade], TEXT_ON[shade], f' data-class="{shade}"'
        label = f"{area.name}: {area.text}" if area.text else area.name
        parts.append(
            f'<g class="area" data-governorate="{escape(code)}"{state}>'
            f"<title>{escape(label)}</title>"
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{TILE_W:.1f}" height="{TILE_H:.1f}" rx="6" '
            f'fill="{fill}" stroke="{MUTED}" stroke-width="1"/>'
        )
        if area.hidden or area.value is None:  # a plate keeps the name readable on the hatching
            parts.append(
                f'<rect x="{x + 7:.1f}" y="{y + 5:.1f}" width="{TILE_W - 14:.1f}" '
                f'height="{TILE_H - 10:.1f}" rx="4" fill="#ffffff" fill-opacity="0.88"/>'
            )
        lines = _wrap(area.name, 16)
        for i, line in enumerate(lines):
            parts.append(
                f'<text x="{x + TILE_W / 2:.1f}" y="{y + 17 + i * 13:.1f}" text-anchor="{anchor}" '
                f'font-size="11" fill="{ink}">{escape(line)}</text>'
            )
        value_text = area.text if area.text else hidden_text
        weight = "700" if not area.hidden else "400"
        parts.append(
            f'<text x="{x + TILE_W / 2:.1f}" y="{y + TILE_H - 10:.1f}" text-anchor="{anchor}" '
            f'font-size="13" font-weight="{weight}" fill="{ink}" class="map-value">'
            f"{escape(value_text)}</text></g>"
        )
    # The legend: five classes, then the hatching; laid out in reading order.
    swatch, step = 22.0, (width - 8) / (len(SHADES) + 1)
    for index, bound in enumerate([*bounds, None]):
        if rtl:  # the first class at the right, its text to the left of its swatch
            sx = width - index * step - swatch - 4
            tx = sx - 4
        else:
            sx = index * step + 4
            tx = sx + swatch + 4
        fill = SHADES[index] if bound is not None else f"url(#{hatch})"
        lower = 0.0 if index == 0 else bounds[index - 1]
        text = (
            f"{legend_format(lower)}–{legend_format(bound)}" if bound is not None else hidden_text
        )
        parts.append(
            f'<rect x="{sx:.1f}" y="{legend_top:.1f}" width="{swatch}" height="14" fill="{fill}" '
            f'stroke="{MUTED}"/><text x="{tx:.1f}" y="{legend_top + 12:.1f}" '
            f'font-size="11" fill="#1a1a1a">{escape(text)}</text>'
        )
    # With direction=rtl, text-anchor start is the right edge.
    note_x = width - 4 if rtl else 4
    for i, line in enumerate(
        _wrap(schematic_text, 90) if len(schematic_text) > 90 else [schematic_text]
    ):
        parts.append(
            f'<text x="{note_x:.1f}" y="{legend_top + 36 + i * 14:.1f}" font-size="11" '
            f'fill="{MUTED}">{escape(line)}</text>'
        )
    return (
        f'<svg class="map" id="{escape(map_id)}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'direction="{"rtl" if rtl else "ltr"}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{''.join(parts)}</svg>"
    )
