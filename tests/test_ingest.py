"""Ingest: only verified packages change the warehouse, once each, newest per period active."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from casepool.core.errors import UsageError, WarehouseError
from casepool.exchange.keys import verify
from casepool.warehouse.ingest import ingest_packages
from casepool.warehouse.organisations import add_organisation
from casepool.warehouse.status import data_fingerprint, table_counts
from casepool.warehouse.store import LOADED, REFUSED, UNCHANGED, open_warehouse
from fixtures.submit.builders import canonical_records, make_package, org_keys

T0 = datetime(2025, 8, 1, 9, 0, tzinfo=UTC)
SRC = Path(__file__).resolve().parents[1] / "src"
TESTS = Path(__file__).resolve().parent


def query(warehouse, sql):
    with open_warehouse(warehouse, read_only=True) as con:
        return con.sql(sql).pl()


def audit_actions(warehouse):
    return (
        query(warehouse, "SELECT action FROM audit_log ORDER BY seq").get_column("action").to_list()
    )


def test_a_verified_package_is_loaded_with_pseudonyms_and_record_keys(tmp_path, keys, warehouse):
    package = make_package(tmp_path / "out", keys, canonical_records(25), created=T0)
    report = ingest_packages([package], warehouse)
    assert [p.outcome for p in report.packages] == [LOADED] and report.ok
    cases = query(warehouse, "SELECT * FROM active_cases")
    assert cases.height == 25
    assert set(cases.get_column("org")) == {"ORG-01"}
    assert set(cases.get_column("period")) == {"2025-07"}
    keys_ = cases.get_column("record_key")
    assert keys_.min() >= 0 and keys_.max() < 1 and keys_.n_unique() == 25
    assert cases.schema["exploitation_types"] == pl.List(pl.String)
    assert audit_actions(warehouse) == ["org-added", "ingested"]
    stored = query(warehouse, "SELECT manifest, signature FROM submissions")
    assert verify(
        keys.public_key,
        base64.b64decode(stored.item(0, "signature")),
        stored.item(0, "manifest").encode("utf-8"),
    )


def test_ingesting_the_same_package_twice_changes_nothing(tmp_path, keys, warehouse):
    package = make_package(tmp_path / "out", keys, canonical_records(10), created=T0)
    ingest_packages([package], warehouse)
    before = data_fingerprint(warehouse)
    report = ingest_packages([package, package.parent], warehouse)
    assert [p.outcome for p in report.packages] == [UNCHANGED]
    assert data_fingerprint(warehouse) == before
    assert table_counts(warehouse)["cases"] == 10


def test_a_newer_package_supersedes_and_history_is_kept(tmp_path, keys, warehouse):
    old = make_package(tmp_path / "out", keys, canonical_records(10, seed=1), created=T0)
    new = make_package(
        tmp_path / "out", keys, canonical_records(12, seed=1), created=T0 + timedelta(days=3)
    )
    first = ingest_packages([old], warehouse).packages[0]
    second = ingest_packages([new], warehouse).packages[0]
    assert second.superseded == [first.submission_id]
    subs = query(
        warehouse, "SELECT submission_id, superseded_by FROM submissions ORDER BY created_at"
    )
    assert subs.rows() == [
        (first.submission_id, second.submission_id),
        (second.submission_id, None),
    ]
    assert table_counts(warehouse)["cases"] == 22  # both kept
    assert table_counts(warehouse)["active_cases"] == 12
    assert "superseded" in audit_actions(warehouse)


def test_an_older_package_arriving_late_does_not_replace_the_newer_one(tmp_path, keys, warehouse):
    old = make_package(tmp_path / "a", keys, canonical_records(10), created=T0)
    new = make_package(tmp_path / "b", keys, canonical_records(12), created=T0 + timedelta(1))
    ingest_packages([new], warehouse)
    late = ingest_packages([old], warehouse).packages[0]
    assert late.outcome == LOADED and late.superseded_by is not None
    assert table_counts(warehouse)["active_cases"] == 12


def test_other_periods_and_organisations_stay_active(tmp_path, keys, warehouse):
    other = org_keys(tmp_path / "keys", "ORG-02")
    add_organisation(warehouse, "ORG-02", "Other", tmp_path / "keys" / "ORG-02.pub")
    july = make_package(tmp_path / "o", keys, canonical_records(5), created=T0)
    august = make_package(
        tmp_path / "o",
        keys,
        canonical_records(6, seed=2, month=datetime(2025, 8, 1).date()),
        period="2025-08",
        created=T0,
    )
    theirs = make_package(tmp_path / "o", other, canonical_records(7), created=T0)
    report = ingest_packages([tmp_path / "o"], warehouse)
    assert [p.outcome for p in report.packages] == [LOADED] * 3
    assert {july.name, august.name, theirs.name} == {p.package for p in report.packages}
    assert table_counts(warehouse)["active_cases"] == 18


def test_record_keys_follow_the_pseudonym_across_resubmissions(tmp_path, keys, warehouse):
    make_package(tmp_path / "o", keys, canonical_records(10, seed=4), created=T0)
    make_package(tmp_path / "o", keys, canonical_records(15, seed=4), created=T0 + timedelta(1))
    ingest_packages([tmp_path / "o"], warehouse)
    per_pseudonym = query(
        warehouse,
        "SELECT pseudonym, count(*) AS n, count(DISTINCT record_key) AS k FROM cases GROUP BY 1",
    )
    assert per_pseudonym.filter(pl.col("n") == 2).height == 10
    assert per_pseudonym.get_column("k").max() == 1


def test_an_unregistered_organisation_is_refused_and_the_others_still_load(
    tmp_path, keys, warehouse
):
    stranger = org_keys(tmp_path / "keys", "ORG-99")
    bad = make_package(tmp_path / "o", stranger, canonical_records(5), created=T0)
    good = make_package(tmp_path / "o", keys, canonical_records(5), created=T0)
    report = ingest_packages([bad, good], warehouse)
    assert [(p.package, p.outcome) for p in report.packages] == [
        (bad.name, REFUSED),
        (good.name, LOADED),
    ]
    assert not report.ok
    assert report.packages[0].refusal.key == "package-unknown-org"
    refused = query(warehouse, "SELECT package, detail FROM audit_log WHERE action = 'refused'")
    assert refused.item(0, "package") == bad.name
    assert json.loads(refused.item(0, "detail"))["reason"] == "package-unknown-org"


def hostile_variants(package: Path) -> dict[str, Path]:
    """Altered copies of `package`: each must be refused with nothing changed."""
    raw = package.read_bytes()
    with zipfile.ZipFile(package) as archive:
        contents = {i.filename: archive.read(i) for i in archive.infolist()}
    folder = package.parent / "hostile"
    folder.mkdir()
    variants = {}

    def zip_of(name, items):
        path = folder / f"{name}.casepool.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for member, data in items:
                archive.writestr(member, data)
        variants[name] = path

    (folder / "truncated.casepool.zip").write_bytes(raw[: len(raw) // 2])
    variants["truncated"] = folder / "truncated.casepool.zip"
    zip_of("traversal", [*contents.items(), ("../../outside.txt", b"x")])
    zip_of("extra", [*contents.items(), ("names.csv", b"Layla Hassan")])
    lying = json.loads(contents["manifest.json"])
    lying["rows"]["submitted"] += 1
    zip_of(
        "row-count-lie",
        [("manifest.json", json.dumps(lying).encode()), *list(contents.items())[1:]],
    )
    flipped = bytearray(raw)
    flipped[raw.find(b"PAR1") + 40] ^= 0xFF
    (folder / "flipped.casepool.zip").write_bytes(bytes(flipped))
    variants["flipped"] = folder / "flipped.casepool.zip"
    return variants


def test_hostile_packages_are_refused_with_the_warehouse_unchanged(tmp_path, keys, warehouse):
    ingest_packages(
        [make_package(tmp_path / "o", keys, canonical_records(8), created=T0)], warehouse
    )
    package = make_package(tmp_path / "p", keys, canonical_records(9), created=T0 + timedelta(1))
    variants = hostile_variants(package)
    before = data_fingerprint(warehouse)
    report = ingest_packages(sorted(variants.values()), warehouse)
    assert [p.outcome for p in report.packages] == [REFUSED] * len(variants)
    assert data_fingerprint(warehouse) == before
    assert not (tmp_path / "outside.txt").exists()
    assert audit_actions(warehouse).count("refused") == len(variants)
    # The genuine package still loads afterwards.
    assert ingest_packages([package], warehouse).packages[0].outcome == LOADED


def test_missing_paths_and_empty_folders_stop_before_touching_the_warehouse(tmp_path):
    with pytest.raises(UsageError) as caught:
        ingest_packages([tmp_path / "nope.casepool.zip"], tmp_path / "w.duckdb")
    assert caught.value.key == "ingest-path-missing"
    with pytest.raises(UsageError):
        ingest_packages([tmp_path], tmp_path / "w.duckdb")
    assert not (tmp_path / "w.duckdb").exists()


def _python(script: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(TESTS)]))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(process.communicate()[1])
        assert time.monotonic() < deadline, "child never reached the point"
        time.sleep(0.05)


def test_a_second_ingest_waits_then_says_the_warehouse_is_busy(tmp_path, keys, warehouse):
    marker = tmp_path / "holding"
    holder = _python(
        f"""
        import time, pathlib
        from casepool.warehouse.store import open_warehouse
        with open_warehouse({str(warehouse)!r}):
            pathlib.Path({str(marker)!r}).touch()
            time.sleep(60)
        """
    )
    try:
        _wait_for(marker, holder)
        package = make_package(tmp_path / "o", keys, canonical_records(4), created=T0)
        started = time.monotonic()
        with pytest.raises(WarehouseError) as caught:
            ingest_packages([package], warehouse, wait=0.5)
        assert caught.value.key == "warehouse-locked-by"
        assert caught.value.params["pid"] == holder.pid
        assert time.monotonic() - started >= 0.5
    finally:
        holder.kill()
        holder.communicate()
    assert ingest_packages([package], warehouse).packages[0].outcome == LOADED


def test_a_process_killed_mid_ingest_leaves_the_warehouse_as_it_was(tmp_path, keys, warehouse):
    ingest_packages(
        [make_package(tmp_path / "o", keys, canonical_records(6), created=T0)], warehouse
    )
    before = data_fingerprint(warehouse)
    package = make_package(
        tmp_path / "p", keys, canonical_records(3000, seed=9), created=T0 + timedelta(1)
    )
    marker = tmp_path / "inside-transaction"
    child = _python(
        f"""
        import pathlib, time
        from casepool.warehouse.ingest import ingest_packages

        def stage(name):
            if name == "commit":  # cases inserted, supersession done, not yet committed
                pathlib.Path({str(marker)!r}).touch()
                time.sleep(120)

        ingest_packages([{str(package)!r}], {str(warehouse)!r}, stage=stage)
        """
    )
    try:
        _wait_for(marker, child)
    finally:
        child.kill()  # SIGKILL on POSIX: no cleanup code runs, as in a power cut
        child.communicate()
    assert child.returncode != 0
    assert data_fingerprint(warehouse) == before
    counts = table_counts(warehouse)
    assert counts["cases"] == counts["active_cases"] == 6
    report = ingest_packages([package], warehouse)
    assert report.packages[0].outcome == LOADED
    assert table_counts(warehouse)["active_cases"] == 3000


def test_a_file_that_is_not_a_warehouse_is_refused(tmp_path):
    fake = tmp_path / "w.duckdb"
    fake.write_text("not a database")
    with pytest.raises(WarehouseError) as caught:
        table_counts(fake)
    assert caught.value.key == "warehouse-unreadable"
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).execute("CREATE TABLE t (a INT)").close()
    with pytest.raises(WarehouseError) as caught:
        table_counts(other)
    assert caught.value.key == "warehouse-incompatible"


def test_a_changed_pseudonym_key_is_flagged(tmp_path, keys, warehouse):
    ingest_packages(
        [make_package(tmp_path / "a", keys, canonical_records(4), created=T0)], warehouse
    )
    same = ingest_packages(
        [make_package(tmp_path / "b", keys, canonical_records(5), created=T0 + timedelta(1))],
        warehouse,
    ).packages[0]
    assert not same.new_pseudonym_key
    from casepool.exchange.keys import OrgKeys

    rekeyed = OrgKeys(keys.org, b"z" * 32, keys.signing_key)  # same signer, new pseudonym key
    changed = ingest_packages(
        [make_package(tmp_path / "c", rekeyed, canonical_records(5), created=T0 + timedelta(2))],
        warehouse,
    ).packages[0]
    assert changed.outcome == LOADED and changed.new_pseudonym_key
    assert "different pseudonym key" in changed.message("en")
