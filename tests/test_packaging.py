"""Packages: signed, checksummed, written atomically; hostile or altered packages are refused."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import warnings
import zipfile
from datetime import UTC, date, datetime

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import casepool.exchange.package as package_format
import casepool.intake.submit as submit_stage
from casepool.core.errors import PackageError
from casepool.exchange.package import DATA, MANIFEST, SIGNATURE, read_package
from fixtures.submit.builders import canonical_records, make_package, org_keys

CREATED = datetime(2025, 8, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def package(tmp_path, keys):
    return make_package(tmp_path / "outbox", keys, canonical_records(20), created=CREATED)


def lookup(*known):
    return lambda org: next((k.public_key for k in known if k.org == org), None)


def members(path):
    with zipfile.ZipFile(path) as archive:
        return {i.filename: archive.read(i) for i in archive.infolist()}


def rebuild(path, contents, extra=()):
    """Write `contents` (name -> bytes) and `extra` (name, bytes) pairs as the zip at `path`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on duplicate names: that is the point
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in [*contents.items(), *extra]:
                archive.writestr(name, data)
    return path


def resign(keys, manifest):
    raw = json.dumps(manifest, indent=2, sort_keys=True).encode()
    return raw, base64.b64encode(keys.sign(raw))


def refusal(path, *known):
    with pytest.raises(PackageError) as caught:
        read_package(path, lookup(*known))
    assert caught.value.params["package"] == path.name
    return caught.value.key


def test_a_package_is_named_by_org_period_and_time_and_holds_three_members(package, keys):
    assert package.name == "ORG-01_2025-07_20250801T093000Z.casepool.zip"
    assert set(members(package)) == {DATA, MANIFEST, SIGNATURE}
    verified = read_package(package, lookup(keys))
    assert verified.org == "ORG-01" and verified.period.code == "2025-07"
    assert verified.cases.height == 20
    manifest = verified.manifest
    assert manifest["rows"] == {"in_export": 20, "submitted": 20}
    assert manifest["schema"] == {"name": "case_record", "version": 1}
    assert manifest["k_anonymity"]["threshold"] == 3
    assert set(manifest["dropped"]) == {"invalid", "no_consent", "outside_period"}


def test_the_manifest_states_the_profile_the_suppression_and_the_risk(package, keys):
    manifest = read_package(package, lookup(keys)).manifest
    assert manifest["profile"]["fields"]["report_date"] == "quarter"
    assert manifest["profile"]["fields"]["district"] == "omit"
    done = manifest["local_suppression"]
    assert done["k"] == 3 and done["k_reached"] >= 3
    assert set(done["suppressed"]) >= {"survivor_sex", "age_band", "governorate"}
    risk = manifest["k_anonymity"]
    assert risk["k"] == done["k_reached"] and risk["share_above_risk_threshold"] <= 1
    assert "global_risk" in manifest["risk_before_suppression"]


def test_a_package_carrying_a_field_its_profile_omits_is_refused(package, keys):
    contents = members(package)
    frame = pl.read_parquet(io.BytesIO(contents[DATA])).with_columns(
        pl.lit("yes").alias("disability")
    )
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    contents[DATA] = buffer.getvalue()
    manifest = json.loads(contents[MANIFEST])
    manifest["data"]["sha256"] = hashlib.sha256(contents[DATA]).hexdigest()
    contents[MANIFEST], contents[SIGNATURE] = resign(keys, manifest)
    with pytest.raises(PackageError) as caught:
        read_package(rebuild(package, contents), lookup(keys))
    assert caught.value.params["reason"] == "holds values its profile omits"


def test_the_same_package_has_the_same_submission_id(package, keys):
    assert (
        read_package(package, lookup(keys)).submission_id
        == read_package(package, lookup(keys)).submission_id
    )


def test_a_second_package_in_the_same_second_gets_its_own_name(tmp_path, keys, package):
    again = make_package(package.parent, keys, canonical_records(5), created=CREATED)
    assert again != package and again.name.endswith("-2.casepool.zip")


def test_a_crash_while_writing_leaves_no_package(tmp_path, keys, monkeypatch):
    def explode(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(submit_stage.os, "replace", explode)
    outbox = tmp_path / "outbox"
    with pytest.raises(PackageError):
        make_package(outbox, keys, canonical_records(5))
    assert list(outbox.iterdir()) == []


def test_one_flipped_byte_anywhere_in_the_data_is_refused(package, keys):
    raw = bytearray(package.read_bytes())
    start = raw.find(b"PAR1")  # the stored Parquet member
    for offset in (start + 50, len(raw) // 2):
        tampered = package.with_name(f"t{offset}.casepool.zip")
        copy = bytearray(raw)
        copy[offset] ^= 0x01
        tampered.write_bytes(bytes(copy))
        assert refusal(tampered, keys) in {
            "package-unreadable",
            "package-checksum-mismatch",
            "package-bad-signature",
        }


def test_altered_data_with_a_valid_zip_fails_the_checksum(package, keys):
    contents = members(package)
    frame = pl.read_parquet(io.BytesIO(contents[DATA]))
    frame = frame.with_columns(pl.lit("M").alias("survivor_sex"))
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    contents[DATA] = buffer.getvalue()
    assert refusal(rebuild(package, contents), keys) == "package-checksum-mismatch"


def test_one_changed_byte_of_the_manifest_breaks_the_signature(package, keys):
    contents = members(package)
    contents[MANIFEST] = contents[MANIFEST].replace(b'"submitted": 20', b'"submitted": 21')
    assert refusal(rebuild(package, contents), keys) == "package-bad-signature"


def test_unregistered_or_wrongly_signed_packages_are_refused(tmp_path, package, keys):
    assert refusal(package) == "package-unknown-org"
    impostor = org_keys(tmp_path / "other", "ORG-01")  # same code, different key
    assert refusal(package, impostor) == "package-bad-signature"


def test_a_signed_manifest_that_lies_about_the_row_count_is_refused(package, keys):
    contents = members(package)
    manifest = json.loads(contents[MANIFEST])
    manifest["rows"]["submitted"] = 19
    contents[MANIFEST], contents[SIGNATURE] = resign(keys, manifest)
    assert refusal(rebuild(package, contents), keys) == "package-bad-data"


def test_signed_data_with_a_foreign_column_is_refused(package, keys):
    contents = members(package)
    frame = pl.read_parquet(io.BytesIO(contents[DATA])).with_columns(pl.lit("x").alias("name"))
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    contents[DATA] = buffer.getvalue()
    manifest = json.loads(contents[MANIFEST])
    manifest["data"]["sha256"] = hashlib.sha256(contents[DATA]).hexdigest()
    contents[MANIFEST], contents[SIGNATURE] = resign(keys, manifest)
    assert refusal(rebuild(package, contents), keys) == "package-bad-data"


def test_an_unsupported_format_or_schema_version_is_refused(package, keys):
    contents = members(package)
    manifest = json.loads(contents[MANIFEST])
    manifest["schema"]["version"] = 99
    contents[MANIFEST], contents[SIGNATURE] = resign(keys, manifest)
    assert refusal(rebuild(package, contents), keys) == "package-unsupported"


def test_a_malformed_period_is_refused(package, keys):
    contents = members(package)
    manifest = json.loads(contents[MANIFEST])
    manifest["period"] = "2025-13"
    contents[MANIFEST], contents[SIGNATURE] = resign(keys, manifest)
    assert refusal(rebuild(package, contents), keys) == "package-manifest-invalid"


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ([("../../etc/evil.txt", b"x")], "package-unexpected-member"),
        ([("/abs/path", b"x")], "package-unexpected-member"),
        ([("notes.txt", b"Layla")], "package-unexpected-member"),
        ([("cases.parquet", b"PAR1")], "package-unexpected-member"),  # a duplicate member
    ],
)
def test_hostile_members_are_refused(package, keys, extra, reason):
    assert refusal(rebuild(package, members(package), extra), keys) == reason


def test_a_missing_member_is_refused(package, keys):
    contents = members(package)
    del contents[SIGNATURE]
    assert refusal(rebuild(package, contents), keys) == "package-missing-member"


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.99])
def test_truncated_packages_are_refused(package, keys, cut):
    raw = package.read_bytes()
    package.write_bytes(raw[: int(len(raw) * cut)])
    assert refusal(package, keys) == "package-unreadable"


def test_not_a_zip_is_refused(tmp_path, keys):
    fake = tmp_path / "x.casepool.zip"
    fake.write_text("hello")
    assert refusal(fake, keys) == "package-unreadable"


def test_members_larger_than_the_limits_are_refused(package, keys, monkeypatch):
    monkeypatch.setitem(package_format._LIMITS, DATA, 100)
    assert refusal(package, keys) == "package-too-large"


def test_a_zip_bomb_is_refused_by_its_ratio(package, keys):
    contents = members(package)
    with zipfile.ZipFile(package, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, contents[MANIFEST])
        archive.writestr(SIGNATURE, contents[SIGNATURE])
        archive.writestr(DATA, b"\0" * 5_000_000)
    assert refusal(package, keys) == "package-too-large"


@pytest.fixture(scope="module")
def small_package(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    keys = org_keys(folder / "keys")
    package = make_package(folder / "outbox", keys, canonical_records(6), created=CREATED)
    original = read_package(package, lookup(keys))
    return package.read_bytes(), keys, original


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_changed_byte_is_refused_or_changes_nothing_that_is_read(small_package, tmp_path, data):
    raw, keys, original = small_package
    offset = data.draw(st.integers(0, len(raw) - 1))
    value = raw[offset] ^ data.draw(st.integers(1, 255))
    tampered = tmp_path / f"fuzz-{offset}.casepool.zip"
    tampered.write_bytes(raw[:offset] + bytes([value]) + raw[offset + 1 :])
    try:
        verified = read_package(tampered, lookup(keys))
    except PackageError:
        return  # refused: fine
    # Accepted only when the byte was zip bookkeeping (a timestamp): what is read is unchanged.
    assert verified.submission_id == original.submission_id
    assert verified.cases.equals(original.cases)


def test_a_hostile_manifest_is_refused_before_its_signature_is_checked(package, keys):
    contents = members(package)
    contents[MANIFEST] = b"[" * 100_000 + b"]" * 100_000
    assert refusal(rebuild(package, contents), keys) == "package-manifest-invalid"


def test_an_unknown_org_is_named_only_when_it_looks_like_an_org_code(package, keys):
    contents = members(package)
    manifest = json.loads(contents[MANIFEST])
    manifest["org"] = "\x1b[31mEVIL\nline"
    contents[MANIFEST] = json.dumps(manifest).encode()
    with pytest.raises(PackageError) as caught:
        read_package(rebuild(package, contents), lookup(keys))
    assert caught.value.key == "package-unknown-org"
    assert caught.value.params["org"] == "?"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (pl.lit("X").alias("survivor_sex"), "survivor_sex holds unknown codes"),
        (pl.lit(["online", "spying"]).alias("exploitation_types"), "exploitation_types holds"),
        (pl.lit("Y3T8").alias("age_band"), "age_band holds unknown codes"),
        (pl.lit(date(2025, 9, 1)).alias("report_date"), "registrations outside the period"),
        (pl.lit("ab" * 32).alias("pseudonym"), "pseudonyms malformed or repeated"),
        (pl.lit("Layla").alias("pseudonym"), "pseudonyms malformed or repeated"),
    ],
)
def test_signed_data_that_breaks_the_case_record_is_refused(package, keys, change, reason):
    contents = members(package)
    frame = pl.read_parquet(io.BytesIO(contents[DATA])).with_columns(change)
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    contents[DATA] = buffer.getvalue()
    manifest = json.loads(contents[MANIFEST])
    manifest["data"]["sha256"] = hashlib.sha256(contents[DATA]).hexdigest()
    contents[MANIFEST], contents[SIGNATURE] = resign(keys, manifest)
    with pytest.raises(PackageError) as caught:
        read_package(rebuild(package, contents), lookup(keys))
    assert caught.value.key == "package-bad-data"
    assert reason in caught.value.params["reason"]
