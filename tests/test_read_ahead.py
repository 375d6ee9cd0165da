"""read_ahead: a CSV's next batch is made in a worker thread while this one is checked; the
caller sees the same items, the same exceptions at the same place, and at most one item made
ahead."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from casepool.core.reading import read_ahead


class Boom(Exception):
    pass


def _source(made: list[int], n: int, fail_at: int | None = None) -> Iterator[int]:
    for i in range(n):
        if i == fail_at:
            raise Boom()
        made.append(i)
        yield i


def test_the_same_items_in_the_same_order():
    assert list(read_ahead(iter(range(50)))) == list(range(50))
    assert list(read_ahead(iter([]))) == []


def test_an_exception_comes_after_the_items_before_it():
    made: list[int] = []
    seen = []
    with pytest.raises(Boom):
        for item in read_ahead(_source(made, 10, fail_at=4)):
            seen.append(item)
    assert seen == [0, 1, 2, 3]


def test_at_most_one_item_is_made_ahead():
    made: list[int] = []
    ahead = []
    for item in read_ahead(_source(made, 20)):
        time.sleep(0.002)  # the worker has time to run ahead if it could
        ahead.append(len(made) - (item + 1))
    assert max(ahead) <= 1
    assert made == list(range(20))


def test_stopping_early_closes_the_source_and_ends_the_worker():
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(100)
        finally:
            closed.set()

    before = threading.active_count()
    items = read_ahead(source())
    assert next(items) == 0
    items.close()
    assert closed.is_set()
    assert threading.active_count() == before


def test_an_error_of_the_caller_stops_the_worker():
    made: list[int] = []
    with pytest.raises(ZeroDivisionError):
        for item in read_ahead(_source(made, 100)):
            if item == 3:
                _ = 1 / 0
    assert len(made) <= 5


def test_validate_gives_the_same_with_and_without_reading_ahead(monkeypatch):
    from datetime import date
    from pathlib import Path

    from casepool.intake.validating import validate_export

    export = Path(__file__).parent / "fixtures" / "validate" / "one_error_each.csv"
    today = date(2025, 12, 31)
    ahead = validate_export(export, today=today, batch_rows=2)
    monkeypatch.setenv("CASEPOOL_READ_AHEAD", "0")
    plain = validate_export(export, today=today, batch_rows=2)
    assert ahead.error_count > 0
    assert ahead.to_dict() == plain.to_dict()
    assert ahead.records.equals(plain.records)
