"""Inline SVG charts drawn in Python: horizontal bars (grouped by series) and columns over time.

Charts are laid out left to right and mirrored for right-to-left languages, so bars grow from
the right, labels sit on the right and time runs from right to left. Every number drawn carries
`data-value` and `data-ref` (its table and codes) so tests can check it against the publication.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#7b3294", "#1b7837", "#8c6d31", "#2166ac", "#b2182b")
TEXT = "#1a1a1a"
MUTED = "#595959"
GRID = "#d9d9d9"


@dataclass(frozen=True)
class Bar:
    """One drawn number: its value (None when suppressed), its printed text and its reference."""

    value: float | None
    text: str
    ref: str
    raw: str = ""  # the value as in the table, for data-value
    status: str = "F"  # conf_status: F free, C primary, D secondary suppression

    @property
    def suppressed(self) -> bool:
        return self.value is None and bool(self.ref)

    @property
    def missing(self) -> bool:
        """Not in the table at all (nothing to draw), unlike a suppressed cell."""
        return not self.ref


@dataclass
class Group:
    """A category on the chart and one bar per series."""

    label: str
    bars: list[Bar]
    sublabel: str = ""


@dataclass
class Chart:
    """What a chart shows; `series` names the bars of each group (empty for a single series)."""

    chart_id: str
    title: str
    groups: list[Group]
    series: list[str] = field(default_factory=list)
    rtl: bool = False
    suppressed_text: str = "suppressed"
    tick_format: object = None  # callable(float) -> str in the reader's digits


def _attr(text: str) -> str:
    return escape(text, quote=True)


def nice_ticks(maximum: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least `maximum` (1, 2 or 5 times a power of ten apart)."""
    if maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    top = math.ceil(maximum / step) * step
    return [i * step for i in range(round(top / step) + 1)]


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


LABEL_CHARS, LABEL_LINES, LINE_HEIGHT = 24, 3, 15.0


def wrap_label(text: str, limit: int = LABEL_CHARS, lines: int = LABEL_LINES) -> list[str]:
    """A category label on up to `lines` lines of about `limit` characters, broken between
    words; only a label longer than all of them is shortened (its full text is the tooltip)."""
    out: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > limit:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        out.append(line)
    if len(out) > lines:
        out = [*out[: lines - 1], _shorten(" ".join(out[lines - 1 :]), limit)]
    return [_shorten(item, limit + 6) for item in out] or [""]


class _Canvas:
    """SVG elements in left-to-right coordinates, mirrored on output when the page is RTL."""

    def __init__(self, width: float, rtl: bool) -> None:
        self.width = width
        self.rtl = rtl
        self.parts: list[str] = []

    def x(self, x: float) -> float:
        return self.width - x if self.rtl else x

    def rect(
        self, x: float, y: float, w: float, h: float, fill: str, extra: str = "", title: str = ""
    ) -> None:
        left = self.width - x - w if self.rtl else x
        attrs = f'x="{left:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{h:.1f}" fill="{fill}"'
        if title:
            self.parts.append(f"<rect {attrs}{extra}><title>{escape(title)}</title></rect>")
        else:
            self.parts.append(f"<rect {attrs}{extra}/>")

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str) -> None:
        self.parts.append(
            f'<line x1="{self.x(x1):.1f}" y1="{y1:.1f}" x2="{self.x(x2):.1f}" y2="{y2:.1f}" '
            f'stroke="{stroke}" stroke-width="1"/>'
        )

    def text(
        self,
        x: float,
        y: float,
        content: str,
        *,
        anchor: str = "start",
        size: float = 12,
        fill: str = TEXT,
        extra: str = "",
        title: str = "",
    ) -> None:
        # With direction=rtl on the <svg>, "start" means the right edge: mirroring x is enough.
        inner = escape(content)
        if title and title != content:
            inner = f"<title>{escape(title)}</title>{inner}"
        self.parts.append(
            f'<text x="{self.x(x):.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
            f'fill="{fill}"{extra}>{inner}</text>'
        )


def _text_lines(
    canvas: _Canvas, x: float, y: float, lines: list[str], *, size: float, title: str
) -> None:
    """Lines of text anchored at their end (the bars' side), the first baseline at `y`."""
    spans = "".join(
        f'<tspan x="{canvas.x(x):.1f}" dy="{0 if i == 0 else LINE_HEIGHT:.0f}">{escape(line)}</tspan>'
        for i, line in enumerate(lines)
    )
    inner = f"<title>{escape(title)}</title>{spans}" if title else spans
    canvas.parts.append(
        f'<text x="{canvas.x(x):.1f}" y="{y:.1f}" text-anchor="end" font-size="{size}" '
        f'fill="{TEXT}" class="label">{inner}</text>'
    )


def _svg(chart: Chart, canvas: _Canvas, height: float) -> str:
    direction = "rtl" if chart.rtl else "ltr"
    hatch = f"{chart.chart_id}-hatch"
    defs = (
        f'<defs><pattern id="{hatch}" width="6" height="6" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff"/>'
        f'<line x1="0" y1="0" x2="0" y2="6" stroke="{MUTED}" stroke-width="2"/></pattern></defs>'
    )
    body = "".join(canvas.parts).replace("url(#hatch)", f"url(#{hatch})")
    return (
        f'<svg class="chart" id="{_attr(chart.chart_id)}" '
        f'viewBox="0 0 {canvas.width:.0f} {height:.0f}" direction="{direction}" role="img" '
        f'aria-label="{_attr(chart.title)}"><title>{escape(chart.title)}</title>{defs}{body}</svg>'
    )


def _value_attrs(bar: Bar) -> str:
    return f' class="num" data-value="{_attr(bar.raw)}" data-ref="{_attr(bar.ref)}"'


def _suppressed_attrs(bar: Bar) -> str:
    return f' class="suppressed-mark" data-suppressed="{_attr(bar.ref)}"'


def _legend(canvas: _Canvas, chart: Chart, y: float) -> float:
    if len(chart.series) < 2:
        return y
    x = 0.0
    for index, name in enumerate(chart.series):
        canvas.rect(x, y - 10, 12, 12, PALETTE[index % len(PALETTE)])
        canvas.text(x + 16, y, name, size=12)
        x += 24 + 7.5 * len(name)
    return y + 14


def bar_chart(chart: Chart, width: float = 520) -> str:
    """Horizontal bars, one group per category and one bar per series, with values at the ends."""
    canvas = _Canvas(width, chart.rtl)
    label_width = 185.0
    left = label_width + 8
    right = width - 58
    series_count = max((len(g.bars) for g in chart.groups), default=1)
    bar_height = 18.0 if series_count == 1 else 13.0
    group_gap = 8.0 if series_count == 1 else 12.0
    values = [b.value for g in chart.groups for b in g.bars if b.value is not None]
    ticks = nice_ticks(max(values, default=0.0))
    scale = (right - left) / ticks[-1]

    y = _legend(canvas, chart, 16.0) + 8
    top = y
    labels = [wrap_label(g.label) for g in chart.groups]
    group_heights = [
        max(series_count * (bar_height + 2), len(lines) * LINE_HEIGHT) + group_gap
        for lines in labels
    ]
    bottom = top + sum(group_heights)
    for tick in ticks:
        canvas.line(left + tick * scale, top - 4, left + tick * scale, bottom, GRID)
        label = chart.tick_format(tick) if callable(chart.tick_format) else f"{tick:g}"
        canvas.text(
            left + tick * scale,
            bottom + 14,
            label,
            anchor="middle",
            size=10,
            fill=MUTED,
            extra=' class="tick"',
        )
    for group, height, lines in zip(chart.groups, group_heights, labels, strict=True):
        block = height - group_gap
        _text_lines(
            canvas,
            label_width,
            y + block / 2 + 4 - (len(lines) - 1) * LINE_HEIGHT / 2,
            lines,
            size=13,
            title=group.label if len(lines) > 1 or lines[0] != group.label else "",
        )
        for index, bar in enumerate(group.bars):
            by = y + index * (bar_height + 2)
            if bar.missing:
                continue
            if bar.suppressed:
                canvas.rect(left, by, 14, bar_height, "url(#hatch)", f' stroke="{MUTED}"')
                canvas.text(
                    left + 18,
                    by + bar_height - 3,
                    chart.suppressed_text,
                    size=10,
                    fill=MUTED,
                    extra=_suppressed_attrs(bar),
                )
                continue
            length = (bar.value or 0.0) * scale
            canvas.rect(left, by, length, bar_height, PALETTE[index % len(PALETTE)])
            canvas.text(
                left + length + 4, by + bar_height - 3, bar.text, size=12, extra=_value_attrs(bar)
            )
        y += height
    canvas.line(left, top - 4, left, bottom, MUTED)
    return _svg(chart, canvas, bottom + 22)


def column_chart(chart: Chart, width: float = 520, height: float = 220) -> str:
    """Vertical columns in time order (one series), with values above and periods below."""
    canvas = _Canvas(width, chart.rtl)
    left, right, top, bottom = 44.0, width - 8, 18.0, height - 36
    bars = [g.bars[0] for g in chart.groups]
    values = [b.value for b in bars if b.value is not None]
    ticks = nice_ticks(max(values, default=0.0))
    scale = (bottom - top) / ticks[-1]
    for tick in ticks:
        y = bottom - tick * scale
        canvas.line(left, y, right, y, GRID)
        label = chart.tick_format(tick) if callable(chart.tick_format) else f"{tick:g}"
        canvas.text(
            left - 6, y + 4, label, anchor="end", size=10, fill=MUTED, extra=' class="tick"'
        )
    slot = (right - left) / max(len(chart.groups), 1)
    column = min(slot * 0.7, 48.0)
    dense = slot < 6 * len(chart.suppressed_text) + 4
    for index, (group, bar) in enumerate(zip(chart.groups, bars, strict=True)):
        centre = left + slot * (index + 0.5)
        if bar.missing:
            pass
        elif bar.suppressed and dense:  # no room for the word: the hatch (see the legend) says it
            canvas.rect(
                centre - column / 2,
                bottom - 14,
                column,
                14,
                "url(#hatch)",
                f' stroke="{MUTED}"' + _suppressed_attrs(bar),
                title=chart.suppressed_text,
            )
        elif bar.suppressed:
            canvas.rect(
                centre - column / 2, bottom - 14, column, 14, "url(#hatch)", f' stroke="{MUTED}"'
            )
            canvas.text(
                centre,
                bottom - 18,
                chart.suppressed_text,
                anchor="middle",
                size=10,
                fill=MUTED,
                extra=_suppressed_attrs(bar),
            )
        else:
            h = (bar.value or 0.0) * scale
            canvas.rect(centre - column / 2, bottom - h, column, h, PALETTE[0])
            canvas.text(
                centre,
                bottom - h - 4,
                bar.text,
                anchor="middle",
                size=9 if dense else 10,
                extra=_value_attrs(bar),
            )
        canvas.text(centre, bottom + 14, group.label, anchor="middle", size=10, fill=MUTED)
        if group.sublabel:
            canvas.text(centre, bottom + 27, group.sublabel, anchor="middle", size=10, fill=MUTED)
    canvas.line(left, bottom, right, bottom, MUTED)
    return _svg(chart, canvas, height)
