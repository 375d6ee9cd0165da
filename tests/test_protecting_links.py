"""Links inside the engine, attacked as an attacker would: a region total beside its governorates
(the "not stated" region is the "not stated" governorate) and a multi-valued total that is at most
the sum of its categories. The attacker's system is laid out here, not by the engine, and solved
with the project's LP audit as the outsider and as each organisation."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import sparse

from casepool import protecting
from casepool.protecting import CountTable, ProtectionSettings, protect
from casepool.protecting.audit import SystemAudit, engine_attackers
from casepool.protecting.lp import PROTECTED
from casepool.protecting.tables import build_system
from casepool.publishing.protect import (
    _region_linked_insiders,
    _region_linked_table,
    region_of_governorates,
)

K = 5
SETTINGS = ProtectionSettings(k=K, k_sensitive=K)
REGIONS = region_of_governorates()
ROLLUP = (("region", "governorate", tuple(sorted(REGIONS.items()))),)


def _tables(own: dict[str, dict[str, int]], rollups=ROLLUP) -> list[CountTable]:
    """Cases by governorate and cases by region, from each organisation's counts per governorate."""
    out = []
    for dim, code_of in (("governorate", lambda g: g), ("region", REGIONS.__getitem__)):
        parts: dict[tuple[str, str], int] = {}
        for org, counts in own.items():
            for gov, n in counts.items():
                for code in (code_of(gov), "_T"):
                    parts[(code, org)] = parts.get((code, org), 0) + n
        codes = sorted({c for c, _ in parts})
        whole = [(c, sum(v for (cc, _), v in parts.items() if cc == c)) for c in codes]
        out.append(
            CountTable(
                "cases",
                (dim,),
                pl.DataFrame(whole, schema=[dim, "value"], orient="row"),
                contributions=pl.DataFrame(
                    [(c, o, v) for (c, o), v in parts.items()],
                    schema=[dim, "contributor", "value"],
                    orient="row",
                ),
                name=f"cases_by_{dim}",
                rollups=rollups,
            )
        )
    return out


def _attack(tables: list[CountTable], frames: list[pl.DataFrame]) -> list[str]:
    """Both published tables as one region x governorate table, audited with every insider."""
    governorates, regions = (
        f.select(t.dimensions[0], "value", "obs_status", "conf_status")
        for t, f in zip(tables, frames, strict=True)
    )
    linked = _region_linked_table(governorates, regions, [], REGIONS)
    insiders = _region_linked_insiders(
        tables[0].contributions, tables[1].contributions, [], REGIONS
    )
    report = protecting.audit(linked, k=K, protection_interval=K, insiders=insiders)
    return [f"{v.attacker} {v.codes} {v.verdict}" for v in report.failures]


def _counts(seed: int) -> dict[str, dict[str, int]]:
    rng = np.random.default_rng(seed)
    govs = sorted(REGIONS)
    return {
        org: {
            g: int(n)
            for g, n in zip(govs, rng.choice([0, 0, 1, 2, 3, 8, 15, 30], len(govs)), strict=True)
        }
        for org in ("ORG-01", "ORG-02", "ORG-03")
    }


def test_a_region_beside_its_governorates_gives_no_hidden_governorate_away():
    unlinked_leaks = 0
    for seed in range(8):
        own = _counts(seed)
        tables = _tables(own)
        frames = [p.frame for p in protect(tables, SETTINGS)]
        assert _attack(tables, frames) == [], seed
        # The same tables protected without the hierarchy: the attack is real.
        plain = _tables(own, rollups=())
        unlinked_leaks += bool(_attack(plain, [p.frame for p in protect(plain, SETTINGS)]))
    assert unlinked_leaks  # without the link some seed leaks; with it none does


def test_the_not_stated_region_and_governorate_are_one_cell():
    own = {"ORG-01": {"_U": 2, "IQG01": 40, "IQG09": 30}, "ORG-02": {"_U": 1, "IQG01": 9}}
    tables = _tables(own)
    governorates, regions = (p.frame for p in protect(tables, SETTINGS))
    hidden_g = governorates.filter(pl.col("governorate") == "_U")["obs_status"].item()
    hidden_r = regions.filter(pl.col("region") == "_U")["obs_status"].item()
    assert hidden_g == hidden_r == "Q"
    assert _attack(tables, [governorates, regions]) == []


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=100, max_value=10_000))
def test_random_region_and_governorate_tables_are_protected(seed):
    tables = _tables(_counts(seed))
    assert _attack(tables, [p.frame for p in protect(tables, SETTINGS)]) == []


SERVICES = ["health", "legal", "mhpss"]


def _multi(own: dict[str, list[list[int]]]) -> CountTable:
    """Services (multi-valued) by sex: each child of an organisation is given as the set of
    services it received (every child at least one)."""
    rows: dict[tuple[str, str, str], int] = {}
    for org, children in own.items():
        for sex, services in children:
            for service in {*(SERVICES[s] for s in services), "_T"}:
                for s in (sex, "_T"):
                    rows[(service, s, org)] = rows.get((service, s, org), 0) + 1
    whole: dict[tuple[str, str], int] = {}
    for (service, sex, _), n in rows.items():
        whole[(service, sex)] = whole.get((service, sex), 0) + n
    every = [(sv, sx) for sv in [*SERVICES, "_T"] for sx in ["F", "M", "_T"]]
    return CountTable(
        "services",
        ("service", "sex"),
        pl.DataFrame(
            [(sv, sx, whole.get((sv, sx), 0)) for sv, sx in every],
            schema=["service", "sex", "value"],
            orient="row",
        ),
        multi_valued=frozenset({"service"}),
        contributions=pl.DataFrame(
            [(sv, sx, o, n) for (sv, sx, o), n in rows.items()],
            schema=["service", "sex", "contributor", "value"],
            orient="row",
        ),
    )


def _multi_attack(table: CountTable, frame: pl.DataFrame) -> list[str]:
    """The attacker's system: the table's rows plus, laid out here, total ≤ Σ categories (a
    child received at least one service), solved for every hidden cell."""
    system = build_system([table], SETTINGS, check_margins=False)
    grid = system.grids[0]
    axis = list(table.dimensions).index("service")
    extra = []
    for line in np.moveaxis(grid.ids, axis, -1).reshape(-1, grid.ids.shape[axis]):
        coefs = np.zeros(system.size)
        coefs[line[:-1]] = -1.0
        coefs[line[-1]] = 1.0
        extra.append(coefs)
    inequalities = sparse.vstack([system.inequalities, sparse.csr_matrix(np.array(extra))]).tocsr()
    order = {(sv, sx): i for i, (sv, sx) in enumerate(frame.select("service", "sex").iter_rows())}
    suppressed = np.zeros(system.size, dtype=bool)
    primary = np.zeros(system.size, dtype=bool)
    for sv, sx, status in frame.select("service", "sex", "conf_status").iter_rows():
        cell = grid.ids[grid.codes[0].index(sv), grid.codes[1].index(sx)]
        suppressed[cell] = status != "F"
        primary[cell] = status == "C"
    assert len(order) == frame.height
    auditor = SystemAudit(system.equations, inequalities, system.value)
    need = np.where(primary, K, 1)
    found = []
    for finding in auditor.check(suppressed, need, engine_attackers(system, SETTINGS)):
        for j, verdict in enumerate(finding.result.verdicts):
            if verdict != PROTECTED:
                found.append(f"{finding.attacker} {system.keys[finding.cells[j]]} {verdict}")
    return found


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["ORG-01", "ORG-02"]),
        st.lists(
            st.tuples(
                st.sampled_from(["F", "M"]),
                st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True),
            ),
            min_size=1,
            max_size=30,
        ),
        min_size=1,
    )
)
def test_a_multi_valued_total_at_most_the_sum_of_its_categories_recovers_nothing(own):
    table = _multi(own)
    frame = protect(table, SETTINGS)[0].frame
    assert _multi_attack(table, frame) == []
