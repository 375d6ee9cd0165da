"""The synthetic double registrations follow the stated double-count rule, so indicators count each child once."""

from __future__ import annotations

import json

import polars as pl
import pytest

from casepool.intake.validating import validate_export
from casepool.synthesis import synthesize


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, orgs=4, records=1200, seed=11, error_rate=0.0)
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    records = {}
    for export in truth["exports"]:
        mapping = out / export["mapping"] if export.get("mapping") else None
        records[export["file"]] = validate_export(out / export["file"], mapping).records
    return truth, records


def _row(records, place):
    frame = records[place["file"]]
    return frame.filter(pl.col("_row") == place["row"]).row(0, named=True)


def test_each_second_registration_was_referred_by_a_cso_and_the_first_was_not(synthetic):
    truth, records = synthetic
    pairs = truth["double_registrations"]
    assert len(pairs) > 10
    for one, other in pairs:  # listed by organisation, not by date
        a, b = _row(records, one), _row(records, other)
        assert a["reported_elsewhere"] == b["reported_elsewhere"] == "yes"
        first, second = (a, b) if b["referral_source"] == "cso" else (b, a)
        assert second["referral_source"] == "cso" and first["referral_source"] != "cso"
        assert first["report_date"] <= second["report_date"]


def test_the_rule_removes_exactly_the_second_registrations(synthetic):
    truth, records = synthetic
    seconds = {
        (place["file"], place["row"])
        for pair in truth["double_registrations"]
        for place in pair
        if _row(records, place)["referral_source"] == "cso"
    }
    assert len(seconds) == len(truth["double_registrations"])
    flagged = {
        (name, row)
        for name, frame in records.items()
        for row in frame.filter(
            (pl.col("reported_elsewhere") == "yes") & (pl.col("referral_source") == "cso")
        ).get_column("_row")
    }
    # Every second registration is excluded; anything else excluded is a child flagged as
    # registered by an organisation outside this set (documented limit of the rule).
    assert seconds <= flagged
    assert len(flagged - seconds) <= 0.05 * len(seconds) + 5
