"""Disclosure control: protect tables of counts and prove it by an LP audit (see protect())."""

from casepool.protecting.audit import AuditReport, CellVerdict, audit, read_tidy_table
from casepool.protecting.secondary import protect
from casepool.protecting.settings import (
    CellKeySettings,
    ProtectionSettings,
    load_protection_settings,
)
from casepool.protecting.tables import CountTable, ProtectedTable

__all__ = [
    "AuditReport",
    "CellKeySettings",
    "CellVerdict",
    "CountTable",
    "ProtectedTable",
    "ProtectionSettings",
    "audit",
    "load_protection_settings",
    "protect",
    "read_tidy_table",
]
