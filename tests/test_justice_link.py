"""The justice funnel: the shares dismissed and ending in conviction among the cases reported to
the police count the same children as the funnel's dismissed and conviction cells.

`police_dismissed_share` (numerator `justice_outcome: dismissed`, over `reported_to_police: yes`)
by violence type x sex: its numerators summed over sex are the funnel's (police_reported_cases by
justice outcome x violence type) dismissed cell of the same violence type, and likewise
`conviction_share`. Before the link, a count hidden in one was read from the other: on a random
warehouse (seed 0.1, 400 records), the funnel published 16 convictions of sexual assault where
the conviction share hid the boys' numerator (a primary cell) beside the girls' 12 and "sex not
stated" 0: 16 − 12 − 0 = 4 (`test_the_unlinked_funnel_gives_hidden_cells_away`). The relation is a part of a
part (dismissed ⊂ reported ⊂ whether reported is known ⊂ registered), stated through two hidden
tables; where no hypercube protects a cell fixed through them, the engine chooses complements
by a linear program (casepool.protecting.secondary.lp_complement)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from casepool.catalogue.indicators import TableRequest, load_indicators
from casepool.catalogue.relations import numerator_parts, parts_of
from casepool.protecting import load_protection_settings
from casepool.protecting.tables import build_system
from casepool.publishing import protect as protect_module
from casepool.publishing.audit_release import _numerator_from_share, audit_releases
from casepool.publishing.publish import build_publication, publish
from casepool.publishing.recoding import load_recoding
from fixtures.indicators.warehouses import build_random
from fixtures.linked_attack import attack_publication

TABLES = (
    TableRequest("police_reported_cases", ("justice_outcome", "violence_type"), name="funnel"),
    TableRequest("police_dismissed_share", ("violence_type", "sex"), name="dismissed"),
    TableRequest("conviction_share", ("violence_type", "sex"), name="conviction"),
    TableRequest("police_reported_share", ("region", "violence_type"), name="reported"),
)
SHARES = (("dismissed", "dismissed"), ("conviction", "conviction"))  # table, funnel outcome
Cell = tuple[str, ...]


def test_the_justice_shares_are_linked_to_the_funnel() -> None:
    catalogue = load_indicators()
    for share, code in (
        ("police_dismissed_share", "dismissed"),
        ("conviction_share", "conviction"),
    ):
        link = numerator_parts(catalogue.indicator(share), catalogue)
        assert link is not None
        assert (link.population, link.dimension, link.codes, link.multi) == (
            "police_reported_cases",
            "justice_outcome",
            (code,),
            False,
        )
        # The parts are cells of the scoped count: registered cases reported to the police.
        assert link.key == "registered_cases"
        assert link.codes_of_parts == (
            ("known:reported_to_police", "yes"),
            ("police_reported_share__outcome", "yes"),
        )
    # The funnel itself is broken down by justice outcome: nothing more to state for it.
    assert parts_of(catalogue.indicator("police_reported_cases"), catalogue) is None


def _read(folder: Path, name: str) -> pl.DataFrame:
    frame = pl.read_csv(folder / "csv" / f"{name}.csv", infer_schema=False)
    return frame.rename({c: c.lstrip("\ufeff") for c in frame.columns})


def _number(text: str | None) -> int | None:
    return None if text is None or text == "" else int(text)


def _recovered(folder: Path) -> list[tuple[Cell, int]]:
    """The attack by hand: every published count, numerator and denominator of the four
    tables, their margins, and the links an attacker states from indicators.yaml (a share's
    numerators by violence type summed over sex = the funnel's cell of its outcome; its
    denominators = the funnel's totals = the reported cases by violence type summed over
    region), solved by elimination (an equation with one hidden cell gives it). Returns the
    hidden cells worked out with their values."""
    value: dict[Cell, int | None] = {}
    equations: list[list[tuple[Cell, int]]] = []

    def margins(table: str, rows: list[str], columns: list[str]) -> None:
        for r in rows:
            inner = [((table, r, c), 1) for c in columns if c != "_T"]
            equations.append([*inner, ((table, r, "_T"), -1)])
        for c in columns:
            inner = [((table, r, c), 1) for r in rows if r != "_T"]
            equations.append([*inner, ((table, "_T", c), -1)])

    funnel = _read(folder, "funnel")
    for row in funnel.iter_rows(named=True):
        cell = ("funnel", row["justice_outcome"] or "_T", row["violence_type"] or "_T")
        value[cell] = _number(row["value"]) if row["obs_status"] != "Q" else None
    outcomes = sorted({c[1] for c in value})
    violence = sorted({c[2] for c in value})
    margins("funnel", outcomes, violence)
    for name, outcome in SHARES:
        share = _read(folder, name)
        for row in share.iter_rows(named=True):
            v, s = row["violence_type"] or "_T", row["sex"] or "_T"
            den = _number(row["denominator"])
            num = _number(row["numerator"])
            if num is None and row["obs_status"] != "Q":
                num = _numerator_from_share(row["value"], den)
            value[(f"{name}.num", v, s)] = num
            value[(f"{name}.den", v, s)] = den
        sexes = sorted({c[2] for c in value if c[0] == f"{name}.num"})
        for part in ("num", "den"):
            margins(f"{name}.{part}", violence, sexes)
        for v in violence:
            equations.append([((f"{name}.num", v, "_T"), 1), (("funnel", outcome, v), -1)])
            equations.append([((f"{name}.den", v, "_T"), 1), (("funnel", "_T", v), -1)])
    reported = _read(folder, "reported")
    for row in reported.iter_rows(named=True):
        r, v = row["region"] or "_T", row["violence_type"] or "_T"
        den = _number(row["denominator"])
        num = _number(row["numerator"])
        if num is None and row["obs_status"] != "Q":
            num = _numerator_from_share(row["value"], den)
        value[("reported.num", r, v)] = num
    regions = sorted({c[1] for c in value if c[0] == "reported.num"})
    margins("reported.num", regions, violence)
    for v in violence:
        equations.append([(("reported.num", "_T", v), 1), (("funnel", "_T", v), -1)])
    found: list[tuple[Cell, int]] = []
    progress = True
    while progress:
        progress = False
        for equation in equations:
            unknown = [(k, a) for k, a in equation if k in value and value[k] is None]
            if len(unknown) != 1 or any(k not in value for k, _ in equation):
                continue
            cell, coefficient = unknown[0]
            rest = sum(a * (value[k] or 0) for k, a in equation if k != cell)
            value[cell] = -rest // coefficient
            found.append((cell, int(value[cell] or 0)))
            progress = True
    return found


def _publish(tmp_path: Path, seed: float, name: str, records: int = 400) -> Path:
    warehouse = build_random(tmp_path / f"{name}.duckdb", records, orgs=3, seed=seed)
    folder = tmp_path / name
    off = load_recoding().disabled()
    publish(warehouse, folder, None, tables=TABLES, ledger=False, recoding=off)
    return folder


def _unlinked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine as it was: the justice shares' numerators not stated against the funnel."""
    plain = protect_module._numerator_table

    def table(tabulation, catalogue, scope):  # type: ignore[no-untyped-def]
        if tabulation.indicator.name in {"police_dismissed_share", "conviction_share"}:
            return None
        return plain(tabulation, catalogue, scope)

    monkeypatch.setattr(protect_module, "_numerator_table", table)


def test_the_unlinked_funnel_gives_hidden_cells_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack the link closes: without it, the hidden convictions of sexual assault are read
    from the conviction share's numerators, and the folder audit (which states the link) sees
    the publication as disclosive."""
    _unlinked(monkeypatch)
    folder = _publish(tmp_path, 0.1, "unlinked")
    recovered = dict(_recovered(folder))
    assert recovered, "the data no longer exercise the attack: choose another seed"
    # The funnel publishes 16 convictions of sexual assault; the share hides the boys' numerator
    # (a primary cell) beside the girls' 12 and "sex not stated" 0: 16 - 12 - 0 = 4.
    assert recovered[("conviction.num", "sexual_assault", "M")] == 4
    assert recovered[("dismissed.num", "rape", "_T")] == 21  # the funnel's dismissed rape cases
    report = audit_releases([folder])
    assert not report.protected
    assert any(f.verdict == "disclosed" for f in report.findings)


@pytest.mark.parametrize(
    "seed",
    [
        0.1,
        pytest.param(0.3, marks=pytest.mark.slow),
        pytest.param(0.6, marks=pytest.mark.slow),
        pytest.param(0.45, marks=pytest.mark.slow),
    ],
)
def test_the_linked_funnel_gives_nothing_away(
    tmp_path: Path, seed: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the link, neither the attack by hand nor the folder audit finds anything; the
    complements the hypercubes cannot give come from the linear program, and the cell-by-cell
    fallback that spread suppression over the whole catalogue is not used."""
    from casepool.protecting import secondary

    def no_fallback(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the fallback was used")

    solved: list[int] = []
    plain = secondary.lp_complement

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        solved.append(1)
        return plain(*args, **kwargs)

    monkeypatch.setattr(secondary, "_fallback_cells", no_fallback)
    monkeypatch.setattr(secondary, "lp_complement", counted)
    folder = _publish(tmp_path, seed, "linked")
    assert _recovered(folder) == []
    report = audit_releases([folder])
    assert report.protected, [f.to_dict() for f in report.findings[:3]]
    if seed == 0.1:
        assert solved  # the data exercise the linear program


def test_no_organisation_recovers_a_cell_through_the_funnel(tmp_path: Path) -> None:
    """The engine's linked system as each organisation sees it (its own counts, the cells it
    alone fills), with the funnel's relations stated: nothing hidden is recovered exactly, no
    primary cell narrowed below the protection interval, for the outsider or any organisation."""
    warehouse = build_random(tmp_path / "w.duckdb", 400, orgs=3, seed=0.1)
    settings = load_protection_settings()
    catalogue = load_indicators()
    publication = build_publication(
        warehouse, tables=TABLES, ledger=False, recoding=load_recoding().disabled()
    )
    assert len(publication.kept) == len(TABLES)
    linked = attack_publication(publication, catalogue, settings)
    tables, relations, system = linked.tables, linked.relations, linked.system
    names = sorted(t.label for t in relations)
    assert names == [
        "conviction~justice_outcome",
        "dismissed~justice_outcome",
        "reported~known:reported_to_police",
    ]
    assert linked.primary_cells > 0
    assert linked.attackers == 4  # the outsider and three organisations
    assert linked.failures == []
    # The funnel's conviction cell and the share's numerator are one relation in the system:
    # the share's numerators over sex sum to the funnel's cell.
    funnel = next(t for t in tables if t.label == "funnel")
    grid = system.grids[tables.index(funnel)]
    dims = list(funnel.dimensions)
    at = [0, 0]
    at[dims.index("justice_outcome")] = grid.codes[dims.index("justice_outcome")].index(
        "conviction"
    )
    at[dims.index("violence_type")] = grid.codes[dims.index("violence_type")].index("_T")
    convictions = int(system.value[grid.ids[tuple(at)]])
    share = next(t for t in tables if t.label == "conviction")
    share_cells = share.cells.filter(
        (pl.col("conviction_share__outcome") == "yes") & (pl.col("violence_type") == "_T")
    )
    assert share_cells.filter(pl.col("sex") == "_T").get_column("value").item() == convictions


def test_lp_complement_moves_a_cell_by_its_interval_keeping_every_row() -> None:
    """The linear program's move is a feasible table: every sum holds, no count goes below 0 or
    below what an insider knows, and the cell moves by the width asked; the cells already
    suppressed move at almost no cost, so a cube through them is preferred."""
    from casepool.protecting import CountTable, ProtectionSettings
    from casepool.protecting.audit import Attacker
    from casepool.protecting.secondary import lp_complement

    rows = [
        (r, c, v)
        for r, line in zip("ABC", [[2, 9, 7], [8, 20, 11], [30, 6, 12]], strict=True)
        for c, v in zip("xyz", line, strict=True)
    ]
    cells = pl.DataFrame(rows, schema=["region", "sex", "value"], orient="row")
    totals = [
        *((r, "_T", sum(v for rr, _, v in rows if rr == r)) for r in "ABC"),
        *(("_T", c, sum(v for _, cc, v in rows if cc == c)) for c in "xyz"),
        ("_T", "_T", sum(v for *_, v in rows)),
    ]
    cells = pl.concat([cells, pl.DataFrame(totals, schema=cells.schema, orient="row")])
    system = build_system([CountTable("cases", ("region", "sex"), cells)], ProtectionSettings(k=3))
    grid = system.grids[0]

    def cell(r: str, c: str) -> int:
        return int(grid.ids[grid.codes[0].index(r), grid.codes[1].index(c)])

    suppressed = np.zeros(system.size, dtype=bool)
    suppressed[[cell("A", "x"), cell("B", "y")]] = True
    moved, values = lp_complement(system, cell("A", "x"), 3, suppressed, Attacker("outsider"))
    move = np.zeros(system.size)
    move[moved] = values - system.value[moved]
    assert np.abs(system.equations @ move).max() < 1e-9
    assert (system.value + move >= -1e-9).all()
    assert abs(abs(move[cell("A", "x")]) - 3) < 1e-9
    # The cheapest way: the rectangle A/B x x/y, through the suppressed B-y, no margin moved.
    assert sorted(moved.tolist()) == sorted(
        [cell("A", "x"), cell("A", "y"), cell("B", "x"), cell("B", "y")]
    )
    # An insider alone in A-y knows it exactly: the move must go round it.
    fixed = np.zeros(system.size, dtype=bool)
    fixed[cell("A", "y")] = True
    insider = Attacker("ORG", own=np.where(fixed, system.value, 0), fixed=fixed)
    moved, values = lp_complement(system, cell("A", "x"), 3, suppressed, insider)
    assert cell("A", "y") not in moved.tolist()
    assert abs(abs(values[moved.tolist().index(cell("A", "x"))] - 2) - 3) < 1e-9
