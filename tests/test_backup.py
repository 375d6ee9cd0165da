"""Backups that hold: the write-ahead log is in the backup; restore checks and removes a stale log."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from casepool.cli.main import app
from casepool.core.errors import WarehouseError
from casepool.warehouse.backup import backup_warehouse, restore_warehouse, table_digests
from casepool.warehouse.ingest import ingest_packages
from casepool.warehouse.organisations import add_organisation
from casepool.warehouse.status import data_fingerprint, table_counts
from casepool.warehouse.store import open_warehouse
from fixtures.submit.builders import canonical_records, make_package, org_keys

T0 = datetime(2025, 8, 1, 9, 0, tzinfo=UTC)
SRC = Path(__file__).resolve().parents[1] / "src"
TESTS = Path(__file__).resolve().parent


def _python(script: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(TESTS)]))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(process.communicate()[1])
        assert time.monotonic() < deadline, "child never reached the point"
        time.sleep(0.05)


def packages_in(path: Path) -> set[str]:
    with open_warehouse(path, read_only=True, wait=0) as con:
        return {r[0] for r in con.execute("SELECT package FROM submissions").fetchall()}


def killed_after_commit(tmp_path, warehouse, package) -> None:
    """Ingest `package` in a child killed -9 once the commit is acknowledged (the .wal holds it)."""
    marker = tmp_path / "acknowledged"
    child = _python(
        f"""
        import pathlib, time
        from casepool.warehouse.ingest import ingest_packages

        def stage(event):
            if event.startswith("done:loaded:"):
                pathlib.Path({str(marker)!r}).touch()
                time.sleep(120)

        ingest_packages([{str(package)!r}], {str(warehouse)!r}, stage=stage)
        """
    )
    try:
        _wait_for(marker, child)
    finally:
        child.kill()
        child.communicate()


def test_a_committed_package_living_only_in_the_wal_is_in_the_backup(tmp_path, keys, warehouse):
    package = make_package(tmp_path / "o", keys, canonical_records(20), created=T0)
    killed_after_commit(tmp_path, warehouse, package)
    wal = Path(f"{warehouse}.wal")
    assert wal.exists() and wal.stat().st_size > 0
    # what the old guide advised: copy the .duckdb alone; the acknowledged package is missing
    naive = tmp_path / "naive.duckdb"
    shutil.copyfile(warehouse, naive)
    assert package.name not in packages_in(naive)
    result = backup_warehouse(warehouse, tmp_path / "b" / "backup.duckdb")
    assert result.tables["cases"][0] == 20
    assert not Path(f"{result.out}.wal").exists()
    assert package.name in packages_in(result.out)
    fresh = tmp_path / "restored.duckdb"
    restored = restore_warehouse(result.out, fresh)
    assert not restored.replaced and package.name in packages_in(fresh)
    assert data_fingerprint(fresh) == data_fingerprint(warehouse)
    with open_warehouse(fresh, read_only=True) as con:
        actions = [
            r[0] for r in con.execute("SELECT action FROM audit_log ORDER BY seq").fetchall()
        ]
    assert actions[-2:] == ["backed-up", "restored"]


def test_restore_refuses_to_overwrite_then_replaces_and_removes_a_stale_wal(
    tmp_path, keys, warehouse
):
    ingest_packages(
        [make_package(tmp_path / "a", keys, canonical_records(5), created=T0)], warehouse
    )
    backup = backup_warehouse(warehouse, tmp_path / "backup.duckdb").out
    later = make_package(
        tmp_path / "b", keys, canonical_records(8, seed=2), created=T0 + timedelta(1)
    )
    killed_after_commit(tmp_path, warehouse, later)  # the warehouse now has a .wal of its own
    wal = Path(f"{warehouse}.wal")
    assert wal.exists()
    with pytest.raises(WarehouseError) as caught:
        restore_warehouse(backup, warehouse)
    assert caught.value.key == "restore-would-overwrite"
    assert later.name in packages_in(warehouse)  # untouched
    result = restore_warehouse(backup, warehouse, force=True)
    assert result.replaced and result.removed_wal
    assert not wal.exists()
    # the old log was not replayed onto the restored file: the later package is gone with it
    assert packages_in(warehouse) == packages_in(backup) and later.name not in packages_in(
        warehouse
    )
    assert table_counts(warehouse)["cases"] == 5


def test_restore_checks_the_backup_and_waits_for_a_lock(tmp_path, keys, warehouse):
    ingest_packages(
        [make_package(tmp_path / "a", keys, canonical_records(5), created=T0)], warehouse
    )
    backup = backup_warehouse(warehouse, tmp_path / "backup.duckdb").out
    truncated = tmp_path / "truncated.duckdb"
    truncated.write_bytes(backup.read_bytes()[: backup.stat().st_size // 2])
    with pytest.raises(WarehouseError) as caught:
        restore_warehouse(truncated, tmp_path / "new.duckdb")
    assert caught.value.key == "warehouse-damaged"
    assert not (tmp_path / "new.duckdb").exists()
    not_duckdb = tmp_path / "notes.duckdb"
    not_duckdb.write_text("hello")
    with pytest.raises(WarehouseError) as caught:
        restore_warehouse(not_duckdb, tmp_path / "new.duckdb")
    assert caught.value.key == "warehouse-unreadable"
    marker = tmp_path / "holding"
    holder = _python(
        f"""
        import duckdb, pathlib, time
        con = duckdb.connect({str(warehouse)!r}, read_only=True)  # any DuckDB reader
        pathlib.Path({str(marker)!r}).touch()
        time.sleep(60)
        """
    )
    try:
        _wait_for(marker, holder)
        with pytest.raises(WarehouseError) as caught:
            restore_warehouse(backup, warehouse, force=True, wait=0.3)
        assert caught.value.key == "warehouse-locked-by"
        assert caught.value.params["pid"] == holder.pid
    finally:
        holder.kill()
        holder.communicate()
    before = data_fingerprint(warehouse)
    restore_warehouse(backup, warehouse, force=True)
    assert data_fingerprint(warehouse) == before


def test_backup_and_restore_through_the_cli(tmp_path, runner, keys, warehouse):
    ingest_packages(
        [make_package(tmp_path / "a", keys, canonical_records(5), created=T0)], warehouse
    )
    out = tmp_path / "backup.duckdb"
    done = runner.invoke(app, ["backup", "-w", str(warehouse), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "verified: 1 submissions, 5 case records" in done.stderr
    again = runner.invoke(app, ["restore", str(out), "-w", str(warehouse)])
    assert again.exit_code == 2 and "add --force" in again.stderr
    forced = runner.invoke(app, ["restore", str(out), "-w", str(warehouse), "--force", "--json"])
    assert forced.exit_code == 0 and '"replaced": true' in forced.stdout
    same = runner.invoke(app, ["backup", "-w", str(warehouse), "--out", str(warehouse)])
    assert same.exit_code == 2 and "the warehouse itself" in same.stderr


@pytest.mark.slow
def test_kill_loop_over_ingest_with_backup_and_restore_loses_nothing_acknowledged(tmp_path):
    """kill -9 `casepool ingest` at random moments; after each kill back up and restore the
    warehouse over itself; every package the command acknowledged must still be there."""
    warehouse = tmp_path / "w.duckdb"
    inbox = tmp_path / "inbox"
    for org in ("ORG-01", "ORG-02"):
        keys = org_keys(tmp_path / "keys", org)
        add_organisation(warehouse, org, org, tmp_path / "keys" / f"{org}.pub")
        for month in range(1, 9):
            make_package(
                inbox,
                keys,
                canonical_records(400, seed=month, month=datetime(2025, month, 1).date()),
                period=f"2025-{month:02d}",
                created=T0 + timedelta(minutes=month),
            )
    names = {p.name for p in inbox.iterdir()}
    KILLED_RUNS = 10  # then one run to the end
    rng = random.Random(17)
    acknowledged: set[str] = set()
    iterations = kills = in_wal_only = 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(TESTS)]))
    while acknowledged != names and iterations <= KILLED_RUNS:
        iterations += 1
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from casepool.cli.main import main; main()",
                "ingest",
                str(inbox),
                "-w",
                str(warehouse),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []
        reader = threading.Thread(target=lines.extend, args=(child.stderr,))
        reader.start()
        # kill after a random number of progress lines (0 = while starting) and a random delay,
        # so kills land while verifying, inserting, committing and between packages
        target = rng.randint(0, 2 * len(acknowledged) + 4) if iterations <= KILLED_RUNS else 10**6
        deadline = time.monotonic() + 60
        while len(lines) < target and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.15))
        if child.poll() is None:
            child.kill()  # SIGKILL
            kills += 1
        child.wait()
        reader.join()
        child.stderr.close()  # type: ignore[union-attr]
        for line in lines:
            if "loaded and committed" in line or "already in the warehouse" in line:
                acknowledged.add(line.split("] ", 1)[1].split(":", 1)[0])
        wal = Path(f"{warehouse}.wal")
        in_wal_only += wal.exists() and wal.stat().st_size > 0  # committed, not checkpointed
        backup = tmp_path / "backup.duckdb"
        backup_warehouse(warehouse, backup)
        restore_warehouse(backup, warehouse, force=True)
        present = packages_in(warehouse)
        lost = len(acknowledged - present)
        assert acknowledged <= present, f"lost after kill {iterations}: {acknowledged - present}"
        assert not Path(f"{warehouse}.wal").exists() or Path(f"{warehouse}.wal").stat().st_size == 0
    assert kills >= KILLED_RUNS // 2, "the loop seldom killed a running ingest"
    assert acknowledged == names, f"{len(acknowledged)}/{len(names)} after {iterations} runs"
    counts = table_counts(warehouse)
    assert counts["submissions"] == 16 and counts["cases"] == 16 * 400
    with open_warehouse(warehouse, read_only=True) as con:
        assert table_digests(con)["submissions"][0] == 16
    print(
        f"kill-loop: {iterations} runs, {kills} kills ({in_wal_only} left work in the .wal only), {lost} lost, 16/16 packages, nothing lost"
    )
