"""Measure once, answer many: each quarter's workload is noised once; every question is post-processing.

`measure_quarter` counts the declared workload (schemas/protection.yaml, `differential_privacy`)
for one registration quarter over the full grid of its categories, adds OpenDP's discrete Gaussian
noise, makes each table non-negative whole numbers that add up to its parent table (the finest
earlier table whose dimensions it extends by single-valued ones: nation → governorate →
governorate × sex, as in the Census Bureau's TopDown), and stores it — spending the quarter's ρ
and writing the release ledger in one DuckDB transaction.

`answer` serves a question (indicator, by, where, period) from the stored tables only: it sums the
cells of the measured table that serves it with the smallest error, quarter by quarter, and
carries each cell's variance (the number of noisy cells summed × scale²; a cell that is also a
cell of a parent table takes the parent's smaller variance, since the two agree exactly). Nothing
is spent; the same question always gets the same answer. A derived dimension with a hierarchy (a
region, an age group, any `derived: group`) is read from a table of its finer dimension, each of
its cells the sum of its finer cells with their variances summed (`derived`): post-processing too.

`measure_year` measures a whole year's workload directly once its quarters are in (the steward's
`casepool budget --measure YEAR`), charged to each of its four quarters, and stores each table
combined with the sum of the quarters by inverse-variance weighting under the year's code; `answer`
then reads a year from those tables instead of summing its quarters.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from casepool.catalogue.indicators import (
    TOTAL,
    IndicatorCatalogue,
    TableRequest,
    check_request,
    filter_periods,
    load_indicators,
    period_codes,
)
from casepool.catalogue.tabulating import OUTCOME, VALUE, covered_span, tabulate
from casepool.core.errors import UsageError
from casepool.core.periods import parse_period
from casepool.protecting import dp
from casepool.protecting.dp_settings import DPSettings, Measurement
from casepool.publishing import derived, dp_medians
from casepool.warehouse import budget
from casepool.warehouse.ledger import cell_identity, ensure_ledger, record_release

VARIANCE = "variance"
_EXTRA = (OUTCOME, dp_medians.MONTHS)  # stored dimensions that are not the table's `by`
MARGIN = "margin"
_RETRIES = 3
MEMO_SIZE = 20_000  # entries of StoredMeasurements.memo


class RevisionRefused(UsageError):
    """A quarter's data changed after it was measured and its budget cannot pay for measuring it
    again: the question is refused (the data are fine, the budget is not; the CLI exits 1)."""


# --- which quarters a question covers -----------------------------------------------------------


def quarter_code(year: int, quarter: int) -> str:
    return f"{year}-Q{quarter}"


def data_quarters(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every quarter from the first to the last registration month in the warehouse."""
    first, last = covered_span(con)
    if first is None or last is None:
        return []
    return period_codes(first, last, "quarter")


def question_quarters(
    con: duckdb.DuckDBPyConnection | None,
    request: TableRequest,
    available: Sequence[str] | None = None,
) -> list[str]:
    """The quarters a question covers: its period filter (years or quarters) within the data, or
    all quarters of the data. A period that lies outside the data is refused. `available`: the
    data's quarters (`data_quarters`) when the caller has read them already."""
    if available is None:
        assert con is not None, "the data's quarters are read from the warehouse"
        available = data_quarters(con)
    periods = filter_periods(request)
    if not periods:
        if not available:
            raise UsageError("dp-period-outside-data", period="-")
        return list(available)
    wanted: list[str] = []
    for period in periods:
        if period.kind == "month":
            raise UsageError("dp-period-month", period=period.code)
        inside = [q for q in available if parse_period(q).overlaps(period)]
        if not inside:
            raise UsageError("dp-period-outside-data", period=period.code)
        wanted += [q for q in inside if q not in wanted]
    return sorted(wanted)


# --- the workload and its hierarchy --------------------------------------------------------------


def sensitivity_of(measurement: Measurement, catalogue: IndicatorCatalogue) -> float:
    """L2 change of the table when one child is added or removed: 1, or √(Π k) when the child
    may be in every one of the k categories of a multi-valued dimension."""
    cells = 1
    for name in measurement.by:
        dimension = catalogue.dimension(name)
        if dimension.multi:
            cells *= len(dimension.code_values)
    return float(cells) ** 0.5


def parent_of(
    measurement: Measurement, earlier: Sequence[Measurement], catalogue: IndicatorCatalogue
) -> Measurement | None:
    """The finest earlier table of the same indicator that this one refines by single-valued
    dimensions only (its cells then add up to the parent's)."""
    best: Measurement | None = None
    mine = set(measurement.by)
    for other in earlier:
        theirs = set(other.by)
        if other.indicator != measurement.indicator or not theirs < mine:
            continue
        if any(catalogue.dimension(d).multi for d in mine - theirs):
            continue
        if best is None or len(theirs) > len(best.by):
            best = other
    return best


def parents_of(
    measurement: Measurement, earlier: Sequence[Measurement], catalogue: IndicatorCatalogue
) -> list[Measurement]:
    """The tables this one is made to add up to: its two one-way tables when it is a two-way
    table of single-valued dimensions and both are measured, else the finest parent (or none)."""
    if len(measurement.by) == 2 and not any(catalogue.dimension(d).multi for d in measurement.by):
        ones = {o.by: o for o in earlier if o.indicator == measurement.indicator}
        a, b = measurement.by
        if (a,) in ones and (b,) in ones:
            return [ones[(a,)], ones[(b,)]]
    parent = parent_of(measurement, earlier, catalogue)
    return [parent] if parent else []


def check_workload(settings: DPSettings, catalogue: IndicatorCatalogue) -> None:
    """Refuse a workload that names an unknown indicator or a dimension it does not allow."""
    for m in settings.measurements:
        indicator = catalogue.indicator(m.indicator)
        if indicator.kind == "median":  # measured as a histogram of months
            dp_medians.check_median_measurement(m, catalogue)
        for d in m.by:
            catalogue.dimension(d)
            if d not in indicator.dimensions:
                raise UsageError(
                    "dimension-not-allowed",
                    indicator=m.indicator,
                    dimension=d,
                    allowed=", ".join(indicator.dimensions),
                )


# --- measuring a quarter ---------------------------------------------------------------------------


def _inner_cells(
    con: duckdb.DuckDBPyConnection,
    measurement: Measurement,
    quarter: str,
    catalogue: IndicatorCatalogue,
) -> pl.DataFrame:
    """The true counts of every inner cell of the table (no margins) for one quarter."""
    request = TableRequest(measurement.indicator, measurement.by, (("period", (quarter,)),))
    tab = tabulate(con, request, catalogue=catalogue)
    keep = pl.lit(True)
    for d in tab.count_dimensions:
        keep = keep & (pl.col(d) != TOTAL)
    return tab.counts.filter(keep).select(*tab.count_dimensions, VALUE)


def measure_quarters(
    con: duckdb.DuckDBPyConnection,
    quarters: Sequence[str],
    settings: DPSettings,
    catalogue: IndicatorCatalogue,
    *,
    actor: str,
) -> list[budget.MeasuredTable]:
    """Measure the workload in every quarter of `quarters` that lacks it, and measure again every
    quarter whose data changed since it was measured (stale), counting each table once for all
    those quarters (one transaction per quarter). A stale quarter whose budget cannot pay for its
    re-measurement refuses the whole call before anything is spent."""
    check_workload(settings, catalogue)
    budget.ensure_budget(con)
    bases = budget.current_bases(con)  # read before the counts: a later change reads as stale
    stale = sorted(budget.stale_periods(con, bases) & set(quarters))
    for q in list(stale):
        # Back to data it was measured on before (a revocation undone): those tables again, free.
        if restore_quarter(con, q, settings, bases.get(q, ("", 0))[0], actor=actor):
            stale.remove(q)
    plans = {q: revision_plan(con, q, settings) for q in stale}
    for q, (todo, rhos) in plans.items():
        plans[q] = (todo, revision_rhos(con, q, settings, rhos))
    done = budget.measured_periods(con)
    missing = [
        q
        for q in quarters
        if q not in plans and {m.name for m in settings.measurements} - done.get(q, set())
    ]
    if not missing and not plans:
        return []
    truths: dict[tuple[str, str], pl.DataFrame] = {}
    counted = [*missing, *plans]
    for m in settings.measurements:
        if dp_medians.is_median(m, catalogue):
            continue  # a histogram of months, counted in _measure
        request = TableRequest(
            m.indicator, ("period", *m.by), (("period", tuple(counted)),), "quarter"
        )
        tab = tabulate(con, request, catalogue=catalogue)
        keep = pl.lit(True)
        for d in tab.count_dimensions:
            keep = keep & (pl.col(d) != TOTAL)
        inner = tab.counts.filter(keep)
        dims = [d for d in tab.count_dimensions if d != "period"]
        for q in counted:
            truths[(q, m.name)] = inner.filter(pl.col("period") == q).select(*dims, VALUE)
    out = []
    for q in missing:
        basis = bases.get(q, ("", 0))[0]
        out += measure_quarter(con, q, settings, catalogue, actor=actor, truths=truths, basis=basis)
    for q in plans:
        out += remeasure_quarter(
            con, q, settings, catalogue, actor=actor, truths=truths, basis=bases.get(q, ("", 0))[0]
        )
    return out


def revision_plan(
    con: duckdb.DuckDBPyConnection, quarter: str, settings: DPSettings
) -> tuple[list[Measurement], dict[str, float]]:
    """What measuring `quarter` again takes: the workload and the steward's extra tables stored
    for it (each extra at the ρ it was measured with), and the ρ of each."""
    stored = budget.stored_rhos(con, quarter)
    tables = list(settings.measurements)
    rhos = {m.name: settings.rho_of(m) for m in tables}
    names = {m.name for m in tables}
    if budget.has_budget(con):
        for name, indicator, dims in con.execute(
            "SELECT measurement, indicator, dimensions FROM dp_measurements WHERE period = ? "
            "ORDER BY measured_at, measurement",
            [quarter],
        ).fetchall():
            if name in names:
                continue
            tables.append(Measurement(indicator, tuple(d for d in dims if d not in _EXTRA), 1.0))
            rhos[name] = stored[name]
            names.add(name)
    return tables, rhos


def restore_quarter(
    con: duckdb.DuckDBPyConnection, quarter: str, settings: DPSettings, basis: str, *, actor: str
) -> bool:
    """Put back the measurements `quarter` had when its data were last as they are now (`basis`),
    when there are such for every table it needs: no ρ is spent, their figures were released
    already. Recorded in the ledger; False when there is nothing to put back."""
    todo, _ = revision_plan(con, quarter, settings)
    found = budget.restorable(con, quarter, basis, [m.name for m in todo])
    if found is None:
        return False
    ensure_ledger(con)
    con.begin()
    try:
        if quarter not in budget.stale_periods(con, {quarter: (basis, 0)}):
            con.rollback()  # another caller put it back or measured it again since we looked
            return True
        if budget.restorable(con, quarter, basis, [m.name for m in todo]) != found:
            con.rollback()
            return False
        release_id = record_release(
            con,
            kind="measurement",
            method="dp",
            actor=actor,
            cells=pl.DataFrame(),
            periods=[quarter],
            detail={
                "rho": 0.0,
                "restored": sorted(set(found.values())),
                "replaced": budget.release_ids_of(con, quarter),
                "basis": basis,
            },
        )
        for name, old in found.items():
            budget.restore_measurement(con, quarter, name, old, release_id)
        # The year was combined with the quarter's figures as they were: no longer its year.
        budget.withdraw_period(con, quarter[:4], release_id)
        con.commit()
    except (duckdb.TransactionException, duckdb.ConstraintException):
        con.rollback()
        return False  # another caller changed the quarter first; it is measured again below
    except BaseException:
        con.rollback()
        raise
    return True


def revision_rhos(
    con: duckdb.DuckDBPyConnection, quarter: str, settings: DPSettings, rhos: dict[str, float]
) -> dict[str, float]:
    """The ρ of each table when `quarter` is measured again: the geometric reserve.

    A revision spends `revision_share` of what the quarter has left above `extras_reserve` (never
    more than the first measurement's `rhos`), every table scaled alike; so revisions spend 1/2,
    1/4, 1/8 … of the reserve and the quarter's spends, which add up in its budget row, never pass
    its ρ (sequential composition over the same children). A revision that would get less than
    `min_revision` of the first measurement's ρ (margins more than √(1/min_revision) times wider)
    is refused with nothing spent: the steward can raise the budget as a recorded decision.
    """
    full = sum(rhos.values())
    spent = budget.spent_on(con, quarter)
    available = settings.rho_per_quarter * (1 - settings.extras_reserve) - spent
    cost = min(settings.revision_share * available, full)
    least = settings.min_revision * full
    if full <= 0 or cost < least * (1 - 1e-9):
        raise RevisionRefused(
            "dp-revision-over-budget",
            period=quarter,
            asked=f"{least / settings.revision_share:.4g}",
            left=f"{max(available, 0.0):.4g}",
        )
    check_revision_affordable(con, quarter, cost, settings)
    factor = cost / full
    return {name: rho * factor for name, rho in rhos.items()}


def check_revision_affordable(
    con: duckdb.DuckDBPyConnection, quarter: str, cost: float, settings: DPSettings
) -> None:
    """Refuse (UsageError, nothing spent) when `quarter` has too little ρ left to be measured
    again on its changed data."""
    spent = budget.spent_on(con, quarter)
    if spent + cost > settings.rho_per_quarter * (1 + 1e-9):
        raise RevisionRefused(
            "dp-revision-over-budget",
            period=quarter,
            asked=f"{cost:.4g}",
            left=f"{max(settings.rho_per_quarter - spent, 0.0):.4g}",
        )


def remeasure_quarter(
    con: duckdb.DuckDBPyConnection,
    quarter: str,
    settings: DPSettings,
    catalogue: IndicatorCatalogue,
    *,
    actor: str,
    truths: dict[tuple[str, str], pl.DataFrame] | None = None,
    basis: str | None = None,
) -> list[budget.MeasuredTable]:
    """Measure a stale quarter again on its data as it is now: every table it holds, spending
    again from its budget, the new measurements taking the old ones' place for answering, and
    the ledger entry, in one transaction. Nothing happens when it is no longer stale (another
    caller measured it again first); nothing is spent when the budget cannot pay."""
    check_workload(settings, catalogue)
    budget.ensure_budget(con)
    ensure_ledger(con)
    for attempt in range(_RETRIES):
        if basis is None or attempt:
            basis = budget.current_bases(con).get(quarter, ("", 0))[0]
        now: str = basis
        if quarter not in budget.stale_periods(con, {quarter: (now, 0)}):
            return []
        if restore_quarter(con, quarter, settings, now, actor=actor):
            return []
        todo, rhos = revision_plan(con, quarter, settings)
        rhos = revision_rhos(con, quarter, settings, rhos)
        try:
            return _measure(
                con,
                quarter,
                settings,
                catalogue,
                todo,
                actor,
                rhos,
                (truths or {}) if attempt == 0 else {},
                basis=now,
                replace=True,
            )
        except (duckdb.TransactionException, duckdb.ConstraintException):
            # Another caller measured or spent on this quarter at the same moment: look again.
            if attempt == _RETRIES - 1:
                raise UsageError("dp-busy", period=quarter) from None
    return []


class YearRefused(RevisionRefused):
    """A year cannot be measured: a quarter lacks its current measurements, or the budget its
    quarters have left cannot pay for the year (the CLI exits 1, nothing spent)."""


def year_tables(settings: DPSettings, catalogue: IndicatorCatalogue) -> list[Measurement]:
    """The workload tables a year measurement takes: all but the medians' histograms."""
    return [m for m in settings.measurements if not dp_medians.is_median(m, catalogue)]


def year_factor(con: duckdb.DuckDBPyConnection, year: str, settings: DPSettings) -> float:
    """The share of `year_share` the year can take: 1, or less when a quarter has less left
    above `extras_reserve` (revised before the year was measured); 0 when below a half."""
    cost = settings.rho_per_quarter * settings.year_share
    if cost <= 0:
        return 0.0
    left = min(
        settings.rho_per_quarter * (1 - settings.extras_reserve) - budget.spent_on(con, q)
        for q in budget.year_quarters(year)
    )
    factor = min(1.0, left / cost)
    return factor if factor >= 0.5 - 1e-9 else 0.0


def measure_year(
    con: duckdb.DuckDBPyConnection,
    year: str,
    settings: DPSettings,
    catalogue: IndicatorCatalogue,
    *,
    actor: str,
) -> list[budget.MeasuredTable]:
    """Measure a whole year's workload directly and combine it with the sum of its quarters.

    Each table is counted over the year and noised at `year_rho_of` (× `year_factor`), charged to
    each of the four quarters' budgets (a child is registered in one quarter, so the year table
    costs every quarter its ρ; parallel composition across quarters, sequential within each).
    Every cell is then combined with the sum of the quarters' stored (already released) values
    by inverse-variance weighting: w = V_Q / (V_Q + V_Y), with V_Y the year's noise variance and
    V_Q the sum of the quarters' (σ² of the cell in each quarter), so the combined cell has
    variance V_Q·V_Y / (V_Q + V_Y), stored as its scale. The combined tables are fitted top-down
    as the quarters' are (non-negative whole numbers adding up to their parents) and stored under
    the year's code; year questions are then answered from them. Quarter answers never change.
    The spend on the four quarters, the tables and the ledger entry are one transaction. Nothing
    happens when the year is measured on these data already; YearRefused when a quarter lacks
    current measurements or the budget cannot pay (nothing spent)."""
    check_workload(settings, catalogue)
    budget.ensure_budget(con)
    ensure_ledger(con)
    quarters = budget.year_quarters(year)
    todo = year_tables(settings, catalogue)
    if settings.year_share <= 0 or not todo:
        return []
    for attempt in range(_RETRIES):
        bases = budget.with_years(budget.current_bases(con))
        basis = budget.year_basis(bases, year)
        if basis is None:
            raise YearRefused("dp-year-incomplete", period=year)
        done = budget.measured_periods(con)
        stale = budget.stale_periods(con, bases)
        if any(
            q in stale or {m.name for m in settings.measurements} - done.get(q, set())
            for q in quarters
        ):
            raise YearRefused("dp-year-incomplete", period=year)
        if year in done and year not in stale:
            return []
        factor = year_factor(con, year, settings)
        if factor <= 0:
            left = min(
                settings.rho_per_quarter * (1 - settings.extras_reserve) - budget.spent_on(con, q)
                for q in quarters
            )
            raise YearRefused(
                "dp-year-over-budget",
                period=year,
                asked=f"{settings.rho_per_quarter * settings.year_share:.4g}",
                left=f"{max(left, 0.0):.4g}",
            )
        rhos = {m.name: settings.year_rho_of(m, todo) * factor for m in todo}
        try:
            return _measure_year(
                con, year, settings, catalogue, todo, rhos, actor=actor, basis=basis
            )
        except (duckdb.TransactionException, duckdb.ConstraintException):
            if attempt == _RETRIES - 1:
                raise UsageError("dp-busy", period=year) from None
    return []


def _measure_year(
    con: duckdb.DuckDBPyConnection,
    year: str,
    settings: DPSettings,
    catalogue: IndicatorCatalogue,
    todo: list[Measurement],
    rhos: dict[str, float],
    *,
    actor: str,
    basis: str,
) -> list[budget.MeasuredTable]:
    quarters = budget.year_quarters(year)
    tables: list[budget.MeasuredTable] = []
    frames: dict[str, pl.DataFrame] = {}
    weights: dict[str, float] = {}
    year_scales: dict[str, float] = {}
    combined_with: set[str] = set()
    stored: dict[str, list[budget.MeasuredTable]] = {}
    for name in {m.indicator for m in todo}:
        for t in budget.load_measurements(con, quarters, name):
            stored.setdefault(t.measurement, []).append(t)
    for m in todo:
        indicator = catalogue.indicator(m.indicator)
        dims = ((OUTCOME,) if indicator.kind == "percent" else ()) + m.by
        truth = _inner_cells(con, m, year, catalogue)
        sensitivity = sensitivity_of(m, catalogue)
        scale = dp.scale_for(rhos[m.name], sensitivity)
        noisy = dp.noisy_counts(truth.get_column(VALUE).to_list(), scale, sensitivity)
        cells = _cell_texts(truth, dims)
        mine = stored.get(m.name, [])
        if sorted(t.period for t in mine) != quarters:
            raise YearRefused("dp-year-incomplete", period=year)
        summed: dict[str, int] = dict.fromkeys(cells, 0)
        for t in mine:
            for cell, value in zip(
                t.cells.get_column("cell").to_list(),
                t.cells.get_column(VALUE).to_list(),
                strict=True,
            ):
                summed[cell] = summed.get(cell, 0) + int(value)
            combined_with.add(t.release_id)
        v_quarters = sum(t.scale**2 for t in mine)
        v_year = scale**2
        w = v_quarters / (v_quarters + v_year)
        combined = [w * y + (1 - w) * summed[c] for y, c in zip(noisy, cells, strict=True)]
        frame = pl.DataFrame(
            {
                **{d: truth.get_column(d) for d in dims},
                "noisy": pl.Series(combined, dtype=pl.Float64),
            }
        )
        earlier = [o for o in todo[: todo.index(m)] if o.name in frames]
        parents = parents_of(m, earlier, catalogue)
        outcome = (OUTCOME,) if indicator.kind == "percent" else ()
        frame = _post_process(frame, dims, [(frames[p.name], outcome + p.by) for p in parents])
        frame = frame.with_columns(pl.Series("noisy", noisy, dtype=pl.Int64))
        frames[m.name] = frame
        weights[m.name] = round(w, 6)
        year_scales[m.name] = scale
        tables.append(
            budget.MeasuredTable(
                period=year,
                measurement=m.name,
                indicator=m.indicator,
                dimensions=dims,
                scale=(v_quarters * v_year / (v_quarters + v_year)) ** 0.5,
                sensitivity=sensitivity,
                rho=rhos[m.name],
                parent="|".join(p.name for p in parents) or None,
                release_id="",
                cells=frame.select(pl.Series("cell", cells, pl.String), "noisy", VALUE),
                basis=basis,
            )
        )
    total_rho = sum(t.rho for t in tables)
    ledger_cells = _ledger_cells(tables, year, settings.confidence)
    con.begin()
    try:
        now = budget.with_years(budget.current_bases(con))
        if budget.measured_periods(con).get(year) and year not in budget.stale_periods(con, now):
            con.rollback()  # another caller measured the year first
            return []
        if budget.year_basis(now, year) != basis or budget.release_ids_of(con, year):
            raise duckdb.TransactionException("the year's data or measurements changed")
        for q in quarters:
            budget.spend(con, q, total_rho, settings.rho_per_quarter)
        release_id = record_release(
            con,
            kind="measurement",
            method="dp",
            actor=actor,
            cells=ledger_cells,
            periods=[year],
            detail={
                "rho": total_rho,
                "year": year,
                "charged_to": quarters,
                "tables": [t.measurement for t in tables],
                "weights": weights,
                "year_scales": year_scales,
                "combined_with": sorted(combined_with),
                "confidence": settings.confidence,
                "basis": basis,
            },
        )
        for t in tables:
            t.release_id = release_id
            budget.store_measurement(con, t)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return tables


def measure_years(
    con: duckdb.DuckDBPyConnection,
    quarters: Sequence[str],
    settings: DPSettings,
    catalogue: IndicatorCatalogue,
    *,
    actor: str,
) -> list[budget.MeasuredTable]:
    """`measure_year` for every year whose four quarters are all in `quarters`."""
    asked = set(quarters)
    years = sorted({q[:4] for q in quarters})
    out: list[budget.MeasuredTable] = []
    for year in years:
        if set(budget.year_quarters(year)) <= asked:
            out += measure_year(con, year, settings, catalogue, actor=actor)
    return out


def _cell_texts(frame: pl.DataFrame, dims: Sequence[str]) -> list[str]:
    return [cell_identity({d: row[d] for d in dims}) for row in frame.iter_rows(named=True)]


def _post_process(
    frame: pl.DataFrame,
    dims: Sequence[str],
    parents: Sequence[tuple[pl.DataFrame, Sequence[str]]],
) -> pl.DataFrame:
    """Non-negative whole numbers; with one parent, each group adds up to its parent cell; with
    two (a two-way table under its two one-way tables), rows and columns add up to both."""
    if not parents:
        return frame.with_columns(
            pl.Series(VALUE, dp.non_negative(frame.get_column("noisy").to_list()), pl.Int64)
        )
    if len(parents) == 2:
        (rows_of, (a,)), (cols_of, (b,)) = parents
        row_codes = rows_of.get_column(a).to_list()
        col_codes = cols_of.get_column(b).to_list()
        noisy = {(r[a], r[b]): r["noisy"] for r in frame.iter_rows(named=True)}
        table = [[noisy[(i, j)] for j in col_codes] for i in row_codes]
        two_way = dp.fit_two_margins(
            table, rows_of.get_column(VALUE).to_list(), cols_of.get_column(VALUE).to_list()
        )
        value = {
            (i, j): two_way[ri][ci]
            for ri, i in enumerate(row_codes)
            for ci, j in enumerate(col_codes)
        }
        return frame.with_columns(
            pl.Series(VALUE, [value[(r[a], r[b])] for r in frame.iter_rows(named=True)], pl.Int64)
        )
    parent, parent_dims = parents[0]
    keys = list(parent_dims)
    indexed = frame.with_row_index("_row")
    values = [0] * frame.height
    totals = {tuple(r[k] for k in keys): int(r[VALUE]) for r in parent.iter_rows(named=True)}
    if not keys:
        whole = dp.fit_to_total(frame.get_column("noisy").to_list(), totals[()])
        return frame.with_columns(pl.Series(VALUE, whole, pl.Int64))
    groups = indexed.group_by(keys, maintain_order=True).agg(pl.col("_row"), pl.col("noisy"))
    for row in groups.iter_rows(named=True):
        fitted = dp.fit_to_total(row["noisy"], totals[tuple(row[k] for k in keys)])
        for i, v in zip(row["_row"], fitted, strict=True):
            values[i] = v
    return frame.with_columns(pl.Series(VALUE, values, pl.Int64))


def measure_quarter(
    con: duckdb.DuckDBPyConnection,
    quarter: str,
    settings: DPSettings,
    catalogue: IndicatorCatalogue,
    *,
    actor: str,
    only: Sequence[Measurement] | None = None,
    rhos: dict[str, float] | None = None,
    truths: dict[tuple[str, str], pl.DataFrame] | None = None,
    basis: str | None = None,
) -> list[budget.MeasuredTable]:
    """Measure the workload tables `quarter` lacks (or `only` these), spend their ρ and record
    them in the ledger, all in one transaction. Nothing is spent when the budget would pass.
    `basis`: the fingerprint of the quarter's active submissions, read before `truths` were
    counted (read here when not given)."""
    check_workload(settings, catalogue)
    budget.ensure_budget(con)
    ensure_ledger(con)
    for attempt in range(_RETRIES):
        if basis is None or attempt:
            basis = budget.current_bases(con).get(quarter, ("", 0))[0]
        done = budget.measured_periods(con).get(quarter, set())
        wanted = list(only) if only is not None else list(settings.measurements)
        todo = [m for m in wanted if m.name not in done]
        if not todo:
            return []
        try:
            return _measure(
                con,
                quarter,
                settings,
                catalogue,
                todo,
                actor,
                rhos or {},
                (truths or {}) if attempt == 0 else {},
                basis=basis,
            )
        except duckdb.TransactionException:
            # Another caller measured or spent on this quarter at the same moment: look again.
            if attempt == _RETRIES - 1:
                raise UsageError("dp-busy", period=quarter) from None
        except duckdb.ConstraintException:
            if attempt == _RETRIES - 1:
                raise UsageError("dp-busy", period=quarter) from None
    return []


def _measure(
    con: duckdb.DuckDBPyConnection,
    quarter: str,
    settings: DPSettings,
    catalogue: IndicatorCatalogue,
    todo: list[Measurement],
    actor: str,
    rhos: dict[str, float],
    truths: dict[tuple[str, str], pl.DataFrame],
    *,
    basis: str,
    replace: bool = False,
) -> list[budget.MeasuredTable]:
    # A re-measurement takes every table again: none is fitted to an old one.
    stored = (
        {}
        if replace
        else {
            t.measurement: t
            for i in {m.indicator for m in todo}
            for t in budget.load_measurements(con, [quarter], i)
        }
    )
    workload = {m.name for m in settings.measurements}
    ordered = list(settings.measurements) + [m for m in todo if m.name not in workload]
    tables: list[budget.MeasuredTable] = []
    frames: dict[str, pl.DataFrame] = {name: _cells_frame(t) for name, t in stored.items()}
    for m in todo:
        indicator = catalogue.indicator(m.indicator)
        median = indicator.kind == "median"
        dims = ((OUTCOME,) if indicator.kind == "percent" else ()) + m.by
        if median:
            dims = (*m.by, dp_medians.MONTHS)
        truth = truths.get((quarter, m.name))
        if truth is None:
            truth = (
                dp_medians.histogram_truth(con, m, quarter, catalogue)
                if median
                else _inner_cells(con, m, quarter, catalogue)
            )
        sensitivity = sensitivity_of(m, catalogue)
        rho = rhos.get(m.name) or settings.rho_of(m)
        scale = dp.scale_for(rho, sensitivity)
        noisy = dp.noisy_counts(truth.get_column(VALUE).to_list(), scale, sensitivity)
        frame = pl.DataFrame(
            {**{d: truth.get_column(d) for d in dims}, "noisy": pl.Series(noisy, dtype=pl.Int64)}
        )
        earlier = [
            o for o in ordered[: [x.name for x in ordered].index(m.name)] if o.name in frames
        ]
        parents = [] if median else parents_of(m, earlier, catalogue)
        outcome = (OUTCOME,) if indicator.kind == "percent" else ()
        frame = _post_process(frame, dims, [(frames[p.name], outcome + p.by) for p in parents])
        frames[m.name] = frame
        cells = frame.select(pl.Series("cell", _cell_texts(frame, dims), pl.String), "noisy", VALUE)
        tables.append(
            budget.MeasuredTable(
                period=quarter,
                measurement=m.name,
                indicator=m.indicator,
                dimensions=dims,
                scale=scale,
                sensitivity=sensitivity,
                rho=rho,
                parent="|".join(p.name for p in parents) or None,
                release_id="",
                cells=cells,
                basis=basis,
            )
        )
    total_rho = sum(t.rho for t in tables)
    ledger_cells = _ledger_cells(tables, quarter, settings.confidence)
    old = budget.release_ids_of(con, quarter) if replace else []
    con.begin()
    try:
        if replace and quarter not in budget.stale_periods(con, {quarter: (basis, 0)}):
            con.rollback()  # another caller measured it again since we looked: nothing to do
            return []
        budget.spend(con, quarter, total_rho, settings.rho_per_quarter)
        release_id = record_release(
            con,
            kind="measurement",
            method="dp",
            actor=actor,
            cells=ledger_cells,
            periods=[quarter],
            detail={
                "rho": total_rho,
                "tables": [t.measurement for t in tables],
                "confidence": settings.confidence,
                "basis": basis,
                **({"revision_of": old} if replace else {}),
            },
        )
        for t in tables:
            t.release_id = release_id
            if replace:
                budget.replace_measurement(con, t)
            else:
                budget.store_measurement(con, t)
        if replace:
            # A year measured with this quarter's old figures is withdrawn with them.
            budget.withdraw_period(con, quarter[:4], release_id)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return tables


def _with_period(cell: str, quarter: str) -> str:
    import json

    return cell_identity({**json.loads(cell), "period": quarter})


def _cells_frame(table: budget.MeasuredTable) -> pl.DataFrame:
    """A stored table's cells with one column per dimension."""
    import json

    rows = [json.loads(c) for c in table.cells.get_column("cell").to_list()]
    columns: dict[str, Any] = {
        d: pl.Series(d, [r[d] for r in rows], pl.String) for d in table.dimensions
    }
    columns["noisy"] = table.cells.get_column("noisy")
    columns[VALUE] = table.cells.get_column(VALUE)
    return pl.DataFrame(columns)


# --- answering -------------------------------------------------------------------------------------


def _needed(name: str) -> str:
    return name


def covers(dims: set[str] | tuple[str, ...], need: set[str], catalogue: IndicatorCatalogue) -> bool:
    """A table of `dims` can give every cell fixing `need` (a region is a sum of governorates,
    an age group of age bands: any derived dimension with a hierarchy, `derived.covers`)."""
    return derived.covers(dims, need, catalogue)


@dataclass(frozen=True)
class StoredMeasurements:
    """Every stored measurement read once, for answering many questions from memory (the service
    keeps one per data version): what `stored_workload` and `budget.load_measurements` would read,
    with each table's cells already as a frame (`_cells_frame`). Read-only once made."""

    workloads: dict[str, list[Measurement]]
    tables: dict[str, list[budget.MeasuredTable]]  # by indicator, every quarter, as loaded
    frames: dict[tuple[str, str], pl.DataFrame]  # (quarter, measurement) -> cells by dimension
    # A question shape's cells in every quarter (`_shape_cells`) and a measured table's cells
    # in every quarter in one frame, computed once: the same for every question that asks them
    # (any period filter). Bounded: emptied when MEMO_SIZE entries are held.
    memo: dict[Any, Any] = field(default_factory=dict, compare=False)

    def remembered(self, key: Any, compute: Callable[[], Any]) -> Any:
        found = self.memo.get(key)
        if found is None:
            found = compute()
            if len(self.memo) >= MEMO_SIZE:
                self.memo.clear()
            self.memo[key] = found
        return found

    @classmethod
    def read(cls, con: duckdb.DuckDBPyConnection) -> StoredMeasurements:
        if not budget.has_budget(con):
            return cls({}, {}, {})
        indicators = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT indicator FROM dp_measurements ORDER BY indicator"
            ).fetchall()
        ]
        periods = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT period FROM dp_measurements ORDER BY period"
            ).fetchall()
        ]
        workloads = {i: stored_workload(con, i) for i in indicators}
        tables = {i: budget.load_measurements(con, periods, i) for i in indicators}
        catalogue = load_indicators()
        frames = {
            (t.period, t.measurement): derived.with_derived(_cells_frame(t), catalogue)
            for ts in tables.values()
            for t in ts
        }
        return cls(workloads, tables, frames)

    def workload(self, indicator: str) -> list[Measurement]:
        return list(self.workloads.get(indicator, []))

    def load(self, quarters: Sequence[str], indicator: str) -> list[budget.MeasuredTable]:
        """`budget.load_measurements(con, quarters, indicator)`, from memory (the same order)."""
        wanted = set(quarters)
        return [t for t in self.tables.get(indicator, []) if t.period in wanted]


@dataclass
class Answer:
    """A question's cells, answered from stored measurements: value and variance per cell."""

    frame: pl.DataFrame  # dims..., [outcome], value, variance (counts; percent: per outcome)
    quarters: list[str]
    tables: list[str]  # the measured tables used
    years: list[str] = field(default_factory=list)  # years answered from a year measurement


def required_dimensions(request: TableRequest) -> set[str]:
    names = set(request.dimensions) | {n for n, _ in request.where}
    return {_needed(n) for n in names if n != "period"}


def stored_workload(con: duckdb.DuckDBPyConnection, indicator: str) -> list[Measurement]:
    """Tables of `indicator` measured in some quarter (the workload and the steward's extras)."""
    if not budget.has_budget(con):
        return []
    rows = con.execute(
        "SELECT DISTINCT measurement, dimensions FROM dp_measurements WHERE indicator = ? "
        "ORDER BY measurement",
        [indicator],
    ).fetchall()
    return [Measurement(indicator, tuple(d for d in r[1] if d not in _EXTRA), 1.0) for r in rows]


def covering(
    request: TableRequest,
    settings: DPSettings,
    catalogue: IndicatorCatalogue,
    extra: Sequence[Measurement] = (),
) -> list[Measurement]:
    """The workload tables that can answer every cell of the question; refuses when none can."""
    indicator = catalogue.indicator(request.indicator)
    if indicator.kind == "median":
        raise UsageError("dp-median", indicator=indicator.name)
    for name, codes in request.where:
        if catalogue.dimension(name).multi and len(codes) > 1:
            raise UsageError("dp-multi-filter", dimension=name)
    need = required_dimensions(request)
    known = settings.for_indicator(indicator.name)
    known += [m for m in extra if m.name not in {k.name for k in known}]
    found = [m for m in known if covers(m.by, need, catalogue)]
    # A margin over a multi-valued dimension is not the sum of its categories: it needs a table
    # without that dimension (or where it is filtered to one code).
    multi = [d for d in request.dimensions if catalogue.dimension(d).multi]
    for size in range(1, len(multi) + 1):
        for dropped in combinations(multi, size):
            rest = need - set(dropped) | {_needed(n) for n, _ in request.where if n != "period"}
            if found and not any(
                covers(m.by, rest, catalogue)
                and not any(
                    catalogue.dimension(d).multi for d in derived.summed(m.by, rest, catalogue)
                )
                for m in known
            ):
                need, found = rest, []
    if not found:
        measured = ["(" + ", ".join(m.by) + ")" for m in known] or ["-"]
        raise UsageError(
            "dp-not-measured",
            indicator=indicator.name,
            dimensions=", ".join(sorted(need)) or "-",
            measured=" ".join(measured),
        )
    return found


def _eligible(table: budget.MeasuredTable, need: set[str], catalogue: IndicatorCatalogue) -> bool:
    """A table answers a cell whose fixed dimensions are `need` when it has them all and every
    other dimension it has is single-valued (its categories add up to the margin)."""
    dims = {d for d in table.dimensions if d != OUTCOME}
    if not covers(dims, need, catalogue):
        return False
    return not any(catalogue.dimension(d).multi for d in derived.summed(dims, need, catalogue))


def _pattern_cells(
    frame: pl.DataFrame,
    table: budget.MeasuredTable,
    request: TableRequest,
    fixed: Sequence[str],
    catalogue: IndicatorCatalogue,
) -> pl.DataFrame:
    """Cells of the question that fix `fixed` (the rest `_T`), summed from one measured table."""
    frame = derived.with_derived(frame, catalogue)  # a region, an age group: sums of cells
    for name, codes in request.where:
        if name != "period":
            frame = frame.filter(pl.col(name).is_in(list(codes)))
    keys = list(fixed) + ([OUTCOME] if OUTCOME in table.dimensions else [])
    agg = [pl.col(VALUE).sum().cast(pl.Int64), (pl.len() * table.scale**2).alias(VARIANCE)]
    out = frame.group_by(keys, maintain_order=True).agg(agg) if keys else frame.select(agg)
    others = [d for d in request.dimensions if d != "period" and d not in fixed]
    return out.with_columns(pl.lit(TOTAL).alias(d) for d in others)


def _chain(
    table: budget.MeasuredTable, by_name: dict[str, budget.MeasuredTable]
) -> list[budget.MeasuredTable]:
    """The table and every table it was made to add up to, nearest first."""
    chain, queue = [table], [table]
    while queue:
        for name in (queue.pop(0).parent or "").split("|"):
            if name in by_name and by_name[name] not in chain:
                chain.append(by_name[name])
                queue.append(by_name[name])
    return chain


def _quarter_cells(
    tables: dict[str, budget.MeasuredTable],
    chosen: Measurement,
    request: TableRequest,
    catalogue: IndicatorCatalogue,
    used: set[str],
) -> pl.DataFrame:
    """Every cell of the question for one quarter, with its variance."""
    plain = [d for d in request.dimensions if d != "period"]
    filters = {_needed(n) for n, _ in request.where if n != "period"}
    frames = {name: _cells_frame(t) for name, t in tables.items()}
    parts = []

    def pattern(table: budget.MeasuredTable, fixed: tuple[str, ...]) -> pl.DataFrame:
        return _pattern_cells(frames[table.measurement], table, request, fixed, catalogue)

    for size in range(len(plain), -1, -1):
        for fixed in combinations(plain, size):
            need = {_needed(d) for d in fixed} | filters
            main = tables.get(chosen.name)
            if main is None or not _eligible(main, need, catalogue):
                options = [t for t in tables.values() if _eligible(t, need, catalogue)]
                if not options:
                    raise UsageError(
                        "dp-not-measured",
                        indicator=request.indicator,
                        dimensions=", ".join(sorted(need)) or "-",
                        measured="-",
                    )
                main = min(options, key=lambda t: (len(t.cells) * t.scale**2, t.measurement))
            cells = pattern(main, fixed)
            used.add(main.measurement)
            # The same cells from each ancestor the table was fitted to are equal; the smallest
            # variance among them is the honest one.
            for ancestor in _chain(main, tables)[1:]:
                if not _eligible(ancestor, need, catalogue):
                    continue
                other = pattern(ancestor, fixed)
                keys = [c for c in other.columns if c not in (VALUE, VARIANCE)]
                cells = (
                    cells.join(
                        other.select(*keys, pl.col(VARIANCE).alias("_v")),
                        on=keys,
                        how="left",
                        maintain_order="left",
                    )
                    if keys
                    else cells.with_columns(other.get_column(VARIANCE).alias("_v"))
                )
                cells = cells.with_columns(
                    pl.min_horizontal(VARIANCE, pl.col("_v").fill_null(float("inf"))).alias(
                        VARIANCE
                    )
                ).drop("_v")
            parts.append(cells)
    columns = plain + ([OUTCOME] if _has_outcome(tables) else []) + [VALUE, VARIANCE]
    return pl.concat([p.select(columns) for p in parts], how="vertical_relaxed")


def _has_outcome(tables: dict[str, budget.MeasuredTable]) -> bool:
    return any(OUTCOME in t.dimensions for t in tables.values())


_Q = "_quarter"  # the quarter of each cell, in the frames of every quarter at once
_S2 = "_scale2"  # the scale² of the measured table a cell comes from


@dataclass(frozen=True)
class _ShapeCells:
    """A question shape's cells in every stored quarter at once (`_shape_cells`): the rows each
    quarter's `_quarter_cells` gives, quarter after quarter, with the quarter in `_Q`; the
    measured tables each quarter used; the refusal of a quarter no table can answer."""

    frame: pl.DataFrame
    quarters: tuple[str, ...]  # in the order of `frame`
    used: dict[str, frozenset[str]]
    refused: dict[str, dict[str, str]]


def _quarter_plan(
    tables: dict[str, budget.MeasuredTable],
    chosen: Measurement,
    request: TableRequest,
    catalogue: IndicatorCatalogue,
) -> tuple[Any, ...] | dict[str, str]:
    """What `_quarter_cells` reads for one quarter, by name: for each pattern of fixed
    dimensions, the measured table summed and the ancestors whose variances it takes; or the
    refusal (its parameters) when a pattern has no table."""
    plain = [d for d in request.dimensions if d != "period"]
    filters = {_needed(n) for n, _ in request.where if n != "period"}
    steps = []
    for size in range(len(plain), -1, -1):
        for fixed in combinations(plain, size):
            need = {_needed(d) for d in fixed} | filters
            main = tables.get(chosen.name)
            if main is None or not _eligible(main, need, catalogue):
                options = [t for t in tables.values() if _eligible(t, need, catalogue)]
                if not options:
                    return {
                        "indicator": request.indicator,
                        "dimensions": ", ".join(sorted(need)) or "-",
                        "measured": "-",
                    }
                main = min(options, key=lambda t: (len(t.cells) * t.scale**2, t.measurement))
            ancestors = tuple(
                a.measurement for a in _chain(main, tables)[1:] if _eligible(a, need, catalogue)
            )
            steps.append((fixed, main.measurement, ancestors))
    return (tuple(steps), _has_outcome(tables))


def _shape_cells(
    memory: StoredMeasurements,
    chosen: Measurement,
    request: TableRequest,
    catalogue: IndicatorCatalogue,
) -> _ShapeCells:
    """`_quarter_cells` of every stored quarter of the indicator at once: quarters that read
    the same tables the same way are summed in one polars call per pattern, grouped by quarter
    as well (the same cells, values and variances, in the same order, as quarter by quarter)."""
    per_quarter: dict[str, dict[str, budget.MeasuredTable]] = {}
    for t in memory.tables.get(request.indicator, []):
        per_quarter.setdefault(t.period, {})[t.measurement] = t
    order = sorted(per_quarter)
    plain = [d for d in request.dimensions if d != "period"]
    groups: dict[Any, list[str]] = {}
    refused: dict[str, dict[str, str]] = {}
    used: dict[str, frozenset[str]] = {}
    for q in order:
        plan = _quarter_plan(per_quarter[q], chosen, request, catalogue)
        if isinstance(plan, dict):
            refused[q] = plan
            continue
        used[q] = frozenset(main for _, main, _ in plan[0])
        groups.setdefault(plan, []).append(q)
    index = {q: i for i, q in enumerate(order)}

    def stacked(name: str, quarters: tuple[str, ...]) -> pl.DataFrame:
        # One measured table's cells in these quarters, one frame (the same for every shape).
        parts = [
            memory.frames[(q, name)].with_columns(
                pl.lit(q).alias(_Q), pl.lit(float(per_quarter[q][name].scale ** 2)).alias(_S2)
            )
            for q in quarters
        ]
        return pl.concat(parts, how="vertical_relaxed")

    where = [(n, list(c)) for n, c in request.where if n != "period"]
    filtered: dict[tuple[str, tuple[str, ...]], pl.DataFrame] = {}

    def pattern(name: str, quarters: tuple[str, ...], fixed: tuple[str, ...]) -> pl.DataFrame:
        frame = filtered.get((name, quarters))
        if frame is None:
            frame = memory.remembered(
                ("stacked", request.indicator, name, quarters), lambda: stacked(name, quarters)
            )
            if where:
                frame = frame.filter(*[pl.col(n).is_in(c) for n, c in where])
            filtered[(name, quarters)] = frame
        outcome = OUTCOME in per_quarter[quarters[0]][name].dimensions
        keys = [_Q, *fixed] + ([OUTCOME] if outcome else [])
        out = frame.group_by(keys, maintain_order=True).agg(
            pl.col(VALUE).sum().cast(pl.Int64),
            (pl.len() * pl.col(_S2).first()).alias(VARIANCE),
        )
        if len(keys) == 1 and out.height < len(quarters):
            # A quarter none of whose cells passed the filters: one cell of 0, as summing an
            # empty frame gives.
            out = (
                pl.DataFrame({_Q: list(quarters)}, schema={_Q: pl.String})
                .join(out, on=_Q, how="left", maintain_order="left")
                .with_columns(pl.col(VALUE).fill_null(0), pl.col(VARIANCE).fill_null(0.0))
            )
        others = [d for d in plain if d not in fixed]
        return out.with_columns(pl.lit(TOTAL).alias(d) for d in others)

    pieces = []
    for (steps, outcome), members in groups.items():
        quarters = tuple(members)
        columns = plain + ([OUTCOME] if outcome else []) + [VALUE, VARIANCE]
        parts = []
        for fixed, main, ancestors in steps:
            cells = pattern(main, quarters, fixed)
            for ancestor in ancestors:
                other = pattern(ancestor, quarters, fixed)
                keys = [c for c in other.columns if c not in (VALUE, VARIANCE)]
                cells = (
                    cells.join(
                        other.select(*keys, pl.col(VARIANCE).alias("_v")),
                        on=keys,
                        how="left",
                        maintain_order="left",
                    )
                    .with_columns(
                        pl.min_horizontal(VARIANCE, pl.col("_v").fill_null(float("inf"))).alias(
                            VARIANCE
                        )
                    )
                    .drop("_v")
                )
            parts.append(cells.select(*columns, _Q))
        pieces.append(pl.concat(parts, how="vertical_relaxed"))
    if not pieces:
        return _ShapeCells(pl.DataFrame(), (), used, refused)
    allq = pl.concat(pieces, how="diagonal_relaxed") if len(pieces) > 1 else pieces[0]
    # Quarter after quarter, each quarter's patterns in their order (a stable sort).
    allq = allq.sort(pl.col(_Q).replace_strict(index, return_dtype=pl.Int32), maintain_order=True)
    return _ShapeCells(allq, tuple(q for q in order if q in used), used, refused)


def answer(
    con: duckdb.DuckDBPyConnection | None,
    request: TableRequest,
    quarters: Sequence[str],
    settings: DPSettings,
    catalogue: IndicatorCatalogue,
    memory: StoredMeasurements | None = None,
) -> Answer:
    """The question's cells from the stored measurements of `quarters` (no ρ spent); from
    `memory` (then `con` is not read) when the caller holds them read already.

    A year whose four quarters are all asked and that was measured directly (`measure_year`) is
    answered from its combined year tables instead of the sum of its quarters; a breakdown by
    quarter still shows each quarter's own figures (which never change)."""
    whole = [
        y
        for y in sorted({q[:4] for q in quarters})
        if set(budget.year_quarters(y)) <= set(quarters)
    ]
    if memory is not None:
        candidates = covering(request, settings, catalogue, memory.workload(request.indicator))
        stored = memory.load([*quarters, *whole], request.indicator)
    else:
        assert con is not None, "the measurements are read from the warehouse"
        candidates = covering(request, settings, catalogue, stored_workload(con, request.indicator))
        stored = budget.load_measurements(con, [*quarters, *whole], request.indicator)
    per_quarter: dict[str, dict[str, budget.MeasuredTable]] = {}
    for t in stored:
        per_quarter.setdefault(t.period, {})[t.measurement] = t
    years = [y for y in whole if y in per_quarter]

    def units_for(m: Measurement) -> list[str]:
        # Each measured year holding `m` in place of its quarters; the other quarters as they are.
        mine = {y for y in years if m.name in per_quarter[y]}
        out: list[str] = []
        for q in quarters:
            if q[:4] in mine:
                if q[:4] not in out:
                    out.append(q[:4])
            else:
                out.append(q)
        return out

    def cost(m: Measurement) -> float:
        # The variance of one inner cell of the answer: cells summed × scale², per unit.
        total = 0.0
        for unit in units_for(m):
            t = per_quarter.get(unit, {}).get(m.name)
            if t is None:
                return float("inf")
            total += len(t.cells) * t.scale**2
        return total

    chosen = min(candidates, key=lambda m: (cost(m), m.name))
    if cost(chosen) == float("inf"):
        raise UsageError(
            "dp-not-measured",
            indicator=request.indicator,
            dimensions=", ".join(sorted(required_dimensions(request))) or "-",
            measured="-",
        )
    used: set[str] = set()

    def labelled(codes: Sequence[str]) -> pl.DataFrame:
        # Each unit's cells (a quarter, or a year measured directly) with its period column.
        if memory is not None:
            return _memory_cells(memory, chosen, request, codes, catalogue, used)
        frames = [
            _quarter_cells(per_quarter[q], chosen, request, catalogue, used).with_columns(
                pl.lit(_period_of(q, request.period_unit)).alias("period")
            )
            for q in codes
        ]
        return pl.concat(frames, how="vertical_relaxed")

    units = units_for(chosen)
    allq = labelled(units)
    keys = [d for d in request.dimensions if d != "period"] + (
        [OUTCOME] if OUTCOME in allq.columns else []
    )
    sums = [pl.col(VALUE).sum().cast(pl.Int64), pl.col(VARIANCE).sum()]
    if "period" in request.dimensions:
        # By quarter: each quarter's own figures; the total over them from the year if measured.
        rows = labelled(quarters) if request.period_unit == "quarter" else allq
        by_period = rows.group_by([*keys, "period"], maintain_order=True).agg(sums)
        overall = (
            allq.group_by(keys, maintain_order=True).agg(sums) if keys else allq.select(sums)
        ).with_columns(pl.lit(TOTAL).alias("period"))
        result = pl.concat([by_period, overall.select(by_period.columns)])
    else:
        result = allq.group_by(keys, maintain_order=True).agg(sums) if keys else allq.select(sums)
    return Answer(result, list(quarters), sorted(used), [u for u in units if budget.is_year(u)])


def _memory_cells(
    memory: StoredMeasurements,
    chosen: Measurement,
    request: TableRequest,
    quarters: Sequence[str],
    catalogue: IndicatorCatalogue,
    used: set[str],
) -> pl.DataFrame:
    """The question's cells in `quarters`, each with its period, from the shape's cells in every
    quarter (`_shape_cells`, computed once per shape): what `_quarter_cells` gives quarter by
    quarter, concatenated."""
    key = (
        "shape",
        request.indicator,
        chosen.name,
        tuple(d for d in request.dimensions if d != "period"),
        tuple((n, tuple(c)) for n, c in request.where if n != "period"),
    )
    shape: _ShapeCells = memory.remembered(
        key, lambda: _shape_cells(memory, chosen, request, catalogue)
    )
    for q in quarters:
        if q in shape.refused:
            raise UsageError("dp-not-measured", **shape.refused[q])
        used |= shape.used[q]
    frame = shape.frame.lazy()  # one polars call: the quarters asked, each with its period
    if list(quarters) != list(shape.quarters):
        position = {q: i for i, q in enumerate(quarters)}
        frame = frame.filter(pl.col(_Q).is_in(list(quarters)))
        if [q for q in shape.quarters if q in position] != list(quarters):
            frame = frame.sort(
                pl.col(_Q).replace_strict(position, return_dtype=pl.Int32), maintain_order=True
            )
    period = pl.col(_Q) if request.period_unit == "quarter" else pl.col(_Q).str.slice(0, 4)
    return frame.with_columns(period.alias("period")).drop(_Q).collect()


def _ledger_cells(
    tables: Sequence[budget.MeasuredTable], period: str, confidence: float
) -> pl.DataFrame:
    """The release ledger's rows for measured tables of one period: estimates (E) with margins."""
    return pl.concat(
        [
            t.cells.select(
                pl.lit(t.measurement).alias("table_name"),
                pl.lit(t.indicator).alias("indicator"),
                pl.Series(
                    "dimensions",
                    [_with_period(c, period) for c in t.cells.get_column("cell").to_list()],
                    pl.String,
                ),
                pl.col(VALUE).cast(pl.Float64).alias("value"),
                pl.lit("E").alias("obs_status"),
                pl.lit("F").alias("conf_status"),
                pl.lit(dp.margin_of_scale(t.scale, confidence)).alias("margin"),
            )
            for t in tables
        ]
    )


def _period_of(quarter: str, unit: str) -> str:
    return quarter if unit == "quarter" else quarter[:4]


def categories(
    request: TableRequest, quarters: Sequence[str], catalogue: IndicatorCatalogue
) -> dict[str, tuple[str, ...]]:
    """Every category of each asked dimension, `_T` last, as in a tabulated table."""
    out: dict[str, tuple[str, ...]] = {}
    for name in request.dimensions:
        if name == "period":
            codes = tuple(dict.fromkeys(_period_of(q, request.period_unit) for q in quarters))
        else:
            codes = catalogue.dimension(name).code_values
            wanted = request.filter_codes(name)
            if wanted:
                codes = tuple(c for c in codes if c in wanted)
            # A filter on a dimension one lies inside: --by governorate --where region=KRI
            # shows KRI's governorates only, --by age_group --where age_band=Y0T4 only 0-9.
            codes = tuple(c for c in codes if derived.within(catalogue, name, c, request.where))
        out[name] = (*codes, TOTAL)
    return out


def margin_column(variance: pl.Series, confidence: float) -> pl.Series:
    """The margin of error of each count from its variance (OpenDP's accuracy function)."""
    return pl.Series(
        MARGIN, [_margin_of_variance(v, confidence) for v in variance.to_list()], pl.Float64
    )


@functools.lru_cache(maxsize=8192)
def _margin_of_variance(variance: float, confidence: float) -> float:
    """`dp.margin_of_variance`, remembered: the same few variances recur in every answer."""
    return dp.margin_of_variance(variance, confidence)


def share_margins(
    yes: pl.Series, no: pl.Series, var_yes: pl.Series, var_no: pl.Series, confidence: float
) -> pl.Series:
    """Margins of 100·yes/(yes+no) by the delta method from the parts' variances."""
    out: list[float | None] = []
    for a, b, va, vb in zip(
        yes.to_list(), no.to_list(), var_yes.to_list(), var_no.to_list(), strict=True
    ):
        n = a + b
        if n <= 0:
            out.append(None)
            continue
        variance = (100.0 / n**2) ** 2 * (b**2 * va + a**2 * vb)
        out.append(round(dp.margin_of_share(variance, confidence), 1))
    return pl.Series(MARGIN, out, pl.Float64)


def describe_settings(settings: DPSettings) -> dict[str, Any]:
    return {
        **settings.to_dict(),
        "epsilon": dp.rho_to_epsilon(settings.rho_per_quarter, settings.delta),
    }


# --- the budget ------------------------------------------------------------------------------------


@dataclass
class BudgetReport:
    """ρ per registration quarter: the budget, what is spent, what is left, tables measured."""

    rho_per_quarter: float
    epsilon: float
    delta: float
    periods: list[dict[str, Any]]
    measured_now: list[str]
    spent_now: float
    years: list[dict[str, Any]] = field(default_factory=list)  # years measured directly

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parse_measurement(text: str, catalogue: IndicatorCatalogue) -> Measurement:
    """`registered_cases:governorate,age_band` as a measurement (checked against the catalogue)."""
    name, sep, dims = str(text).partition(":")
    if not sep or not name.strip():
        raise UsageError("dp-measure-invalid", text=str(text)[:60])
    by = tuple(d.strip() for d in dims.split(",") if d.strip())
    check_request(TableRequest(name.strip(), by), catalogue)
    if "period" in by:
        raise UsageError("dp-measure-invalid", text=str(text)[:60])
    return Measurement(name.strip(), by, 1.0)


def budget_report(
    warehouse: str | Path,
    *,
    measure: Sequence[str] = (),
    tables: Sequence[str] = (),
    rho: float | None = None,
    settings: DPSettings | None = None,
    actor: str | None = None,
) -> BudgetReport:
    """The budget of every quarter in the warehouse; with `measure` (periods), first measure the
    workload there, or only `tables` (indicator:dims, each with ρ `rho`), the steward's extras."""
    from casepool.catalogue.indicators import load_indicators
    from casepool.protecting.dp_settings import load_dp_settings
    from casepool.warehouse.store import current_actor, open_warehouse

    catalogue = load_indicators()
    settings = settings or load_dp_settings()
    check_workload(settings, catalogue)
    extras = [parse_measurement(t, catalogue) for t in tables]
    if extras and (rho is None or rho <= 0):
        raise UsageError("dp-measure-invalid", text="--rho")
    request = TableRequest("registered_cases", (), (("period", tuple(measure)),))
    if measure:
        check_request(request, catalogue)
    measured_now: list[str] = []
    spent_now = 0.0
    with open_warehouse(warehouse, read_only=not measure) as con:
        if measure:
            who = actor or current_actor()
            wanted = question_quarters(con, request)
            if extras:
                for quarter in wanted:
                    done = measure_quarter(
                        con,
                        quarter,
                        settings,
                        catalogue,
                        actor=who,
                        only=extras,
                        rhos={m.name: float(rho or 0) for m in extras},
                    )
                    measured_now += [f"{t.period} {t.measurement}" for t in done]
                    spent_now += sum(t.rho for t in done)
            else:
                # The workload where it is missing, and again where the data changed.
                done = measure_quarters(con, wanted, settings, catalogue, actor=who)
                # A whole year asked for: measured directly too, charged to its quarters.
                whole = measure_years(con, wanted, settings, catalogue, actor=who)
                measured_now += [f"{t.period} {t.measurement}" for t in done + whole]
                spent_now += sum(t.rho for t in done)
                spent_now += sum(t.rho for t in whole) * 4  # each of its four quarters pays
        spent = {r["period"]: r for r in budget.budget_rows(con)}
        quarters = sorted(set(data_quarters(con)) | set(spent))
        measured = budget.measured_periods(con)
        stale = budget.stale_periods(con)
        revised = budget.revisions(con)
        year_spent = budget.year_spends(con)
    rows = []
    for q in quarters:
        used = spent.get(q, {}).get("rho_spent", 0.0)
        state = "stale" if q in stale else "current" if q in measured else "-"
        rows.append(
            {
                "period": q,
                "rho": settings.rho_per_quarter,
                "spent": round(used, 6),
                "left": round(max(settings.rho_per_quarter - used, 0.0), 6),
                "tables": spent.get(q, {}).get("tables", 0),
                "measurements": state,
                "revisions": revised.get(q, 0),
                "year_spent": round(year_spent.get(q[:4], 0.0), 6),
            }
        )
    years = [
        {
            "year": y,
            "rho_per_quarter": round(rho_y, 6),
            "tables": len(measured.get(y, set())),
            "measurements": "stale" if y in stale else "current",
        }
        for y, rho_y in sorted(year_spent.items())
    ]
    return BudgetReport(
        rho_per_quarter=settings.rho_per_quarter,
        epsilon=dp.rho_to_epsilon(settings.rho_per_quarter, settings.delta),
        delta=settings.delta,
        periods=rows,
        measured_now=measured_now,
        spent_now=spent_now,
        years=years,
    )
