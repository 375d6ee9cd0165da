"""The official catalogue as one release: `build_publication` tabulates, protects together with the
release ledger and audits once (an in-memory `Publication`); `publish` writes it in every format and
records it. A table that fails its audit is never written."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from casepool.catalogue.indicators import (
    TOTAL,
    IndicatorCatalogue,
    TableRequest,
    load_indicators,
)
from casepool.catalogue.population import read_population
from casepool.catalogue.publication import load_publication
from casepool.catalogue.tabulating import Tabulation, covered_span, tabulate
from casepool.core.errors import TableError, UsageError
from casepool.core.periods import parse_period
from casepool.core.schema import LANGUAGES
from casepool.protecting.tables import reusing_results
from casepool.publishing.formats import (
    PublishedTable,
    write_aggregates,
    write_manifest,
    write_metadata,
    write_table_csv,
    write_table_hxl,
    write_table_json,
    write_table_sdmx,
    write_workbook,
)
from casepool.publishing.protect import protect_tabulations, published_table, with_population
from casepool.publishing.rates import apply_rates, without_rates
from casepool.publishing.recoding import (
    Coarsening,
    RecodingSettings,
    back_one_round,
    check_steps,
    load_recoding,
    published_figures,
    recode,
    refinement_order,
    undo_losses,
    written_share,
)

Progress = Callable[[str], None]


@dataclass
class TableOutcome:
    """What publish did with one catalogue table."""

    name: str
    indicator: str
    cells: int
    suppressed: int
    written: bool
    audit_failures: list[str] = field(default_factory=list)
    coarsened: list[str] = field(default_factory=list)  # how global recoding coarsened it
    # Why its cells are suppressed (see `suppression_causes`): cause -> cells.
    causes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.name,
            "indicator": self.indicator,
            "cells": self.cells,
            "suppressed": self.suppressed,
            "written": self.written,
            "audit_failures": self.audit_failures,
            "coarsened": self.coarsened,
            "suppressed_by": dict(self.causes),
        }


@dataclass
class PublishResult:
    """The publication written by `publish`: its tables, files and what was withheld."""

    out_dir: Path
    period: str | None
    tables: list[TableOutcome]
    files: list[Path]
    seconds: float
    coarsened: list[Coarsening] = field(default_factory=list)  # global recoding, in order

    @property
    def ok(self) -> bool:
        return all(t.written for t in self.tables)

    @property
    def cells(self) -> int:
        """Cells of the tables written."""
        return sum(t.cells for t in self.tables if t.written)

    @property
    def suppressed(self) -> int:
        return sum(t.suppressed for t in self.tables if t.written)

    @property
    def suppressed_share(self) -> float:
        """The share of the written cells that are suppressed (the release's utility cost)."""
        return self.suppressed / self.cells if self.cells else 0.0

    @property
    def causes(self) -> dict[str, int]:
        """Suppressed cells of the written tables by cause (`suppression_causes`)."""
        return add_causes(t.causes for t in self.tables if t.written)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out_dir),
            "period": self.period,
            "ok": self.ok,
            "tables": [t.to_dict() for t in self.tables],
            "cells": self.cells,
            "suppressed": self.suppressed,
            "suppressed_share": round(self.suppressed_share, 4),
            "suppressed_by": self.causes,
            "coarsened": [c.to_dict() for c in self.coarsened],
            "files": [str(f.relative_to(self.out_dir)) for f in self.files],
            "seconds": round(self.seconds, 3),
        }


def note_title(lang: str) -> str:
    from casepool.core.i18n import render

    return render("publication-title", lang)


@dataclass
class Publication:
    """One protected, audited release held in memory: what `publish` writes and `report` draws.

    Built once by `build_publication` (tabulate, protect together, audit); written to files by
    `write_publication`; read back from a folder only by `casepool.reporting.tables.read_publication`.
    """

    period: str | None
    tables: list[PublishedTable]  # the tables that passed their audit, ready to release
    outcomes: list[TableOutcome]  # every catalogue table, written or withheld
    catalogue: IndicatorCatalogue
    settings: Any
    seconds: float = 0.0
    # For the release ledger: the protected count tables that pass, the scope, the data.
    kept: list[Any] = field(default_factory=list)
    scope: str = ""
    submissions: list[str] = field(default_factory=list)
    released_before: int = 0
    ledger: bool = True
    coarsened: list[Coarsening] = field(default_factory=list)  # global recoding, in order

    def table(self, name: str) -> PublishedTable:
        return next(t for t in self.tables if t.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "tables": [o.to_dict() for o in self.outcomes],
            "seconds": round(self.seconds, 3),
        }


@reusing_results()  # the recoding rounds protect unchanged tables again: solved once
def build_publication(
    warehouse: str | Path,
    period: str | None = None,
    progress: Progress | None = None,
    *,
    settings: Any = None,
    tables: Sequence[TableRequest] | None = None,
    ledger: bool = True,
    recoding: RecodingSettings | None = None,
) -> Publication:
    """Tabulate, protect together and audit every table of schemas/publication.yaml (or of
    `tables`) for `period` (a year or quarter, e.g. "2025", "2025-Q3"; None: every period).
    Nothing is written; a table that fails its audit is withheld.

    With `ledger` (the default) the tables are protected together with every earlier release in
    the warehouse's release ledger; `record_publication_release` then records what leaves.
    Without it, the publication stands alone (a draft for the steward's eyes only).

    `recoding` (default: the `recoding:` section of schemas/protection.yaml): a table withheld
    or suppressed beyond the set share is recoded one step coarser and the release protected
    again (casepool.publishing.recoding); `Publication.coarsened` says what was recoded."""
    from casepool import protecting
    from casepool.warehouse.store import open_warehouse

    started = time.perf_counter()
    notify = progress or (lambda text: None)
    catalogue = load_indicators()
    requests = tuple(tables) if tables is not None else load_publication(catalogue)
    chosen = parse_period(period) if period else None
    settings = settings or protecting.load_protection_settings()
    recoding = recoding if recoding is not None else load_recoding()
    check_steps(recoding, catalogue)
    with open_warehouse(warehouse, read_only=True) as con:
        population = read_population(con)  # rates only with a loaded child population
        requests = without_rates(requests, catalogue, population)
    if chosen is not None:
        requests = tuple(
            TableRequest(
                r.indicator, r.dimensions, (("period", (chosen.code,)),), r.period_unit, r.name
            )
            for r in requests
        )
    cache: dict[TableRequest, Tabulation] = {}
    coarsened: list[Coarsening] = []
    # Global recoding: protect, move every table over the set share one step coarser, protect
    # the whole release again. A coarsening that made its table worse by the rule's measure
    # (recoding.goal: fewer figures, or a larger hidden share and fewer figures while the
    # release's share does not gain) is undone, then the release is protected again: under the
    # figures rule that table is never recoded again; under the share rule it tries its later
    # steps and its total, never the undone one. What was protected last is what is released.
    counted: list[str] | None = None
    rounds = 0
    # A safety bound: every round coarsens, or undoes a step that is then frozen (figures rule)
    # or skipped by its table (share rule: the table tries its later steps and its total).
    limit = 3 * len(recoding.steps) + 5
    baseline: dict[str, int] | None = None  # figures per table in the release as asked
    history: dict[str, list[TableRequest]] = {}  # each coarsened table's finer requests
    frozen: set[str] = set()
    skipped: dict[str, frozenset[str]] = {}  # the share rule's undone steps, per table
    last_round: list[Coarsening] = []  # the coarsenings of the round just protected
    # The share rule's last pass: with the release under the share, each coarsened table tried
    # one step finer, kept finer while the release stays under it (`refinement_order`).
    refining = False
    trial: tuple[str, TableRequest, Coarsening, int] | None = None  # table, its coarser request
    tried: set[str] = set()
    trials = 0
    while True:
        tabulations, scope, submissions, earlier, population = _tabulate_release(
            warehouse, requests, chosen, catalogue, cache, notify, ledger
        )
        if counted is not None and submissions != counted:
            # The data changed between two rounds: count every table again from the same data.
            cache.clear()
            tabulations, scope, submissions, earlier, population = _tabulate_release(
                warehouse, requests, chosen, catalogue, cache, notify, ledger
            )
        counted = submissions
        notify(f"protect {len(tabulations)} tables with {len(earlier)} released before")
        try:
            protected = protect_tabulations(
                tabulations, "suppress", settings, catalogue, scope=scope, earlier=earlier
            )
        except TableError as exc:
            if last_round and exc.key == "protect-linked-mismatch":
                # A coarser table the data cannot count like its neighbours (an aggregate-only
                # package carries counts at the publication's own breakdowns, not the coarser
                # one's): the round's coarsenings are undone and not tried again.
                requests, coarsened = back_one_round(requests, coarsened, last_round, history)
                frozen |= {c.table for c in last_round}
                last_round = []
                rounds += 1
                notify("undo a round the data cannot count alike")
                continue
            if not earlier:
                raise
            # Fail closed: a release the ledger cannot protect is held, never written.
            raise TableError("release-held", reason=exc.message("en")) from exc
        outcomes: list[TableOutcome] = []
        released: list[PublishedTable] = []
        for p in protected:
            table = published_table(p, settings)
            outcomes.append(
                TableOutcome(
                    table.name,
                    table.indicator.name,
                    table.cells,
                    table.suppressed,
                    p.audit_ok,
                    p.audit_failures,
                    causes=suppression_causes(p, table, settings),
                )
            )
            if p.audit_ok:
                released.append(table)
        if rounds >= limit:
            break  # what was protected last is what is released
        shares = {o.name: (o.cells, o.suppressed, o.written) for o in outcomes}
        if baseline is None:
            baseline = {name: published_figures(*share) for name, share in shares.items()}
        if trial is not None:
            name, coarse, step, written_before = trial
            trial = None
            share, written = written_share(shares)
            if share >= recoding.max_suppressed_share or written < written_before:
                # at or over the share (or a table withheld) with the finer table: back to the
                # coarser one (the issue asks a release *below* the share)
                history[name].append(next(r for r in requests if r.table_name == name))
                requests = tuple(coarse if r.table_name == name else r for r in requests)
                coarsened.append(step)
                notify(f"keep {name} ({step.how})")
                continue
            notify(f"refine {name} (undo {step.how}): the release stays under the share")
        if refining:
            order = refinement_order(requests, coarsened, history, shares, frozenset(tried))
            if not order or trials >= limit:
                break
            requests, trial = _try_finer(requests, coarsened, history, shares, order[0])
            coarsened = [c for c in coarsened if c is not trial[2]]
            tried.add(order[0])
            trials += 1
            continue
        if history:
            back, undone = undo_losses(requests, coarsened, baseline, shares, history, recoding)
            if undone:
                if recoding.keep_figures:
                    frozen |= {c.table for c in undone}
                else:  # the share rule retries the table's later steps, not the undone one
                    for c in undone:
                        skipped[c.table] = skipped.get(c.table, frozenset()) | {c.how}
                coarsened = [c for c in coarsened if c not in undone]
                requests = tuple(back)
                last_round = []
                rounds += 1
                notify("undo " + ", ".join(f"{c.table} ({c.how})" for c in undone))
                continue
        requests_now, done = recode(
            requests, shares, recoding, catalogue, frozenset(frozen), skipped
        )
        if not done:
            share, _ = written_share(shares)
            if recoding.keep_figures or not history or share >= recoding.max_suppressed_share:
                break
            order = refinement_order(requests, coarsened, history, shares)
            if not order:
                break
            refining = True
            requests, trial = _try_finer(requests, coarsened, history, shares, order[0])
            coarsened = [c for c in coarsened if c is not trial[2]]
            tried.add(order[0])
            trials += 1
            continue
        rounds += 1
        notify(f"recode {len(done)} tables: " + ", ".join(f"{c.table} ({c.how})" for c in done))
        recoded = {c.table for c in done}
        for r in requests:
            if r.table_name in recoded:
                history.setdefault(r.table_name, []).append(r)
        requests = tuple(requests_now)
        coarsened += done
        last_round = done
    for outcome in outcomes:
        outcome.coarsened = [c.how for c in coarsened if c.table == outcome.name]
    released = [
        replace(t, coarsened=tuple(c.how for c in coarsened if c.table == t.name)) for t in released
    ]
    released = apply_rates(released, population)  # from the protected counts only
    return Publication(
        chosen.code if chosen else None,
        released,
        outcomes,
        catalogue,
        settings,
        time.perf_counter() - started,
        kept=[p for p in protected if p.audit_ok],
        scope=scope,
        submissions=list(submissions),
        released_before=len(earlier),
        ledger=ledger,
        coarsened=coarsened,
    )


def _try_finer(
    requests: tuple[TableRequest, ...],
    coarsened: Sequence[Coarsening],
    history: dict[str, list[TableRequest]],
    shares: Mapping[str, tuple[int, int, bool]],
    name: str,
) -> tuple[tuple[TableRequest, ...], tuple[str, TableRequest, Coarsening, int]]:
    """The requests with table `name` one step finer (popped from `history`), and the trial:
    the table, its coarser request, the step undone and how many tables are written now."""
    coarse = next(r for r in requests if r.table_name == name)
    finer = history[name].pop()
    step = [c for c in coarsened if c.table == name][-1]
    _, written = written_share(shares)
    return tuple(finer if r.table_name == name else r for r in requests), (
        name,
        coarse,
        step,
        written,
    )


CAUSES = (
    "threshold",
    "dominance",
    "secondary",
    "no_children",
    "small_denominator",
    "primary_part",
    "secondary_part",
)


def suppression_causes(protected: Any, table: PublishedTable, settings: Any) -> dict[str, int]:
    """Why each suppressed cell of a published table is hidden, counted by cause:

    - a count: `threshold` (primary, 1..k-1 children), `dominance` (primary, k or more children
      but one organisation contributed all but 1..k-1 of them) or `secondary` (a complement);
    - a percentage or median: `no_children` (its denominator is 0: there is no value to show),
      `small_denominator` (1 to the minimum - 1 children), `primary_part` (enough children, but
      its numerator or denominator count is primary) or `secondary_part` (that count is a
      complement: only this kind could shrink with a cheaper choice of complements).
    Counted from the true counts of the tabulation; only totals leave this function.
    """
    import polars as pl

    from casepool.catalogue.tabulating import OUTCOME, VALUE

    found = dict.fromkeys(CAUSES, 0)
    tab = protected.tabulation
    k = int(settings.k_for(tab.count_dimensions))
    if table.indicator.kind != "count":
        dims = list(tab.dimensions)
        counts = tab.counts
        if OUTCOME in counts.columns:
            counts = counts.filter(pl.col(OUTCOME) == TOTAL).drop(OUTCOME)
        whole = counts.select(*dims, pl.col(VALUE).alias("_whole"))
        # A part is primary when the numerator's or the denominator's count is.
        status = protected.counts.with_columns((pl.col("conf_status") == "C").alias("_primary"))
        if OUTCOME in status.columns:
            status = status.group_by(dims or pl.lit(0)).agg(pl.col("_primary").any())
        hidden = table.frame.filter(pl.col("value").is_null()).select(dims)
        if dims:
            cells = hidden.join(whole, on=dims, how="left").join(
                status.select(*dims, "_primary"), on=dims, how="left"
            )
        else:
            cells = pl.concat(
                [whole.head(hidden.height), status.select("_primary").head(hidden.height)],
                how="horizontal",
            )
        size = cells.get_column("_whole").fill_null(0)
        primary = cells.get_column("_primary").fill_null(True)
        least = settings.ratio_min_denominator or k
        found["no_children"] = int((size == 0).sum())
        found["small_denominator"] = int(((size >= 1) & (size < least)).sum())
        found["primary_part"] = int(((size >= least) & primary).sum())
        found["secondary_part"] = int(((size >= least) & ~primary).sum())
        return found
    dims = list(tab.count_dimensions)
    truth = tab.counts.select(*dims, pl.col(VALUE).alias("_true"))
    cells = (
        protected.counts.join(truth, on=dims, how="left")
        if dims
        else protected.counts.with_columns(truth.get_column("_true"))
    )
    primary = cells.filter(pl.col("conf_status") == "C").get_column("_true")
    found["threshold"] = int(((primary >= 1) & (primary < k)).sum())
    found["dominance"] = int(primary.len() - found["threshold"])
    found["secondary"] = int((cells.get_column("conf_status") == "D").sum())
    return found


def add_causes(parts: Iterable[dict[str, int]]) -> dict[str, int]:
    """The causes of several tables added up (every cause present, in CAUSES order)."""
    total = dict.fromkeys(CAUSES, 0)
    for part in parts:
        for cause, cells in part.items():
            total[cause] = total.get(cause, 0) + cells
    return total


def _tabulate_release(
    warehouse: str | Path,
    requests: Sequence[TableRequest],
    chosen: Any,
    catalogue: IndicatorCatalogue,
    cache: dict[TableRequest, Tabulation],
    notify: Progress,
    ledger: bool,
) -> tuple[list[Tabulation], str, list[str], list[Any], Any]:
    """Every table of the release counted over one span (cells they share count the same
    records), its scope, the submissions it covers and, with the ledger, the earlier releases'
    count tables. Tables already counted (`cache`) are not counted again."""
    from casepool.publishing.counted import counted_source
    from casepool.publishing.protect import _count_table
    from casepool.publishing.releases import current_submissions, earlier_tables, release_scope
    from casepool.warehouse.ledger import data_fingerprint
    from casepool.warehouse.store import open_warehouse

    tabulations: list[Tabulation] = []
    with open_warehouse(warehouse, read_only=True) as con:
        con.begin()  # one consistent state of the warehouse for every table (closing ends it)
        population = read_population(con)
        source = counted_source(con, catalogue)
        first, last = (chosen.start, chosen.end) if chosen else covered_span(con, source)

        def whole(r: TableRequest) -> Tabulation:
            """The whole population behind a `known:`/`recorded:` table, counted once: the
            same counts as a table of the release, or as another part's, whatever its name."""
            same = _counting(r)
            found = next(
                (
                    t
                    for t in [*cache.values(), *wholes.values()]
                    if t.population is None and _counting(t.request) == same
                ),
                None,
            )
            if found is None:
                found = wholes[same] = tabulate(
                    con, r, first=first, last=last, catalogue=catalogue, source=source
                )
            return replace(found, request=replace(found.request, name=r.name))

        wholes: dict[tuple[Any, ...], Tabulation] = {}
        for request in requests:
            if request not in cache:
                notify(f"tabulate {request.table_name}")
                cache[request] = with_population(
                    tabulate(
                        con, request, first=first, last=last, catalogue=catalogue, source=source
                    ),
                    whole,
                    catalogue,
                )
            tabulations.append(cache[request])
        scope = release_scope(chosen.code if chosen else None, first, last)
        submissions = current_submissions(con)
        earlier: list[Any] = []
        if ledger:
            current = [_count_table(t, catalogue, scope) for t in tabulations]
            earlier = earlier_tables(con, current, data_fingerprint(submissions))
    return tabulations, scope, submissions, earlier, population


def _counting(request: TableRequest) -> tuple[Any, ...]:
    """What decides a table's counts: all of its request but its name."""
    return (request.indicator, request.dimensions, request.where, request.period_unit)


def record_publication_release(
    warehouse: str | Path,
    publication: Publication,
    detail: dict[str, Any],
    kind: str = "publication",
) -> str | None:
    """Record what `publication` lets out in the warehouse's release ledger (none for a draft):
    kind "publication" for the files of `publish`, "report" for a report drawn from it."""
    from casepool.publishing.releases import record_publication
    from casepool.warehouse.store import current_actor, open_warehouse

    if not publication.ledger:
        return None
    kept = publication.kept
    with open_warehouse(warehouse) as writable:
        return record_publication(
            writable,
            tables=[p.count_table for p in kept],
            frames=[p.engine_frame for p in kept if p.engine_frame is not None],
            periods=[publication.scope],
            submissions=publication.submissions,
            actor=current_actor(),
            detail={**detail, "released_before": publication.released_before},
            kind=kind,
            flags=publication.settings.flags,
        )


def publish(
    warehouse: str | Path,
    out_dir: str | Path,
    period: str | None = None,
    progress: Progress | None = None,
    *,
    lang: str = "en",
    settings: Any = None,
    tables: Sequence[TableRequest] | None = None,
    ledger: bool = True,
    recoding: RecodingSettings | None = None,
) -> PublishResult:
    """Build the publication (`build_publication`) and write every format of it to `out_dir`.
    Returns what was written; a table that fails its audit is left out. With `ledger` (the
    default) it is protected together with every earlier release and recorded in the ledger (the
    warehouse must be writable); without it, it is an unrecorded draft."""
    started = time.perf_counter()
    notify = progress or (lambda text: None)
    lang = lang if lang in LANGUAGES else "en"
    publication = build_publication(
        warehouse,
        period,
        progress,
        settings=settings,
        tables=tables,
        ledger=ledger,
        recoding=recoding,
    )
    out = Path(out_dir)
    notify(f"write {len(publication.tables)} tables")
    # Everything is written into a staging folder beside `out`, then swapped in: a crash or a
    # kill leaves the previous publication or the new one, never a mix of the two. A table
    # withheld now therefore cannot survive from an earlier publication either.
    with staged_folder(out) as staging:
        files = write_publication(
            publication.tables,
            staging,
            publication.catalogue,
            lang,
            publication.period,
            publication.settings,
        )
        result = PublishResult(
            out, publication.period, publication.outcomes, [], 0.0, publication.coarsened
        )
        result.seconds = time.perf_counter() - started
        write_manifest(
            staging,
            manifest_summary(result, publication.settings)
            | {"generated": datetime.now(UTC).isoformat(timespec="seconds")},
        )
        # Recorded before the folder is swapped in: a figure that leaves is in the ledger.
        record_publication_release(
            warehouse,
            publication,
            {
                "out": out.name,
                "suppressed_share": round(result.suppressed_share, 4),
                "cells": result.cells,
                "coarsened": [c.to_dict() for c in publication.coarsened],
            },
        )
    result.files = [out / f.relative_to(staging) for f in files] + [out / "manifest.json"]
    return result


def manifest_summary(result: PublishResult, settings: Any) -> dict[str, Any]:
    """What manifest.json says of a publication: `result.to_dict()` and the `flags` its
    suppressed cells carry (`casepool audit` reads C as ≥ 1 only where they are distinct). With
    combined flags, how many cells of a table are primary or secondary is the steward's alone
    (the ledger keeps it): each table's causes are reduced to the cells suppressed."""
    flags = getattr(settings, "flags", "distinct")
    summary = result.to_dict() | {"flags": flags}
    if flags == "combined":
        for table in summary.get("tables") or []:
            table.pop("suppressed_by", None)
        summary.pop("suppressed_by", None)
    return summary


def recover_publication(out: Path) -> Path:
    """Put back a publication left aside by a run killed between its two renames; returns the
    name it is set aside under during a swap."""
    previous = out.parent / f".{out.name}.previous"
    if previous.exists():
        if out.exists():
            shutil.rmtree(previous)
        else:
            previous.rename(out)
    return previous


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A fresh folder beside `out` that replaces `out` whole when the block succeeds.

    Refuses to replace a non-empty folder that is not a publication (it has no manifest.json).
    The swap is two renames; a run that dies between them leaves `.NAME.previous`, which the
    next run puts back before it starts.
    """
    out = Path(out)
    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    previous = recover_publication(out)
    if out.exists() and any(out.iterdir()) and not (out / "manifest.json").exists():
        raise UsageError(
            "usage-error", reason=f"{out} is not empty and holds no casepool publication"
        )
    for stale in parent.glob(f".{out.name}.staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=parent))
    try:
        yield staging
        if out.exists():
            out.rename(previous)
        staging.rename(out)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def write_publication(
    tables: Sequence[PublishedTable],
    out: Path,
    catalogue: IndicatorCatalogue,
    lang: str,
    period: str | None,
    settings: Any,
) -> list[Path]:
    """Every format of every (already audited) table, the workbook, the DuckDB file, the note."""
    files: list[Path] = []
    for table in tables:
        for folder, write in (
            ("csv", lambda t, p: write_table_csv(t, p)),
            ("hxl", lambda t, p: write_table_hxl(t, p, catalogue)),
            ("sdmx", lambda t, p: write_table_sdmx(t, p, catalogue)),
            ("json", lambda t, p: write_table_json(t, p, catalogue)),
        ):
            path = out / folder / f"{table.name}.{'json' if folder == 'json' else 'csv'}"
            write(table, path)
            files.append(path)
    note = methodology_note(tables, period, settings)
    workbook = out / "publication.xlsx"
    write_workbook(tables, workbook, catalogue, lang, period=period, settings=settings)
    aggregates = out / "aggregates.duckdb"
    write_aggregates(tables, aggregates, catalogue)
    from casepool.core.writing import write_atomic

    methodology = out / "methodology.md"
    write_atomic(methodology, lambda h: h.write(note))
    return [
        *files,
        workbook,
        aggregates,
        methodology,
        *write_metadata(tables, out, catalogue, note),
    ]


def methodology_note(tables: Sequence[PublishedTable], period: str | None, settings: Any) -> str:
    """A short note that travels with the publication (the full text is in docs/)."""
    firsts = [t.first for t in tables if t.first]
    lasts = [t.last for t in tables if t.last]
    span = f"{min(firsts):%Y-%m} to {max(lasts):%Y-%m}" if firsts and lasts else "no registrations"
    return "\n".join(
        [
            "# casepool publication: methodology note",
            "",
            f"Registrations covered: {span}" + (f" (period {period})." if period else "."),
            "",
            "What is counted: child survivors of sexual exploitation registered by the participating",
            "organisations, from de-identified records (no names, case numbers or exact dates leave",
            "an organisation). Each child is counted once: a child referred by another organisation",
            "that registered the child first (reported elsewhere = yes and referral source = CSO) is",
            "not counted again. Coverage is what the organisations registered, not prevalence.",
            "",
            f"Disclosure control: no published count lies between 1 and {settings.k - 1}; cells that",
            *(
                [
                    "could reveal a child are suppressed, with further cells so that no suppressed cell",
                    "can be worked out from the others, even by an organisation that knows its own",
                    "records. Every suppressed cell is flagged alike (conf_status C): the flag does not",
                    "say which cells are small, and a C cell may hold any count, zero included.",
                ]
                if getattr(settings, "flags", "distinct") == "combined"
                else [
                    "could reveal a child are suppressed (conf_status C), with further cells (D) so that",
                    "no suppressed cell can be worked out from the others, even by an organisation that",
                    "knows its own records.",
                ]
            ),
            "Every table was audited by linear programming before it was written.",
            "Percentages and medians are shown only when their numerator and denominator are shown",
            f"and the denominator is at least {settings.ratio_min_denominator or settings.k}.",
            "",
            "Codes: _T is a total. An empty value is suppressed, never zero. Indicator formulas:",
            "docs/indicator-reference.md; method: docs/methodology-indicators.md.",
            "",
            *_recoding_lines(tables),
        ]
    )


def _recoding_lines(tables: Sequence[PublishedTable]) -> list[str]:
    """The note's account of global recoding: which tables were coarsened and how."""
    recoded = [t for t in tables if t.coarsened]
    if not recoded:
        return []
    return [
        "Global recoding: these tables would have hidden too many of their cells at their usual",
        "detail, so they are published coarser (a dimension replaced by a coarser one, or merged",
        "into its total) and protected again:",
        "",
        *(f"- {t.name}: {'; '.join(t.coarsened)}" for t in recoded),
        "",
    ]
