"""Keys in batches: pseudonyms and record keys equal, digit for digit, those of the per-row code."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casepool.exchange import hashing
from casepool.exchange.keys import record_keys
from casepool.intake.deidentifying import (
    _case_key,
    keyed_hasher,
    normalise_case_id,
    pseudonym_series,
    pseudonymise,
)

SECRET = bytes(range(32))


def per_row_pseudonyms(case_ids: list[str | None], secret: bytes) -> list[str | None]:
    """The pseudonyms exactly as the per-row code before batching computed them."""
    series = pl.Series(case_ids, dtype=pl.String)
    keys = series.to_frame("c").select(_case_key(pl.col("c"))).to_series().to_list()
    keyed = keyed_hasher(secret)
    return [
        None
        if c is None
        else keyed((c if c.isascii() else normalise_case_id(c)).encode("utf-8")).hex()
        for c in keys
    ]


def per_row_record_keys(secret: bytes, org: str, pseudonyms: list[str]) -> list[float]:
    """The record keys as the per-row code before batching computed them."""
    base = hashlib.blake2b(key=secret, digest_size=8)
    base.update(org.encode("utf-8") + b"\0")
    keys = []
    for pseudonym in pseudonyms:
        state = base.copy()
        state.update(pseudonym.encode("ascii"))
        keys.append((int.from_bytes(state.digest(), "big") >> 11) / float(2**53))
    return keys


def case_numbers(n: int) -> list[str | None]:
    """Case numbers of many shapes: ASCII, Arabic-Indic and Persian digits, spaces, blanks."""
    shapes = ["C-{:05d}", " c {:d} ", "م-{}", "{}", "CASE/{:x}"]
    ids: list[str | None] = [shapes[i % len(shapes)].format(i) for i in range(n)]
    for i in range(0, n, 97):
        ids[i] = None
    for i in range(3, n, 89):
        ids[i] = (ids[i] or "").translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    for i in range(5, n, 83):
        ids[i] = (ids[i] or "").translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
    return ids


@pytest.fixture(params=["in-process", "worker-processes"])
def batching(request, monkeypatch):
    """Both roads: one batch here, and batches shared with worker processes."""
    if request.param == "worker-processes":
        monkeypatch.setattr(hashing, "PARALLEL_MIN_MESSAGES", 10)
        monkeypatch.setattr(hashing, "_workers", lambda: 3)
    return request.param


def test_batched_pseudonyms_equal_the_per_row_hmac(batching):
    ids = case_numbers(2_000)
    expected = per_row_pseudonyms(ids, SECRET)
    assert pseudonymise(ids, SECRET) == expected
    series = pseudonym_series(pl.Series(ids, dtype=pl.String), SECRET)
    assert series.dtype == pl.String and series.to_list() == expected


def test_batched_record_keys_equal_the_per_row_blake2b(batching):
    pseudonyms = [p for p in per_row_pseudonyms(case_numbers(2_000), SECRET) if p is not None]
    expected = per_row_record_keys(b"w" * 32, "ORG-01", pseudonyms)
    assert record_keys(b"w" * 32, "ORG-01", pseudonyms) == expected
    assert record_keys(b"w" * 32, "ORG-01", pl.Series(pseudonyms)) == expected


def test_a_failed_worker_leaves_its_share_to_this_process(monkeypatch):
    monkeypatch.setattr(hashing, "PARALLEL_MIN_MESSAGES", 10)
    monkeypatch.setattr(hashing, "_workers", lambda: 2)
    monkeypatch.setattr(hashing.sys, "executable", "/nonexistent/python")
    ids = case_numbers(500)
    assert pseudonymise(ids, SECRET) == per_row_pseudonyms(ids, SECRET)


def test_no_case_numbers_and_only_blanks_give_no_pseudonyms():
    assert pseudonymise([], SECRET) == []
    assert pseudonymise([None, None], SECRET) == [None, None]
    assert record_keys(SECRET, "ORG-01", []) == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=20)), max_size=30))
def test_any_text_gets_the_per_row_pseudonym(ids):
    assert pseudonymise(ids, SECRET) == per_row_pseudonyms(ids, SECRET)


@pytest.mark.skipif(not Path("/bin/true").exists(), reason="needs /bin/true")
def test_a_worker_that_dies_before_reading_leaves_its_share_to_this_process(monkeypatch):
    monkeypatch.setattr(hashing, "PARALLEL_MIN_MESSAGES", 10)
    monkeypatch.setattr(hashing, "_workers", lambda: 2)
    # A "python" that exits at once: writing the share to it breaks the pipe.
    monkeypatch.setattr(hashing.sys, "executable", "/bin/true")
    ids = case_numbers(50_000)
    assert pseudonymise(ids, SECRET) == per_row_pseudonyms(ids, SECRET)
