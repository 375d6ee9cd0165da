"""Submit in batches makes the package the whole-file path makes, byte for byte.

BatchedSubmission de-identifies each validated batch at once, keeps only compact codes of the
quasi-identifiers across batches, runs local suppression over them at the end and writes
cases.parquet batch by batch. Batches of a few rows make every group k-anonymity and local
suppression count span many batches, and put the personal data the scan must find in a later
batch than the first.
"""

from __future__ import annotations

import tempfile
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from casepool.core.periods import parse_period
from casepool.core.schema import load_schema
from casepool.exchange.keys import generate_keys
from casepool.exchange.package import write_rows
from casepool.exchange.profile import ROW
from casepool.intake.deidentifying import BatchedSubmission, prepare_submission
from casepool.intake.pii import DROPPED_VALUE, EMAIL, PHONE
from casepool.intake.submit import submit_export
from casepool.synthesis import synthesize
from fixtures.submit.builders import canonical_records

KEY = b"s" * 32
Q3 = parse_period("2025-Q3")
TODAY = date(2025, 12, 31)
CREATED = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
BATCHES = [1, 2, 3, 7, 64]


def mixed_records(n: int = 240) -> pl.DataFrame:
    """Canonical records over four months (one outside Q3), some without consent, ages and
    governorates varied enough that local suppression blanks values in many groups."""
    parts = [
        canonical_records(n // 4, seed=s, month=date(2025, m, 1))
        for s, m in ((1, 7), (2, 8), (3, 9), (4, 10))
    ]
    records = pl.concat(parts).with_columns(pl.int_range(2, n + 2).alias(ROW))
    return records.with_columns(
        pl.when(pl.col(ROW) % 17 == 0)
        .then(pl.lit("no"))
        .otherwise(pl.col("consent_statistics"))
        .alias("consent_statistics")
    )


def whole(records: pl.DataFrame, tmp_path: Path, **options):
    sub = prepare_submission(records, org="ORG-01", period=Q3, secret=KEY, **options)
    data = None
    if sub.ready:
        path = tmp_path / "whole.parquet"
        assert sub.frame is not None
        write_rows(path, [sub.frame.drop(ROW)], load_schema())
        data = path.read_bytes()
    return sub, data


def batched(records: pl.DataFrame, batch: int, tmp_path: Path, **options):
    spill = tmp_path / f"spill-{batch}"
    spill.mkdir()
    builder_options = {
        k: options.pop(k) for k in ("min_k", "k_threshold", "suppress") if k in options
    }
    builder = BatchedSubmission(
        org="ORG-01", period=Q3, secret=KEY, spill_dir=spill, **builder_options
    )
    for start in range(0, records.height, batch):
        builder.add(records.slice(start, batch))
    rows_file = spill / "cases.parquet"
    sub = builder.finish(
        rows_file=rows_file,
        write=lambda path, frames: write_rows(path, frames, load_schema()),
        **options,
    )
    data = rows_file.read_bytes() if sub.ready else None
    assert sorted(p.name for p in spill.iterdir()) == (["cases.parquet"] if sub.ready else [])
    return sub, data


def assert_same(records: pl.DataFrame, tmp_path: Path, **options) -> dict:
    tmp_path = Path(tempfile.mkdtemp(dir=tmp_path))
    expected, expected_data = whole(records, tmp_path, **dict(options))
    for batch in BATCHES:
        got, data = batched(records, batch, tmp_path, **dict(options))
        assert got.to_dict() == expected.to_dict(), batch
        assert got.rows_kept == expected.rows_kept
        assert data == expected_data, batch
        if expected.suppression is not None:
            assert got.suppression is not None
            assert (got.suppression.frequencies == expected.suppression.frequencies).all()
    if expected_data is not None:  # the bytes decode to the package rows of the whole path
        assert expected.frame is not None
        assert pl.read_parquet(tmp_path / "whole.parquet").equals(expected.frame.drop(ROW))
    return expected.to_dict()


def test_local_suppression_over_groups_spanning_batches_blanks_the_same_values(tmp_path):
    summary = assert_same(mixed_records(), tmp_path, min_k=3)
    assert summary["status"] == "ready"
    assert summary["local_suppression"]["values_suppressed"] > 0
    assert summary["dropped"]["no_consent"] > 0 and summary["dropped"]["outside_period"] > 0
    assert summary["risk_before_suppression"]["k"] < 3 <= summary["k_anonymity"]["k"]


def test_a_higher_k_and_no_suppression_give_the_same_in_batches(tmp_path):
    assert assert_same(mixed_records(), tmp_path, min_k=6)["k_anonymity"]["k"] >= 6
    unsuppressed = assert_same(mixed_records(), tmp_path, suppress=False)
    assert unsuppressed["local_suppression"] is None


def test_dropped_invalid_rows_leave_the_same_package(tmp_path):
    invalid = {3, 4, 50, 51, 52, 130, 241}
    summary = assert_same(mixed_records(), tmp_path, invalid_rows=invalid, drop_invalid=True)
    assert summary["dropped"]["invalid"] == len(invalid)


def test_invalid_rows_refuse_and_nothing_left_is_refused_the_same_way(tmp_path):
    records = mixed_records()
    assert assert_same(records, tmp_path, invalid_rows={5, 9})["status"] == "invalid-records"
    everything = set(records.get_column(ROW).to_list())
    summary = assert_same(records, tmp_path, invalid_rows=everything, drop_invalid=True)
    assert summary["status"] == "no-records"


def test_personal_data_in_a_later_batch_is_found_with_its_row(tmp_path):
    records = mixed_records().with_columns(
        pl.when(pl.col(ROW) == 171)
        .then(pl.lit("0770 123 4567"))
        .otherwise(pl.col("justice_outcome"))
        .alias("justice_outcome"),
        pl.when(pl.col(ROW) == 150)
        .then(pl.lit(["health", "x@y.iq"]))
        .otherwise(pl.col("services_received"))
        .alias("services_received"),
    )
    summary = assert_same(records, tmp_path)
    assert summary["status"] == "personal-data"
    assert summary["personal_data"] == [
        {"row": 150, "field": "services_received", "kind": EMAIL},
        {"row": 171, "field": "justice_outcome", "kind": PHONE},
    ]


def test_a_value_of_a_dropped_column_in_a_later_batch_is_found(tmp_path):
    records = mixed_records().with_columns(
        pl.when(pl.col(ROW).is_in([40, 179]))
        .then(pl.lit("Zainab Kareem"))
        .otherwise(pl.col("justice_outcome"))
        .alias("justice_outcome")
    )
    raw = records.select(ROW).with_columns(
        pl.when(pl.col(ROW) == 230).then(pl.lit("zainab  KAREEM")).otherwise(pl.lit("A B")).alias("Name")
    )  # fmt: skip
    summary = assert_same(records, tmp_path, raw=raw, dropped_columns=["Name"])
    assert [(h["row"], h["kind"]) for h in summary["personal_data"]] == [
        (40, DROPPED_VALUE),
        (179, DROPPED_VALUE),
    ]


def test_the_export_is_not_read_again_in_batches_when_every_value_is_a_code(tmp_path):
    def read_again():
        raise AssertionError("raw export requested although every retained value is a code")

    sub, _ = batched(mixed_records(), 7, tmp_path, raw=read_again, dropped_columns=["Name"])
    assert sub.ready


# --- the command's path: validate in batches, de-identify each, one package ------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """Synthetic exports with every kind of injected error, duplicates across batches included."""
    out = tmp_path_factory.mktemp("synthetic-submit")
    synthesize(out, orgs=2, records=240, error_rate=0.01, today=TODAY, fmt="csv")
    return out


def submit(export: Path, keys: Path, out: Path, batch_rows: int | None, **options):
    mapping = export.with_suffix(".mapping.yaml")
    return submit_export(
        export,
        org="ORG-01",
        period="2025",
        key_dir=keys,
        outbox=out,
        mapping=mapping if mapping.exists() else None,
        today=TODAY,
        created=CREATED,
        batch_rows=batch_rows,
        **options,
    )


def package_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.mark.parametrize("aggregate", [False, True])
def test_submit_in_batches_writes_the_whole_file_package_byte_for_byte(
    synthetic, tmp_path, aggregate
):
    keys = tmp_path / "keys"
    generate_keys("ORG-01", keys)
    exports = sorted(synthetic.glob("*.csv"))
    assert exports
    for export in exports:
        expected = submit(
            export, keys, tmp_path / "whole", None, drop_invalid=True, aggregate=aggregate
        )
        assert expected.accepted and expected.validation.error_count > 0
        reference = expected.package.read_bytes()
        for batch_rows in BATCHES:
            out = tmp_path / f"batched-{batch_rows}"
            got = submit(export, keys, out, batch_rows, drop_invalid=True, aggregate=aggregate)
            assert got.validation.export.batched
            assert got.to_dict() | {"package": None} == expected.to_dict() | {"package": None}
            assert got.package.read_bytes() == reference, (export.name, batch_rows)
            assert [p.name for p in out.iterdir()] == [got.package.name]  # no spill left
            got.package.unlink()
        expected.package.unlink()


def test_a_refused_submission_in_batches_is_refused_alike_and_leaves_nothing(synthetic, tmp_path):
    keys = tmp_path / "keys"
    generate_keys("ORG-01", keys)
    export = sorted(synthetic.glob("*.csv"))[0]
    expected = submit(export, keys, tmp_path / "whole", None)
    assert expected.submission.status == "invalid-records"
    for batch_rows in (3, 64):
        out = tmp_path / f"batched-{batch_rows}"
        got = submit(export, keys, out, batch_rows)
        assert got.to_dict() == expected.to_dict()
        assert list(out.iterdir()) == []


def test_a_file_read_whole_after_some_batches_gives_the_whole_file_package(tmp_path):
    """A line with too few cells is found mid-file: validation reads the file whole after all,
    and the batches already spilled are forgotten."""
    source = (
        (Path(__file__).parent / "fixtures" / "validate" / "canonical_valid.csv")
        .read_text(encoding="utf-8")
        .splitlines()
    )
    lines = [source[0], *source[1:] * 4]
    lines.insert(len(lines) - 2, "only,two")
    path = tmp_path / "ragged.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    keys = tmp_path / "keys"
    generate_keys("ORG-01", keys)
    options = {"drop_invalid": True, "min_k": 2}
    expected = submit(path, keys, tmp_path / "whole", None, **options)
    got = submit(path, keys, tmp_path / "batched", 2, **options)
    assert not got.validation.export.batched
    assert got.to_dict() | {"package": None} == expected.to_dict() | {"package": None}
    if expected.package is None:
        assert got.package is None
    else:
        assert package_members(got.package) == package_members(expected.package)
    assert [p.name for p in (tmp_path / "batched").iterdir()] == (
        [got.package.name] if got.package else []
    )


def test_row_groups_are_cut_by_count_whatever_frames_the_rows_come_in(tmp_path):
    import pyarrow.parquet as pq

    sub = prepare_submission(mixed_records(), org="ORG-01", period=Q3, secret=KEY)
    assert sub.frame is not None
    rows = sub.frame.drop(ROW)
    schema = load_schema()
    write_rows(tmp_path / "whole.parquet", [rows], schema, row_group_rows=16)
    reference = (tmp_path / "whole.parquet").read_bytes()
    assert pq.ParquetFile(tmp_path / "whole.parquet").num_row_groups == -(-rows.height // 16)
    for cuts in ([1] * 5 + [40, 3], [16, 16, 15, 17], [7, 0, 100]):
        frames, start = [], 0
        for n in [*cuts, rows.height]:
            frames.append(rows.slice(start, n))
            start += n
        path = tmp_path / f"cut-{len(cuts)}.parquet"
        assert write_rows(path, frames, schema, row_group_rows=16) == rows.height
        assert path.read_bytes() == reference
    assert pl.read_parquet(tmp_path / "whole.parquet").equals(rows)


def test_many_row_groups_and_spill_pieces_give_the_whole_file_package(
    synthetic, tmp_path, monkeypatch
):
    from casepool.exchange import package
    from casepool.intake import deidentifying

    monkeypatch.setattr(package, "ROW_GROUP_ROWS", 10)
    monkeypatch.setattr(deidentifying, "_SPILL_ROWS", 4)
    keys = tmp_path / "keys"
    generate_keys("ORG-01", keys)
    export = sorted(synthetic.glob("*.csv"))[0]
    expected = submit(export, keys, tmp_path / "whole", None, drop_invalid=True)
    got = submit(export, keys, tmp_path / "batched", 7, drop_invalid=True)
    assert got.package.read_bytes() == expected.package.read_bytes()
    with zipfile.ZipFile(got.package) as archive:
        cases = archive.read("cases.parquet")
    import io

    import pyarrow.parquet as pq

    assert pq.ParquetFile(io.BytesIO(cases)).num_row_groups == -(-got.submission.rows_kept // 10)


def test_a_spill_that_cannot_be_written_is_the_package_unwritable(synthetic, tmp_path, monkeypatch):
    from casepool.core.errors import PackageError

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    keys = tmp_path / "keys"
    generate_keys("ORG-01", keys)
    monkeypatch.setattr(pl.DataFrame, "write_parquet", full_disk)
    export = sorted(synthetic.glob("*.csv"))[0]
    with pytest.raises(PackageError) as refused:
        submit(export, keys, tmp_path / "out", 64, drop_invalid=True)
    assert refused.value.key == "package-unwritable"
    assert list((tmp_path / "out").iterdir()) == []  # the spill removed
