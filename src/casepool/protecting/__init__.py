"""Disclosure control: protect tables of counts and prove it by an LP audit (see protect()).

The public API, for `casepool query` / `publish` and anything else that lets a figure out:

    protect(tables: list[CountTable] | CountTable, settings: ProtectionSettings | None = None)
        -> list[ProtectedTable]
        Protects tables together (cells they share — same indicator, same codes once the `_T`
        dimensions are dropped — get one status) and returns each in the tidy format of
        DESIGN.md: indicator, one column per dimension, value (null when suppressed),
        obs_status (A/Q), conf_status (F free, C primary, D secondary). Rows come in grid order
        (codes sorted, `_T` last). Raises TableError (a CasepoolError) for malformed input.

    CountTable(indicator, dimensions, cells, multi_valued=frozenset(), contributions=None,
               sensitive=None, name=None)
        cells: polars frame with the dimension columns (codes as text, `_T` for totals) and
        `value`, margins included (absent combinations count as zero). contributions: the
        dimensions + `contributor` + `value`, every contributor's own counts (margins too),
        adding up to `cells`; enables the insider audit. multi_valued: dimensions whose
        total is not the sum of their categories. sensitive: None decides from the
        dimensions (settings.sensitive_dimensions → k_sensitive).

    audit(table: pl.DataFrame, *, k=5, protection_interval=None, multi_valued=(),
          insiders: dict[str, pl.DataFrame] | None = None, total_code="_T",
          solver="highs-warm", exact=True) -> AuditReport
        The independent LP audit of a published tidy table (what `casepool audit` runs).

    load_protection_settings(path=None) -> ProtectionSettings   (schemas/protection.yaml)

    suppress_ratios(ratios, dimensions, *, denominator, numerator=None, min_denominator=5)
        Percentages / medians suppressed with their counts (casepool.protecting.ratios).

    Cell key (casepool.protecting.cellkey), for ad-hoc queries:
        cell_key_expr("record_key") -> polars aggregation giving a cell's key
        tabulate_with_keys(records, dimensions, ...) -> cells with value and cell_key
        cellkey_perturb(cells, settings.cell_key) -> cells with perturbed value, key dropped

Method and guarantee: docs/methodology-disclosure-control.md.
"""

from casepool.protecting.audit import AuditReport, CellVerdict, audit, read_tidy_table
from casepool.protecting.cellkey import cellkey_perturb, tabulate_with_keys
from casepool.protecting.ratios import suppress_ratios
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
    "cellkey_perturb",
    "load_protection_settings",
    "protect",
    "read_tidy_table",
    "suppress_ratios",
    "tabulate_with_keys",
]
