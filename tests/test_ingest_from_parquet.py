"""Ingest straight from the package's Parquet: the rows and keys it stores are those of the
verified file, exactly, and a package DuckDB cannot take is refused with nothing written."""

from __future__ import annotations

import hashlib
import io
from dataclasses import replace
from datetime import UTC, datetime

import polars as pl
import pytest

from casepool.core.errors import WarehouseError
from casepool.exchange import package as package_format
from casepool.exchange.keys import record_keys
from casepool.exchange.profile import PSEUDONYM
from casepool.warehouse import ingest as ingest_module
from casepool.warehouse.ingest import ingest_packages, record_key_secret
from casepool.warehouse.organisations import key_lookup
from casepool.warehouse.status import data_fingerprint
from casepool.warehouse.store import LOADED, REFUSED, open_warehouse
from fixtures.submit.builders import canonical_records, make_package

T0 = datetime(2025, 8, 1, 9, 0, tzinfo=UTC)


def _verified(warehouse, package):
    with open_warehouse(warehouse, read_only=True) as con:
        return package_format.read_package(package, key_lookup(con)), record_key_secret(con)


def _blake2b_key(secret: bytes, org: str, pseudonym: str) -> float:
    """The record key as written before batching: one keyed BLAKE2b per record, in Python."""
    digest = hashlib.blake2b(
        org.encode() + b"\0" + pseudonym.encode(), key=secret, digest_size=8
    ).digest()
    return (int.from_bytes(digest, "big") >> 11) / 2**53


def test_stored_rows_and_keys_are_the_verified_file_exactly(tmp_path, keys, warehouse):
    package = make_package(tmp_path / "out", keys, canonical_records(300), created=T0)
    verified, secret = _verified(warehouse, package)
    assert ingest_packages([package], warehouse).ok
    with open_warehouse(warehouse, read_only=True) as con:
        stored = con.sql("SELECT * FROM cases ORDER BY rowid").pl()
    frame = verified.cases
    assert stored.height == frame.height == verified.rows == 300
    # Every column of the package, value for value and in the file's order.
    assert stored.select(frame.columns).equals(frame)
    expected = [_blake2b_key(secret, keys.org, p) for p in frame.get_column(PSEUDONYM)]
    assert stored.get_column("record_key").to_list() == expected
    assert record_keys(secret, keys.org, frame.get_column(PSEUDONYM)) == expected
    assert set(stored.get_column("submission_id")) == {verified.submission_id}
    assert stored.get_column("active").all()


def test_verify_holds_the_pseudonyms_not_a_frame(tmp_path, keys, warehouse):
    package = make_package(tmp_path / "out", keys, canonical_records(40), created=T0)
    verified, _ = _verified(warehouse, package)
    frame = pl.read_parquet(io.BytesIO(verified.data))
    assert verified.pseudonyms.equals(frame.get_column(PSEUDONYM))
    assert verified.rows == frame.height == 40
    assert verified.cases.equals(frame)


def test_bytes_duckdb_cannot_read_are_refused_with_nothing_written(
    tmp_path, keys, warehouse, monkeypatch
):
    package = make_package(tmp_path / "out", keys, canonical_records(30), created=T0)
    before = data_fingerprint(warehouse)
    real = package_format.read_package

    def broken(*args, **kwargs):  # checked by polars, then damaged before DuckDB reads it
        verified = real(*args, **kwargs)
        return replace(verified, data=verified.data[:-200] + b"\0" * 200)

    monkeypatch.setattr(ingest_module, "read_package", broken)
    report = ingest_packages([package], warehouse)
    [outcome] = report.packages
    assert outcome.outcome == REFUSED and outcome.refusal is not None
    assert outcome.refusal.key == "package-bad-data"
    assert outcome.refusal.params["reason"] == "cases.parquet cannot be read"
    with open_warehouse(warehouse, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM submissions").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM cases").fetchone() == (0,)
        actions = [
            r[0] for r in con.execute("SELECT action FROM audit_log ORDER BY seq").fetchall()
        ]
    assert actions == ["org-added", "refused"]
    assert data_fingerprint(warehouse) == before  # the data as it was (the audit line aside)
    monkeypatch.undo()
    assert [p.outcome for p in ingest_packages([package], warehouse).packages] == [LOADED]


def test_keys_out_of_step_with_the_rows_stop_the_ingest(tmp_path, keys, warehouse, monkeypatch):
    package = make_package(tmp_path / "out", keys, canonical_records(30), created=T0)
    real = package_format.read_package

    def shuffled(*args, **kwargs):
        verified = real(*args, **kwargs)
        return replace(verified, pseudonyms=verified.pseudonyms.reverse())

    monkeypatch.setattr(ingest_module, "read_package", shuffled)
    with pytest.raises(WarehouseError):
        ingest_packages([package], warehouse)
    with open_warehouse(warehouse, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM submissions").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM cases").fetchone() == (0,)


def test_the_warehouse_draws_no_progress_bar(warehouse):
    with open_warehouse(warehouse, read_only=True) as con:
        assert con.execute("SELECT current_setting('enable_progress_bar')").fetchone() == (False,)
