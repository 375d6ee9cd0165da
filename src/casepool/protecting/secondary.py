"""Secondary suppression: complementary cells chosen until the LP audit proves every cell protected."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import sparse

from casepool.core.errors import TableError
from casepool.protecting.audit import (
    OUTSIDER,
    Attacker,
    ComponentFinding,
    SystemAudit,
    engine_attackers,
)
from casepool.protecting.lp import PROTECTED
from casepool.protecting.primary import primary_cells
from casepool.protecting.releases import KnownBefore, link, needs_linking, told_cells
from casepool.protecting.settings import ProtectionSettings, load_protection_settings
from casepool.protecting.tables import (
    CONF_STATUS,
    FREE,
    INDICATOR,
    OBS_STATUS,
    PRIMARY,
    SECONDARY,
    VALUE,
    CellSystem,
    CountTable,
    ProtectedTable,
    build_system,
    reused,
    settings_key,
    table_key,
)

Insider = tuple[np.ndarray, np.ndarray, np.ndarray]  # own counts, cells known exactly, need
CUBE_CACHE_ENTRIES = 512  # cells whose hypercubes are kept between searches


@dataclass(frozen=True, eq=False)
class Cube:
    """A hypercube of cells: its corners, which move with the cell (plus), and how far it can move."""

    corners: np.ndarray
    plus: np.ndarray
    up: float
    down: float


LIFT_TRIES = 24  # inconsistent cubes per table tried for lifting, cheapest first
LIFT_MEMO_ENTRIES = 200_000  # lifted cubes remembered per system


def _judge(
    system: CellSystem,
    cell: int,
    corners: np.ndarray,
    plus: np.ndarray,
    need: int,
    suppressed: np.ndarray,
    insiders: Sequence[Insider],
    must_add: bool,
    within: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For cubes [cube, corner]: which are usable, their cost, width, up and down moves."""
    v = system.value[corners].astype(float)
    if system.floor is not None:
        v = v - system.floor[corners]  # a difference cell may go below zero: no bound
    up = np.where(plus, np.inf, v).min(axis=1)
    down = np.where(plus, v, np.inf).min(axis=1)
    width = up + down
    valid = width >= need
    new = ~suppressed[corners]
    if system.blocked is not None:  # released before as published: cannot be hidden now
        valid &= ~(new & system.blocked[corners]).any(axis=1)
    if must_add:
        valid &= new.any(axis=1)
    if within:  # only cubes made of cells already suppressed
        valid &= ~new.any(axis=1)
    for own, fixed, insider_need in insiders:
        if fixed[cell]:
            continue  # the insider's own cell: it knows it, nothing to protect from it
        mine = own[corners]
        if not mine.any():
            continue
        slack_down = v - mine
        slack_up = np.where(fixed[corners], 0.0, np.inf)
        up_x = np.where(plus, slack_up, slack_down).min(axis=1)
        down_x = np.where(plus, slack_down, slack_up).min(axis=1)
        valid &= (up_x + down_x) >= insider_need[cell]
    cost = np.where(new, system.cost[corners], 0.0).sum(axis=1)
    return valid, cost, width, up, down


def _broken(system: CellSystem, corners: np.ndarray, plus: np.ndarray) -> np.ndarray:
    """Which cubes' moves break an additivity row outside their own table (a region and its
    governorates, a year and its quarters, a difference between releases): those moves are
    not feasible tables, so such a cube alone proves nothing."""
    count, width = corners.shape
    if system.equations.shape[0] == 0 or count == 0:
        return np.zeros(count, dtype=bool)
    moves = sparse.csr_matrix(
        (
            np.where(plus, 1.0, -1.0).reshape(-1),
            (corners.reshape(-1), np.repeat(np.arange(count), width)),
        ),
        shape=(system.size, count),
    )
    residual = (system.equations @ moves).tocoo()
    broken = np.zeros(count, dtype=bool)
    broken[residual.col[np.abs(residual.data) > 1e-9]] = True
    return broken


def _lift(
    system: CellSystem,
    corners: np.ndarray,
    plus: np.ndarray,
    suppressed: np.ndarray,
    rounds: int = 6,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Extend a cube whose move breaks rows until every row holds: a broken row's whole (its
    −1 cell) moves by the row's residual (a governorate's move carried to its region), or, when
    the whole moves already, one of its parts does (a region's move carried to a governorate:
    a suppressed one first, else the largest). None when that needs a move other than ±t."""
    if np.unique(corners).size != corners.size:
        return None  # a cell twice in the cube: not a ±t move
    # The same cube lifts the same way while the cells whose status it consulted keep theirs.
    key = corners.astype(np.int64).tobytes() + plus.astype(bool).tobytes() + bytes([rounds])
    memo = system.lift_memo.get(key)
    if memo is not None and np.array_equal(suppressed[memo[1]], memo[2]):
        return memo[0]  # type: ignore[return-value]
    consulted: list[int] = []
    found = _lift_once(system, corners, plus, suppressed, rounds, consulted)
    if len(system.lift_memo) >= LIFT_MEMO_ENTRIES:
        system.lift_memo.clear()
    cells = np.asarray(consulted, dtype=np.int64)
    system.lift_memo[key] = (found, cells, suppressed[cells].copy())
    return found


def _lift_once(
    system: CellSystem,
    corners: np.ndarray,
    plus: np.ndarray,
    suppressed: np.ndarray,
    rounds: int,
    consulted: list[int],
) -> tuple[np.ndarray, np.ndarray] | None:
    """`_lift` without the memo; appends to `consulted` every cell whose status it read."""
    move = dict(zip(corners.tolist(), np.where(plus, 1.0, -1.0).tolist(), strict=True))
    whole = system.lifting()[1]
    in_rows, coefficients = system.column_entries()
    parts = system.row_parts()
    for _ in range(rounds):
        residual: dict[int, float] = {}
        for cell, step in move.items():
            for row, coef in zip(in_rows[cell], coefficients[cell], strict=True):
                residual[row] = residual.get(row, 0.0) + coef * step
        bad = sorted(row for row, left in residual.items() if abs(left) > 1e-9)
        if not bad:
            cells = np.fromiter(move, dtype=np.int64)
            return cells, np.fromiter(move.values(), dtype=float) > 0
        added: dict[int, float] = {}
        for row in bad:
            target, coef = whole[row]
            if target < 0 or target in move or target in added:
                # The first suppressed part, else the first part (parts are ranked by value):
                # min((not suppressed, −value, cell)). The parts after a suppressed one do not
                # change the choice, so their status is not consulted.
                first: tuple[int, float] | None = None
                for c, a in parts[row]:
                    if c in move or c in added:
                        continue
                    consulted.append(c)
                    if first is None:
                        first = (c, a)
                    if suppressed[c]:
                        first = (c, a)
                        break
                if first is None:
                    return None
                target, coef = first
            step = -float(residual[row]) / coef
            if abs(abs(step) - 1.0) > 1e-9:
                return None
            added[target] = step
        move.update(added)
    return None


def best_hypercube(
    system: CellSystem,
    cell: int,
    need: int,
    suppressed: np.ndarray,
    insiders: Sequence[Insider],
    must_add: bool = False,
    within: bool = False,
) -> Cube | None:
    """The cheapest hypercube of cells around `cell` that gives it an interval at least `need`
    wide for an outsider and leaves it unpinned for every insider; None when there is none.

    In each dimension the cube pairs the cell's code with another code; moving the corners by
    +t and −t in turn (same sign along a category–total pair) keeps every total. The corners
    must absorb the move, so the outsider's width is min(value of the corners moving against
    the cell) + min(value of those moving with it). Already suppressed corners cost nothing.
    A cube whose move breaks a row linking tables (region = Σ governorates, year = Σ quarters)
    is lifted: the row's whole moves too (and so on up), so the move stays a feasible table.
    Cubes consistent with every row come first; an inconsistent one is the last resort.
    """
    best: tuple[int, float, float, int] | None = None
    best_cube: Cube | None = None
    for table_index, position in system.locations[cell]:
        if system.grids[table_index].table.hidden:
            continue  # relations only: its cubes would hide published cells for unpublished ones
        shapes = _cube_shapes(system, table_index, position)
        if shapes is None:
            continue
        corners, plus = shapes
        valid, cost, width, up, down = _judge(
            system, cell, corners, plus, need, suppressed, insiders, must_add, within
        )
        wide = np.flatnonzero(width >= need)  # lifting only adds corners: never wider
        if wide.size == 0:
            continue
        broken = _broken(system, corners[wide], plus[wide])
        choices: list[tuple[int, float, float, Cube]] = []
        good = wide[~broken & valid[wide]]
        if good.size:
            capped = np.minimum(width[good], 1e12)
            pick = int(good[np.lexsort((good, -capped, cost[good]))[0]])
            choices.append(
                (
                    0,
                    float(cost[pick]),
                    -float(min(width[pick], 1e12)),
                    _cube(corners, plus, pick, up, down),
                )
            )
        else:
            tried = wide[broken]
            tried = tried[np.lexsort((tried, cost[tried]))][:LIFT_TRIES]
            for index in tried.tolist():
                lifted = _lift(system, corners[index], plus[index], suppressed)
                if lifted is None:
                    continue
                l_corners, l_plus = lifted[0][None, :], lifted[1][None, :]
                ok, l_cost, l_width, l_up, l_down = _judge(
                    system, cell, l_corners, l_plus, need, suppressed, insiders, must_add, within
                )
                if ok[0]:
                    choices.append(
                        (
                            0,
                            float(l_cost[0]),
                            -float(min(l_width[0], 1e12)),
                            Cube(lifted[0], lifted[1], float(l_up[0]), float(l_down[0])),
                        )
                    )
            last = wide[broken & valid[wide]]
            if not choices and last.size:  # the old way: the audit loop settles the rest
                capped = np.minimum(width[last], 1e12)
                order = np.lexsort((last, -capped, cost[last]))
                pick = int(last[order[0]])
                choices.append(
                    (
                        1,
                        float(cost[pick]),
                        -float(capped[order[0]]),
                        _cube(corners, plus, pick, up, down),
                    )
                )
        for broken_flag, c_cost, c_width, cube in choices:
            rank = (broken_flag, c_cost, c_width, table_index)
            if best is None or rank < best:
                best, best_cube = rank, cube
    return best_cube


def _cube(
    corners: np.ndarray, plus: np.ndarray, pick: int, up: np.ndarray, down: np.ndarray
) -> Cube:
    return Cube(corners[pick].astype(np.int64), plus[pick], float(up[pick]), float(down[pick]))


def _cube_shapes(
    system: CellSystem, table_index: int, position: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Every hypercube around a cell: corner ids [cube, corner] and which corners move with it."""
    key = (table_index, position)
    if key in system.cube_shapes:
        return system.cube_shapes[key]
    ids = system.grids[table_index].ids
    paired = [
        d
        for d in range(ids.ndim)
        if ids.shape[d] > 1
        # an axis whose category is its own total (a release's one period) moves nothing
        and not np.array_equal(ids.take(0, axis=d), ids.take(-1, axis=d))
    ]
    if not paired:
        return None
    partners, partner_signs = [], []
    for d in paired:
        total = ids.shape[d] - 1
        others = np.array([b for b in range(ids.shape[d]) if b != position[d]])
        partners.append(others)
        same = (others == total) | (position[d] == total)
        partner_signs.append(np.where(same, 1.0, -1.0))
    shape = tuple(len(p) for p in partners)
    corner_ids, corner_signs = [], []
    for mask in range(2 ** len(paired)):
        index: list[np.ndarray | int] = list(position)
        sign = np.ones(shape)
        for i, d in enumerate(paired):
            if mask >> i & 1:
                reshape = [1] * len(paired)
                reshape[i] = shape[i]
                index[d] = partners[i].reshape(reshape)
                sign = sign * partner_signs[i].reshape(reshape)
        picked = ids[tuple(index)]
        corner_ids.append(np.broadcast_to(picked, shape).reshape(-1))
        corner_signs.append(sign.reshape(-1))
    found = (np.stack(corner_ids, axis=1).astype(np.int32), np.stack(corner_signs, axis=1) > 0)
    if len(system.cube_shapes) >= CUBE_CACHE_ENTRIES:
        system.cube_shapes.clear()  # bounded memory: big 4-D tables would hold hundreds of MB
    system.cube_shapes[key] = found
    return found


def cube_tables(system: CellSystem, cube: Cube, need: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Feasible tables the cube's moves give (cells, values), to settle the audit without LPs.

    Moves by ±1 serve insiders (who need the cell unpinned), the widest moves the outsider.
    A move that breaks a row (a corner shared with another table, a multi-valued total) is dropped.
    """
    steps = {1.0, -1.0, min(cube.up, float(max(need, 1))), -cube.down}
    found = []
    signs = np.where(cube.plus, 1.0, -1.0)
    for step in sorted(steps):
        if step == 0 or step > cube.up or -step > cube.down:
            continue
        delta = signs * step
        moved = system.value[cube.corners] + delta
        if system.equations.shape[0]:
            residual = system.equations[:, cube.corners] @ delta
            if np.abs(residual).max() > 1e-9:
                continue
        if system.inequalities.shape[0]:
            slack = system.inequalities @ system.value.astype(float)
            slack += system.inequalities[:, cube.corners] @ delta
            if slack.max() > 1e-9:
                continue
        found.append((cube.corners.copy(), moved.astype(float)))
    return found


LP_MOVE_FLOOR = 1e-3  # least cost per unit moved, so moves through hidden cells stay short


def lp_complement(
    system: CellSystem,
    cell: int,
    width: int,
    suppressed: np.ndarray,
    attacker: Attacker,
    at_least: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Complements for one cell chosen by a linear program, where no hypercube serves: a cell
    tied to other tables through hidden ones (the justice funnel's cell is a share's numerator
    summed over sex, and the share's denominator a part of a `known:` complement) moves only
    across several tables at once, which no cube of one table does.

    Finds the cheapest move y of the whole system that shifts `cell` by `width` (up, or down
    when that is cheaper or the only way) while every equation and inequality still holds and
    every cell stays within what `attacker` knows of it (0 or its own count, the flags' "≥ 1",
    its cells known exactly, cells released before as published: these do not move). Moving a
    published cell costs its suppression cost per unit; suppressed and hidden cells move almost
    freely. The cells the move changes, suppressed, leave the table v + y feasible for the
    attacker, so the cell's interval is at least `width` wide. Returns (cells moved, their
    values in the moved table), or None when no such move exists."""
    from scipy.optimize import linprog

    n = system.size
    value = system.value.astype(float)
    lower = np.zeros(n) if attacker.own is None else attacker.own.astype(float)
    if system.floor is not None:
        lower = np.where(np.isfinite(system.floor), lower, -np.inf)
    if at_least is not None:
        lower = np.where(at_least > 0, np.maximum(lower, at_least), lower)
    up_room = np.full(n, np.inf)
    down_room = value - lower
    still = np.zeros(n, dtype=bool)
    if attacker.fixed is not None:
        still |= attacker.fixed
    if system.blocked is not None:
        still |= system.blocked & ~suppressed
    still[cell] = False
    up_room[still] = 0.0
    down_room[still] = 0.0
    down_room = np.maximum(down_room, 0.0)
    cost = np.where(suppressed, LP_MOVE_FLOOR, np.maximum(system.cost, LP_MOVE_FLOOR))
    cost[cell] = 0.0
    a_eq = sparse.hstack([system.equations, -system.equations]).tocsr()
    a_ub = sparse.hstack([system.inequalities, -system.inequalities]).tocsr()
    b_ub = -(system.inequalities @ value) if system.inequalities.shape[0] else None
    pick = sparse.csr_matrix(([1.0, -1.0], ([0, 0], [cell, n + cell])), shape=(1, 2 * n))
    best: tuple[float, np.ndarray] | None = None
    for step in (float(width), -float(width)):
        if step < 0 and down_room[cell] < width:
            continue
        result = linprog(
            np.concatenate([cost, cost]),
            A_ub=a_ub if b_ub is not None else None,
            b_ub=b_ub,
            A_eq=sparse.vstack([a_eq, pick]).tocsr(),
            b_eq=np.concatenate([np.zeros(a_eq.shape[0]), [step]]),
            bounds=np.column_stack([np.zeros(2 * n), np.concatenate([up_room, down_room])]),
            method="highs",
        )
        if result.status == 0 and (best is None or result.fun < best[0]):
            best = (float(result.fun), result.x[:n] - result.x[n:])
    if best is None:
        return None
    move = best[1]
    moved = np.flatnonzero(np.abs(move) > 1e-7)
    return moved, value[moved] + move[moved]


def _lp_suppress(
    system: CellSystem,
    auditor: SystemAudit,
    cell: int,
    who: str,
    need: np.ndarray,
    suppressed: np.ndarray,
    attackers: Sequence[Attacker],
) -> bool | None:
    """Suppress the complements `lp_complement` finds for a cell failing against `who`: True
    when it added cells, False when the cells already suppressed serve (others added in this
    round protect it), None when there is no such move (the caller falls back)."""
    attacker = next(a for a in attackers if a.name == who)
    if who == OUTSIDER:
        width = int(need[cell])
    else:
        width = int(attacker.need[cell]) if attacker.need is not None else 1
    found = lp_complement(system, cell, max(width, 1), suppressed, attacker, auditor.at_least)
    if found is None:
        return None
    moved, values = found
    if suppressed[moved].all():
        return False
    suppressed[moved] = True
    whole = np.round(values)
    if np.abs(whole - values).max() < 1e-6:
        auditor.add_table(moved, whole)  # a feasible table: later audits settle without an LP
    return True


def _fallback_cells(system: CellSystem, cells: np.ndarray, suppressed: np.ndarray) -> np.ndarray:
    """The cheapest published cell next to the failing ones (then anywhere in their tables)."""
    in_tables = [
        system.grids[t].ids.reshape(-1)
        for c in cells.tolist()
        for t, _ in system.locations[int(c)]
        if not system.grids[t].table.hidden
    ]
    pools = [
        system.neighbours_of(cells),
        np.concatenate(in_tables) if in_tables else np.empty(0, dtype=np.int64),
        np.arange(system.size),
    ]
    closed = suppressed if system.blocked is None else suppressed | system.blocked
    for pool in pools:
        open_cells = np.unique(pool[~closed[pool]]) if pool.size else pool
        if open_cells.size:
            order = np.lexsort((open_cells, system.cost[open_cells]))
            return open_cells[order[:1]]
    return np.empty(0, dtype=np.int64)  # nothing left to suppress: the caller decides


def _failures(
    findings: Sequence[ComponentFinding], known_before: dict[str, np.ndarray] | None = None
) -> list[tuple[int, str, np.ndarray]]:
    """(failing cell, attacker, its component) in a stable order, one per component; cells
    earlier releases already gave this attacker do not count."""
    found = []
    for finding in findings:
        exempt = (known_before or {}).get(finding.attacker)
        for j, verdict in enumerate(finding.result.verdicts):
            if verdict != PROTECTED and (exempt is None or not exempt[finding.cells[j]]):
                found.append((int(finding.cells[j]), finding.attacker, finding.cells))
                break
    return sorted(found, key=lambda f: (f[0], f[1] != OUTSIDER, f[1]))


def _swap(
    system: CellSystem,
    auditor: SystemAudit,
    suppressed: np.ndarray,
    removed: int,
    need: np.ndarray,
    attackers: Sequence[Attacker],
    tries: int = 3,
) -> bool:
    """Publish `removed` again if a few cheaper cells next to the failing ones protect as well.

    Adds, one at a time, the cheapest published neighbour of the first failing cell while the
    added cost stays below the cost of `removed`; keeps the change when the audit passes.
    """
    budget = float(system.cost[removed])
    added: list[int] = []
    for _ in range(tries):
        failures = _failures(
            auditor.check(
                suppressed,
                need,
                attackers,
                truth=system.value,
                stop_at_failure=not system.known_before,
                exempt=system.known_before,
                first_failure=True,
            ),
            system.known_before,
        )
        if not failures:
            return True
        near = system.neighbours(failures[0][0])
        closed = suppressed if system.blocked is None else suppressed | system.blocked
        near = near[~closed[near] & (near != removed)]
        if near.size == 0:
            break
        cheapest = int(near[np.lexsort((near, system.cost[near]))[0]])
        budget -= float(system.cost[cheapest])
        if budget <= 0:
            break
        suppressed[cheapest] = True
        added.append(cheapest)
    if added and not _failures(
        auditor.check(
            suppressed,
            need,
            attackers,
            truth=system.value,
            stop_at_failure=not system.known_before,
            exempt=system.known_before,
            first_failure=True,
        ),
        system.known_before,
    ):
        return True
    suppressed[added] = False
    return False


def _prune_cubes(
    system: CellSystem,
    cubes: dict[int, Cube],
    suppressed: np.ndarray,
    primary: np.ndarray,
    need: np.ndarray,
    insiders: Sequence[Insider],
) -> None:
    """Drop secondary cells, dearest first, whose primaries find other cubes among the cells
    still suppressed: cheap (no LP), so it also serves big tables the LP pruning skips."""
    users: dict[int, set[int]] = {}
    for cell, cube in cubes.items():
        for corner in cube.corners.tolist():
            users.setdefault(corner, set()).add(cell)
    secondary = np.flatnonzero(suppressed & ~primary)
    for cell in secondary[np.lexsort((secondary, -system.cost[secondary]))].tolist():
        suppressed[cell] = False
        replaced: dict[int, Cube] = {}
        for user in sorted(users.get(cell, ())):
            other = best_hypercube(system, user, int(need[user]), suppressed, insiders, within=True)
            if other is None:
                break
            replaced[user] = other
        else:
            for user, cube in replaced.items():
                for corner in cubes[user].corners.tolist():
                    users[corner].discard(user)
                cubes[user] = cube
                for corner in cube.corners.tolist():
                    users.setdefault(corner, set()).add(user)
            continue
        suppressed[cell] = True


def _publish_given_away(
    system: CellSystem,
    auditor: SystemAudit,
    suppressed: np.ndarray,
    forced: np.ndarray,
    need: np.ndarray,
    attackers: Sequence[Attacker],
) -> None:
    """Publish the secondary cells whose value earlier releases alone give an outsider exactly
    (`KnownBefore`: a year whose quarters were all published). Hiding them protects nothing,
    and a table that shows their parts (a year's quarters beside the year) fails its own audit
    and is withheld. Their value follows from what is already public, so publishing it leaves
    every attacker's feasible set as it was; the audit confirms it, or they stay suppressed."""
    given = system.known_before.get(OUTSIDER)
    if given is None:
        return
    # Secondary cells need an interval of 1, so an outsider's exemption means one value left.
    cells = np.flatnonzero(given & suppressed & ~forced & (need <= 1))
    if cells.size == 0:
        return
    suppressed[cells] = False
    # Only whether anything fails matters here: the audit may stop at the first failure.
    if _failures(
        auditor.check(
            suppressed,
            need,
            attackers,
            truth=system.value,
            stop_at_failure=True,
            exempt=system.known_before,
        ),
        system.known_before,
    ):
        suppressed[cells] = True


def suppress(system: CellSystem, settings: ProtectionSettings) -> tuple[np.ndarray, np.ndarray]:
    """Primary and suppressed masks over the system's cells, proven by the LP audit."""
    value = system.value
    attackers: list[Attacker] = engine_attackers(system, settings)
    primary = primary_cells(value, system.k)
    for attacker in attackers[1:]:
        if attacker.need is not None:
            primary |= attacker.need > 1  # dominated by this contributor
    # A published count flagged C (primary) tells every reader it is not 0: by these rules a
    # primary count is 1..k-1, or dominated (others 1..k-1 beside an organisation's own > 0).
    # Only a table whose flags are distinct tells it (releases.told_cells).
    flagged = primary & told_cells(system, settings)
    if system.unpublished is not None:
        flagged &= ~system.unpublished  # no reader sees a status for a cell never published
    if system.floor is not None:
        flagged &= np.isfinite(system.floor)
    if system.primary_extra is not None:
        primary |= system.primary_extra
    if system.blocked is not None:
        primary &= ~system.blocked  # released before as published: nothing left to protect
    if system.unpublished is not None:
        # A cell no table publishes (a `known:` complement, a population cell of a hidden table)
        # holds relations between published cells; nothing is asked of it itself.
        primary &= ~system.unpublished
    forced = primary if system.forced is None else primary | system.forced
    intervals = np.array([settings.interval_for(int(k)) for k in system.k], dtype=np.int64)
    need = np.where(primary, intervals, 1)
    if system.unpublished is not None:
        need[system.unpublished] = 0
    suppressed = forced.copy()
    insiders: list[Insider] = [
        (a.own, a.fixed, a.need if a.need is not None else np.ones(system.size))
        for a in attackers[1:]
        if a.own is not None and a.fixed is not None
    ]
    if system.blocked is not None:
        flagged &= ~system.blocked
    told = np.where(flagged, 1.0, 0.0)
    auditor = SystemAudit(
        system.equations, system.inequalities, value, floor=system.floor, at_least=told
    )
    known = (
        KnownBefore(system, settings, told)
        if system.blocked is not None and system.blocked.any()
        else None
    )
    cubes: dict[int, Cube] = {}
    for cell in np.flatnonzero(primary).tolist():
        cube = best_hypercube(system, cell, int(need[cell]), suppressed, insiders)
        if cube is not None:
            suppressed[cube.corners] = True
            cubes[cell] = cube
    if settings.prune_secondary:
        _prune_cubes(system, cubes, suppressed, forced, need, insiders)
    for cell, cube in cubes.items():
        for moved, values in cube_tables(system, cube, int(need[cell])):
            auditor.add_table(moved, values)
    while True:
        # Each audit stops at its first failing cell (all `_failures` reads of it) and, should
        # that cell turn out given away before (exempt below), goes on from there next time.
        failures = _failures(
            auditor.check(
                suppressed,
                need,
                attackers,
                truth=value,
                exempt=system.known_before,
                first_failure=True,
            ),
            system.known_before,
        )
        if not failures:
            break
        before = int(suppressed.sum())
        exempted = 0
        covered: list[np.ndarray] = []
        for cell, who, component in failures:
            if known is not None:
                cell_need = int(need[cell]) if who == OUTSIDER else 1
                for a in attackers:
                    if a.name == who and a.need is not None:
                        cell_need = int(a.need[cell])
                if known(cell, who, cell_need):
                    exempt = system.known_before.setdefault(who, np.zeros(system.size, dtype=bool))
                    exempt[cell] = True
                    exempted += 1
                    continue
            cube = best_hypercube(
                system, cell, int(need[cell]), suppressed, insiders, must_add=True
            )
            # No cube, or only one whose move breaks a row between tables (it proves nothing,
            # and adding one after the other spread suppression over the whole catalogue):
            # complements by a linear program over the whole linked system.
            found = None
            if cube is None or _broken(system, cube.corners[None, :], cube.plus[None, :])[0]:
                found = _lp_suppress(system, auditor, cell, who, need, suppressed, attackers)
            if found is False:
                covered.append(component)  # protected by cells added in this round
            elif found is None and cube is not None:
                suppressed[cube.corners] = True
                for moved, values in cube_tables(system, cube, int(need[cell])):
                    auditor.add_table(moved, values)
            elif found is None:
                suppressed[_fallback_cells(system, component, suppressed)] = True
        if int(suppressed.sum()) == before and not exempted:
            # Nothing added: the audit and the LP search disagree; the old way, cell by cell.
            for component in covered:
                suppressed[_fallback_cells(system, component, suppressed)] = True
        if int(suppressed.sum()) == before and not exempted:
            raise TableError("protect-no-complement")
    _publish_given_away(system, auditor, suppressed, forced, need, attackers)
    if settings.prune_secondary:
        # Pruning re-audits a component per try: kept to components small enough to be quick.
        small = np.zeros(system.size, dtype=bool)
        for cells in auditor.components(suppressed):
            if cells.size <= settings.prune_max_component:
                small[cells] = True
        secondary = np.flatnonzero(suppressed & ~forced & small)
        for cell in secondary[np.lexsort((secondary, -system.cost[secondary]))].tolist():
            if not suppressed[cell]:
                continue
            suppressed[cell] = False
            trial = auditor.check(
                suppressed,
                need,
                attackers,
                truth=value,
                stop_at_failure=not system.known_before,
                exempt=system.known_before,
                first_failure=True,
            )
            if _failures(trial, system.known_before) and not _swap(
                system, auditor, suppressed, cell, need, attackers
            ):
                suppressed[cell] = True
        # A last pass without swaps: after it, publishing any one secondary cell fails the audit
        # (fewer suppressions never protect more, so a cell needed here stays needed).
        small[:] = False
        for cells in auditor.components(suppressed):
            if cells.size <= settings.prune_max_component:
                small[cells] = True
        secondary = np.flatnonzero(suppressed & ~forced & small)
        for cell in secondary[np.lexsort((secondary, -system.cost[secondary]))].tolist():
            suppressed[cell] = False
            # Only whether anything fails matters: the audit may stop at the first failure.
            trial = auditor.check(
                suppressed,
                need,
                attackers,
                truth=value,
                stop_at_failure=True,
                exempt=system.known_before,
            )
            if _failures(trial, system.known_before):
                suppressed[cell] = True
    return primary, suppressed


def _frames(
    system: CellSystem, primary: np.ndarray, suppressed: np.ndarray
) -> list[ProtectedTable]:
    out = []
    for grid in system.grids:
        table = grid.table
        ids = grid.ids.reshape(-1)
        positions = np.indices(grid.ids.shape).reshape(grid.ids.ndim, ids.size)
        columns: dict[str, pl.Series] = {
            INDICATOR: pl.Series(INDICATOR, [table.indicator] * ids.size, pl.String)
        }
        for d, dim in enumerate(table.dimensions):
            codes = np.asarray(grid.codes[d], dtype=object)
            columns[dim] = pl.Series(dim, codes[positions[d]].tolist(), pl.String)
        hidden = suppressed[ids]
        columns[VALUE] = pl.Series(VALUE, np.where(hidden, 0, system.value[ids]), pl.Int64)
        frame = pl.DataFrame(columns).with_columns(
            pl.when(pl.Series(hidden)).then(None).otherwise(pl.col(VALUE)).alias(VALUE),
            pl.Series(OBS_STATUS, np.where(hidden, "Q", "A").tolist(), pl.String),
            pl.Series(
                CONF_STATUS,
                np.where(primary[ids], PRIMARY, np.where(hidden, SECONDARY, FREE)).tolist(),
                pl.String,
            ),
        )
        out.append(ProtectedTable(table.label, table.indicator, table.dimensions, frame, grid.k))
    return out


def protect(
    tables: Sequence[CountTable] | CountTable, settings: ProtectionSettings | None = None
) -> list[ProtectedTable]:
    """Protect tables together (cells they share get one status) and return them in tidy form."""
    if isinstance(tables, CountTable):
        tables = [tables]
    settings = settings or load_protection_settings()
    memo = reused()
    key = None
    if memo is not None:  # within reusing_results: the same tables give the same result
        parts = [settings_key(settings), *(table_key(t) for t in tables)]
        key = ("protect", hashlib.sha256(b"\0".join(parts)).digest())
        found = memo.get(key)
        if found is not None:
            return list(found)  # type: ignore[call-overload]
    system = build_system(tables, settings)
    if needs_linking(tables):
        system = link(system, settings)
    primary, suppressed = suppress(system, settings)
    out = _frames(system, primary, suppressed)
    if memo is not None and key is not None:
        memo[key] = tuple(out)
    return out
