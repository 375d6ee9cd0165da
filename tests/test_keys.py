"""Organisation keys: owner-only secrets, never overwritten, a .pub for the steward."""

from __future__ import annotations

import os
import stat

import pytest

from casepool.cli.main import app
from casepool.core.errors import KeyFileError, UsageError
from casepool.exchange.keys import (
    generate_keys,
    load_keys,
    load_public_key,
    org_code,
    public_key_id,
    verify,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def test_keygen_writes_two_secrets_and_a_public_key(tmp_path):
    paths = generate_keys("org-01", tmp_path / "keys")
    assert [p.name for p in paths.all()] == [
        "ORG-01.pseudonym.key",
        "ORG-01.signing.key",
        "ORG-01.pub",
    ]
    keys = load_keys(tmp_path / "keys", "ORG-01")
    assert len(keys.pseudonym_secret) == 32
    public = load_public_key(paths.public)
    assert public_key_id(public) == public_key_id(keys.public_key)
    assert verify(public, keys.sign(b"manifest"), b"manifest")
    assert not verify(public, keys.sign(b"manifest"), b"manifesT")


@posix_only
def test_secret_key_files_are_readable_by_the_owner_only(tmp_path):
    paths = generate_keys("ORG-01", tmp_path)
    for secret in (paths.pseudonym, paths.signing):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.public.stat().st_mode) & 0o044  # the steward may read it


def test_keygen_refuses_to_overwrite_existing_keys(tmp_path):
    generate_keys("ORG-01", tmp_path)
    before = (tmp_path / "ORG-01.pseudonym.key").read_bytes()
    with pytest.raises(KeyFileError) as caught:
        generate_keys("ORG-01", tmp_path)
    assert caught.value.key == "keys-exist"
    assert (tmp_path / "ORG-01.pseudonym.key").read_bytes() == before


def test_keygen_refuses_when_only_the_public_key_is_there(tmp_path):
    (tmp_path / "ORG-01.pub").write_text("old")
    with pytest.raises(KeyFileError):
        generate_keys("ORG-01", tmp_path)
    assert not (tmp_path / "ORG-01.pseudonym.key").exists()


def test_each_keygen_makes_different_keys(tmp_path):
    a = load_keys(generate_keys("A1", tmp_path).pseudonym.parent, "A1")
    b = load_keys(generate_keys("B1", tmp_path).pseudonym.parent, "B1")
    assert a.pseudonym_secret != b.pseudonym_secret
    assert a.pseudonym_key_id != b.pseudonym_key_id


@posix_only
def test_a_secret_key_readable_by_others_is_refused(tmp_path):
    paths = generate_keys("ORG-01", tmp_path)
    paths.pseudonym.chmod(0o644)
    with pytest.raises(KeyFileError) as caught:
        load_keys(tmp_path, "ORG-01")
    assert caught.value.key == "key-too-open"


def test_missing_and_damaged_keys_are_named(tmp_path):
    with pytest.raises(KeyFileError) as caught:
        load_keys(tmp_path, "ORG-01")
    assert caught.value.key == "key-missing"
    paths = generate_keys("ORG-01", tmp_path)
    paths.pseudonym.chmod(0o600)
    paths.pseudonym.write_text("not hex\n")
    with pytest.raises(KeyFileError) as caught:
        load_keys(tmp_path, "ORG-01")
    assert caught.value.key == "key-invalid"


@pytest.mark.parametrize("bad", ["", "A", "ORG_01", "../x", "ORG 01", "X" * 40])
def test_org_codes_that_cannot_name_a_file_are_refused(bad):
    with pytest.raises(UsageError):
        org_code(bad)


def test_keygen_cli_refuses_overwrite_with_exit_2(tmp_path, runner):
    env = {"CASEPOOL_KEY_PASSPHRASE": "a long passphrase"}
    first = runner.invoke(app, ["keygen", "--org", "ORG-01", "--out", str(tmp_path)], env=env)
    assert first.exit_code == 0, first.output
    assert "ORG-01.pub" in first.output
    second = runner.invoke(app, ["keygen", "--org", "ORG-01", "--out", str(tmp_path)], env=env)
    assert second.exit_code == 2
    assert "never overwrites" in second.output
