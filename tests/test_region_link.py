"""A region total published in one table must not give away a governorate hidden in another."""

from __future__ import annotations

import polars as pl

from casepool import protecting
from casepool.publishing.protect import _region_linked_table, region_of_governorates

REGIONS = region_of_governorates()


def governorate_table(hidden: set[str]) -> pl.DataFrame:
    values = {code: 40 for code in REGIONS} | {"IQG09": 3, "IQG03": 2, "IQG04": 4}
    rows = [
        (
            code,
            None if code in hidden else value,
            "Q" if code in hidden else "A",
            ("C" if value < 5 else "D") if code in hidden else "F",
        )
        for code, value in values.items()
    ]
    rows.append(("_T", sum(values.values()), "A", "F"))
    return pl.DataFrame(
        rows, schema=["governorate", "value", "obs_status", "conf_status"], orient="row"
    )


def region_table() -> pl.DataFrame:
    kri = 40 + 40 + 3  # Erbil, Sulaymaniyah, Duhok
    federal = 40 * 13 + 2 + 4
    return pl.DataFrame(
        {
            "period": ["_T"] * 3 + ["2024"] * 3,
            "region": ["KRI", "federal", "_T"] * 2,
            "value": [kri, federal, kri + federal, kri, federal, kri + federal],
            "obs_status": ["A"] * 6,
            "conf_status": ["F"] * 6,
        }
    )


def audit(table: pl.DataFrame) -> protecting.AuditReport:
    return protecting.audit(table, k=5)


def test_a_lone_hidden_governorate_is_recovered_from_its_region_total():
    # Duhok alone hidden in the KRI: KRI total - Erbil - Sulaymaniyah gives it away.
    linked = _region_linked_table(
        governorate_table({"IQG09", "IQG03", "IQG04"}), region_table(), ["period"], REGIONS
    )
    assert not audit(linked).protected


def test_the_same_tables_pass_when_the_region_cannot_narrow_it():
    # Duhok hidden with Erbil beside it; Al-Anbar beside Al-Muthanna and Al-Najaf, whose C flags
    # (each ≥ 1) would otherwise pin them within 4 of each other (tests/test_flags_told.py).
    hidden = {"IQG09", "IQG11", "IQG03", "IQG04", "IQG01"}
    linked = _region_linked_table(governorate_table(hidden), region_table(), ["period"], REGIONS)
    assert audit(linked).protected


def test_the_governorate_table_alone_would_have_looked_safe():
    alone = governorate_table({"IQG09", "IQG03", "IQG04"})
    assert audit(alone).protected  # hence the linked audit in publish
