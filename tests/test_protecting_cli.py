"""`casepool audit`: intervals and verdicts, exit codes 0/1/2, and --json agreeing with the library."""

from __future__ import annotations

import json

from casepool.cli.main import app
from casepool.protecting import audit, read_tidy_table


def test_protected_table_exits_0_and_prints_each_interval(runner, fixtures):
    result = runner.invoke(
        app, ["audit", str(fixtures / "protecting" / "geurts_c_published.csv"), "--k", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "x[row=r1, col=c1] (C) outsider: [3, 6] protected" in result.stdout
    assert "Protected" in result.stderr


def test_one_suppression_in_a_row_exits_1_naming_the_cell(runner, fixtures):
    path = fixtures / "protecting" / "one_suppression_in_row_disclosed.csv"
    result = runner.invoke(app, ["audit", str(path)])
    assert result.exit_code == 1
    assert "cases[region=A, sex=female]" in result.stderr and "DISCLOSED" in result.stderr


def test_insider_who_knows_its_singleton_recovers_the_other(runner, fixtures):
    table = fixtures / "protecting" / "singletons_d_only_primaries_suppressed.csv"
    own = fixtures / "protecting" / "singletons_d_org_x_own.csv"
    # Two singletons flagged C (each ≥ 1, summing to 2) are already given away to an outsider
    # who reads the flags (tests/test_flags_told.py); the insider needs only its own.
    outsider = runner.invoke(app, ["audit", str(table), "--k", "2"])
    assert outsider.exit_code == 1 and "outsider: [1, 1] DISCLOSED" in outsider.stdout
    result = runner.invoke(app, ["audit", str(table), "--k", "2", "--insider", str(own)])
    assert result.exit_code == 1
    assert "insider singletons_d_org_x_own: [1, 1] DISCLOSED" in result.stdout


def test_published_small_count_is_a_finding(runner, fixtures):
    # Row r3 of the Geurts table publishes two 3s: fine for k = 3, not for k = 5.
    path = fixtures / "protecting" / "geurts_c_published.csv"
    result = runner.invoke(app, ["audit", str(path), "--k", "5", "--lang", "ar"])
    assert result.exit_code == 1
    assert "عدد صغير منشور" in result.stdout


def test_unreadable_files_exit_2(runner, fixtures, tmp_path):
    assert runner.invoke(app, ["audit", str(tmp_path / "missing.csv")]).exit_code == 2
    assert (
        runner.invoke(app, ["audit", str(fixtures / "protecting" / "not_a_table.xlsx")]).exit_code
        == 2
    )
    no_value = tmp_path / "no_value.csv"
    no_value.write_text("indicator,sex\nx,F\n", encoding="utf-8")
    result = runner.invoke(app, ["audit", str(no_value)])
    assert result.exit_code == 2 and "value" in result.stderr


def test_json_matches_the_library(runner, fixtures):
    path = fixtures / "protecting" / "geurts_c_published.csv"
    result = runner.invoke(app, ["audit", str(path), "--k", "3", "--json"])
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    expected = audit(read_tidy_table(path), k=3).to_dict()
    assert payload["cells"] == expected["cells"] and payload["protected"] is True


def test_big_linked_sets_get_proven_verdicts_instead_of_exact_ends(fixtures):
    frame = read_tidy_table(fixtures / "protecting" / "one_suppression_in_row_disclosed.csv")
    exact = audit(frame, k=5)
    quick = audit(frame, k=5, exact_limit=0)
    assert [v.verdict for v in quick.verdicts] == [v.verdict for v in exact.verdicts]
    assert not any(v.exact for v in quick.verdicts if v.verdict != "small-count-published")
