"""Matching a cell costs time proportional to its length; a coded cell too long for any list of
codes is an error of its own."""

from __future__ import annotations

from casepool.core.schema import load_schema
from casepool.intake.matching import MAX_CODED_CELL, CodeMatcher
from casepool.intake.validating import validate_export


def test_a_four_megabyte_cell_is_value_too_long(tmp_path):
    path = tmp_path / "pasted_notes_in_a_coded_column.csv"
    cell = ("online trafficking " * 220_000)[: 4 * 1024 * 1024]
    path.write_text(
        "case_id,consent_statistics,survivor_sex,survivor_age,governorate,report_date,"
        f"exploitation_types,reported_to_police\nA,yes,M,12,IQG09,2024-01-01,{cell},no\n",
        encoding="utf-8",
    )
    result = validate_export(path)
    assert result.flatten() == [[2, "exploitation_types", "value-too-long"]]


def test_matching_tries_a_bounded_number_of_spans_per_token(monkeypatch):
    """Greedy longest match tries at most `window` spans from each token: linear, not quadratic."""
    schema = load_schema()
    matcher = CodeMatcher.of(schema.field("exploitation_types"), schema)
    calls = {"n": 0}
    original = CodeMatcher._lookup

    def counting(self, text):
        calls["n"] += 1
        return original(self, text)

    monkeypatch.setattr(CodeMatcher, "_lookup", counting)
    for tokens in (100, 1000, 10_000):
        calls["n"] = 0
        found = matcher._match_tokens(["online"] * tokens)
        assert found == ["online"] * tokens
        assert calls["n"] <= matcher.window * tokens
        calls["n"] = 0
        assert matcher._match_tokens(["online"] * (tokens - 1) + ["zzz"]) is None
        assert calls["n"] <= matcher.window * tokens


def test_the_length_limit_is_generous_for_real_lists_of_codes():
    schema = load_schema()
    matcher = CodeMatcher.of(schema.field("services_received"), schema)
    every = "; ".join(schema.codelists["service"].values)
    assert len(every) < MAX_CODED_CELL
    assert matcher.parse(every).error is None
