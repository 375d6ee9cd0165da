"""The release ledger keeps every release and its cells, and an old warehouse gains it on first write."""

from __future__ import annotations

import polars as pl

from casepool.warehouse.ledger import (
    cell_identity,
    list_releases,
    record_release,
    released_cells,
)
from casepool.warehouse.store import open_warehouse


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
