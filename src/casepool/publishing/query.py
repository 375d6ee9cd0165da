"""Ad-hoc questions for analysts: `query` one indicator, answered with differential privacy.

Every answer is differentially private (zCDP, OpenDP's discrete Gaussian): each registration
quarter's declared workload of tables is measured once, spending that quarter's budget, and every
question is answered from those measurements by post-processing (casepool.publishing.dp_answers):
no further spend, the same answer every time, for any number of analysts. Each figure carries its
margin of error. Every answer is written to the release ledger (kind "query", method "dp").

Suppression and cell-key perturbation are not offered here: a sequence of overlapping questions
undoes them (differencing), which is what a budget with composition prevents. The official
catalogue (`casepool publish`) keeps suppression.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from casepool.catalogue.aggregating import aggregate_orgs
from casepool.catalogue.indicators import (
    LATEST,
    Indicator,
    IndicatorCatalogue,
    TableRequest,
    check_request,
    formula_text,
    load_indicators,
    parse_by,
    parse_where,
    resolve_latest,
)
from casepool.catalogue.population import read_population
from casepool.catalogue.tabulating import IN_NUMERATOR, NOT_IN_NUMERATOR, OUTCOME, VALUE
from casepool.core.errors import UsageError
from casepool.publishing.formats import (
    PublishedTable,
    hxl_text,
    sdmx_frame,
    table_json,
    write_table_csv,
    write_table_hxl,
    write_table_json,
    write_table_sdmx,
    write_workbook,
)
from casepool.publishing.publish import note_title
from casepool.publishing.rates import rates_of

METHODS = ("dp",)
ESTIMATED = "E"  # SDMX OBS_STATUS: estimated value
PERCENT_DECIMALS = 1


@dataclass
class QueryResult:
    """One differentially private table asked for by an analyst, with its margins of error."""

    table: PublishedTable
    method: str
    confidence: float
    periods: list[str] = field(default_factory=list)  # the registration quarters it covers
    measured: list[str] = field(default_factory=list)  # the measured tables it was answered from
    spent: float = 0.0  # ρ this call spent measuring quarters nobody had asked about before
    release_id: str = ""
    # Organisations whose active packages are aggregate-only: DP answers read records only.
    aggregate_excluded: tuple[str, ...] = ()

    def notes(self, lang: str = "en") -> list[str]:
        """What the answer leaves out, one line each in `lang`."""
        from casepool.core.i18n import render

        if not self.aggregate_excluded:
            return []
        orgs = ", ".join(self.aggregate_excluded)
        return [render("query-aggregate-excluded", lang, orgs=orgs)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "aggregate_packages_excluded": list(self.aggregate_excluded),
            "notes": self.notes(),
            "method": self.method,
            "confidence": self.confidence,
            "periods": self.periods,
            "measured_tables": self.measured,
            "rho_spent": self.spent,
            "release_id": self.release_id,
            **_json_ready(self.table),
        }


def _json_ready(table: PublishedTable) -> dict[str, Any]:
    return table_json(table, load_indicators())


def _request(
    indicator: str,
    by: str | Sequence[str] | None,
    where: Sequence[str] | Sequence[tuple[str, Sequence[str]]],
    period_unit: str,
) -> TableRequest:
    dims = parse_by(by) if isinstance(by, str) or by is None else tuple(by)
    filters = tuple(
        pair
        for w in where
        for pair in (parse_where([w]) if isinstance(w, str) else [(str(w[0]), tuple(w[1]))])
    )
    return TableRequest(indicator, dims, filters, period_unit)


def query(
    warehouse: str | Path,
    indicator: str,
    *,
    by: str | Sequence[str] | None = None,
    where: Sequence[str] | Sequence[tuple[str, Sequence[str]]] = (),
    method: str = "dp",
    period_unit: str = "year",
    settings: Any = None,
    actor: str | None = None,
) -> QueryResult:
    """One indicator as a differentially private table with its margins and margins of error.

    `by`: "governorate,sex" or a sequence; `where`: "sex=M" texts or (dimension, codes) pairs;
    `settings`: DPSettings (default: schemas/protection.yaml). Refuses (UsageError, nothing
    spent) an unknown indicator, dimension or code, a period outside the data, a question the
    workload cannot answer, or a measurement the budget cannot pay for.
    """
    from casepool.protecting.dp_settings import load_dp_settings
    from casepool.publishing import dp_answers
    from casepool.warehouse.store import current_actor, open_warehouse

    if method not in METHODS:
        check_request(_request(indicator, by, where, period_unit), load_indicators())
        raise UsageError("query-method-invalid", method=method)
    dp_settings = settings or load_dp_settings()
    who = actor or current_actor()
    with open_warehouse(warehouse) as con:
        asked = resolve_question(con, indicator, by, where, period_unit, dp_settings)
        measured = dp_answers.measure_quarters(
            con, asked.quarters, dp_settings, load_indicators(), actor=who
        )
        answered = answer_measured(con, asked, dp_settings)
        con.begin()
        try:
            release_id = record_answer(con, answered, who)
            con.commit()
        except BaseException:
            con.rollback()
            raise
    return replace(answered.result, spent=sum(t.rho for t in measured), release_id=release_id)


@dataclass(frozen=True)
class Question:
    """A question resolved against the warehouse: the request to answer (a rate asks for the
    count it divides), the indicator asked, and the registration quarters it covers."""

    request: TableRequest
    asked: str
    quarters: tuple[str, ...]


@dataclass
class Answered:
    """A question answered from stored measurements, before its release is recorded."""

    question: Question
    result: QueryResult
    cells: pl.DataFrame
    detail: dict[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """What answering reads from the warehouse besides the cases' state, read once in one
    connection so that many questions on the same data are answered without opening it: the
    data's quarters, last registration month, reference population, aggregate-only
    organisations and the stored measurements. Counts and percentages only (a median reads
    its histograms from the warehouse)."""

    quarters: tuple[str, ...]
    last_report: Any
    population: Any
    excluded: tuple[str, ...]
    stored: Any  # dp_answers.StoredMeasurements

    @classmethod
    def read(cls, con: Any) -> Snapshot:
        from casepool.publishing import dp_answers

        (last,) = con.execute("SELECT max(report_date) FROM active_cases").fetchone() or (None,)
        return cls(
            tuple(dp_answers.data_quarters(con)),
            last,
            read_population(con),
            aggregate_orgs(con),
            dp_answers.StoredMeasurements.read(con),
        )


class NotMeasured(Exception):
    """The question's quarters lack their measurements, or those were taken from data that has
    changed since: answering needs the warehouse for writing (`dp_answers.measure_quarters`)."""


def resolve_question(
    con: Any,
    indicator: str,
    by: str | Sequence[str] | None,
    where: Sequence[str] | Sequence[tuple[str, Sequence[str]]],
    period_unit: str,
    settings: Any,
    snapshot: Snapshot | None = None,
) -> Question:
    """Check the question and find its quarters (a read-only connection is enough; none with
    `snapshot`, read from the same data); refuses as `query` does, before anything is measured
    or spent."""
    from casepool.publishing import dp_answers, dp_medians

    request = _request(indicator, by, where, period_unit)
    catalogue = load_indicators()
    check_request(request, catalogue)
    dp_answers.check_workload(settings, catalogue)
    asked = catalogue.indicator(request.indicator)
    # A rate is the count it divides, answered privately, then divided by the reference
    # population: post-processing, so it costs nothing more than the count.
    if asked.unit == "rate":
        request = replace(request, indicator=_counted_by(asked, catalogue).name)
        population = snapshot.population if snapshot is not None else read_population(con)
        if population is None:
            raise UsageError("rate-needs-population")
    if LATEST in (request.filter_codes("period") or ()):
        if snapshot is not None:
            last = snapshot.last_report
        else:
            (last,) = con.execute("SELECT max(report_date) FROM active_cases").fetchone() or (None,)
        request = resolve_latest(request, last)
    # Refuse a question no table can answer before anything is measured or spent.
    if asked.kind == "median":
        dp_medians.covering_median(request, settings, catalogue)
    else:
        workload = (
            snapshot.stored.workload(request.indicator)
            if snapshot is not None
            else dp_answers.stored_workload(con, request.indicator)
        )
        dp_answers.covering(request, settings, catalogue, workload)
    available = snapshot.quarters if snapshot is not None else None
    quarters = tuple(dp_answers.question_quarters(con, request, available))
    return Question(request, asked.name, quarters)


def measurements_current(
    con: Any, quarters: Sequence[str], settings: Any, bases: dict[str, Any] | None = None
) -> bool:
    """Whether every quarter holds its whole workload, measured from the data as it is now (then
    answering reads only; else `measure_quarters` must write first). Read-only; `bases`: the
    warehouse's `budget.current_bases` when the caller has read them already."""
    from casepool.warehouse import budget

    state = (budget.measured_periods(con), budget.stale_periods(con, bases))
    return quarters_current(quarters, settings, state)


def quarters_current(
    quarters: Sequence[str], settings: Any, state: tuple[dict[str, set[str]], set[str]]
) -> bool:
    """`measurements_current` from `state`: the measured tables of each quarter
    (`budget.measured_periods`) and the stale quarters (`budget.stale_periods`)."""
    done, stale = state
    wanted = {m.name for m in settings.measurements}
    if any(wanted - done.get(q, set()) for q in quarters):
        return False
    return not (stale & set(quarters))


def answer_measured(
    con: Any,
    question: Question,
    settings: Any,
    state: tuple[dict[str, set[str]], set[str]] | None = None,
    snapshot: Snapshot | None = None,
) -> Answered:
    """The protected table of a resolved question from the stored measurements only: pure
    post-processing, nothing spent or written (a read-only connection is enough). Raises
    NotMeasured when the measurements are missing or stale (`state`: see `quarters_current`,
    when the caller has read it from this connection's data already). With `snapshot` (and
    `state`) read from the same data, `con` is read only for a median."""
    from casepool.publishing import dp_answers, dp_medians

    current = (
        quarters_current(question.quarters, settings, state)
        if state is not None
        else measurements_current(con, question.quarters, settings)
    )
    if not current:
        raise NotMeasured()
    catalogue = load_indicators()
    request, quarters = question.request, list(question.quarters)
    asked = catalogue.indicator(question.asked)
    if asked.kind == "median":  # from the noisy histogram of months: nothing more spent
        cells = dp_answers.categories(request, quarters, catalogue)
        frame, used = dp_medians.median_table(con, request, quarters, settings, catalogue, cells)
        table = median_dp_table(frame, request, catalogue)
    else:
        memory = snapshot.stored if snapshot is not None else None
        answer = dp_answers.answer(con, request, quarters, settings, catalogue, memory)
        table = dp_table(answer, request, catalogue, settings.confidence)
        used = answer.tables
    if asked.unit == "rate":
        population = snapshot.population if snapshot is not None else read_population(con)
        table = rates_of(replace(table, indicator=asked), population)
    # Aggregate-only packages are counts, not records: DP answers cannot include them.
    excluded = snapshot.excluded if snapshot is not None else aggregate_orgs(con)
    result = QueryResult(
        table, "dp", settings.confidence, quarters, used, aggregate_excluded=excluded
    )
    detail = {
        "measured_tables": used,
        "where": [[n, list(c)] for n, c in request.where],
        "confidence": settings.confidence,
    }
    return Answered(question, result, ledger_cells(table, request, quarters), detail)


def record_answer(con: Any, answered: Answered, actor: str) -> str:
    """Write one answer to the release ledger in the caller's transaction; its release id."""
    from casepool.warehouse.ledger import record_releases

    return record_releases(con, [answer_release(answered, actor)])[0]


def answer_release(answered: Answered, actor: str) -> Any:
    """An answer's entry in the release ledger (`ledger.NewRelease`), for writing many at once
    (`ledger.record_releases`)."""
    from casepool.warehouse.ledger import NewRelease

    return NewRelease(
        kind="query",
        method="dp",
        actor=actor,
        cells=answered.cells,
        periods=list(answered.question.quarters),
        detail=answered.detail,
    )


def _counted_by(rate: Indicator, catalogue: IndicatorCatalogue) -> Indicator:
    """The count indicator a rate divides: the same records (scope, numerator, denominator)."""
    for candidate in catalogue.indicators.values():
        if candidate.unit == "count" and (
            candidate.scope,
            candidate.numerator,
            candidate.denominator,
        ) == (
            rate.scope,
            rate.numerator,
            rate.denominator,
        ):
            return candidate
    raise UsageError("query-method-invalid", method=f"dp for {rate.name}")


def dp_table(
    answer: Any, request: TableRequest, catalogue: IndicatorCatalogue, confidence: float
) -> PublishedTable:
    """The tidy table of a DP answer: every category, value, margin (of error) and flags."""
    from casepool.publishing import dp_answers

    indicator = catalogue.indicator(request.indicator)
    dims = list(request.dimensions)
    cats = dp_answers.categories(request, answer.quarters, catalogue)
    grid = _grid(tuple((d, cats[d]) for d in dims))
    frame = answer.frame
    head = [pl.lit(indicator.name).alias("indicator")]
    flags = [pl.lit(ESTIMATED).alias("obs_status"), pl.lit("F").alias("conf_status")]

    def joined(part: pl.DataFrame) -> pl.DataFrame:
        if not dims:
            return part
        found = grid.join(part, on=dims, how="left", maintain_order="left")
        assert found.get_column(VALUE).null_count() == 0, "a cell was not answered"
        return found

    if indicator.kind == "count":
        cells = joined(frame)
        out = cells.select(
            *head,
            *dims,
            pl.col(VALUE).cast(pl.Int64),
            dp_answers.margin_column(cells.get_column(dp_answers.VARIANCE), confidence),
            *flags,
        )
    else:
        yes = joined(frame.filter(pl.col(OUTCOME) == IN_NUMERATOR).drop(OUTCOME))
        no = joined(frame.filter(pl.col(OUTCOME) == NOT_IN_NUMERATOR).drop(OUTCOME))
        a, b = yes.get_column(VALUE), no.get_column(VALUE)
        va, vb = yes.get_column(dp_answers.VARIANCE), no.get_column(dp_answers.VARIANCE)
        denominator = a + b
        share = pl.Series(
            VALUE,
            [
                round(100.0 * x / n, PERCENT_DECIMALS) if n > 0 else None
                for x, n in zip(a.to_list(), denominator.to_list(), strict=True)
            ],
            pl.Float64,
        )
        out = yes.select(*dims).select(
            *head,
            *dims,
            pl.lit(share),
            pl.lit(dp_answers.share_margins(a, b, va, vb, confidence)),
            *flags,
            pl.lit(a.cast(pl.Int64)).alias("numerator"),
            pl.lit(denominator.cast(pl.Int64)).alias("denominator"),
        )
    return _answer_table(request, indicator, out)


@functools.lru_cache(maxsize=512)
def _grid(categories: tuple[tuple[str, tuple[str, ...]], ...]) -> pl.DataFrame:
    """Every combination of the dimensions' categories, the first dimension slowest (the same
    few grids recur in every answer; frames are never changed in place)."""
    grid = pl.DataFrame({"_": [0]})
    for d, codes in categories:
        grid = grid.join(pl.DataFrame({d: list(codes)}, schema={d: pl.String}), how="cross")
    return grid.drop("_")


def median_dp_table(
    frame: pl.DataFrame, request: TableRequest, catalogue: IndicatorCatalogue
) -> PublishedTable:
    """The tidy table of a DP median: every category, median months, margin (of error), flags."""
    indicator = catalogue.indicator(request.indicator)
    dims = list(request.dimensions)
    out = frame.select(
        pl.lit(indicator.name).alias("indicator"),
        *dims,
        pl.col(VALUE),
        pl.col("margin"),
        pl.lit(ESTIMATED).alias("obs_status"),
        pl.lit("F").alias("conf_status"),
    )
    return _answer_table(request, indicator, out)


def _answer_table(
    request: TableRequest, indicator: Indicator, frame: pl.DataFrame
) -> PublishedTable:
    """A DP answer's tidy frame as a PublishedTable (an answer has no first or last published
    period of its own)."""
    return PublishedTable(
        name=request.table_name,
        indicator=indicator,
        dimensions=tuple(request.dimensions),
        frame=frame,
        first=None,
        last=None,
        period_unit=request.period_unit,
    )


def ledger_cells(
    table: PublishedTable, request: TableRequest, quarters: Sequence[str]
) -> pl.DataFrame:
    """The answer's cells as the release ledger keeps them (filters and quarters in each cell)."""
    from casepool.warehouse.ledger import cell_identity

    fixed = {n: "+".join(c) for n, c in request.where if n not in table.dimensions}
    if "period" not in table.dimensions:
        fixed["period"] = quarters[0] if len(quarters) == 1 else f"{quarters[0]}..{quarters[-1]}"
    rows = table.frame.to_dicts()
    return pl.DataFrame(
        {
            "table_name": [table.name] * len(rows),
            "indicator": [table.indicator.name] * len(rows),
            "dimensions": [
                cell_identity({**fixed, **{d: r[d] for d in table.dimensions}}) for r in rows
            ],
            "value": [r[VALUE] for r in rows],
            "obs_status": [r["obs_status"] for r in rows],
            "conf_status": [r["conf_status"] for r in rows],
            "margin": [r["margin"] for r in rows],
        },
        schema={
            "table_name": pl.String,
            "indicator": pl.String,
            "dimensions": pl.String,
            "value": pl.Float64,
            "obs_status": pl.String,
            "conf_status": pl.String,
            "margin": pl.Float64,
        },
    )


def write_query(result: QueryResult, path: str | Path, fmt: str, lang: str = "en") -> None:
    """Write one query's table in `fmt` (csv, xlsx, json, hxl, sdmx, table)."""
    catalogue = load_indicators()
    path = Path(path)
    if fmt in {"csv", "table"}:
        write_table_csv(result.table, path)
    elif fmt == "hxl":
        write_table_hxl(result.table, path, catalogue)
    elif fmt == "sdmx":
        write_table_sdmx(result.table, path, catalogue)
    elif fmt == "json":
        write_table_json(result.table, path, catalogue)
    elif fmt == "xlsx":
        write_workbook([result.table], path, catalogue, lang, notes=[note_title(lang)])
    else:
        raise UsageError("format-invalid", format=fmt)


def format_text(result: QueryResult, fmt: str, lang: str = "en") -> str:
    """The table as text for stdout in csv, hxl, sdmx or json."""
    import json

    from casepool.core.writing import formula_safe

    catalogue = load_indicators()
    if fmt == "json":
        return json.dumps(result.to_dict(), ensure_ascii=False, indent=2, default=str) + "\n"
    if fmt == "sdmx":
        return sdmx_frame(result.table, catalogue).write_csv()
    text = formula_safe(result.table.frame).write_csv()
    if fmt == "hxl":
        return hxl_text(result.table, catalogue)
    return text


def estimate_text(value: Any, margin: Any, unit: str) -> str:
    """`≈ 27 (± 6)` for a count, `≈ 41.2 (± 3.5)` for a percentage; `–` when there is none."""
    if value is None:
        return "–"
    if unit == "count":
        return f"≈ {int(value):,} (± {float(margin or 0):,.0f})"
    return f"≈ {float(value):.1f} (± {float(margin or 0):.1f})"


def list_indicators(lang: str = "en") -> list[dict[str, Any]]:
    """Every indicator with its label in `lang`, unit and allowed dimensions."""
    catalogue = load_indicators()
    return [
        {
            "indicator": ind.name,
            "label": ind.label(lang),
            "unit": ind.unit,
            "formula": formula_text(ind, catalogue),
            "dimensions": [
                {"name": d, "label": catalogue.dimension(d).label(lang)} for d in ind.dimensions
            ],
        }
        for ind in catalogue.indicators.values()
    ]
