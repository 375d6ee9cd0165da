"""The report page: headline figures, charts with their tables, coverage and methodology, as HTML.

Built only from protected publication tables (and, for coverage, counts of submissions). Every
text inserted is escaped; every number comes from a published cell or is derived from two
published cells (a change between periods), and says so in its data attributes.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from html import escape
from importlib import resources
from typing import Any

from casepool.catalogue.indicators import load_indicators
from casepool.core.errors import SchemaError, UsageError
from casepool.core.schema import RTL_LANGUAGES, read_yaml
from casepool.reporting.charts import Bar, Chart, Group, bar_chart, column_chart
from casepool.reporting.coverage import Coverage
from casepool.reporting.labels import Labels
from casepool.reporting.numerals import (
    format_number,
    format_percent,
    format_signed,
    localise_digits,
)
from casepool.reporting.tables import TOTAL, TableView

UNITS = {"count": 0, "percent": 1, "months": 1, "rate": 1}
WIDE_COLUMNS = 4  # a figure's table with more columns than this goes under its chart  # decimals shown per unit
ARABIC_SCRIPT = range(0x0600, 0x0700)


def _e(text: object) -> str:
    return escape(str(text), quote=True)


@cache
def _units() -> dict[str, str]:
    return {name: i.unit for name, i in load_indicators().indicators.items()}


@cache
def _code_rank(dimension: str) -> dict[str, int]:
    """Position of each code of `dimension` in its code list (or in indicators.yaml)."""
    dimensions = load_indicators().dimensions
    if dimension in dimensions:
        listed = list(dimensions[dimension].code_values)
    else:
        from casepool.core.schema import load_codelists

        codelist = load_codelists().get(dimension)
        listed = list(codelist.values) if codelist else []
    return {code: i for i, code in enumerate(listed)}


def _order(table: TableView, dimension: str) -> list[str]:
    """The categories of `dimension` in the table, in code-list order (unlisted codes last)."""
    present = table.codes(dimension)
    if dimension == "period":
        return sorted(present)
    rank = _code_rank(dimension)
    return sorted(present, key=lambda c: (rank.get(c, len(rank)), c))


@dataclass
class Page:
    """Everything one report page needs, in one language.

    Without a chosen period the tables cover every period and the headlines compare the latest
    period of the time series with the one before. With one (`filtered`), the publication was
    made for that period only, and `previous_tables` for the period before it.
    """

    tables: dict[str, TableView]
    coverage: Coverage | None
    lang: str
    period: str
    previous: str | None
    span: list[str]
    synthetic: bool
    generated: date
    filtered: bool = False
    previous_tables: dict[str, TableView] | None = None
    _distinct: bool | None = field(default=None, init=False, repr=False)

    @property
    def labels(self) -> Labels:
        return Labels(self.lang)

    @property
    def distinct_flags(self) -> bool:
        """Whether the publication flags primary (C) and secondary (D) cells apart. With combined
        flags (every suppressed cell C) the page says only that a cell is protected: a C is not
        a small count there. Read from the tables: a publication without any D is described in
        the words that hold for both."""
        if self._distinct is None:
            self._distinct = any(
                cell.conf_status == "D" for table in self.tables.values() for cell in table.cells
            )
        return self._distinct

    @property
    def rtl(self) -> bool:
        return self.lang in RTL_LANGUAGES

    def t(self, key: str, **params: object) -> str:
        return self.labels.text(key, **params)

    # --- numbers ----------------------------------------------------------------------------

    def unit(self, table: TableView) -> str:
        return _units().get(table.indicator) or "count"

    def show(self, value: float, unit: str) -> str:
        decimals = UNITS.get(unit, 0)
        if unit == "percent":
            return format_percent(value, self.lang, decimals)
        return format_number(value, self.lang, decimals)

    def bar(self, table: TableView, **codes: str) -> Bar:
        """The published cell for `codes` as something to draw and tabulate."""
        cell = table.get(**codes)
        if cell is None:
            return Bar(None, "", "")
        ref = table.name + "|" + ";".join(f"{d}={cell.code(d)}" for d in table.dimensions)
        if cell.suppressed:
            return Bar(None, self.t("report-suppressed-short"), ref, "", cell.conf_status)
        value = float(cell.value or 0.0)
        text = self.show(value, self.unit(table))
        if cell.margin is not None:  # a differentially private estimate: ≈ value (± margin)
            margin = self.show(cell.margin, self.unit(table))
            text = self.t("report-dp-estimate", value=text, margin=margin)
        return Bar(value, text, ref, f"{value:g}", cell.conf_status)

    def tick(self, unit: str) -> Callable[[float], str]:
        if unit == "percent":
            return lambda v: format_percent(v, self.lang, 0)
        return lambda v: format_number(v, self.lang, 0 if v == int(v) else 1)


# --- small HTML pieces ---------------------------------------------------------------------------


def _cell(page: Page, bar: Bar) -> str:
    if bar.missing:
        return '<td class="na"></td>'
    if bar.suppressed:
        if not page.distinct_flags:
            why = page.t("report-why-suppressed")
        else:
            why = page.t("report-why-primary" if bar.status == "C" else "report-why-secondary")
        return (
            f'<td class="supp" data-suppressed="{_e(bar.ref)}" data-status="{_e(bar.status)}" '
            f'title="{_e(why)}">{_e(bar.text)}</td>'
        )
    return (
        f'<td class="num" data-value="{_e(bar.raw)}" data-ref="{_e(bar.ref)}">{_e(bar.text)}</td>'
    )


def _table(
    page: Page,
    caption: str,
    corner: str,
    columns: Sequence[str],
    rows: Sequence[tuple[str, list[Bar]]],
) -> str:
    head = "".join(f'<th scope="col" class="num">{_e(c)}</th>' for c in columns)
    body = "".join(
        f'<tr><th scope="row">{_e(label)}</th>{"".join(_cell(page, b) for b in bars)}</tr>'
        for label, bars in rows
    )
    return (
        f'<table><caption>{_e(caption)}</caption><thead><tr><th scope="col">{_e(corner)}</th>'
        f"{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _note(page: Page, bars: Sequence[Bar], extra: Sequence[str] = ()) -> str:
    primary = sum(1 for b in bars if b.suppressed and b.status != "D")
    secondary = sum(1 for b in bars if b.suppressed and b.status == "D")
    lines = list(extra)
    if not page.distinct_flags:
        if primary + secondary:
            hidden = format_number(primary + secondary, page.lang)
            lines.append(page.t("report-note-suppressed", n=hidden))
    elif primary:
        lines.append(page.t("report-note-primary", n=format_number(primary, page.lang)))
    if secondary:
        lines.append(page.t("report-note-secondary", n=format_number(secondary, page.lang)))
    return "".join(f'<p class="note">{_e(line)}</p>' for line in lines)


def _figure(
    page: Page,
    fid: str,
    title: str,
    scope: str,
    svg: str,
    table: str,
    bars: Sequence[Bar],
    notes: Sequence[str] = (),
) -> str:
    # A table of many columns (the justice funnel by type of violence) gets the whole width
    # under its chart instead of being squeezed beside it.
    wide = " wide" if table.count('<th scope="col"') > WIDE_COLUMNS else ""
    return (
        f'<figure class="figure" id="{_e(fid)}"><figcaption><h3>{_e(title)}</h3>'
        f'<p class="scope">{_e(scope)}</p></figcaption><div class="pair{wide}">'
        f'<div class="chart-box">{svg}</div><div class="table-box">{table}</div></div>'
        f"{_note(page, bars, notes)}</figure>"
    )


def _all_periods(page: Page) -> str:
    """What a table without a period dimension covers."""
    if page.filtered:
        return page.t("report-scope-period", period=page.labels.period(page.period))
    if not page.span:
        return page.t("report-scope-all")
    return page.t(
        "report-scope-all-range",
        first=page.labels.period(page.span[0]),
        last=page.labels.period(page.span[-1]),
    )


# --- sections ------------------------------------------------------------------------------------


def _change(page: Page, now: Bar, before: Bar | None, points: bool) -> str:
    if page.previous is None or before is None:
        return f'<p class="change">{_e(page.t("report-change-first"))}</p>'
    period = page.labels.period(page.previous)
    if now.value is None or before.value is None:
        return f'<p class="change">{_e(page.t("report-change-none", period=period))}</p>'
    diff = now.value - before.value
    refs = f"{now.ref} {before.ref}"
    if points:
        text = page.t(
            "report-change-points", change=format_signed(diff, page.lang, 1), period=period
        )
        return (
            f'<p class="change" data-derived="points" data-from="{_e(refs)}" '
            f'data-change="{diff:g}">{_e(text)}</p>'
        )
    relative = (
        format_signed(diff / before.value * 100, page.lang, 1, percent=True)
        if before.value
        else "—"
    )
    text = page.t(
        "report-change-count",
        change=format_signed(diff, page.lang, 0),
        percent=relative,
        period=period,
    )
    return (
        f'<p class="change" data-derived="count" data-from="{_e(refs)}" '
        f'data-change="{diff:g}">{_e(text)}</p>'
    )


def _headline(page: Page, table_name: str, points: bool) -> str:
    table = page.tables.get(table_name)
    if table is None:
        return ""
    before: Bar | None = None
    if page.filtered:  # the publication holds one period: its total, against the one before
        now = page.bar(table)
        earlier = (page.previous_tables or {}).get(table_name)
        if earlier is not None and page.previous:
            before = page.bar(earlier)
    else:
        now = page.bar(table, period=page.period)
        before = page.bar(table, period=page.previous) if page.previous else None
    if now.missing:
        return ""
    if now.suppressed:
        big = (
            f'<p class="big supp" data-suppressed="{_e(now.ref)}">'
            f"{_e(page.t('report-suppressed-short'))}</p>"
        )
    else:
        big = f'<p class="big num" data-value="{_e(now.raw)}" data-ref="{_e(now.ref)}">{_e(now.text)}</p>'
    title = page.labels.indicator(table.indicator)
    return (
        f'<div class="card"><h3>{_e(title)}</h3>{big}'
        f'<p class="scope">{_e(page.labels.period(page.period))}</p>'
        f"{_change(page, now, before, points)}</div>"
    )


def _headlines(page: Page) -> str:
    cards = [
        _headline(page, "cases_by_period_region", points=False),
        _headline(page, "boys_share_by_region", points=True),
        _headline(page, "online_share_by_region", points=True),
    ]
    return (
        f'<section id="headlines"><h2>{_e(page.t("report-headlines-title"))}</h2>'
        f'<div class="headlines">{"".join(c for c in cards if c)}</div></section>'
    )


def _over_time(page: Page) -> str:
    table = page.tables.get("cases_by_period_region")
    if table is None or "period" not in table.dimensions:
        # Global recoding merged a one-quarter release's periods into its total: nothing over
        # time to draw (the headline shows the total; the methodology says what was coarsened).
        return ""
    periods = _order(table, "period")
    regions = _order(table, "region")
    groups, seen_years = [], set()
    for code in periods:
        year, _, quarter = code.partition("-Q")
        label = page.t("report-quarter-short", quarter=quarter) if quarter else year
        sub = year if quarter and year not in seen_years else ""
        seen_years.add(year)
        groups.append(
            Group(
                page.labels.period(label) if quarter else page.labels.period(year),
                [page.bar(table, period=code)],
                page.labels.period(sub) if sub else "",
            )
        )
    title = page.t("report-fig-time")
    chart = Chart(
        "fig-time",
        title,
        groups,
        rtl=page.rtl,
        suppressed_text=page.t("report-suppressed-short"),
        tick_format=page.tick("count"),
    )
    columns = [page.labels.code("region", r) for r in regions] + [page.t("report-total")]
    rows = [
        (
            page.labels.period(code),
            [page.bar(table, period=code, region=r) for r in [*regions, TOTAL]],
        )
        for code in periods
    ]
    bars = [b for _, row in rows for b in row]
    return _figure(
        page,
        "time",
        title,
        page.labels.indicator(table.indicator),
        column_chart(chart),
        _table(page, title, page.labels.dimension("period"), columns, rows),
        bars,
    )


def _by_governorate(page: Page) -> str:
    table = page.tables.get("cases_by_governorate")
    if table is None or "governorate" not in table.dimensions:
        return ""  # coarsened to region by global recoding: the methodology says so
    codes = _order(table, "governorate")
    now = {c: page.bar(table, governorate=c) for c in codes}
    ranked = sorted(codes, key=lambda c: (now[c].value is None, -(now[c].value or 0.0)))
    title = page.t("report-fig-governorate")
    groups = [Group(page.labels.code("governorate", c), [now[c]]) for c in ranked]
    chart = Chart(
        "fig-governorate",
        title,
        groups,
        rtl=page.rtl,
        suppressed_text=page.t("report-suppressed-short"),
        tick_format=page.tick("count"),
    )
    rows = [(page.labels.code("governorate", c), [now[c]]) for c in ranked]
    rows.append((page.t("report-total"), [page.bar(table)]))
    bars = [b for _, row in rows for b in row]
    scope = _all_periods(page) + " · " + page.t("report-scope-ordered")
    columns = [page.labels.indicator(table.indicator)]
    return _figure(
        page,
        "governorate",
        title,
        scope,
        bar_chart(chart),
        _table(page, title, page.labels.dimension("governorate"), columns, rows),
        bars,
    )


def _map(page: Page) -> str:
    """The governorates on a map of their boundaries, shaded by the rate per 100,000 children when
    a population was loaded (else by the count); hidden cells hatched, uncertain ones hatched over
    their shade."""
    from casepool.reporting.map import Area, choropleth, governorate_codes, is_uncertain

    tables = (page.tables.get(n) for n in ("cases_rate_by_governorate", "cases_by_governorate"))
    table = next((t for t in tables if t is not None and "governorate" in t.dimensions), None)
    if table is None:
        return ""  # no table by governorate (or coarsened to region by global recoding)
    rate = page.unit(table) == "rate"
    areas = {}
    bars = []
    for code in _order(table, "governorate"):
        bar = page.bar(table, governorate=code)
        bars.append(bar)
        cell = table.get(governorate=code)
        hidden = (
            bar.suppressed or bar.value is None or (cell is not None and cell.obs_status != "A")
        )
        margin = getattr(cell, "margin", None)  # a differentially private cell's margin of error
        areas[code] = Area(
            code,
            page.labels.code("governorate", code),
            None if hidden else bar.value,
            "" if hidden else bar.text,
            hidden,
            bar.ref if bar.suppressed else "",
            uncertain=not hidden and is_uncertain(bar.value, margin),
        )
    for code in sorted(governorate_codes() - areas.keys()):  # not in the table: no value
        areas[code] = Area(code, page.labels.code("governorate", code), None, "", True)
    title = localise_digits(
        page.t("report-fig-map-rate" if rate else "report-fig-map-count"), page.lang
    )
    svg = choropleth(
        "fig-map",
        title,
        areas,
        rtl=page.rtl,
        legend_format=lambda v: format_number(v, page.lang, 0),
        hidden_text=page.t("report-map-hidden"),
        uncertain_text=localise_digits(page.t("map-uncertain"), page.lang),
        source_text=page.t("map-source"),
    )
    notes = (
        [page.t("report-map-population", population=table.population)] if table.population else []
    )
    scope = _all_periods(page)
    return (
        f'<figure class="figure map-figure" id="map"><figcaption><h3>{_e(title)}</h3>'
        f'<p class="scope">{_e(scope)}</p></figcaption><div class="map-box">{svg}</div>'
        f"{_note(page, bars, notes)}</figure>"
    )


def _by_sex(
    page: Page,
    fid: str,
    table_name: str,
    dimension: str,
    title: str,
    scope: str,
    fixed: dict[str, str] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """Categories of `dimension` as groups, one bar per sex; a table of categories × sex. A table
    global recoding published by a coarser dimension derived from `dimension` (age groups for age
    bands) is drawn by that one, with a note saying so."""
    table = page.tables.get(table_name)
    shown = _shown_dimension(table, dimension) if table is not None else None
    if table is None or shown is None:
        return ""  # its categories merged by global recoding: the methodology says so
    if shown != dimension:
        recoded = page.t(
            "report-note-recoded-to",
            coarse=page.labels.dimension(shown),
            fine=page.labels.dimension(dimension),
        )
        notes, dimension = [*notes, recoded], shown
    fixed = fixed or {}
    sexes = _order(table, "sex")
    # A table whose sex global recoding merged has one bar per category: all children.
    series = sexes or [TOTAL]
    codes = _order(table, dimension)
    groups = [
        Group(
            page.labels.code(dimension, c),
            [page.bar(table, **fixed, **{dimension: c, "sex": s}) for s in series],
        )
        for c in codes
    ]
    chart = Chart(
        f"fig-{fid}",
        title,
        groups,
        [page.labels.code("sex", s) for s in sexes],  # empty: one series
        rtl=page.rtl,
        suppressed_text=page.t("report-suppressed-short"),
        tick_format=page.tick(page.unit(table)),
    )
    columns = [page.labels.code("sex", s) for s in sexes] + [page.t("report-total")]
    rows = [
        (
            page.labels.code(dimension, c),
            [page.bar(table, **fixed, **{dimension: c, "sex": s}) for s in [*sexes, TOTAL]],
        )
        for c in [*codes, TOTAL]
    ]
    bars = [b for _, row in rows for b in row]
    return _figure(
        page,
        fid,
        title,
        scope,
        bar_chart(chart),
        _table(page, title, page.labels.dimension(dimension), columns, rows),
        bars,
        notes,
    )


def _shown_dimension(table: TableView, dimension: str) -> str | None:
    """`dimension` when the table has it; else the table's dimension derived from it (global
    recoding's intermediate step: an age group is a sum of age bands, a region of governorates,
    as `Dimension.rollup` states); None when its categories were merged away."""
    if dimension in table.dimensions:
        return dimension
    declared = load_indicators().dimensions
    for name in table.dimensions:
        source = declared[name].source if name in declared else None
        while source is not None:
            if source == dimension:
                return name
            source = declared[source].source if source in declared else None
    return None


def _justice(page: Page) -> str:
    funnel = page.tables.get("justice_funnel")
    if funnel is None:
        return ""
    registered_table = page.tables.get("cases_by_population_group")
    stages: list[tuple[str, Bar, list[Bar]]] = []
    violence = _order(funnel, "violence_type")
    if registered_table is not None:
        stages.append(
            (
                page.t("report-funnel-registered"),
                page.bar(registered_table),
                [Bar(None, "", "")] * len(violence),
            )
        )
    stages.append(
        (
            page.t("report-funnel-police"),
            page.bar(funnel),
            [page.bar(funnel, violence_type=v) for v in violence],
        )
    )
    for outcome in _order(funnel, "justice_outcome"):
        if outcome == "not_reported":
            continue  # contradicts being reported to police: not a stage of the funnel
        stages.append(
            (
                page.labels.code("justice_outcome", outcome),
                page.bar(funnel, justice_outcome=outcome),
                [page.bar(funnel, justice_outcome=outcome, violence_type=v) for v in violence],
            )
        )
    title = page.t("report-fig-justice")
    groups = [Group(label, [total]) for label, total, _ in stages]
    chart = Chart(
        "fig-justice",
        title,
        groups,
        rtl=page.rtl,
        suppressed_text=page.t("report-suppressed-short"),
        tick_format=page.tick("count"),
    )
    columns = [page.t("report-total")] + [page.labels.code("violence_type", v) for v in violence]
    rows = [(label, [total, *split]) for label, total, split in stages]
    bars = [b for _, row in rows for b in row]
    return _figure(
        page,
        "justice",
        title,
        _all_periods(page),
        bar_chart(chart),
        _table(page, title, page.t("report-funnel-stage"), columns, rows),
        bars,
        [page.t("report-funnel-note")],
    )


def _coverage(page: Page) -> str:
    parts = [f'<section id="coverage"><h2>{_e(page.t("report-coverage-title"))}</h2>']
    parts.append(f"<p>{_e(page.t('report-coverage-intro'))}</p>")
    coverage = page.coverage
    if coverage is not None and coverage.organisations:
        periods = coverage.periods
        head = "".join(
            f'<th scope="col" class="num">{_e(page.labels.period(p))}</th>' for p in periods
        )
        body = []
        for org, name in coverage.organisations:
            code = f' <span class="code">{_e(org)}</span>' if name != org else ""
            cells = []
            for p in periods:
                n = coverage.submissions.get((org, p), 0)
                text = format_number(n, page.lang) if n else "—"
                cells.append(f'<td class="num coverage" data-coverage="{n}">{_e(text)}</td>')
            share = format_percent(100 * coverage.organisation_completeness(org), page.lang, 0)
            cells.append(f'<td class="num completeness">{_e(share)}</td>')
            body.append(f'<tr><th scope="row">{_e(name)}{code}</th>{"".join(cells)}</tr>')
        # Reporting completeness, as DHIS2 shows it: the share of organisations that reported
        # for each period, and of periods each organisation reported for.
        rates = "".join(
            f'<td class="num completeness" data-period="{_e(p)}">'
            f"{_e(format_percent(100 * coverage.period_completeness(p), page.lang, 0))}</td>"
            for p in periods
        )
        completeness = _e(page.t("report-completeness"))
        parts.append(
            f'<div class="table-box"><table><caption>{_e(page.t("report-coverage-orgs"))}</caption>'
            f'<thead><tr><th scope="col">{_e(page.t("report-organisation"))}</th>{head}'
            f'<th scope="col" class="num">{completeness}</th></tr></thead>'
            f'<tbody>{"".join(body)}</tbody><tfoot><tr><th scope="row">{completeness}</th>'
            f"{rates}<td></td></tr></tfoot></table></div>"
            f'<p class="note">{_e(page.t("report-completeness-note"))}</p>'
        )
    table = page.tables.get("cases_by_governorate")
    if table is not None:
        periods = _order(table, "period") if "period" in table.dimensions else [TOTAL]
        head = "".join(
            f'<th scope="col">{_e(page.labels.period(p) if p != TOTAL else _all_periods(page))}</th>'
            for p in periods
        )
        body = []
        for code in _order(table, "governorate"):
            cells = []
            for p in periods:
                bar = page.bar(table, governorate=code, **({"period": p} if p != TOTAL else {}))
                if bar.missing:
                    cells.append('<td class="na"></td>')
                elif bar.suppressed:
                    cells.append(
                        f'<td class="supp" data-suppressed="{_e(bar.ref)}">{_e(bar.text)}</td>'
                    )
                elif bar.value:
                    cells.append(f'<td class="yes">{_e(page.t("report-coverage-cases"))}</td>')
                else:
                    cells.append(f'<td class="no">{_e(page.t("report-coverage-none"))}</td>')
            label = page.labels.code("governorate", code)
            body.append(f'<tr><th scope="row">{_e(label)}</th>{"".join(cells)}</tr>')
        parts.append(
            f'<div class="table-box"><table><caption>{_e(page.t("report-coverage-governorates"))}</caption>'
            f'<thead><tr><th scope="col">{_e(page.labels.dimension("governorate"))}</th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>"
        )
    parts.append("</section>")
    return "".join(parts)


def _is_dp(page: Page) -> bool:
    return any(c.margin is not None for t in page.tables.values() for c in t.cells)


def _methodology(page: Page) -> str:
    keys: tuple[str, ...] = (
        "report-method-deid",
        "report-method-double",
        "report-method-protect",
        "report-method-marks",
        "report-method-multi",
        "report-method-periods",
    )
    if _is_dp(page):  # a differentially private publication says what its ± means
        keys = (*keys, "report-method-dp")
    items = "".join(f"<p>{_e(page.t(k))}</p>" for k in keys)
    recoded = [t for t in page.tables.values() if t.coarsened]
    if recoded:  # global recoding: which tables are published coarser, and how
        items += f"<h3>{_e(page.t('recoding-notes-heading'))}</h3>" + "".join(
            f"<p>{_e(page.t('recoding-notes-table', table=t.name, how='; '.join(t.coarsened)))}</p>"
            for t in recoded
        )
    return (
        f'<section id="methodology"><h2>{_e(page.t("report-method-title"))}</h2>{items}</section>'
    )


# --- the page ------------------------------------------------------------------------------------


@cache
def _font_faces() -> str:
    assets = resources.files("casepool.reporting") / "assets"
    faces = []
    for weight, name in ((400, "Regular"), (700, "Bold")):
        data = (assets / f"NotoSansArabic-{name}-subset.woff").read_bytes()
        encoded = base64.b64encode(data).decode("ascii")
        faces.append(
            '@font-face{font-family:"Report Arabic";font-style:normal;'
            f"font-weight:{weight};font-display:block;"
            f'src:url(data:font/woff;base64,{encoded}) format("woff");'
            "unicode-range:U+0600-06FF,U+200C-200F;}"
        )
    return "".join(faces)


CSS = """
:root{--ink:#1a1a1a;--muted:#595959;--line:#d0d0d0;--accent:#7b3294;--warn:#8a5a00}
*{box-sizing:border-box}
html{font-family:"Report Arabic","Noto Sans Arabic","Segoe UI",system-ui,-apple-system,Roboto,"DejaVu Sans",Arial,sans-serif;
line-height:1.5;color:var(--ink);background:#fff;-webkit-text-size-adjust:100%;
print-color-adjust:exact;-webkit-print-color-adjust:exact}
body{margin:0 auto;max-width:1120px;padding:12px 16px 32px}
h1,h2,h3,p,caption{overflow-wrap:break-word}
header{border-bottom:3px solid var(--accent);margin-bottom:16px}
h1{font-size:1.6rem;margin:.3em 0}
h2{font-size:1.3rem;border-bottom:1px solid var(--line);padding-bottom:4px;margin-top:32px}
h3{font-size:1.05rem;margin:0}
p{margin:.4em 0}
.meta,.scope,.note,.change{color:var(--muted);font-size:.9rem}
.banner{background:#fff3cd;border:2px solid var(--warn);border-radius:6px;padding:10px 14px;
font-weight:700;margin:12px 0}
.legend{border-inline-start:4px solid var(--muted);padding-inline-start:10px}
.headlines{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:12px}
.card{border:1px solid var(--line);border-radius:8px;padding:12px}
.card .big{font-size:2rem;font-weight:700;margin:.2em 0;color:var(--accent)}
.card .big.supp{font-size:1.2rem;color:var(--muted)}
figure{margin:0 0 28px;break-inside:avoid;page-break-inside:avoid}
figcaption{margin-bottom:8px}
.pair{display:grid;grid-template-columns:minmax(0,11fr) minmax(0,9fr);gap:20px;align-items:start}
svg.chart{display:block;width:100%;height:auto;max-width:640px;font-family:inherit}
svg.map{display:block;width:100%;height:auto;max-width:600px;font-family:inherit}
.pair.wide{grid-template-columns:minmax(0,1fr)}
.pair.wide svg.chart{max-width:760px}
.table-box{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;width:100%;font-size:.85rem}
caption{text-align:start;font-weight:700;padding-bottom:4px}
th,td{border-bottom:1px solid var(--line);padding:3px 6px;text-align:start;vertical-align:top;
overflow-wrap:normal;word-break:normal}
tbody th,thead th:first-child{min-width:7em}
thead th{border-bottom:2px solid var(--ink)}
th.num,td.num{text-align:end;font-variant-numeric:tabular-nums}
td.num{white-space:nowrap}
td.supp{color:var(--muted);font-style:italic;text-align:end;white-space:nowrap;
background:repeating-linear-gradient(45deg,#fff 0 4px,#e6e6e6 4px 8px)}
td.yes{color:#1b7837}
td.no{color:var(--muted)}
.code{color:var(--muted);font-size:.8em}
.supp-sample{display:inline-block;width:2.2em;height:1em;vertical-align:middle;border:1px solid var(--muted);
background:repeating-linear-gradient(45deg,#fff 0 3px,#9a9a9a 3px 5px)}
footer{margin-top:32px;border-top:1px solid var(--line);color:var(--muted);font-size:.85rem}
@media (max-width:760px){.pair{grid-template-columns:minmax(0,1fr)}h1{font-size:1.3rem}
.card .big{font-size:1.6rem}body{padding:8px 10px 24px}}
@page{size:A4;margin:14mm 12mm}
@media print{body{max-width:none;padding:0;font-size:9.5pt}.pair{grid-template-columns:minmax(0,1fr) minmax(0,1fr)}
table{font-size:8pt}
h2{break-after:avoid;page-break-after:avoid}.table-box{overflow:visible}
section#coverage,section#methodology{break-before:page;page-break-before:always}}
"""


TIME_TABLES = ("cases_by_period_region", "boys_share_by_region", "online_share_by_region")


def period_codes(tables: dict[str, TableView]) -> list[str]:
    """The periods of the time series (quarters or years), oldest first."""
    for name in TIME_TABLES:
        table = tables.get(name)
        if table is not None and "period" in table.dimensions:
            codes = sorted(table.codes("period"))
            if codes:
                return codes
    return []


def choose_periods(
    tables: dict[str, TableView], period: str | None, headline: str | None = None
) -> tuple[str, str | None, list[str]]:
    """The headline period, the one it is compared with, and every period of the time series.

    With `period` (a publication made for that period only) the headline is `period` against
    the one just before it; otherwise it is `headline` (default: the latest period of the time
    series) against the period before it in the series.
    """
    codes = period_codes(tables)
    if period is not None:
        return period, previous_period(period), codes
    if not codes:
        raise UsageError("report-no-periods")
    chosen = headline or codes[-1]
    if chosen not in codes:
        raise UsageError("report-unknown-period", period=chosen, periods=", ".join(codes))
    index = codes.index(chosen)
    return chosen, (codes[index - 1] if index > 0 else None), codes


def previous_period(code: str) -> str | None:
    """2025 -> 2024, 2025-Q1 -> 2024-Q4, 2025-07 -> 2025-06 (None when not a period)."""
    from casepool.core.periods import is_period, parse_period

    if not is_period(code):
        return None
    chosen = parse_period(code)
    day = chosen.start.toordinal() - 1
    from datetime import date as _date

    before = _date.fromordinal(day)
    if chosen.kind == "year":
        return str(before.year)
    if chosen.kind == "quarter":
        return f"{before.year}-Q{(before.month - 1) // 3 + 1}"
    return f"{before.year}-{before.month:02d}"


@cache
def report_layout() -> tuple[dict[str, Any], ...]:
    """The sections of the report and their figures, from schemas/report.yaml."""
    raw = read_yaml("report.yaml") or {}
    sections = tuple(dict(s) for s in raw.get("sections") or ())
    kinds = {str(f.get("kind")) for s in sections for f in s.get("figures") or ()}
    if not sections or not kinds <= set(_FIGURES):
        raise SchemaError(
            "schema-invalid",
            file="report.yaml",
            reason=f"figure kinds {sorted(kinds - set(_FIGURES))}",
        )
    return sections


def _figure_by_sex(page: Page, spec: dict[str, Any]) -> str:
    return _by_sex(
        page,
        str(spec["id"]),
        str(spec["table"]),
        str(spec["dimension"]),
        page.t(str(spec["title"])),
        _all_periods(page),
        notes=[page.t(str(n)) for n in spec.get("notes") or ()],
    )


_FIGURES: dict[str, Callable[[Page, dict[str, Any]], str]] = {
    "headlines": lambda page, spec: _headlines(page),
    "over_time": lambda page, spec: _over_time(page),
    "by_governorate": lambda page, spec: _by_governorate(page),
    "map": lambda page, spec: _map(page),
    "by_sex": _figure_by_sex,
    "justice": lambda page, spec: _justice(page),
    "coverage": lambda page, spec: _coverage(page),
    "methodology": lambda page, spec: _methodology(page),
}


def _section(page: Page, spec: dict[str, Any]) -> str:
    figures = "".join(_FIGURES[str(f["kind"])](page, f) for f in spec.get("figures") or ())
    if "id" not in spec:
        return figures
    title = _e(page.t(str(spec["title"])))
    return f'<section id="{_e(spec["id"])}"><h2>{title}</h2>{figures}</section>'


def build_page(
    tables: dict[str, TableView],
    coverage: Coverage | None,
    *,
    lang: str = "en",
    period: str | None = None,
    synthetic: bool = False,
    generated: date | None = None,
    previous_tables: dict[str, TableView] | None = None,
    headline: str | None = None,
) -> str:
    """The whole report as one self-contained HTML document (no script, no external request).

    `period`: the period the tables were published for (None: they cover every period);
    `previous_tables`: the publication of the period before it, for the headline changes;
    `headline`: with tables for every period, the period of the headline figures.
    """
    chosen, previous, span = choose_periods(tables, period, headline)
    page = Page(
        tables,
        coverage,
        lang,
        chosen,
        previous,
        span,
        synthetic,
        generated or date.today(),
        filtered=period is not None,
        previous_tables=previous_tables,
    )
    t = page.t
    period_label = page.labels.period(chosen)
    scope_label = _all_periods(page)
    sections = [_section(page, spec) for spec in report_layout()]
    banner = (
        f'<p class="banner" role="note">{_e(t("report-synthetic-banner"))}</p>' if synthetic else ""
    )
    generated_text = page.labels.period(page.generated.isoformat())
    header = (
        f"<header><h1>{_e(t('report-title'))}</h1>"
        f'<p class="meta">{_e(t("report-subtitle", scope=scope_label))}</p>'
        f'<p class="meta">{_e(t("report-generated", date=generated_text))}</p>{banner}'
        f'<p class="legend"><span class="supp-sample"></span> {_e(t("report-suppressed-legend"))}</p>'
        "</header>"
    )
    footer = f"<footer><p>{_e(t('report-footer'))}</p></footer>"
    body = header + "<main>" + "".join(sections) + "</main>" + footer
    needs_font = any(ord(ch) in ARABIC_SCRIPT for ch in body)
    style = (_font_faces() if needs_font else "") + CSS
    direction = "rtl" if page.rtl else "ltr"
    return (
        f'<!DOCTYPE html><html lang="{_e(lang)}" dir="{direction}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; font-src data:; img-src data:\">"
        f"<title>{_e(t('report-title'))} — {_e(period_label)}</title>"
        f"<style>{style}</style></head><body>{body}</body></html>\n"
    )
