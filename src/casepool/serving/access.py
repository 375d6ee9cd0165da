"""Short connections to the warehouse, one per request, so `casepool ingest` can run beside the service.

DuckDB lets one process write a file, or several read it, never both; inside one process it also
refuses a read-only and a read-write connection to the same file at once. So the service never
holds the warehouse open between requests: each request opens, works and closes. Inside the
service a readers-writer lock lets reads share the file and gives a write it alone (library
calls such as `query` and `ingest_packages` open their own connection, so they run under the same
lock: `shared` for a call that only reads, `alone` for one that may write). When another
process (the command line) holds the warehouse, the request waits a few seconds and then answers
503 with Retry-After, saying the warehouse is busy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from casepool.core.errors import WarehouseError
from casepool.warehouse.store import open_warehouse

T = TypeVar("T")


class WarehouseBusy(Exception):
    """Another process holds the warehouse; the request may be tried again shortly."""


class ReadWriteLock:
    """Many readers or one writer; a waiting writer holds new readers back (no starvation)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class Warehouse:
    """The service's door to one warehouse file: short connections under the lock."""

    def __init__(self, path: str | Path, *, wait: float = 5.0) -> None:
        self.path = Path(path)
        self.wait = wait
        self.lock = ReadWriteLock()

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.lock.reading(), self._open(read_only=True) as con:
            yield con

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.lock.writing(), self._open(read_only=False) as con:
            yield con

    def shared(self, action: Callable[[], T]) -> T:
        """Run a library call that opens the warehouse read-only itself (query, status)."""
        with self.lock.reading():
            return self._retrying(action)

    def alone(self, action: Callable[[], T]) -> T:
        """Run a library call that opens the warehouse for writing itself (ingest)."""
        with self.lock.writing():
            return self._retrying(action)

    def _retrying(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except WarehouseError as exc:
            if exc.key == "warehouse-locked":
                raise WarehouseBusy() from None
            raise

    @contextmanager
    def _open(self, *, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            with open_warehouse(self.path, read_only=read_only, wait=self.wait) as con:
                yield con
        except WarehouseError as exc:
            if exc.key == "warehouse-locked":
                raise WarehouseBusy() from None
            raise
