"""Accounts of the web service: who may sign in, with which role, and their API tokens.

The `service_accounts` table lives in the warehouse beside the audit log and is created on first
write (`CREATE TABLE IF NOT EXISTS`); a read-only reader of a warehouse without it sees no
accounts. Passwords are hashed with argon2id (memory-hard); an API token is 32 random bytes shown
once and stored only as its SHA-256 (a token is random, so a fast hash does not help a guesser).
Every change to an account is a line in the warehouse's audit log.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from casepool.core.errors import UsageError
from casepool.warehouse.store import (
    DEFAULT_WAIT_SECONDS,
    open_warehouse,
    record_audit,
    scalar,
    utc_now,
)

ROLES = ("analyst", "steward", "org")
TOKEN_PREFIX = "cpt_"
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,39}")
ORG = re.compile(r"[A-Z0-9][A-Z0-9-]{1,31}")
MIN_PASSWORD = 12
MAX_PASSWORD = 256

_DDL = """CREATE TABLE IF NOT EXISTS service_accounts (
  name VARCHAR PRIMARY KEY, role VARCHAR NOT NULL, org VARCHAR,
  token_hash VARCHAR NOT NULL, password_hash VARCHAR,
  created_at TIMESTAMP NOT NULL, created_by VARCHAR NOT NULL,
  password_set_at TIMESTAMP, revoked_at TIMESTAMP, revoked_by VARCHAR)"""

# Parameters of argon2id: 64 MiB and 3 passes (RFC 9106's second recommended option).
_HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=1)
# Verified against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash("not a password: no account has it")


@dataclass(frozen=True)
class Account:
    """One person's account (never holds the password or token, only whether they are set)."""

    name: str
    role: str
    org: str | None
    created_at: datetime
    created_by: str
    password_set: bool
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.name,
            "role": self.role,
            "org": self.org,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "created_by": self.created_by,
            "password_set": self.password_set,
            "revoked_at": self.revoked_at.isoformat(timespec="seconds")
            if self.revoked_at
            else None,
        }


@dataclass(frozen=True)
class NewAccount:
    """An account just made, with its API token (shown this once, never stored)."""

    account: Account
    token: str

    def to_dict(self) -> dict[str, Any]:
        return {"user": self.account.name, "role": self.account.role, "token": self.token}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def ensure_accounts(con: duckdb.DuckDBPyConnection) -> None:
    """Create the accounts table when this warehouse has none yet (a writable connection)."""
    con.execute(_DDL)


def has_accounts(con: duckdb.DuckDBPyConnection) -> bool:
    names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    return "service_accounts" in names


_COLUMNS = "name, role, org, created_at, created_by, password_hash IS NOT NULL, revoked_at"


def _account(row: tuple[Any, ...]) -> Account:
    return Account(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6])


def check_new(name: str, role: str, org: str | None) -> None:
    if not NAME.fullmatch(name):
        raise UsageError("serve-user-name-invalid", user=name[:40])
    if role not in ROLES:
        raise UsageError("serve-role-invalid", role=role[:20], roles=", ".join(ROLES))
    if role == "org" and (org is None or not ORG.fullmatch(org)):
        raise UsageError("serve-org-needed")
    if role != "org" and org is not None:
        raise UsageError("serve-org-only-for-org")


def add_account(
    warehouse: str | Path,
    name: str,
    role: str,
    *,
    org: str | None = None,
    actor: str,
    wait: float = DEFAULT_WAIT_SECONDS,
) -> NewAccount:
    """Create an account and its one-time API token; the person sets a password at first sign-in."""
    check_new(name, role, org)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with open_warehouse(warehouse, wait=wait) as con:
        ensure_accounts(con)
        if scalar(con.execute("SELECT 1 FROM service_accounts WHERE name = ?", [name])):
            raise UsageError("serve-user-exists", user=name)
        if role == "org" and not scalar(
            con.execute("SELECT 1 FROM organisations WHERE org = ?", [org])
        ):
            raise UsageError("serve-org-unknown", org=org)
        con.begin()
        con.execute(
            "INSERT INTO service_accounts (name, role, org, token_hash, created_at, created_by) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [name, role, org, token_hash(token), utc_now(), actor],
        )
        record_audit(
            con, "account-added", actor=actor, org=org, detail={"user": name, "role": role}
        )
        con.commit()
        row = scalar(con.execute(f"SELECT {_COLUMNS} FROM service_accounts WHERE name = ?", [name]))
    return NewAccount(_account(row), token)


def list_accounts(warehouse: str | Path, *, wait: float = DEFAULT_WAIT_SECONDS) -> list[Account]:
    """Every account, revoked ones too, by name (none when the warehouse has no accounts yet)."""
    with open_warehouse(warehouse, read_only=True, wait=wait) as con:
        if not has_accounts(con):
            return []
        rows = con.execute(f"SELECT {_COLUMNS} FROM service_accounts ORDER BY name").fetchall()
    return [_account(r) for r in rows]


def revoke_account(
    warehouse: str | Path, name: str, *, actor: str, wait: float = DEFAULT_WAIT_SECONDS
) -> Account:
    """Revoke an account: its token, password and sessions stop working (the row stays)."""
    with open_warehouse(warehouse, wait=wait) as con:
        ensure_accounts(con)
        row = scalar(con.execute("SELECT revoked_at FROM service_accounts WHERE name = ?", [name]))
        if row is None:
            raise UsageError("serve-user-unknown", user=name[:40])
        if row[0] is None:
            con.begin()
            con.execute(
                "UPDATE service_accounts SET revoked_at = ?, revoked_by = ? WHERE name = ?",
                [utc_now(), actor, name],
            )
            record_audit(con, "account-revoked", actor=actor, detail={"user": name})
            con.commit()
        account = scalar(
            con.execute(f"SELECT {_COLUMNS} FROM service_accounts WHERE name = ?", [name])
        )
    return _account(account)


def account_by_token(con: duckdb.DuckDBPyConnection, token: str) -> Account | None:
    """The active account whose API token this is, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100 or not has_accounts(con):
        return None
    row = scalar(
        con.execute(
            f"SELECT {_COLUMNS}, token_hash FROM service_accounts "
            "WHERE token_hash = ? AND revoked_at IS NULL",
            [token_hash(token)],
        )
    )
    if row is None or not hmac.compare_digest(row[7], token_hash(token)):
        return None
    return _account(row[:7])


def token_plausible(token: str) -> bool:
    """Whether `token` could be an API token at all (looked up only then)."""
    return token.startswith(TOKEN_PREFIX) and len(token) <= 100


def active_accounts(con: duckdb.DuckDBPyConnection) -> list[tuple[Account, str]]:
    """Every active account with the hash of its API token (none without accounts)."""
    if not has_accounts(con):
        return []
    rows = con.execute(
        f"SELECT {_COLUMNS}, token_hash FROM service_accounts WHERE revoked_at IS NULL"
    ).fetchall()
    return [(_account(r[:7]), str(r[7])) for r in rows]


def account_by_name(con: duckdb.DuckDBPyConnection, name: str) -> Account | None:
    """The active account of this name, or None."""
    if not has_accounts(con):
        return None
    row = scalar(
        con.execute(
            f"SELECT {_COLUMNS} FROM service_accounts WHERE name = ? AND revoked_at IS NULL",
            [name],
        )
    )
    return None if row is None else _account(row)


def check_password(con: duckdb.DuckDBPyConnection, name: str, password: str) -> Account | None:
    """The active account when `password` is its password; None otherwise (in constant work)."""
    row = None
    if has_accounts(con) and len(password) <= MAX_PASSWORD:
        row = scalar(
            con.execute(
                f"SELECT {_COLUMNS}, password_hash FROM service_accounts "
                "WHERE name = ? AND revoked_at IS NULL",
                [name],
            )
        )
    stored = row[7] if row is not None and row[7] else _DUMMY_HASH
    ok: bool
    try:
        ok = bool(_HASHER.verify(stored, password[:MAX_PASSWORD]))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    return _account(row[:7]) if ok and row is not None and row[7] else None


def check_first_sign_in(con: duckdb.DuckDBPyConnection, name: str, token: str) -> Account | None:
    """The active account without a password yet whose token this is (for its first sign-in)."""
    account = account_by_token(con, token)
    if account is None or account.name != name or account.password_set:
        return None
    return account


def set_password(con: duckdb.DuckDBPyConnection, name: str, password: str, *, actor: str) -> None:
    """Store the argon2id hash of a new password (a writable connection)."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UsageError("serve-password-short", length=MIN_PASSWORD)
    ensure_accounts(con)
    con.begin()
    con.execute(
        "UPDATE service_accounts SET password_hash = ?, password_set_at = ? WHERE name = ?",
        [_HASHER.hash(password), utc_now(), name],
    )
    record_audit(con, "password-set", actor=actor, detail={"user": name})
    con.commit()
