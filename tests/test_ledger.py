"""The release ledger keeps every release and its cells, and an old warehouse gains it on first write."""

from __future__ import annotations

import polars as pl
import pytest

from casepool.warehouse.ledger import (
    NewRelease,
    cell_identity,
    list_releases,
    record_release,
    record_releases,
    release_cells,
    released_cells,
)
from casepool.warehouse.store import open_warehouse, record_audit, record_audits


def test_a_release_and_its_cells_are_kept_and_read_back(tmp_path):
    path = tmp_path / "w.duckdb"
    with open_warehouse(path, create=True) as con:
        assert list_releases(con) == []  # no ledger yet: empty, not an error
        assert released_cells(con).height == 0
        cells = pl.DataFrame(
            {
                "table_name": ["cases_by_sex", "cases_by_sex"],
                "indicator": ["registered_cases"] * 2,
                "dimensions": [cell_identity({"sex": "F"}), cell_identity({"sex": "M"})],
                "value": [12.0, None],
                "obs_status": ["A", "Q"],
                "conf_status": ["F", "C"],
            }
        )
        first = record_release(
            con,
            kind="publication",
            method="suppress",
            actor="steward@host",
            cells=cells,
            periods=["2025"],
            submissions=["b", "a", "a"],
        )
        record_release(con, kind="query", method="dp", actor="analyst", cells=cells.head(1))
    with open_warehouse(path, read_only=True) as con:
        releases = list_releases(con)
        assert [(r.kind, r.cells, r.submissions) for r in releases] == [
            ("publication", 2, ["a", "b"]),
            ("query", 1, []),
        ]
        assert releases[0].release_id == first
        exact = released_cells(con)
        assert exact["conf_status"].to_list() == ["F", "C"]
        assert exact["value"].to_list() == [12.0, None]


def test_cell_identity_does_not_depend_on_the_order_of_dimensions():
    assert cell_identity({"sex": "F", "governorate": "IQG01"}) == cell_identity(
        {"governorate": "IQG01", "sex": "F"}
    )


def _cells(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "table_name": ["t"] * n,
            "indicator": ["registered_cases"] * n,
            "dimensions": [cell_identity({"sex": "F", "n": str(i)}) for i in range(n)],
            "value": [float(i) for i in range(n)],
            "obs_status": ["E"] * n,
            "conf_status": ["F"] * n,
            "margin": [1.5 * i for i in range(n)],
        }
    )


def _ledger(con) -> list[tuple]:
    """Everything the ledger holds of each release but its id and time, oldest first."""
    out = []
    for r in list_releases(con):
        cells = release_cells(con, r.release_id).sort("dimensions").rows()
        margins = con.execute(
            "SELECT margin FROM release_cells WHERE release_id = ? ORDER BY dimensions",
            [r.release_id],
        ).fetchall()
        row = (r.kind, r.method, r.actor, r.audience, r.periods, r.submissions)
        out.append((*row, r.data_fingerprint, r.detail, r.cells, cells, margins))
    return out


@pytest.mark.parametrize("mixed", [True, False])
def test_a_batch_of_releases_is_kept_as_the_same_releases_one_by_one(tmp_path, mixed):
    """`record_releases` (one insert per table, as the service writes its answers) keeps exactly
    what `record_release` keeps for each, in order, on a warehouse that had no ledger yet (cells
    of one kind, as the service's answers, or of several)."""
    releases = [
        NewRelease("query", "dp", "serve:a", _cells(3), ["2025-Q1", "2025-Q2"], detail={"x": 1}),
        NewRelease("query", "dp", "serve:b", _cells(0)),
        NewRelease(
            "publication",
            "suppress",
            "steward",
            _cells(2).drop("margin"),
            ["2025"],
            ["s2", "s1", "s2"],
            audience="public",
            data_fingerprint="abc",
        )
        if mixed
        else NewRelease("query", "dp", "serve:c", _cells(2), ["2024"], detail={"y": [1]}),
    ]
    one, batch = tmp_path / "one.duckdb", tmp_path / "batch.duckdb"
    for path in (one, batch):
        with open_warehouse(path, create=True):
            pass
    with open_warehouse(one) as con:
        ids_one = [record_release(con, **r.__dict__) for r in releases]
    with open_warehouse(batch) as con:
        ids_batch = record_releases(con, releases)
        assert record_releases(con, []) == []
    assert len(set(ids_one + ids_batch)) == 6
    with open_warehouse(one, read_only=True) as a, open_warehouse(batch, read_only=True) as b:
        assert _ledger(a) == _ledger(b)
        assert [r.release_id for r in list_releases(b)] == ids_batch
        kept = _ledger(b)
    assert kept[0][4] == ["2025-Q1", "2025-Q2"] and kept[2][5] == (["s1", "s2"] if mixed else [])
    assert kept[0][9][1] == (
        "t",
        "registered_cases",
        cell_identity({"sex": "F", "n": "1"}),
        1.0,
        "E",
        "F",
    )
    assert kept[2][10] == ([(None,), (None,)] if mixed else [(0.0,), (1.5,)])


def test_audit_lines_written_together_keep_their_order_and_contents(tmp_path):
    path = tmp_path / "w.duckdb"
    lines = [
        {"action": "query", "actor": f"serve:u{i % 3}", "detail": {"i": i, "t": "ب"}}
        for i in range(600)  # more than one statement's worth
    ] + [{"action": "download", "actor": "serve:u0", "org": "ORG-01", "detail": None}]
    with open_warehouse(path, create=True) as con:
        start = con.execute("SELECT count(*) FROM audit_log").fetchone()[0]
        record_audits(con, lines)
        record_audit(con, "after", actor="x")
        rows = con.execute(
            "SELECT action, actor, org, detail FROM audit_log ORDER BY seq"
        ).fetchall()[start:]
    assert [(a, b, c) for a, b, c, _ in rows[:-1]] == [
        (x["action"], x["actor"], x.get("org")) for x in lines
    ]
    assert [r[3] for r in rows[:3]] == [
        '{"i": 0, "t": "ب"}',
        '{"i": 1, "t": "ب"}',
        '{"i": 2, "t": "ب"}',
    ]
    assert rows[-2][3] is None and rows[-1][0] == "after"
