"""Validate and submit in batches give exactly what they give on the whole file.

Tiny batches (a few rows) make every file cross many batch boundaries: duplicate case numbers
in different batches, errors on the first and last row of a batch, distinct texts first seen
in a later batch.
"""

from __future__ import annotations

import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from casepool.core.errors import UnreadableFileError
from casepool.core.reading import read_export, read_export_batches
from casepool.core.schema import load_schema
from casepool.exchange.keys import generate_keys
from casepool.exchange.package import write_rows
from casepool.intake.submit import submit_export
from casepool.intake.validating import validate_export
from casepool.synthesis import synthesize

FIXTURES = Path(__file__).parent / "fixtures"
TODAY = date(2025, 12, 31)


def assert_same(batched, whole) -> None:
    assert batched.export.batched and not whole.export.batched
    assert batched.to_dict() == whole.to_dict()
    assert batched.flatten(("row", "field", "type", "params")) == whole.flatten(
        ("row", "field", "type", "params")
    )
    assert batched.records.equals(whole.records)
    assert batched.findings_frame.equals(whole.findings_frame)
    assert batched.invalid_rows == whole.invalid_rows
    assert batched.no_consent_rows == whole.no_consent_rows
    assert batched.derived_age_rows == whole.derived_age_rows


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """Synthetic exports with every kind of injected error (about 12% of rows in error)."""
    out = tmp_path_factory.mktemp("synthetic")
    synthesize(out, orgs=3, records=300, error_rate=0.01, today=TODAY, fmt="csv")
    return out


@pytest.mark.parametrize("batch_rows", [1, 7, 64])
def test_synthetic_exports_give_the_same_result_in_batches(synthetic, batch_rows):
    exports = sorted(synthetic.glob("*.csv"))
    assert exports
    for export in exports:
        mapping = export.with_suffix(".mapping.yaml")
        mapping_arg = mapping if mapping.exists() else None
        whole = validate_export(export, mapping_arg, today=TODAY, batch_rows=None)
        batched = validate_export(export, mapping_arg, today=TODAY, batch_rows=batch_rows)
        assert whole.error_count > 0
        assert_same(batched, whole)


@pytest.mark.parametrize(
    ("name", "mapping"),
    [
        ("canonical_valid.csv", None),
        ("one_error_each.csv", None),
        ("cp1256_arabic_headers.csv", None),
        ("utf8_bom_semicolon.csv", None),
        ("utf16_tab_separated.txt", None),
        ("sorani_labels_arabic_indic_digits.csv", None),
        ("kobo_semicolon_select_multiple.csv", "kobo_mapping.yaml"),
    ],
)
def test_fixture_exports_give_the_same_result_one_row_at_a_time(name, mapping):
    folder = FIXTURES / "validate"
    mapping_arg = folder / mapping if mapping else None
    whole = validate_export(folder / name, mapping_arg, today=TODAY, batch_rows=None)
    batched = validate_export(folder / name, mapping_arg, today=TODAY, batch_rows=1)
    assert_same(batched, whole)


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    lines = [",".join(header)] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_duplicates_across_batches_name_the_first_row_in_an_earlier_batch(tmp_path, synthetic):
    export = next(
        p for p in sorted(synthetic.glob("*.csv")) if not p.with_suffix(".mapping.yaml").exists()
    )
    frame = pl.read_csv(export, infer_schema=False)
    case = frame.columns[0]
    # The third row repeats the first's case number, the last repeats the second's (twice).
    ids = frame.get_column(case).to_list()
    ids[2] = ids[0]
    ids[-1] = ids[1]
    ids[-2] = ids[1]
    ids[5] = None  # a missing case number is never a duplicate
    frame = frame.with_columns(pl.Series(case, ids))
    path = tmp_path / "dups.csv"
    frame.write_csv(path)
    whole = validate_export(path, today=TODAY, batch_rows=None)
    dups = [f for f in whole.findings if f.type == "duplicate-case-id"]
    assert {(f.row, f.params["first_row"]) for f in dups} >= {
        (4, 2),
        (frame.height, 3),
        (frame.height + 1, 3),
    }
    for batch_rows in (1, 2, 3, 50):
        assert_same(validate_export(path, today=TODAY, batch_rows=batch_rows), whole)


def test_refusals_are_the_same_in_batches(tmp_path):
    header = ["case_id", "sex"]
    quote = tmp_path / "quote.csv"
    quote.write_text('case_id,sex\nA1,male\n"B2,male\nC3,female\n', encoding="utf-8")
    header_only = _write(tmp_path / "header_only.csv", header, [])
    for path in (quote, header_only):
        with pytest.raises(UnreadableFileError) as whole:
            validate_export(path, batch_rows=None)
        with pytest.raises(UnreadableFileError) as batched:
            validate_export(path, batch_rows=1)
        assert (batched.value.key, batched.value.params) == (whole.value.key, whole.value.params)


def test_ragged_rows_are_listed_the_same_in_batches(tmp_path):
    """A line with too few or too many cells is listed (ragged-row), read in batches or whole:
    the batched read hands such a file to the whole read, which lists them and reads the rest."""
    short = tmp_path / "short.csv"
    short.write_text("case_id,sex\nA1,male\nB2\nC3,female\n", encoding="utf-8")
    long = tmp_path / "long.csv"
    long.write_text("case_id,sex\nA1,male\nB2,male\nC3,female,x\n", encoding="utf-8")
    for path, row in ((short, 3), (long, 4)):
        whole = validate_export(path, today=TODAY, batch_rows=None)
        assert [r.row for r in whole.export.ragged] == [row]
        for batch_rows in (1, 2, 50):
            batched = validate_export(path, today=TODAY, batch_rows=batch_rows)
            assert batched.to_dict() == whole.to_dict()
            assert batched.records.to_dicts() == whole.records.to_dicts()
            assert batched.invalid_rows == whole.invalid_rows


def _outcome(path: Path, batch_rows: int | None):
    try:
        result = validate_export(path, today=TODAY, batch_rows=batch_rows)
    except UnreadableFileError as refusal:
        return ("refused", refusal.key, refusal.params)
    return ("read", result.to_dict(), result.records.to_dicts())


@pytest.mark.parametrize(
    "body",
    [
        # quoted separators, newlines and doubled quotes inside cells
        'C1,"a, b",yes,F,7\nC2,"two\nlines",yes,M,8\nC3,"say ""hi""",no,F,9\n',
        # a quote in the middle of an unquoted cell, then the rows after it
        'C1,5" tall,yes,F,7\nC2,x,yes,M,8\nC3,y,yes,F,9\n',
        # two stray quotes, which pair up across lines
        'C1,a"b,yes,F,7\nC2,c"d,yes,M,8\nC3,e,yes,F,9\n',
        # a quote never closed
        'C1,"open,yes,F,7\nC2,x,yes,M,8\n',
        # Windows line ends, blank lines, no newline at the end
        "C1,a,yes,F,7\r\n\r\nC2,b,yes,M,8\r\n\nC3,c,no,F,9\n\nC4,d,yes,M,10",
        # a line of spaces (one cell: refused as ragged)
        "C1,a,yes,F,7\n   \nC2,b,yes,M,8\n",
        # a duplicate in the last line
        "C1,a,yes,F,7\nC2,b,yes,M,8\nC1,c,yes,F,9",
    ],
)
def test_awkward_csv_gives_the_same_outcome_in_batches(tmp_path, body):
    path = tmp_path / "awkward.csv"
    path.write_bytes(
        ("case_id,notes,consent_statistics,survivor_sex,survivor_age\n" + body).encode()
    )
    whole = _outcome(path, None)
    for batch_rows in (1, 2, 3):
        assert _outcome(path, batch_rows) == whole


def test_only_csv_is_read_in_batches(tmp_path):
    workbook = FIXTURES / "validate" / "xlsx_excel_dates_arabic_labels.xlsx"
    assert read_export_batches(workbook) is None
    assert read_export_batches(tmp_path / "missing.csv") is None
    export, batches = read_export_batches(
        FIXTURES / "validate" / "canonical_valid.csv", batch_rows=2
    )
    frames = list(batches)
    assert [f.height for f in frames] and sum(f.height for f in frames) == 3
    whole = read_export(FIXTURES / "validate" / "canonical_valid.csv")
    assert pl.concat(frames).select(whole.frame.columns).equals(whole.frame)
    assert export.frame.height == 0 and not export.complete


def test_submit_in_batches_writes_the_same_package_bytes(tmp_path, synthetic):
    keys = tmp_path / "keys"
    export = next(
        p for p in sorted(synthetic.glob("*.csv")) if not p.with_suffix(".mapping.yaml").exists()
    )
    org = "ORG-01"
    generate_keys(org, keys)
    created = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    packages = []
    for batch_rows, outbox in ((None, "whole"), (5, "batched")):
        outcome = submit_export(
            export,
            org=org,
            period="2025",
            key_dir=keys,
            outbox=tmp_path / outbox,
            drop_invalid=True,
            today=TODAY,
            created=created,
            batch_rows=batch_rows,
        )
        assert outcome.accepted, outcome.to_dict()
        packages.append(outcome)
    whole, batched = packages
    assert batched.validation.export.batched
    assert batched.to_dict() | {"package": None} == whole.to_dict() | {"package": None}
    assert batched.package.read_bytes() == whole.package.read_bytes()
    with zipfile.ZipFile(whole.package) as archive:
        assert archive.namelist()


def test_without_records_the_findings_and_counts_are_the_same(synthetic):
    export = sorted(synthetic.glob("*.csv"))[0]
    whole = validate_export(export, today=TODAY, batch_rows=None)
    lean = validate_export(export, today=TODAY, batch_rows=16, keep_records=False)
    assert lean.to_dict() == whole.to_dict()
    assert lean.findings_frame.equals(whole.findings_frame)
    assert lean.records.columns == ["_row", "case_id", "consent_statistics"]
    assert lean.records.equals(whole.records.select(lean.records.columns))


def test_pseudonyms_in_batches_equal_the_whole_series(monkeypatch):
    from casepool.intake import deidentifying

    ids = pl.Series([f"C-{i}" if i % 7 else None for i in range(2_501)] + ["٤٥ ٦"])
    whole = deidentifying.pseudonym_series(ids, b"k" * 32)
    monkeypatch.setattr(deidentifying, "_PSEUDONYM_BATCH", 100)
    batched = deidentifying.pseudonym_series(ids, b"k" * 32)
    assert batched.equals(whole) and batched.n_chunks() == 1
    assert batched.null_count() == ids.null_count()


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_blank_lines_are_not_records_whole_or_in_batches(tmp_path, newline):
    """A blank line (or one of spaces) in a CSV is no record: no missing-value errors for it, and
    the records after it keep their own line numbers; the same read in batches or whole."""
    source = (
        (FIXTURES / "validate" / "canonical_valid.csv").read_text(encoding="utf-8").splitlines()
    )
    lines = [source[0], source[1], "", source[2], "   ", source[3], "", ""]
    path = tmp_path / "blank_lines.csv"
    path.write_bytes(newline.join(lines).encode("utf-8"))
    whole = validate_export(path, today=TODAY, batch_rows=None)
    assert whole.findings == []
    assert whole.records.get_column("_row").to_list() == [2, 4, 6]
    for batch_rows in (1, 2, 50):
        batched = validate_export(path, today=TODAY, batch_rows=batch_rows)
        assert batched.to_dict() == whole.to_dict()
        assert batched.records.to_dicts() == whole.records.to_dicts()


def test_a_file_of_blank_lines_has_no_rows_whole_or_in_batches(tmp_path):
    path = tmp_path / "only_blank.csv"
    path.write_text("case_id,survivor_sex\n\n  \n\n", encoding="utf-8")
    for batch_rows in (None, 1):
        with pytest.raises(UnreadableFileError) as refused:
            validate_export(path, today=TODAY, batch_rows=batch_rows)
        assert refused.value.key == "file-no-rows"


def test_the_rows_written_through_a_file_make_the_package_the_memory_path_made(tmp_path, synthetic):
    """write_package streams cases.parquet from a file beside the package: the zip must be
    byte for byte the one built from the Parquet held in memory (zipfile.writestr)."""
    import io

    keys = tmp_path / "keys"
    export = next(
        p for p in sorted(synthetic.glob("*.csv")) if not p.with_suffix(".mapping.yaml").exists()
    )
    generate_keys("ORG-01", keys)
    created = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    outcome = submit_export(
        export,
        org="ORG-01",
        period="2025",
        key_dir=keys,
        outbox=tmp_path / "out",
        drop_invalid=True,
        today=TODAY,
        created=created,
        batch_rows=None,  # the whole-file path keeps the package rows as a frame
    )
    assert outcome.accepted
    assert [p.name for p in (tmp_path / "out").iterdir()] == [outcome.package.name]
    buffer = io.BytesIO()
    write_rows(buffer, [outcome.submission.frame.drop("_row")], load_schema())
    with zipfile.ZipFile(outcome.package) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
        assert members["cases.parquet"] == buffer.getvalue()
        infos = archive.infolist()
    rebuilt = io.BytesIO()
    with zipfile.ZipFile(rebuilt, "w") as archive:
        for old in infos:
            info = zipfile.ZipInfo(old.filename, date_time=old.date_time)
            info.compress_type = old.compress_type
            archive.writestr(info, members[old.filename])
    assert rebuilt.getvalue() == outcome.package.read_bytes()


def test_a_short_tail_joins_the_last_batch_and_changes_nothing(synthetic):
    # A file of N records read N - 2 at a time: its last two records would make a batch of their
    # own; they join the one before (a batch costs a round of fixed work however small it is).
    export = next(
        p for p in sorted(synthetic.glob("*.csv")) if not p.with_suffix(".mapping.yaml").exists()
    )
    rows = validate_export(export, today=TODAY, batch_rows=None).rows
    assert rows > 40

    def heights(batch_rows: int) -> list[int]:
        batched = read_export_batches(export, batch_rows=batch_rows)
        assert batched is not None
        return [b.height for b in batched[1]]

    assert len(heights(rows - 2)) == 1
    assert sum(heights(rows - 2)) == rows
    assert len(heights(rows // 2)) >= 2  # a half is no tail
    whole = validate_export(export, today=TODAY, batch_rows=None)
    assert_same(validate_export(export, today=TODAY, batch_rows=rows // 2), whole)
    # A file that would be one batch is read whole by validate (same result, less work).
    one = validate_export(export, today=TODAY, batch_rows=rows - 2)
    assert not one.export.batched
    assert one.to_dict() == whole.to_dict() and one.records.equals(whole.records)


def test_a_file_of_one_batch_is_read_whole_unless_batches_are_wanted(synthetic, monkeypatch):
    from casepool.core import reading
    from casepool.core.reading import within_one_batch

    export = next(
        p for p in sorted(synthetic.glob("*.csv")) if not p.with_suffix(".mapping.yaml").exists()
    )
    rows = validate_export(export, today=TODAY, batch_rows=None).rows
    assert within_one_batch(export, rows) and within_one_batch(export, rows - rows // 10)
    assert not within_one_batch(export, rows // 2)
    assert not within_one_batch(export.with_name("missing.csv"), rows)
    with monkeypatch.context() as patch:  # over the largest batch: never one, however estimated
        patch.setattr(reading, "_MAX_BATCH_BYTES", export.stat().st_size - 1)
        assert not within_one_batch(export, rows)
    seen: list[int] = []
    handed = validate_export(
        export, today=TODAY, batch_rows=rows, on_records=lambda r: seen.append(r.height)
    )
    assert handed.export.batched and sum(seen) == handed.records.height
    whole = validate_export(export, today=TODAY, batch_rows=rows)
    assert not whole.export.batched
    assert whole.to_dict() == handed.to_dict()


@pytest.fixture
def polars_cuts(monkeypatch):
    """Every UTF-8 file counts as too large for its cells to be counted: polars' own streaming
    reader cuts the batches (as it does for files over ROW_CHECK_MAX_BYTES), and the whole-file
    read skips the count too, so the two are compared on the same terms."""
    from casepool.core import reading

    monkeypatch.setattr(reading, "ROW_CHECK_MAX_BYTES", 0)
    calls: list[int] = []
    original = reading._polars_batches

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(reading, "_polars_batches", counted)
    return calls


@pytest.mark.parametrize("batch_rows", [1, 7, 64])
def test_polars_cut_batches_give_the_whole_file_result(synthetic, polars_cuts, batch_rows):
    exports = sorted(synthetic.glob("*.csv"))
    for export in exports:
        mapping = export.with_suffix(".mapping.yaml")
        mapping_arg = mapping if mapping.exists() else None
        whole = validate_export(export, mapping_arg, today=TODAY, batch_rows=None)
        batched = validate_export(export, mapping_arg, today=TODAY, batch_rows=batch_rows)
        assert_same(batched, whole)
        lean = validate_export(
            export, mapping_arg, today=TODAY, batch_rows=batch_rows, keep_records=False
        )
        assert lean.to_dict() == whole.to_dict()
    assert polars_cuts  # the UTF-8 exports went through polars' reader


def test_polars_cut_batches_of_awkward_csv_and_blank_lines(tmp_path, polars_cuts):
    bodies = [
        'C1,"a, b",yes,F,7\nC2,"two\nlines",yes,M,8\nC3,"say ""hi""",no,F,9\n',
        'C1,5" tall,yes,F,7\nC2,x,yes,M,8\nC3,y,yes,F,9\n',
        'C1,"open,yes,F,7\nC2,x,yes,M,8\n',
        "C1,a,yes,F,7\r\n\r\nC2,b,yes,M,8\r\n\nC3,c,no,F,9\n\nC4,d,yes,M,10",
        "C1,a,yes,F,7\n   \nC2,b,yes,M,8\n",
        "C1,a,yes,F,7\nC2,b,yes,M,8\nC1,c,yes,F,9",
        "C1,a,yes,F,7\nC2,b,yes,M,8,extra\nC3,c,yes,F,9\n",
        "\n\n  \n",
    ]
    for i, body in enumerate(bodies):
        path = tmp_path / f"awkward{i}.csv"
        path.write_bytes(
            ("case_id,notes,consent_statistics,survivor_sex,survivor_age\n" + body).encode()
        )
        whole = _outcome(path, None)
        for batch_rows in (1, 2, 3):
            assert _outcome(path, batch_rows) == whole, body
    assert polars_cuts


def test_polars_cut_batches_of_fixtures(polars_cuts):
    folder = FIXTURES / "validate"
    for name, mapping in (
        ("canonical_valid.csv", None),
        ("one_error_each.csv", None),
        ("kobo_semicolon_select_multiple.csv", "kobo_mapping.yaml"),
    ):
        mapping_arg = folder / mapping if mapping else None
        whole = validate_export(folder / name, mapping_arg, today=TODAY, batch_rows=None)
        batched = validate_export(folder / name, mapping_arg, today=TODAY, batch_rows=1)
        assert_same(batched, whole)
    assert polars_cuts


def test_polars_cut_batches_make_the_same_package_bytes(tmp_path, synthetic, polars_cuts):
    test_submit_in_batches_writes_the_same_package_bytes(tmp_path, synthetic)
    assert polars_cuts


def test_polars_cut_batches_refuse_bytes_that_are_not_utf8_as_the_whole_read(tmp_path, polars_cuts):
    # The bad bytes lie past the sample the encoding is detected from (64 KiB).
    path = tmp_path / "late_bad_byte.csv"
    rows = "".join(f"C{i},a,yes,F,7\n" for i in range(2, 6000))
    path.write_bytes(
        b"case_id,notes,consent_statistics,survivor_sex,survivor_age\n"
        + rows.encode()
        + b"C99,a,yes,\xff\xfe,7\n"
    )
    whole = _outcome(path, None)
    assert whole[0] == "refused" and whole[1] == "file-undecodable"
    for batch_rows in (700, 2500):
        assert _outcome(path, batch_rows) == whole
    assert polars_cuts
