"""The steward's DuckDB warehouse: organisations, submissions, cases, and an append-only audit log.

Tables (see docs/steward-guide.md): `organisations`, `submissions`, `cases`, `audit_log`,
`warehouse_info`; views `active_submissions` and `active_cases` (the records analysts count).
Each package is merged in one transaction, so a crash or a kill leaves the warehouse as it was.
DuckDB's own file lock keeps a second process out while one writes; it waits, then says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from casepool.core.errors import UsageError, WarehouseError
from casepool.exchange.keys import (
    load_public_key,
    org_code,
    parse_public_key,
    public_key_id,
    public_key_pem,
)
from casepool.warehouse.store import (
    DEFAULT_WAIT_SECONDS,
    current_actor,
    open_warehouse,
    record_audit,
    rollback,
    scalar,
    utc_now,
)


@dataclass(frozen=True)
class Organisation:
    """A registered organisation: its code, name and the public key its packages must verify with."""

    org: str
    name: str
    key_id: str
    added_at: datetime
    shares_key_with: tuple[str, ...] = ()  # other organisations registered with the same key

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "org": self.org,
            "name": self.name,
            "key_id": self.key_id,
            "added_at": self.added_at.isoformat(),
        }
        if self.shares_key_with:
            out["shares_key_with"] = list(self.shares_key_with)
        return out


def add_organisation(
    warehouse: str | Path,
    code: str,
    name: str,
    public_key: str | Path,
    *,
    replace: bool = False,
    actor: str | None = None,
    wait: float = DEFAULT_WAIT_SECONDS,
) -> Organisation:
    """Register an organisation and its public key (with `replace`, a new key for a known one)."""
    code = org_code(code)
    name = " ".join(str(name).split())
    if not name:
        raise UsageError("org-name-empty")
    key = load_public_key(public_key)
    actor = actor or current_actor()
    now = utc_now()
    with open_warehouse(warehouse, create=True, wait=wait) as con:
        con.begin()
        try:
            known = scalar(con.execute("SELECT key_id FROM organisations WHERE org = ?", [code]))
            if known and not replace:
                raise WarehouseError("org-exists", org=code)
            # One key for two organisations: either can sign in the other's name. Allowed (an
            # umbrella body may sign for its members) but never silently.
            sharing = tuple(
                r[0]
                for r in con.execute(
                    "SELECT org FROM organisations WHERE key_id = ? AND org <> ? ORDER BY org",
                    [public_key_id(key), code],
                ).fetchall()
            )
            if known:
                con.execute(
                    "UPDATE organisations SET name = ?, public_key = ?, key_id = ? WHERE org = ?",
                    [name, public_key_pem(key), public_key_id(key), code],
                )
            else:
                con.execute(
                    "INSERT INTO organisations VALUES (?, ?, ?, ?, ?, ?)",
                    [code, name, public_key_pem(key), public_key_id(key), now, actor],
                )
            record_audit(
                con,
                "org-key-replaced" if known else "org-added",
                actor=actor,
                org=code,
                detail={
                    "key_id": public_key_id(key),
                    "previous_key_id": known[0] if known else None,
                    **({"shares_key_with": list(sharing)} if sharing else {}),
                },
            )
            con.commit()
        except BaseException:
            rollback(con)
            raise
    return Organisation(code, name, public_key_id(key), now, sharing)


def list_organisations(
    warehouse: str | Path, *, wait: float = DEFAULT_WAIT_SECONDS
) -> list[Organisation]:
    """Every registered organisation, by code."""
    with open_warehouse(warehouse, read_only=True, wait=wait) as con:
        rows = con.execute(
            "SELECT org, name, key_id, added_at FROM organisations ORDER BY org"
        ).fetchall()
    return [Organisation(*r) for r in rows]


def key_lookup(con: duckdb.DuckDBPyConnection) -> Callable[[str], Ed25519PublicKey | None]:
    cache: dict[str, Ed25519PublicKey | None] = {}

    def public_key_of(org: str) -> Ed25519PublicKey | None:
        if org not in cache:
            row = scalar(con.execute("SELECT public_key FROM organisations WHERE org = ?", [org]))
            cache[org] = parse_public_key(row[0], org) if row else None
        return cache[org]

    return public_key_of
