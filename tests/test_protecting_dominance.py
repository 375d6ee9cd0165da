"""Contributor dominance: a cell where the other organisations count 1..k-1 children is primary
against the dominant one, and the audit proves its interval as wide as k for that organisation."""

from __future__ import annotations

import polars as pl

from casepool.protecting import CountTable, ProtectionSettings, audit, protect
from casepool.protecting.audit import DOMINANCE_PUBLISHED

K = 5


def _table() -> CountTable:
    # sex x region; in (F, KRI) org A has 30 children and org B 2: B's 2 would be A's to read.
    own = {
        ("F", "KRI"): (30, 2),
        ("F", "federal"): (6, 9),
        ("M", "KRI"): (7, 8),
        ("M", "federal"): (9, 6),
    }
    rows, parts = [], []
    sexes, regions = ["F", "M"], ["KRI", "federal"]
    for s in [*sexes, "_T"]:
        for r in [*regions, "_T"]:
            cells = [
                own[(a, b)]
                for a in (sexes if s == "_T" else [s])
                for b in (regions if r == "_T" else [r])
            ]
            a_part, b_part = sum(c[0] for c in cells), sum(c[1] for c in cells)
            rows.append((s, r, a_part + b_part))
            parts += [(s, r, "A", a_part), (s, r, "B", b_part)]
    cells = pl.DataFrame(rows, schema=["sex", "region", "value"], orient="row")
    contributions = pl.DataFrame(
        parts, schema=["sex", "region", "contributor", "value"], orient="row"
    )
    return CountTable("cases", ("sex", "region"), cells, contributions=contributions)


def _insiders(table: CountTable) -> dict[str, pl.DataFrame]:
    assert table.contributions is not None
    joined = table.contributions.join(
        table.cells.rename({"value": "total"}), on=list(table.dimensions)
    )
    out = {}
    for (name,), group in joined.group_by("contributor", maintain_order=True):
        others = group["total"] - group["value"]
        out[str(name)] = group.select("sex", "region", "value").with_columns(
            ((group["value"] == group["total"]) & (group["value"] > 0)).alias("sole"),
            ((others >= 1) & (others < K) & (group["total"] >= K)).alias("dominant"),
        )
    return out


def _status(frame: pl.DataFrame, sex: str, region: str) -> str:
    row = frame.filter((pl.col("sex") == sex) & (pl.col("region") == region))
    return str(row["conf_status"].item())


def test_a_dominated_cell_is_primary_and_the_dominant_organisation_gets_a_k_wide_interval():
    table = _table()
    (result,) = protect([table], ProtectionSettings(k=K, k_sensitive=K))
    frame = result.frame
    assert _status(frame, "F", "KRI") == "C"  # 32 children, yet primary: B counts only 2
    report = audit(frame, k=K, insiders=_insiders(table))
    assert report.protected, [v.to_dict() for v in report.failures]
    a_view = [
        v for v in report.verdicts if v.attacker == "A" and v.codes == {"sex": "F", "region": "KRI"}
    ]
    assert a_view and a_view[0].upper is not None
    assert a_view[0].upper - a_view[0].lower >= K  # A cannot tell B's 2 within less than k


def test_without_the_rule_the_dominated_cell_is_published_and_the_audit_refuses_it():
    table = _table()
    (result,) = protect([table], ProtectionSettings(k=K, k_sensitive=K, dominance=False))
    frame = result.frame
    assert _status(frame, "F", "KRI") == "F"
    report = audit(frame, k=K, insiders=_insiders(table))
    assert not report.protected
    failed = {(v.attacker, v.verdict) for v in report.failures}
    assert ("A", DOMINANCE_PUBLISHED) in failed
    # Told not to apply the rule, the audit passes the same table.
    assert audit(frame, k=K, insiders=_insiders(table), dominance=False).protected


def test_dominance_settings_are_read_from_the_yaml():
    from casepool.protecting.settings import settings_from_mapping

    assert settings_from_mapping({}).dominance is True
    off = settings_from_mapping({"dominance": {"enabled": False, "small_cells": True}})
    assert off.dominance is False and off.dominance_small_cells is True
