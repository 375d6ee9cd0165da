"""Keys on a laptop that can be lost: both secrets under a passphrase, asked for by submit (or
read from CASEPOOL_KEY_PASSPHRASE), and a rotated signing key that keeps the pseudonyms."""

from __future__ import annotations

import shutil

import pytest

from casepool.cli.main import app
from casepool.core.errors import KeyFileError, UsageError
from casepool.exchange.keys import (
    PASSPHRASE_ENV,
    KeyPaths,
    generate_keys,
    keys_protected,
    load_keys,
    public_key_id,
    rotate_signing_key,
)
from casepool.intake.deidentifying import pseudonymise

PASSPHRASE = "olive tree by the river"


def test_protected_keys_hold_no_secret_in_the_clear(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    paths = generate_keys("ORG-01", tmp_path, PASSPHRASE)
    keys = load_keys(tmp_path, "ORG-01", PASSPHRASE)
    assert keys_protected(tmp_path, "ORG-01")
    assert keys.pseudonym_secret.hex().encode() not in paths.pseudonym.read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in paths.signing.read_bytes()
    with pytest.raises(KeyFileError) as missing:
        load_keys(tmp_path, "ORG-01")
    assert missing.value.key == "key-passphrase-needed"
    with pytest.raises(KeyFileError) as wrong:
        load_keys(tmp_path, "ORG-01", "not the passphrase")
    assert wrong.value.key == "key-passphrase-wrong"
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    assert load_keys(tmp_path, "ORG-01").pseudonym_secret == keys.pseudonym_secret


def test_a_short_passphrase_is_refused(tmp_path):
    with pytest.raises(UsageError):
        generate_keys("ORG-01", tmp_path, "short")


def test_rotation_makes_a_new_signing_key_and_keeps_pseudonyms(tmp_path):
    generate_keys("ORG-01", tmp_path, PASSPHRASE)
    before = load_keys(tmp_path, "ORG-01", PASSPHRASE)
    rotate_signing_key("ORG-01", tmp_path, PASSPHRASE)
    after = load_keys(tmp_path, "ORG-01", PASSPHRASE)
    assert public_key_id(after.public_key) != public_key_id(before.public_key)
    assert after.pseudonym_secret == before.pseudonym_secret
    ids = ["C-001", "C-002"]
    assert pseudonymise(ids, before.pseudonym_secret) == pseudonymise(ids, after.pseudonym_secret)
    old = public_key_id(before.public_key)
    assert (tmp_path / f"ORG-01.signing.key.retired-{old}").is_file()
    assert (tmp_path / f"ORG-01.pub.retired-{old}").is_file()


def test_rotation_refuses_a_wrong_passphrase_and_changes_nothing(tmp_path):
    paths = generate_keys("ORG-01", tmp_path, PASSPHRASE)
    before = {p: p.read_bytes() for p in KeyPaths.all(paths)}
    with pytest.raises(KeyFileError):
        rotate_signing_key("ORG-01", tmp_path, "not the passphrase")
    assert {p: p.read_bytes() for p in KeyPaths.all(paths)} == before


def test_keygen_asks_twice_and_submit_asks_once(tmp_path, runner, fixtures, monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    keys = tmp_path / "keys"
    made = runner.invoke(
        app,
        ["keygen", "--org", "ORG-01", "--out", str(keys)],
        input=f"{PASSPHRASE}\n{PASSPHRASE}\n",
    )
    assert made.exit_code == 0, made.output
    assert keys_protected(keys, "ORG-01")
    export = tmp_path / "export.csv"
    shutil.copy(fixtures / "validate" / "canonical_valid.csv", export)
    args = ["submit", str(export), "--org", "ORG-01", "--period", "2024"]
    args += ["--key", str(keys), "--out", str(tmp_path / "outbox"), "--drop-invalid"]
    wrong = runner.invoke(app, args, input="not the passphrase\n")
    assert wrong.exit_code == 2
    assert "does not open" in wrong.output
    right = runner.invoke(app, args, input=f"{PASSPHRASE}\n")
    assert right.exit_code in (0, 1), right.output
    assert "does not open" not in right.output
    rotated = runner.invoke(
        app, ["keygen", "--org", "ORG-01", "--out", str(keys), "--rotate"], input=f"{PASSPHRASE}\n"
    )
    assert rotated.exit_code == 0, rotated.output
    assert "org add --replace" in rotated.output
