"""Revisions from a geometric reserve: a quarter whose data keep changing is measured again a few
times, each revision spending half of what is left above the steward's reserve, the spends never
passing the budget; the refusal, when it comes, is one line and spends nothing."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from casepool.core.errors import UsageError
from casepool.protecting.dp_settings import load_dp_settings
from casepool.publishing.dp_answers import budget_report
from casepool.publishing.query import query
from casepool.warehouse import budget
from casepool.warehouse.ingest import ingest_packages
from casepool.warehouse.ledger import list_releases
from casepool.warehouse.organisations import add_organisation
from casepool.warehouse.store import open_warehouse
from fixtures.submit.builders import canonical_records, make_package, org_keys

T0 = datetime(2025, 8, 1, 9, 0, tzinfo=UTC)
QUARTER = "2025-Q3"


def _send(w, tmp_path, org: str, n: int, seed: int) -> None:
    keys = org_keys(tmp_path / "keys", org)
    add_organisation(w, org, org, tmp_path / "keys" / f"{org}.pub")
    package = make_package(tmp_path / org, keys, canonical_records(n, seed=seed), created=T0)
    ingest_packages([package], w)


def _state(w) -> tuple[float, int, dict[str, float]]:
    with open_warehouse(w, read_only=True) as con:
        releases = [r for r in list_releases(con, kind="measurement") if r.method == "dp"]
        return budget.spent_on(con, QUARTER), len(releases), budget.stored_rhos(con, QUARTER)


def _current_rhos(w) -> dict[str, float]:
    with open_warehouse(w, read_only=True) as con:
        rows = con.execute(
            "SELECT measurement, rho FROM dp_measurements WHERE period = ?", [QUARTER]
        ).fetchall()
    return {r[0]: r[1] for r in rows}


def test_late_packages_are_revised_from_a_geometric_reserve_until_one_is_refused(tmp_path):
    settings = load_dp_settings()
    assert (settings.workload_share, settings.revision_share) == (0.5, 0.5)
    share = settings.workload_share
    rho = settings.rho_per_quarter
    w = tmp_path / "w.duckdb"
    _send(w, tmp_path, "ORG-01", 30, seed=1)
    assert query(w, "registered_cases", by="sex").spent == pytest.approx(share * rho)
    first = _current_rhos(w)
    expected = share * rho
    revisions = 0
    for i in range(2, 10):
        _send(w, tmp_path, f"ORG-0{i}", 5, seed=i)  # a late package: the quarter is stale
        spent_before, releases_before, _ = _state(w)
        available = rho * (1 - settings.extras_reserve) - spent_before
        cost = settings.revision_share * available
        if cost < settings.min_revision * share * rho * (1 - 1e-9):
            with pytest.raises(UsageError) as caught:
                query(w, "registered_cases", by="sex")
            message = caught.value.message("en")
            assert caught.value.key == "dp-revision-over-budget" and "\n" not in message
            assert QUARTER in message and "nothing was spent" in message
            assert _state(w)[:2] == (spent_before, releases_before)
            assert budget_report(w).periods[0]["measurements"] == "stale"
            break
        answer = query(w, "registered_cases", by="sex")
        revisions += 1
        expected += cost
        assert answer.spent == pytest.approx(cost)
        spent_after, releases_after, _ = _state(w)
        assert spent_after == pytest.approx(expected) and spent_after <= rho
        assert releases_after == releases_before + 1
        # Every table is measured again at the same fraction of its first ρ (scaled alike).
        factor = cost / (share * rho)
        now = _current_rhos(w)
        assert all(now[name] == pytest.approx(first[name] * factor) for name in first)
        # Margins widen as √(1/factor): the answer says so honestly.
        assert answer.table.frame.get_column("margin").min() > 0
    else:
        pytest.fail("no revision was refused")
    assert revisions == 3  # 0.2, 0.1, 0.05 of ρ = 1; the fourth would get 0.025 < 0.03125
    assert _state(w)[0] == pytest.approx(0.85 * rho)
    assert budget_report(w).periods[0]["revisions"] == 3


def test_a_revision_never_spends_more_than_the_first_measurement(tmp_path):
    # With a small first share, half of what is left would exceed it: capped at the first's ρ.
    settings = dataclasses.replace(load_dp_settings(), workload_share=0.1)
    w = tmp_path / "w.duckdb"
    _send(w, tmp_path, "ORG-01", 30, seed=1)
    query(w, "registered_cases", by="sex", settings=settings)
    _send(w, tmp_path, "ORG-02", 5, seed=2)
    again = query(w, "registered_cases", by="sex", settings=settings)
    assert again.spent == pytest.approx(0.1)
    assert _state(w)[0] == pytest.approx(0.2)
