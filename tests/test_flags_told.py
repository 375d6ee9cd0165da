"""An attacker reads the flags too: a suppressed count flagged C (primary) is 1..k-1 or
dominated, so it is not 0. Found by the lead in round 4: in random 2-D tables the engine's
protection often left a primary cell's interval [0, 5], exactly k wide, which the flag narrows
to [1, 5]. The engine now protects against that reader, and the audit reads the flags."""

from __future__ import annotations

import numpy as np
import polars as pl

import casepool.protecting.secondary as secondary
from casepool.protecting import CountTable, ProtectionSettings, audit, protect

HEAD = ["region", "value", "obs_status", "conf_status"]
SETTINGS = ProtectionSettings(k=5, k_sensitive=5, protection_interval=5)


def test_the_c_flag_narrows_a_primary_cell_to_the_audit() -> None:
    # A (3 children) is primary, B (2) its complement, the total 5 published: A lies in [0, 5]
    # from the table, but the C flag says A ≥ 1: [1, 5] is 4 wide, narrower than k = 5.
    rows = [["A", None, "Q", "C"], ["B", None, "Q", "D"], ["_T", 5, "A", "F"]]
    table = pl.DataFrame(rows, schema=HEAD, orient="row")
    assert audit(table, k=5, flags_told=False).protected
    report = audit(table, k=5)
    assert not report.protected
    narrowed = [v for v in report.verdicts if v.attacker == "outsider" and v.verdict != "protected"]
    assert [(v.lower, v.upper) for v in narrowed] == [(1, 5)]


def _table(values: list[list[int]]) -> CountTable:
    grid = np.array(values)
    full = np.concatenate([grid, grid.sum(axis=0, keepdims=True)], axis=0)
    full = np.concatenate([full, full.sum(axis=1, keepdims=True)], axis=1)
    labels = [
        [f"a{i}" for i in range(grid.shape[0])] + ["_T"],
        [f"b{j}" for j in range(grid.shape[1])] + ["_T"],
    ]
    rows = [
        [labels[0][i], labels[1][j], int(full[i, j])]
        for i in range(full.shape[0])
        for j in range(full.shape[1])
    ]
    return CountTable(
        "cases", ("a", "b"), pl.DataFrame(rows, schema=["a", "b", "value"], orient="row")
    )


def test_the_engine_protects_against_a_reader_of_the_flags(monkeypatch) -> None:
    table = _table([[24, 11, 4], [11, 0, 2]])
    protected = protect([table], SETTINGS)[0].frame
    assert audit(protected, k=5).protected
    # The engine as it was (the flags not read): its table passes the flag-blind audit only.
    blind = secondary.SystemAudit

    def without_flags(*args, **kwargs):
        kwargs.pop("at_least", None)
        return blind(*args, **kwargs)

    monkeypatch.setattr(secondary, "SystemAudit", without_flags)
    before = protect([table], SETTINGS)[0].frame
    assert audit(before, k=5, flags_told=False).protected
    assert not audit(before, k=5).protected


def test_a_feasible_table_that_empties_a_flagged_cell_is_not_kept() -> None:
    from scipy import sparse

    from casepool.protecting.audit import SystemAudit

    auditor = SystemAudit(
        sparse.csr_matrix((0, 2)),
        sparse.csr_matrix((0, 2)),
        np.array([3, 2]),
        at_least=np.array([1.0, 0.0]),
    )
    auditor.add_table(np.array([0, 1]), np.array([0.0, 5.0]))  # cell 0 at 0: not feasible
    auditor.add_table(np.array([0, 1]), np.array([1.0, 4.0]))
    assert len(auditor.pool) == 1


def test_geurts_with_every_hidden_cell_flagged_primary_is_narrowed(fixtures) -> None:
    """The handbook table (tests/fixtures/protecting/geurts_c_published.csv: row 1's cells
    primary, row 2's their complements) keeps the published intervals; flagged all C, rows 2's
    cells are ≥ 1 each and sum to 3, which pins row 1's cells within 2 of each other."""
    from casepool.protecting import read_tidy_table

    frame = read_tidy_table(fixtures / "protecting" / "geurts_c_published.csv")
    assert audit(frame, k=3).protected
    all_c = frame.with_columns(
        pl.when(pl.col("obs_status") == "Q")
        .then(pl.lit("C"))
        .otherwise(pl.col("conf_status"))
        .alias("conf_status")
    )
    assert audit(all_c, k=3, flags_told=False).protected
    assert not audit(all_c, k=3).protected


def test_the_folder_audit_reads_the_flags_of_count_tables(tmp_path) -> None:
    from casepool.publishing.audit_release import audit_releases
    from test_release_audit import HEAD as FOLDER_HEAD
    from test_release_audit import _folder

    rows = ["online_cases,KRI,,Q,C", "online_cases,federal,,Q,D", "online_cases,_T,5,A,F"]
    folder = _folder(tmp_path / "pub", "2025", {"online_by_region": (FOLDER_HEAD, rows)})
    report = audit_releases([folder])
    assert not report.protected
    assert [(f.lower, f.upper, f.verdict) for f in report.findings] == [(1, 5, "too-narrow")]
    wider = ["online_cases,KRI,,Q,C", "online_cases,federal,,Q,D", "online_cases,_T,6,A,F"]
    assert audit_releases([_folder(tmp_path / "w", "2025", {"t": (FOLDER_HEAD, wider)})]).protected
