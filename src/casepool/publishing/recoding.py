"""Global recoding before suppression, as τ-ARGUS does: a table whose suppression would hide more
than a set share of its cells is counted again at a coarser level and the whole release is
protected again.

The coarsenings are the ordered `recoding.steps` of schemas/protection.yaml. A step either
replaces a dimension by a coarser one the catalogue derives from it (governorate → region) or
merges a dimension into its total (quarters into the release's whole period, age bands into all
ages). A recoded table keeps its name; its cells are counts of children like any other (the
indicator's population and one code per remaining dimension), so the engine, the LP audit and the
release ledger treat them as the cells they are. Every coarsening applied is said in the manifest,
the methodology note, the workbook's Notes sheet and the report.

Which rule says a table goes on is `recoding.goal`:

- `share` (the default): a table goes on to its next step while more than
  `max_suppressed_share` of its cells would be suppressed, as τ-ARGUS coarsens until a table
  protects well. When no listed step is left, the last resort is the table's total: every
  dimension but the period merged (`region × sex → total`), published as the table by the
  release's period (in a quarter's release: that quarter and its total, one figure; in a
  year's release of a quarterly table: its quarters and the year). A table whose total itself
  is primary stays suppressed there.
- `figures`: a coarsening is kept only when the coarser table publishes at least as many
  figures (cells not suppressed) as the table did in the release as asked; otherwise it goes
  back one step and is not recoded again. No last resort.

Under either rule a coarsening that made its table worse by the rule's own measure is undone:
the table goes back one step (`undo_losses`). Under the figures rule it is not recoded again.
Under the share rule, worse is a larger suppressed share and fewer figures than at the finer
level — a total hidden as a complement where the finer table published some of its cells —
unless the step lowers the share of a release that would be over `max_suppressed_share`
without it (`lowers_release_share`: the goal is the release's share); the table then tries
its later steps and its total, never the undone step (`coarser(..., skip=)`). Once the release
is below the share, a last pass (`refinement_order`, the loop in publishing/publish.py) tries
each coarsened table one step finer again, most figures regained first, and keeps it finer
while the release stays below the share.

The choice of level depends on the suppression pattern, which depends on the data. Every level
released is protected and audited with the whole release and the ledger, and only the last
protection is released; but the choice itself tells a reader something about a level *not*
released (that the finer table would have hidden enough cells to push the table or the release
over the share; with the last pass, also that one step finer kept it below). That is knowledge of
a suppression pattern — close to what a C flag tells ("1 or more") — which the LP audit, reading
released cells only, does not model (docs/methodology-disclosure-control.md, "Does the choice
disclose?").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from casepool.catalogue.indicators import IndicatorCatalogue, TableRequest, check_request
from casepool.core.errors import SchemaError, UsageError
from casepool.core.periods import parse_period
from casepool.core.schema import read_yaml

SETTINGS_FILE = "protection.yaml"
WHERE = "protection.yaml: recoding"


@dataclass(frozen=True)
class Step:
    """One coarsening: `dimension` replaced by `to`, or merged into its total when `to` is None."""

    dimension: str
    to: str | None = None

    @property
    def how(self) -> str:
        return f"{self.dimension} → {self.to}" if self.to else f"{self.dimension} → total"


GOALS = ("share", "figures")


@dataclass(frozen=True)
class RecodingSettings:
    """The `recoding:` section of schemas/protection.yaml."""

    enabled: bool = True
    max_suppressed_share: float = 0.25
    steps: tuple[Step, ...] = ()
    # `share`: a table goes on coarsening (down to its total) while over the share.
    # `figures`: a coarsening is kept only when the coarser table publishes at least as many
    # figures (cells not suppressed) as the finer one did; otherwise it goes back one step.
    goal: str = "share"
    # The share rule's last resort: a table with no listed step left goes to its total.
    to_total: bool = True

    @property
    def keep_figures(self) -> bool:
        return self.goal == "figures"

    @property
    def takes_total(self) -> bool:
        """Whether a table with no listed step left goes to its total (the share rule)."""
        return self.goal == "share" and self.to_total

    def disabled(self) -> RecodingSettings:
        return replace(self, enabled=False)


@dataclass(frozen=True)
class Coarsening:
    """One table recoded in a release: which dimension went where, and the share of its cells
    that would have been suppressed at the finer level."""

    table: str
    indicator: str
    dimension: str
    to: str | None
    suppressed_before: float
    dimensions_before: tuple[str, ...]
    dimensions_after: tuple[str, ...]
    figures_before: int = 0  # cells published at the finer level (the share rule's undo)
    cells_before: int = 0  # cells at the finer level (the share rule's release measure)

    @property
    def how(self) -> str:
        return Step(self.dimension, self.to).how

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "indicator": self.indicator,
            "dimension": self.dimension,
            "to": self.to,
            "how": self.how,
            "suppressed_before": round(self.suppressed_before, 4),
            "dimensions_before": list(self.dimensions_before),
            "dimensions_after": list(self.dimensions_after),
        }


def recoding_from_mapping(raw: Any, where: str = WHERE) -> RecodingSettings:
    """Check and read the `recoding:` mapping (absent: recoding off)."""
    if raw is None:
        return RecodingSettings(enabled=False)
    if not isinstance(raw, Mapping):
        raise SchemaError("schema-invalid", file=where, reason="recoding must be a mapping")
    enabled = raw.get("enabled", True)
    share = raw.get("max_suppressed_share", 0.25)
    goal = raw.get("goal", "share")
    to_total = raw.get("to_total", True)
    if not isinstance(enabled, bool):
        raise SchemaError("schema-invalid", file=where, reason="enabled must be true or false")
    if "keep_figures" in raw:  # round 5-6's setting, now `goal: figures`
        raise SchemaError(
            "schema-invalid", file=where, reason="keep_figures is now goal: figures | share"
        )
    if goal not in GOALS:
        raise SchemaError("schema-invalid", file=where, reason="goal must be share or figures")
    if not isinstance(to_total, bool):
        raise SchemaError("schema-invalid", file=where, reason="to_total must be true or false")
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share < 1:
        raise SchemaError(
            "schema-invalid", file=where, reason="max_suppressed_share must be in [0, 1)"
        )
    steps: list[Step] = []
    for item in raw.get("steps") or ():
        if not isinstance(item, Mapping) or not isinstance(item.get("dimension"), str):
            raise SchemaError("schema-invalid", file=where, reason="a step needs a dimension")
        to = item.get("to")
        if to is not None and not isinstance(to, str):
            raise SchemaError("schema-invalid", file=where, reason="`to` is a dimension or null")
        steps.append(Step(str(item["dimension"]), to))
    return RecodingSettings(enabled, float(share), tuple(steps), str(goal), to_total)


def load_recoding(path: str | Path | None = None) -> RecodingSettings:
    """The recoding settings of schemas/protection.yaml (or of the YAML file at `path`)."""
    if path is None:
        raw = read_yaml(SETTINGS_FILE)
    else:
        import yaml

        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return recoding_from_mapping(raw.get("recoding") if isinstance(raw, Mapping) else None)


def check_steps(settings: RecodingSettings, catalogue: IndicatorCatalogue) -> None:
    """Refuse a step naming a dimension the catalogue does not know."""
    for step in settings.steps:
        for name in (step.dimension, step.to):
            if name is None:
                continue
            try:
                catalogue.dimension(name)
            except UsageError:
                raise SchemaError(
                    "schema-invalid", file=WHERE, reason=f"unknown dimension {name!r}"
                ) from None


def coarser(
    request: TableRequest,
    settings: RecodingSettings,
    catalogue: IndicatorCatalogue,
    others: Sequence[TableRequest] = (),
    skip: frozenset[str] = frozenset(),
) -> tuple[TableRequest, Step] | None:
    """The request at the next coarser level: the first step that applies to one of its
    dimensions, leaves one dimension at least and gives a table the indicator allows. A step
    whose table would repeat another table of the release (same indicator, same dimensions) is
    taken only when no other step applies: the repeated table is then published twice, with
    the same cells and statuses (the engine gives a shared cell one status), rather than left
    hidden at its finer level. With the share rule (`settings.takes_total`) the table's total
    (`total_of`) comes after every listed step. A step in `skip` (by its `how`: a coarsening of
    this table that was undone) is passed over, so the table tries the steps after it. None when
    no step applies."""
    taken = {(o.indicator, frozenset(o.dimensions)) for o in others if o is not request}
    repeating: tuple[TableRequest, Step] | None = None
    for candidate, step in _candidates(request, settings, catalogue):
        if step.how in skip:
            continue
        if (request.indicator, frozenset(candidate.dimensions)) not in taken:
            return candidate, step
        repeating = repeating or (candidate, step)
    return repeating


def _candidates(
    request: TableRequest, settings: RecodingSettings, catalogue: IndicatorCatalogue
) -> Iterator[tuple[TableRequest, Step]]:
    """The coarser requests the listed steps give, in order, then (share rule) the total."""
    for step in settings.steps:
        if step.dimension not in request.dimensions:
            continue
        if not period_step_allowed(request, step, catalogue):
            continue
        dims = tuple(
            d
            for d in (step.to if d == step.dimension else d for d in request.dimensions)
            if d is not None
        )
        if not dims or len(set(dims)) != len(dims):
            continue  # a table keeps one dimension at least
        candidate = replace(request, dimensions=dims)
        try:
            check_request(candidate, catalogue)
        except UsageError:
            continue
        yield candidate, step
    if settings.takes_total:
        found = total_of(request, catalogue)
        if found is not None:
            yield found


def total_of(
    request: TableRequest, catalogue: IndicatorCatalogue
) -> tuple[TableRequest, Step] | None:
    """The share rule's last resort: every dimension but the period merged into its total.

    A table needs one dimension (the engine and every output read a table by its dimensions),
    so the total is published as the table by period: a table that has the period keeps it (in
    a year's release of a quarterly table: the quarters and the year, the time series stays); a
    table without it, in a release of one period (a quarter, a year), is counted by that period
    at the release's own unit, whose one cell and its total are the same children — one figure,
    which the engine links with every other total of the same children. In a release of several
    periods (the whole data) a table without the period has no total of this kind (it would gain
    a breakdown over time): None. None as well for a table already at its total."""
    merged = tuple(d for d in request.dimensions if d != "period")
    if not merged:
        return None
    step = Step(" × ".join(merged))
    if "period" in request.dimensions:
        candidate = replace(request, dimensions=("period",))
    else:
        codes = request.filter_codes("period")
        if not codes or len(codes) != 1:
            return None
        try:
            unit = parse_period(codes[0]).kind
        except UsageError:
            return None
        candidate = replace(request, dimensions=("period",), period_unit=unit)
    try:
        check_request(candidate, catalogue)
    except UsageError:
        return None
    return candidate, step


def single_period(request: TableRequest) -> bool:
    """Whether the request covers exactly one of its own period codes: a release for one period
    (`--period`) of the table's period unit (a quarter for a quarterly table, a year for a
    yearly one)."""
    codes = request.filter_codes("period")
    if not codes or len(codes) != 1:
        return False
    try:
        return parse_period(codes[0]).kind == request.period_unit
    except UsageError:
        return False


def period_step_allowed(request: TableRequest, step: Step, catalogue: IndicatorCatalogue) -> bool:
    """A step on the period dimension (`period → total`) applies only to a table whose release
    covers one of its period codes, where the period's cells are the total's cells and no figure
    over time is lost. In a release of several of them (the whole data, or a year of a quarterly
    table) the period breakdown is the time series readers and the report draw: it is never
    merged away; the table is suppressed at its own level or coarsened by another step."""
    if catalogue.dimension(step.dimension).derived != "period":
        return True
    return single_period(request)


def over_share(cells: int, suppressed: int, written: bool, settings: RecodingSettings) -> bool:
    """A table to recode: withheld by its audit, or more than the set share suppressed."""
    if not written:
        return True
    return cells > 0 and suppressed / cells > settings.max_suppressed_share


def published_figures(cells: int, suppressed: int, written: bool) -> int:
    """The figures a table gives its readers: its cells not suppressed (none when withheld)."""
    return cells - suppressed if written else 0


def undo_losses(
    requests: Sequence[TableRequest],
    coarsened: Sequence[Coarsening],
    baseline: Mapping[str, int],
    now: Mapping[str, tuple[int, int, bool]],
    history: dict[str, list[TableRequest]],
    settings: RecodingSettings | None = None,
) -> tuple[list[TableRequest], list[Coarsening]]:
    """Undo the coarsenings that made their table worse (`now`: name -> cells, suppressed,
    written), each back one step (its last request in `history`, which is popped):

    - the figures rule (`goal: figures`, and without `settings`): a coarsened table that
      publishes fewer figures than it did in the release as asked, before any recoding
      (`baseline`: name -> figures);
    - the share rule: a coarsened table that now hides a larger share of its cells than it did
      at its finer level when it was coarsened (`Coarsening.suppressed_before`) *and* publishes
      fewer figures than it did there (`figures_before`): worse by both measures, as a total
      hidden as a complement where its finer table published some of its cells. A step that
      only raises the share (a grouping whose cells are fewer) is kept and the table goes on.
      The goal is the release's share, so such a step is kept all the same when the release
      without it would be over `max_suppressed_share` and the step lowers the release's share
      (`lowers_release_share`): a table of 20 cells with 19 hidden that becomes 4 cells all
      hidden loses one figure and takes 15 hidden cells out of the release.

    Returns the requests and the coarsenings undone."""
    figures = settings is None or settings.keep_figures
    out = list(requests)
    undone: list[Coarsening] = []
    hidden, total = release_hidden(now)
    for i, request in enumerate(out):
        name = request.table_name
        steps = history.get(name)
        if not steps:
            continue
        last = [c for c in coarsened if c.table == name][-1]
        cells, suppressed, written = now.get(name, (0, 0, False))
        if figures:
            worse = published_figures(cells, suppressed, written) < baseline.get(name, 0)
        else:
            share = suppressed / cells if cells and written else 1.0
            lost = published_figures(cells, suppressed, written) < last.figures_before
            worse = share > last.suppressed_before and lost
            if worse and settings is not None:
                after = (suppressed if written else cells, cells)
                worse = not lowers_release_share(hidden, total, last, after, settings)
        if not worse:
            continue
        out[i] = steps.pop()
        undone.append(last)
    return out, undone


def release_hidden(now: Mapping[str, tuple[int, int, bool]]) -> tuple[int, int]:
    """The release's hidden cells and cells (`now`: name -> cells, suppressed, written); a
    withheld table's cells are all hidden."""
    hidden = sum(s if w else c for c, s, w in now.values())
    return hidden, sum(c for c, _, _ in now.values())


def lowers_release_share(
    hidden: int,
    total: int,
    step: Coarsening,
    after: tuple[int, int],
    settings: RecodingSettings,
) -> bool:
    """Whether a coarsening (its table now `after`: hidden, cells) is kept for the release's
    sake: the release as it would be with the table back at its finer level (`step`'s
    `cells_before`, `figures_before`) is over `max_suppressed_share`, and the step gives the
    release a smaller suppressed share than that."""
    if not step.cells_before:
        return False
    before_hidden = step.cells_before - step.figures_before
    other_hidden, other_cells = hidden - after[0], total - after[1]
    without = (other_hidden + before_hidden) / max(other_cells + step.cells_before, 1)
    with_step = hidden / total if total else 1.0
    return without > settings.max_suppressed_share and with_step < without


def written_share(now: Mapping[str, tuple[int, int, bool]]) -> tuple[float, int]:
    """The release's suppressed share over its written tables (as `Publication` counts it) and
    how many tables are written (`now`: name -> cells, suppressed, written)."""
    cells = sum(c for c, _, w in now.values() if w)
    hidden = sum(s for _, s, w in now.values() if w)
    return (hidden / cells if cells else 0.0), sum(1 for _, _, w in now.values() if w)


def refinement_order(
    requests: Sequence[TableRequest],
    coarsened: Sequence[Coarsening],
    history: Mapping[str, Sequence[TableRequest]],
    now: Mapping[str, tuple[int, int, bool]],
    tried: frozenset[str] = frozenset(),
) -> list[str]:
    """The share rule's last pass, once the release is under `max_suppressed_share`: the
    coarsened tables to try one step finer again, those whose last step cost the most figures
    first (`figures_before` against the figures the table publishes now); a table already
    `tried`, or whose step cost no figure, is left as it is."""
    gains: list[tuple[int, int, str]] = []
    for i, request in enumerate(requests):
        name = request.table_name
        if name in tried or not history.get(name):
            continue
        last = [c for c in coarsened if c.table == name][-1]
        gain = last.figures_before - published_figures(*now.get(name, (0, 0, False)))
        if gain > 0:
            gains.append((-gain, i, name))
    return [name for _, _, name in sorted(gains)]


def back_one_round(
    requests: Sequence[TableRequest],
    coarsened: Sequence[Coarsening],
    last_round: Sequence[Coarsening],
    history: dict[str, list[TableRequest]],
) -> tuple[tuple[TableRequest, ...], list[Coarsening]]:
    """The requests and coarsenings as they were before `last_round`: each table it coarsened
    back to its finer request (popped from `history`)."""
    tables = {c.table for c in last_round}
    out = tuple(
        history[r.table_name].pop() if r.table_name in tables and history.get(r.table_name) else r
        for r in requests
    )
    return out, [c for c in coarsened if c not in last_round]


def recode(
    requests: Sequence[TableRequest],
    shares: Mapping[str, tuple[int, int, bool]],
    settings: RecodingSettings,
    catalogue: IndicatorCatalogue,
    frozen: frozenset[str] = frozenset(),
    skipped: Mapping[str, frozenset[str]] | None = None,
) -> tuple[list[TableRequest], list[Coarsening]]:
    """One round: every table over the share (`shares`: name -> cells, suppressed, written)
    moved one step coarser, except the `frozen` ones (a coarsening of theirs cost figures),
    passing over each table's `skipped` steps (the share rule's undone coarsenings: the table
    tries its later steps and its total instead). Returns the new requests and what was
    recoded."""
    skipped = skipped or {}
    if not settings.enabled:
        return list(requests), []
    out = list(requests)
    done: list[Coarsening] = []
    for i, request in enumerate(requests):
        cells, suppressed, written = shares.get(request.table_name, (0, 0, True))
        if request.table_name in frozen or not over_share(cells, suppressed, written, settings):
            continue
        found = coarser(
            request, settings, catalogue, out, skipped.get(request.table_name, frozenset())
        )
        if found is None:
            continue
        candidate, step = found
        out[i] = candidate
        done.append(
            Coarsening(
                table=request.table_name,
                indicator=request.indicator,
                dimension=step.dimension,
                to=step.to,
                suppressed_before=suppressed / cells if cells and written else 1.0,
                dimensions_before=request.dimensions,
                dimensions_after=candidate.dimensions,
                figures_before=published_figures(cells, suppressed, written),
                cells_before=cells,
            )
        )
    return out, done
