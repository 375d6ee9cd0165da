"""A CSV with lines of the wrong width: every such line is listed, the other rows are validated."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casepool.cli.main import app
from casepool.core.reading import ROW, read_export
from casepool.exchange.keys import generate_keys
from casepool.intake.submit import submit_export
from casepool.intake.validating import validate_export

FIXTURE = Path(__file__).parent / "fixtures" / "submit" / "small_export_with_names_and_phones.csv"


def ragged_export(tmp_path: Path) -> Path:
    """The five-record export as an officer breaks it: a value with a comma, cells cut off."""
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace("Layla Hassan", "Hassan, Layla")  # one cell too many
    lines[3] = lines[3].rsplit(",", 2)[0]  # two cells short
    lines[4] = lines[4].rsplit(",", 1)[0]  # one cell short
    path = tmp_path / "export.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_every_ragged_row_is_reported_and_the_rest_validated(tmp_path):
    result = validate_export(ragged_export(tmp_path), today=date(2025, 12, 31))
    ragged = [(f.row, f.params["found"], f.params["expected"]) for f in result.ragged_findings]
    assert ragged == [(2, 18, 17), (4, 15, 17), (5, 16, 17)]
    assert result.rows == 5 and result.records.height == 2
    assert result.invalid_rows >= {2, 4, 5}
    assert result.counts_by_type()["ragged-row"] == 3
    # The well-formed rows were validated as usual: rows 3 and 6 are there, and clean.
    assert sorted(result.records.get_column("_row").to_list()) == [3, 6]
    assert result.valid_rows == 2


@pytest.mark.parametrize(
    ("lang", "words"),
    [
        ("en", ["row 2: Line 2 has 18 cells but the header has 17", "row 4:", "row 5:"]),
        ("ar", ["الصف 2: في السطر 2 عدد 18 خلايا لكن العناوين 17", "الصف 4:", "الصف 5:"]),
        ("ckb", ["ڕیزی 2: دێڕی 2 18 خانەی تێدایە بەڵام سەردێڕ 17", "ڕیزی 4:", "ڕیزی 5:"]),
        ("kmr", ["rêza 2: Rêza 2 18 şane hene lê sernav 17 e", "rêza 4:", "rêza 5:"]),
    ],
)
def test_the_officer_sees_each_ragged_row_in_their_language(tmp_path, runner, lang, words):
    result = runner.invoke(app, ["validate", str(ragged_export(tmp_path)), "--lang", lang])
    assert result.exit_code == 1, result.output
    for text in words:
        assert text in result.output
    assert "Layla" not in result.output and "Hassan" not in result.output


def test_the_report_file_lists_the_ragged_rows(tmp_path, runner):
    report = tmp_path / "errors.json"
    result = runner.invoke(app, ["validate", str(ragged_export(tmp_path)), "--report", str(report)])
    assert result.exit_code == 1
    errors = json.loads(report.read_text(encoding="utf-8"))["errors"]
    ragged = [e for e in errors if e["type"] == "ragged-row"]
    assert [(e["row"], e["line"], e["found"]) for e in ragged] == [
        (2, 2, 18),
        (4, 4, 15),
        (5, 5, 16),
    ]


def test_submit_counts_ragged_rows_as_rows_of_the_export_and_invalid(tmp_path):
    generate_keys("ORG-01", tmp_path / "keys")
    refused = submit_export(
        ragged_export(tmp_path),
        org="ORG-01",
        period="2025",
        key_dir=tmp_path / "keys",
        outbox=tmp_path / "outbox",
        today=date(2025, 12, 31),
    )
    assert not refused.accepted
    assert refused.submission.dropped["invalid"] == 3
    dropped = submit_export(
        ragged_export(tmp_path),
        org="ORG-01",
        period="2025",
        key_dir=tmp_path / "keys",
        outbox=tmp_path / "outbox",
        drop_invalid=True,
        today=date(2025, 12, 31),
    )
    assert dropped.submission.rows_in_export == 5
    assert dropped.submission.dropped["invalid"] == 3


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    widths=st.lists(st.sampled_from([1, 2, 3, 3, 3, 3, 4, 5]), min_size=2, max_size=25),
    quoted=st.booleans(),
    multiline=st.booleans(),
    newline=st.sampled_from(["\n", "\r\n"]),
    blank_after=st.sets(st.integers(0, 24), max_size=3),
)
def test_kept_rows_keep_their_own_cells_and_numbers(
    tmp_path, widths, quoted, multiline, newline, blank_after
):
    """Whatever lines are ragged, each kept row holds its own cells under its own row number."""
    if all(w != 3 for w in widths):
        widths = [*widths, 3]
    lines, row = ["id,b,c"], 1
    expected_rows: dict[int, str] = {}
    ragged_rows: list[int] = []
    for i, width in enumerate(widths):
        row += 1
        cells = [f"R{row}", *(f"v{j}" for j in range(width - 1))]
        if quoted:
            cells = [f'"{c}"' for c in cells]
        if multiline and width >= 2:
            cells[1] = '"two' + newline + 'lines"'
        lines.append(",".join(cells))
        if width == 3:
            expected_rows[row] = f"R{row}"
        else:
            ragged_rows.append(row)
        if i in blank_after:
            lines.append("")
            row += 1
    path = tmp_path / f"r{abs(hash((tuple(widths), quoted, multiline, newline)))}.csv"
    path.write_bytes(newline.join(lines).encode("utf-8") + newline.encode())
    export = read_export(path)
    assert [r.row for r in export.ragged] == ragged_rows
    kept = export.frame.filter(pl.col("id").is_not_null())
    assert dict(zip(kept.get_column(ROW), kept.get_column("id"), strict=True)) == expected_rows
