"""An organisation's keys: the secret pseudonym key and the Ed25519 signing key pair."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from casepool.core.errors import KeyFileError, UsageError

# Org codes go into file and package names, where "_" separates the parts.
_ORG_CODE = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,31}$")
PSEUDONYM_KEY_BYTES = 32
SECRET_MODE = 0o600
PASSPHRASE_ENV = "CASEPOOL_KEY_PASSPHRASE"  # for scripts; people are asked
PROTECTED_PREFIX = b"casepool-protected-secret-v1:"
MIN_PASSPHRASE = 8
# scrypt cost: about a tenth of a second on a modest laptop, per attempt of a thief's guess.
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}


def org_code(text: str) -> str:
    """The canonical (upper-case) organisation code; raises UsageError when malformed."""
    code = str(text).strip().upper()
    if not _ORG_CODE.match(code):
        raise UsageError("org-code-invalid", org=str(text)[:40])
    return code


@dataclass(frozen=True)
class KeyPaths:
    """Where an organisation's three key files live."""

    pseudonym: Path
    signing: Path
    public: Path

    @classmethod
    def of(cls, folder: str | Path, org: str) -> KeyPaths:
        folder = Path(folder)
        return cls(
            pseudonym=folder / f"{org}.pseudonym.key",
            signing=folder / f"{org}.signing.key",
            public=folder / f"{org}.pub",
        )

    def all(self) -> tuple[Path, Path, Path]:
        return (self.pseudonym, self.signing, self.public)


@dataclass(frozen=True)
class OrgKeys:
    """What submit needs: the pseudonym secret and the signing key. Never leaves the organisation."""

    org: str
    pseudonym_secret: bytes
    signing_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    @property
    def pseudonym_key_id(self) -> str:
        """A fingerprint of the pseudonym key, safe to share: tells resubmissions under a new key."""
        return hashlib.sha256(b"casepool-pseudonym-key-id\0" + self.pseudonym_secret).hexdigest()[
            :16
        ]

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message)


def public_key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key (first 16 hex digits of SHA-256 of its raw bytes)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode` from the start (no window where others could read it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if os.name == "posix":
        os.chmod(path, mode)  # the umask may have narrowed it; make it exact


def _derive(passphrase: str, salt: bytes) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, **_SCRYPT).derive(passphrase.encode("utf-8"))


def protect_secret(secret: bytes, passphrase: str) -> bytes:
    """The pseudonym secret encrypted under a passphrase (scrypt + AES-GCM), as one text line."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    sealed = AESGCM(_derive(passphrase, salt)).encrypt(nonce, secret, PROTECTED_PREFIX)
    return (
        PROTECTED_PREFIX + b":".join(x.hex().encode("ascii") for x in (salt, nonce, sealed)) + b"\n"
    )


def _unprotect_secret(data: bytes, passphrase: str | None, path: Path) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if passphrase is None:
        raise KeyFileError("key-passphrase-needed", path=str(path), env=PASSPHRASE_ENV)
    try:
        salt, nonce, sealed = (
            bytes.fromhex(x.decode("ascii"))
            for x in data.strip()[len(PROTECTED_PREFIX) :].split(b":")
        )
    except ValueError:
        raise KeyFileError("key-invalid", path=str(path)) from None
    try:
        return AESGCM(_derive(passphrase, salt)).decrypt(nonce, sealed, PROTECTED_PREFIX)
    except InvalidTag:
        raise KeyFileError("key-passphrase-wrong", path=str(path)) from None


def keys_protected(folder: str | Path, org: str) -> bool:
    """Whether the organisation's secret keys are protected by a passphrase."""
    paths = KeyPaths.of(folder, org_code(org))
    try:
        return paths.pseudonym.read_bytes().startswith(PROTECTED_PREFIX)
    except OSError:
        return False


def _check_passphrase(passphrase: str | None) -> None:
    if passphrase is not None and len(passphrase) < MIN_PASSPHRASE:
        raise UsageError("key-passphrase-short", minimum=MIN_PASSPHRASE)


def _signing_pem(signing: Ed25519PrivateKey, passphrase: str | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
        if passphrase
        else serialization.NoEncryption()
    )
    return signing.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def generate_keys(org: str, folder: str | Path, passphrase: str | None = None) -> KeyPaths:
    """Make the organisation's pseudonym key and signing key pair in `folder`; never overwrite.

    With a passphrase both secret files are encrypted under it: a lost laptop does not give
    away the key that signs for the organisation or the one that makes its pseudonyms.
    """
    org = org_code(org)
    _check_passphrase(passphrase)
    folder = Path(folder)
    paths = KeyPaths.of(folder, org)
    existing = [p for p in paths.all() if p.exists()]
    if existing:
        raise KeyFileError("keys-exist", path=str(existing[0]))
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise KeyFileError("key-unwritable", path=str(folder), reason=exc.strerror) from exc
    signing = Ed25519PrivateKey.generate()
    private_pem = _signing_pem(signing, passphrase)
    secret = secrets.token_bytes(PSEUDONYM_KEY_BYTES)
    stored = (
        protect_secret(secret, passphrase) if passphrase else secret.hex().encode("ascii") + b"\n"
    )
    written: list[Path] = []
    try:
        for path, data, mode in (
            (paths.pseudonym, stored, SECRET_MODE),
            (paths.signing, private_pem, SECRET_MODE),
            (paths.public, public_key_pem(signing.public_key()).encode("ascii"), 0o644),
        ):
            _write_new(path, data, mode)
            written.append(path)
    except FileExistsError as exc:
        _remove(written)
        raise KeyFileError("keys-exist", path=str(exc.filename)) from None
    except OSError as exc:
        _remove(written)
        raise KeyFileError("key-unwritable", path=str(folder), reason=exc.strerror) from None
    return paths


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _read_secret_file(path: Path) -> bytes:
    if not path.is_file():
        raise KeyFileError("key-missing", path=str(path))
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise KeyFileError("key-too-open", path=str(path))
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError("key-unreadable", path=str(path), reason=exc.strerror) from exc


def load_keys(folder: str | Path, org: str, passphrase: str | None = None) -> OrgKeys:
    """The organisation's secret keys from `folder` (as written by generate_keys).

    Protected keys need the passphrase: given, or in the CASEPOOL_KEY_PASSPHRASE variable.
    """
    org = org_code(org)
    paths = KeyPaths.of(folder, org)
    if passphrase is None:
        passphrase = os.environ.get(PASSPHRASE_ENV) or None
    data = _read_secret_file(paths.pseudonym)
    if data.startswith(PROTECTED_PREFIX):
        secret = _unprotect_secret(data, passphrase, paths.pseudonym)
    else:
        try:
            secret = bytes.fromhex(data.decode("ascii", errors="replace").strip())
        except ValueError:
            secret = b""
    if len(secret) != PSEUDONYM_KEY_BYTES:
        raise KeyFileError("key-invalid", path=str(paths.pseudonym))
    pem = _read_secret_file(paths.signing)
    encrypted = b"ENCRYPTED" in pem.split(b"\n", 1)[0]
    if encrypted and passphrase is None:
        raise KeyFileError("key-passphrase-needed", path=str(paths.signing), env=PASSPHRASE_ENV)
    try:
        signing = serialization.load_pem_private_key(
            pem, password=passphrase.encode("utf-8") if encrypted and passphrase else None
        )
    except (ValueError, TypeError):
        if encrypted:
            raise KeyFileError("key-passphrase-wrong", path=str(paths.signing)) from None
        raise KeyFileError("key-invalid", path=str(paths.signing)) from None
    if not isinstance(signing, Ed25519PrivateKey):
        raise KeyFileError("key-invalid", path=str(paths.signing))
    return OrgKeys(org=org, pseudonym_secret=secret, signing_key=signing)


def rotate_signing_key(
    org: str, folder: str | Path, passphrase: str | None = None, new_passphrase: str | None = None
) -> KeyPaths:
    """A new signing key pair for the organisation; the pseudonym secret stays the same, so its
    pseudonyms (and the steward's history of its records) are unchanged.

    The old signing key and .pub are kept beside the new ones, renamed with their fingerprint.
    Both secret files are written under `new_passphrase` (default: the current passphrase).
    """
    org = org_code(org)
    folder = Path(folder)
    paths = KeyPaths.of(folder, org)
    current = load_keys(folder, org, passphrase)
    if passphrase is None:
        passphrase = os.environ.get(PASSPHRASE_ENV) or None
    target = new_passphrase if new_passphrase is not None else passphrase
    _check_passphrase(target)
    old_id = public_key_id(current.public_key)
    signing = Ed25519PrivateKey.generate()
    staged = {
        paths.signing: (_signing_pem(signing, target), SECRET_MODE),
        paths.public: (public_key_pem(signing.public_key()).encode("ascii"), 0o644),
        paths.pseudonym: (
            protect_secret(current.pseudonym_secret, target)
            if target
            else current.pseudonym_secret.hex().encode("ascii") + b"\n",
            SECRET_MODE,
        ),
    }
    try:
        for path, (data, mode) in staged.items():
            _write_new(path.with_name(path.name + ".new"), data, mode)
        for path in (paths.signing, paths.public, paths.pseudonym):
            if path != paths.pseudonym:
                os.replace(path, path.with_name(f"{path.name}.retired-{old_id}"))
        for path in staged:
            os.replace(path.with_name(path.name + ".new"), path)
    except OSError as exc:
        _remove([p.with_name(p.name + ".new") for p in staged])
        raise KeyFileError("key-unwritable", path=str(folder), reason=exc.strerror) from None
    return paths


def parse_public_key(pem: str | bytes, where: str = "") -> Ed25519PublicKey:
    """An Ed25519 public key from PEM text; raises KeyFileError("key-invalid")."""
    data = pem.encode("ascii", errors="replace") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise KeyFileError("key-invalid", path=where) from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError("key-invalid", path=where)
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """The public key an organisation handed to the steward (its `.pub` file)."""
    path = Path(path)
    if not path.is_file():
        raise KeyFileError("key-missing", path=str(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError("key-unreadable", path=str(path), reason=exc.strerror) from exc
    return parse_public_key(data, str(path))


def verify(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """True when `signature` is `key`'s signature of `message`."""
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def record_keys(secret: bytes, org: str, pseudonyms: Iterable[str]) -> list[float]:
    """The secret record key in [0, 1) of each record: keyed BLAKE2b of org and pseudonym, 53 bits.

    Derived, not drawn, so the same pseudonym keeps its key across resubmissions and the
    cell-key method perturbs the same cell the same way every time. Keyed with the warehouse's
    secret, so an organisation that knows its own pseudonyms still cannot compute their keys.
    The hashes run in batches over the cores (exchange/hashing.py); numpy turns the 8-byte
    digests into numbers without a Python object per record.
    """
    import numpy as np
    import polars as pl

    from casepool.exchange.hashing import blake2b_many

    if isinstance(pseudonyms, pl.Series):
        messages = pseudonyms.cast(pl.Binary).to_list()
    else:
        messages = [p.encode("ascii") for p in pseudonyms]
    digests = blake2b_many(secret, org.encode("utf-8") + b"\0", messages, 8)
    top = np.frombuffer(digests, dtype=">u8") >> np.uint64(11)
    keys: list[float] = (top.astype(np.float64) / float(2**53)).tolist()
    return keys


# --- the OS keyring (Windows Credential Manager, macOS Keychain, Secret Service) ---------------

KEYRING_SERVICE = "casepool"


def keyring_entry(folder: str | Path, org: str) -> str:
    """The keyring's user name for one key folder: the organisation code and the folder's path."""
    return f"{org_code(org)} {Path(folder).resolve()}"


def keyring_backend() -> str | None:
    """The OS keyring's name, or None where there is none (a server, CI, a bare Linux session)."""
    try:
        import keyring
        from keyring.backends import fail, null
    except ImportError:  # pragma: no cover - a dependency; guarded so keys still load without it
        return None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring | null.Keyring):
        return None
    return str(getattr(backend, "name", type(backend).__name__))


def store_passphrase(folder: str | Path, org: str, passphrase: str) -> str:
    """Keep the keys' passphrase in the OS keyring; the keyring's name. Raises UsageError
    `keyring-unavailable` where there is no keyring: the passphrase then stays the officer's."""
    if keyring_backend() is None:
        raise UsageError("keyring-unavailable", env=PASSPHRASE_ENV)
    import keyring
    from keyring.errors import KeyringError

    try:
        keyring.set_password(KEYRING_SERVICE, keyring_entry(folder, org), passphrase)
    except KeyringError as exc:  # locked or refused by the user: the same plain message
        raise UsageError("keyring-unavailable", env=PASSPHRASE_ENV) from exc
    return str(keyring_backend())


def keyring_passphrase(folder: str | Path, org: str) -> str | None:
    """The passphrase keygen --keyring stored for these keys; None without a keyring or entry."""
    if keyring_backend() is None:
        return None
    import keyring
    from keyring.errors import KeyringError

    try:
        return keyring.get_password(KEYRING_SERVICE, keyring_entry(folder, org))
    except KeyringError:
        return None
