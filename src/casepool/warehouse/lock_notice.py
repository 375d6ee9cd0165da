"""Who hears that a command waits for the warehouse's lock: a context variable the CLI sets.

Its own module (standard library only) so that every command can set it without importing
DuckDB; `warehouse/store.py` reads it when a wait begins.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

LockWaitNotice = Callable[[Path, Any, float], None]  # (warehouse, store.LockHolder, seconds)
LOCK_WAIT_NOTICE: ContextVar[LockWaitNotice | None] = ContextVar(
    "casepool_lock_wait_notice", default=None
)
"""Called once when a command starts waiting for a lock (the CLI sets it to print a line)."""
