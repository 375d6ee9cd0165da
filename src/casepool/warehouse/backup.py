"""Backups that hold: a checkpointed, verified copy of the warehouse, and a restore that checks.

DuckDB keeps committed work in `warehouse.duckdb.wal` until the next checkpoint, so copying the
`.duckdb` file alone can miss acknowledged packages, and a backup copied over a warehouse that
still has its old `.wal` beside it is damaged when opened. `backup_warehouse` therefore opens the
warehouse (which replays the write-ahead log), checkpoints it into the file and copies the file
while it holds DuckDB's lock, then opens the copy and compares every table's row count and content
digest with the warehouse. `restore_warehouse` verifies the backup the same way, refuses to replace
an existing warehouse without `force`, takes the warehouse's lock, removes a stale `.wal`, moves
the verified copy in place atomically and checks the result.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from casepool.core.errors import WarehouseError
from casepool.warehouse.store import (
    DEFAULT_WAIT_SECONDS,
    LOCK_WAIT_NOTICE,
    LockHolder,
    current_actor,
    lock_holder,
    locked_error,
    open_warehouse,
    record_audit,
    storage_error,
)


def table_digests(
    con: duckdb.DuckDBPyConnection, database: str | None = None
) -> dict[str, tuple[int, str]]:
    """Rows and a content digest of every table of the warehouse (order-independent)."""
    database = database or str(con.execute("SELECT current_database()").fetchall()[0][0])
    names = sorted(
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() "
            "WHERE database_name = ? AND schema_name = 'main'",
            [database],
        ).fetchall()
    )
    out = {}
    for name in names:
        rows, digest = con.execute(
            f'SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0) FROM "{database}".main."{name}" t'
        ).fetchall()[0]
        out[name] = (int(rows), str(digest))
    return out


def _sql_text(value: Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _export(warehouse: Path, staging: Path) -> dict[str, tuple[int, str]]:
    """Copy a warehouse that cannot be written (full disk, read-only) without checkpointing it:
    attached read-only (DuckDB applies its write-ahead log in memory) and copied table by table,
    views and sequences included, into a new file."""
    con = duckdb.connect()
    try:
        try:
            con.execute(f"ATTACH {_sql_text(warehouse)} AS source_warehouse (READ_ONLY)")
        except duckdb.Error as exc:
            raise storage_error(exc, warehouse) or WarehouseError(
                "warehouse-unreadable", path=str(warehouse)
            ) from exc
        try:
            con.execute(f"ATTACH {_sql_text(staging)} AS backup_copy")
            con.execute("COPY FROM DATABASE source_warehouse TO backup_copy")
            con.execute("DETACH backup_copy")
        except duckdb.Error as exc:
            named = storage_error(exc, staging)
            if named is not None and named.key == "warehouse-disk-full":
                raise WarehouseError("file-disk-full", path=str(staging.parent)) from exc
            if named is not None and named.key == "warehouse-read-only":
                raise WarehouseError("file-read-only", path=str(staging.parent)) from exc
            raise
        return table_digests(con, "source_warehouse")
    finally:
        con.close()


@dataclass
class BackupResult:
    """A verified backup: where, how big, and the tables it holds."""

    warehouse: Path
    out: Path
    size: int
    tables: dict[str, tuple[int, str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "warehouse": str(self.warehouse),
            "out": str(self.out),
            "bytes": self.size,
            "verified": True,
            "tables": {k: {"rows": v[0], "digest": v[1]} for k, v in self.tables.items()},
        }


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _copy(source: Path, target: Path) -> None:
    """Copy bytes and fsync; a full disk or a read-only folder is named, the partial copy removed."""
    try:
        with source.open("rb") as src, target.open("xb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
    except OSError as exc:
        target.unlink(missing_ok=True)
        named = storage_error(exc, target)
        if named is not None and named.key in ("warehouse-disk-full", "warehouse-read-only"):
            key = "file-disk-full" if named.key == "warehouse-disk-full" else "file-read-only"
            raise WarehouseError(key, path=str(target)) from exc
        raise


def _digests_of_file(path: Path) -> dict[str, tuple[int, str]]:
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise storage_error(exc, path) or WarehouseError(
            "warehouse-unreadable", path=str(path)
        ) from exc
    try:
        return table_digests(con)
    except duckdb.Error as exc:
        raise storage_error(exc, path) or WarehouseError(
            "warehouse-damaged", path=str(path)
        ) from exc
    finally:
        con.close()


def _temporary(next_to: Path) -> Path:
    return next_to.with_name(f".{next_to.name}.{secrets.token_hex(4)}.partial")


def backup_warehouse(
    warehouse: str | Path,
    out: str | Path,
    *,
    actor: str | None = None,
    wait: float = DEFAULT_WAIT_SECONDS,
) -> BackupResult:
    """Checkpoint the warehouse, copy it to `out` and verify the copy table by table.

    `out` is replaced atomically (an older backup of that name stays whole until the new one is
    verified); the audit log of the warehouse, and so of the backup, records the backup. A
    warehouse that cannot be written (full disk, read-only) is copied without a checkpoint,
    through DuckDB's COPY FROM DATABASE, and without the audit line.
    """
    warehouse, out = Path(warehouse), Path(out)
    if not warehouse.exists():
        raise WarehouseError("warehouse-missing", path=str(warehouse))
    if out.resolve() == warehouse.resolve():
        raise WarehouseError("backup-same-file", path=str(out))
    if out.is_dir():
        raise WarehouseError("backup-is-folder", path=str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = _temporary(out)
    try:
        with open_warehouse(warehouse, wait=wait) as con:
            record_audit(con, "backed-up", actor=actor or current_actor(), detail={"out": out.name})
            con.execute("CHECKPOINT")  # the .wal's committed work goes into the file
            expected = table_digests(con)
            try:
                _copy(warehouse, staging)  # still holding the lock: nobody writes meanwhile
            except BaseException:
                staging.unlink(missing_ok=True)
                raise
    except WarehouseError as refusal:
        # A warehouse that cannot be written (its disk full, read-only) is the one to save first.
        if refusal.key not in ("warehouse-disk-full", "warehouse-read-only"):
            raise
        staging.unlink(missing_ok=True)
        Path(f"{staging}.wal").unlink(missing_ok=True)
        try:
            expected = _export(warehouse, staging)
        except BaseException:
            staging.unlink(missing_ok=True)
            raise
    try:
        copied = _digests_of_file(staging)
        if copied != expected:
            raise WarehouseError("backup-verify-failed", path=str(out))
        Path(f"{out}.wal").unlink(missing_ok=True)  # a stale log beside an older backup
        os.replace(staging, out)
        _fsync_dir(out.parent)
    finally:
        staging.unlink(missing_ok=True)
    return BackupResult(warehouse, out, out.stat().st_size, expected)


@dataclass
class RestoreResult:
    """A restore: which backup went where, whether a warehouse and a stale log were replaced."""

    backup: Path
    warehouse: Path
    replaced: bool
    removed_wal: bool
    tables: dict[str, tuple[int, str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "backup": str(self.backup),
            "warehouse": str(self.warehouse),
            "replaced": self.replaced,
            "removed_stale_wal": self.removed_wal,
            "verified": True,
            "tables": {k: {"rows": v[0], "digest": v[1]} for k, v in self.tables.items()},
        }


@contextmanager
def _exclusive(path: Path, wait: float) -> Iterator[None]:
    """Hold the lock DuckDB takes on `path` (a POSIX write lock), so no process opens it meanwhile."""
    if not path.exists():
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        raise storage_error(exc, path) or WarehouseError(
            "warehouse-unreadable", path=str(path)
        ) from exc
    try:
        deadline = time.monotonic() + max(wait, 0.0)
        told = False
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                holder = _holder_of(path, fd)
                if time.monotonic() >= deadline:
                    raise locked_error(path, holder, wait) from exc
                notice = LOCK_WAIT_NOTICE.get()
                if notice is not None and not told:
                    notice(path, holder, wait)
                    told = True
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _holder_of(path: Path, fd: int) -> LockHolder:
    """Who holds the lock on `path`: the kernel's answer (F_GETLK), else DuckDB's message."""
    try:
        probe = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        answer = struct.unpack("hhqqi4x", fcntl.fcntl(fd, fcntl.F_GETLK, probe))
        if answer[0] != fcntl.F_UNLCK and answer[4] > 0:
            pid = int(answer[4])
            try:
                program = Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip()
            except OSError:
                program = None
            return LockHolder(pid, program)
    except (OSError, struct.error):
        pass
    try:
        duckdb.connect(str(path)).close()
    except duckdb.Error as exc:
        return lock_holder(str(exc))
    return LockHolder(None, None)


def restore_warehouse(
    backup: str | Path,
    warehouse: str | Path,
    *,
    force: bool = False,
    actor: str | None = None,
    wait: float = DEFAULT_WAIT_SECONDS,
) -> RestoreResult:
    """Put a verified backup in place of the warehouse (an existing one only with `force`)."""
    backup, warehouse = Path(backup), Path(warehouse)
    if not backup.is_file():
        raise WarehouseError("backup-missing", path=str(backup))
    if backup.resolve() == warehouse.resolve():
        raise WarehouseError("backup-same-file", path=str(backup))
    with open_warehouse(backup, read_only=True, wait=0):  # a casepool warehouse of this version
        pass
    expected = _digests_of_file(backup)
    wal = Path(f"{warehouse}.wal")
    exists = warehouse.exists()
    if (exists or wal.exists()) and not force:
        raise WarehouseError("restore-would-overwrite", path=str(warehouse))
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    staging = _temporary(warehouse)
    try:
        _copy(backup, staging)
        if _digests_of_file(staging) != expected:
            raise WarehouseError("backup-verify-failed", path=str(backup))
        with _exclusive(warehouse, wait):
            removed = wal.exists()
            wal.unlink(missing_ok=True)  # a log of the old warehouse would damage the restored one
            os.replace(staging, warehouse)
            _fsync_dir(warehouse.parent)
    finally:
        staging.unlink(missing_ok=True)
    with open_warehouse(warehouse, wait=wait) as con:
        if table_digests(con) != expected:
            raise WarehouseError("backup-verify-failed", path=str(warehouse))
        record_audit(
            con,
            "restored",
            actor=actor or current_actor(),
            detail={"backup": backup.name, "replaced": exists, "removed_stale_wal": removed},
        )
    return RestoreResult(backup, warehouse, exists, removed, expected)
