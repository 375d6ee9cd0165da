"""Errors that name the cause: full disk, read-only, damaged file, a lock held elsewhere."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
import yaml

from casepool.cli.main import app
from casepool.warehouse.ingest import ingest_packages
from casepool.warehouse.organisations import add_organisation
from casepool.warehouse.status import data_fingerprint, table_counts
from fixtures.submit.builders import canonical_records, make_package, org_keys

T0 = datetime(2025, 8, 1, 9, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]
SRC, TESTS = ROOT / "src", ROOT / "tests"
CLI = f"{shlex.quote(sys.executable)} -c 'from casepool.cli.main import main; main()'"
NEW_KEYS = (
    "warehouse-disk-full",
    "warehouse-read-only",
    "warehouse-damaged",
    "warehouse-locked-by",
    "warehouse-locked",
    "warehouse-waiting",
    "file-disk-full",
    "file-read-only",
    "package-from-the-future",
    "org-key-shared",
)


@pytest.fixture
def warehouse(tmp_path, keys):
    path = tmp_path / "w.duckdb"
    add_organisation(path, keys.org, "Test CSO", tmp_path / "keys" / f"{keys.org}.pub")
    ingest_packages([make_package(tmp_path / "a", keys, canonical_records(5), created=T0)], path)
    return path


def test_each_cause_has_its_own_message_in_four_languages():
    from casepool.core.i18n import messages

    texts = [
        tuple(messages()[key][lang] for lang in ("en", "ar", "ckb", "kmr")) for key in NEW_KEYS
    ]
    for row in texts:
        assert len(set(row)) == 4  # four languages, four texts
    assert len({row[0] for row in texts}) == len(NEW_KEYS)
    raw = yaml.safe_load((ROOT / "schemas/messages/steward.yaml").read_text(encoding="utf-8"))
    assert all(set(v) == {"en", "ar", "ckb", "kmr"} for v in raw.values())


def in_small_filesystem(tmp_path: Path, size: str, script: str) -> subprocess.CompletedProcess:
    """Run `script` (sh) with a tmpfs of `size` mounted at tmp_path/small, in a mount namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1): cannot mount a small file system here")
    small = tmp_path / "small"
    small.mkdir(exist_ok=True)
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {small}"],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip("mounting a tmpfs in a user namespace is not allowed on this machine")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(TESTS)]))
    full = f"set -u; mount -t tmpfs -o size={size} tmpfs {small}; cd {tmp_path}; {script}"
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", full], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.slow
def test_a_full_disk_is_named_and_changes_nothing(tmp_path, keys):
    first = make_package(tmp_path / "a", keys, canonical_records(5), created=T0)
    second = make_package(tmp_path / "b", keys, canonical_records(300, seed=2), created=T0)
    pub = tmp_path / "keys" / f"{keys.org}.pub"
    result = in_small_filesystem(
        tmp_path,
        "8m",
        f"""
        {CLI} org add {keys.org} --name X --public-key {pub} -w small/w.duckdb 2>/dev/null
        {CLI} ingest {first} -w small/w.duckdb >/dev/null 2>&1
        dd if=/dev/zero of=small/filler bs=64k 2>/dev/null
        echo "== ingest"; {CLI} ingest {second} -w small/w.duckdb; echo "rc=$?"
        echo "== backup"; {CLI} backup -w small/w.duckdb --out small/b.duckdb; echo "rc=$?"
        echo "== elsewhere"; {CLI} backup -w small/w.duckdb --out outside.duckdb; echo "rc=$?"
        rm small/filler
        echo "== status"; {CLI} status -w small/w.duckdb --json | grep -c '"state": "active"'
        echo "== again"; {CLI} ingest {second} -w small/w.duckdb >/dev/null 2>&1; echo "rc=$?"
        """,
    )
    out = result.stdout + result.stderr
    assert "Cannot write the warehouse small/w.duckdb: no space left on the disk" in out, out
    assert out.count("rc=2") == 2, out
    assert "unexpected problem" not in out
    assert "no space left on the disk" in out.split("== backup")[1]
    # the warehouse on a full disk can still be saved to another disk, verified
    assert "verified: 1 submissions, 5 case records" in out.split("== elsewhere")[1], out
    assert "rc=0" in out.split("== elsewhere")[1].split("==")[0]
    assert data_fingerprint(tmp_path / "outside.duckdb")
    # nothing half-written: the first package is still the one active; after freeing space the
    # second loads
    assert out.split("== status")[1].split("==")[0].strip() == "1", out
    assert "rc=0" in out.split("== again")[1], out


@pytest.mark.slow
def test_a_read_only_file_system_is_named(tmp_path, keys):
    package = make_package(tmp_path / "a", keys, canonical_records(5), created=T0)
    pub = tmp_path / "keys" / f"{keys.org}.pub"
    result = in_small_filesystem(
        tmp_path,
        "8m",
        f"""
        {CLI} org add {keys.org} --name X --public-key {pub} -w small/w.duckdb 2>/dev/null
        mount -o remount,ro small
        {CLI} ingest {package} -w small/w.duckdb; echo "rc=$?"
        {CLI} status -w small/w.duckdb >/dev/null; echo "status rc=$?"
        {CLI} backup -w small/w.duckdb --out outside.duckdb; echo "backup rc=$?"
        """,
    )
    out = result.stdout + result.stderr
    assert "Cannot write the warehouse small/w.duckdb: the file or its disk is read-only" in out
    assert "rc=2" in out and "status rc=0" in out and "backup rc=0" in out, out
    assert table_counts(tmp_path / "outside.duckdb")["organisations"] == 1
    assert "not a casepool warehouse" not in out


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to any file: covered by the mount test")
def test_a_read_only_file_is_named(tmp_path, warehouse, keys):
    os.chmod(warehouse, 0o444)
    package = make_package(tmp_path / "b", keys, canonical_records(5, seed=3), created=T0)
    result = CliRunnerLike.invoke(["ingest", str(package), "-w", str(warehouse)])
    assert result.exit_code == 2 and "is read-only" in result.stderr


class CliRunnerLike:
    @staticmethod
    def invoke(args):
        from typer.testing import CliRunner

        return CliRunner().invoke(app, args)


def test_a_truncated_warehouse_is_named_and_debug_shows_the_cause(tmp_path, runner, warehouse):
    size = warehouse.stat().st_size
    with warehouse.open("r+b") as handle:
        handle.truncate(size // 2)
    result = runner.invoke(app, ["status", "-w", str(warehouse)])
    assert result.exit_code == 2
    assert "the DuckDB file is damaged or truncated" in result.stderr
    assert "casepool restore" in result.stderr and "Traceback" not in result.stderr
    debug = runner.invoke(app, ["status", "-w", str(warehouse), "--debug"])
    assert debug.exit_code == 2
    assert "duckdb.IOException" in debug.stderr or "IOException" in debug.stderr
    assert "direct cause of the following exception" in debug.stderr
    assert "WarehouseError" in debug.stderr


def test_flipped_bytes_in_the_warehouse_are_named(tmp_path, runner, warehouse):
    with warehouse.open("r+b") as handle:
        handle.seek(4096 + 100)  # inside a checksummed header block
        handle.write(b"\xff" * 64)
    result = runner.invoke(app, ["status", "-w", str(warehouse)])
    assert result.exit_code == 2
    assert "the DuckDB file is damaged or truncated" in result.stderr


def test_a_lock_held_by_any_duckdb_process_is_named_with_its_pid(tmp_path, runner, warehouse):
    marker = tmp_path / "holding"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(TESTS)]))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import duckdb, pathlib, time
                con = duckdb.connect({str(warehouse)!r})  # a DuckDB shell, not casepool
                pathlib.Path({str(marker)!r}).touch()
                time.sleep(60)
                """
            ),
        ],
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        package = make_package(tmp_path / "b", org_keys(tmp_path / "keys"), canonical_records(3))
        result = runner.invoke(app, ["ingest", str(package), "-w", str(warehouse), "--wait", "1"])
        assert result.exit_code == 2
        assert f"is held by another process (pid {holder.pid}, " in result.stderr
        assert "waiting up to 1 s" in result.stderr  # said while waiting
        assert "stayed busy for 1 s" in result.stderr
        assert "another casepool command" not in result.stderr
    finally:
        holder.kill()
        holder.wait()


def test_a_public_key_registered_for_another_organisation_is_warned(tmp_path, runner, keys):
    w = tmp_path / "w.duckdb"
    pub = tmp_path / "keys" / f"{keys.org}.pub"
    first = runner.invoke(
        app, ["org", "add", "ORG-01", "--name", "A", "--public-key", str(pub), "-w", str(w)]
    )
    assert first.exit_code == 0 and "Warning" not in first.stderr
    again = runner.invoke(
        app, ["org", "add", "ORG-02", "--name", "B", "--public-key", str(pub), "-w", str(w)]
    )
    assert again.exit_code == 0
    assert (
        "Warning: the public key" in again.stderr
        and "already registered for ORG-01" in again.stderr
    )
    with duckdb.connect(str(w), read_only=True) as con:
        detail = con.execute("SELECT detail FROM audit_log ORDER BY seq DESC LIMIT 1").fetchall()[
            0
        ][0]
    assert '"shares_key_with": ["ORG-01"]' in detail
