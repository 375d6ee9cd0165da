"""Protection settings load from schemas/protection.yaml; ratios and medians follow their counts."""

from __future__ import annotations

import polars as pl
import pytest

from casepool.core.errors import SchemaError
from casepool.protecting import load_protection_settings
from casepool.protecting.ratios import suppress_ratios


def test_defaults_come_from_the_schema_file():
    settings = load_protection_settings()
    assert (settings.k, settings.k_sensitive) == (5, 10)
    assert settings.k_for(["minority_community", "sex"]) == 10
    assert settings.k_for(["sex"]) == 5
    assert settings.interval_for(10) == 10
    assert settings.cell_key.threshold >= 1


def test_a_private_settings_file_overrides(tmp_path):
    path = tmp_path / "private.yaml"
    path.write_text("k: 3\nk_sensitive: 7\nprotection_interval: 4\n", encoding="utf-8")
    settings = load_protection_settings(path)
    assert (settings.k, settings.k_sensitive, settings.interval_for(3)) == (3, 7, 4)


@pytest.mark.parametrize("text", ["k: 1\n", "k: five\n", "k_sensitive: 2\n", "- a list\n"])
def test_bad_settings_are_refused(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SchemaError):
        load_protection_settings(path)


def test_ratios_follow_numerator_and_denominator():
    denominator = pl.DataFrame(
        {
            "sex": ["F", "M", "U", "_T"],
            "value": [30, None, 6, 40],
            "conf_status": ["F", "C", "F", "F"],
        }
    )
    numerator = pl.DataFrame(
        {
            "sex": ["F", "M", "U", "_T"],
            "value": [None, None, 5, 12],
            "conf_status": ["D", "C", "F", "F"],
        }
    )
    ratios = pl.DataFrame(
        {"indicator": "boys_share", "sex": ["F", "M", "U", "_T"], "value": [40.0, 50.0, 83.3, 30.0]}
    )
    out = suppress_ratios(
        ratios, ["sex"], denominator=denominator, numerator=numerator, min_denominator=10
    )
    assert out.select("sex", "value", "conf_status").rows() == [
        ("F", None, "D"),  # numerator suppressed: the percentage would give it back
        ("M", None, "C"),  # denominator suppressed
        ("U", None, "C"),  # 6 children: below the minimum denominator
        ("_T", 30.0, "F"),
    ]


def test_medians_need_enough_children():
    counts = pl.DataFrame(
        {"region": ["KRI", "federal"], "value": [4, 25], "conf_status": ["F", "F"]}
    )
    medians = pl.DataFrame({"region": ["KRI", "federal"], "value": [3.0, 5.0]})
    out = suppress_ratios(medians, ["region"], denominator=counts, min_denominator=5)
    assert out["value"].to_list() == [None, 5.0]
    assert out["obs_status"].to_list() == ["Q", "A"]
