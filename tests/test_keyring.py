"""The passphrase kept in the OS keyring (`keygen --keyring`), read back by submit; and where no
keyring exists (servers, CI), one plain line and the passphrase path as before."""

from __future__ import annotations

import json
import shutil

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from casepool.cli.main import app
from casepool.exchange.keys import (
    KEYRING_SERVICE,
    PASSPHRASE_ENV,
    keyring_backend,
    keyring_entry,
    keyring_passphrase,
    keys_protected,
    load_keys,
)

PASSPHRASE = "olive tree by the river"


class MemoryKeyring(KeyringBackend):
    """An OS keyring stand-in: keyring's own backend interface, kept in a dict."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.entries.pop((service, username), None)


@pytest.fixture
def memory_keyring(monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    before = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(before)


@pytest.fixture
def no_keyring(monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(before)


def submit_args(tmp_path, fixtures, keys):
    export = tmp_path / "export.csv"
    shutil.copy(fixtures / "validate" / "canonical_valid.csv", export)
    args = ["submit", str(export), "--org", "ORG-01", "--period", "2024"]
    return [*args, "--key", str(keys), "--out", str(tmp_path / "outbox"), "--drop-invalid"]


def test_keygen_keeps_the_passphrase_in_the_keyring_and_submit_reads_it(
    tmp_path, runner, fixtures, memory_keyring
):
    keys = tmp_path / "keys"
    made = runner.invoke(
        app,
        ["keygen", "--org", "ORG-01", "--out", str(keys), "--keyring"],
        input=f"{PASSPHRASE}\n{PASSPHRASE}\n",
    )
    assert made.exit_code == 0, made.output
    assert "kept in the OS keyring (" in made.output and "MemoryKeyring)" in made.output
    assert keys_protected(keys, "ORG-01")  # the files stay encrypted: the keyring is extra
    assert memory_keyring.entries == {(KEYRING_SERVICE, keyring_entry(keys, "ORG-01")): PASSPHRASE}
    # submit asks nothing: no input is given, and a prompt would abort the run.
    sent = runner.invoke(app, submit_args(tmp_path, fixtures, keys))
    assert sent.exit_code == 0, sent.output
    assert list((tmp_path / "outbox").glob("*.casepool.zip"))
    # Rotation reads it too, and the pseudonym key still opens with it.
    rotated = runner.invoke(app, ["keygen", "--org", "ORG-01", "--out", str(keys), "--rotate"])
    assert rotated.exit_code == 0, rotated.output
    assert load_keys(keys, "ORG-01", PASSPHRASE)


def test_a_stale_keyring_entry_is_a_wrong_passphrase_not_a_crash(
    tmp_path, runner, fixtures, memory_keyring
):
    keys = tmp_path / "keys"
    runner.invoke(
        app,
        ["keygen", "--org", "ORG-01", "--out", str(keys), "--keyring"],
        input=f"{PASSPHRASE}\n{PASSPHRASE}\n",
    )
    memory_keyring.set_password(KEYRING_SERVICE, keyring_entry(keys, "ORG-01"), "an old one here")
    sent = runner.invoke(app, submit_args(tmp_path, fixtures, keys))
    assert sent.exit_code == 2
    assert "does not open" in sent.output


def test_without_a_keyring_keygen_says_so_in_one_line_and_the_passphrase_works(
    tmp_path, runner, fixtures, no_keyring
):
    assert keyring_backend() is None
    keys = tmp_path / "keys"
    made = runner.invoke(
        app,
        ["keygen", "--org", "ORG-01", "--out", str(keys), "--keyring", "--json"],
        input=f"{PASSPHRASE}\n{PASSPHRASE}\n",
    )
    assert made.exit_code == 0, made.output
    notes = [line for line in made.output.splitlines() if "keyring" in line.lower()]
    assert any(line.startswith("No OS keyring is available here") for line in notes)
    assert json.loads(made.stdout)["keyring"] is None
    assert keys_protected(keys, "ORG-01")
    assert keyring_passphrase(keys, "ORG-01") is None
    sent = runner.invoke(app, submit_args(tmp_path, fixtures, keys), input=f"{PASSPHRASE}\n")
    assert sent.exit_code == 0, sent.output


@pytest.mark.parametrize("lang", ["ar", "ckb", "kmr"])
def test_the_no_keyring_line_is_in_the_officers_language(tmp_path, runner, no_keyring, lang):
    made = runner.invoke(
        app,
        ["keygen", "--org", "ORG-01", "--out", str(tmp_path / "k"), "--keyring", "--lang", lang],
        input=f"{PASSPHRASE}\n{PASSPHRASE}\n",
    )
    assert made.exit_code == 0, made.output
    assert PASSPHRASE_ENV in made.output
    assert "No OS keyring" not in made.output


def test_keyring_without_a_passphrase_cannot_run(tmp_path, runner, memory_keyring):
    made = runner.invoke(
        app,
        ["keygen", "--org", "ORG-01", "--out", str(tmp_path / "k"), "--keyring", "--no-passphrase"],
    )
    assert made.exit_code == 2
    assert "--no-passphrase" in made.output
    assert not (tmp_path / "k").exists()
    assert memory_keyring.entries == {}
