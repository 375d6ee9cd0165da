"""Tables of counts given for protection, the protected result, and the linked system of cells they form."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import astuple, dataclass, field

import numpy as np
import polars as pl
from scipy import sparse

from casepool.core.errors import TableError
from casepool.core.vocabulary import CONF_STATUS, CONTRIBUTOR, OBS_STATUS, VALUE
from casepool.protecting.settings import ProtectionSettings

INDICATOR = "indicator"
FREE, PRIMARY, SECONDARY = "F", "C", "D"
RESERVED_COLUMNS = (INDICATOR, VALUE, OBS_STATUS, CONF_STATUS, CONTRIBUTOR)

# Results of protect() and audit() by the content of their input, while `reusing_results` is on.
_REUSED: ContextVar[dict[tuple[str, bytes], object] | None] = ContextVar(
    "casepool_reused_results", default=None
)


@contextmanager
def reusing_results() -> Iterator[None]:
    """Within it, protect() and audit() asked again with the same tables and settings return
    what they found the first time instead of solving again: both are deterministic functions
    of their input (every choice is made in a fixed order, every random draw has a fixed seed).
    A publication's recoding rounds protect and audit the whole release again each round, most
    of its tables unchanged. Usable as a decorator; nested uses share the outer memo, which ends
    with the outermost (nothing is kept beyond it)."""
    if _REUSED.get() is not None:
        yield
        return
    token = _REUSED.set({})
    try:
        yield
    finally:
        _REUSED.reset(token)


def reused() -> dict[tuple[str, bytes], object] | None:
    """The memo of `reusing_results`, or None outside it."""
    return _REUSED.get()


def frame_key(frame: pl.DataFrame | None) -> bytes:
    """A digest of a frame's schema and every value (Arrow IPC bytes): equal for equal frames
    (a frame stored in other chunks may give another digest: a miss, never a wrong hit)."""
    if frame is None:
        return b"-"
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="uncompressed")
    return hashlib.sha256(buffer.getvalue()).digest()


def settings_key(settings: ProtectionSettings) -> bytes:
    return repr(astuple(settings)).encode()


def table_key(table: CountTable) -> bytes:
    """A digest of everything a CountTable gives the engine."""
    described = repr(
        (
            table.indicator,
            table.dimensions,
            sorted(table.multi_valued),
            table.sensitive,
            table.name,
            table.scope,
            table.version,
            None if table.version_cells is None else sorted(table.version_cells),
            table.rollups,
            table.hidden,
            table.aliases,
        )
    ).encode()
    parts = [described, frame_key(table.cells), frame_key(table.contributions)]
    parts.append(frame_key(table.statuses))
    return hashlib.sha256(b"\0".join(hashlib.sha256(p).digest() for p in parts)).digest()


@dataclass(frozen=True, eq=False)
class CountTable:
    """One table of counts: every cell, margins (`_T`) included, and optionally who contributed what.

    `cells` has one column per dimension (codes as text) and `value` (a count of children).
    `multi_valued` names dimensions where a child may fall in several categories, so their total
    is not the sum of their categories. `contributions` has the dimensions, `contributor` (e.g. an
    organisation code) and `value`: each contributor's own counts in every cell, margins included;
    they must add up to `cells`. `sensitive` forces (True) or forbids (False) the stricter k;
    None decides from the dimensions. `name` labels the table in messages (default: indicator).
    """

    indicator: str
    dimensions: tuple[str, ...]
    cells: pl.DataFrame
    multi_valued: frozenset[str] = frozenset()
    contributions: pl.DataFrame | None = None
    sensitive: bool | None = None
    name: str | None = None
    # Linking across releases (casepool.protecting.releases): `scope` adds (dimension, code) to
    # every cell's identity where the table has no such dimension or the cell is its total (the
    # period a release covers); `version` keeps cells apart from same-named cells counted from
    # other data; `statuses` (dimensions + conf_status) fixes cells already released: F stays
    # published, C and D stay suppressed.
    scope: tuple[tuple[str, str], ...] = ()
    version: str = ""
    version_cells: frozenset[tuple[str, ...]] | None = None  # None: every cell (codes in order)
    statuses: pl.DataFrame | None = None
    # Hierarchies an attacker knows (e.g. region = Σ its governorates), as (coarse dimension,
    # fine dimension, ((fine code, coarse code), ...)). A coarse code is the sum of its fine
    # codes in every table of the same children; one with a single fine code (the "not stated"
    # region is the "not stated" governorate) is that very cell.
    rollups: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = ()
    # A hidden table is never published: it states relations an attacker knows between cells
    # of other tables (a share's denominator + its complement = the population's cell). Its
    # cells that no published table holds are suppressed from the start, and primary by the
    # same rules as any count (casepool.publishing.protect: the `known:` complements).
    hidden: bool = False
    # (dimension, code) -> (dimension, code): a cell of this table that is the same children as
    # a cell named otherwise (the complement of `known: population_group` is the category
    # `population_group: unknown`).
    aliases: tuple[tuple[tuple[str, str], tuple[str, str]], ...] = ()
    # Whether this table's published flags told a reader that a C cell is ≥ 1 (distinct flags):
    # None for a table of the release being made (the settings' `flags` decide), True or False
    # for an earlier release as the ledger recorded it (casepool.protecting.releases.told_cells).
    flags_told: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dimensions", tuple(self.dimensions))
        object.__setattr__(
            self,
            "rollups",
            tuple((c, f, tuple(tuple(p) for p in pairs)) for c, f, pairs in self.rollups),
        )
        object.__setattr__(self, "multi_valued", frozenset(self.multi_valued))
        object.__setattr__(self, "scope", tuple(tuple(p) for p in self.scope))
        object.__setattr__(self, "aliases", tuple((tuple(a), tuple(b)) for a, b in self.aliases))

    @property
    def label(self) -> str:
        return self.name or self.indicator


@dataclass(frozen=True, eq=False)
class ProtectedTable:
    """A protected table in the tidy format: indicator, dimensions, value, obs_status, conf_status.

    `value` is null where suppressed; `obs_status` is A (normal) or Q (suppressed); `conf_status`
    is F (free), C (primary: a count in 1..k-1) or D (secondary: suppressed to protect another).
    """

    name: str
    indicator: str
    dimensions: tuple[str, ...]
    frame: pl.DataFrame
    k: int

    def count(self, status: str) -> int:
        """How many cells have this conf_status."""
        return int((self.frame[CONF_STATUS] == status).sum())

    @property
    def suppressed(self) -> int:
        return self.count(PRIMARY) + self.count(SECONDARY)


@dataclass(eq=False)
class TableGrid:
    """Where a table's cells sit in the linked system: ids[i1, ..., in], the total last on each axis."""

    table: CountTable
    codes: list[list[str]]
    multi: list[bool]
    ids: np.ndarray
    k: int


@dataclass(eq=False)
class CellSystem:
    """All cells of tables protected together, their additivity rows, and contributors' counts.

    A cell shared by several tables (same indicator, same codes once totals are dropped) is one
    cell here, so it gets one status everywhere. Rows of `equations` say Σ categories − total = 0;
    rows of `inequalities` say category − total ≤ 0 (multi-valued dimensions).
    """

    keys: list[tuple[str, tuple[tuple[str, str], ...]]]
    value: np.ndarray
    cost: np.ndarray
    k: np.ndarray
    grids: list[TableGrid]
    locations: list[list[tuple[int, tuple[int, ...]]]]
    equations: sparse.csr_matrix
    inequalities: sparse.csr_matrix
    own: dict[str, np.ndarray] = field(default_factory=dict)
    # Cells that may not be suppressed (released before as published) and cells that must stay
    # suppressed (released before as suppressed, or differences between releases); `floor` is
    # each cell's least possible value (0 for counts; −∞ for a difference that may be negative).
    blocked: np.ndarray | None = None
    forced: np.ndarray | None = None
    floor: np.ndarray | None = None
    primary_extra: np.ndarray | None = None  # cells primary for a reason beyond their count
    # Cells only hidden tables hold: never published, so suppressed from the start and never
    # read by their flags (no reader sees a status for them).
    unpublished: np.ndarray | None = None
    # Per attacker, cells earlier releases already give away (nothing in this release can help).
    known_before: dict[str, np.ndarray] = field(default_factory=dict)
    # Hypercube corners and signs around a cell, by (table, position): they never change.
    cube_shapes: dict[tuple[int, tuple[int, ...]], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )

    # Equations by column and each row's whole (cell, coefficient; −1 when none), for lifting.
    lift_cache: tuple[sparse.csc_matrix, list[tuple[int, float]]] | None = None
    # The equations' rows and coefficients of every cell, as Python lists (`column_entries`),
    # and every row's parts (`row_parts`).
    column_cache: tuple[list[list[int]], list[list[float]]] | None = None
    parts_cache: list[list[tuple[int, float]]] | None = None
    # Lifted cubes already found (secondary._lift), with the cells whose status they consulted.
    lift_memo: dict[bytes, tuple[object, np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.keys)

    def lifting(self) -> tuple[sparse.csc_matrix, list[tuple[int, float]]]:
        """The equations by column, and per row the cell that balances it when the others move:
        its whole (the one −1 cell; of several, the last: a difference between releases)."""
        if self.lift_cache is None:
            rows = self.equations.tocsr()
            whole: list[tuple[int, float]] = []
            for r in range(rows.shape[0]):
                cells = rows.indices[rows.indptr[r] : rows.indptr[r + 1]]
                coefs = rows.data[rows.indptr[r] : rows.indptr[r + 1]]
                negative = cells[coefs < 0]
                whole.append(
                    (int(negative.max()), float(coefs[cells == negative.max()][0]))
                    if negative.size
                    else (-1, 0.0)
                )
            self.lift_cache = (rows.tocsc(), whole)
        return self.lift_cache

    def column_entries(self) -> tuple[list[list[int]], list[list[float]]]:
        """Per cell, the rows of `equations` it is in and its coefficient there (ascending rows):
        the matrix's columns as plain lists, for loops that touch a few cells at a time."""
        if self.column_cache is None:
            columns = self.lifting()[0]
            starts = columns.indptr.tolist()
            rows, coefs = columns.indices.tolist(), columns.data.tolist()
            self.column_cache = (
                [rows[starts[c] : starts[c + 1]] for c in range(self.size)],
                [coefs[starts[c] : starts[c + 1]] for c in range(self.size)],
            )
        return self.column_cache

    def row_parts(self) -> list[list[tuple[int, float]]]:
        """Per row of `equations`, its cells with a positive coefficient (the parts of its
        whole), as (cell, coefficient), largest value first (then lowest cell): the order in
        which lifting prefers a part when none of them is suppressed."""
        if self.parts_cache is None:
            rows = self.equations.tocsr()
            starts = rows.indptr.tolist()
            cells, coefs = rows.indices.tolist(), rows.data.tolist()
            value = self.value.tolist()
            self.parts_cache = [
                sorted(
                    (
                        (c, a)
                        for c, a in zip(
                            cells[starts[r] : starts[r + 1]],
                            coefs[starts[r] : starts[r + 1]],
                            strict=True,
                        )
                        if a > 0
                    ),
                    key=lambda part: (-int(value[part[0]]), part[0]),
                )
                for r in range(rows.shape[0])
            ]
        return self.parts_cache

    def neighbours(self, cell: int) -> np.ndarray:
        """Cells that share an additivity row with `cell`."""
        found: list[np.ndarray] = []
        for matrix in (self.equations, self.inequalities):
            column = matrix[:, [cell]]
            rows = column.nonzero()[0]
            if rows.size:
                found.append(matrix[rows].indices)
        if not found:
            return np.empty(0, dtype=np.int64)
        every = np.unique(np.concatenate(found))
        return every[every != cell]

    def neighbours_of(self, cells: np.ndarray) -> np.ndarray:
        """The union of `neighbours(c)` for every c in `cells`, sorted, in one pass over the
        rows (a failing set can hold thousands of cells)."""
        cells = np.unique(np.asarray(cells, dtype=np.int64))
        member = np.zeros(self.size, dtype=bool)
        member[cells] = True
        found: list[np.ndarray] = []
        for matrix in (self.equations, self.inequalities):
            if matrix.shape[0] == 0:
                continue
            touched = (matrix[:, cells] != 0).sum(axis=1).A1  # cells of the set in each row
            for rows, outside_only in ((touched >= 1, True), (touched >= 2, False)):
                picked = np.flatnonzero(rows)
                if picked.size == 0:
                    continue
                indices = matrix[picked].indices
                # A cell of the set is its own neighbour only through another cell of the set.
                found.append(indices[~member[indices]] if outside_only else indices)
        if not found:
            return np.empty(0, dtype=np.int64)
        return np.unique(np.concatenate(found).astype(np.int64))


def _text_codes(frame: pl.DataFrame, dims: Sequence[str], label: str) -> pl.DataFrame:
    if (
        frame.select(pl.any_horizontal(pl.col(d).is_null() for d in dims).any()).item()
        if dims
        else False
    ):
        raise TableError("protect-missing-code", table=label)
    return frame.with_columns(pl.col(d).cast(pl.String) for d in dims)


def _counts(frame: pl.DataFrame, label: str) -> np.ndarray:
    column = frame[VALUE]
    if column.null_count():
        raise TableError("protect-bad-count", table=label)
    try:
        values = column.cast(pl.Int64, strict=True).to_numpy()
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as exc:
        raise TableError("protect-bad-count", table=label) from exc
    if column.dtype.is_float() and not np.array_equal(values, column.to_numpy()):
        raise TableError("protect-bad-count", table=label)
    if (values < 0).any():
        raise TableError("protect-bad-count", table=label)
    return values


def _flat_positions(
    frame: pl.DataFrame, dims: Sequence[str], codes: list[list[str]], shape: tuple[int, ...]
) -> np.ndarray:
    flat = np.zeros(frame.height, dtype=np.int64)
    for d, dim in enumerate(dims):
        lookup = {code: i for i, code in enumerate(codes[d])}
        index = frame[dim].replace_strict(lookup, default=-1, return_dtype=pl.Int64).to_numpy()
        if (index < 0).any():
            return np.full(frame.height, -1, dtype=np.int64)
        flat = flat * shape[d] + index
    return flat


def _grid_of(
    table: CountTable, total: str, check_margins: bool = True
) -> tuple[list[list[str]], np.ndarray, dict[str, np.ndarray]]:
    """Codes per dimension (total last), the value grid, and each contributor's own grid."""
    label, dims = table.label, list(table.dimensions)
    if len(set(dims)) != len(dims) or any(d in RESERVED_COLUMNS for d in dims):
        raise TableError("protect-bad-dimensions", table=label)
    missing = [c for c in [*dims, VALUE] if c not in table.cells.columns]
    if missing:
        raise TableError("protect-missing-column", table=label, column=", ".join(missing))
    unknown = sorted(table.multi_valued - set(dims))
    if unknown:
        raise TableError("protect-missing-column", table=label, column=", ".join(unknown))
    cells = _text_codes(table.cells, dims, label)
    values = _counts(cells, label)
    codes = [[*sorted(c for c in cells[d].unique().to_list() if c != total), total] for d in dims]
    shape = tuple(len(c) for c in codes)
    grid = np.zeros(shape, dtype=np.int64)
    flat = _flat_positions(cells, dims, codes, shape)
    if np.unique(flat).size != flat.size:
        raise TableError("protect-duplicate-cell", table=label)
    grid.reshape(-1)[flat] = values  # combinations absent from the frame are zero counts
    own: dict[str, np.ndarray] = {}
    if table.contributions is not None:
        parts = table.contributions
        missing = [c for c in [*dims, CONTRIBUTOR, VALUE] if c not in parts.columns]
        if missing:
            raise TableError("protect-missing-column", table=label, column=", ".join(missing))
        parts = _text_codes(parts, [*dims, CONTRIBUTOR], label)
        part_values = _counts(parts, label)
        part_flat = _flat_positions(parts, dims, codes, shape)
        if (part_flat < 0).any():
            raise TableError("protect-contributions-mismatch", table=label)
        contributors = parts[CONTRIBUTOR].to_numpy()
        for name in sorted(set(contributors.tolist())):
            mine = np.zeros(shape, dtype=np.int64)
            chosen = contributors == name
            np.add.at(mine.reshape(-1), part_flat[chosen], part_values[chosen])
            own[str(name)] = mine
        # A table of zeros has no contribution rows at all: the sum over no contributor is zeros.
        if not np.array_equal(sum(own.values(), np.zeros(shape, dtype=np.int64)), grid):
            raise TableError("protect-contributions-mismatch", table=label)
    if check_margins:
        _check_margins(grid, dims, table.multi_valued, label)
    return codes, grid, own


def _check_margins(
    grid: np.ndarray, dims: Sequence[str], multi: frozenset[str], label: str
) -> None:
    for axis, dim in enumerate(dims):
        moved = np.moveaxis(grid, axis, -1)
        totals, categories = moved[..., -1], moved[..., :-1]
        if categories.shape[-1] == 0:
            continue
        if dim in multi:
            bad = bool((categories > totals[..., None]).any())
        else:
            bad = not np.array_equal(categories.sum(axis=-1), totals)
        if bad:
            raise TableError("protect-not-additive", table=label, dimension=dim)


def _rows(rows: Iterable[tuple[tuple[int, ...], tuple[int, ...]]], n: int) -> sparse.csr_matrix:
    seen: dict[tuple[int, ...], tuple[int, ...]] = {}
    for cells, coefs in rows:
        order = np.argsort(cells)
        key = tuple(cells[i] for i in order)
        seen.setdefault(key, tuple(coefs[i] for i in order))
    indptr: list[int] = [0]
    indices: list[int] = []
    data: list[int] = []
    for key, coefs in seen.items():
        indices.extend(key)
        data.extend(coefs)
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int64), indptr),
        shape=(len(seen), n),
    )


def _children(
    rollup: tuple[str, str, tuple[tuple[str, str], ...]],
) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for fine, coarse in rollup[2]:
        found.setdefault(coarse, []).append(fine)
    return found


def _aliases(
    table: CountTable, rollups: Iterable[tuple[str, str, tuple[tuple[str, str], ...]]]
) -> dict[tuple[str, str], tuple[str, str]]:
    """(coarse dimension, code) -> (fine dimension, code) where the coarse code has one fine code
    only and the table does not break down by the fine dimension itself: the same children."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for rollup in rollups:
        coarse_dim, fine_dim, _ = rollup
        if fine_dim in table.dimensions:
            continue
        for coarse, fines in _children(rollup).items():
            if len(fines) == 1:
                found[(coarse_dim, coarse)] = (fine_dim, fines[0])
    return found


def _rollup_rows(
    index: dict[tuple[str, tuple[tuple[str, str], ...]], int], tables: Sequence[CountTable]
) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Σ fine cells − coarse cell = 0 for every coarse cell whose fine cells (same children,
    every other code the same) are all in the system."""
    rollups = {r for t in tables for r in t.rollups}
    if not rollups:
        return []
    rows: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    for rollup in sorted(rollups):
        coarse_dim, fine_dim, _ = rollup
        children = _children(rollup)
        for (tag, codes), cell in index.items():
            named = dict(codes)
            coarse = named.get(coarse_dim)
            if coarse is None or fine_dim in named or len(children.get(coarse, ())) < 2:
                continue
            del named[coarse_dim]
            parts = []
            for fine in children[coarse]:
                other = dict(named)
                other[fine_dim] = fine
                parts.append(index.get((tag, tuple(sorted(other.items())))))
            if all(p is not None for p in parts):
                found = [int(p) for p in parts if p is not None]
                rows.append(((*found, cell), (*([1] * len(found)), -1)))
    return rows


def build_system(
    tables: Sequence[CountTable], settings: ProtectionSettings, check_margins: bool = True
) -> CellSystem:
    """Link the tables into one system of cells; raises TableError when a table is malformed.

    `check_margins` refuses tables whose totals do not add up (off for published tables, whose
    suppressed cells stand as zeros).
    """
    if not tables:
        raise TableError("protect-no-tables")
    total = settings.total_code
    index: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    values: list[int] = []
    margins: list[int] = []
    ks: list[int] = []
    locations: list[list[tuple[int, tuple[int, ...]]]] = []
    grids: list[TableGrid] = []
    owns: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
    # Hierarchies hold for every table of the system (tables of earlier releases read back from
    # the ledger carry none of their own).
    every_rollup = sorted({r for t in tables for r in t.rollups})
    for t, table in enumerate(tables):
        codes, grid, own = _grid_of(table, total, check_margins)
        k = settings.k_for(table.dimensions, table.sensitive)
        aliases = _aliases(table, every_rollup)
        aliases.update(  # the table's own; never onto a dimension it breaks down by itself
            (a, b) for a, b in table.aliases if b[0] not in table.dimensions
        )
        ids = np.empty(grid.shape, dtype=np.int64)
        for position in np.ndindex(*grid.shape):
            named = tuple(
                (dim, codes[d][position[d]])
                for d, dim in enumerate(table.dimensions)
                if codes[d][position[d]] != total
            )
            if table.scope:
                present = {dim for dim, _ in named}
                named += tuple((dim, code) for dim, code in table.scope if dim not in present)
            if aliases:
                named = tuple(aliases.get(pair, pair) for pair in named)
            tag = table.indicator
            if table.version and (
                table.version_cells is None
                or tuple(codes[d][position[d]] for d in range(len(codes))) in table.version_cells
            ):
                tag = f"{table.indicator}#{table.version}"
            key = (tag, tuple(sorted(named)))
            cell = index.get(key)
            if cell is None:
                cell = index[key] = len(values)
                values.append(int(grid[position]))
                margins.append(len(table.dimensions) - len(named))
                ks.append(k)
                locations.append([])
            elif check_margins and values[cell] != int(grid[position]):
                raise TableError("protect-linked-mismatch", table=table.label)
            else:
                values[cell] = max(values[cell], int(grid[position]))
                ks[cell] = max(ks[cell], k)
            ids[position] = cell
            locations[cell].append((t, position))
        multi = [d in table.multi_valued for d in table.dimensions]
        grids.append(TableGrid(table, codes, multi, ids, k))
        owns.append((ids, own))
    n = len(values)
    value = np.asarray(values, dtype=np.int64)
    unpublished = None
    if any(t.hidden for t in tables):
        unpublished = np.ones(n, dtype=bool)
        for g in grids:
            if not g.table.hidden:
                unpublished[g.ids.reshape(-1)] = False
    cost = (settings.cost_per_cell + settings.cost_per_count * value) * (
        settings.margin_factor ** np.asarray(margins, dtype=float)
    )
    own_all: dict[str, np.ndarray] = {}
    for ids, own in owns:
        for name, mine in own.items():
            target = own_all.setdefault(name, np.zeros(n, dtype=np.int64))
            target[ids.reshape(-1)] = mine.reshape(-1)
    if own_all and not np.array_equal(sum(own_all.values()), value):
        raise TableError("protect-contributions-mismatch", table=tables[0].label)
    equations: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def value_of(cell: int) -> int:
        return int(value[cell])

    inequalities: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    for g in grids:
        for axis, is_multi in enumerate(g.multi):
            moved = np.moveaxis(g.ids, axis, -1).reshape(-1, g.ids.shape[axis])
            if moved.shape[1] < 2:
                continue
            for row in moved:
                total_cell, categories = int(row[-1]), [int(c) for c in row[:-1]]
                if total_cell in categories:
                    continue  # one period released as its own total (scope): the same cell
                if is_multi:
                    inequalities.extend(((c, total_cell), (1, -1)) for c in categories)
                    # total ≤ Σ categories when every child counted has a category: an attacker
                    # may assume it, so the engine does wherever it holds (a further row only
                    # narrows intervals: protecting against it is conservative). Published
                    # tables (check_margins off) hide the truth, so their audit leaves it out.
                    if check_margins and value_of(total_cell) <= sum(map(value_of, categories)):
                        inequalities.append(
                            ((total_cell, *categories), (1, *([-1] * len(categories))))
                        )
                else:
                    equations.append(((*categories, total_cell), (*([1] * len(categories)), -1)))
    equations.extend(_rollup_rows(index, tables))
    return CellSystem(
        keys=list(index),
        value=value,
        cost=cost,
        k=np.asarray(ks, dtype=np.int64),
        grids=grids,
        locations=locations,
        equations=_rows(equations, n),
        inequalities=_rows(inequalities, n),
        own=own_all,
        forced=None if unpublished is None else unpublished.copy(),
        unpublished=unpublished,
    )
