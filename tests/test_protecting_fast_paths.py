"""The engine's quick paths give what the plain ones give: the equations' columns as lists
equal the sparse matrix's columns, a cube lifted through those lists is the one the sparse
matrix lifts, and the components found equal those of the suppressed cells' incidence graph."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from casepool.protecting import CountTable, ProtectionSettings
from casepool.protecting.audit import Attacker, SystemAudit, _runs
from casepool.protecting.secondary import _cube_shapes, _lift
from casepool.protecting.tables import CellSystem, build_system
from casepool.publishing.protect import region_of_governorates

SETTINGS = ProtectionSettings(k=5, k_sensitive=5)
REGIONS = region_of_governorates()
ROLLUP = (("region", "governorate", tuple(sorted(REGIONS.items()))),)


def _linked_tables() -> list[CountTable]:
    """Cases by governorate x sex, by region x sex and by region: linked through the rollup."""
    rng = np.random.default_rng(3)
    governorates = sorted(REGIONS)
    rows = [(g, s, int(rng.integers(0, 9))) for g in governorates for s in ("F", "M")]
    frame = pl.DataFrame(rows, schema=["governorate", "sex", "value"], orient="row")
    region = frame.with_columns(pl.col("governorate").replace_strict(REGIONS).alias("region"))

    def with_totals(counts: pl.DataFrame, dims: list[str]) -> pl.DataFrame:
        parts = [counts.group_by(dims).agg(pl.col("value").sum())]
        for d in dims:
            keep = [x for x in dims if x != d]
            total = counts.group_by(keep).agg(pl.col("value").sum()) if keep else None
            if total is None:
                total = counts.select(pl.col("value").sum())
            parts.append(total.with_columns(pl.lit("_T").alias(d)))
        if len(dims) == 2:
            parts.append(
                counts.select(pl.col("value").sum()).with_columns(
                    pl.lit("_T").alias(dims[0]), pl.lit("_T").alias(dims[1])
                )
            )
        return pl.concat([p.select(*dims, "value") for p in parts]).unique(dims, keep="first")

    return [
        CountTable(
            "cases",
            ("governorate", "sex"),
            with_totals(frame, ["governorate", "sex"]),
            rollups=ROLLUP,
        ),
        CountTable(
            "cases",
            ("region", "sex"),
            with_totals(region.drop("governorate"), ["region", "sex"]),
            rollups=ROLLUP,
        ),
    ]


def _system() -> CellSystem:
    return build_system(_linked_tables(), SETTINGS)


def test_the_column_lists_are_the_equations_columns():
    system = _system()
    rows, coefs = system.column_entries()
    columns = system.equations.tocsc()
    assert len(rows) == system.size
    for cell in range(system.size):
        column = columns[:, [cell]].tocoo()
        order = np.argsort(column.row)
        assert rows[cell] == column.row[order].tolist()
        assert coefs[cell] == column.data[order].tolist()


def _lift_sparse(system, corners, plus, suppressed, rounds=6):
    """`_lift` as it was written on the sparse matrix: the reference."""
    if np.unique(corners).size != corners.size:
        return None
    move = dict(zip(corners.tolist(), np.where(plus, 1.0, -1.0).tolist(), strict=True))
    columns, whole = system.lifting()
    rows = system.equations
    for _ in range(rounds):
        cells = np.fromiter(move, dtype=np.int64)
        residual = columns[:, cells] @ np.fromiter(move.values(), dtype=float)
        bad = np.flatnonzero(np.abs(residual) > 1e-9)
        if bad.size == 0:
            return cells, np.fromiter(move.values(), dtype=float) > 0
        added: dict[int, float] = {}
        for row in bad.tolist():
            target, coef = whole[row]
            if target < 0 or target in move or target in added:
                members = rows.indices[rows.indptr[row] : rows.indptr[row + 1]]
                coefs = rows.data[rows.indptr[row] : rows.indptr[row + 1]]
                free = [
                    (not suppressed[c], -int(system.value[c]), int(c), float(a))
                    for c, a in zip(members.tolist(), coefs.tolist(), strict=True)
                    if c not in move and c not in added and a > 0
                ]
                if not free:
                    return None
                _, _, target, coef = min(free)
            step = -float(residual[row]) / coef
            if abs(abs(step) - 1.0) > 1e-9:
                return None
            added[target] = step
        move.update(added)
    return None


def _cells_and_masks(system, rng):
    masks = [rng.random(system.size) < share for share in (0.3, 0.3, 0.6)]
    masks.append(masks[0])
    for suppressed in masks:
        for cell in range(system.size):
            yield cell, suppressed


def test_a_cube_lifted_through_the_lists_is_the_one_the_sparse_matrix_lifts():
    system = _system()
    rng = np.random.default_rng(11)
    lifted = compared = 0
    # Twice over with other suppressed cells: the memo must notice what changed.
    for cell, suppressed in _cells_and_masks(system, rng):
        for table_index, position in system.locations[cell]:
            shapes = _cube_shapes(system, table_index, position)
            if shapes is None:
                continue
            corners, plus = shapes
            for index in range(0, corners.shape[0], 3):
                found = _lift(system, corners[index], plus[index], suppressed)
                expected = _lift_sparse(system, corners[index], plus[index], suppressed)
                compared += 1
                if expected is None:
                    assert found is None
                    continue
                lifted += 1
                assert found is not None
                np.testing.assert_array_equal(found[0], expected[0])
                np.testing.assert_array_equal(found[1], expected[1])
    assert compared > 400 and lifted > 40  # the region link makes cubes need lifting
    assert system.lift_memo  # and the memo served


def _components_by_incidence(auditor: SystemAudit, suppressed: np.ndarray) -> list[np.ndarray]:
    cells = np.flatnonzero(suppressed)
    incidence = sparse.vstack(
        [auditor.equations.tocsc()[:, cells], auditor.inequalities.tocsc()[:, cells]]
    ).tocsr()
    incidence.data[:] = 1.0
    count, labels = connected_components((incidence.T @ incidence).tocsr(), directed=False)
    groups = [cells[labels == i] for i in range(count)]
    return sorted(groups, key=lambda g: int(g[0]))


@pytest.mark.parametrize("share", [0.05, 0.3, 0.8])
def test_components_are_those_of_the_incidence_graph(share):
    system = _system()
    auditor = SystemAudit(system.equations, system.inequalities, system.value)
    suppressed = np.random.default_rng(int(share * 100)).random(system.size) < share
    found = auditor.components(suppressed)
    expected = _components_by_incidence(auditor, suppressed)
    assert [g.tolist() for g in found] == [g.tolist() for g in expected]


def _findings(workers: int, truth: bool):
    # Three indicators: three systems of cells that share no row, so several components.
    tables = [replace(t, indicator=name) for name in "abc" for t in _linked_tables()]
    system = build_system(tables, SETTINGS)
    auditor = SystemAudit(
        system.equations, system.inequalities, system.value, workers=workers, parallel_min_work=0
    )
    suppressed = np.random.default_rng(5).random(system.size) < 0.3
    need = np.where(system.value < 5, 5, 1)
    rng = np.random.default_rng(8)
    own = np.minimum(system.value, rng.integers(0, 4, system.size))
    attackers = [Attacker("outsider"), Attacker("org", own, np.zeros(system.size, dtype=bool))]
    return auditor, auditor.check(
        suppressed, need, attackers, truth=system.value if truth else None, exact=not truth
    )


@pytest.mark.parametrize("truth", [True, False])
def test_the_audit_split_over_processes_finds_what_one_process_finds(truth):
    one, alone = _findings(1, truth)
    two, split = _findings(2, truth)
    assert len({f.cells.tobytes() for f in alone}) > 2  # several components to split
    assert len(alone) == len(split)
    for a, b in zip(alone, split, strict=True):
        assert a.attacker == b.attacker
        np.testing.assert_array_equal(a.cells, b.cells)
        assert a.result.verdicts == b.result.verdicts
        np.testing.assert_array_equal(a.result.lower, b.result.lower)
        np.testing.assert_array_equal(a.result.upper, b.result.upper)
    assert one.solves == two.solves
    assert len(one.pool) == len(two.pool)


@pytest.mark.parametrize("seed", range(12))
def test_table_runs_number_the_tables_as_unique_does(seed):
    rng = np.random.default_rng(seed)
    owner = rng.integers(0, 30, int(rng.integers(1, 200)))
    if seed % 2 == 0:
        owner = np.sort(owner)  # pooled entries come in order of table
    expected = np.unique(owner, return_inverse=True)[1].reshape(-1)
    np.testing.assert_array_equal(_runs(owner), expected)


def _pooled_plain(auditor: SystemAudit, components, suppressed):
    """`SystemAudit._pooled` as it was written, one mask per component: the reference."""
    cells, values, owner = auditor._flattened()
    labels = np.full(suppressed.size, -1, dtype=np.int64)
    for i, group in enumerate(components):
        labels[group] = i
    keep = ~np.isin(owner, np.unique(owner[~suppressed[cells]]))
    label = labels[cells]
    return [
        (owner[keep & (label == i)], cells[keep & (label == i)], values[keep & (label == i)])
        for i in range(len(components))
    ]


def _pooled_auditor(seed: int):
    """The linked system's auditor with random feasible-looking tables in its pool."""
    system = _system()
    rng = np.random.default_rng(seed)
    auditor = SystemAudit(system.equations, system.inequalities, system.value)
    suppressed = rng.random(system.size) < rng.uniform(0.2, 0.9)
    hidden = np.flatnonzero(suppressed)
    for t in range(int(rng.integers(20, 120))):
        # most tables move suppressed cells only; every fifth also a published one (stale)
        cells = hidden if t % 5 else np.arange(system.size)
        moved = np.unique(rng.choice(cells, int(rng.integers(1, 12))))
        auditor.add_table(moved, system.value[moved] + rng.integers(-3, 4, moved.size))
    return system, auditor, suppressed, rng


@pytest.mark.parametrize("seed", range(10))
def test_pooled_entries_in_one_pass_are_those_of_one_mask_per_component(seed):
    _, auditor, suppressed, _ = _pooled_auditor(seed)
    components = auditor.components(suppressed)
    found = auditor._pooled(components, suppressed)
    expected = _pooled_plain(auditor, components, suppressed)
    assert len(found) == len(expected)
    for got, want in zip(found, expected, strict=True):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seed", range(10))
def test_the_seen_range_from_the_moved_entries_is_the_dense_grids(seed):
    system, auditor, suppressed, rng = _pooled_auditor(seed)
    components = auditor.components(suppressed)
    own = np.minimum(system.value, rng.integers(0, 3, system.size))
    attackers = [
        Attacker("outsider"),
        Attacker(
            "org", own, (own == system.value) & (system.value > 0) & (rng.random(system.size) < 0.3)
        ),
    ]
    truth = system.value.astype(float)
    compared = 0
    for cells, entries in zip(components, auditor._pooled(components, suppressed), strict=True):
        for attacker in attackers:
            problem = auditor.problem(cells, suppressed, attacker)
            if seed % 3 == 0:  # a bound the truth breaks: only tables moving that cell count
                problem.lower = problem.lower.copy()
                problem.lower[0] = truth[cells[0]] + 1
            found = SystemAudit._seen(entries, cells, truth, problem)
            dense = SystemAudit._seen_dense(entries, cells, truth, problem)
            assert (found is None) == (dense is None)
            if found is None or dense is None:
                continue
            compared += 1
            base = truth[cells]
            # bound_component adds the truth to whatever range it is given
            np.testing.assert_array_equal(found[0], np.minimum(base, dense[0]))
            np.testing.assert_array_equal(found[1], np.maximum(base, dense[1]))
    assert compared > 0 or seed % 3 == 0  # with the broken bound, often no table is left


@pytest.mark.parametrize("seed", range(8))
def test_cells_known_before_get_no_lp_and_the_failures_are_the_same(seed):
    """An exempt cell (earlier releases give it to the attacker) is not solved for: the failures
    the engine reads (`_failures`, exempt cells left out) are those of the full audit."""
    from casepool.protecting.secondary import _failures

    system = _system()
    rng = np.random.default_rng(seed)
    suppressed = rng.random(system.size) < rng.uniform(0.2, 0.6)
    need = np.where((system.value > 0) & (system.value < 5), 5, 1)
    own = np.minimum(system.value, rng.integers(0, 4, system.size))
    attackers = [
        Attacker("outsider"),
        Attacker("org", own, (own == system.value) & (system.value > 0)),
    ]

    def auditor() -> SystemAudit:
        return SystemAudit(system.equations, system.inequalities, system.value)

    plain = auditor()
    full = plain.check(suppressed, need, attackers, truth=system.value)
    # Exempt: half the cells that fail (as the engine exempts them) and some random cells.
    exempt: dict[str, np.ndarray] = {}
    for finding in full:
        mask = exempt.setdefault(finding.attacker, rng.random(system.size) < 0.1)
        for j, verdict in enumerate(finding.result.verdicts):
            if verdict != "protected" and rng.random() < 0.5:
                mask[finding.cells[j]] = True
    expected = _failures(full, exempt)
    quick = auditor()
    found = _failures(
        quick.check(suppressed, need, attackers, truth=system.value, exempt=exempt), exempt
    )
    assert [(c, a, cells.tolist()) for c, a, cells in found] == [
        (c, a, cells.tolist()) for c, a, cells in expected
    ]
    assert quick.solves <= plain.solves
    # Each audit stopped at its first failing cell: the same first failures, from fewer LPs.
    first = auditor()
    for _ in range(2):  # the second time from what the first kept
        found = _failures(
            first.check(
                suppressed, need, attackers, truth=system.value, exempt=exempt, first_failure=True
            ),
            exempt,
        )
        assert [(c, a, cells.tolist()) for c, a, cells in found] == [
            (c, a, cells.tolist()) for c, a, cells in expected
        ]
    assert first.solves <= quick.solves
    stopped = auditor().check(
        suppressed, need, attackers, truth=system.value, stop_at_failure=True, exempt=exempt
    )
    assert bool(_failures(stopped, exempt)) == bool(expected)
    # Asked again with more exempt cells, the cached findings still give the full audit's answer.
    for mask in exempt.values():
        mask |= rng.random(system.size) < 0.1
    wanted = [(c, a) for c, a, _ in _failures(full, exempt)]
    again = _failures(
        quick.check(suppressed, need, attackers, truth=system.value, exempt=exempt), exempt
    )
    assert [(c, a) for c, a, _ in again] == wanted
    for _ in range(2):  # kept first failures now exempt are solved again
        again = _failures(
            first.check(
                suppressed, need, attackers, truth=system.value, exempt=exempt, first_failure=True
            ),
            exempt,
        )
        assert [(c, a) for c, a, _ in again] == wanted
        for c, a, _ in again[:1]:
            exempt[a][c] = True
        wanted = [(c, a) for c, a, _ in _failures(full, exempt)]


def test_a_pooled_table_moving_a_cell_twice_sends_seen_to_the_grid():
    system, auditor, suppressed, _ = _pooled_auditor(1)
    assert not auditor._repeats
    cell = int(np.flatnonzero(suppressed)[0])
    auditor.add_table(np.array([cell, cell]), np.array([1.0, 2.0]))
    assert auditor._repeats
    components = auditor.components(suppressed)
    for cells, entries in zip(components, auditor._pooled(components, suppressed), strict=True):
        problem = auditor.problem(cells, suppressed, Attacker("outsider"))
        found = SystemAudit._seen(entries, cells, system.value, problem, repeats=True)
        dense = SystemAudit._seen_dense(entries, cells, system.value, problem)
        assert (found is None) == (dense is None)
        if found is not None and dense is not None:
            np.testing.assert_array_equal(found[0], dense[0])
            np.testing.assert_array_equal(found[1], dense[1])


def _with_contributions(tables: list[CountTable]) -> list[CountTable]:
    """The tables with two organisations' own counts (a: half of each cell rounded down)."""
    out = []
    for table in tables:
        dims = list(table.dimensions)
        half = table.cells.with_columns(pl.col("value") // 2)
        rest = table.cells.with_columns(pl.col("value") - pl.col("value") // 2)
        parts = pl.concat(
            [
                half.with_columns(pl.lit("a").alias("contributor")),
                rest.with_columns(pl.lit("b").alias("contributor")),
            ]
        ).select(*dims, "contributor", "value")
        out.append(replace(table, contributions=parts))
    return out


def _solves_counted(monkeypatch) -> list[int]:
    from casepool.protecting import lp

    solve = lp.ComponentProblem.solve
    count = [0]

    def counted(problem, objective):
        count[0] += 1
        return solve(problem, objective)

    monkeypatch.setattr(lp.ComponentProblem, "solve", counted)
    return count


def test_results_reused_within_a_publication_are_those_solved_afresh(monkeypatch):
    """`reusing_results`: protect() and audit() asked again with the same input give what a
    fresh call gives, without an LP; other input is solved; outside it, nothing is kept."""
    from casepool.protecting import audit, protect
    from casepool.protecting.tables import reused, reusing_results

    tables = _with_contributions(_linked_tables())
    fresh = protect(tables, SETTINGS)
    fresh_audit = audit(fresh[0].frame, k=5).to_dict()
    changed = _with_contributions(
        [replace(t, cells=t.cells.with_columns(pl.col("value") * 2)) for t in _linked_tables()]
    )
    changed_fresh = protect(changed, SETTINGS)
    count = _solves_counted(monkeypatch)
    assert reused() is None
    with reusing_results():
        first = protect(tables, SETTINGS)
        solved = count[0]
        assert solved > 0
        again = protect(list(tables), SETTINGS)
        assert count[0] == solved  # nothing solved again
        other = protect(changed, SETTINGS)
        assert count[0] > solved
        report = audit(first[0].frame, k=5)
        solved = count[0]
        assert audit(first[0].frame, k=5) is report and count[0] == solved
        assert audit(first[0].frame, k=3).k == 3  # other options: another report
        with reusing_results():  # nested: the same memo
            assert protect(tables, SETTINGS)[0].frame.equals(first[0].frame)
            assert count[0] > solved  # the k=3 audit
            solved = count[0]
    assert reused() is None
    for a, b, c in zip(fresh, first, again, strict=True):
        assert a.frame.equals(b.frame) and a.frame.equals(c.frame)
    for a, b in zip(changed_fresh, other, strict=True):
        assert a.frame.equals(b.frame)
    assert report.to_dict() == fresh_audit
    protect(tables, SETTINGS)  # outside: solved again
    assert count[0] > solved


def test_the_table_key_tells_apart_what_the_engine_reads():
    from casepool.protecting.tables import table_key

    table = _with_contributions(_linked_tables())[0]
    assert table_key(table) == table_key(replace(table, cells=table.cells.clone()))
    variants = [
        replace(table, name="other"),
        replace(table, scope=(("period", "2025"),)),
        replace(table, version="v1"),
        replace(table, hidden=True),
        replace(table, sensitive=True),
        replace(table, rollups=()),
        replace(table, contributions=None),
        replace(table, cells=table.cells.with_columns(pl.col("value").cast(pl.Int32))),
        replace(
            table,
            statuses=table.cells.select("governorate", "sex").with_columns(
                pl.lit("F").alias("conf_status")
            ),
        ),
    ]
    keys = {table_key(t) for t in variants}
    assert len(keys) == len(variants) and table_key(table) not in keys


def test_a_cell_seen_only_at_the_insiders_own_count_is_not_settled_when_it_needs_a_width():
    """A feasible table at the insider's own count proves nothing about a cell it dominates
    (need > 1): its interval [own, 10] is 4 wide, too narrow for 5, whatever was seen."""
    from casepool.protecting.lp import TOO_NARROW, ComponentProblem, bound_component

    cap = 1000.0
    problem = ComponentProblem(
        sparse.csr_matrix((0, 1)),
        np.empty(0),
        sparse.csr_matrix(np.array([[1.0]])),
        np.array([10.0]),
        np.array([6.0]),
        np.array([cap]),
        cap,
    )
    seen = (np.array([6.0]), np.array([6.0]))
    for exact in (True, False):
        result = bound_component(problem, np.array([5.0]), np.array([6.0]), None, exact, seen)
        assert result.verdicts == [TOO_NARROW]
    # Pinned at its own count with nothing more asked (need 1): settled without an LP.
    pinned = bound_component(problem, np.array([1.0]), np.array([6.0]), None, False, seen)
    assert pinned.points == [] and pinned.verdicts == ["protected"]


@pytest.mark.parametrize("seed", range(12))
def test_the_audit_of_verdicts_only_finds_the_exact_audits_verdicts(seed):
    """`audit(..., exact_limit=0)` (what publishing runs: verdicts, not the intervals' ends)
    gives every cell and attacker the verdict of the exact audit, insiders and dominance too."""
    from casepool.protecting import audit, protect

    rng = np.random.default_rng(seed)
    tables = _with_contributions(_linked_tables())
    table = tables[0]
    # Random contributions of three organisations instead of halves.
    dims = list(table.dimensions)
    inner = table.cells.filter(pl.all_horizontal(pl.col(d) != "_T" for d in dims))
    shares = []
    for org in ("a", "b", "c"):
        part = inner.with_columns(
            pl.Series("value", rng.integers(0, 7, inner.height) * (rng.random(inner.height) < 0.6))
        ).with_columns(pl.lit(org).alias("contributor"))
        shares.append(part)
    parts = pl.concat(shares)
    cells = parts.group_by(dims).agg(pl.col("value").sum())
    region_table = CountTable("cases", tuple(dims), _margins(cells, dims))
    contributions = pl.concat(
        [
            _margins(p.drop("contributor"), dims).with_columns(pl.lit(o).alias("contributor"))
            for o, p in zip(("a", "b", "c"), shares, strict=True)
        ]
    ).select(*dims, "contributor", "value")
    region_table = replace(region_table, contributions=contributions)
    frame = protect([region_table], SETTINGS)[0].frame
    # Hide a few more published cells at random: the audit sees tables that may fail.
    hide = rng.random(frame.height) < 0.15
    frame = frame.with_columns(
        pl.when(pl.Series(hide)).then(None).otherwise(pl.col("value")).alias("value"),
        pl.when(pl.Series(hide))
        .then(pl.lit("Q"))
        .otherwise(pl.col("obs_status"))
        .alias("obs_status"),
    )
    whole = region_table.cells.rename({"value": "_whole"})
    insiders = {}
    for org in ("a", "b", "c"):
        own = contributions.filter(pl.col("contributor") == org).drop("contributor")
        own = (
            own.join(whole, on=dims)
            .with_columns(
                ((pl.col("value") == pl.col("_whole")) & (pl.col("value") > 0)).alias("sole"),
                (
                    (pl.col("_whole") - pl.col("value")).is_between(1, 4)
                    & (pl.col("value") > 0)
                    & (pl.col("_whole") >= 5)
                ).alias("dominant"),
            )
            .drop("_whole")
        )
        insiders[org] = own
    exact = audit(frame, k=5, insiders=insiders, exact_limit=None)
    quick = audit(frame, k=5, insiders=insiders, exact_limit=0)

    def verdicts(report):
        return [
            (v.attacker, v.indicator, sorted(v.codes.items()), v.verdict) for v in report.verdicts
        ]

    assert verdicts(quick) == verdicts(exact)


def _margins(cells: pl.DataFrame, dims: list[str]) -> pl.DataFrame:
    """Inner cells with every margin (`_T`) of a two-dimensional table."""
    a, b = dims
    return pl.concat(
        [
            cells.select(a, b, "value"),
            cells.group_by(a).agg(pl.col("value").sum()).with_columns(pl.lit("_T").alias(b)),
            cells.group_by(b).agg(pl.col("value").sum()).with_columns(pl.lit("_T").alias(a)),
            cells.select(pl.col("value").sum()).with_columns(
                pl.lit("_T").alias(a), pl.lit("_T").alias(b)
            ),
        ],
        how="diagonal",
    ).select(a, b, pl.col("value").cast(pl.Int64))


@pytest.mark.parametrize("seed", range(8))
def test_a_stopped_audit_resumed_with_more_cells_skipped_finds_what_a_fresh_one_finds(seed):
    """`Bounding` stopped at its first failing cell and resumed with that cell skipped (as the
    engine's main loop does when earlier releases give the cell away) finds the same next
    failing cell as a fresh audit with those cells skipped, and the full audit's failures in
    turn, with no more LPs than starting afresh each time."""
    from casepool.protecting.audit import _first_failing
    from casepool.protecting.lp import PROTECTED, Bounding, bound_component

    system = _system()
    rng = np.random.default_rng(seed)
    suppressed = rng.random(system.size) < rng.uniform(0.2, 0.6)
    need = np.where((system.value > 0) & (system.value < 5), 5.0, 1.0)
    own = np.minimum(system.value, rng.integers(0, 4, system.size))
    attackers = [
        Attacker("outsider"),
        Attacker("org", own, (own == system.value) & (system.value > 0)),
    ]
    auditor = SystemAudit(system.equations, system.inequalities, system.value)
    checked = 0
    for cells in auditor.components(suppressed):
        for attacker in attackers:
            mine = None if attacker.own is None else attacker.own[cells].astype(float)
            wanted = need[cells] if attacker.own is None else np.ones(cells.size)
            truth = system.value[cells]

            def problem(cells=cells, attacker=attacker):
                return auditor.problem(cells, suppressed, attacker)

            full = bound_component(problem(), wanted, mine, truth, False)
            failing = [j for j, v in enumerate(full.verdicts) if v != PROTECTED]
            skip = np.zeros(cells.size, dtype=bool)
            work = Bounding(problem(), wanted, mine, truth, False, None, None)
            resumed_solves, fresh_solves = 0, 0
            for expected in [*failing, None]:
                result = work.run(stop_at_failure=True)
                resumed_solves += result.solves
                fresh = bound_component(
                    problem(), wanted, mine, truth, False, None, True, skip.copy()
                )
                fresh_solves += fresh.solves
                assert _first_failing(result, skip) == expected
                assert _first_failing(fresh, skip) == expected
                if expected is None:
                    break
                skip = skip.copy()
                skip[expected] = True
                work.resume(skip)
                checked += 1
            assert resumed_solves <= fresh_solves
    assert checked > 0


@pytest.mark.parametrize("seed", range(10))
def test_pooled_entries_of_one_component_are_those_of_every_component(seed):
    """The check's lazy pool (`_Pool`: cut for a component only when it is audited, with one
    layout per component) gives what `_pooled` and `_seen` give for every component at once."""
    from casepool.protecting.audit import _Pool

    system, auditor, suppressed, rng = _pooled_auditor(seed)
    components = auditor.components(suppressed)
    every = auditor._pooled(components, suppressed)
    lazy = _Pool(auditor, components, suppressed)
    own = np.minimum(system.value, rng.integers(0, 3, system.size))
    truth = system.value.astype(float)
    for c in rng.permutation(len(components)).tolist():
        for a, b in zip(lazy.entries(c), every[c], strict=True):
            np.testing.assert_array_equal(a, b)
        for attacker in (Attacker("outsider"), Attacker("org", own, own == system.value)):
            problem = auditor.problem(components[c], suppressed, attacker)
            found = lazy.seen(c, truth, problem)
            plain = SystemAudit._seen_dense(every[c], components[c], truth, problem)
            assert (found is None) == (plain is None)
            if found is not None and plain is not None:
                base = truth[components[c]]
                np.testing.assert_array_equal(found[0], np.minimum(base, plain[0]))
                np.testing.assert_array_equal(found[1], np.maximum(base, plain[1]))


def test_stopped_audits_from_helper_processes_resume_as_in_one_process():
    """The engine's main loop (first failure, exempt cells growing) split over two processes:
    a stopped audit comes back from its helper without its HiGHS model and goes on here; the
    failures read are those of one process and of the full audit."""
    from casepool.protecting.secondary import _failures

    tables = [replace(t, indicator=name) for name in "abc" for t in _linked_tables()]
    system = build_system(tables, SETTINGS)
    suppressed = np.random.default_rng(5).random(system.size) < 0.4
    need = np.where(system.value < 5, 5, 1)
    rng = np.random.default_rng(8)
    own = np.minimum(system.value, rng.integers(0, 4, system.size))
    attackers = [
        Attacker("outsider"),
        Attacker("org", own, (own == system.value) & (system.value > 0)),
    ]
    auditors = [
        SystemAudit(
            system.equations, system.inequalities, system.value, workers=w, parallel_min_work=0
        )
        for w in (1, 2)
    ]
    full = SystemAudit(system.equations, system.inequalities, system.value).check(
        suppressed, need, attackers, truth=system.value
    )
    exempt: dict[str, np.ndarray] = {a.name: np.zeros(system.size, dtype=bool) for a in attackers}
    rounds = 0
    while True:
        expected = [(c, a) for c, a, _ in _failures(full, exempt)]
        for auditor in auditors:
            found = auditor.check(
                suppressed, need, attackers, truth=system.value, exempt=exempt, first_failure=True
            )
            assert [(c, a) for c, a, _ in _failures(found, exempt)] == expected
        if not expected:
            break
        for c, a in expected:  # every failing cell given away before: each audit goes on
            exempt[a][c] = True
        rounds += 1
    assert rounds > 1


@pytest.mark.parametrize("seed", range(6))
def test_verdicts_of_every_cell_at_once_are_the_verdict_of_each(seed):
    from casepool.protecting.lp import verdict, verdicts_of

    rng = np.random.default_rng(seed)
    n = 400
    lower = rng.integers(0, 8, n) + rng.choice([0.0, 1e-7, -1e-7, 0.4, 0.6], n)
    upper = lower + rng.choice([0.0, 1e-7, 0.5, 1.0, 3.0, 4.0, 5.0, 9.0, np.inf], n)
    need = rng.choice([0.0, 1.0, 5.0, 5.0, 3.0], n)
    own = rng.integers(0, 8, n).astype(float)
    for mine in (None, own):
        expected = [
            verdict(lower[j], upper[j], int(need[j]), None if mine is None else float(mine[j]))
            for j in range(n)
        ]
        assert verdicts_of(lower, upper, need, mine) == expected
    assert len(set(expected)) == 3  # every verdict met


@pytest.mark.parametrize("seed", range(6))
def test_the_lazy_pool_reads_the_pool_as_it_was_when_the_check_began(seed):
    """Audits of a check add tables to the pool (and may push old ones out) before a later
    component is cut: that component still gets the entries `_pooled` gave at the start."""
    from casepool.protecting.audit import _Pool

    system, auditor, suppressed, rng = _pooled_auditor(seed)
    auditor.pool_limit = len(auditor.pool) + 5  # adding below pushes the oldest tables out
    components = auditor.components(suppressed)
    at_start = auditor._pooled(components, suppressed)
    lazy = _Pool(auditor, components, suppressed)
    hidden = np.flatnonzero(suppressed)
    for _ in range(20):
        moved = np.unique(rng.choice(hidden, int(rng.integers(1, 12))))
        auditor.add_table(moved, system.value[moved] + rng.integers(-3, 4, moved.size))
    for c in range(len(components)):
        for a, b in zip(lazy.entries(c), at_start[c], strict=True):
            np.testing.assert_array_equal(a, b)
