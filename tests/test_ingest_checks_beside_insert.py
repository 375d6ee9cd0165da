"""Ingest checks the rows' values beside its insert (issue 19): every package a whole read
refuses is refused by ingest with the same refusal, nothing of it kept; the record keys' own
distinctness stands in for the pseudonyms' hash check; the value facts read row group by row
group equal a whole-file scan."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from casepool.core.errors import PackageError
from casepool.exchange.package import DATA, MANIFEST, SIGNATURE, read_package
from casepool.warehouse import ingest as ingest_module
from casepool.warehouse.ingest import ingest_packages
from casepool.warehouse.organisations import add_organisation
from casepool.warehouse.store import LOADED, REFUSED, open_warehouse
from fixtures.submit.builders import canonical_records, make_package, org_keys

T0 = datetime(2025, 8, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def keys(tmp_path):
    return org_keys(tmp_path / "keys")


@pytest.fixture
def warehouse(tmp_path, keys):
    path = tmp_path / "w.duckdb"
    add_organisation(path, keys.org, "Test CSO", tmp_path / "keys" / f"{keys.org}.pub")
    return path


def _altered(package, keys, change=None, manifest_change=None, created=None):
    """The package with its rows changed by `change` (polars expressions, in order) and its
    manifest by `manifest_change`, signed again by the organisation (a signed but broken
    package: only the row checks can refuse it)."""
    with zipfile.ZipFile(package) as archive:
        contents = {i.filename: archive.read(i) for i in archive.infolist()}
    if change is not None:
        frame = pl.read_parquet(io.BytesIO(contents[DATA]))
        for step in change:
            frame = frame.with_columns(step)
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        contents[DATA] = buffer.getvalue()
    manifest = json.loads(contents[MANIFEST])
    manifest["data"]["sha256"] = hashlib.sha256(contents[DATA]).hexdigest()
    if manifest_change is not None:
        manifest_change(manifest)
    if created is not None:
        manifest["created"] = created.isoformat()
    raw = json.dumps(manifest, indent=2, sort_keys=True).encode()
    contents[MANIFEST], contents[SIGNATURE] = raw, base64.b64encode(keys.sign(raw))
    with zipfile.ZipFile(package, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return package


def _lookup(keys):
    return lambda org: keys.public_key if org == keys.org else None


def _whole_read_refusal(keys, package):
    with pytest.raises(PackageError) as caught:
        read_package(package, _lookup(keys))
    return caught.value


def _nothing_kept(warehouse):
    with open_warehouse(warehouse, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM submissions").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM cases").fetchone() == (0,)
        actions = [
            r[0] for r in con.execute("SELECT action FROM audit_log ORDER BY seq").fetchall()
        ]
    assert actions[-1] == "refused"


def _repeat_first_pseudonym():
    return (
        pl.when(pl.int_range(pl.len()) == 1)
        .then(pl.col("pseudonym").first())
        .otherwise(pl.col("pseudonym"))
        .alias("pseudonym")
    )


BROKEN = {
    "unknown code": [pl.lit("X").alias("survivor_sex")],
    "unknown code in a list": [pl.lit(["online", "spying"]).alias("exploitation_types")],
    "unknown age band": [pl.lit("Y3T8").alias("age_band")],
    "outside the period": [pl.lit(date(2025, 9, 1)).alias("report_date")],
    "no registration date": [pl.lit(None, dtype=pl.Date).alias("report_date")],
    "omitted field with values": [pl.lit("yes").alias("disability")],
    "repeated pseudonyms": [_repeat_first_pseudonym()],
    "malformed pseudonyms": [pl.lit("Layla").alias("pseudonym")],
    "upper-case pseudonyms": [pl.col("pseudonym").str.to_uppercase()],
    # Several problems at once: the whole read's order decides which one is named.
    "repeated and unknown code": [_repeat_first_pseudonym(), pl.lit("X").alias("survivor_sex")],
    "omitted and malformed": [pl.lit("yes").alias("disability"), pl.lit("x").alias("pseudonym")],
    "unknown code and dates": [
        pl.lit("X").alias("case_status"),
        pl.lit(date(2024, 1, 1)).alias("report_date"),
    ],
}


@pytest.mark.parametrize("broken", list(BROKEN))
def test_ingest_refuses_what_a_whole_read_refuses_with_the_same_reason(
    tmp_path, keys, warehouse, broken
):
    package = make_package(tmp_path / "out", keys, canonical_records(60), created=T0)
    _altered(package, keys, BROKEN[broken])
    expected = _whole_read_refusal(keys, package)
    [outcome] = ingest_packages([package], warehouse).packages
    assert outcome.outcome == REFUSED and outcome.refusal is not None
    assert (outcome.refusal.key, outcome.refusal.params) == (expected.key, expected.params)
    _nothing_kept(warehouse)


def test_a_manifest_that_miscounts_the_rows_is_refused_as_before(tmp_path, keys, warehouse):
    package = make_package(tmp_path / "out", keys, canonical_records(30), created=T0)

    def fewer(manifest):
        manifest["rows"]["submitted"] -= 1

    _altered(package, keys, manifest_change=fewer)
    expected = _whole_read_refusal(keys, package)
    [outcome] = ingest_packages([package], warehouse).packages
    assert outcome.refusal is not None and outcome.refusal.params == expected.params
    assert expected.params["reason"] == "row count differs from the manifest"
    _nothing_kept(warehouse)


def test_broken_rows_are_named_before_a_creation_time_in_the_future(tmp_path, keys, warehouse):
    package = make_package(tmp_path / "out", keys, canonical_records(30), created=T0)
    _altered(
        package,
        keys,
        [pl.lit("X").alias("survivor_sex")],
        created=datetime.now(UTC) + timedelta(days=3),
    )
    [outcome] = ingest_packages([package], warehouse).packages
    assert outcome.refusal is not None
    assert outcome.refusal.params["reason"] == "survivor_sex holds unknown codes"
    # The same package with sound rows is refused for its time, as before.
    good = make_package(tmp_path / "later", keys, canonical_records(30), created=T0)
    _altered(good, keys, created=datetime.now(UTC) + timedelta(days=3))
    [outcome] = ingest_packages([good], warehouse).packages
    assert outcome.refusal is not None and outcome.refusal.key == "package-from-the-future"


def test_keys_that_collide_fall_back_to_the_exact_pseudonym_check(
    tmp_path, keys, warehouse, monkeypatch
):
    package = make_package(tmp_path / "out", keys, canonical_records(40), created=T0)
    seen = []

    def same_key(secret, org, pseudonyms):  # every record the same key: nothing shown distinct
        seen.append(len(pseudonyms))
        return [0.5] * len(pseudonyms)

    monkeypatch.setattr(ingest_module, "record_keys", same_key)
    [outcome] = ingest_packages([package], warehouse).packages
    assert seen == [40] and outcome.outcome == LOADED  # distinct pseudonyms: loaded all the same
    # Repeated pseudonyms with colliding keys are refused by the exact check.
    repeated = make_package(tmp_path / "again", keys, canonical_records(40, seed=5), created=T0)
    _altered(repeated, keys, [_repeat_first_pseudonym()])
    [outcome] = ingest_packages([repeated], warehouse).packages
    assert outcome.refusal is not None
    assert outcome.refusal.params["reason"] == "pseudonyms malformed or repeated"


def test_a_package_read_without_its_row_checks_is_marked_until_they_pass(tmp_path, keys, warehouse):
    package = make_package(tmp_path / "out", keys, canonical_records(30), created=T0)
    lookup = _lookup(keys)
    assert read_package(package, lookup).rows_checked
    deferred = read_package(package, lookup, check_rows=False)
    assert not deferred.rows_checked and deferred.rows == 30
    deferred.check_rows()
    assert deferred.rows_checked
    _altered(package, keys, [pl.lit("X").alias("survivor_sex")])
    deferred = read_package(package, lookup, check_rows=False)  # reads, does not refuse yet
    with pytest.raises(PackageError) as caught:
        deferred.check_rows()
    assert caught.value.params["reason"] == "survivor_sex holds unknown codes"
    assert not deferred.rows_checked


# --- the value checks read row group by row group ----------------------------------------------


def _polars_facts(data, omitted, coded):
    """The facts as the whole-file polars scan before this change computed them."""
    found = pl.read_parquet_schema(io.BytesIO(data))
    return (
        pl.scan_parquet(io.BytesIO(data))
        .select(
            pl.col("report_date").null_count().alias("_no_date"),
            pl.col("report_date").min().alias("_first"),
            pl.col("report_date").max().alias("_last"),
            *[pl.col(n).null_count().alias(f"_omitted_{n}") for n in omitted],
            *[
                (pl.col(n).explode() if isinstance(found[n], pl.List) else pl.col(n))
                .drop_nulls()
                .unique()
                .sort()
                .implode()
                .alias(n)
                for n in coded
            ],
        )
        .collect()
        .row(0, named=True)
    )


@pytest.mark.parametrize("row_group", [3, 7, 1000])
def test_row_group_facts_equal_a_whole_file_scan(tmp_path, keys, row_group):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from casepool.core.schema import load_schema
    from casepool.exchange.package import _allowed_codes, _row_facts

    package = make_package(tmp_path / "out", keys, canonical_records(50, seed=3), created=T0)
    with zipfile.ZipFile(package) as archive:
        frame = pl.read_parquet(io.BytesIO(archive.read(DATA)))
    # Gaps of every kind: missing codes, missing lists, missing list items, missing dates.
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) % 5 == 0)
        .then(None)
        .otherwise(pl.col("survivor_sex"))
        .alias("survivor_sex"),
        pl.when(pl.int_range(pl.len()) % 4 == 1)
        .then(None)
        .when(pl.int_range(pl.len()) % 4 == 2)
        .then(pl.lit([None, "online"], dtype=pl.List(pl.String)))
        .otherwise(pl.col("exploitation_types"))
        .alias("exploitation_types"),
        pl.when(pl.int_range(pl.len()) == 9)
        .then(None)
        .otherwise(pl.col("report_date"))
        .alias("report_date"),
        pl.when(pl.int_range(pl.len()) < 20)
        .then(None)
        .otherwise(pl.col("case_status"))
        .alias("case_status"),
    )
    table = frame.to_arrow()
    # One column written from a dictionary holding entries no row uses: not counted as values.
    governorates = table.column("governorate").combine_chunks().dictionary_encode()
    spare = pa.DictionaryArray.from_arrays(
        governorates.indices,
        pa.concat_arrays(
            [governorates.dictionary, pa.array(["atlantis"], governorates.dictionary.type)]
        ),
    )
    table = table.set_column(table.schema.get_field_index("governorate"), "governorate", spare)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=row_group)
    data = buffer.getvalue()
    coded = list(_allowed_codes(load_schema()))
    omitted = ["disability", "case_status"]
    found = pl.read_parquet_schema(io.BytesIO(data))
    assert "atlantis" not in _row_facts(data, found, omitted, coded)["governorate"]
    assert _row_facts(data, found, omitted, coded) == _polars_facts(data, omitted, coded)
