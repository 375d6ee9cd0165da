"""Protect tabulated counts for release: suppression with the disclosure-control engine, the LP audit
for an outsider and every organisation, then percentages and medians from the protected counts only
(suppressed when their numerator or denominator is, or the denominator is below k)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from casepool.catalogue.indicators import TOTAL, IndicatorCatalogue, TableRequest, load_indicators
from casepool.catalogue.tabulating import (
    CELL_KEY,
    CONTRIBUTOR,
    IN_NUMERATOR,
    OUTCOME,
    VALUE,
    Tabulation,
    indicator_values,
)
from casepool.core.errors import UsageError
from casepool.protecting import CountTable  # publishing needs the disclosure-control engine
from casepool.publishing.formats import PublishedTable

METHODS = ("suppress", "cellkey")


PERCENT_DECIMALS = 1


@dataclass
class Protected:
    """A tabulation with its protected counts and the audit's verdict."""

    tabulation: Tabulation
    counts: pl.DataFrame  # count dimensions, value (null when suppressed), obs_status, conf_status
    audit_ok: bool = True
    audit_failures: list[str] = field(
        default_factory=list
    )  # who could narrow a cell: outsider / org
    count_table: Any = None  # the engine's CountTable (for the release ledger)
    engine_frame: pl.DataFrame | None = None  # its protected cells, as the engine names them


def _outcome_name(tabulation: Tabulation) -> str:
    """The `outcome` dimension of a percentage, named after its indicator when protected, so the
    numerators of two shares over the same children stay distinct cells."""
    return f"{tabulation.indicator.name}__outcome"


def _count_table(
    tabulation: Tabulation, catalogue: IndicatorCatalogue, scope: str | None = None
) -> Any:
    from casepool.catalogue.relations import linked_population

    rename = {OUTCOME: _outcome_name(tabulation)} if OUTCOME in tabulation.count_dimensions else {}
    dims = [rename.get(d, d) for d in tabulation.count_dimensions]
    contributions = tabulation.contributions.rename(rename)
    # A scoped count is the numerator of a share over a wider population: one cell, one status.
    key, codes = linked_population(tabulation.indicator, catalogue)
    period = (("period", scope),) if scope else ()
    return CountTable(
        indicator=key,
        dimensions=tuple(dims),
        cells=tabulation.counts.rename(rename).select(*dims, VALUE),
        multi_valued=frozenset(tabulation.multi),
        contributions=contributions,
        name=tabulation.name,
        scope=period + codes,
        rollups=_rollups(catalogue),
    )


def with_population(
    tabulation: Tabulation,
    count: Callable[[TableRequest], Tabulation],
    catalogue: IndicatorCatalogue,
) -> Tabulation:
    """The tabulation with the whole population counted by the same dimensions (`count`), when
    its records are a `known:` / `recorded:` part of it, and with the population counted by the
    dimension whose categories a share's numerator is (catalogue.relations.numerator_parts);
    otherwise as it is."""
    from casepool.catalogue.relations import parts_of, subpopulation

    request = tabulation.request
    part = subpopulation(tabulation.indicator, catalogue)
    if part is not None:
        whole = TableRequest(
            part.base,
            request.dimensions,
            request.where,
            request.period_unit,
            f"{request.table_name}~{part.marker}",
        )
        tabulation = replace(tabulation, population=count(whole))
    link = parts_of(tabulation.indicator, catalogue)
    if link is not None and link.dimension not in request.dimensions:
        by = TableRequest(
            link.population,
            (link.dimension, *request.dimensions),
            request.where,
            request.period_unit,
            f"{request.table_name}~{link.dimension}",
        )
        tabulation = replace(tabulation, parts=count(by))
    return tabulation


def _denominators(tabulation: Tabulation, frame: pl.DataFrame) -> pl.DataFrame:
    """A count frame's denominator cells (a share's `outcome = _T`; every cell of a median's)."""
    if OUTCOME in frame.columns:
        return frame.filter(pl.col(OUTCOME) == TOTAL).drop(OUTCOME)
    return frame


def _complement_table(
    tabulation: Tabulation, catalogue: IndicatorCatalogue, scope: str | None
) -> CountTable | None:
    """The hidden table stating part + complement = population for every cell of a table over a
    `known:` / `recorded:` part of the population (catalogue.relations.subpopulation): marker
    `yes` (the table's denominators), `no` (the complement, a cell no table publishes, or the
    "not stated" category it equals) and the total (the population's own cell)."""
    from casepool.catalogue.relations import YES, subpopulation

    part = subpopulation(tabulation.indicator, catalogue)
    whole = tabulation.population
    if part is None or whole is None:
        return None
    dims = list(tabulation.dimensions)
    marker = part.marker
    period = (("period", scope),) if scope else ()

    def layered(yes: pl.DataFrame, total: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
        joined = total.join(yes, on=keys, how="full", coalesce=True, suffix="_yes").with_columns(
            pl.col(VALUE).fill_null(0), pl.col(f"{VALUE}_yes").fill_null(0)
        )
        parts = [
            joined.select(*keys, pl.lit(YES).alias(marker), pl.col(f"{VALUE}_yes").alias(VALUE)),
            joined.select(
                *keys, pl.lit("no").alias(marker), (pl.col(VALUE) - pl.col(f"{VALUE}_yes"))
            ),
            joined.select(*keys, pl.lit(TOTAL).alias(marker), pl.col(VALUE)),
        ]
        return pl.concat([p.select(marker, *keys, pl.col(VALUE).cast(pl.Int64)) for p in parts])

    cells = layered(
        _denominators(tabulation, tabulation.counts).select(*dims, VALUE),
        whole.counts.select(*dims, VALUE),
        dims,
    )
    if cells.filter(pl.col(VALUE) < 0).height:
        # The population counted fewer children than its part: aggregate packages made before
        # they carried the population's cells for this table. The relation cannot be stated.
        return None
    mine = [*dims, CONTRIBUTOR]
    contributions = layered(
        _denominators(tabulation, tabulation.contributions).select(*mine, VALUE),
        whole.contributions.select(*mine, VALUE),
        mine,
    ).filter(pl.col(VALUE) != 0)
    return CountTable(
        indicator=part.base,
        dimensions=(marker, *dims),
        cells=cells,
        multi_valued=frozenset(tabulation.multi),
        contributions=contributions,
        name=f"{tabulation.name}~{marker}",
        scope=period,
        rollups=_rollups(catalogue),
        hidden=True,
        aliases=(((marker, "no"), part.complement_alias),) if part.complement_alias else (),
    )


def _numerator_table(
    tabulation: Tabulation, catalogue: IndicatorCatalogue, scope: str | None
) -> CountTable | None:
    """The hidden table stating that a share's numerator is the sum of its population's cells of
    some categories (catalogue.relations.numerator_parts): the categories by the share's
    dimensions, and the share's numerator cells as their total (named by
    catalogue.relations.numerator_naming). Over a multi-valued dimension with several
    categories, each is at most the numerator and the numerator at most their sum. A scoped
    count that is such a numerator (catalogue.relations.parts_of): its cells are the total."""
    from casepool.catalogue.relations import numerator_naming, parts_of

    link = parts_of(tabulation.indicator, catalogue)
    parts = tabulation.parts
    share = OUTCOME in tabulation.count_dimensions
    if link is None or parts is None or share != (tabulation.indicator.kind == "percent"):
        return None
    d, dims = link.dimension, list(tabulation.dimensions)

    def stacked(categories: pl.DataFrame, counted: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
        numerator = counted.filter(pl.col(OUTCOME) == IN_NUMERATOR) if share else counted
        return pl.concat(
            [
                categories.filter(pl.col(d).is_in(link.codes)).select(d, *keys, VALUE),
                numerator.select(pl.lit(TOTAL).alias(d), *keys, VALUE),
            ],
            how="vertical_relaxed",
        ).with_columns(pl.col(VALUE).cast(pl.Int64))

    cells = stacked(parts.counts, tabulation.counts, dims)
    # The relation must hold in the counts (aggregate packages made before they carried these
    # cells may not): Σ categories = numerator, or for several categories of a multi-valued
    # dimension, each ≤ numerator ≤ Σ.
    whole = cells.filter(pl.col(d) == TOTAL).select(*dims, pl.col(VALUE).alias("_n"))
    sums = (
        cells.filter(pl.col(d) != TOTAL)
        .group_by(dims)
        .agg(pl.col(VALUE).sum().alias("_sum"), pl.col(VALUE).max().alias("_max"))
    )
    check = whole.join(sums, on=dims, how="full", coalesce=True).fill_null(0)
    holds = (
        (pl.col("_max") <= pl.col("_n")) & (pl.col("_n") <= pl.col("_sum"))
        if link.multi
        else pl.col("_n") == pl.col("_sum")
    )
    if check.filter(~holds).height:
        return None
    contributions = stacked(parts.contributions, tabulation.contributions, [*dims, CONTRIBUTOR])
    period = (("period", scope),) if scope else ()
    naming, aliases = numerator_naming(link, period)
    return CountTable(
        indicator=link.key,
        dimensions=(d, *dims),
        cells=cells,
        multi_valued=frozenset(tabulation.multi) | ({d} if link.multi else set()),
        contributions=contributions.filter(pl.col(VALUE) != 0),
        name=f"{tabulation.name}~{d}",
        scope=naming,
        rollups=_rollups(catalogue),
        hidden=True,
        aliases=aliases,
    )


def _rollups(
    catalogue: IndicatorCatalogue,
) -> tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]:
    """The hierarchies of derived dimensions an attacker knows: region = Σ its governorates,
    a wider age group = Σ its age bands (catalogue.indicators.hierarchies)."""
    from casepool.catalogue.indicators import hierarchies

    return hierarchies(catalogue)


def protect_tabulations(
    tabulations: Sequence[Tabulation],
    method: str = "suppress",
    settings: Any = None,
    catalogue: IndicatorCatalogue | None = None,
    *,
    scope: str | None = None,
    earlier: Sequence[Any] = (),
) -> list[Protected]:
    """Protect the tables together (cells they share get one status), then audit each one for an
    outsider and for every organisation as an insider.

    `scope` is the period the release covers (it names the cells of tables without a period
    dimension); `earlier` are the count tables of earlier releases from the ledger
    (casepool.publishing.releases.earlier_tables), protected together with the new ones."""
    from casepool import protecting

    if method not in METHODS:
        raise UsageError("method-invalid", method=method)
    catalogue = catalogue or load_indicators()
    settings = settings or protecting.load_protection_settings()
    tables = [_count_table(t, catalogue, scope) for t in tabulations]
    if method == "cellkey":
        return [
            _perturbed(t, table, settings) for t, table in zip(tabulations, tables, strict=True)
        ]
    # Tables share cells only when they count the same children (same population key); each
    # such group is one linked system for the engine, and groups are independent.
    groups: dict[str, list[int]] = {}
    for i, table in enumerate(tables):
        groups.setdefault(table.indicator, []).append(i)
    # Parts of the population (`known:` / `recorded:`) beside the population: hidden tables.
    # A share's numerator that is categories of its population: hidden tables too.
    hidden = [
        c
        for t in tabulations
        for c in (_complement_table(t, catalogue, scope), _numerator_table(t, catalogue, scope))
        if c is not None
    ]
    protected: list[Any] = [None] * len(tables)
    for key, members in groups.items():
        before = [t for t in earlier if t.indicator == key]
        relations = [h for h in hidden if h.indicator == key]
        results = protecting.protect([tables[i] for i in members] + before + relations, settings)
        for i, result in zip(members, results[: len(members)], strict=True):
            protected[i] = result
    out = []
    for tab, table, result in zip(tabulations, tables, protected, strict=True):
        report = audit_protected(tab, table, result.frame, result.k, settings)
        failures = sorted({v.attacker for v in report.failures})
        counts = _tidy_counts(tab, result.frame.rename(_back(tab)))
        out.append(Protected(tab, counts, report.protected, failures, table, result.frame))
    return audit_region_links(out, tables, settings)


def audit_region_links(
    protected: list[Protected], tables: Sequence[Any], settings: Any
) -> list[Protected]:
    """Audit each governorate table together with the region totals that other tables of the
    same children publish: a region total is the sum of its governorates, an equation the
    engine does not see when it protects the tables (it links cells by code, not by hierarchy).
    Fail closed: a governorate table whose hidden cells these totals would narrow is withheld.
    """
    from casepool import protecting

    regions = region_of_governorates()
    for g_index, g in enumerate(protected):
        if tuple(g.tabulation.count_dimensions) != ("governorate",):
            continue
        key = _children_of(tables[g_index])
        for r_index, r in enumerate(protected):
            dims = tuple(r.tabulation.count_dimensions)
            if _children_of(tables[r_index]) != key or "region" not in dims:
                continue
            others = [d for d in dims if d != "region"]
            linked = _region_linked_table(g.counts, r.counts, others, regions)
            own_others = [d for d in tables[r_index].dimensions if d != "region"]
            own = _region_linked_insiders(
                tables[g_index].contributions, tables[r_index].contributions, own_others, regions
            )
            report = protecting.audit(
                linked,
                k=settings.k,
                protection_interval=settings.interval_for(settings.k),
                insiders=own,
                flags_told=settings.flags_told,
                exact_limit=0,  # verdicts only (what is read here): the same, for fewer LPs
            )
            if not report.protected:
                g.audit_ok = False
                g.audit_failures = sorted(
                    set(g.audit_failures)
                    | {f"{v.attacker} (with {r.tabulation.name})" for v in report.failures}
                )
    return protected


def _children_of(table: Any) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Which children a count table's cells count, beyond their codes: its population and the
    codes its scope adds (a share's `known:` part, a numerator), the period aside."""
    return table.indicator, tuple(sorted(c for c in table.scope if c[0] != "period"))


def region_of_governorates() -> dict[str, str]:
    """Governorate code -> region code, from the governorate code list (and the catalogue's
    region dimension, which puts a governorate not stated in a region not stated)."""
    from casepool.catalogue.indicators import load_indicators

    return dict(load_indicators().dimension("region").region_of)


def _region_layout(
    governorates: pl.DataFrame,
    by_region: pl.DataFrame,
    others: list[str],
    regions: dict[str, str],
    keep: list[str],
) -> pl.DataFrame:
    """Governorate rows under their region and under _T, and region totals (other dimensions at
    _T) as region margins: the layout of one region x governorate table. Absent rows are zeros."""
    g = governorates.select("governorate", *keep)
    inner = g.filter(pl.col("governorate") != "_T").with_columns(
        pl.col("governorate").replace_strict(regions, default="_T").alias("region")
    )
    margin = g.with_columns(pl.lit("_T").alias("region"))
    totals = (
        by_region.filter(*[pl.col(d) == "_T" for d in others])
        .filter(pl.col("region") != "_T")
        .select("region", *keep)
        .with_columns(pl.lit("_T").alias("governorate"))
    )
    columns = ["region", "governorate", *keep]
    frame = pl.concat(
        [inner.select(columns), margin.select(columns), totals.select(columns)],
        how="vertical_relaxed",
    )
    return frame.with_columns(pl.col("value").cast(pl.Int64, strict=False))


def _region_linked_table(
    governorates: pl.DataFrame, by_region: pl.DataFrame, others: list[str], regions: dict[str, str]
) -> pl.DataFrame:
    """The published cells of both tables as one region x governorate table."""
    return _region_layout(
        governorates, by_region, others, regions, ["value", "obs_status", "conf_status"]
    )


def _region_linked_insiders(
    governorates: pl.DataFrame | None,
    by_region: pl.DataFrame | None,
    others: list[str],
    regions: dict[str, str],
) -> dict[str, pl.DataFrame]:
    """Each organisation's own counts laid out like `_region_linked_table`."""
    if governorates is None or by_region is None:
        return {}
    own = _region_layout(governorates, by_region, others, regions, ["contributor", "value"])
    return {
        str(org): own.filter(pl.col("contributor") == org).drop("contributor")
        for org in sorted(own.get_column("contributor").unique().to_list())
    }


def audit_protected(
    tabulation: Tabulation, table: Any, frame: pl.DataFrame, k: int, settings: Any
) -> Any:
    """The engine's LP audit of one protected count table: for an outsider and for each
    organisation that contributed to it, knowing its own counts and the cells it alone
    contributed to (`sole`: its count is the whole cell)."""
    from casepool import protecting

    dims = list(table.dimensions)
    whole = table.cells.select(*dims, pl.col(VALUE).alias("_whole"))
    others = pl.col("_whole") - pl.col(VALUE)
    dominant = (others >= 1) & (others < k) & (pl.col(VALUE) > 0)
    if not settings.dominance_small_cells:
        dominant = dominant & (pl.col("_whole") >= k)
    own = (
        table.contributions.join(whole, on=dims, how="left")
        .with_columns(
            ((pl.col(VALUE) == pl.col("_whole")) & (pl.col(VALUE) > 0)).alias("sole"),
            (dominant & pl.lit(settings.dominance)).alias("dominant"),
        )
        .drop("_whole")
    )
    insiders = {
        str(org): own.filter(pl.col(CONTRIBUTOR) == org).drop(CONTRIBUTOR)
        for org in sorted(own.get_column(CONTRIBUTOR).unique().to_list())
    }
    return protecting.audit(
        frame,
        k=k,
        protection_interval=settings.interval_for(k),
        multi_valued=tuple(tabulation.multi),
        insiders=insiders,
        total_code=settings.total_code,
        dominance=settings.dominance,
        flags_told=settings.flags_told,
        # Publishing reads the verdicts only (protected, who fails), never the intervals'
        # ends: each verdict proven with as few LPs as it needs gives the same verdicts.
        exact_limit=0,
    )


def _back(tabulation: Tabulation) -> dict[str, str]:
    name = _outcome_name(tabulation)
    return {name: OUTCOME} if OUTCOME in tabulation.count_dimensions else {}


def _perturbed(tabulation: Tabulation, table: Any, settings: Any) -> Protected:
    """Cell-key perturbation of every count (margins too) from the cell's key, with the engine's
    perturbation table: the same records give the same noise in every query."""
    from casepool.protecting.cellkey import cellkey_perturb

    cells = tabulation.counts.select(*tabulation.count_dimensions, VALUE, CELL_KEY)
    noisy = cellkey_perturb(cells, settings.cell_key).with_columns(
        pl.lit("A").alias("obs_status"), pl.lit("F").alias("conf_status")
    )
    return Protected(tabulation, _tidy_counts(tabulation, noisy))


def _tidy_counts(tabulation: Tabulation, frame: pl.DataFrame) -> pl.DataFrame:
    dims = list(tabulation.count_dimensions)
    protected = frame.select(*dims, VALUE, "obs_status", "conf_status")
    # Keep the tabulation's order of cells (code-list order, totals last).
    return tabulation.counts.select(dims).join(
        protected, on=dims, how="left", maintain_order="left"
    )


def _k_of(tabulation: Tabulation, settings: Any) -> int:
    return int(settings.k_for(tabulation.count_dimensions))


def published_flags(frame: pl.DataFrame, flags: str) -> pl.DataFrame:
    """The frame's conf_status as readers get it: with `combined` flags every suppressed cell is
    C (confidential), primary or secondary alike, so a flag tells nothing about a value; with
    `distinct`, C primary and D secondary as the engine set them. The engine's own statuses stay
    in the release ledger for the steward (`Protected.engine_frame`)."""
    if flags != "combined" or "conf_status" not in frame.columns:
        return frame
    return frame.with_columns(
        pl.when(pl.col("conf_status") == "D")
        .then(pl.lit("C"))
        .otherwise(pl.col("conf_status"))
        .alias("conf_status")
    )


def published_table(protected: Protected, settings: Any) -> PublishedTable:
    """The tidy table of one protected tabulation: counts as they are, percentages and medians
    computed from protected counts and suppressed when a part is (never recoverable)."""
    tab = protected.tabulation
    dims = list(tab.dimensions)
    ind = tab.indicator
    # Tidy as DESIGN.md says: indicator, dimensions, value and flags (the unit is the
    # indicator's, in JSON, SDMX UNIT_MEASURE and the DuckDB catalogue), so `casepool audit`
    # reads a published count table as it is.
    head = [pl.lit(ind.name).alias("indicator")]
    counts = protected.counts
    if ind.kind == "count":
        frame = counts.select(
            *head, *dims, pl.col(VALUE).cast(pl.Int64), "obs_status", "conf_status"
        )
    else:
        from casepool.protecting.ratios import suppress_ratios

        values = indicator_values(tab, counts.select(*tab.count_dimensions, VALUE))
        if ind.kind == "percent":
            part, whole = (
                counts.filter(pl.col(OUTCOME) == code).drop(OUTCOME)
                for code in (IN_NUMERATOR, TOTAL)
            )
        else:
            part, whole = None, counts
        ratios = suppress_ratios(
            values.select(*dims, VALUE),
            dims,
            denominator=whole,
            numerator=part,
            min_denominator=settings.ratio_min_denominator or _k_of(tab, settings),
        )
        if ind.kind == "percent":
            ratios = ratios.with_columns(pl.col(VALUE).round(PERCENT_DECIMALS))
        extra = ["numerator", "denominator"] if ind.kind == "percent" else ["denominator"]
        frame = (
            ratios.join(values.select(*dims, *extra), on=dims, how="left", maintain_order="left")
            if dims
            else pl.concat([ratios, values.select(extra)], how="horizontal")
        ).select(
            *head,
            *dims,
            pl.col(VALUE).cast(pl.Float64),
            "obs_status",
            "conf_status",
            *(pl.col(c).cast(pl.Int64) for c in extra),
        )
    return PublishedTable(
        name=tab.name,
        indicator=ind,
        dimensions=tuple(dims),
        frame=published_flags(frame, settings.flags),
        first=tab.first,
        last=tab.last,
        period_unit=tab.request.period_unit,
        flags=settings.flags,
    )
